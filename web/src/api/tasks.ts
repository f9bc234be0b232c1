// /tasks: listing, reading and writing tasks. Writes name the version they
// were based on (`If-Match`): a stale one answers 412 `version-mismatch`.

import { queryString, request } from './client';
import type { NewTask, Page, Priority, SortField, SortOrder, Task, TaskChanges, TaskStatus } from './types';

export interface TaskQuery {
  status?: TaskStatus;
  priority?: Priority;
  /** Instants (RFC 3339). */
  due_after?: string;
  due_before?: string;
  /** Case-insensitive substring of the title. */
  q?: string;
  sort: SortField;
  order: SortOrder;
}

export const PAGE_SIZE = 20;

export function listTasks(query: TaskQuery, cursor?: string): Promise<Page<Task>> {
  return request('GET', `/tasks${queryString({ ...query, limit: PAGE_SIZE, cursor })}`);
}

export function getTask(id: string): Promise<Task> {
  return request('GET', `/tasks/${encodeURIComponent(id)}`);
}

export function createTask(task: NewTask): Promise<Task> {
  return request('POST', '/tasks', { body: task });
}

export function updateTask(id: string, version: number, changes: TaskChanges): Promise<Task> {
  return request('PATCH', `/tasks/${encodeURIComponent(id)}`, { body: changes, headers: ifMatch(version) });
}

export function deleteTask(id: string, version: number): Promise<void> {
  return request('DELETE', `/tasks/${encodeURIComponent(id)}`, { headers: ifMatch(version) });
}

function ifMatch(version: number): Record<string, string> {
  return { 'If-Match': `"${version}"` };
}
