//! `publish`: records for Kafka topics the manifest grants. They are held
//! in the call's session and appended to the outbox in the call's own
//! transaction when it commits, so a failed or trapped call publishes
//! nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{NotGranted, Settle, SettleError};
use crate::db::HostConnection;
use crate::outbox::{self, OutboxRecord};
use crate::plugins::bindings::event_handler::todo::plugin::publish::{self, PublishError};

/// Largest payload a plugin may publish (Kafka's default record limit).
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut PublishSession,
) -> anyhow::Result<()> {
    publish::add_to_linker::<T, HasSelf<PublishSession>>(linker, get).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `publish` for a plugin granted no topic.
pub fn add_denied_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    publish::add_to_linker::<T, NotGranted>(linker, |_| NotGranted).map_err(|e| anyhow::anyhow!("{e}"))
}

impl publish::Host for NotGranted {
    async fn publish(&mut self, topic: String, _: Option<String>, _: Vec<u8>) -> Result<(), PublishError> {
        Err(PublishError::NotGranted(format!(
            "`publish` is not granted to this plugin (list `{topic}` as `publish = [\"…\"]` under [grants])"
        )))
    }
}

/// Per-call state: the topics the plugin may publish to, the headers its
/// records carry (the request's trace), and what it published so far.
pub struct PublishSession {
    granted: Arc<[String]>,
    headers: BTreeMap<String, String>,
    records: Vec<OutboxRecord>,
}

impl PublishSession {
    pub fn new(granted: Arc<[String]>, headers: BTreeMap<String, String>) -> Self {
        Self { granted, headers, records: Vec::new() }
    }
}

impl publish::Host for PublishSession {
    async fn publish(&mut self, topic: String, key: Option<String>, payload: Vec<u8>) -> Result<(), PublishError> {
        if !self.granted.contains(&topic) {
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
        self.records.push(OutboxRecord { topic, key, payload, headers: self.headers.clone() });
        Ok(())
    }
}

#[async_trait::async_trait]
impl Settle for PublishSession {
    async fn commit(&mut self, host: &mut HostConnection<'_>) -> Result<(), SettleError> {
        outbox::append(host, &self.records).await.map_err(|error| SettleError::new("publish", error))
    }

    async fn release(&mut self) {
        self.records.clear();
    }
}
