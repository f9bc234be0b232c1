// The one place that holds the tokens and talks to the API.
//
// The access token lives in memory only; the refresh token in localStorage, so
// that a reload keeps the session. A 401 triggers one refresh and one retry.
// Refresh tokens rotate on every use and reusing a spent one revokes the whole
// family (every tab of this session), so refreshes are serialised: one at a
// time in this tab, and — through the Web Locks API — across the tabs that
// share the stored token, each reading the token the previous one stored.

import { problemFromResponse, unreachable } from './problem';
import type { Role } from './types';

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  /** Absent when the server keeps no sessions (no Redis): no refresh then. */
  refresh_token?: string | null;
  refresh_expires_in?: number | null;
}

/** What the access token's payload says of its holder. */
export interface Claims {
  sub: string;
  role: Role;
  exp: number;
}

export type SessionState =
  | { status: 'restoring' }
  | { status: 'signed-out' }
  | { status: 'signed-in'; claims: Claims };

const REFRESH_TOKEN_KEY = 'todo-host.refresh-token';
const REFRESH_LOCK = 'todo-host.refresh';

let accessToken: string | null = null;
let state: SessionState = localStorage.getItem(REFRESH_TOKEN_KEY) ? { status: 'restoring' } : { status: 'signed-out' };
const listeners = new Set<() => void>();
let refreshing: Promise<boolean> | null = null;

export function sessionState(): SessionState {
  return state;
}

/** Calls `listener` on every sign-in, token change and sign-out; returns the unsubscribe. */
export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setState(next: SessionState) {
  state = next;
  listeners.forEach((listener) => listener());
}

function decodeClaims(token: string): Claims {
  const payload = token.split('.')[1] ?? '';
  const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as Claims;
}

/** Takes a new token pair (login, refresh, password change): both replace the old ones. */
export function adoptTokens(tokens: TokenResponse) {
  accessToken = tokens.access_token;
  if (tokens.refresh_token) localStorage.setItem(REFRESH_TOKEN_KEY, tokens.refresh_token);
  else localStorage.removeItem(REFRESH_TOKEN_KEY);
  setState({ status: 'signed-in', claims: decodeClaims(tokens.access_token) });
}

function forgetSession() {
  accessToken = null;
  localStorage.removeItem(REFRESH_TOKEN_KEY);
  setState({ status: 'signed-out' });
}

// Signing out in another tab removes the stored refresh token: this tab's
// session ends with it rather than at its access token's expiry.
window.addEventListener('storage', (event) => {
  if (event.key === REFRESH_TOKEN_KEY && event.newValue === null && state.status !== 'signed-out') {
    accessToken = null;
    setState({ status: 'signed-out' });
  }
});

function withRefreshLock<T>(task: () => Promise<T>): Promise<T> {
  // Web Locks exist in secure contexts only (HTTPS, localhost); elsewhere
  // the in-tab serialisation is all there is.
  // (`request` resolves to the callback's settled value; its typing nests the promise.)
  return navigator.locks ? (navigator.locks.request(REFRESH_LOCK, task) as unknown as Promise<T>) : task();
}

/** Exchanges the stored refresh token for a new pair. False (and signed out)
 * when the server refuses it; throws when it could not answer. */
async function rotateTokens(): Promise<boolean> {
  const refreshToken = localStorage.getItem(REFRESH_TOKEN_KEY);
  if (!refreshToken) {
    forgetSession();
    return false;
  }
  const response = await send('/auth/refresh', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  // Another tab signed in or changed the password meanwhile (without the
  // lock, or where there is none): its token is the session now, and this
  // answer — new tokens of an older login, or its refusal — must not
  // overwrite or remove it.
  if (localStorage.getItem(REFRESH_TOKEN_KEY) !== refreshToken) return rotateTokens();
  if (response.ok) {
    adoptTokens(await response.json());
    return true;
  }
  if (response.status === 401 || response.status === 400 || response.status === 422) {
    forgetSession();
    return false;
  }
  throw await problemFromResponse(response);
}

/** One refresh at a time: concurrent callers share the one in flight. */
function refreshSession(): Promise<boolean> {
  refreshing ??= withRefreshLock(rotateTokens).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Signs back in from the stored refresh token after a reload. */
export async function restoreSession(): Promise<void> {
  if (state.status !== 'restoring') return;
  try {
    await refreshSession();
  } catch {
    // The server did not answer: keep the refresh token for the next load.
    accessToken = null;
    setState({ status: 'signed-out' });
  }
}

/** `fetch`, with an unreachable server turned into a ProblemError (an abort stays an abort). */
async function send(path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw unreachable();
  }
}

function authorised(init: RequestInit, token: string | null): RequestInit {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  return { ...init, headers };
}

/** `fetch` with the access token; on a 401, refreshes once and retries once.
 * Answers whatever the server answered (a 401 still, when signed out). */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const tokenUsed = accessToken;
  const response = await send(path, authorised(init, tokenUsed));
  if (response.status !== 401 || state.status === 'signed-out') return response;
  // Another request may have refreshed while this one was under way.
  if (accessToken === tokenUsed && !(await refreshSession())) return response;
  return send(path, authorised(init, accessToken));
}

/** A query string of the set values only. */
export function queryString(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** False for the calls made before signing in (`/auth/login`, …). */
  auth?: boolean;
}

/** A JSON request: the parsed answer, undefined for a 204, a ProblemError for a failure. */
export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
  const init: RequestInit = { method, headers };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const response = options.auth === false ? await send(path, init) : await apiFetch(path, init);
  if (!response.ok) throw await problemFromResponse(response);
  return (response.status === 204 ? undefined : await response.json()) as T;
}

export async function signIn(email: string, password: string): Promise<void> {
  adoptTokens(await request<TokenResponse>('POST', '/auth/login', { body: { email, password }, auth: false }));
}

/** Ends the session on the server (both tokens revoked) and here, even when
 * the server cannot be told. */
export async function signOut(): Promise<void> {
  try {
    await request<void>('POST', '/auth/logout');
  } catch {
    // Signed out here all the same: the refresh token is dropped with it.
  } finally {
    forgetSession();
  }
}
