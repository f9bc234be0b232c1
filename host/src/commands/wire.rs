//! The command as `task-commands` carries it: an explicit, versioned wire
//! format, apart from the types the code works with, so that a host built
//! from newer code still applies what an older replica queued.
//!
//! Version 1 is the format of the first release, which had no `version`
//! member: a record without one is version 1. A change that old consumers
//! could misread gets a new version; consumers are upgraded before the
//! producers that write it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Command;
use crate::auth::{Actor, Role};
use crate::tasks::model::{Priority, TaskPatch, TaskStatus};
use crate::tasks::write::{Creation, PreparedWrite, ScopedOperation, StoreOperation};
use crate::trace::RequestTrace;
use crate::validation::present;

/// The newest version this host writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct WireCommand {
    #[serde(default = "first_version")]
    version: u32,
    id: Uuid,
    issuer: WireActor,
    trace: WireTrace,
    issued_at: DateTime<Utc>,
    write: WireWrite,
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct WireActor {
    user_id: Uuid,
    role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireTrace {
    request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireWrite {
    Single { operation: WireScoped },
    Batch { operations: Vec<WireScoped> },
}

#[derive(Debug, Serialize, Deserialize)]
struct WireScoped {
    scope: Option<Uuid>,
    operation: WireOperation,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum WireOperation {
    Create {
        id: Uuid,
        owner_id: Uuid,
        title: String,
        description: Option<String>,
        status: TaskStatus,
        priority: Priority,
        due_at: Option<DateTime<Utc>>,
    },
    Update {
        id: Uuid,
        patch: WirePatch,
        expected_version: Option<i64>,
    },
    Delete {
        id: Uuid,
        expected_version: Option<i64>,
    },
}

/// Absent members are left alone; `null` clears `description` / `due_at`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WirePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    due_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a command: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("command version {0} is newer than this host reads ({VERSION})")]
    UnknownVersion(u32),
}

/// The record's payload.
pub fn encode(command: &Command) -> Vec<u8> {
    let wire = WireCommand {
        version: VERSION,
        id: command.id,
        issuer: WireActor { user_id: command.issuer.user_id, role: command.issuer.role },
        trace: WireTrace {
            request_id: command.trace.request_id.clone(),
            traceparent: command.trace.traceparent.clone(),
        },
        issued_at: command.issued_at,
        write: match &command.write {
            PreparedWrite::Single { operation } => WireWrite::Single { operation: scoped_to_wire(operation) },
            PreparedWrite::Batch { operations } => {
                WireWrite::Batch { operations: operations.iter().map(scoped_to_wire).collect() }
            }
        },
    };
    serde_json::to_vec(&wire).expect("a command serialises")
}

pub fn decode(payload: &[u8]) -> Result<Command, DecodeError> {
    let wire: WireCommand = serde_json::from_slice(payload)?;
    if wire.version > VERSION {
        return Err(DecodeError::UnknownVersion(wire.version));
    }
    Ok(Command {
        id: wire.id,
        issuer: Actor { user_id: wire.issuer.user_id, role: wire.issuer.role },
        trace: RequestTrace { request_id: wire.trace.request_id, traceparent: wire.trace.traceparent },
        issued_at: wire.issued_at,
        write: match wire.write {
            WireWrite::Single { operation } => PreparedWrite::Single { operation: scoped_from_wire(operation) },
            WireWrite::Batch { operations } => {
                PreparedWrite::Batch { operations: operations.into_iter().map(scoped_from_wire).collect() }
            }
        },
    })
}

fn scoped_to_wire(scoped: &ScopedOperation) -> WireScoped {
    let operation = match &scoped.operation {
        StoreOperation::Create(task) => WireOperation::Create {
            id: task.id,
            owner_id: task.owner_id,
            title: task.title.clone(),
            description: task.description.clone(),
            status: task.status,
            priority: task.priority,
            due_at: task.due_at,
        },
        StoreOperation::Update { id, patch, expected_version } => WireOperation::Update {
            id: *id,
            patch: WirePatch {
                title: patch.title.clone(),
                description: patch.description.clone(),
                status: patch.status,
                priority: patch.priority,
                due_at: patch.due_at,
                owner_id: patch.owner_id,
            },
            expected_version: *expected_version,
        },
        StoreOperation::Delete { id, expected_version } => {
            WireOperation::Delete { id: *id, expected_version: *expected_version }
        }
    };
    WireScoped { scope: scoped.scope, operation }
}

fn scoped_from_wire(scoped: WireScoped) -> ScopedOperation {
    let operation = match scoped.operation {
        WireOperation::Create { id, owner_id, title, description, status, priority, due_at } => {
            StoreOperation::Create(Creation { id, owner_id, title, description, status, priority, due_at })
        }
        WireOperation::Update { id, patch, expected_version } => StoreOperation::Update {
            id,
            patch: TaskPatch {
                title: patch.title,
                description: patch.description,
                status: patch.status,
                priority: patch.priority,
                due_at: patch.due_at,
                owner_id: patch.owner_id,
            },
            expected_version,
        },
        WireOperation::Delete { id, expected_version } => StoreOperation::Delete { id, expected_version },
    };
    ScopedOperation { scope: scoped.scope, operation }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands as the first release (no `version` member) produced them,
    /// recorded from its `serde_json` output: a single create, a patch that
    /// clears `due_at` and leaves the rest, and a batch with a delete.
    const RECORDED_V1: [&str; 3] = [
        r#"{"id":"019ad9a0-7c44-7a51-9a59-2f37e5b1c001","issuer":{"user_id":"019ad9a0-0000-7000-8000-000000000001","role":"admin"},"trace":{"request_id":"5d3c0a2e-1b7f-4f5e-9a61-0c4f3f1b2a10","traceparent":"00-5d3c0a2e1b7f4f5e9a610c4f3f1b2a10-7a3b2c1d0e9f8a7b-01"},"issued_at":"2026-11-30T09:12:03.481207Z","write":{"kind":"single","operation":{"scope":null,"operation":{"op":"create","id":"019ad9a0-7c44-7a51-9a59-2f37e5b1c0aa","owner_id":"019ad9a0-0000-7000-8000-000000000002","title":"Queued before the upgrade","description":"kept","status":"in_progress","priority":"high","due_at":"2030-01-31T17:00:00Z"}}}}"#,
        r#"{"id":"019ad9a0-7c44-7a51-9a59-2f37e5b1c002","issuer":{"user_id":"019ad9a0-0000-7000-8000-000000000002","role":"user"},"trace":{"request_id":"req-2"},"issued_at":"2026-11-30T09:12:04.000001Z","write":{"kind":"single","operation":{"scope":"019ad9a0-0000-7000-8000-000000000002","operation":{"op":"update","id":"019ad9a0-7c44-7a51-9a59-2f37e5b1c0aa","patch":{"title":"Renamed","due_at":null},"expected_version":1}}}}"#,
        r#"{"id":"019ad9a0-7c44-7a51-9a59-2f37e5b1c003","issuer":{"user_id":"019ad9a0-0000-7000-8000-000000000002","role":"user"},"trace":{"request_id":"req-3"},"issued_at":"2026-11-30T09:12:05Z","write":{"kind":"batch","operations":[{"scope":"019ad9a0-0000-7000-8000-000000000002","operation":{"op":"delete","id":"019ad9a0-7c44-7a51-9a59-2f37e5b1c0aa","expected_version":null}}]}}"#,
    ];

    #[test]
    fn commands_an_older_release_queued_still_decode() {
        let [create, update, batch] = RECORDED_V1.map(|json| decode(json.as_bytes()).unwrap());
        assert_eq!(create.issuer.role, Role::Admin);
        let PreparedWrite::Single {
            operation: ScopedOperation { scope: None, operation: StoreOperation::Create(task) },
        } = &create.write
        else {
            panic!("{:?}", create.write)
        };
        assert_eq!(
            (task.title.as_str(), task.status, task.priority),
            ("Queued before the upgrade", TaskStatus::InProgress, Priority::High)
        );
        let PreparedWrite::Single {
            operation: ScopedOperation { operation: StoreOperation::Update { patch, expected_version, .. }, .. },
        } = &update.write
        else {
            panic!("{:?}", update.write)
        };
        assert_eq!(patch.title.as_deref(), Some("Renamed"));
        assert_eq!(patch.due_at, Some(None), "null clears");
        assert_eq!(patch.description, None, "absent is left alone");
        assert_eq!(*expected_version, Some(1));
        assert_eq!(update.trace.traceparent, None);
        assert!(matches!(&batch.write, PreparedWrite::Batch { operations } if operations.len() == 1));
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_command() {
        for json in RECORDED_V1 {
            let command = decode(json.as_bytes()).unwrap();
            let again = decode(&encode(&command)).unwrap();
            assert_eq!(again.write, command.write);
            assert_eq!(
                (again.id, again.issuer, again.trace, again.issued_at),
                (command.id, command.issuer, command.trace, command.issued_at)
            );
        }
        let encoded: serde_json::Value =
            serde_json::from_slice(&encode(&decode(RECORDED_V1[0].as_bytes()).unwrap())).unwrap();
        assert_eq!(encoded["version"], VERSION);
    }

    #[test]
    fn a_newer_version_is_refused_not_misread() {
        let newer = RECORDED_V1[0].replacen('{', r#"{"version":2,"#, 1);
        assert!(matches!(decode(newer.as_bytes()), Err(DecodeError::UnknownVersion(2))));
    }
}
