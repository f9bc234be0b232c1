//! A plugin's files as one unit: `NAME.toml`, `NAME.wasm` and the
//! `NAME.migrations/*.sql` beside them — read from a plugin directory,
//! received in an upload, kept in the bundle store, written into a plugin
//! directory.
//!
//! Invariants:
//! - A bundle is named like a plugin (lower-case letters, digits, `-`,
//!   `_`), its migrations like migrations: every name is safe in a path.
//! - A reader sees a bundle whole, the one before a write or the one after:
//!   writing holds the directory's lock (`.plugins.lock`) exclusively and
//!   reading holds it shared — across processes sharing the directory too —
//!   and each file, and the migrations directory as a whole, is written
//!   under a temporary name and renamed into place, so a reader that takes
//!   no lock (an operator's tool) never sees half a file either.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFiles {
    pub name: String,
    pub manifest: String,
    pub module: Vec<u8>,
    /// `(file name, SQL)` of each migration, sorted by file name.
    pub migrations: Vec<(String, String)>,
}

/// Whether `name` may name a plugin.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!("`{name}` is not a plugin name (1 to 64 lower-case letters, digits, `-` and `_`)");
    }
    Ok(())
}

/// Whether `file_name` may name a migration file (`NNNN_description.sql`,
/// no path).
pub fn check_migration_file_name(file_name: &str) -> anyhow::Result<()> {
    let plain = file_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !plain || !file_name.ends_with(".sql") || file_name.starts_with('.') {
        bail!("`{file_name}` is not a migration file name (NNNN_description.sql)");
    }
    Ok(())
}

impl BundleFiles {
    /// Plugin `name`'s files in `dir`; no migrations when it has no
    /// migrations directory.
    pub fn read(dir: &Path, name: &str) -> anyhow::Result<Self> {
        check_name(name)?;
        let _shared = DirLock::shared(dir);
        let manifest_path = dir.join(format!("{name}.toml"));
        let manifest = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read the manifest {}", manifest_path.display()))?;
        let module_path = dir.join(format!("{name}.wasm"));
        let module = std::fs::read(&module_path).with_context(|| format!("cannot read {}", module_path.display()))?;
        let migrations = read_migrations(&migrations_dir(dir, name))?;
        Ok(Self { name: name.to_string(), manifest, module, migrations })
    }

    /// Whether its name and file names are safe in a path.
    pub fn check_names(&self) -> anyhow::Result<()> {
        check_name(&self.name)?;
        self.migrations.iter().try_for_each(|(file_name, _)| check_migration_file_name(file_name))
    }

    /// Writes the bundle into `dir`, replacing plugin `name`'s files there
    /// (its migrations directory as a whole).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        self.check_names()?;
        let _exclusive = DirLock::exclusive(dir)?;
        let name = &self.name;
        let migrations = migrations_dir(dir, name);
        if self.migrations.is_empty() {
            remove_dir_if_present(&migrations)?;
        } else {
            let staged = temporary(dir, &format!("{name}.migrations"));
            std::fs::create_dir_all(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
            for (file_name, sql) in &self.migrations {
                std::fs::write(staged.join(file_name), sql)?;
            }
            let replaced = temporary(dir, &format!("{name}.migrations.old"));
            if migrations.exists() {
                std::fs::rename(&migrations, &replaced)?;
            }
            std::fs::rename(&staged, &migrations)?;
            remove_dir_if_present(&replaced)?;
        }
        replace_file(&dir.join(format!("{name}.wasm")), &self.module)?;
        replace_file(&dir.join(format!("{name}.toml")), self.manifest.as_bytes())
    }
}

impl BundleFiles {
    /// Removes plugin `name`'s files from `dir`, the manifest first (a
    /// reload then no longer finds the plugin).
    pub fn remove(dir: &Path, name: &str) -> anyhow::Result<()> {
        check_name(name)?;
        let _exclusive = DirLock::exclusive(dir)?;
        for file in [format!("{name}.toml"), format!("{name}.wasm")] {
            match std::fs::remove_file(dir.join(&file)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("cannot remove {file}"));
                }
                _ => {}
            }
        }
        remove_dir_if_present(&migrations_dir(dir, name))
    }
}

/// The lock of a plugin directory, held while it is read or written.
struct DirLock {
    _held: std::fs::File,
}

impl DirLock {
    fn path(dir: &Path) -> PathBuf {
        dir.join(".plugins.lock")
    }

    fn exclusive(dir: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::path(dir))
            .with_context(|| format!("cannot open the lock of the plugin directory {}", dir.display()))?;
        file.lock().with_context(|| format!("cannot lock the plugin directory {}", dir.display()))?;
        Ok(Self { _held: file })
    }

    /// `None` where there is no lock to take: a read-only directory that
    /// nothing installs into.
    fn shared(dir: &Path) -> Option<Self> {
        let file = std::fs::File::open(Self::path(dir)).ok()?;
        file.lock_shared().ok()?;
        Some(Self { _held: file })
    }
}

fn migrations_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.migrations"))
}

/// A name beside `base` in `dir` that no other writer uses.
fn temporary(dir: &Path, base: &str) -> PathBuf {
    dir.join(format!(".{base}.{}", Uuid::new_v4().simple()))
}

fn replace_file(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("file");
    let staged = temporary(path.parent().unwrap_or(Path::new(".")), file_name);
    std::fs::write(&staged, content).with_context(|| format!("cannot write {}", staged.display()))?;
    std::fs::rename(&staged, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn remove_dir_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The `.sql` files of a migrations directory, sorted by name; none when
/// there is no such directory.
fn read_migrations(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut migrations = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else { continue };
        if !file_name.ends_with(".sql") {
            continue;
        }
        let sql = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        migrations.push((file_name.to_string(), sql));
    }
    migrations.sort();
    Ok(migrations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(migrations: &[(&str, &str)]) -> BundleFiles {
        BundleFiles {
            name: "notes".into(),
            manifest: "kind = \"event-handler\"\nversion = \"1.0.0\"\n".into(),
            module: vec![0, 97, 115, 109],
            migrations: migrations.iter().map(|(file, sql)| (file.to_string(), sql.to_string())).collect(),
        }
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("todo-host-bundle-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_written_bundle_reads_back_the_same_and_leaves_no_temporary_files() {
        let dir = scratch();
        let written = bundle(&[("0002_more.sql", "SELECT 2"), ("0001_first.sql", "SELECT 1")]);
        written.write(&dir).unwrap();
        let read = BundleFiles::read(&dir, "notes").unwrap();
        assert_eq!(read.migrations[0].0, "0001_first.sql", "sorted by file name");
        assert_eq!((read.manifest, read.module), (written.manifest, written.module));
        let temporary: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.') && name != ".plugins.lock")
            .collect();
        assert!(temporary.is_empty(), "{temporary:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writing_replaces_the_migrations_as_a_whole() {
        let dir = scratch();
        bundle(&[("0001_first.sql", "SELECT 1"), ("0002_gone.sql", "SELECT 2")]).write(&dir).unwrap();
        bundle(&[("0001_first.sql", "SELECT 1")]).write(&dir).unwrap();
        assert_eq!(BundleFiles::read(&dir, "notes").unwrap().migrations.len(), 1);
        bundle(&[]).write(&dir).unwrap();
        assert!(!dir.join("notes.migrations").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_and_migration_file_names_cannot_leave_the_directory() {
        assert!(check_name("../etc").is_err());
        assert!(check_name("Audit").is_err());
        assert!(check_name("audit-log_2").is_ok());
        assert!(check_migration_file_name("../0001_x.sql").is_err());
        assert!(check_migration_file_name("0001_x.txt").is_err());
        assert!(check_migration_file_name("0001_first.sql").is_ok());
        let mut escaping = bundle(&[("a/0001_x.sql", "SELECT 1")]);
        let dir = scratch();
        assert!(escaping.write(&dir).is_err());
        escaping.name = "../x".into();
        assert!(escaping.write(&dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
