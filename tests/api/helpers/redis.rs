//! A Redis of a test's own, for tests that kill and restart it.

use tokio::process::Command;

use super::server::LocalServer;

pub struct TestRedis;

impl TestRedis {
    /// An empty, non-persistent redis-server (a restart starts empty).
    pub async fn start() -> LocalServer {
        LocalServer::start(
            "redis",
            |port| format!("redis://127.0.0.1:{port}/0"),
            |port, _| {
                let mut command = Command::new("redis-server");
                command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                command
            },
        )
        .await
    }
}
