//! The Redis connection the replicas share state through: command status,
//! the cache, token revocation, idempotency keys, locks and the
//! cluster-wide rate limit. Every command runs under `REDIS_TIMEOUT_MS`: a
//! slow Redis counts as down, and each caller decides how to degrade.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, Cmd, FromRedisValue, Pipeline, ScriptInvocation, TlsCertificates};
use tokio_util::sync::CancellationToken;

use crate::config::RedisConfig;

/// The first wait before subscribing again after losing Redis; doubled on
/// each failure up to the longest.
const FIRST_RESUBSCRIBE_DELAY: Duration = Duration::from_millis(100);
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct RedisClient {
    /// For the subscriptions, which take connections of their own.
    client: redis::Client,
    connection: ConnectionManager,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("Redis is unavailable: {0}")]
pub struct RedisUnavailable(String);

impl RedisClient {
    /// `None` when no Redis is configured. The connection manager
    /// reconnects by itself after an outage.
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.redis_url else { return Ok(None) };
        let timeout = config.timeout();
        let client = client(url, config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .context("cannot connect to Redis (REDIS_URL; with rediss://, is REDIS_CA_FILE the server's CA?)")?;
        Ok(Some(Self { client, connection, timeout }))
    }

    pub async fn run<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, RedisUnavailable> {
        let mut connection = self.connection.clone();
        self.bounded(command.query_async(&mut connection)).await
    }

    pub async fn pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> Result<T, RedisUnavailable> {
        let mut connection = self.connection.clone();
        self.bounded(pipeline.query_async(&mut connection)).await
    }

    /// Runs a Lua script (EVALSHA, loading it on the first miss).
    pub async fn script<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, RedisUnavailable> {
        let mut connection = self.connection.clone();
        self.bounded(invocation.invoke_async(&mut connection)).await
    }

    async fn bounded<T>(&self, request: impl Future<Output = redis::RedisResult<T>>) -> Result<T, RedisUnavailable> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(RedisUnavailable(error.to_string())),
            Err(_) => Err(RedisUnavailable(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }
}

/// A client of `url`: over TLS for `rediss://`, verifying the server
/// against REDIS_CA_FILE (else the system's roots), presenting
/// REDIS_CLIENT_CERT_FILE when set.
fn client(url: &str, config: &RedisConfig) -> anyhow::Result<redis::Client> {
    let invalid = "REDIS_URL is not a valid Redis URL";
    let (ca, cert, key) = (&config.redis_ca_file, &config.redis_client_cert_file, &config.redis_client_key_file);
    anyhow::ensure!(
        !url.contains("#insecure"),
        "REDIS_URL's `#insecure` would skip verifying the server's certificate: give its CA as REDIS_CA_FILE instead"
    );
    anyhow::ensure!(
        url.starts_with("rediss://") || (ca.is_none() && cert.is_none() && key.is_none()),
        "REDIS_CA_FILE and REDIS_CLIENT_CERT_FILE/KEY need a rediss:// REDIS_URL: with redis:// nothing would use them"
    );
    if ca.is_none() && cert.is_none() && key.is_none() {
        return redis::Client::open(url).context(invalid);
    }
    let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    let client_tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? }),
        (None, None) => None,
        _ => anyhow::bail!("REDIS_CLIENT_CERT_FILE and REDIS_CLIENT_KEY_FILE go together"),
    };
    let root_cert = ca.as_deref().map(read).transpose()?;
    redis::Client::build_with_tls(url, TlsCertificates { client_tls, root_cert }).context(invalid)
}

impl RedisClient {
    /// Hands every message published on `channel` to `on_message` until
    /// `shutdown`, subscribing again (with backoff) whenever the connection
    /// drops. Pub/sub reaches the subscribers connected at the time: what
    /// is published meanwhile is lost, so what travels this way must be a
    /// hint whose loss something else makes up for.
    pub async fn follow_channel<F: Future<Output = ()>>(
        &self,
        channel: &str,
        shutdown: CancellationToken,
        mut on_message: impl FnMut(String) -> F,
    ) {
        let mut delay = FIRST_RESUBSCRIBE_DELAY;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = subscribed(&self.client, channel, &mut delay, &mut on_message) => match ended {
                    Ok(()) => tracing::warn!(channel, "the Redis subscription ended"),
                    Err(error) => tracing::warn!(channel, %error, "cannot subscribe to the Redis channel"),
                },
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
        }
    }
}

/// One subscription, until its connection drops; `delay` starts over once
/// it is established.
async fn subscribed<F: Future<Output = ()>>(
    client: &redis::Client,
    channel: &str,
    delay: &mut Duration,
    on_message: &mut impl FnMut(String) -> F,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    *delay = FIRST_RESUBSCRIBE_DELAY;
    tracing::info!(channel, "following the Redis channel");
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        match message.get_payload::<String>() {
            Ok(payload) => on_message(payload).await,
            Err(error) => tracing::warn!(channel, %error, "skipping an unreadable message"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Settings {
        #[command(flatten)]
        redis: RedisConfig,
    }

    fn settings(args: &[&str]) -> RedisConfig {
        Settings::parse_from(std::iter::once("todo-host").chain(args.iter().copied())).redis
    }

    #[test]
    fn tls_settings_a_plain_url_would_not_use_are_refused() {
        let ca = ["--redis-ca-file", "/etc/redis/ca.pem"];
        let error = client("redis://127.0.0.1/0", &settings(&ca)).unwrap_err().to_string();
        assert!(error.contains("rediss://"), "{error}");
        let key_only = settings(&["--redis-client-key-file", "/etc/redis/client.key"]);
        assert!(client("redis://127.0.0.1/0", &key_only).is_err());
        assert!(client("rediss://127.0.0.1/0#insecure", &settings(&[])).is_err(), "no unverified TLS");
        assert!(client("redis://127.0.0.1/0", &settings(&[])).is_ok());
    }
}
