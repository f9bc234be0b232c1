//! Host-side bindings of the WIT package `todo:plugin` (../wit): one
//! `bindgen!` per world, sharing the host interfaces (so the same linking
//! code serves every world).

wasmtime::component::bindgen!({
    world: "storage",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub mod event_handler {
    wasmtime::component::bindgen!({
        world: "event-handler",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "todo:plugin/types": super::todo::plugin::types,
            "todo:plugin/sql": super::todo::plugin::sql,
            "todo:plugin/kv": super::todo::plugin::kv,
            "todo:plugin/log": super::todo::plugin::log,
            "todo:plugin/config": super::todo::plugin::config,
        },
    });
}

pub mod history_handler {
    wasmtime::component::bindgen!({
        world: "history-handler",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "todo:plugin/types": super::todo::plugin::types,
            "todo:plugin/sql": super::todo::plugin::sql,
            "todo:plugin/kv": super::todo::plugin::kv,
            "todo:plugin/log": super::todo::plugin::log,
            "todo:plugin/config": super::todo::plugin::config,
            "todo:plugin/publish": super::event_handler::todo::plugin::publish,
        },
    });
}
