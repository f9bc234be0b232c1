// A template event handler in JavaScript, the twin of plugins/templates/
// event-handler (Rust): logs every task event it is handed and publishes a
// small JSON summary of it to the topic of the `topic` setting.
//
// Replace the body of `handle` with what your handler should do; keep the
// shape: log what you do, and answer `permanent` for what no retry can fix
// and `retryable` for what a later attempt may get through.
//
// console.log and console.error reach the host's log, tagged with the
// plugin's name and the request id; Date.now() and Math.random() work, but
// take the time from `ctx.now` (the same for the whole call).
//
// How componentize-js maps the WIT:
// - imports are ES modules named `todo:plugin/NAME@0.1.0`, functions in
//   camelCase (`getAll`), enums as strings ('info'), variants as
//   `{ tag, val }`, `option<T>` as T or undefined (test with `== null`), `list<u8>` as Uint8Array;
// - an import returning `result<T, E>` returns T or throws an Error whose
//   `payload` is E;
// - the export `handler` is an object named after the interface; `handle`
//   returning normally is `ok`; throwing a value that is NOT an Error is `err`
//   with that value as the payload (or an Error with a `payload` property);
//   any other exception (TypeError, ...) is a trap: the host retries the
//   event, and its message is in the host's log.

import { log } from 'todo:plugin/log@0.1.0';
import { get as configGet } from 'todo:plugin/config@0.1.0';
import { publish } from 'todo:plugin/publish@0.1.0';

export const handler = {
  // Called once per event of `task-events` (at least once: a call that
  // answered `ok` is not repeated). Everything published here is sent only if
  // this call answers `ok`.
  handle(ctx, event, attempt) {
    log('info', 'handle', `${event.type} ${event.id} (attempt ${attempt})`);
    let topic;
    try {
      topic = configGet('topic');
    } catch (error) {
      throw permanent(`cannot read the settings: ${debug(payloadOf(error))}`);
    }
    if (topic == null) {
      throw permanent('the manifest has no `topic` under [settings]');
    }
    // `event.data` holds the task itself (docs/events.md) if you need it.
    // Keys in sorted order, no spaces: the same bytes as serde_json's `json!`.
    // `ctx.now` is an s64, i.e. a BigInt: JSON.stringify cannot write one.
    const summary =
      `{"event_id":${JSON.stringify(event.id)},` +
      `"handled_at":${ctx.now.toString()},` +
      `"task_id":${event.subject == null ? 'null' : JSON.stringify(event.subject)},` +
      `"type":${JSON.stringify(event.type)}}`;
    // Keyed by task, so that one task's summaries stay in order.
    try {
      publish(topic, event.subject, utf8(summary));
    } catch (error) {
      // Neither refusal (`not-granted`, `invalid`) passes on a retry: the
      // manifest or the record has to change.
      const reason = payloadOf(error).val;
      throw permanent(`publishing the summary of ${event.id} to ${topic} failed: ${reason}`);
    }
  },
};

// Logs `message` and answers it as a permanent failure (the event is
// dead-lettered). Logging first matters: the dead-letter record carries the
// message, but the host's log is where an operator looks first.
function permanent(message) {
  log('error', 'handle', message);
  return { tag: 'permanent', val: message };
}

// The `E` of a `result<T, E>` an import failed with; anything else is a bug
// of ours, rethrown (a trap).
function payloadOf(error) {
  if (error !== null && typeof error === 'object' && 'payload' in error) {
    return error.payload;
  }
  throw error;
}

// Like Rust's `{:?}` of a `config-error` (`Io("...")`), near enough.
function debug(error) {
  return `Io(${JSON.stringify(error.val)})`;
}

function utf8(text) {
  return new TextEncoder().encode(text);
}
