//! Named volumes: ext4 block images made by our formatter, one directory each.
//!
//! ```text
//! <root>/volumes/
//!   .lock                 serialises create / delete
//!   NAME/volume.json      Volume (name, size, options, creation time), temp + fsync + rename
//!   NAME/disk.ext4        the filesystem image, attached to the VM as a virtio-blk disk
//! ```
//!
//! A new volume is built in a hidden sibling directory and renamed into place, so a crash never
//! leaves a half-made volume under its name. While a container runs, its monitor holds an
//! exclusive `flock` on each of its volumes' `disk.ext4` ([`VolumeStore::claim`]): ext4 must
//! never be mounted by two VMs at once, and `delete` uses the same lock to refuse a volume in
//! use.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use crate::state::validate_name;
pub use crate::state::MountSpec;

/// Size of a volume when `--size` is not given.
pub const DEFAULT_SIZE: u64 = 1 << 30;
/// Smallest volume we make (the journal-less ext4 metadata must fit with room to spare).
pub const MIN_SIZE: u64 = 8 << 20;

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The name is not `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    #[error("invalid volume name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    /// `create` of a name that exists.
    #[error("volume {0} already exists")]
    Exists(String),
    /// No such volume.
    #[error("no such volume: {0}")]
    NotFound(String),
    /// The requested size is too small.
    #[error("volume size {0} is too small (minimum {MIN_SIZE} bytes)")]
    TooSmall(u64),
    /// A `--opt KEY=VALUE` we do not know or cannot honour.
    #[error("volume option {option}: {reason}")]
    BadOption {
        /// The option as given (`KEY=VALUE`).
        option: String,
        /// Why it is refused.
        reason: String,
    },
    /// A running container holds the volume.
    #[error("volume {0} is in use by a running container")]
    InUse(String),
    /// Formatting the image failed.
    #[error("format volume {name}")]
    Format {
        /// Volume name.
        name: String,
        /// What the formatter reported.
        #[source]
        source: ext4::Ext4Error,
    },
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// volume.json is unreadable.
    #[error("read {}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { op, path, source }
}

/// A volume's record (volume.json), also what `volume inspect` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// Filesystem type of the image (`ext4`).
    pub format: String,
    /// Size of the filesystem in bytes.
    pub size_bytes: u64,
    /// Path of the image on the host.
    pub mountpoint: PathBuf,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Its labels (`volume create --label`).
    #[serde(default)]
    pub labels: crate::labels::Labels,
    /// The driver options it was made with (`volume create --opt KEY=VALUE`), as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The keys `volume create --opt` takes (Apple's `container volume create`).
pub const OPTION_KEYS: &str = "journal=ordered|writeback|journal[:SIZE], size=SIZE";

/// What a volume's options ask of the formatter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeOptions {
    /// `size=SIZE`: the filesystem's size (the `--size` flag wins over it).
    pub size: Option<u64>,
    /// `journal=MODE`: the data mode the guest mounts the volume with.
    pub data_mode: Option<ext4::DataMode>,
    /// `journal=MODE:SIZE`: the jbd2 journal's size in bytes.
    pub journal_size: Option<u64>,
}

impl VolumeOptions {
    /// Reads `--opt` options; an unknown key or a bad value is an error, never ignored.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<VolumeOptions, VolumeError> {
        let mut out = VolumeOptions::default();
        for (key, value) in options {
            let bad = |reason: String| VolumeError::BadOption {
                option: format!("{key}={value}"),
                reason,
            };
            match key.as_str() {
                "size" => out.size = Some(crate::size::parse(value).map_err(bad)?),
                "journal" => {
                    let (mode, size) = match value.split_once(':') {
                        Some((mode, size)) => (mode, Some(size)),
                        None => (value.as_str(), None),
                    };
                    out.data_mode = Some(mode.parse().map_err(bad)?);
                    out.journal_size = size.map(crate::size::parse).transpose().map_err(bad)?;
                }
                _ => return Err(bad(format!("unknown option (known: {OPTION_KEYS})"))),
            }
        }
        Ok(out)
    }
}

/// A fresh name for an anonymous volume: 64 hex digits, like a container id.
pub fn anonymous_name() -> String {
    crate::state::new_id()
}

/// Deletes the anonymous volumes among a deleted container's mounts (its record already
/// removed). Best effort: one still held (its VM not yet down) or already gone is left to
/// `volume prune`; one another container took with `--volumes-from` stays, as docker keeps a
/// volume in use.
pub fn remove_anonymous(root: &Path, mounts: &[MountSpec]) {
    let Ok(store) = VolumeStore::open(root) else {
        return;
    };
    let others = crate::state::Store::open(root)
        .and_then(|s| s.list())
        .unwrap_or_default();
    let in_use = |name: &str| {
        others.iter().any(|c| {
            c.config
                .mounts
                .iter()
                .any(|m| matches!(m, MountSpec::Volume { source, .. } if source.as_str() == name))
        })
    };
    for m in mounts {
        if let MountSpec::Volume {
            source,
            anonymous: true,
            ..
        } = m
        {
            if in_use(source) {
                continue;
            }
            if let Err(e) = store.remove(source) {
                tracing::warn!("remove anonymous volume {source}: {e}");
            }
        }
    }
}

/// The volumes under one state root.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

/// An exclusive hold on a volume for as long as the value lives.
#[derive(Debug)]
pub struct Claim {
    _file: File,
}

impl VolumeStore {
    /// The store under `<root>/volumes` (created when missing).
    pub fn open(root: &Path) -> Result<VolumeStore, VolumeError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = root.join("volumes");
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        // A volume holds what containers wrote (a database's files): its owner's alone, as a
        // container's directory is, whatever the mode of the state root.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("set the mode of", &dir))?;
        Ok(VolumeStore { dir })
    }

    fn check_name(name: &str) -> Result<(), VolumeError> {
        validate_name(name).map_err(|_| VolumeError::InvalidName(name.to_string()))
    }

    /// The directory of volume `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The ext4 image of volume `name`.
    pub fn disk(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("disk.ext4")
    }

    fn lock(&self) -> Result<File, VolumeError> {
        let path = self.dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        FileExt::lock_exclusive(&file).map_err(io_err("lock", &path))?;
        Ok(file)
    }

    /// Makes an empty ext4 volume of `size` bytes.
    pub fn create(&self, name: &str, size: u64) -> Result<Volume, VolumeError> {
        self.create_labelled(name, size, crate::labels::Labels::new())
    }

    /// [`VolumeStore::create`] with labels.
    pub fn create_labelled(
        &self,
        name: &str,
        size: u64,
        labels: crate::labels::Labels,
    ) -> Result<Volume, VolumeError> {
        self.create_with(name, size, labels, BTreeMap::new())
    }

    /// [`VolumeStore::create`] with labels and `--opt` options (checked with
    /// [`VolumeOptions::parse`]; their `size` is the caller's business).
    pub fn create_with(
        &self,
        name: &str,
        size: u64,
        labels: crate::labels::Labels,
        options: BTreeMap<String, String>,
    ) -> Result<Volume, VolumeError> {
        Self::check_name(name)?;
        let parsed = VolumeOptions::parse(&options)?;
        if size < MIN_SIZE {
            return Err(VolumeError::TooSmall(size));
        }
        let _lock = self.lock()?;
        // A create or delete killed half-way left its hidden directory: the next create
        // removes it (a volume image is big).
        self.remove_leftovers_locked();
        let dest = self.path(name);
        if dest.exists() {
            return Err(VolumeError::Exists(name.to_string()));
        }
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
        let made = (|| {
            let opts = ext4::FormatOptions {
                journal: true,
                journal_size: parsed.journal_size,
                // In the superblock rather than in the guest's mount options, as Apple's
                // formatter does: the volume carries its mode to every mount of it.
                data_mode: parsed.data_mode,
                label: Some(name.chars().take(16).collect()),
                // A new volume is empty, as docker's are: programs that refuse a non-empty
                // directory (postgres's initdb) must accept it, and copy-up fills it.
                lost_found: false,
                ..Default::default()
            };
            let summary =
                ext4::format_empty(&tmp.join("disk.ext4"), size, &opts).map_err(|source| {
                    VolumeError::Format {
                        name: name.to_string(),
                        source,
                    }
                })?;
            let vol = Volume {
                name: name.to_string(),
                driver: "local".into(),
                format: "ext4".into(),
                size_bytes: summary.size_bytes,
                mountpoint: dest.join("disk.ext4"),
                created_at: Utc::now(),
                labels,
                options,
            };
            let json = serde_json::to_vec_pretty(&vol).unwrap_or_default();
            let meta = tmp.join("volume.json");
            atomic_file::write_atomic(&meta, &json).map_err(io_err("write", &meta))?;
            std::fs::rename(&tmp, &dest).map_err(io_err("rename into", &dest))?;
            Ok(vol)
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        made
    }

    /// Reads volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        Self::check_name(name)?;
        let path = self.path(name).join("volume.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| VolumeError::Corrupt { path, source })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                // Not a volume (or half-deleted): skip rather than fail the whole listing.
                Err(VolumeError::NotFound(_) | VolumeError::InvalidName(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Takes the exclusive hold a running container keeps on its volume; fails with
    /// [`VolumeError::InUse`] when another container holds it.
    pub fn claim(&self, name: &str) -> Result<Claim, VolumeError> {
        self.get(name)?;
        let path = self.disk(name);
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(Claim { _file: file }),
            Ok(false) => Err(VolumeError::InUse(name.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(VolumeError::InUse(name.to_string()))
            }
            Err(e) => Err(io_err("lock", &path)(e)),
        }
    }

    /// Removes what an interrupted `create` or `delete` left behind (hidden `.NAME.tmp-PID` and
    /// `.NAME.deleting-PID` directories); returns how many. Both operations hold the store lock
    /// from making such a directory until it is gone, so under the lock every one is stale.
    pub fn remove_leftovers(&self) -> Result<usize, VolumeError> {
        // Nothing to remove, no lock taken (nor its file made, for a store never written).
        if self.leftovers()?.is_empty() {
            return Ok(0);
        }
        let _lock = self.lock()?;
        Ok(self.remove_leftovers_locked())
    }

    /// The hidden directories of interrupted creates and deletes (stale only under the lock).
    fn leftovers(&self) -> Result<Vec<PathBuf>, VolumeError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))?;
        Ok(entries
            .flatten()
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_prefix('.').is_some_and(|rest| {
                    rest.rsplit_once(".tmp-")
                        .or_else(|| rest.rsplit_once(".deleting-"))
                        .is_some_and(|(_, pid)| pid.parse::<u32>().is_ok())
                })
            })
            .map(|e| e.path())
            .collect())
    }

    /// [`VolumeStore::remove_leftovers`] under the lock the caller holds.
    fn remove_leftovers_locked(&self) -> usize {
        self.leftovers()
            .unwrap_or_default()
            .iter()
            .filter(|p| std::fs::remove_dir_all(p).is_ok())
            .count()
    }

    /// Deletes volume `name`; refused while a running container holds it. Checking stopped
    /// containers that still reference it is the caller's business (it owns the container
    /// store).
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let _lock = self.lock()?;
        let claim = self.claim(name)?;
        let dir = self.path(name);
        // Rename out of the way first, so the name is free and a crash leaves only a hidden
        // directory behind.
        let trash = self
            .dir
            .join(format!(".{name}.deleting-{}", std::process::id()));
        std::fs::rename(&dir, &trash).map_err(io_err("rename", &dir))?;
        drop(claim);
        std::fs::remove_dir_all(&trash).map_err(io_err("remove", &trash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_get_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(tmp.path()).unwrap();
        let v = store.create("data", 16 << 20).unwrap();
        assert_eq!(v.size_bytes, 16 << 20);
        assert!(store.disk("data").is_file());
        assert!(matches!(
            store.create("data", 16 << 20),
            Err(VolumeError::Exists(_))
        ));
        assert!(matches!(
            store.create("../x", 16 << 20),
            Err(VolumeError::InvalidName(_))
        ));
        assert!(matches!(
            store.create("small", 4096),
            Err(VolumeError::TooSmall(_))
        ));
        let labels = crate::labels::Labels::from([("k".to_string(), "v".to_string())]);
        let b = store
            .create_labelled("b", 16 << 20, labels.clone())
            .unwrap();
        assert_eq!(b.labels, labels);
        assert_eq!(store.get("b").unwrap().labels, labels);
        let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["b", "data"]);
        assert_eq!(store.get("data").unwrap(), v);
        store.remove("b").unwrap();
        assert!(matches!(store.get("b"), Err(VolumeError::NotFound(_))));
        assert!(matches!(store.remove("b"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn options_are_read_or_refused() {
        let opts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let o =
            VolumeOptions::parse(&opts(&[("journal", "writeback:64m"), ("size", "1g")])).unwrap();
        assert_eq!(o.data_mode, Some(ext4::DataMode::Writeback));
        assert_eq!(o.journal_size, Some(64 << 20));
        assert_eq!(o.size, Some(1 << 30));
        let o = VolumeOptions::parse(&opts(&[("journal", "ordered")])).unwrap();
        assert_eq!(
            (o.data_mode, o.journal_size),
            (Some(ext4::DataMode::Ordered), None)
        );
        for bad in [
            ("journal", "none"),
            ("journal", ""),
            ("journal", "ordered:abc"),
            ("journal", "ordered:128x"),
            ("type", "tmpfs"),
        ] {
            let err = VolumeOptions::parse(&opts(&[bad])).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("volume option {}={}", bad.0, bad.1)),
                "{err}"
            );
        }

        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(tmp.path()).unwrap();
        let options = opts(&[("journal", "journal:8m")]);
        let v = store
            .create_with("j", 64 << 20, Default::default(), options.clone())
            .unwrap();
        assert_eq!(store.get("j").unwrap().options, options);
        assert_eq!(v.options, options);
        // A journal the formatter cannot make leaves no volume behind.
        assert!(matches!(
            store.create_with(
                "k",
                64 << 20,
                Default::default(),
                opts(&[("journal", "ordered:1m")])
            ),
            Err(VolumeError::Format { .. })
        ));
        assert!(matches!(store.get("k"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn a_new_volume_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(tmp.path()).unwrap();
        store.create("pg", 16 << 20).unwrap();
        let r = ext4::reader::Reader::open(&store.disk("pg")).unwrap();
        assert!(r.list("/").unwrap().is_empty(), "no lost+found");
    }

    #[test]
    fn a_claimed_volume_cannot_be_claimed_or_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(tmp.path()).unwrap();
        store.create("v", 16 << 20).unwrap();
        let claim = store.claim("v").unwrap();
        assert!(matches!(store.claim("v"), Err(VolumeError::InUse(_))));
        assert!(matches!(store.remove("v"), Err(VolumeError::InUse(_))));
        drop(claim);
        store.remove("v").unwrap();
    }

    #[test]
    fn leftovers_of_interrupted_operations_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(tmp.path()).unwrap();
        store.create("keep", 16 << 20).unwrap();
        let made = tmp.path().join("volumes/.x.tmp-4242");
        let deleting = tmp.path().join("volumes/.y.deleting-17");
        let other = tmp.path().join("volumes/.unrelated");
        std::fs::create_dir_all(made.join("sub")).unwrap();
        std::fs::create_dir_all(&deleting).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        assert_eq!(store.remove_leftovers().unwrap(), 2);
        assert!(!made.exists() && !deleting.exists() && other.exists());
        assert!(store.get("keep").is_ok());
        // A create sweeps them too.
        std::fs::create_dir_all(made.join("sub")).unwrap();
        store.create("next", 16 << 20).unwrap();
        assert!(!made.exists() && other.exists());
    }
}
