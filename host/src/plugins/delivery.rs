//! Plugins delivered to every replica. An admin uploads a plugin's bundle to
//! any one process (`PUT /admin/plugins/{name}`); it is stored in
//! PostgreSQL (`bundle_store`) and deployed, and every process of every
//! role installs it into its own plugin directory and serves it. Directory
//! reloads and rollbacks reach every process too.
//!
//! Invariants:
//! - An upload is deployed only once it serves on the process that
//!   received it; until then it is refused (422) or undone at the first
//!   failure — the files it wrote put back, the version before reloaded —
//!   and no other process hears of it. (Migrations a failed load applied
//!   stay: a plugin's migrations only ever move forward.)
//! - The deployment table is the truth, announcements only wake processes
//!   up: at start, on an announcement and every `PLUGIN_SYNC_SECS`, a
//!   process installs the deployments its directory has not installed (a
//!   marker per plugin under `PLUGIN_DIR/.installed/`) and reloads a
//!   deployed plugin it does not serve yet, once per deployment — so a
//!   process that missed the announcement, starts later or shares its
//!   directory with another catches up, and a file dropped into the
//!   directory afterwards serves until the next upload or rollback.
//! - A rollback deploys the version it restored when that version is
//!   stored (the version a directory served when an upload first replaced
//!   it is stored with the upload), so every process serves it, after a
//!   restart too; a follower restores that same version, not merely the one
//!   before its own.
//! - Everything here runs one operation at a time per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::broadcast::{Action, PluginBroadcast};
use super::bundle::BundleFiles;
use super::bundle_store::{BundleStore, Deployment, Origin};
use super::loader::PluginSource;
use super::registry::{PluginRegistry, ReloadReport, UnknownPlugin};
use super::roster::{ReplicaVersion, Roster};
use super::slot::Plugin;
use super::{PluginIdentity, PluginStatus};
use crate::background::Ticks;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The bundle itself: it does not load, or is not what it claims.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// Another upload or rollback of the plugin was deployed meanwhile;
    /// this one was undone.
    #[error("another version of `{0}` was deployed while this one was installed")]
    Conflict(String),
    /// Storing, installing or deploying it failed; it was undone.
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
}

/// What to do when the storage plugin serving here changed (the task cache
/// holds the old one's answers).
pub type StorageChanged = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

pub struct PluginDelivery {
    registry: Arc<PluginRegistry>,
    store: BundleStore,
    dir: PathBuf,
    broadcast: Option<PluginBroadcast>,
    roster: Roster,
    storage_changed: StorageChanged,
    /// Per plugin, the deployment this process last reloaded for: it
    /// reloads once per deployment, whatever the directory then held.
    reloaded_for: Mutex<HashMap<String, String>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl PluginDelivery {
    pub fn new(
        registry: Arc<PluginRegistry>,
        store: BundleStore,
        dir: PathBuf,
        broadcast: Option<PluginBroadcast>,
        roster: Roster,
        storage_changed: StorageChanged,
    ) -> Self {
        Self {
            registry,
            store,
            dir,
            broadcast,
            roster,
            storage_changed,
            reloaded_for: Mutex::default(),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Installs into `dir` every deployment it has not installed yet;
    /// answers those installed. Run before the plugins load, and by every
    /// sync.
    pub async fn install_deployed(store: &BundleStore, dir: &Path) -> anyhow::Result<Vec<Deployment>> {
        let mut installed = Vec::new();
        for deployment in store.deployments().await? {
            if installed_digest(dir, &deployment.name).as_deref() == Some(deployment.digest.as_str()) {
                continue;
            }
            let files = store.get(&deployment.name, &deployment.digest).await?;
            let digest = PluginSource::new(files.clone())?.digest;
            anyhow::ensure!(digest == deployment.digest, "release {} reads back as {digest}", deployment.digest);
            files.write(dir)?;
            mark_installed(dir, &deployment.name, &digest)?;
            tracing::info!(plugin = %deployment.name, %digest, "deployed plugin installed into the plugin directory");
            installed.push(deployment);
        }
        Ok(installed)
    }

    /// Stores `files`, uploaded by `by`, installs it here and reloads it,
    /// then deploys it and tells the other processes.
    pub async fn upload(&self, files: BundleFiles, by: Uuid) -> Result<ReloadReport, UploadError> {
        let source = PluginSource::new(files.clone()).map_err(UploadError::Invalid)?;
        let (name, digest, version) = (files.name.clone(), source.digest.clone(), source.version().to_string());
        let _one = self.one_at_a_time.lock().await;
        let storage_before = self.storage_digest();
        let deployed = self.store.deployed(&name).await.map_err(UploadError::Unavailable)?;
        self.registry.check(source).await.map_err(|error| match is_outage(&error) {
            true => UploadError::Unavailable(error),
            false => UploadError::Invalid(error),
        })?;
        check_writable(&self.dir).map_err(UploadError::Unavailable)?;
        self.keep_directory_version(&name).await.map_err(UploadError::Unavailable)?;
        self.store.put(&files, &digest, &version, Origin::Upload, Some(by)).await.map_err(UploadError::Unavailable)?;

        let replaced = BundleFiles::read(&self.dir, &name).ok();
        files.write(&self.dir).map_err(UploadError::Unavailable)?;
        let report = self.reload_installed(std::slice::from_ref(&name)).await;
        if let Some(failure) = report.failed.iter().find(|failure| failure.name == name) {
            let reason = failure.reason.clone();
            self.undo(&name, replaced).await;
            return Err(UploadError::Invalid(anyhow::anyhow!(reason)));
        }
        let outcome = match self.store.deploy_replacing(&name, &digest, deployed.as_deref(), by).await {
            Ok(true) => mark_installed(&self.dir, &name, &digest).map_err(UploadError::Unavailable),
            Ok(false) => Err(UploadError::Conflict(name.clone())),
            Err(error) => Err(UploadError::Unavailable(error)),
        };
        if let Err(error) = outcome {
            self.undo(&name, replaced).await;
            // What did get deployed meanwhile serves here too.
            self.sync().await;
            self.after_change(storage_before).await;
            return Err(error);
        }
        self.reloaded_for.lock().expect("poisoned").insert(name.clone(), digest.clone());
        tracing::info!(plugin = %name, %version, %digest, uploaded_by = %by, "plugin uploaded and deployed");
        self.announce(Action::Reload { name: Some(name) }).await;
        self.after_change(storage_before).await;
        Ok(report)
    }

    /// Reads the plugin directory again (every plugin, or `only`), and
    /// tells the other processes to do the same with theirs.
    pub async fn reload(&self, only: Option<&str>) -> Result<ReloadReport, UnknownPlugin> {
        let _one = self.one_at_a_time.lock().await;
        let storage_before = self.storage_digest();
        let report = self.registry.reload(only).await?;
        self.announce(Action::Reload { name: only.map(str::to_string) }).await;
        self.after_change(storage_before).await;
        Ok(report)
    }

    /// Serves the version `name` had before its last reload again,
    /// deploys it when it is stored, and tells the other processes.
    pub async fn rollback(&self, name: &str) -> Result<Option<PluginIdentity>, UnknownPlugin> {
        let _one = self.one_at_a_time.lock().await;
        let storage_before = self.storage_digest();
        let Some(restored) = self.registry.rollback(name)? else { return Ok(None) };
        let digest = self.serving_digest(name);
        if let Some(digest) = &digest {
            self.deploy_restored(name, digest).await;
        }
        self.announce(Action::Rollback { name: name.to_string(), digest }).await;
        self.after_change(storage_before).await;
        Ok(Some(restored))
    }

    /// Does what another process announced, after installing what was
    /// deployed (which may be all the announcement asks).
    pub async fn follow(&self, action: Action) {
        let _one = self.one_at_a_time.lock().await;
        let storage_before = self.storage_digest();
        self.sync().await;
        match action {
            // Not in service here: nothing to reload.
            Action::Reload { name: Some(name) } if !self.registry.serves(&name) => {}
            Action::Reload { name } => match self.registry.reload(name.as_deref()).await {
                Ok(report) => tracing::info!(?report, "reloaded plugins as another process did"),
                Err(error) => tracing::warn!(%error, "cannot reload as another process did"),
            },
            Action::Rollback { name, digest: Some(digest) } => {
                if self.serving_digest(&name).as_deref() != Some(digest.as_str()) {
                    match self.registry.rollback_to(&name, &digest) {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            tracing::warn!(plugin = %name, %digest, "cannot roll back as another process did: that version is not kept here")
                        }
                        Err(error) => tracing::warn!(%error, "cannot roll back as another process did"),
                    }
                }
            }
            Action::Rollback { name, digest: None } => match self.registry.rollback(&name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(plugin = %name, "cannot roll back as another process did: no earlier version")
                }
                Err(error) => tracing::warn!(%error, "cannot roll back as another process did"),
            },
        }
        self.after_change(storage_before).await;
    }

    /// Every `every` until `shutdown`: installs and serves what was
    /// deployed and is not yet (an announcement missed), and records what
    /// this process serves.
    pub async fn poll(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticks = Ticks::new(every, shutdown);
        while ticks.next().await {
            let _one = self.one_at_a_time.lock().await;
            let storage_before = self.storage_digest();
            self.sync().await;
            self.after_change(storage_before).await;
            self.roster.forget_gone().await;
        }
    }

    /// What every live process serves, by plugin name.
    pub async fn replicas(&self) -> Result<Vec<(String, ReplicaVersion)>, sqlx::Error> {
        self.roster.versions().await
    }

    /// Every plugin in service here.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.registry.statuses()
    }

    /// Installs the deployments this directory has not installed, then
    /// reloads each deployed plugin this process does not serve yet (once
    /// per deployment; again only after a failed reload).
    async fn sync(&self) {
        if let Err(error) = Self::install_deployed(&self.store, &self.dir).await {
            tracing::error!(error = %format!("{error:#}"), "cannot install the deployed plugins");
        }
        let deployments = match self.store.deployments().await {
            Ok(deployments) => deployments,
            Err(error) => return tracing::warn!(error = %format!("{error:#}"), "cannot read the deployed plugins"),
        };
        let due: Vec<Deployment> = deployments
            .into_iter()
            .filter(|deployment| self.serving_digest(&deployment.name).as_deref() != Some(deployment.digest.as_str()))
            .filter(|deployment| {
                self.reloaded_for.lock().expect("poisoned").get(&deployment.name) != Some(&deployment.digest)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let names: Vec<String> = due.iter().map(|deployment| deployment.name.clone()).collect();
        let report = self.reload_installed(&names).await;
        tracing::info!(?report, "reloaded the plugins deployed by another process");
        let mut reloaded_for = self.reloaded_for.lock().expect("poisoned");
        for deployment in due.into_iter().filter(|deployment| !report.failed.iter().any(|f| f.name == deployment.name))
        {
            reloaded_for.insert(deployment.name, deployment.digest);
        }
    }

    /// Reloads the plugins `names` from the directory: those in service,
    /// and (a full reload) any new event handler among them.
    async fn reload_installed(&self, names: &[String]) -> ReloadReport {
        let mut report = ReloadReport::default();
        let (serving, new): (Vec<&String>, Vec<&String>) = names.iter().partition(|name| self.registry.serves(name));
        for name in serving {
            match self.registry.reload(Some(name)).await {
                Ok(one) => report.merge(one),
                Err(error) => tracing::warn!(%error, "a plugin left service while it was installed"),
            }
        }
        if !new.is_empty() {
            report.merge(self.registry.reload(None).await.expect("a full reload names no plugin"));
            report.not_in_service = new.into_iter().filter(|name| !self.registry.serves(name)).cloned().collect();
        }
        report
    }

    /// Puts back the files `replaced` (none: removes the plugin's files)
    /// and serves them again.
    async fn undo(&self, name: &str, replaced: Option<BundleFiles>) {
        let restored = match replaced {
            Some(files) => files.write(&self.dir),
            None => BundleFiles::remove(&self.dir, name),
        };
        if let Err(error) = restored {
            tracing::error!(plugin = %name, error = %format!("{error:#}"), "cannot put back the plugin's files");
        }
        let report = self.reload_installed(&[name.to_string()]).await;
        tracing::info!(plugin = %name, ?report, "upload undone");
    }

    /// Stores the version `name` serves from this process's directory, if
    /// no upload replaced it yet, so that a rollback to it reaches every
    /// process.
    async fn keep_directory_version(&self, name: &str) -> anyhow::Result<()> {
        let Some(serving) = self.serving_digest(name) else { return Ok(()) };
        if self.store.has(name, &serving).await? {
            return Ok(());
        }
        // The directory may hold other files than it serves (a drop-in not
        // reloaded yet): only the files it serves are worth keeping.
        let Ok(files) = BundleFiles::read(&self.dir, name) else { return Ok(()) };
        match PluginSource::new(files.clone()) {
            Ok(source) if source.digest == serving => {
                self.store.put(&files, &source.digest, source.version(), Origin::Directory, None).await
            }
            _ => Ok(()),
        }
    }

    /// Deploys `digest`, the version of `name` a rollback restored, when it
    /// is stored, and installs it here.
    async fn deploy_restored(&self, name: &str, digest: &str) {
        let deployed = async {
            if !self.store.has(name, digest).await? {
                return anyhow::Ok(false);
            }
            self.store.deploy(name, digest, None).await?;
            self.store.get(name, digest).await?.write(&self.dir)?;
            mark_installed(&self.dir, name, digest)?;
            self.reloaded_for.lock().expect("poisoned").insert(name.to_string(), digest.to_string());
            Ok(true)
        };
        match deployed.await {
            Ok(true) => tracing::info!(plugin = %name, %digest, "rolled-back version deployed"),
            Ok(false) => {}
            Err(error) => tracing::error!(
                plugin = %name,
                error = %format!("{error:#}"),
                "cannot deploy the rolled-back version: processes that start now serve the deployed one"
            ),
        }
    }

    fn serving_digest(&self, name: &str) -> Option<String> {
        self.registry.status(name).map(|status| status.digest)
    }

    fn storage_digest(&self) -> String {
        self.registry.storage().loaded().digest.clone()
    }

    /// Records what this process serves now, and flushes what the storage
    /// plugin it served `before` answered, if it changed.
    async fn after_change(&self, storage_before: String) {
        if self.storage_digest() != storage_before {
            (self.storage_changed)().await;
        }
        self.roster.report(&self.registry.statuses()).await;
    }

    async fn announce(&self, action: Action) {
        if let Some(broadcast) = &self.broadcast {
            broadcast.announce(action).await;
        }
    }
}

/// Whether `error` is the database (or a file) failing rather than the
/// bundle: no connection, a connection lost, I/O.
fn is_outage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| match cause.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(_)) => false,
        Some(_) => true,
        None => cause.is::<std::io::Error>(),
    })
}

/// Fails unless files can be written into `dir`, before anything is
/// stored that this process could not install.
fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(format!(".write-check.{}", Uuid::new_v4().simple()));
    std::fs::write(&probe, b"").with_context(|| format!("the plugin directory {} is not writable", dir.display()))?;
    std::fs::remove_file(&probe)?;
    Ok(())
}

/// Where a directory records which deployment of `name` it installed.
fn marker(dir: &Path, name: &str) -> PathBuf {
    dir.join(".installed").join(name)
}

fn installed_digest(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(marker(dir, name)).ok().map(|text| text.trim().to_string())
}

fn mark_installed(dir: &Path, name: &str, digest: &str) -> anyhow::Result<()> {
    let marker = marker(dir, name);
    std::fs::create_dir_all(marker.parent().expect("a marker has a parent"))?;
    std::fs::write(marker, digest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_remembers_the_deployment_it_installed() {
        let dir = std::env::temp_dir().join(format!("todo-host-delivery-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(installed_digest(&dir, "notes"), None);
        mark_installed(&dir, "notes", "abc").unwrap();
        assert_eq!(installed_digest(&dir, "notes").as_deref(), Some("abc"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_database_failing_is_an_outage_and_a_bad_migration_is_not() {
        let lost = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("a migration of `x` failed");
        assert!(is_outage(&lost));
        let compile = anyhow::anyhow!("cannot compile x.wasm");
        assert!(!is_outage(&compile));
    }
}
