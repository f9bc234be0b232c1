// Live task changes from `GET /tasks/events`, kept connected: the stream ends
// when the access token expires (the next connection refreshes it through
// apiFetch's 401 handling) or when the server restarts, and resumes from the
// last event id seen.

import { apiFetch } from './client';
import { eventStreamParser } from './sse';
import type { TaskEvent } from './types';

/** `live`: connected; `retrying`: waiting to reconnect; `unavailable`: this
 * server has no event stream (or refused it for good). */
export type LiveState = 'connecting' | 'live' | 'retrying' | 'unavailable';

export interface TaskEventHandlers {
  onChange(event: TaskEvent): void;
  /** The position asked for is too old to resume from: reload the list. */
  onReset(): void;
  onState(state: LiveState): void;
}

/** The server follows no broker: polling `GET /tasks` is all there is. */
const NO_LIVE_EVENTS = '/problems/live-events-unavailable';

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;

/** Follows the stream until the returned function is called. */
export function followTaskEvents(handlers: TaskEventHandlers): () => void {
  const controller = new AbortController();
  void run(handlers, controller.signal);
  return () => controller.abort();
}

async function run(handlers: TaskEventHandlers, signal: AbortSignal): Promise<void> {
  let lastEventId: string | undefined;
  let retryMs = FIRST_RETRY_MS;
  const parser = eventStreamParser((event) => {
    lastEventId = event.lastEventId;
    if (event.type === 'reset') handlers.onReset();
    else if (event.type === 'task') {
      try {
        handlers.onChange(JSON.parse(event.data) as TaskEvent);
      } catch (error) {
        // One unreadable event must not end the stream.
        console.warn('unreadable task event', error);
      }
    }
  });

  while (!signal.aborted) {
    handlers.onState('connecting');
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (lastEventId !== undefined) headers['Last-Event-ID'] = lastEventId;
      const resuming = lastEventId !== undefined;
      const response = await apiFetch('/tasks/events', { headers, signal, cache: 'no-store' });
      if (await isPermanentRefusal(response)) {
        handlers.onState('unavailable');
        return;
      }
      if (response.ok && response.body) {
        handlers.onState('live');
        // Without a position to resume from, the stream starts from now:
        // whatever changed before it (since the list was read, or while
        // disconnected) is only in a fresh list.
        if (!resuming) handlers.onReset();
        await readStream(response.body, signal, (text) => {
          // Anything received, keep-alives included, proves the connection
          // healthy: the next outage starts its backoff afresh.
          retryMs = FIRST_RETRY_MS;
          parser.push(text);
        });
      } else {
        void response.body?.cancel();
      }
    } catch (error) {
      if (signal.aborted) return;
      console.warn('task event stream failed', error);
    }
    parser.discard();
    handlers.onState('retrying');
    await sleep(retryMs * (0.75 + Math.random() / 2), signal);
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  }
}

/** A 4xx other than 408/429 will not change by retrying: no route for the
 * stream (404, or 400 where `/tasks/{id}` takes `events` for an id), or a 401
 * after the refresh failed (signed out: the view goes away); nor will a
 * server that follows no broker. */
async function isPermanentRefusal(response: Response): Promise<boolean> {
  const status = response.status;
  if (status >= 400 && status < 500) return status !== 408 && status !== 429;
  if (status !== 503) return false;
  const problem = await response.clone().json().catch(() => null) as { type?: string } | null;
  return problem?.type === NO_LIVE_EVENTS;
}

async function readStream(body: ReadableStream<Uint8Array>, signal: AbortSignal, onText: (text: string) => void) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener('abort', cancel);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      onText(decoder.decode(value, { stream: true }));
    }
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
