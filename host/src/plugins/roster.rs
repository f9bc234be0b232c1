//! Which versions each process serves, kept in PostgreSQL
//! (`plugin_replicas`) so that any replica can tell an admin: every process
//! writes its own row when what it serves changes and at every poll of the
//! deployments; rows not refreshed for three polls (a minute at least) are
//! left out, and rows of processes gone for a day are removed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::slot::PluginStatus;

/// One version a process serves, as its row records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Served {
    name: String,
    version: String,
    sha256: String,
    digest: String,
}

/// What one process serves of one plugin (`GET /admin/plugins`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplicaVersion {
    /// The process (a new id at every start).
    pub replica: Uuid,
    /// Its host name and process id.
    pub host: String,
    /// `api`, `worker` or `all`.
    pub role: String,
    pub version: String,
    /// Hex SHA-256 of the `.wasm` it serves.
    pub sha256: String,
    /// When the process last refreshed its row.
    pub seen_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Roster {
    pool: PgPool,
    id: Uuid,
    role: &'static str,
    host: String,
    started_at: DateTime<Utc>,
    /// How long a row counts after its last refresh.
    stale: Duration,
}

impl Roster {
    /// The roster of a process of `role` that refreshes its row every
    /// `refresh`.
    pub fn new(pool: PgPool, role: &'static str, refresh: Duration) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "unknown".into());
        let host = format!("{}/{}", hostname.trim(), std::process::id());
        let stale = (3 * refresh).max(Duration::from_secs(60));
        Self { pool, id: Uuid::new_v4(), role, host, started_at: Utc::now(), stale }
    }

    /// Records that this process serves `statuses` now.
    pub async fn report(&self, statuses: &[PluginStatus]) {
        let served: Vec<Served> = statuses
            .iter()
            .map(|status| Served {
                name: status.identity.name.clone(),
                version: status.identity.version.clone(),
                sha256: status.identity.sha256.clone(),
                digest: status.digest.clone(),
            })
            .collect();
        let written = sqlx::query(
            "INSERT INTO plugin_replicas (id, role, host, started_at, seen_at, serving) VALUES ($1, $2, $3, $4, now(), $5) \
             ON CONFLICT (id) DO UPDATE SET seen_at = now(), serving = $5",
        )
        .bind(self.id)
        .bind(self.role)
        .bind(&self.host)
        .bind(self.started_at)
        .bind(sqlx::types::Json(&served))
        .execute(&self.pool)
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, "cannot record the plugin versions this process serves");
        }
    }

    /// Removes the rows of processes gone for a day.
    pub async fn forget_gone(&self) {
        let removed = sqlx::query("DELETE FROM plugin_replicas WHERE seen_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await;
        if let Err(error) = removed {
            tracing::debug!(%error, "cannot remove the rows of processes gone");
        }
    }

    /// What every live process serves, by plugin name.
    pub async fn versions(&self) -> Result<Vec<(String, ReplicaVersion)>, sqlx::Error> {
        let rows: Vec<ReplicaRow> = sqlx::query_as(
            "SELECT id, role, host, seen_at, serving FROM plugin_replicas \
             WHERE seen_at > now() - make_interval(secs => $1) ORDER BY started_at, id",
        )
        .bind(self.stale.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .flat_map(|row| {
                row.serving.0.into_iter().map(move |served| {
                    let version = ReplicaVersion {
                        replica: row.id,
                        host: row.host.clone(),
                        role: row.role.clone(),
                        version: served.version,
                        sha256: served.sha256,
                        seen_at: row.seen_at,
                    };
                    (served.name, version)
                })
            })
            .collect())
    }
}

/// A row of `plugin_replicas`.
#[derive(sqlx::FromRow)]
struct ReplicaRow {
    id: Uuid,
    role: String,
    host: String,
    seen_at: DateTime<Utc>,
    serving: sqlx::types::Json<Vec<Served>>,
}
