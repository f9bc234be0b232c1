//! audit-log: the history of every task, kept by an event handler.
//!
//! Each `task.*` event becomes one `task_audit` row (the table is in the
//! plugin's own schema, made by its migrations/), and the `history` export
//! answers a task's rows for `GET /tasks/{id}/history`. Events arrive at
//! least once, so the row is keyed by the event id and a redelivered event
//! inserts nothing.

wit_bindgen::generate!({
    world: "history-handler",
    path: "../../wit",
});

use exports::todo::plugin::handler::{Event, Guest, HandlerError};
use exports::todo::plugin::history::{Guest as History, HistoryEntry, HistoryError};
use serde::Deserialize;
use serde_json::Value as Json;
use todo::plugin::sql::{self, SqlError, Value};
use todo::plugin::types::CallContext;

/// The part of an event's `data` (docs/events.md) the row keeps.
#[derive(Deserialize)]
struct EventData {
    task: Json,
    changes: Option<Json>,
}

/// The fields of `data.task` the row is indexed by.
#[derive(Deserialize)]
struct TaskKeys {
    id: String,
    owner_id: String,
}

struct AuditLog;

impl Guest for AuditLog {
    fn handle(ctx: CallContext, event: Event, _attempt: u32) -> Result<(), HandlerError> {
        if !event.type_.starts_with("task.") {
            return Ok(());
        }
        let data: EventData = serde_json::from_str(&event.data).map_err(|error| malformed(&event, error))?;
        let keys =
            TaskKeys::deserialize(&data.task).map_err(|error| malformed(&event, format!("data.task: {error}")))?;
        if let Some(subject) = &event.subject
            && *subject != keys.id
        {
            return Err(malformed(&event, format!("subject {subject} is not data.task.id {}", keys.id)));
        }
        // The ids go as text and are cast by the server, so a malformed one
        // is a data error with an SQLSTATE (22P02, permanent) rather than a
        // parameter the host refuses without one (which reads as retryable).
        sql::execute(
            "INSERT INTO task_audit (event_id, task_id, owner_id, event_type, task, changes, request_id, \
             occurred_at, recorded_at) VALUES ($1, $2::uuid, $3::uuid, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (event_id) DO NOTHING",
            &[
                Value::Text(Some(event.id.clone())),
                Value::Text(Some(keys.id)),
                Value::Text(Some(keys.owner_id)),
                Value::Text(Some(event.type_.clone())),
                Value::Json(Some(data.task.to_string())),
                Value::Json(data.changes.map(|changes| changes.to_string())),
                Value::Text(Some(ctx.request_id)),
                Value::Timestamp(Some(event.time)),
                Value::Timestamp(Some(ctx.now)),
            ],
        )
        .map_err(|error| sql_failure(&event, error))?;
        Ok(())
    }
}

fn malformed(event: &Event, detail: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("event {} ({}) has malformed data: {detail}", event.id, event.type_))
}

fn sql_failure(event: &Event, error: SqlError) -> HandlerError {
    let message = format!(
        "recording event {} in task_audit failed: {} ({})",
        event.id,
        error.message,
        error.code.as_deref().unwrap_or("no SQLSTATE")
    );
    if passing(&error) { HandlerError::Retryable(message) } else { HandlerError::Permanent(message) }
}

/// Connection trouble (08, and 53 such as too many connections),
/// serialization failures and deadlocks (40), lock timeouts (55P03),
/// statement timeouts and shutdowns (57) may pass on a retry; any other
/// error would only recur. No SQLSTATE: the host could not reach the
/// database at all.
fn passing(error: &SqlError) -> bool {
    match error.code.as_deref() {
        None => true,
        Some(code) => ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)) || code == "55P03",
    }
}

impl History for AuditLog {
    fn task_history(_: CallContext, task_id: String) -> Result<Vec<HistoryEntry>, HistoryError> {
        let rows = sql::query(
            "SELECT event_id, event_type, occurred_at, request_id, owner_id::text, (task ->> 'version')::bigint, \
             changes::text, task::text FROM task_audit WHERE task_id = $1::uuid \
             ORDER BY (task ->> 'version')::bigint, occurred_at, event_id",
            &[Value::Text(Some(task_id))],
        )
        .map_err(|error| match passing(&error) {
            true => HistoryError::Unavailable(error.message),
            false => HistoryError::Internal(error.message),
        })?;
        rows.rows.into_iter().map(entry).collect()
    }
}

fn entry(row: Vec<Value>) -> Result<HistoryEntry, HistoryError> {
    let malformed = || HistoryError::Internal("task_audit answered a row of unexpected types".into());
    let mut columns = row.into_iter();
    let mut next = || columns.next().ok_or_else(malformed);
    let text = |value: Value| match value {
        Value::Text(text) => Ok(text),
        _ => Err(malformed()),
    };
    Ok(HistoryEntry {
        event_id: text(next()?)?.ok_or_else(malformed)?,
        event_type: text(next()?)?.ok_or_else(malformed)?,
        occurred_at: match next()? {
            Value::Timestamp(Some(at)) => at,
            _ => return Err(malformed()),
        },
        request_id: text(next()?)?,
        owner_id: text(next()?)?.ok_or_else(malformed)?,
        version: match next()? {
            Value::Int(Some(version)) => version,
            _ => return Err(malformed()),
        },
        changes: text(next()?)?,
        task: text(next()?)?.ok_or_else(malformed)?,
    })
}

export!(AuditLog);
