//! `publish`: records for Kafka topics the manifest grants. They are held
//! in the call's state and appended to the outbox in the call's own
//! transaction when it commits (see `call`), so a failed or trapped call
//! publishes nothing.

use wasmtime::component::{HasSelf, Linker};

use crate::events::OutboxRecord;
use crate::plugins::bindings::event_handler::todo::plugin::publish::{self, PublishError};
use crate::plugins::call::CallState;

/// Largest payload a plugin may publish (Kafka's default record limit).
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

pub fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    publish::add_to_linker::<_, HasSelf<CallState>>(linker, |state| state).map_err(|e| anyhow::anyhow!("{e}"))
}

impl publish::Host for CallState {
    async fn publish(&mut self, topic: String, key: Option<String>, payload: Vec<u8>) -> Result<(), PublishError> {
        if !self.grants.publish.contains(&topic) {
            return Err(PublishError::NotGranted(format!(
                "the manifest does not grant publishing to `{topic}` (add it to [grants] publish)"
            )));
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(PublishError::Invalid(format!(
                "the payload has {} bytes; at most {MAX_PAYLOAD_BYTES} may be published",
                payload.len()
            )));
        }
        let headers = self.trace.headers();
        self.published.push(OutboxRecord { topic, key, payload, headers });
        Ok(())
    }
}
