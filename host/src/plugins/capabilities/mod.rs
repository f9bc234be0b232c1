//! Host interfaces, one module each (after wasmtime-wasi and Spin's
//! factors): each owns its per-call session, links itself into any
//! `Linker<T>` through a getter of that session, and settles it when the
//! call ends (`Settle`). The plugin runtime composes them in `CallState`.
//!
//! `log` and `config` are linked for every plugin; `sql`, `kv` and
//! `publish` only when granted. The component's imports are checked
//! against the grants before linking, so a plugin importing something it
//! may not use fails to load with an error that names the import.

pub mod config;
pub mod kv;
pub mod log;
pub mod publish;
pub mod sql;

use wasmtime::Engine;
use wasmtime::component::{Component, HasData, Linker};

use super::bindings::todo::plugin::types;
use super::manifest::Grants;
use crate::db::HostConnection;

/// Whether a call may change data: a write runs in one transaction the host
/// commits after the export returns `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
}

/// The WIT package plugins import host interfaces from.
const PACKAGE: &str = "todo:plugin/";

/// What a capability's session does when its call ends. The call's SQL
/// transaction is the one commit point: on success, sessions settle in
/// order on it before COMMIT — those whose effects join the transaction
/// first, and at most one, the last, whose effects apply elsewhere (`kv`,
/// in Redis). Every call, however it ended, then releases every session.
#[async_trait::async_trait]
pub trait Settle: Send {
    /// The call succeeded: make what it did through this capability take
    /// effect. An error rolls the whole call back.
    async fn commit(&mut self, host: &mut HostConnection<'_>) -> Result<(), SettleError>;

    /// The call has ended (after COMMIT, or with nothing committed): let
    /// go of what the session holds, applying nothing more.
    async fn release(&mut self);
}

/// Why a session could not settle a successful call.
#[derive(Debug, thiserror::Error)]
#[error("{capability}: {reason}")]
pub struct SettleError {
    capability: &'static str,
    reason: String,
}

impl SettleError {
    pub fn new(capability: &'static str, reason: impl std::fmt::Display) -> Self {
        Self { capability, reason: reason.to_string() }
    }
}

/// `types` holds no functions; linking it only defines the instance.
struct Types;

impl HasData for Types {
    type Data<'a> = Types;
}

impl types::Host for Types {}

pub fn add_types_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    types::add_to_linker::<T, Types>(linker, |_| Types).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Refuses a component importing a host interface it was not granted, or
/// anything that is neither ours nor WASI. WASI imports (which any Rust std
/// guest carries) are later satisfied by traps: plugins get no files,
/// sockets, environment or clocks.
pub fn check_imports(component: &Component, engine: &Engine, grants: &Grants) -> anyhow::Result<()> {
    for (name, _) in component.component_type().imports(engine) {
        if let Some(interface) = name.strip_prefix(PACKAGE) {
            let interface = interface.split('@').next().unwrap_or(interface);
            match interface {
                "types" | "log" | "config" => {}
                "sql" if grants.sql => {}
                "kv" if grants.kv => {}
                "publish" if !grants.publish.is_empty() => {}
                "sql" => anyhow::bail!(
                    "the component imports `{name}`, which its manifest does not grant \
                     (add `sql = true` under [grants] if it should have it)"
                ),
                "kv" => anyhow::bail!(
                    "the component imports `{name}`, which its manifest does not grant \
                     (add `kv = true` under [grants] if it should have it)"
                ),
                "publish" => anyhow::bail!(
                    "the component imports `{name}`, which its manifest does not grant \
                     (list the topics it may publish to as `publish = [\"…\"]` under [grants])"
                ),
                _ => anyhow::bail!("the component imports `{name}`, which this host does not provide"),
            }
        } else if !name.starts_with("wasi:") {
            anyhow::bail!("the component imports `{name}`, which this host does not provide");
        }
    }
    Ok(())
}
