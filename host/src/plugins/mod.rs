//! The plugin runtime: loading Wasm components from PLUGIN_DIR, linking the
//! host interfaces their manifest grants, and running each call in a fresh,
//! limited instance.
//!
//! - `engine`: the wasmtime engine (pooling allocator, epoch ticker) and the
//!   compiled-artifact cache.
//! - `manifest`: `NAME.toml`.
//! - `capabilities`: one module per host interface of `wit/`.
//! - `loader`: file → verified, type-checked, linked `InstancePre`.
//! - `state`: a call's store data, one session per capability, and how the
//!   sessions end together (commit, rollback).
//! - `call`: one call: admission, limits, deadline, trap classification.
//! - `storage`: the `storage` world.
//! - `handler`: the `event-handler` world.
//! - `slot`: one plugin in service, swapped atomically, with its earlier
//!   versions for rollback.
//! - `stats`: per-version call counts and duration quantiles.
//! - `breaker`: per-version circuit breaker, opened by repeated traps.
//! - `registry`: the plugins in service and their reloads.
//! - `broadcast`: reloads, rollbacks and uploads announced to every replica.
//! - `bundle`: a plugin's files as one unit, read from and written to a
//!   plugin directory.
//! - `bundle_store`: bundles in PostgreSQL, content-addressed, and which
//!   version of each uploaded plugin every replica serves.
//! - `roster`: which versions each process serves.
//! - `delivery`: uploads, reloads and rollbacks that reach every replica.

mod artifacts;
pub mod bindings;
mod breaker;
mod broadcast;
mod bundle;
mod bundle_store;
mod call;
pub mod capabilities;
mod database;
mod delivery;
mod engine;
mod handler;
mod loader;
mod manifest;
mod registry;
mod roster;
mod slot;
mod state;
mod stats;
mod storage;

pub use artifacts::ArtifactCache;
pub use bindings::event_handler::exports::todo::plugin::handler as event_handler;
pub use bindings::exports::todo::plugin::task_store;
pub use bindings::history_handler::exports::todo::plugin::history;
pub use bindings::todo::plugin::types as wit_types;
pub use broadcast::PluginBroadcast;
pub use bundle::BundleFiles;
pub use bundle_store::BundleStore;
pub use call::{PluginFailure, PluginRuntime};
pub use capabilities::CallKind;
pub use database::PluginDatabases;
pub use delivery::{PluginDelivery, StorageChanged, UploadError};
pub use engine::PluginEngine;
pub use handler::{HandlerBatch, HandlerPlugin};
pub use registry::{HandlerRunners, PluginRegistry, ReloadReport, UnknownPlugin};
pub use roster::{ReplicaVersion, Roster};
pub use slot::{PluginSlot, PluginStatus};
pub use state::{BeforeCommit, CallState, CommitError, NothingMore};
pub use storage::StoragePlugin;

use chrono::{DateTime, Utc};

/// What identifies one loaded version of a plugin.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the `.wasm` file.
    pub sha256: String,
    pub loaded_at: DateTime<Utc>,
}
