//! A Redis of a test's own, for tests that kill and restart it.

use std::ops::{Deref, DerefMut};

use tokio::process::Command;

use crate::server::LocalServer;

pub struct TestRedis(LocalServer);

impl TestRedis {
    /// An empty, non-persistent redis-server (a restart starts empty).
    pub async fn start() -> Self {
        Self(
            LocalServer::start("redis", |port, _| {
                let mut command = Command::new("redis-server");
                command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                command
            })
            .await,
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port())
    }
}

impl Deref for TestRedis {
    type Target = LocalServer;

    fn deref(&self) -> &LocalServer {
        &self.0
    }
}

impl DerefMut for TestRedis {
    fn deref_mut(&mut self) -> &mut LocalServer {
        &mut self.0
    }
}
