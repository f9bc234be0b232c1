// The caller's own account: registration, profile, password, and the
// password reset of the sign-in page.

import { adoptTokens, request, type TokenResponse } from './client';
import type { User } from './types';

export interface Registration {
  email: string;
  password: string;
  display_name?: string | null;
}

export function register(registration: Registration): Promise<User> {
  return request('POST', '/auth/register', { body: registration, auth: false });
}

export function getMe(): Promise<User> {
  return request('GET', '/users/me');
}

export function updateMe(displayName: string | null): Promise<User> {
  return request('PATCH', '/users/me', { body: { display_name: displayName } });
}

/** The answer is a new session (the old one and every other are revoked):
 * both tokens are replaced. */
export async function changePassword(currentPassword: string, newPassword: string): Promise<void> {
  const body = { current_password: currentPassword, new_password: newPassword };
  adoptTokens(await request<TokenResponse>('POST', '/users/me/password', { body }));
}

/** Answers the same `detail` whether or not the account exists. */
export async function requestPasswordReset(email: string): Promise<string> {
  const answer = await request<{ detail?: string }>('POST', '/auth/password-reset', { body: { email }, auth: false });
  return answer.detail ?? 'If an account exists for this email, a reset link is on its way.';
}

export function confirmPasswordReset(token: string, newPassword: string): Promise<void> {
  return request('POST', '/auth/password-reset/confirm', { body: { token, new_password: newPassword }, auth: false });
}
