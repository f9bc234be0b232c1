//! Plugin bundles in PostgreSQL, where every replica can fetch them: each
//! file once, by its SHA-256 (`plugin_files`); each version of a plugin as
//! the hashes of its files (`plugin_releases`, keyed by the plugin's name
//! and the loader's digest); and, per plugin, the version every replica
//! should serve (`plugin_deployments`).
//!
//! Invariants:
//! - A stored file's content hashes to its key: a fetched bundle is
//!   checked again before anyone writes it to disk.
//! - A release is stored whole (its files and row in one transaction)
//!   before a deployment can name it.

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::bundle::BundleFiles;

/// Where a stored release came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Upload,
    /// The version a replica served from its directory when an upload
    /// first replaced it.
    Directory,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Directory => "directory",
        }
    }
}

/// A stored release's migration file.
#[derive(Debug, Serialize, Deserialize)]
struct MigrationFile {
    file: String,
    sha256: String,
}

/// A stored release's files, by hash.
#[derive(sqlx::FromRow)]
struct Release {
    manifest_sha256: String,
    module_sha256: String,
    migrations: sqlx::types::Json<Vec<MigrationFile>>,
}

/// What a deployment names: the plugin and its release's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: String,
    pub digest: String,
}

#[derive(Clone)]
pub struct BundleStore {
    pool: PgPool,
}

fn sha256(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

impl BundleStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Stores `files` as the release `digest` of `version`, unless it is
    /// stored already; sends only the files the store does not hold.
    pub async fn put(
        &self,
        files: &BundleFiles,
        digest: &str,
        version: &str,
        origin: Origin,
        by: Option<Uuid>,
    ) -> anyhow::Result<()> {
        if self.has(&files.name, digest).await? {
            return Ok(());
        }
        let mut contents: HashMap<String, &[u8]> = HashMap::new();
        let manifest_sha256 = sha256(files.manifest.as_bytes());
        contents.insert(manifest_sha256.clone(), files.manifest.as_bytes());
        let module_sha256 = sha256(&files.module);
        contents.insert(module_sha256.clone(), &files.module);
        let mut migrations = Vec::new();
        for (file, sql) in &files.migrations {
            let hash = sha256(sql.as_bytes());
            contents.insert(hash.clone(), sql.as_bytes());
            migrations.push(MigrationFile { file: file.clone(), sha256: hash });
        }
        let hashes: Vec<&String> = contents.keys().collect();
        let held: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM plugin_files WHERE sha256 = ANY($1)")
            .bind(&hashes)
            .fetch_all(&self.pool)
            .await?;
        let mut transaction = self.pool.begin().await?;
        for (hash, content) in contents.iter().filter(|(hash, _)| !held.contains(hash)) {
            sqlx::query("INSERT INTO plugin_files (sha256, content) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(hash)
                .bind(content)
                .execute(&mut *transaction)
                .await?;
        }
        sqlx::query(
            "INSERT INTO plugin_releases (name, digest, version, manifest_sha256, module_sha256, migrations, origin, stored_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&files.name)
        .bind(digest)
        .bind(version)
        .bind(&manifest_sha256)
        .bind(&module_sha256)
        .bind(sqlx::types::Json(&migrations))
        .bind(origin.as_str())
        .bind(by)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Whether release `digest` of `name` is stored.
    pub async fn has(&self, name: &str, digest: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plugin_releases WHERE name = $1 AND digest = $2)")
            .bind(name)
            .bind(digest)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The files of release `digest` of `name`, each checked against its
    /// hash.
    pub async fn get(&self, name: &str, digest: &str) -> anyhow::Result<BundleFiles> {
        let release: Option<Release> = sqlx::query_as(
            "SELECT manifest_sha256, module_sha256, migrations FROM plugin_releases WHERE name = $1 AND digest = $2",
        )
        .bind(name)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        let Release { manifest_sha256, module_sha256, migrations } =
            release.with_context(|| format!("no release {digest} of `{name}` is stored"))?;
        let mut wanted = vec![manifest_sha256.clone(), module_sha256.clone()];
        wanted.extend(migrations.iter().map(|migration| migration.sha256.clone()));
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT sha256, content FROM plugin_files WHERE sha256 = ANY($1)")
                .bind(&wanted)
                .fetch_all(&self.pool)
                .await?;
        let contents: HashMap<String, Vec<u8>> = rows.into_iter().collect();
        let file = |hash: &str| -> anyhow::Result<Vec<u8>> {
            let content =
                contents.get(hash).with_context(|| format!("the file {hash} of release {digest} is missing"))?;
            if sha256(content) != hash {
                bail!("the stored file {hash} of release {digest} does not hash to its key");
            }
            Ok(content.clone())
        };
        let text = |hash: &str| -> anyhow::Result<String> {
            String::from_utf8(file(hash)?).with_context(|| format!("the stored file {hash} is not UTF-8"))
        };
        let mut sql = Vec::new();
        for migration in migrations.iter() {
            sql.push((migration.file.clone(), text(&migration.sha256)?));
        }
        let (name, manifest, module) = (name.to_string(), text(&manifest_sha256)?, file(&module_sha256)?);
        Ok(BundleFiles { name, manifest, module, migrations: sql })
    }

    /// Makes release `digest` of `name` the one every replica serves.
    pub async fn deploy(&self, name: &str, digest: &str, by: Option<Uuid>) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO plugin_deployments (name, digest, deployed_by) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET digest = $2, deployed_by = $3, deployed_at = now()",
        )
        .bind(name)
        .bind(digest)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes release `digest` of `name` the one every replica serves if
    /// `expected` is still the deployed one (`None`: none is); `false` when
    /// another deployment came first.
    pub async fn deploy_replacing(
        &self,
        name: &str,
        digest: &str,
        expected: Option<&str>,
        by: Uuid,
    ) -> anyhow::Result<bool> {
        let insert =
            "INSERT INTO plugin_deployments (name, digest, deployed_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let replace = "UPDATE plugin_deployments SET digest = $2, deployed_by = $3, deployed_at = now() \
                       WHERE name = $1 AND digest = $4";
        let done = match expected {
            None => sqlx::query(insert).bind(name).bind(digest).bind(by).execute(&self.pool).await?,
            Some(expected) => {
                sqlx::query(replace).bind(name).bind(digest).bind(by).bind(expected).execute(&self.pool).await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// The release of `name` deployed now, if any.
    pub async fn deployed(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT digest FROM plugin_deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every deployment.
    pub async fn deployments(&self) -> anyhow::Result<Vec<Deployment>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, digest FROM plugin_deployments ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(name, digest)| Deployment { name, digest }).collect())
    }
}
