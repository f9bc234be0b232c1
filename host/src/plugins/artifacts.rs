//! The on-disk cache of compiled plugins: native code, one file per
//! component and engine build, so a restart or a reload of unchanged bytes
//! skips compiling.
//!
//! - Only this host writes the directory, and an artifact is whole or
//!   absent: written under a temporary name, then renamed.
//! - A file's modification time is when a load last used it.
//! - The cache is within its budget once opened and after each `store`:
//!   the least recently used artifacts go first, never the one `store` has
//!   just written. Removing an artifact a running plugin was
//!   loaded from is harmless (the mapping keeps the file alive until it is
//!   unmapped): that plugin's next load compiles again.
//! - Files that are not artifacts are left alone.
//! - The page cache holds no copy of an artifact when it is handed out to
//!   be mapped. The kernel keeps a file written or read in one piece in
//!   folios of up to 2 MiB, and a mapping faults a whole folio in: a
//!   plugin's code would be resident in 2 MiB pieces (most of a Python
//!   component's 16 MB), where its calls run a few MB. Read afresh, each
//!   fault brings in one readahead window.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const EXTENSION: &str = "cwasm";

#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl ArtifactCache {
    /// The cache in `dir`, brought within `max_bytes` (a budget lowered
    /// since the last start takes effect now).
    pub fn open(dir: &Path, max_bytes: u64) -> Self {
        let cache = Self { dir: dir.to_path_buf(), max_bytes };
        cache.shrink_to_budget(None);
        cache
    }

    /// Where the artifact named `key` is (or would be) kept.
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{EXTENSION}"))
    }

    /// The artifact named `key`, marked as used now, if the cache has it.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let path = self.path(key);
        if !path.is_file() {
            return None;
        }
        // Best effort: an artifact whose time cannot be set is only removed
        // sooner than it would be, one still cached only uses more memory.
        if let Ok(file) = File::options().write(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
            drop_cached_pages(&file);
        }
        Some(path)
    }

    /// Keeps `bytes` as the artifact named `key`, then removes the least
    /// recently used others while the cache is over its budget.
    pub fn store(&self, key: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let path = self.path(key);
        fs::create_dir_all(&self.dir)?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        if let Err(error) = write_uncached(&temporary, bytes).and_then(|()| fs::rename(&temporary, &path)) {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        self.shrink_to_budget(Some(&path));
        Ok(path)
    }

    /// Drops an artifact that could not be loaded.
    pub fn discard(&self, path: &Path) {
        let _ = fs::remove_file(path);
    }

    fn shrink_to_budget(&self, keep: Option<&Path>) {
        let mut artifacts = self.artifacts();
        artifacts.sort_by_key(|artifact| artifact.used);
        let mut total: u64 = artifacts.iter().map(|artifact| artifact.bytes).sum();
        for artifact in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if Some(artifact.path.as_path()) != keep && fs::remove_file(&artifact.path).is_ok() {
                tracing::info!(path = %artifact.path.display(), "removed a compiled plugin unused the longest: the cache is over PLUGIN_CACHE_MAX_BYTES");
                total -= artifact.bytes;
            }
        }
    }

    fn artifacts(&self) -> Vec<Artifact> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let metadata = fs::metadata(&path).ok()?;
                let is_artifact = metadata.is_file() && path.extension().is_some_and(|e| e == EXTENSION);
                is_artifact.then_some(())?;
                Some(Artifact { used: metadata.modified().ok()?, bytes: metadata.len(), path })
            })
            .collect()
    }
}

/// Writes `bytes` to `path` and through to the disk (so the file renamed
/// into place afterwards is whole after a crash too), leaving no copy in
/// the page cache.
fn write_uncached(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop_cached_pages(&file);
    Ok(())
}

/// Drops the clean pages of `file` the page cache holds and no process
/// maps (advice: the kernel may keep some).
fn drop_cached_pages(file: &File) {
    // SAFETY: posix_fadvise reads nothing from memory; the descriptor is open.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

struct Artifact {
    path: PathBuf,
    used: SystemTime,
    bytes: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A cache in a directory of its own, removed with it.
    struct Scratch(ArtifactCache);

    impl std::ops::Deref for Scratch {
        type Target = ArtifactCache;
        fn deref(&self) -> &ArtifactCache {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0.dir);
        }
    }

    fn cache(max_bytes: u64) -> Scratch {
        let dir = std::env::temp_dir().join(format!("todo-host-artifacts-{}", uuid::Uuid::new_v4().simple()));
        Scratch(ArtifactCache::open(&dir, max_bytes))
    }

    fn used_ago(cache: &ArtifactCache, key: &str, hours: u64) {
        let then = SystemTime::now() - Duration::from_secs(hours * 3600);
        File::options().write(true).open(cache.path(key)).unwrap().set_modified(then).unwrap();
    }

    fn kept(cache: &ArtifactCache) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&cache.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stores_and_finds_an_artifact_by_its_key() {
        let cache = cache(1 << 20);
        assert_eq!(cache.lookup("a"), None);
        let path = cache.store("a", b"native code").unwrap();
        assert_eq!(cache.lookup("a"), Some(path.clone()));
        assert_eq!(fs::read(path).unwrap(), b"native code");
    }

    #[test]
    fn over_its_budget_the_cache_removes_the_least_recently_used_first() {
        let cache = cache(250);
        cache.store("a", &[0; 100]).unwrap();
        cache.store("b", &[0; 100]).unwrap();
        used_ago(&cache, "a", 3);
        used_ago(&cache, "b", 2);
        cache.lookup("a").expect("a is cached");

        cache.store("c", &[0; 100]).unwrap();
        assert_eq!(kept(&cache), ["a.cwasm", "c.cwasm"], "b was used the longest ago");
    }

    #[test]
    fn the_artifact_just_stored_is_kept_even_alone_over_the_budget() {
        let cache = cache(50);
        cache.store("old", &[0; 10]).unwrap();
        used_ago(&cache, "old", 1);
        cache.store("new", &[0; 100]).unwrap();
        assert_eq!(kept(&cache), ["new.cwasm"]);
    }

    #[test]
    fn opening_a_cache_over_its_budget_brings_it_within() {
        let cache = cache(1 << 20);
        cache.store("a", &[0; 100]).unwrap();
        cache.store("b", &[0; 100]).unwrap();
        used_ago(&cache, "a", 2);
        used_ago(&cache, "b", 1);
        ArtifactCache::open(&cache.dir, 150);
        assert_eq!(kept(&cache), ["b.cwasm"]);
    }

    #[test]
    fn files_that_are_not_artifacts_are_left_alone() {
        let cache = cache(0);
        fs::create_dir_all(&cache.dir).unwrap();
        fs::write(cache.dir.join("notes.txt"), [0; 100]).unwrap();
        cache.store("a", &[0; 10]).unwrap();
        assert_eq!(kept(&cache), ["a.cwasm", "notes.txt"]);
    }
}
