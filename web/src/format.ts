// How instants, durations and enumerations read on screen, and the
// conversions of the `datetime-local` inputs (local wall time, no zone).

import type { Priority, TaskStatus } from './api/types';

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatInstant(instant: string | null | undefined): string {
  return instant ? dateTime.format(new Date(instant)) : '—';
}

export function formatMs(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '—' : `${ms.toLocaleString(undefined, { maximumFractionDigits: 1 })} ms`;
}

/** An instant as a `datetime-local` input shows it: the viewer's wall time. */
export function toLocalInput(instant: string | null | undefined): string {
  if (!instant) return '';
  const date = new Date(instant);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/** A `datetime-local` value as an instant (RFC 3339, UTC); null when empty. */
export function fromLocalInput(value: string): string | null {
  return value ? new Date(value).toISOString() : null;
}

export const STATUS_LABELS: Record<TaskStatus, string> = { todo: 'To do', in_progress: 'In progress', done: 'Done' };
export const PRIORITY_LABELS: Record<Priority, string> = { low: 'Low', medium: 'Medium', high: 'High' };
