// The API's resources, as /openapi.json and the issue-20 contract describe them.

export type Role = 'admin' | 'user' | 'viewer';
export type TaskStatus = 'todo' | 'in_progress' | 'done';
export type Priority = 'low' | 'medium' | 'high';
export type SortField = 'created_at' | 'due_at' | 'priority';
export type SortOrder = 'asc' | 'desc';

export interface Task {
  id: string;
  owner_id: string;
  title: string;
  description: string | null;
  status: TaskStatus;
  priority: Priority;
  due_at: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}

/** The body of `POST /tasks`; `TaskChanges` (PATCH) is any part of it. */
export interface NewTask {
  title: string;
  description?: string | null;
  status?: TaskStatus;
  priority?: Priority;
  due_at?: string | null;
}
export type TaskChanges = Partial<NewTask>;

/** A cursor-paged answer (`next_cursor` absent or null on the last page). */
export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface User {
  id: string;
  email: string;
  display_name: string | null;
  role: Role;
  created_at: string;
  disabled: boolean;
  /** Signs in at an external identity provider: has no password here. */
  external: boolean;
}

export interface PluginIdentity {
  name: string;
  version: string;
  sha256: string;
  loaded_at: string;
}

export interface ReplicaVersion {
  replica: string;
  host: string;
  role: string;
  version: string;
  sha256: string;
  seen_at: string;
}

/** One row of `GET /admin/plugins`. */
export interface PluginOverview extends PluginIdentity {
  digest: string;
  kind: string;
  /** `serving`, `reload-failed` (see `last_failure`) or `circuit-open`. */
  state: string;
  last_failure?: string | null;
  calls: number;
  errors: number;
  traps: number;
  deadline_hits: number;
  p50_ms?: number | null;
  p99_ms?: number | null;
  /** Versions a rollback can return to, most recent first. */
  previous: PluginIdentity[];
  replicas: ReplicaVersion[];
}

export interface ReloadReport {
  loaded: PluginIdentity[];
  unchanged: string[];
  removed: string[];
  failed: { name: string; reason: string }[];
  not_in_service?: string[];
}

export type DeadLetterStatus = 'pending' | 'replayed';
export type ReplayOutcome = 'handled' | 'already-handled' | 'failed';

export interface DeadLetter {
  id: string;
  handler: string;
  event_id: string | null;
  event_type: string | null;
  subject: string | null;
  error: string;
  error_kind: 'retryable' | 'permanent' | 'malformed';
  attempts: number;
  dead_lettered_at: string;
  status: DeadLetterStatus;
  replayed_at: string | null;
  replay_outcome: 'handled' | 'already-handled' | null;
  last_replay_error: string | null;
  event: unknown;
  original: { topic: string; partition: number; offset: number };
}

export interface ReplayResult {
  id: string;
  outcome: ReplayOutcome;
  error: string | null;
}

export interface BulkReplayResult {
  handled: number;
  already_handled: number;
  failed: number;
}

export interface HealthCheck {
  /** `up`, `down`, `degraded` or `disabled`. */
  status: string;
  latency_ms?: number | null;
  detail?: string | null;
}

export interface HealthReport {
  /** `ready` or `unavailable`. */
  status: string;
  checks: Record<string, HealthCheck>;
  version: string;
  role: string;
  plugins: PluginIdentity[];
}

/** A CloudEvent of `GET /tasks/events` (docs/events.md). */
export interface TaskEvent {
  id: string;
  type: 'task.created' | 'task.updated' | 'task.deleted' | 'task.overdue';
  subject?: string;
  time?: string;
  data: { task: Task };
}
