//! A server process of a test's own, on a fixed port and data directory,
//! that the test may kill and start again (Redis, a Kafka broker…).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use uuid::Uuid;

type Spawn = Box<dyn Fn(u16, &Path) -> Command + Send + Sync>;

pub struct LocalServer {
    name: &'static str,
    port: u16,
    /// How clients reach it (`redis://…`, `host:port`…).
    url: String,
    dir: PathBuf,
    spawn: Spawn,
    process: Option<Child>,
}

impl LocalServer {
    /// Starts `spawn(port, dir)` on a free port and an empty directory, and
    /// waits until it listens; `url(port)` is how clients reach it.
    pub async fn start(
        name: &'static str,
        url: impl Fn(u16) -> String,
        spawn: impl Fn(u16, &Path) -> Command + Send + Sync + 'static,
    ) -> Self {
        Self::start_on(free_port(), name, url, spawn).await
    }

    /// Like `start`, on `port` (one `free_port` gave, when a peer started
    /// first must know it).
    pub async fn start_on(
        port: u16,
        name: &'static str,
        url: impl Fn(u16) -> String,
        spawn: impl Fn(u16, &Path) -> Command + Send + Sync + 'static,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("todo-host-{name}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self { name, port, url: url(port), dir, spawn: Box::new(spawn), process: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the process (SIGKILL: nothing is flushed on the way out).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.unwrap();
        }
    }

    /// Starts the process again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut command = (self.spawn)(self.port, &self.dir);
        let process = command
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("{} does not start: {error}", self.name));
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "{} did not listen on {}", self.name, self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
