//! Host-side bindings of the WIT package `todo:plugin` (../wit).

wasmtime::component::bindgen!({
    world: "storage",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});
