//! A PostgreSQL cluster of a test's own, for tests that stop and restart
//! it. PostgreSQL refuses to run as root: as root, its tools run as the
//! `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::server::LocalServer;

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

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
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
    /// A fresh cluster (superuser `postgres`, trust auth, fsync off).
    pub async fn start() -> LocalServer {
        LocalServer::start(
            "postgres",
            |port| format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            |port, dir| {
                let data = dir.join("data");
                if !data.exists() {
                    std::fs::create_dir_all(&data).unwrap();
                    if is_root() {
                        std::process::Command::new("chown")
                            .args(["-R", "postgres:postgres"])
                            .arg(dir)
                            .status()
                            .unwrap();
                    }
                    let status = as_postgres(&bin_dir().join("initdb"))
                        .arg("-D")
                        .arg(&data)
                        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
                        .stdout(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success(), "initdb failed");
                }
                let mut command = Command::from(as_postgres(&bin_dir().join("postgres")));
                command.arg("-D").arg(&data).args(["-p", &port.to_string(), "-k"]).arg(dir).args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ]);
                command
            },
        )
        .await
    }
}
