//! Test harness: spawns the real `todo-host` binary against a fresh database
//! of the PostgreSQL cluster `scripts/test` started, and talks to it over
//! HTTP like any client.
//!
//! Environment (set by `scripts/test`):
//! - `TEST_DATABASE_URL`: a superuser URL of the throw-away cluster (the
//!   hosts connect as `APP_ROLE`, which owns their databases);
//! - `TEST_PLUGIN_DIR`: plugins built by `scripts/build-plugins --fixtures`;
//! - `TEST_PLUGIN_CACHE_DIR`: where the hosts keep their plugins' native
//!   code (fresh for each run);
//! - `TEST_KAFKA_BROKERS`, `TEST_REDIS_URL`: the broker and Redis (see
//!   `events`);
//! - `TEST_PGBOUNCER` (`host:port`, optional): a PgBouncer in transaction
//!   pooling mode in front of the cluster; when set, the hosts connect
//!   through it (`DATABASE_POOL_MODE=transaction`) and migrate directly.
//!
//! The binary is the one Cargo built for this test target
//! (`CARGO_BIN_EXE_todo-host`): never a stale or missing one.

pub mod events;
pub mod postgres;
pub mod redis;
pub mod server;
pub mod tls;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, Url};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The role the hosts connect as (`scripts/test` creates it): a
/// non-superuser with CREATEROLE, owning the test databases.
pub const APP_ROLE: &str = "todo_host";

/// The signing secret every spawned host uses, so tests can forge tokens.
pub const JWT_SECRET: &str = "test secret: 32+ bytes, never used in production";
/// Meets the password policy.
pub const PASSWORD: &str = "correct horse battery 42";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test"))
}

/// Whether the tests run as root (servers that refuse it are then run as
/// another user).
pub fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// The `todo-host` binary under test, built by Cargo with this test target.
pub fn host_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_todo-host"))
}

/// An empty directory of a test's own under the system's temporary
/// directory, removed with everything in it when dropped: a run of the
/// suite leaves no copies of plugins or checkouts behind.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new directory named `todo-host-{purpose}-…`.
    pub fn new(purpose: &str) -> Self {
        let path = std::env::temp_dir().join(format!("todo-host-{purpose}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the tree at `from` to `to`, leaving out `node_modules` (a
/// JavaScript template's, which its build installs again).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.file_name() == Some("node_modules".as_ref()) {
            continue;
        }
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

/// How to start a host; `Default` is a permissive host on postgres-store.
#[derive(Clone)]
pub struct HostOptions {
    pub env: Vec<(String, String)>,
    /// Variables the host must not get (removed after `env` is applied).
    pub unset: Vec<String>,
    /// Reuse this database instead of creating a fresh one.
    pub database: Option<String>,
    /// A CA (PEM) the test's client trusts, for a host serving HTTPS.
    pub trusted_ca: Option<String>,
}

impl Default for HostOptions {
    fn default() -> Self {
        let env = [
            ("STORAGE_PLUGIN", "postgres-store"),
            ("RATE_LIMIT_PER_SECOND", "100000"),
            ("RATE_LIMIT_BURST", "100000"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "100000"),
            ("AUTH_RATE_LIMIT_BURST", "100000"),
            ("EVENT_HANDLERS", ""),
        ];
        Self {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            unset: Vec::new(),
            database: None,
            trusted_ca: None,
        }
    }
}

impl HostOptions {
    /// Sets (or overrides) one environment variable of the host.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts the host without this environment variable.
    pub fn unset(mut self, name: &str) -> Self {
        self.unset.push(name.to_string());
        self
    }

    /// Lets the test's client trust `ca` (PEM), for a host serving HTTPS.
    pub fn trusting(mut self, ca: &str) -> Self {
        self.trusted_ca = Some(ca.to_string());
        self
    }

    /// Starts the host on an existing database.
    pub fn database(mut self, name: &str) -> Self {
        self.database = Some(name.to_string());
        self
    }
}

/// A running host process with its own database.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    /// URL of this app's database (for assertions that look underneath).
    pub database_url: String,
    pub database: String,
    /// The storage plugin it serves tasks with.
    pub storage: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// Killed when the `TestApp` is dropped.
    process: Child,
}

pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

/// Longest a host may take to start, and a request (a reload among them)
/// to be answered: an 18 MB Python or 12 MB JavaScript component takes
/// ~10 s to compile from a cold cache alone, and several times that while
/// other tests compile theirs on the same two cores.
const STARTUP: Duration = Duration::from_secs(300);

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(HostOptions::default()).await
    }

    pub async fn spawn_with(options: HostOptions) -> Self {
        let (mut command, database) = serve(&options).await;
        let database_url = database_url(&database);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = oneshot::channel();
        collect_lines(child.stdout.take().unwrap(), logs.clone(), Some(address_tx));
        collect_lines(child.stderr.take().unwrap(), logs.clone(), None);

        let address = match tokio::time::timeout(STARTUP, address_rx).await {
            Ok(Ok(address)) => address,
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!("todo-host did not start (exit: {status:?}); its output:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        let mut client = Client::builder().timeout(STARTUP);
        if let Some(ca) = &options.trusted_ca {
            client = client.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        let client = client.build().unwrap();
        let storage = options
            .env
            .iter()
            .find(|(name, _)| name == "STORAGE_PLUGIN")
            .map_or("postgres-store".to_string(), |(_, value)| value.clone());
        Self { address, client, database_url, database, storage, logs, process: child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// The number on the `key:` line of the host's `/proc/PID/{file}`
    /// (`status`'s `VmRSS` is its resident memory in KiB).
    pub fn proc_number(&self, file: &str, key: &str) -> u64 {
        let text = self.proc_file(file);
        let line = text.lines().find(|line| line.starts_with(&format!("{key}:"))).expect(key);
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The KiB the host maps read-only from compiled plugins (`.cwasm`
    /// files: their code and data), and how many of them are resident.
    pub fn mapped_artifacts_kib(&self) -> (u64, u64) {
        let smaps = self.proc_file("smaps");
        let (mut mapped, mut resident, mut counted) = (0, 0, false);
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [range, permissions, _, _, _, path] if range.contains('-') => {
                    counted = path.ends_with(".cwasm") && permissions.starts_with('r') && !permissions.contains('w');
                }
                ["Size:", kib, "kB"] if counted => mapped += kib.parse::<u64>().unwrap(),
                ["Rss:", kib, "kB"] if counted => resident += kib.parse::<u64>().unwrap(),
                _ => {}
            }
        }
        (mapped, resident)
    }

    /// The host's `/proc/PID/{file}`.
    fn proc_file(&self, file: &str) -> String {
        let pid = self.process.id().expect("the host is running");
        std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.process.id().expect("the host is running");
        let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.process.wait().await.unwrap()
    }

    /// Every line the host printed so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Creates an account through the `user create` command, then logs in.
    pub async fn create_user(&self, role: &str) -> TestUser {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let mut command = Command::new(host_binary());
        command
            .args(["user", "create", "--email", &email, "--role", role, "--password-stdin"])
            .env("DATABASE_URL", &self.database_url)
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("todo-host user create starts");
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await.unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "user create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.login(&email).await
    }

    /// Registers a `user` through the API, then logs in.
    pub async fn register_user(&self) -> TestUser {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .request(Method::POST, "/auth/register")
            .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        self.login(&email).await
    }

    pub async fn login(&self, email: &str) -> TestUser {
        let response = self
            .request(Method::POST, "/auth/login")
            .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_string();
        let claims = decode_claims(&token);
        TestUser { id: claims["sub"].as_str().unwrap().parse().unwrap(), email: email.to_string(), token }
    }

    /// Rows in the storage plugin's `tasks` table (in its schema), looked
    /// at underneath the API.
    pub async fn task_rows(&self) -> i64 {
        let table = format!("plugin_{}.tasks", self.storage.replace('-', "_"));
        let (count,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut self.db().await).await.unwrap();
        count
    }

    /// A superuser connection to this app's database.
    pub async fn db(&self) -> PgConnection {
        PgConnection::connect(&admin_database_url(&self.database)).await.expect("the test database accepts connections")
    }
}

/// `todo-host serve` with `options` on its database (created unless
/// `options` names one).
async fn serve(options: &HostOptions) -> (Command, String) {
    let database = match &options.database {
        Some(name) => name.clone(),
        None => create_database().await,
    };
    let mut command = Command::new(host_binary());
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url(&database))
        .envs(through_pooler(options, &database))
        .env("PLUGIN_DIR", required_env("TEST_PLUGIN_DIR"))
        .env("PLUGIN_CACHE_DIR", required_env("TEST_PLUGIN_CACHE_DIR"))
        // Every artifact of the run stays: a test would otherwise wait for
        // a Python plugin another test's compilation removed to compile again.
        .env("PLUGIN_CACHE_MAX_BYTES", (4u64 << 30).to_string())
        .env("JWT_SECRET", JWT_SECRET)
        .env("TODO_LISTEN", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    for name in &options.unset {
        command.env_remove(name);
    }
    (command, database)
}

/// The settings that put the pooler of `TEST_PGBOUNCER` between the host
/// and `database`, unless the test chose its own database server.
fn through_pooler(options: &HostOptions, database: &str) -> Vec<(&'static str, String)> {
    let Ok(pooler) = std::env::var("TEST_PGBOUNCER") else { return Vec::new() };
    if options.env.iter().any(|(name, _)| name == "DATABASE_URL") {
        return Vec::new();
    }
    let mut pooled = database_url(database).parse::<Url>().unwrap();
    let (host, port) = pooler.split_once(':').expect("TEST_PGBOUNCER is host:port");
    pooled.set_host(Some(host)).unwrap();
    pooled.set_port(Some(port.parse().expect("TEST_PGBOUNCER has a port"))).unwrap();
    vec![
        ("DATABASE_URL", pooled.to_string()),
        ("DATABASE_DIRECT_URL", database_url(database)),
        ("DATABASE_POOL_MODE", "transaction".to_string()),
    ]
}

/// Starts a host that must refuse to start; answers what it printed.
pub async fn spawn_failure(options: HostOptions) -> String {
    let (mut command, _) = serve(&options).await;
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the host exits by itself")
        .unwrap();
    assert!(!output.status.success(), "the host started");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

impl TestUser {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The claims of a JWT, without verifying it.
pub fn decode_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A request as `user`, with a JSON body when given.
pub async fn send(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut request = app.request(method, path).header("authorization", user.bearer());
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Creates a task titled `title` as `user`: the task, and the request id
/// its events carry.
pub async fn create_titled(app: &TestApp, user: &TestUser, title: &str) -> (Value, String) {
    let response = send(app, user, Method::POST, "/tasks", Some(serde_json::json!({ "title": title }))).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    let (status, task) = status_and_json(response).await;
    assert_eq!(status, 201, "{task}");
    (task, request_id)
}

/// A request as `user` with one more header (`If-Match`, `Prefer`…) and a
/// JSON body.
pub async fn send_with_header(
    app: &TestApp,
    user: &TestUser,
    method: Method,
    path: &str,
    (name, value): (&str, &str),
    body: Value,
) -> Response {
    app.request(method, path)
        .header("authorization", user.bearer())
        .header(name, value)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Creates a task as `user` from `body`, asserting 201; answers the task.
pub async fn create_task(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let (status, task) = status_and_json(send(app, user, Method::POST, "/tasks", Some(body)).await).await;
    assert_eq!(status, 201, "{task}");
    task
}

/// A task's audit history (`GET /tasks/{id}/history`): status and body.
pub async fn history(app: &TestApp, user: &TestUser, task_id: &str) -> (u16, Value) {
    status_and_json(send(app, user, Method::GET, &format!("/tasks/{task_id}/history"), None).await).await
}

/// An async command's state (`GET` of its `Location`): status and body.
pub async fn command(app: &TestApp, user: &TestUser, location: &str) -> (u16, Value) {
    status_and_json(app.request(Method::GET, location).header("authorization", user.bearer()).send().await.unwrap())
        .await
}

/// The status and JSON body of a response (`Null` when it has none).
pub async fn status_and_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// Asserts a problem+json answer of `status` and `type` `/problems/<slug>`.
pub async fn assert_problem(response: Response, status: u16, slug: &str) -> Value {
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(body["type"], format!("/problems/{slug}"), "body: {body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string());
    body
}

fn collect_lines<R>(stream: R, logs: Arc<Mutex<Vec<String>>>, mut address: Option<oneshot::Sender<String>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(found) = listening_address(&line)
                && let Some(sender) = address.take()
            {
                let _ = sender.send(found);
            }
            logs.lock().unwrap().push(line);
        }
    });
}

/// The URL a host says it listens on (`listening on https://127.0.0.1:…`).
fn listening_address(line: &str) -> Option<String> {
    let event: Value = serde_json::from_str(line).ok()?;
    event["message"].as_str()?.strip_prefix("listening on ").map(String::from)
}

fn admin_url() -> Url {
    Url::parse(&required_env("TEST_DATABASE_URL")).expect("TEST_DATABASE_URL is a URL")
}

/// The URL of `database` on the test cluster, as the host connects to it:
/// as `APP_ROLE`, never a superuser.
pub fn database_url(database: &str) -> String {
    let mut url = admin_database_url(database).parse::<Url>().unwrap();
    url.set_username(APP_ROLE).unwrap();
    url.to_string()
}

/// The superuser URL of `database`, for looking underneath the API.
pub fn admin_database_url(database: &str) -> String {
    let mut url = admin_url();
    url.set_path(database);
    url.to_string()
}

/// A fresh, empty database on the test cluster, owned by `APP_ROLE`.
pub async fn create_database() -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut connection = PgConnection::connect(admin_url().as_str()).await.expect("the test cluster is up");
    sqlx::query(&format!("CREATE DATABASE \"{name}\" OWNER {APP_ROLE}")).execute(&mut connection).await.unwrap();
    name
}

/// Polls `check` until it answers `Some`, failing after 30 s.
pub async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
