//! A Redis of a test's own, for tests that kill and restart it.

use std::path::Path;

use tokio::process::Command;

use super::server::LocalServer;
use super::tls::CertFiles;

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

    /// A redis-server speaking TLS only, with the certificate `tls` signed
    /// by the CA at `ca` (clients are not asked for a certificate).
    pub async fn start_tls(tls: &CertFiles, ca: &Path) -> LocalServer {
        let (cert, key, ca) = (tls.cert.clone(), tls.key.clone(), ca.to_path_buf());
        LocalServer::start(
            "redis-tls",
            |port| format!("rediss://127.0.0.1:{port}/0"),
            move |port, _| {
                let mut command = Command::new("redis-server");
                command.args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"]);
                command.args(["--save", "", "--appendonly", "no", "--tls-auth-clients", "no"]);
                command
                    .arg("--tls-cert-file")
                    .arg(&cert)
                    .arg("--tls-key-file")
                    .arg(&key)
                    .arg("--tls-ca-cert-file")
                    .arg(&ca);
                command
            },
        )
        .await
    }
}
