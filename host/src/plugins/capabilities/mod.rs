//! Host interfaces, one module each (after Spin's factors): each knows how
//! to add itself to a `Linker`, what per-call state it keeps, and which
//! grant it needs.
//!
//! `log` and `config` are linked for every plugin; `sql`, `kv` and
//! `publish` only when granted.
//! The component's imports are checked against this before linking, so a
//! plugin importing something it may not use fails to load with an error
//! that names the import.

pub mod config;
pub mod kv;
pub mod log;
pub mod publish;
pub mod sql;

use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use super::bindings::todo::plugin::types;
use super::call::CallState;
use super::manifest::Grants;

/// The WIT package plugins import host interfaces from.
const PACKAGE: &str = "todo:plugin/";

/// `types` holds no functions; linking it only defines the instance.
impl types::Host for CallState {}

/// Links the interfaces `grants` allows.
pub fn link(linker: &mut Linker<CallState>, grants: &Grants) -> anyhow::Result<()> {
    types::add_to_linker::<_, HasSelf<CallState>>(linker, |state| state).map_err(|e| anyhow::anyhow!("{e}"))?;
    log::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    if grants.sql {
        sql::add_to_linker(linker)?;
    }
    if grants.kv {
        kv::add_to_linker(linker)?;
    }
    if !grants.publish.is_empty() {
        publish::add_to_linker(linker)?;
    }
    Ok(())
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
