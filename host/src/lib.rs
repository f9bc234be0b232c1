//! todo-host: a task REST API whose storage and event handling are
//! WebAssembly components. See docs/ARCHITECTURE.md for the map.

pub mod auth;
pub mod background;
pub mod cli;
pub mod client_addr;
pub mod commands;
pub mod config;
pub mod db;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod kafka;
pub mod lock;
pub mod outbox;
pub mod plugins;
pub mod problem;
pub mod ratelimit;
pub mod redis_client;
pub mod startup;
pub mod tasks;
pub mod telemetry;
pub mod trace;
pub mod validation;
