//! The image → rootfs cache: one ext4 image per image manifest, under
//! `<root>/rootfs/<algo>-<hex>.<format>.ext4`, built once and shared read-only by every
//! container of that image (each container writes to its own qcow2 overlay on top).
//!
//! Building happens under a per-digest flock into a temp file that is renamed into place, so
//! concurrent `run`s of the same image build it once and nobody sees a half-built image.
//!
//! A cached file is never rebuilt in place: existing containers' overlays are backed by it, and
//! a qcow2 overlay over changed backing content is a corrupt disk. When what an image's rootfs
//! holds changes, [`IMAGE_ROOTFS_FORMAT`] changes, so the new content gets a new file name and
//! the old file stays for the containers made on it.

pub use ext4::{FormatOptions, Summary};

use std::fs;
use std::path::{Path, PathBuf};

use crate::state::Lock;

/// The format of image rootfs files, part of their cache name: bump it when the writer's
/// options for an image's rootfs change what the filesystem holds.
///
/// - none (`<algo>-<hex>.ext4`): a `/lost+found` at the root.
/// - `v2`: no `/lost+found`; the root holds exactly the image's entries, as under docker.
/// - `v3`: as `v2`, plus the [`MOUNT_POINTS`] the image lacks.
pub const IMAGE_ROOTFS_FORMAT: &str = "v3";

/// What every container mounts over (vminitd's `/proc`, `/sys`, `/dev` and the files it binds),
/// made in an image's cached rootfs where the image has nothing at their path, as docker's
/// init layer does for each container. Made there once, a container's first steps write
/// nothing to its disk: the guest made them in each container's overlay before, its first
/// ext4 write, which cost 20–35 ms of every start under TCG (code run for the first time, the
/// bitmaps read) for an image without them (busybox-style and `FROM scratch` images). They
/// are not changes of a container's: `commit` leaves them out (the builder reads this list).
pub const MOUNT_POINTS: [(&str, bool); 6] = [
    ("/proc", true),
    ("/sys", true),
    ("/dev", true),
    ("/etc/hosts", false),
    ("/etc/hostname", false),
    ("/etc/resolv.conf", false),
];

/// [`MOUNT_POINTS`] as the ext4 writer takes them: directories 0755, empty files 0644, root's.
pub fn mount_points() -> Vec<ext4::EnsureEntry> {
    MOUNT_POINTS
        .iter()
        .map(|&(path, dir)| ext4::EnsureEntry {
            path: path.to_string(),
            dir,
            perm: if dir { 0o755 } else { 0o644 },
        })
        .collect()
}

/// Errors of the rootfs cache.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A cache file or directory failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The digest is not `algorithm:hex`.
    #[error("invalid image digest {0:?}")]
    BadDigest(String),
    /// The lock could not be taken.
    #[error("lock rootfs cache")]
    Lock(#[source] crate::state::StateError),
    /// An image could not be written from layers.
    #[error("cannot build {}", .path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// What the writer reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The builder failed.
    #[error("build rootfs for {digest}")]
    Build {
        /// The manifest digest.
        digest: String,
        /// What the builder reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Builds an ext4 image at `output` from layer tarballs (plain, gzip or zstd), lowest first,
/// with our ext4 writer (`rootfs create`).
pub fn build_from_layers(
    layers: &[PathBuf],
    output: &Path,
    opts: &FormatOptions,
) -> Result<Summary, RootfsError> {
    // What an earlier build of the same file left when it was killed.
    atomic_file::remove_dead_temps_of(output);
    ext4::build_from_layers(layers, output, opts).map_err(|e| RootfsError::Write {
        path: output.to_path_buf(),
        source: Box::new(e),
    })
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct RootfsCache {
    dir: PathBuf,
}

impl RootfsCache {
    /// Where the cache of the state directory `root` lives.
    pub fn dir(root: &Path) -> PathBuf {
        root.join("rootfs")
    }

    /// Opens (creating) `<root>/rootfs`.
    pub fn open(root: &Path) -> Result<RootfsCache, RootfsError> {
        let dir = RootfsCache::dir(root);
        fs::create_dir_all(&dir).map_err(|source| RootfsError::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        // Images' filesystems are their owner's alone (a private image may hold secrets), as
        // the content store they come from is: no other user, and no VM's QEMU of its own
        // uid, reads them other than through the descriptors it is handed.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                RootfsError::Io {
                    op: "set the mode of",
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        // Builds killed half-way leave `<name>.tmp<PID>`, or the ext4 writer's own temp file
        // of it, `.<name>.tmp<PID>.tmp-<PID>-<N>` (lock files cost nothing and are reused).
        atomic_file::remove_dead_writers(&dir, |n| {
            atomic_file::temp_sibling_pid(n).or_else(|| n.rsplit_once(".tmp")?.1.parse().ok())
        });
        Ok(RootfsCache { dir })
    }

    /// Path of the image for a digest (whether or not it exists yet): `<algo>-<hex>.ext4`.
    pub fn path_for(&self, digest: &str) -> Result<PathBuf, RootfsError> {
        self.path_in_format(digest, None)
    }

    /// Path of the image for a digest in `format` (whether or not it exists yet):
    /// `<algo>-<hex>.<format>.ext4`, or as [`RootfsCache::path_for`] without one.
    pub fn path_in_format(
        &self,
        digest: &str,
        format: Option<&str>,
    ) -> Result<PathBuf, RootfsError> {
        let (algo, hex) = digest
            .split_once(':')
            .ok_or_else(|| RootfsError::BadDigest(digest.into()))?;
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok(algo) || !ok(hex) || !format.is_none_or(ok) {
            return Err(RootfsError::BadDigest(digest.into()));
        }
        Ok(match format {
            Some(f) => self.dir.join(format!("{algo}-{hex}.{f}.ext4")),
            None => self.dir.join(format!("{algo}-{hex}.ext4")),
        })
    }

    /// Returns the cached image for `digest`, calling `build(tmp_path)` first if it is missing.
    pub fn ensure<E>(
        &self,
        digest: &str,
        build: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, RootfsError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.ensure_in_format(digest, None, build)
    }

    /// [`RootfsCache::ensure`] for the file of `digest` in `format`
    /// ([`RootfsCache::path_in_format`]).
    pub fn ensure_in_format<E>(
        &self,
        digest: &str,
        format: Option<&str>,
        build: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, RootfsError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let path = self.path_in_format(digest, format)?;
        if path.exists() {
            return Ok(path);
        }
        let lock_path = path.with_extension("lock");
        let _lock = Lock::exclusive(&lock_path).map_err(RootfsError::Lock)?;
        // Someone else may have built it while we waited for the lock.
        if path.exists() {
            return Ok(path);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if let Err(e) = build(&tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(RootfsError::Build {
                digest: digest.into(),
                source: Box::new(e),
            });
        }
        let io = |op, source| RootfsError::Io {
            op,
            path: tmp.clone(),
            source,
        };
        let done = fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("sync", e))
            .and_then(|()| fs::rename(&tmp, &path).map_err(|e| io("rename", e)));
        if let Err(e) = done {
            // A sync can fail on a full disk too (delayed allocation): the temp file's
            // space must come back with the error, not wait for a later build of this image.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn builds_once_even_when_concurrent() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = RootfsCache::open(tmp.path()).unwrap();
        let builds = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (cache, builds) = (cache.clone(), builds.clone());
                std::thread::spawn(move || {
                    cache
                        .ensure("sha256:abcd", |p| {
                            builds.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            fs::write(p, b"ext4")
                        })
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(fs::read(t.join().unwrap()).unwrap(), b"ext4");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failed_build_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = RootfsCache::open(tmp.path()).unwrap();
        let err = cache
            .ensure("sha256:ee", |p| {
                fs::write(p, b"half").unwrap();
                Err(std::io::Error::other("boom"))
            })
            .unwrap_err();
        assert!(matches!(err, RootfsError::Build { .. }));
        let left: Vec<_> = fs::read_dir(tmp.path().join("rootfs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
            .collect();
        assert!(left.is_empty());
        assert!(cache.path_for("nodigest").is_err());
        assert!(cache.path_for("sha256:../x").is_err());
        assert!(cache.path_in_format("sha256:ee", Some("../x")).is_err());
        assert!(cache.path_in_format("sha256:ee", Some("")).is_err());
    }

    #[test]
    fn a_new_format_is_a_new_file_and_the_old_one_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = RootfsCache::open(tmp.path()).unwrap();
        let old = cache
            .ensure("sha256:abcd", |p| fs::write(p, b"with lost+found"))
            .unwrap();
        assert_eq!(old.file_name().unwrap(), "sha256-abcd.ext4");
        let new = cache
            .ensure_in_format("sha256:abcd", Some(IMAGE_ROOTFS_FORMAT), |p| {
                fs::write(p, b"without")
            })
            .unwrap();
        assert_eq!(
            new.file_name().unwrap().to_string_lossy(),
            format!("sha256-abcd.{IMAGE_ROOTFS_FORMAT}.ext4")
        );
        // Containers made before are backed by the old file: it is neither rebuilt nor removed.
        assert_eq!(fs::read(&old).unwrap(), b"with lost+found");
        assert_eq!(fs::read(&new).unwrap(), b"without");
        // Cached: the builder is not called again.
        let again = cache
            .ensure_in_format("sha256:abcd", Some(IMAGE_ROOTFS_FORMAT), |_| {
                Err(std::io::Error::other("must not rebuild"))
            })
            .unwrap();
        assert_eq!(again, new);
    }
}
