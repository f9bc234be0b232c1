//! Where a command stands. Pending commands are marked in Redis (the API
//! hit writes nothing to PostgreSQL); outcomes are rows of
//! `command_results`, written in the transaction that applied the command,
//! and win over the mark.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::Command;
use crate::auth::{Actor, Role};
use crate::redis_client::RedisClient;

/// How long a pending mark lives: a command still unapplied after this is
/// answered from `command_results` only.
const PENDING_TTL_SECS: u64 = 24 * 60 * 60;

#[derive(Clone)]
pub struct CommandStatus {
    pool: PgPool,
    redis: Option<RedisClient>,
}

/// `GET /commands/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandState {
    Pending {
        id: Uuid,
    },
    /// `result` is what the synchronous request would have answered.
    Applied {
        id: Uuid,
        #[schema(value_type = Object)]
        result: Value,
    },
    /// `problem` is the problem+json the synchronous request would have answered.
    Failed {
        id: Uuid,
        #[schema(value_type = Object)]
        problem: Value,
    },
}

impl CommandStatus {
    pub fn new(pool: PgPool, redis: Option<RedisClient>) -> Self {
        Self { pool, redis }
    }

    fn pending_key(id: Uuid) -> String {
        format!("todo:command:{id}")
    }

    /// Marks `command` pending. Best effort: without the mark the command
    /// is still applied; it just answers 404 until then.
    pub async fn mark_pending(&self, command: &Command) {
        let Some(redis) = &self.redis else { return };
        let mark = redis::cmd("SET")
            .arg(Self::pending_key(command.id))
            .arg(command.issuer.user_id.to_string())
            .arg("EX")
            .arg(PENDING_TTL_SECS)
            .clone();
        if let Err(error) = redis.run::<()>(&mark).await {
            tracing::warn!(command_id = %command.id, %error, "cannot mark the command pending");
        }
    }

    /// Makes sure `command`, which may or may not have reached the broker,
    /// is never applied from it: records it `withdrawn` unless the consumer
    /// has already finished it. `true` when withdrawn — the caller applies
    /// the write itself; `false` when the consumer was first.
    pub async fn withdraw(&self, command: &Command) -> Result<bool, sqlx::Error> {
        let recorded = sqlx::query(
            "INSERT INTO command_results (id, issuer_id, status, result, request_id) \
             VALUES ($1, $2, 'withdrawn', 'null', $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(command.id)
        .bind(command.issuer.user_id)
        .bind(&command.trace.request_id)
        .execute(&self.pool)
        .await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// The command's state as `actor` may see it: `None` for a command
    /// that is unknown or someone else's (the two are not told apart).
    pub async fn lookup(&self, actor: &Actor, id: Uuid) -> Result<Option<CommandState>, sqlx::Error> {
        let visible = |issuer: Uuid| actor.role == Role::Admin || issuer == actor.user_id;
        let row: Option<(Uuid, String, Value)> =
            sqlx::query_as("SELECT issuer_id, status, result FROM command_results WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        if let Some((issuer, status, result)) = row {
            let state = match status.as_str() {
                "applied" => CommandState::Applied { id, result },
                // Its id was never given to anyone.
                "withdrawn" => return Ok(None),
                _ => CommandState::Failed { id, problem: result },
            };
            return Ok(visible(issuer).then_some(state));
        }
        let Some(redis) = &self.redis else { return Ok(None) };
        let issuer = redis.run::<Option<String>>(redis::cmd("GET").arg(Self::pending_key(id))).await;
        Ok(match issuer {
            Ok(Some(issuer)) => {
                Uuid::parse_str(&issuer).ok().filter(|issuer| visible(*issuer)).map(|_| CommandState::Pending { id })
            }
            _ => None,
        })
    }
}
