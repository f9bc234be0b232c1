//! A PostgreSQL cluster of a test's own, for tests that stop and restart
//! it. PostgreSQL refuses to run as root: as root, its tools run as the
//! `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::{Connection, PgConnection};
use tokio::process::Command;

use super::server::LocalServer;
use super::tls::CertFiles;
use super::{APP_ROLE, is_root};

pub struct TestPostgres;

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version is installed")
}

/// `program`, as the `postgres` user when running as root. `setpriv` execs
/// (unlike `runuser`, which forks), so killing the child kills PostgreSQL.
fn as_postgres(program: &Path) -> std::process::Command {
    if is_root() {
        let mut command = std::process::Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

impl TestPostgres {
    /// A fresh cluster (superuser `postgres`, trust auth, fsync off) with
    /// `APP_ROLE` and its database `todo` (see `app_url`).
    pub async fn start() -> LocalServer {
        Self::start_serving(None).await
    }

    /// Like `start`, accepting TLS with the certificate `tls` (and plain
    /// connections too, as PostgreSQL does).
    pub async fn start_tls(tls: &CertFiles) -> LocalServer {
        Self::start_serving(Some((tls.cert.clone(), tls.key.clone()))).await
    }

    async fn start_serving(tls: Option<(PathBuf, PathBuf)>) -> LocalServer {
        let server = Self::cluster(tls).await;
        // It listens before it accepts connections ("starting up").
        let mut admin = loop {
            match PgConnection::connect(&server.url()).await {
                Ok(connection) => break connection,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        for statement in
            [format!("CREATE ROLE {APP_ROLE} LOGIN CREATEROLE"), format!("CREATE DATABASE todo OWNER {APP_ROLE}")]
        {
            sqlx::query(&statement).execute(&mut admin).await.unwrap();
        }
        server
    }

    /// The URL the host connects to `server` with: `APP_ROLE`, database `todo`.
    pub fn app_url(server: &LocalServer) -> String {
        let mut url = reqwest::Url::parse(&server.url()).unwrap();
        url.set_username(APP_ROLE).unwrap();
        url.set_path("todo");
        url.to_string()
    }

    /// A streaming replica of `primary` (a cluster of `start`), made with
    /// `pg_basebackup -R`: hot standby, replaying the primary's WAL as it
    /// streams; the same roles and databases, read-only.
    pub async fn start_replica(primary: &LocalServer) -> LocalServer {
        let primary_port = primary.port().to_string();
        let server = LocalServer::start(
            "postgres-replica",
            |port| format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            move |port, dir| {
                let data = dir.join("data");
                if !data.exists() {
                    owned_by_postgres(dir);
                    let status = as_postgres(&bin_dir().join("pg_basebackup"))
                        .arg("-D")
                        .arg(&data)
                        .args(["-R", "-X", "stream", "--checkpoint=fast", "-U", "postgres"])
                        .args(["-h", "127.0.0.1", "-p", &primary_port])
                        .status()
                        .unwrap();
                    assert!(status.success(), "pg_basebackup failed");
                }
                postgres(&data, port, dir)
            },
        )
        .await;
        // A standby listens before it accepts connections.
        while PgConnection::connect(&server.url()).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        server
    }

    async fn cluster(tls: Option<(PathBuf, PathBuf)>) -> LocalServer {
        LocalServer::start(
            "postgres",
            |port| format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            move |port, dir| {
                let data = dir.join("data");
                if !data.exists() {
                    owned_by_postgres(dir);
                    let status = as_postgres(&bin_dir().join("initdb"))
                        .arg("-D")
                        .arg(&data)
                        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
                        .stdout(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success(), "initdb failed");
                    if let Some((cert, key)) = &tls {
                        // PostgreSQL wants its key readable by itself alone.
                        std::fs::copy(cert, data.join("server.crt")).unwrap();
                        std::fs::copy(key, data.join("server.key")).unwrap();
                        std::process::Command::new("chmod").arg("600").arg(data.join("server.key")).status().unwrap();
                        owned_by_postgres(dir);
                    }
                }
                let mut command = postgres(&data, port, dir);
                if tls.is_some() {
                    command.args(["-c", "ssl=on"]);
                }
                command
            },
        )
        .await
    }
}

/// `dir` owned by the user PostgreSQL runs as, who creates its data
/// directory in it.
fn owned_by_postgres(dir: &Path) {
    if is_root() {
        std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status().unwrap();
    }
}

/// The server on `data`, listening on 127.0.0.1:`port` (its socket in `dir`).
fn postgres(data: &Path, port: u16, dir: &Path) -> Command {
    let mut command = Command::from(as_postgres(&bin_dir().join("postgres")));
    command.arg("-D").arg(data).args(["-p", &port.to_string(), "-k"]).arg(dir).args([
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
    ]);
    command
}
