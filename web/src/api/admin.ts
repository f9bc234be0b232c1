// The operator console's calls (admins only): plugins, dead letters,
// accounts, and the readiness breakdown.

import { apiFetch, queryString, request } from './client';
import { problemFromResponse } from './problem';
import type {
  BulkReplayResult,
  DeadLetter,
  DeadLetterStatus,
  HealthReport,
  Page,
  PluginIdentity,
  PluginOverview,
  ReloadReport,
  ReplayResult,
  User,
} from './types';

export function listPlugins(): Promise<PluginOverview[]> {
  return request('GET', '/admin/plugins');
}

export function reloadPlugins(): Promise<ReloadReport> {
  return request('POST', '/admin/plugins/reload');
}

export function rollbackPlugin(name: string): Promise<PluginIdentity> {
  return request('POST', `/admin/plugins/${encodeURIComponent(name)}/rollback`);
}

export interface DeadLetterQuery {
  handler?: string;
  status: DeadLetterStatus | 'all';
}

export function listDeadLetters(query: DeadLetterQuery, cursor?: string): Promise<Page<DeadLetter>> {
  return request('GET', `/admin/dead-letters${queryString({ ...query, limit: 20, cursor })}`);
}

export function replayDeadLetter(id: string): Promise<ReplayResult> {
  return request('POST', `/admin/dead-letters/${encodeURIComponent(id)}/replay`);
}

export function replayHandler(handler: string): Promise<BulkReplayResult> {
  return request('POST', '/admin/dead-letters/replay', { body: { handler } });
}

export function listUsers(search: string, cursor?: string): Promise<Page<User>> {
  return request('GET', `/users${queryString({ search, limit: 20, cursor })}`);
}

export type UserChanges = Partial<Pick<User, 'role' | 'disabled' | 'display_name'>>;

export function updateUser(id: string, changes: UserChanges): Promise<User> {
  return request('PATCH', `/users/${encodeURIComponent(id)}`, { body: changes });
}

export function deleteUser(id: string): Promise<void> {
  return request('DELETE', `/users/${encodeURIComponent(id)}`);
}

/** `GET /health`: a 503 carries the same breakdown (a dependency is down). */
export async function getHealth(): Promise<HealthReport> {
  const response = await apiFetch('/health', { headers: { Accept: 'application/json' } });
  if (response.ok || response.status === 503) {
    const body = await response.json().catch(() => null);
    if (body && typeof body === 'object' && 'checks' in body) return body as HealthReport;
  }
  throw await problemFromResponse(response);
}
