//! The Redis connection the replicas share state through: command status,
//! the cache, token revocation, idempotency keys, locks and the
//! cluster-wide rate limit. Every command runs under `REDIS_TIMEOUT_MS`: a
//! slow Redis counts as down, and each caller decides how to degrade.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, ScriptInvocation};

use crate::config::RedisConfig;

#[derive(Clone)]
pub struct RedisClient {
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
        let client = redis::Client::open(url.as_str()).context("REDIS_URL is not a valid Redis URL")?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, manager_config)
            .await
            .context("cannot connect to Redis (REDIS_URL)")?;
        Ok(Some(Self { connection, timeout }))
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
