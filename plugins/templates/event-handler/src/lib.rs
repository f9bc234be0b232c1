//! A template event handler: logs every task event it is handed and
//! publishes a small JSON summary of it to the topic of the `topic` setting.
//!
//! Replace the body of `handle` with what your handler should do; keep the
//! shape: log what you do, and answer `Permanent` for what no retry can fix
//! and `Retryable` for what a later attempt may get through.

wit_bindgen::generate!({
    world: "event-handler",
    // The WIT package of the host, relative to this crate's Cargo.toml.
    path: "../../wit",
});

use exports::todo::plugin::handler::{Event, Guest, HandlerError};
use todo::plugin::config;
use todo::plugin::log::{self, Level};
use todo::plugin::publish::{self, PublishError};
use todo::plugin::types::CallContext;

struct Handler;

impl Guest for Handler {
    /// Called once per event of `task-events` (at least once: a call that
    /// answered `ok` is not repeated). Everything published here is sent
    /// only if this call answers `ok`.
    fn handle(ctx: CallContext, event: Event, attempt: u32) -> Result<(), HandlerError> {
        log::log(Level::Info, "handle", &format!("{} {} (attempt {attempt})", event.type_, event.id));
        let topic = match config::get("topic") {
            Ok(Some(topic)) => topic,
            Ok(None) => return Err(permanent("the manifest has no `topic` under [settings]".into())),
            Err(error) => return Err(permanent(format!("cannot read the settings: {error:?}"))),
        };
        // `event.data` holds the task itself (docs/events.md) if you need it.
        let summary = serde_json::json!({
            "event_id": event.id,
            "type": event.type_,
            "task_id": event.subject,
            // Plugins have no clock: the host hands them the time.
            "handled_at": ctx.now,
        });
        // Keyed by task, so that one task's summaries stay in order.
        publish::publish(&topic, event.subject.as_deref(), summary.to_string().as_bytes()).map_err(|error| {
            // Neither refusal passes on a retry: the manifest or the record
            // has to change.
            let reason = match error {
                PublishError::NotGranted(reason) | PublishError::Invalid(reason) => reason,
            };
            permanent(format!("publishing the summary of {} to {topic} failed: {reason}", event.id))
        })
    }
}

/// Logs `message` and answers it as a permanent failure (the event is
/// dead-lettered). Logging first matters: the dead-letter record carries the
/// message, but the host's log is where an operator looks first.
fn permanent(message: String) -> HandlerError {
    log::log(Level::Error, "handle", &message);
    HandlerError::Permanent(message)
}

export!(Handler);
