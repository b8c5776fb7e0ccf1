//! On-disk state of the networks, under `<root>/networks/`:
//!
//! ```text
//! networks/
//! ├── .lock               flock(2)ed exclusively around every read-modify-write
//! ├── default.json        NetworkConfig of each network
//! ├── backend.json
//! └── leases/
//!     ├── default.json    Leases: container id → address, MAC, tap, name
//!     └── backend.json
//! ```
//!
//! Files are written to a temporary sibling, fsynced and renamed over the old one, so a crash
//! leaves either the old or the new content. One lock for all networks keeps the code simple;
//! every operation under it is short (a few files and netlink calls).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::NetworkConfig;
use crate::ipam::Leases;

/// A failure reading or writing network state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create network state directory {0}")]
    CreateDir(PathBuf, #[source] io::Error),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {0}")]
    Lock(PathBuf, #[source] io::Error),
    /// A state file could not be read.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] io::Error),
    /// A state file holds something other than what we wrote.
    #[error("corrupt state file {0}")]
    Parse(PathBuf, #[source] serde_json::Error),
    /// A state file could not be written.
    #[error("cannot write {0}")]
    Write(PathBuf, #[source] io::Error),
    /// A state file could not be removed.
    #[error("cannot remove {0}")]
    Remove(PathBuf, #[source] io::Error),
}

/// The `networks/` directory of a state root.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Holds the exclusive lock until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Opens (creating if needed) `<root>/networks`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join("networks");
        fs::create_dir_all(dir.join("leases"))
            .map_err(|e| StoreError::CreateDir(dir.clone(), e))?;
        // Records and leases are replaced by temp file and rename: a writer killed half-way
        // leaves its temp file, which nobody else would remove.
        atomic_file::remove_dead_writers(&dir, atomic_file::temp_sibling_pid);
        atomic_file::remove_dead_writers(&dir.join("leases"), atomic_file::temp_sibling_pid);
        Ok(Self { dir })
    }

    /// Takes the exclusive lock shared by all processes using this state root.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Lock(path.clone(), e))?;
        FileExt::lock_exclusive(&file).map_err(|e| StoreError::Lock(path, e))?;
        Ok(StoreLock { _file: file })
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn leases_path(&self, name: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{name}.json"))
    }

    /// Reads one network definition; `None` when it does not exist.
    pub fn read_network(
        &self,
        _lock: &StoreLock,
        name: &str,
    ) -> Result<Option<NetworkConfig>, StoreError> {
        read_json(&self.network_path(name))
    }

    /// Writes one network definition atomically.
    pub fn write_network(
        &self,
        _lock: &StoreLock,
        config: &NetworkConfig,
    ) -> Result<(), StoreError> {
        write_json(&self.network_path(&config.name), config)
    }

    /// Removes a network definition and its leases.
    pub fn remove_network(&self, _lock: &StoreLock, name: &str) -> Result<(), StoreError> {
        for path in [self.leases_path(name), self.network_path(name)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Remove(path, e)),
            }
        }
        Ok(())
    }

    /// All network definitions, sorted by name.
    pub fn list_networks(&self, lock: &StoreLock) -> Result<Vec<NetworkConfig>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::Read(self.dir.clone(), e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::Read(self.dir.clone(), e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            // Temporary files start with '.', names never do.
            if name.starts_with('.') {
                continue;
            }
            if let Some(config) = self.read_network(lock, name)? {
                out.push(config);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The leases of one network (empty when none were written).
    pub fn read_leases(&self, _lock: &StoreLock, name: &str) -> Result<Leases, StoreError> {
        Ok(read_json(&self.leases_path(name))?.unwrap_or_default())
    }

    /// The leases of one network read without the lock: files are replaced by rename, so this
    /// sees one whole version (used by the DNS responder on every query).
    pub fn read_leases_unlocked(&self, name: &str) -> Result<Leases, StoreError> {
        Ok(read_json(&self.leases_path(name))?.unwrap_or_default())
    }

    /// Writes the leases of one network atomically.
    pub fn write_leases(
        &self,
        _lock: &StoreLock,
        name: &str,
        leases: &Leases,
    ) -> Result<(), StoreError> {
        write_json(&self.leases_path(name), leases)
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Read(path.to_path_buf(), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Parse(path.to_path_buf(), e))
}

/// Writes `value` as JSON, atomically (see [`atomic_file`]).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let err = |e| StoreError::Write(path.to_path_buf(), e);
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| err(io::Error::other(e)))?;
    bytes.push(b'\n');
    atomic_file::write_atomic(path, &bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_list_remove() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let lock = store.lock().unwrap();
        let config = NetworkConfig {
            name: "n1".into(),
            id: "00".into(),
            subnet: "10.9.0.0/24".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            internal: false,
            bridge: "cbr0".into(),
            mtu: 1500,
            created: "now".into(),
            labels: [("k".to_string(), "v".to_string())].into(),
            subnet6: None,
            gateway6: None,
        };
        assert!(store.read_network(&lock, "n1").unwrap().is_none());
        store.write_network(&lock, &config).unwrap();
        assert_eq!(
            store.read_network(&lock, "n1").unwrap(),
            Some(config.clone())
        );
        assert_eq!(store.list_networks(&lock).unwrap(), vec![config]);
        store.remove_network(&lock, "n1").unwrap();
        assert!(store.list_networks(&lock).unwrap().is_empty());
    }

    #[test]
    fn networks_defined_before_labels_read_without_them() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let old = r#"{"name":"old","id":"00","subnet":"10.8.0.0/24","gateway":"10.8.0.1",
            "internal":false,"bridge":"cbr1","mtu":1500,"created":"then"}"#;
        fs::write(root.path().join("networks/old.json"), old).unwrap();
        let lock = store.lock().unwrap();
        let config = store.read_network(&lock, "old").unwrap().unwrap();
        assert!(config.labels.is_empty());
    }

    #[test]
    fn corrupt_file_is_named() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        fs::write(root.path().join("networks/bad.json"), b"{").unwrap();
        let lock = store.lock().unwrap();
        let err = store.read_network(&lock, "bad").unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
}
