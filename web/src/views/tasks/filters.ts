// The list's filters and sort as the form holds them (strings, as inputs
// give them), turned into the query of `GET /tasks`, and the same test
// applied to a task that arrives by the event stream.

import type { TaskQuery } from '../../api/tasks';
import type { Priority, SortField, SortOrder, Task, TaskStatus } from '../../api/types';
import { fromLocalInput } from '../../format';

export interface FilterForm {
  status: '' | TaskStatus;
  priority: '' | Priority;
  q: string;
  dueAfter: string;
  dueBefore: string;
  sort: SortField;
  order: SortOrder;
}

export const NO_FILTERS: FilterForm = { status: '', priority: '', q: '', dueAfter: '', dueBefore: '', sort: 'created_at', order: 'desc' };

export function toQuery(form: FilterForm): TaskQuery {
  return {
    status: form.status || undefined,
    priority: form.priority || undefined,
    q: form.q.trim() || undefined,
    due_after: fromLocalInput(form.dueAfter) ?? undefined,
    due_before: fromLocalInput(form.dueBefore) ?? undefined,
    sort: form.sort,
    order: form.order,
  };
}

/** Whether the list of `query` shows `task` (the server's rules, as far as they can be told here). */
export function matches(task: Task, query: TaskQuery): boolean {
  if (query.status && task.status !== query.status) return false;
  if (query.priority && task.priority !== query.priority) return false;
  if (query.q && !task.title.toLowerCase().includes(query.q.toLowerCase())) return false;
  if (query.due_after && (!task.due_at || Date.parse(task.due_at) <= Date.parse(query.due_after))) return false;
  if (query.due_before && (!task.due_at || Date.parse(task.due_at) >= Date.parse(query.due_before))) return false;
  return true;
}
