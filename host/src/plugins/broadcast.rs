//! Plugin actions announced to every replica: a reload, rollback or upload
//! done by one replica is announced on a Redis pub/sub channel, and every
//! other replica subscribed to it follows (`delivery`) — so they all end up
//! serving the same versions.
//!
//! Pub/sub delivers to the replicas connected at the time; the others catch
//! up with uploads and rollbacks by the deployments' poll, and with
//! directory reloads when they start.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::redis_client::RedisClient;

/// What a replica did; an upload is announced as a reload of its plugin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Reload {
        name: Option<String>,
    },
    /// `digest`: the version it serves now (absent from releases before
    /// plugin delivery).
    Rollback {
        name: String,
        #[serde(default)]
        digest: Option<String>,
    },
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

    /// Tells the other replicas what this one did.
    pub async fn announce(&self, action: Action) {
        let announcement = Announcement { origin: self.origin, action };
        let payload = serde_json::to_string(&announcement).expect("an announcement serialises");
        match self.redis.run::<i64>(redis::cmd("PUBLISH").arg(&self.channel).arg(&payload)).await {
            Ok(replicas) => tracing::info!(?announcement, replicas, "plugin action announced to the other replicas"),
            Err(error) => {
                tracing::error!(?announcement, %error, "cannot announce a plugin action; other replicas keep their versions")
            }
        }
    }

    /// Hands the other replicas' announcements to `follow` until
    /// `shutdown`, one at a time.
    pub async fn follow<F: Future<Output = ()>>(self, shutdown: CancellationToken, follow: impl Fn(Action) -> F) {
        self.redis
            .follow_channel(&self.channel, shutdown, |payload| {
                let action = match serde_json::from_str::<Announcement>(&payload) {
                    Ok(announcement) if announcement.origin == self.origin => None,
                    Ok(announcement) => Some(announcement.action),
                    Err(error) => {
                        tracing::warn!(%payload, %error, "skipping an unreadable plugin announcement");
                        None
                    }
                };
                let followed = action.map(&follow);
                async move {
                    if let Some(followed) = followed {
                        followed.await;
                    }
                }
            })
            .await;
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
        let read: Announcement = serde_json::from_str(&format!(
            r#"{{"origin":"{origin}","action":"rollback","name":"kv-store","digest":"ab"}}"#
        ))
        .unwrap();
        assert!(
            matches!(read.action, Action::Rollback { name, digest } if name == "kv-store" && digest.as_deref() == Some("ab"))
        );
        let older: Announcement =
            serde_json::from_str(&format!(r#"{{"origin":"{origin}","action":"rollback","name":"kv-store"}}"#)).unwrap();
        assert!(matches!(older.action, Action::Rollback { digest: None, .. }), "an older release's announcement");
    }
}
