//! Plugins delivered to every replica. An admin uploads a plugin's bundle to
//! any one replica (`PUT /admin/plugins/{name}`); it is stored in
//! PostgreSQL (`bundle_store`) and deployed, and every replica of every role
//! installs it into its own plugin directory and reloads it. Directory
//! reloads and rollbacks reach every replica too.
//!
//! Invariants:
//! - An upload is stored, deployed and installed only once it loaded on the
//!   replica that received it (compiled, linked, its migrations applied): a
//!   corrupt or refused bundle changes nothing anywhere.
//! - A replica installs a deployment into its directory once (its marker,
//!   `PLUGIN_DIR/.installed/NAME`, records the digest installed): at start,
//!   when told (a Redis announcement) and at every poll — so a replica that
//!   missed the announcement or starts later catches up, and a file dropped
//!   into the directory afterwards is not overwritten until the next
//!   upload or rollback.
//! - A rollback deploys the version it restored when that version is
//!   stored: every replica serves it, and serves it again after a restart.
//!   The version a directory served when an upload first replaced it is
//!   stored with the upload, so the first rollback always is.
//! - Uploads, rollbacks and what replicas do on others' behalf run one at a
//!   time per process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::broadcast::{Action, PluginBroadcast};
use super::bundle::BundleFiles;
use super::bundle_store::{BundleStore, Origin};
use super::loader::PluginSource;
use super::registry::{PluginRegistry, ReloadReport, UnknownPlugin};
use super::roster::{ReplicaVersion, Roster};
use super::{PluginIdentity, PluginStatus};

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The bundle itself: it does not load, or is not what it claims.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// Storing or installing it failed; nothing was deployed.
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
}

pub struct PluginDelivery {
    registry: Arc<PluginRegistry>,
    store: BundleStore,
    dir: PathBuf,
    broadcast: Option<PluginBroadcast>,
    roster: Roster,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl PluginDelivery {
    pub fn new(
        registry: Arc<PluginRegistry>,
        store: BundleStore,
        dir: PathBuf,
        broadcast: Option<PluginBroadcast>,
        roster: Roster,
    ) -> Self {
        Self { registry, store, dir, broadcast, roster, one_at_a_time: tokio::sync::Mutex::new(()) }
    }

    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// Installs into `dir` every deployment it has not installed yet;
    /// answers the plugins installed. Run before the plugins load, and by
    /// every sync.
    pub async fn install_deployed(store: &BundleStore, dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut installed = Vec::new();
        for deployment in store.deployments().await? {
            if installed_digest(dir, &deployment.name).as_deref() == Some(deployment.digest.as_str()) {
                continue;
            }
            let files = store.get(&deployment.digest).await?;
            let digest = PluginSource::new(files.clone())?.digest;
            anyhow::ensure!(digest == deployment.digest, "release {} reads back as {digest}", deployment.digest);
            install(dir, &files, &digest)?;
            tracing::info!(plugin = %deployment.name, %digest, "deployed plugin installed into the plugin directory");
            installed.push(deployment.name);
        }
        Ok(installed)
    }

    /// Stores `files`, uploaded by `by`, deploys it, installs it here and
    /// reloads it, and tells the other replicas.
    pub async fn upload(&self, files: BundleFiles, by: Uuid) -> Result<ReloadReport, UploadError> {
        let source = PluginSource::new(files.clone()).map_err(UploadError::Invalid)?;
        let (name, digest, version) = (files.name.clone(), source.digest.clone(), source.version().to_string());
        let _one = self.one_at_a_time.lock().await;
        self.registry.check(source).await.map_err(UploadError::Invalid)?;
        check_writable(&self.dir).map_err(UploadError::Unavailable)?;
        self.keep_directory_version(&name).await.map_err(UploadError::Unavailable)?;
        self.store.put(&files, &digest, &version, Origin::Upload, Some(by)).await.map_err(UploadError::Unavailable)?;
        self.store.deploy(&name, &digest, Some(by)).await.map_err(UploadError::Unavailable)?;
        install(&self.dir, &files, &digest).map_err(UploadError::Unavailable)?;
        tracing::info!(plugin = %name, %version, %digest, uploaded_by = %by, "plugin uploaded and deployed");
        let report = self.reload_installed(std::slice::from_ref(&name)).await;
        self.announce(Action::Reload { name: Some(name) }).await;
        self.roster.report(&self.registry.statuses()).await;
        Ok(report)
    }

    /// Reads the plugin directory again (every plugin, or `only`), and
    /// tells the other replicas to do the same with theirs.
    pub async fn reload(&self, only: Option<&str>) -> Result<ReloadReport, UnknownPlugin> {
        let _one = self.one_at_a_time.lock().await;
        let report = self.registry.reload(only).await?;
        self.announce(Action::Reload { name: only.map(str::to_string) }).await;
        self.roster.report(&self.registry.statuses()).await;
        Ok(report)
    }

    /// Serves the version `name` had before its last reload again,
    /// deploys it when it is stored, and tells the other replicas.
    pub async fn rollback(&self, name: &str) -> Result<Option<PluginIdentity>, UnknownPlugin> {
        let _one = self.one_at_a_time.lock().await;
        let Some(restored) = self.registry.rollback(name)? else { return Ok(None) };
        self.deploy_serving(name).await;
        self.announce(Action::Rollback { name: name.to_string() }).await;
        self.roster.report(&self.registry.statuses()).await;
        Ok(Some(restored))
    }

    /// Does what another replica announced, after installing what it
    /// deployed (which may be all the announcement asks).
    pub async fn follow(&self, action: Action) {
        let _one = self.one_at_a_time.lock().await;
        let installed = self.sync().await;
        match action {
            // Not in service here: nothing to reload.
            Action::Reload { name: Some(name) } if !self.registry.serves(&name) => {}
            Action::Reload { name } => match self.registry.reload(name.as_deref()).await {
                Ok(report) => tracing::info!(?report, "reloaded plugins as another replica did"),
                Err(error) => tracing::warn!(%error, "cannot reload as another replica did"),
            },
            // Installing the deployment it restored restored it here.
            Action::Rollback { name } if installed.contains(&name) => {}
            Action::Rollback { name } => match self.registry.rollback(&name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(plugin = %name, "cannot roll back as another replica did: no earlier version")
                }
                Err(error) => tracing::warn!(%error, "cannot roll back as another replica did"),
            },
        }
        self.roster.report(&self.registry.statuses()).await;
    }

    /// Every `every` until `shutdown`: installs and reloads what was
    /// deployed and not installed here (an announcement missed), and
    /// records what this process serves.
    pub async fn poll(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            {
                let _one = self.one_at_a_time.lock().await;
                self.sync().await;
            }
            self.roster.report(&self.registry.statuses()).await;
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

    /// Installs the deployments not installed here, and reloads them;
    /// answers the plugins installed.
    async fn sync(&self) -> Vec<String> {
        match Self::install_deployed(&self.store, &self.dir).await {
            Ok(installed) => {
                if !installed.is_empty() {
                    let report = self.reload_installed(&installed).await;
                    tracing::info!(?report, "reloaded the plugins deployed by another replica");
                }
                installed
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot install the deployed plugins");
                Vec::new()
            }
        }
    }

    /// Reloads the plugins in `names` just installed: those in service, and
    /// any new event handler (a full reload starts it).
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

    /// Stores the version `name` serves from this replica's directory, if no
    /// upload replaced it yet, so that a rollback to it reaches every
    /// replica.
    async fn keep_directory_version(&self, name: &str) -> anyhow::Result<()> {
        let Some(serving) = self.registry.statuses().into_iter().find(|status| status.identity.name == name) else {
            return Ok(());
        };
        if self.store.has(&serving.digest).await? {
            return Ok(());
        }
        // The directory may hold other files than it serves (a drop-in not
        // reloaded yet): only the files it serves are worth keeping.
        let Ok(files) = BundleFiles::read(&self.dir, name) else { return Ok(()) };
        match PluginSource::new(files.clone()) {
            Ok(source) if source.digest == serving.digest => {
                self.store.put(&files, &source.digest, source.version(), Origin::Directory, None).await
            }
            _ => Ok(()),
        }
    }

    /// Deploys the version `name` serves now, when it is stored (it was
    /// restored by a rollback).
    async fn deploy_serving(&self, name: &str) {
        let Some(serving) = self.registry.statuses().into_iter().find(|status| status.identity.name == name) else {
            return;
        };
        let deployed = async {
            if !self.store.has(&serving.digest).await? {
                return anyhow::Ok(false);
            }
            self.store.deploy(name, &serving.digest, None).await?;
            let files = self.store.get(&serving.digest).await?;
            install(&self.dir, &files, &serving.digest)?;
            Ok(true)
        };
        match deployed.await {
            Ok(true) => tracing::info!(plugin = %name, digest = %serving.digest, "rolled-back version deployed"),
            Ok(false) => {}
            Err(error) => tracing::error!(
                plugin = %name,
                error = %format!("{error:#}"),
                "cannot deploy the rolled-back version: replicas that start now serve the deployed one"
            ),
        }
    }

    async fn announce(&self, action: Action) {
        if let Some(broadcast) = &self.broadcast {
            broadcast.announce(action).await;
        }
    }
}

/// Fails unless files can be written into `dir`, before anything is
/// deployed that this process could not install.
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

/// Writes `files` into `dir`, then the marker of `digest`.
fn install(dir: &Path, files: &BundleFiles, digest: &str) -> anyhow::Result<()> {
    files.write(dir)?;
    let marker = marker(dir, &files.name);
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
        let files = BundleFiles {
            name: "notes".into(),
            manifest: "kind = \"event-handler\"\nversion = \"1.0.0\"\n".into(),
            module: vec![0, 97, 115, 109],
            migrations: Vec::new(),
        };
        assert_eq!(installed_digest(&dir, "notes"), None);
        install(&dir, &files, "abc").unwrap();
        assert_eq!(installed_digest(&dir, "notes").as_deref(), Some("abc"));
        assert_eq!(BundleFiles::read(&dir, "notes").unwrap(), files);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
