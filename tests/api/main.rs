//! The black-box tests: ONE test binary that spawns the `todo-host` binary
//! Cargo built with it (`helpers`) against real PostgreSQL, Redis and a
//! Kafka-protocol broker, and drives it over HTTP and Kafka like any
//! client. One module per feature; `scripts/test` starts the services.

mod helpers;

mod accounts;
mod auth;
mod bad_input;
mod batch;
mod browser;
mod bundles;
mod cache;
mod commands;
mod concurrency;
mod database_sandbox;
mod dead_letters;
mod events;
mod handlers;
mod health;
mod hostile;
mod idempotency;
mod jobs;
mod listing;
mod live;
mod oidc;
mod operations;
mod plugin_failure;
mod plugin_guide;
mod plugins;
mod polyglot;
mod proxies;
mod rate_limit;
mod replica;
mod roles;
mod sandbox;
mod storage_conformance;
mod tasks;
mod tls;
mod tokens;
