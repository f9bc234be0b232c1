//! The sandbox at the database: a plugin granted `sql` runs its statements
//! as a role of its own, in a schema of its own. `hostile-store` (granted
//! only `sql` and `kv`) runs each attack of a created task's title
//! `sql:STATEMENT`: a statement that succeeds is answered in the task's
//! description and its call commits (so whatever an attack managed would
//! stay); one that fails is answered as a 422 whose detail is the error.

use std::collections::BTreeMap;

use crate::helpers::events::{path_str, plugin_dir_with};
use crate::helpers::{HostOptions, TestApp, TestUser, assert_problem, send, status_and_json};
use reqwest::Method;
use serde_json::json;

async fn hostile_app() -> TestApp {
    TestApp::spawn_with(HostOptions::default().redis().env("STORAGE_PLUGIN", "hostile-store")).await
}

/// What `statement` came to, run by hostile-store: `sql-ok: …` or
/// `sql-error CODE: MESSAGE`.
async fn attack(app: &TestApp, user: &TestUser, statement: &str) -> String {
    let title = format!("sql:{statement}");
    let (status, body) =
        status_and_json(send(app, user, Method::POST, "/tasks", Some(json!({ "title": title }))).await).await;
    match status {
        201 => body["description"].as_str().unwrap_or_default().to_string(),
        422 => body["errors"][0]["detail"].as_str().unwrap_or_default().to_string(),
        _ => {
            let failures: Vec<String> = app.logs().into_iter().filter(|line| line.contains("not committed")).collect();
            panic!("{statement}: {status} {body}\n{failures:#?}")
        }
    }
}

/// Every table of the database with its row count, and every role but the
/// plugin roles hosts made, as a superuser sees them.
async fn snapshot(app: &TestApp) -> (BTreeMap<String, i64>, Vec<String>) {
    let mut db = app.db().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut counts = BTreeMap::new();
    for table in tables {
        let (count,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut db).await.unwrap();
        counts.insert(table, count);
    }
    // Roles are the cluster's: the plugin roles hosts of other tests make
    // meanwhile (a comment only a role with CREATEROLE can set) are left out.
    let roles = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles \
         WHERE coalesce(shobj_description(oid, 'pg_authid'), '') NOT LIKE 'todo-host plugin %' ORDER BY 1",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    (counts, roles)
}

#[tokio::test]
async fn a_plugin_reaches_neither_the_hosts_data_nor_another_plugins_nor_the_server() {
    let app = hostile_app().await;
    let user = app.register_user().await;
    // audit-log's schema exists in this database too (provisioned by a host
    // that loads it), so reading another plugin's table is a real attempt.
    let neighbour =
        TestApp::spawn_with(HostOptions::default().database(&app.database).env("EVENT_HANDLERS", "audit-log")).await;
    drop(neighbour);
    let before = snapshot(&app).await;

    let refused_by_the_server = [
        "SELECT email || ' ' || password_hash FROM public.users",
        "SELECT count(*) FROM plugin_audit_log.task_audit",
        "INSERT INTO plugin_audit_log.task_audit (event_id) VALUES ('forged')",
        "INSERT INTO public.outbox (topic, payload) VALUES ('task-events', '\\x7b7d')",
        "SELECT public.host_append_outbox('\\x00', ARRAY['task-events'], ARRAY[NULL], ARRAY['\\x7b7d'::bytea], ARRAY['{}'::jsonb])",
        "SELECT key FROM public.host_keys",
        "CREATE TABLE public.planted (x int)",
        "SELECT pg_read_file('/etc/passwd')",
        "CREATE FUNCTION public.escalate() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        "CREATE TRIGGER spy AFTER INSERT ON public.users FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        // The escape a shared session would allow: set_config reached
        // through dynamic SQL. The plugin's own login makes it fail.
        "SELECT query_to_xml('SELECT set_config(''role'', ''todo_host'', true)', true, true, '')",
        "SELECT set_config('role', 'postgres', false)",
    ];
    for statement in refused_by_the_server {
        let outcome = attack(&app, &user, statement).await;
        assert!(outcome.starts_with("sql-error 42"), "{statement} must be refused, got: {outcome}");
    }
    let refused_at_the_import = [
        "COMMIT",
        "SET ROLE todo_host",
        "RESET ROLE",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/todo-host-sandbox-breach'",
        "DO $$BEGIN PERFORM 1; END$$",
        "NOTIFY outbox",
        "SELECT 1; SELECT 2",
    ];
    for statement in refused_at_the_import {
        let outcome = attack(&app, &user, statement).await;
        assert!(outcome.starts_with("sql-error 42501:") && outcome.contains("refused"), "{statement}: {outcome}");
    }
    assert!(!std::path::Path::new("/tmp/todo-host-sandbox-breach").exists());

    // Its own schema is its to use: as its own role, with its own search_path.
    assert!(
        attack(&app, &user, "SELECT current_user::text, current_setting('search_path')")
            .await
            .contains("todo_plugin_hostile_store")
    );
    assert!(attack(&app, &user, "SELECT current_setting('is_superuser')").await.contains("\"off\""));

    // Nothing changed but the host's own outbox records of the tasks the
    // attacks' calls created (the fixture answers each with a task).
    let (mut after, roles) = snapshot(&app).await;
    let outbox = after.remove("public.outbox").unwrap() - before.0["public.outbox"];
    assert_eq!(outbox, 2, "only the two probes' calls committed (a task.created each)");
    let mut unchanged = before.0.clone();
    unchanged.remove("public.outbox");
    assert_eq!((after, roles), (unchanged, before.1), "nothing in the database changed");
    let forged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.outbox WHERE topic <> 'task-events' \
         OR convert_from(payload, 'UTF8')::jsonb ->> 'type' <> 'task.created'",
    )
    .fetch_one(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(forged, 0);
    let (status, health) = status_and_json(app.request(Method::GET, "/health").send().await.unwrap()).await;
    assert_eq!(status, 200, "the host is unharmed: {health}");
}

#[tokio::test]
async fn a_statement_past_the_deadline_is_cancelled_by_the_server() {
    let app = hostile_app().await;
    let user = app.register_user().await;
    // hostile-store's deadline is 300 ms, and so is its role's
    // statement_timeout: whichever fires first (the server cancels the
    // statement, or the host gives up on the call), the call ran out of its
    // deadline (504) and the statement does not outlive it on the server.
    let started = std::time::Instant::now();
    let title = "sql:SELECT pg_sleep(5)";
    let (status, body) =
        status_and_json(send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": title }))).await).await;
    assert_eq!((status, body["type"].as_str()), (504, Some("/problems/plugin-timeout")), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let mut db = app.db().await;
    let mut sleeping = i64::MAX;
    for _ in 0..20 {
        sleeping = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' AND state = 'active' \
             AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if sleeping == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sleeping, 0, "nothing keeps sleeping on the server a second after the deadline");
}

#[tokio::test]
async fn the_host_connects_as_a_role_that_is_not_a_superuser_and_names_each_plugins_role() {
    let app = TestApp::spawn_with(HostOptions::default().env("EVENT_HANDLERS", "audit-log")).await;
    let mut db = app.db().await;
    let host: (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = \
         (SELECT usename FROM pg_stat_activity WHERE application_name = 'todo-host' LIMIT 1)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(host, ("todo_host".into(), false, true));
    assert!(!app.logs().iter().any(|line| line.contains("SUPERUSER")), "no warning for a non-superuser");

    let admin = app.create_user("admin").await;
    let (_, plugins) = status_and_json(send(&app, &admin, Method::GET, "/admin/plugins", None).await).await;
    let database = |name: &str| {
        plugins.as_array().unwrap().iter().find(|plugin| plugin["name"] == name).unwrap()["database"].clone()
    };
    assert_eq!(
        database("postgres-store"),
        json!({ "role": "todo_plugin_postgres_store", "schema": "plugin_postgres_store" })
    );
    assert_eq!(database("audit-log"), json!({ "role": "todo_plugin_audit_log", "schema": "plugin_audit_log" }));
    let plugin_roles: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolinherit FROM pg_roles WHERE rolname LIKE 'todo\\_plugin\\_%' \
         AND rolname IN ('todo_plugin_postgres_store', 'todo_plugin_audit_log') ORDER BY 1",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(plugin_roles.len(), 2);
    assert!(plugin_roles.iter().all(|(_, superuser, inherits)| !superuser && !inherits), "{plugin_roles:?}");
    let members: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname LIKE 'todo\\_plugin\\_%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(members, 0, "a plugin role is a member of no role");
}

#[tokio::test]
async fn a_failing_migration_fails_the_load_and_the_serving_version_stays() {
    let dir = plugin_dir_with(&[]);
    let app = TestApp::spawn_with(HostOptions::default().env("PLUGIN_DIR", path_str(&dir))).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "before the bad migration" }))).await;

    std::fs::write(
        dir.join("postgres-store.migrations/0002_broken.sql"),
        "ALTER TABLE tasks ADD COLUMN x nonsense_type;",
    )
    .unwrap();
    let (status, report) =
        status_and_json(send(&app, &admin, Method::POST, "/admin/plugins/reload?name=postgres-store", None).await)
            .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["loaded"], json!([]), "{report}");
    let reason = report["failed"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("migration 2 (broken) failed") && reason.contains("nonsense_type"), "{reason}");

    // The version serving before keeps serving, on its schema as it was.
    let (status, page) = status_and_json(send(&app, &user, Method::GET, "/tasks", None).await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["title"], "before the bad migration");
    let mut db = app.db().await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM plugin_postgres_store.todo_plugin_migrations ORDER BY version")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(versions, [1], "the failed migration left no trace");

    // A migration that changes what was applied is refused the same way.
    std::fs::remove_file(dir.join("postgres-store.migrations/0002_broken.sql")).unwrap();
    let first = dir.join("postgres-store.migrations/0001_tasks.sql");
    let edited = std::fs::read_to_string(&first).unwrap() + "\n-- edited after it was applied\n";
    std::fs::write(&first, edited).unwrap();
    let (_, report) =
        status_and_json(send(&app, &admin, Method::POST, "/admin/plugins/reload?name=postgres-store", None).await)
            .await;
    assert!(report["failed"][0]["reason"].as_str().unwrap().contains("applied with other content"), "{report}");
}

#[tokio::test]
async fn a_database_of_the_first_release_keeps_every_task_and_audit_row() {
    // A database as the first release left it: its migrations (which the
    // new host still has, unchanged) with tasks and audit rows in `public`.
    let first = TestApp::spawn_with(HostOptions::default().env("STORAGE_PLUGIN", "kv-store").redis()).await;
    let owner = first.register_user().await;
    let mut db = first.db().await;
    let tasks_in_public: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.tasks").fetch_one(&mut db).await.unwrap();
    assert_eq!(tasks_in_public, 0, "the first release's table is there, untouched by kv-store");
    let task_id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO public.tasks (id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version) \
         VALUES ($1, $2, 'kept across the upgrade', NULL, 'in_progress', 3, NULL, now(), now(), 2)",
    )
    .bind(task_id)
    .bind(owner.id)
    .execute(&mut db)
    .await
    .unwrap();
    for (event, version) in [("e1", 1), ("e2", 2)] {
        let task =
            json!({ "id": task_id, "owner_id": owner.id, "title": "kept across the upgrade", "version": version });
        sqlx::query(
            "INSERT INTO public.task_audit (event_id, task_id, owner_id, event_type, task, occurred_at, recorded_at) \
             VALUES ($1, $2, $3, 'task.updated', $4, now(), now())",
        )
        .bind(event)
        .bind(task_id)
        .bind(owner.id)
        .bind(task)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let database = first.database.clone();
    drop(first);

    let upgraded =
        TestApp::spawn_with(HostOptions::default().database(&database).env("EVENT_HANDLERS", "audit-log")).await;
    let (status, task) =
        status_and_json(send(&upgraded, &owner, Method::GET, &format!("/tasks/{task_id}"), None).await).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!((task["title"].as_str(), task["version"].as_i64()), (Some("kept across the upgrade"), Some(2)));
    let (status, history) =
        status_and_json(send(&upgraded, &owner, Method::GET, &format!("/tasks/{task_id}/history"), None).await).await;
    assert_eq!(status, 200, "{history}");
    let events: Vec<&str> =
        history["items"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(events, ["e1", "e2"]);
    let moved: Vec<(String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tableowner::text FROM pg_tables WHERE tablename IN ('tasks', 'task_audit') ORDER BY tablename",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(
        moved,
        [
            ("plugin_audit_log".to_string(), "todo_plugin_audit_log".to_string()),
            ("plugin_postgres_store".to_string(), "todo_plugin_postgres_store".to_string())
        ]
    );
    // New writes land in the handed-over table.
    let (status, _) = status_and_json(
        send(&upgraded, &owner, Method::PATCH, &format!("/tasks/{task_id}"), Some(json!({ "status": "done" }))).await,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_plugin_reads_another_plugins_table_only_while_shared_and_granted() {
    let reader = |read: Option<&str>| {
        let grants = match read {
            Some(relation) => format!("sql = true\nread = [\"{relation}\"]\n"),
            None => "sql = true\n".into(),
        };
        format!("kind = \"storage\"\nversion = \"1\"\n[grants]\nkv = true\n{grants}[limits]\ndeadline_ms = 300\n")
    };
    let dir = plugin_dir_with(&[
        ("granted-reader", "hostile-store", &reader(Some("postgres-store.tasks"))),
        ("ungranted-reader", "hostile-store", &reader(None)),
        ("overreaching-reader", "hostile-store", &reader(Some("postgres-store.secrets"))),
    ]);
    // postgres-store shares `tasks` (its manifest); a host that serves it
    // provisions it first.
    let owner_app = TestApp::spawn_with(HostOptions::default().env("PLUGIN_DIR", path_str(&dir))).await;
    let user = owner_app.register_user().await;
    send(&owner_app, &user, Method::POST, "/tasks", Some(json!({ "title": "shared" }))).await;
    let database = owner_app.database.clone();
    drop(owner_app);

    let with = |storage: &str| {
        HostOptions::default()
            .redis()
            .database(&database)
            .env("PLUGIN_DIR", path_str(&dir))
            .env("STORAGE_PLUGIN", storage)
    };
    let granted = TestApp::spawn_with(with("granted-reader")).await;
    let outcome = attack(&granted, &user, "SELECT title FROM plugin_postgres_store.tasks").await;
    assert!(outcome.starts_with("sql-ok: 1 rows"), "{outcome}");
    let written = attack(&granted, &user, "DELETE FROM plugin_postgres_store.tasks").await;
    assert!(written.starts_with("sql-error 42501"), "a read grant is no write grant: {written}");
    drop(granted);

    let ungranted = TestApp::spawn_with(with("ungranted-reader")).await;
    let outcome = attack(&ungranted, &user, "SELECT title FROM plugin_postgres_store.tasks").await;
    assert!(outcome.starts_with("sql-error 42501"), "{outcome}");
    drop(ungranted);

    // A read the manifest no longer asks for is revoked at the next load.
    std::fs::write(dir.join("granted-reader.toml"), reader(None)).unwrap();
    let revoked = TestApp::spawn_with(with("granted-reader")).await;
    let outcome = attack(&revoked, &user, "SELECT title FROM plugin_postgres_store.tasks").await;
    assert!(outcome.starts_with("sql-error 42501"), "{outcome}");
    drop(revoked);

    // A read of something the publisher does not share fails the load.
    let refused = crate::helpers::spawn_failure(with("overreaching-reader")).await;
    assert!(refused.contains("does not share `secrets`"), "{refused}");
}

#[tokio::test]
async fn history_without_a_history_plugin_is_a_clear_problem() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let (_, task) =
        status_and_json(send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "t" }))).await).await;
    let id = task["id"].as_str().unwrap();
    let problem = assert_problem(
        send(&app, &user, Method::GET, &format!("/tasks/{id}/history"), None).await,
        501,
        "history-unavailable",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("HISTORY_PLUGIN=audit-log"), "{problem}");
}

#[tokio::test]
async fn a_host_connected_as_a_superuser_warns_loudly() {
    let database = crate::helpers::create_database().await;
    let superuser = crate::helpers::admin_database_url(&database);
    let app = TestApp::spawn_with(HostOptions::default().database(&database).env("DATABASE_URL", &superuser)).await;
    assert!(
        app.logs().iter().any(|line| line.contains("WARN") && line.contains("IS A SUPERUSER")),
        "{:#?}",
        app.logs()
    );
}
