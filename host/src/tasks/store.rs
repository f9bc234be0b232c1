//! The typed client of the active storage plugin: every read and write of
//! tasks goes through it. A write's changes are announced through the
//! outbox in the write's own transaction, and what they made stale in the
//! cache is outdated once it committed, with the primary's WAL position then
//! (how far a read replica must have replayed to answer what they changed).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use wasmtime::Store;

use crate::db::HostConnection;
use crate::db::replica::{Freshness, Lsn, wal_insert_position};
use crate::outbox;
use crate::plugins::task_store as wit;
use crate::plugins::wit_types;
use crate::plugins::{BeforeCommit, CallKind, CallState, NothingMore, PluginRegistry};
use crate::trace::RequestTrace;

use super::cache::TaskCache;
use super::error::TaskError;
use super::event::TaskEvent;
use super::model::{HistoryEntry, PageRequest, Task, TaskChange, TaskFilter};
use super::wit as convert;
use super::write::{ScopedOperation, StoreOperation};

/// A store call's frame: which request it serves and its clock.
pub struct Call<'a> {
    pub trace: &'a RequestTrace,
    pub now: DateTime<Utc>,
}

impl Call<'_> {
    fn context(&self) -> wit_types::CallContext {
        wit_types::CallContext { request_id: self.trace.request_id.clone(), now: self.now.timestamp_micros() }
    }
}

/// Which request each change of a write announces.
#[derive(Clone, Copy)]
pub enum Traces<'a> {
    /// Every change comes from the call's request.
    Shared(&'a RequestTrace),
    /// One per operation (a batch of commands from many requests).
    PerOperation(&'a [RequestTrace]),
}

impl Traces<'_> {
    fn get(&self, index: usize) -> &RequestTrace {
        match self {
            Traces::Shared(trace) => trace,
            Traces::PerOperation(traces) => &traces[index.min(traces.len().saturating_sub(1))],
        }
    }
}

/// Appends the outbox records of a write's changes, then whatever `then`
/// adds, before the write commits.
struct Announce<'a, T> {
    traces: Traces<'a>,
    now: DateTime<Utc>,
    then: T,
}

impl<T: BeforeCommit<Vec<TaskChange>>> BeforeCommit<Vec<TaskChange>> for Announce<'_, T> {
    async fn run(self, changes: &Vec<TaskChange>, host: &mut HostConnection<'_>) -> Result<(), sqlx::Error> {
        let records: Vec<outbox::OutboxRecord> = changes
            .iter()
            .enumerate()
            .map(|(index, change)| TaskEvent::for_change(change, self.now).record(self.traces.get(index)))
            .collect();
        outbox::append(host, &records).await?;
        self.then.run(changes, host).await
    }
}

#[derive(Clone)]
pub struct TaskStore {
    plugins: Arc<PluginRegistry>,
    cache: TaskCache,
    /// The primary, for its WAL position after writes.
    primary: PgPool,
    /// The event handler whose `history` export answers task histories.
    history_plugin: String,
}

type Guest = wit::Guest;

impl TaskStore {
    pub fn new(plugins: Arc<PluginRegistry>, cache: TaskCache, primary: PgPool, history_plugin: String) -> Self {
        Self { plugins, cache, primary, history_plugin }
    }

    /// Every recorded change of task `id`, as the history plugin keeps
    /// them (unfiltered: the service applies the role rules).
    pub async fn history(&self, call: &Call<'_>, id: Uuid) -> Result<Vec<HistoryEntry>, TaskError> {
        let name = &self.history_plugin;
        let unavailable = || {
            TaskError::NoHistory(format!(
                "no loaded event handler answers task histories (HISTORY_PLUGIN={name} must be running and export `history`)"
            ))
        };
        let plugin = self.plugins.handler(name).ok_or_else(unavailable)?;
        let entries = plugin.history(call.trace, &id.to_string()).await.ok_or_else(unavailable)???;
        entries.into_iter().map(convert::history_entry_from_wit).collect()
    }

    async fn read<R>(
        &self,
        call: &Call<'_>,
        freshness: Freshness,
        body: impl AsyncFnOnce(&Guest, &mut Store<CallState>) -> wasmtime::Result<Result<R, wit::StoreError>>,
    ) -> Result<R, TaskError> {
        let kind = CallKind::Read(freshness);
        let answer = self.plugins.storage().call(call.trace, kind, body, NothingMore).await?;
        answer.map_err(Into::into)
    }

    /// Runs a write; its changes are announced in its transaction, and what
    /// they made stale in the cache is outdated once it committed. Every
    /// write path (sync, batch, async commands) comes through here.
    async fn write(
        &self,
        call: &Call<'_>,
        traces: Traces<'_>,
        body: impl AsyncFnOnce(&Guest, &mut Store<CallState>) -> wasmtime::Result<Result<Vec<TaskChange>, TaskError>>,
        then: impl BeforeCommit<Vec<TaskChange>>,
    ) -> Result<Vec<TaskChange>, TaskError> {
        let announce = Announce { traces, now: call.now, then };
        let changes = self.plugins.storage().call(call.trace, CallKind::Write, body, announce).await??;
        if self.cache.is_enabled() {
            self.cache.invalidate(&changes, self.primary_position().await).await;
        }
        Ok(changes)
    }

    /// Another storage plugin version serves: what the cache holds was read
    /// through the one before (and the new one's migrations ran on the
    /// primary).
    pub async fn storage_changed(&self) {
        self.cache.flush(self.primary_position().await).await;
    }

    /// The primary's WAL position now: after a write committed, at or past
    /// its commit. Recorded by every process that writes, replica or not,
    /// for the processes whose reads a replica may answer. Unknown, it is
    /// the largest there is: until what it stamps expires, no replica
    /// answers those reads.
    pub async fn primary_position(&self) -> Lsn {
        wal_insert_position(&self.primary).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the primary's WAL position; no replica answers these reads for a while");
            Lsn::MAX
        })
    }

    /// One task, from a server at least as fresh as `freshness`.
    pub async fn get(
        &self,
        call: &Call<'_>,
        freshness: Freshness,
        scope: Option<Uuid>,
        id: Uuid,
    ) -> Result<Task, TaskError> {
        let (context, scope, id) = (call.context(), scope.map(|s| s.to_string()), id.to_string());
        convert::task_from_wit(
            self.read(call, freshness, async |store, s| store.call_get(s, &context, scope.as_deref(), &id).await)
                .await?,
        )
    }

    /// One page, from a server at least as fresh as `freshness`;
    /// `next_cursor` is the plugin's own cursor (the service seals it).
    pub async fn list(
        &self,
        call: &Call<'_>,
        freshness: Freshness,
        scope: Option<Uuid>,
        filter: &TaskFilter,
        page: PageRequest,
    ) -> Result<(Vec<Task>, Option<String>), TaskError> {
        let context = call.context();
        let scope = scope.map(|s| s.to_string());
        let (filter, page) = (convert::filter_to_wit(filter), convert::page_to_wit(page));
        let page = self
            .read(call, freshness, async |store, s| {
                store.call_list(s, &context, scope.as_deref(), &filter, &page).await
            })
            .await?;
        let items = page.items.into_iter().map(convert::task_from_wit).collect::<Result<_, _>>()?;
        Ok((items, page.next_cursor))
    }

    /// Applies one operation in a transaction of its own.
    pub async fn apply(&self, call: &Call<'_>, operation: ScopedOperation) -> Result<TaskChange, TaskError> {
        let context = call.context();
        let ScopedOperation { scope, operation } = operation;
        let scope = scope.map(|s| s.to_string());
        let body =
            async |store: &Guest, s: &mut Store<CallState>| -> wasmtime::Result<Result<Vec<TaskChange>, TaskError>> {
                let scope = scope.as_deref();
                let change = match operation {
                    StoreOperation::Create(task) => store
                        .call_create(s, &context, &convert::creation_to_wit(task))
                        .await?
                        .map_err(TaskError::from)
                        .and_then(|task| Ok(TaskChange::Created(convert::task_from_wit(task)?))),
                    StoreOperation::Update { id, patch, expected_version } => store
                        .call_update(s, &context, scope, &convert::update_to_wit(id, patch, expected_version))
                        .await?
                        .map_err(TaskError::from)
                        .and_then(convert::update_from_wit),
                    StoreOperation::Delete { id, expected_version } => store
                        .call_delete(s, &context, scope, &wit::DeleteOp { id: id.to_string(), expected_version })
                        .await?
                        .map_err(TaskError::from)
                        .and_then(|task| Ok(TaskChange::Deleted(convert::task_from_wit(task)?))),
                };
                Ok(change.map(|change| vec![change]))
            };
        let mut changes = self.write(call, Traces::Shared(call.trace), body, NothingMore).await?;
        match (changes.pop(), changes.is_empty()) {
            (Some(change), true) => Ok(change),
            _ => Err(TaskError::Internal("the storage plugin answered a single write with several changes".into())),
        }
    }

    /// Applies every operation in one transaction, all or nothing: if any
    /// operation fails, the transaction is rolled back and every failure is
    /// reported with its index. `then` adds the caller's own statements to
    /// the transaction.
    pub async fn apply_all(
        &self,
        call: &Call<'_>,
        operations: Vec<ScopedOperation>,
        traces: Traces<'_>,
        then: impl BeforeCommit<Vec<TaskChange>>,
    ) -> Result<Vec<TaskChange>, TaskError> {
        let context = call.context();
        let ops: Vec<wit::BatchOp> = operations.into_iter().map(convert::batch_op_to_wit).collect();
        self.write(
            call,
            traces,
            async |store, s| Ok(convert::batch_results_from_wit(store.call_apply_batch(s, &context, &ops).await?)),
            then,
        )
        .await
    }
}
