//! notifier: tells people what happened to their tasks.
//!
//! Turns task events into the notifications of docs/events.md on the
//! `notifications` topic, keyed by the recipient so that one person's
//! notifications stay in order. `publish` goes through the host's outbox, so
//! the notifications of an event are published exactly when this call
//! succeeds, all of them or none.

mod notification;
mod time;

wit_bindgen::generate!({
    world: "event-handler",
    path: "../../wit",
});

use exports::todo::plugin::handler::{Event, Guest, HandlerError};
use todo::plugin::publish::{self, PublishError};
use todo::plugin::types::CallContext;

const TOPIC: &str = "notifications";

struct Notifier;

impl Guest for Notifier {
    fn handle(_ctx: CallContext, event: Event, _attempt: u32) -> Result<(), HandlerError> {
        let notifications = notification::for_event(&event).map_err(|detail| {
            HandlerError::Permanent(format!("event {} ({}) has malformed data: {detail}", event.id, event.type_))
        })?;
        for notification in notifications {
            let payload = serde_json::to_vec(&notification).map_err(|error| {
                HandlerError::Permanent(format!("the {} notification cannot be encoded: {error}", notification.kind))
            })?;
            // Neither refusal can pass on a retry: the manifest or the
            // record would have to change.
            publish::publish(TOPIC, Some(&notification.recipient_id), &payload).map_err(|error| {
                let reason = match error {
                    PublishError::NotGranted(reason) => format!("not granted: {reason}"),
                    PublishError::Invalid(reason) => format!("invalid: {reason}"),
                };
                HandlerError::Permanent(format!(
                    "publishing the {} notification of event {} to {TOPIC} failed: {reason}",
                    notification.kind, event.id
                ))
            })?;
        }
        Ok(())
    }
}

export!(Notifier);
