//! Host interfaces, one module each (after wasmtime-wasi and Spin's
//! factors): each owns its per-call session, links itself into any
//! `Linker<T>` through a getter of that session, and settles it when the
//! call ends (`Settle`). The plugin runtime composes them in `CallState`.
//!
//! `log`, `config` and the minimal `wasi` are linked for every plugin;
//! `sql`, `kv` and `publish` as themselves when granted, and otherwise as
//! `NotGranted`, which answers every call with an error naming the grant:
//! toolchains other than Rust import every interface of the world, used or
//! not. Only an import the host does not provide at all fails the load.

pub mod config;
pub mod kv;
pub mod log;
pub mod publish;
pub mod sql;
pub mod wasi;

use wasmtime::Engine;
use wasmtime::component::{Component, HasData, Linker};

use super::bindings::todo::plugin::types;
use crate::db::HostConnection;
use crate::db::replica::Freshness;

/// Whether a call may change data: a write runs in one transaction the host
/// commits after the export returns `ok`; a read may be served by the read
/// replica when it has replayed far enough for the read's `Freshness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Read(Freshness),
    Write,
}

impl CallKind {
    pub fn is_read(self) -> bool {
        matches!(self, Self::Read(_))
    }
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

/// The stand-in of an interface the manifest does not grant: each
/// capability answers every call of it with an error naming the grant.
pub struct NotGranted;

impl HasData for NotGranted {
    type Data<'a> = NotGranted;
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

/// Refuses a component importing anything the host does not provide: an
/// interface of its package it does not know, or one of neither its
/// package nor WASI. (A WASI interface wasmtime-wasi does not implement is
/// refused when linking, by name.)
pub fn check_imports(component: &Component, engine: &Engine) -> anyhow::Result<()> {
    for (name, _) in component.component_type().imports(engine) {
        let known = match name.strip_prefix(PACKAGE) {
            Some(interface) => {
                let interface = interface.split('@').next().unwrap_or(interface);
                matches!(interface, "types" | "log" | "config" | "sql" | "kv" | "publish")
            }
            None => name.starts_with("wasi:"),
        };
        if !known {
            anyhow::bail!("the component imports `{name}`, which this host does not provide");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imports(wat: &str) -> anyhow::Result<()> {
        let engine = Engine::default();
        let component = Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        check_imports(&component, &engine)
    }

    #[test]
    fn every_interface_of_the_package_and_wasi_is_accepted_whatever_the_grants() {
        for name in
            ["todo:plugin/sql@0.1.0", "todo:plugin/kv@0.1.0", "todo:plugin/publish@0.1.0", "wasi:cli/environment@0.2.9"]
        {
            assert!(imports(&format!(r#"(component (import "{name}" (instance)))"#)).is_ok(), "{name}");
        }
    }

    #[test]
    fn an_import_the_host_does_not_provide_is_refused_by_name() {
        for name in ["todo:plugin/telepathy@0.1.0", "acme:secrets/vault@1.0.0"] {
            let error = imports(&format!(r#"(component (import "{name}" (instance)))"#)).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
