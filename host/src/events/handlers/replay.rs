//! The dead letters as admins see them (`/admin/dead-letters`), and their
//! replay: the event handed to the handler serving now, through its ledger
//! (`attempt`), so an event already handled is not applied again.
//!
//! Invariants:
//! - One replay of a dead letter at a time: a replay holds the row's lock
//!   until its outcome is recorded.
//! - A dead letter is `replayed` once a replay handled it or found it
//!   handled, and a replayed one is never handed over again (its ledger
//!   row may be pruned since); a failed replay leaves it pending with its
//!   error.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::attempt::{Handed, Handler, Short, wit_event};
use super::dead_letter::{DeadLetterRow, DeadLetterView, ROW_COLUMNS};
use super::delivery::Attempt;
use crate::plugins::PluginRegistry;
use crate::tasks::event::TaskEvent;
use crate::trace::RequestTrace;

/// Most dead letters one bulk replay takes.
const MAX_BULK_REPLAY: usize = 1000;

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplayStatus {
    #[default]
    Pending,
    Replayed,
    All,
}

/// `GET /admin/dead-letters` after parsing.
#[derive(Debug, Default)]
pub struct DeadLetterQuery {
    pub handler: Option<String>,
    pub status: ReplayStatus,
    pub limit: u32,
    /// The last id of the previous page.
    pub after: Option<Uuid>,
}

/// One page of dead letters, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// What a replay came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayOutcome {
    /// The handler handled it now.
    Handled,
    /// The ledger says it was handled before: not applied again.
    AlreadyHandled,
    /// The handler failed again (see `error`); it stays pending.
    Failed,
}

/// `POST /admin/dead-letters/{id}/replay`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayResult {
    pub id: Uuid,
    pub outcome: ReplayOutcome,
    pub error: Option<String>,
}

/// `POST /admin/dead-letters/replay`: how the replays of a handler's
/// pending dead letters came out.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct BulkReplay {
    pub handled: usize,
    pub already_handled: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter has this id")]
    NotFound,
    #[error("no event handler named `{0}` is in service here")]
    HandlerNotInService(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct DeadLetters {
    pool: PgPool,
    plugins: Arc<PluginRegistry>,
}

impl DeadLetters {
    pub fn new(pool: PgPool, plugins: Arc<PluginRegistry>) -> Self {
        Self { pool, plugins }
    }

    pub async fn list(&self, query: DeadLetterQuery) -> Result<DeadLetterPage, sqlx::Error> {
        let limit = query.limit.clamp(1, 100);
        let rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
            "SELECT {ROW_COLUMNS} FROM dead_letters \
             WHERE ($1::text IS NULL OR handler = $1) \
               AND ($2 = 'all' OR ($2 = 'pending') = (replayed_at IS NULL)) \
               AND ($3::uuid IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(&query.handler)
        .bind(match query.status {
            ReplayStatus::Pending => "pending",
            ReplayStatus::Replayed => "replayed",
            ReplayStatus::All => "all",
        })
        .bind(query.after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<DeadLetterView> = rows.into_iter().take(limit as usize).map(DeadLetterView::from).collect();
        let next_cursor = more.then(|| items.last().map(|last| last.id.to_string())).flatten();
        Ok(DeadLetterPage { items, next_cursor })
    }

    /// Replays the dead letter `id` (see the module's doc).
    pub async fn replay(&self, id: Uuid, trace: &RequestTrace) -> Result<ReplayResult, ReplayError> {
        let mut lock = self.pool.begin().await?;
        let row: DeadLetterRow =
            sqlx::query_as(&format!("SELECT {ROW_COLUMNS} FROM dead_letters WHERE id = $1 FOR UPDATE"))
                .bind(id)
                .fetch_optional(&mut *lock)
                .await?
                .ok_or(ReplayError::NotFound)?;
        // Replayed before: the ledger that proved it may be pruned since.
        if row.replayed_at.is_some() {
            return Ok(ReplayResult { id, outcome: ReplayOutcome::AlreadyHandled, error: None });
        }
        let (outcome, error) = self.hand_over(&row, trace).await?;
        let recorded = match outcome {
            ReplayOutcome::Failed => {
                sqlx::query("UPDATE dead_letters SET last_replay_error = $2 WHERE id = $1").bind(id).bind(&error)
            }
            handled => sqlx::query(
                "UPDATE dead_letters SET replayed_at = coalesce(replayed_at, now()), \
                 replay_outcome = coalesce(replay_outcome, $2), last_replay_error = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(if handled == ReplayOutcome::Handled { "handled" } else { "already-handled" }),
        };
        recorded.execute(&mut *lock).await?;
        lock.commit().await?;
        tracing::info!(dead_letter = %id, handler = %row.handler, ?outcome, ?error, "dead letter replayed");
        Ok(ReplayResult { id, outcome, error })
    }

    /// Replays `handler`'s pending dead letters, oldest first (at most
    /// `MAX_BULK_REPLAY` in one go).
    pub async fn replay_all(&self, handler: &str, trace: &RequestTrace) -> Result<BulkReplay, ReplayError> {
        if self.plugins.handler(handler).is_none() {
            return Err(ReplayError::HandlerNotInService(handler.to_string()));
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM dead_letters WHERE handler = $1 AND replayed_at IS NULL ORDER BY id LIMIT $2",
        )
        .bind(handler)
        .bind(MAX_BULK_REPLAY as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut summary = BulkReplay::default();
        for id in ids {
            match self.replay(id, trace).await {
                Ok(result) => match result.outcome {
                    ReplayOutcome::Handled => summary.handled += 1,
                    ReplayOutcome::AlreadyHandled => summary.already_handled += 1,
                    ReplayOutcome::Failed => summary.failed += 1,
                },
                // Removed meanwhile (the retention of replayed ones).
                Err(ReplayError::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(summary)
    }

    /// Hands the dead letter's event to its handler, through the ledger.
    async fn hand_over(
        &self,
        row: &DeadLetterRow,
        trace: &RequestTrace,
    ) -> Result<(ReplayOutcome, Option<String>), ReplayError> {
        let plugin =
            self.plugins.handler(&row.handler).ok_or_else(|| ReplayError::HandlerNotInService(row.handler.clone()))?;
        let event = match TaskEvent::parse(&row.payload) {
            Ok(event) => wit_event(&event),
            Err(error) => return Ok((ReplayOutcome::Failed, Some(format!("the record is not a task event: {error}")))),
        };
        let span = tracing::info_span!("replay", handler = %row.handler, event_id = %event.id);
        let handler = Handler { name: &row.handler, plugin, pool: &self.pool };
        let handed = Handed { trace, event: &event, span: &span };
        let attempt = row.attempts.max(0) as u32 + 1;
        Ok(match handler.attempt(std::slice::from_ref(&handed), attempt, &CancellationToken::new()).await {
            Ok(0) => (ReplayOutcome::AlreadyHandled, None),
            Ok(_) => (ReplayOutcome::Handled, None),
            Err(Short::Event { outcome, .. } | Short::Batch(outcome)) => (ReplayOutcome::Failed, Some(why(outcome))),
            Err(Short::Interrupted) => (ReplayOutcome::Failed, Some("interrupted".into())),
        })
    }
}

fn why(outcome: Attempt) -> String {
    match outcome {
        Attempt::Handled => "handled".into(),
        Attempt::Permanent(error) => format!("permanent: {error}"),
        Attempt::Failed(error) => error,
        Attempt::Infrastructure(error) => format!("not the handler's doing: {error}"),
    }
}
