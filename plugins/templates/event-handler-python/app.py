"""A template event handler in Python, the twin of plugins/templates/
event-handler (Rust): logs every task event it is handed and publishes a
small JSON summary of it to the topic of the `topic` setting.

Replace the body of `handle` with what your handler should do; keep the
shape: log what you do, and answer `Permanent` for what no retry can fix and
`Retryable` for what a later attempt may get through.

print() and tracebacks reach the host's log, tagged with the plugin's name
and the request id; time and random work, but take the time from `ctx.now`
(the same for the whole call).

How componentize-py maps the WIT:
- the export `handler` is the class `Handler` below, named after the
  interface (protocol `wit_world.exports.Handler`); its `handle` returns
  None for `ok` and raises `componentize_py_types.Err(HandlerError_...)` for
  `err`;
- an import returning `result<T, E>` returns T or raises `Err(E)`;
- any other uncaught exception is NOT turned into `err`: componentize-py
  prints the traceback to stderr (the host's log) and traps, which the host
  retries like a retryable error.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.handler import (
    Event,
    HandlerError,
    HandlerError_Permanent,
)
from wit_world.imports import config, log, publish
from wit_world.imports.log import Level
from wit_world.imports.publish import PublishError_Invalid, PublishError_NotGranted
from wit_world.imports.types import CallContext


class Handler(exports.Handler):
    """Called once per event of `task-events` (at least once: a call that
    answered `ok` is not repeated). Everything published here is sent only if
    this call answers `ok`."""

    def handle(self, ctx: CallContext, event: Event, attempt: int) -> None:
        log.log(Level.INFO, "handle", f"{event.type} {event.id} (attempt {attempt})")
        try:
            topic = config.get("topic")
        except Err as error:
            raise Err(permanent(f"cannot read the settings: {debug(error.value)}"))
        if topic is None:
            raise Err(permanent("the manifest has no `topic` under [settings]"))
        # `event.data` holds the task itself (docs/events.md) if you need it.
        # Sorted keys and no spaces: the same bytes as serde_json's `json!`.
        summary = json.dumps(
            {
                "event_id": event.id,
                "type": event.type,
                "task_id": event.subject,
                # Plugins have no clock: the host hands them the time.
                "handled_at": ctx.now,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        # Keyed by task, so that one task's summaries stay in order.
        try:
            publish.publish(topic, event.subject, summary.encode("utf-8"))
        except Err as error:
            # Neither refusal passes on a retry: the manifest or the record
            # has to change.
            reason = error.value.value  # PublishError_NotGranted | PublishError_Invalid
            raise Err(permanent(f"publishing the summary of {event.id} to {topic} failed: {reason}"))


def permanent(message: str) -> HandlerError:
    """Logs `message` and answers it as a permanent failure (the event is
    dead-lettered). Logging first matters: the dead-letter record carries the
    message, but the host's log is where an operator looks first."""
    log.log(Level.ERROR, "handle", message)
    return HandlerError_Permanent(message)


def debug(error: config.ConfigError) -> str:
    """Like Rust's `{:?}` of a `ConfigError` (`Io("...")`), near enough."""
    return f"Io({json.dumps(error.value, ensure_ascii=False)})"
