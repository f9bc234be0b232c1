//! What the storage plugins share, so that each rule is written once:
//!
//! - the bindings of the `storage` world; a plugin implements `Guest` and
//!   exports it with `storage_kit::export!(MyStore with_types_in storage_kit)`;
//! - `change`: how a write changes a task (stamping a creation, the version
//!   check, applying a patch);
//! - `failure`: an operation's failure, from the host imports' errors, and
//!   whether a batch can go on after it;
//! - `batch`: `apply-batch`'s order, runs of creations and failure rules,
//!   over the store's own writes.
//!
//! Only the imports a plugin's code calls end up in its component, so a
//! plugin using this crate still imports only what its manifest grants.

wit_bindgen::generate!({
    world: "storage",
    path: "../../../wit",
    pub_export_macro: true,
    default_bindings_module: "storage_kit",
});

pub mod batch;
pub mod change;
pub mod failure;
