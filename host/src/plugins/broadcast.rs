//! Plugin administration that reaches every replica: a reload or rollback
//! asked of one replica is announced on a Redis pub/sub channel, and every
//! other replica subscribed to it does the same with its own plugin
//! directory — so they all end up serving the same versions.
//!
//! Pub/sub delivers to the replicas connected at the time; a replica that
//! was disconnected (or starts later) loads what the plugin directory
//! holds when it starts, which is what the announcement would have made
//! it load anyway.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::PluginRegistry;
use crate::redis_client::{RedisClient, follow_channel};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
enum Action {
    Reload { name: Option<String> },
    Rollback { name: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    /// The replica that did it first (and ignores its own announcement).
    origin: Uuid,
    #[serde(flatten)]
    action: Action,
}

#[derive(Clone)]
pub struct PluginBroadcast {
    redis: RedisClient,
    channel: String,
    origin: Uuid,
}

impl PluginBroadcast {
    pub fn new(redis: RedisClient, channel: String) -> Self {
        Self { redis, channel, origin: Uuid::new_v4() }
    }

    /// Tells the other replicas to reload `name` (every plugin: `None`).
    pub async fn reloaded(&self, name: Option<&str>) {
        self.announce(Action::Reload { name: name.map(str::to_string) }).await;
    }

    /// Tells the other replicas to roll `name` back.
    pub async fn rolled_back(&self, name: &str) {
        self.announce(Action::Rollback { name: name.to_string() }).await;
    }

    async fn announce(&self, action: Action) {
        let announcement = Announcement { origin: self.origin, action };
        let payload = serde_json::to_string(&announcement).expect("an announcement serialises");
        match self.redis.run::<i64>(redis::cmd("PUBLISH").arg(&self.channel).arg(&payload)).await {
            Ok(replicas) => tracing::info!(?announcement, replicas, "plugin action announced to the other replicas"),
            Err(error) => {
                tracing::error!(?announcement, %error, "cannot announce a plugin action; other replicas keep their versions")
            }
        }
    }

    /// Follows the other replicas' announcements until `shutdown`.
    pub async fn follow(self, redis_url: String, registry: Arc<PluginRegistry>, shutdown: CancellationToken) {
        follow_channel(&redis_url, &self.channel, shutdown, |payload| {
            let (registry, origin) = (registry.clone(), self.origin);
            async move {
                match serde_json::from_str::<Announcement>(&payload) {
                    Ok(announcement) if announcement.origin == origin => {}
                    Ok(announcement) => follow(&registry, announcement.action).await,
                    Err(error) => tracing::warn!(%payload, %error, "skipping an unreadable plugin announcement"),
                }
            }
        })
        .await;
    }
}

async fn follow(registry: &Arc<PluginRegistry>, action: Action) {
    match action {
        Action::Reload { name } => match registry.reload(name.as_deref()).await {
            Ok(report) => tracing::info!(?report, "reloaded plugins as another replica did"),
            Err(error) => tracing::warn!(%error, "cannot reload as another replica did"),
        },
        Action::Rollback { name } => match registry.rollback(&name) {
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!(plugin = %name, "cannot roll back as another replica did: no earlier version"),
            Err(error) => tracing::warn!(%error, "cannot roll back as another replica did"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_as_written() {
        let origin = Uuid::new_v4();
        let text = serde_json::to_string(&Announcement { origin, action: Action::Reload { name: None } }).unwrap();
        assert_eq!(text, format!(r#"{{"origin":"{origin}","action":"reload","name":null}}"#));
        let read: Announcement =
            serde_json::from_str(&format!(r#"{{"origin":"{origin}","action":"rollback","name":"kv-store"}}"#)).unwrap();
        assert!(matches!(read.action, Action::Rollback { name } if name == "kv-store"));
    }
}
