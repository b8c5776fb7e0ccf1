//! The init filesystem: the initramfs (newc cpio) the guest kernel unpacks as its root.
//!
//! It holds only what PID 1 needs before the container's disk is mounted:
//!
//! ```text
//! dev/ dev/console (char 5:1)   the kernel opens it for PID 1's stdio, only if present
//! proc/ sys/ run/ tmp/ mnt/     mount points
//! sbin/vminitd                  PID 1 (a static binary), started by `rdinit=/sbin/vminitd`
//! lib/modules/<name>.ko         driver modules, uncompressed
//! etc/vminitd/modules           their load order, one absolute path per line
//! ```
//!
//! The archive is cached by content: the SHA-256 of every input names the file, so a second VM
//! with the same init and modules reuses it without writing anything.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cpio::{CpioError, CpioWriter};
use crate::modules::{self, Module, ModulesError};
use atomic_file::temp_sibling;

/// Version of the layout above; part of the cache key so a layout change rebuilds.
const LAYOUT_VERSION: &str = "initfs-v1";

pub use agent::contract::{INIT_PATH, MODULES_LIST};

/// Errors of building an init filesystem.
#[derive(Debug, thiserror::Error)]
pub enum InitfsError {
    /// An input file (init binary, extra file) cannot be read.
    #[error("cannot read initfs input {path}")]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A module cannot be read.
    #[error("cannot add kernel module to initfs")]
    Module(#[source] ModulesError),
    /// Writing the archive failed.
    #[error("cannot write initfs {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The cpio writer rejected an entry.
    #[error("cannot build initfs archive")]
    Cpio(#[source] CpioError),
}

/// The content of an init filesystem, collected before it is written.
#[derive(Debug, Clone)]
pub struct Initfs {
    init: PathBuf,
    modules: Vec<Module>,
    extra: Vec<(String, u32, PathBuf)>,
    dirs: Vec<String>,
}

impl Initfs {
    /// An initfs whose PID 1 is the binary at `init` (installed as `/sbin/vminitd`).
    pub fn new(init: &Path) -> Self {
        Initfs {
            init: init.to_path_buf(),
            modules: Vec::new(),
            extra: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// Adds modules, in load order (as [`crate::modules::resolve`] returns them).
    pub fn modules(mut self, modules: &[Module]) -> Self {
        self.modules.extend_from_slice(modules);
        self
    }

    /// Adds the file at `source` as `name` (an absolute guest path) with permission bits
    /// `mode`. Parent directories must be among the standard ones or added before.
    pub fn file(mut self, name: &str, mode: u32, source: &Path) -> Self {
        self.extra
            .push((name.to_string(), mode, source.to_path_buf()));
        self
    }

    /// Adds an empty directory (mode 0755) beyond the standard ones, e.g. `/bin`.
    pub fn dir(mut self, name: &str) -> Self {
        self.dirs.push(name.to_string());
        self
    }

    /// Builds the archive into `cache_dir` (named by the hash of its inputs) unless it is
    /// there already, and returns its path.
    pub fn build_cached(&self, cache_dir: &Path) -> Result<PathBuf, InitfsError> {
        let inputs = self.read_inputs()?;
        let mut h = Sha256::new();
        h.update(LAYOUT_VERSION);
        for d in &self.dirs {
            h.update(b"dir:");
            h.update(d.as_bytes());
            h.update(b"\0");
        }
        for (name, mode, bytes) in &inputs {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(mode.to_le_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        let path = cache_dir.join(format!("{}.cpio", hex::encode(h.finalize())));
        if path.is_file() {
            return Ok(path);
        }
        let write_err = |source| InitfsError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(cache_dir).map_err(write_err)?;
        let tmp = temp_sibling(&path);
        let result = (|| {
            let file = fs::File::create(&tmp).map_err(write_err)?;
            let file = write_archive(BufWriter::new(file), &self.dirs, &inputs)?
                .into_inner()
                .map_err(|e| write_err(e.into_error()))?;
            file.sync_all().map_err(write_err)?;
            fs::rename(&tmp, &path).map_err(write_err)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// The archive as bytes (for tests and callers that keep it in memory).
    pub fn to_bytes(&self) -> Result<Vec<u8>, InitfsError> {
        write_archive(Vec::new(), &self.dirs, &self.read_inputs()?)
    }

    /// Every file of the archive as (guest path, mode, content), in archive order.
    fn read_inputs(&self) -> Result<Vec<(String, u32, Vec<u8>)>, InitfsError> {
        let read = |path: &Path| {
            fs::read(path).map_err(|source| InitfsError::ReadInput {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut files = vec![(INIT_PATH.to_string(), 0o755, read(&self.init)?)];
        let mut list = String::new();
        for m in &self.modules {
            let guest = format!("/lib/modules/{}.ko", m.name);
            list.push_str(&guest);
            list.push('\n');
            let bytes = modules::read_module(&m.path).map_err(InitfsError::Module)?;
            files.push((guest, 0o644, bytes));
        }
        files.push((MODULES_LIST.to_string(), 0o644, list.into_bytes()));
        for (name, mode, source) in &self.extra {
            files.push((name.clone(), *mode, read(source)?));
        }
        Ok(files)
    }
}

/// Builds (or reuses) the standard initfs: `vminitd` as PID 1 plus `modules` in load order,
/// cached in `cache_dir` by content. Shorthand for `Initfs::new(vminitd).modules(modules)`.
pub fn build_cached(
    cache_dir: &Path,
    vminitd: &Path,
    modules: &[Module],
) -> Result<PathBuf, InitfsError> {
    Initfs::new(vminitd)
        .modules(modules)
        .build_cached(cache_dir)
}

fn write_archive<W: std::io::Write>(
    out: W,
    dirs: &[String],
    files: &[(String, u32, Vec<u8>)],
) -> Result<W, InitfsError> {
    let mut w = CpioWriter::new(out);
    let c = InitfsError::Cpio;
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "mnt",
        "sbin",
        "etc",
        "etc/vminitd",
        "lib",
        "lib/modules",
    ] {
        w.dir(d, 0o755).map_err(c)?;
    }
    w.dir("tmp", 0o1777).map_err(c)?;
    w.char_device("dev/console", 0o600, 5, 1).map_err(c)?;
    for d in dirs {
        w.dir(d, 0o755).map_err(c)?;
    }
    for (name, mode, bytes) in files {
        w.file(name, *mode, bytes).map_err(c)?;
    }
    w.finish().map_err(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    #[test]
    fn layout_read_back_by_gnu_cpio_and_cached() {
        let tk = crate::testutil::debian_kernel();
        let mods =
            crate::modules::resolve(Some(&tk.modules), &["virtio_mmio", "virtio_blk"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("vminitd");
        fs::write(&init, b"\x7fELF fake init").unwrap();
        let extra = dir.path().join("extra");
        fs::write(&extra, b"extra").unwrap();
        let spec = Initfs::new(&init)
            .modules(&mods)
            .file("/etc/extra", 0o600, &extra);

        let cache = dir.path().join("cache");
        let a = spec.build_cached(&cache).unwrap();
        let mtime = fs::metadata(&a).unwrap().modified().unwrap();
        let b = spec.build_cached(&cache).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            fs::metadata(&b).unwrap().modified().unwrap(),
            mtime,
            "reused, not rewritten"
        );
        assert_eq!(
            fs::read_dir(&cache).unwrap().count(),
            1,
            "no temp files left"
        );

        let out = dir.path().join("x");
        fs::create_dir(&out).unwrap();
        let mut child = Command::new("cpio")
            .args(["-idv", "--quiet"])
            .current_dir(&out)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&fs::read(&a).unwrap())
            .unwrap();
        let res = child.wait_with_output().unwrap();
        assert!(res.status.success());
        let listed = String::from_utf8(res.stderr).unwrap();
        for p in [
            "dev/console",
            "sbin/vminitd",
            "proc",
            "tmp",
            "lib/modules/virtio_blk.ko",
        ] {
            assert!(listed.lines().any(|l| l == p), "{p} not in {listed}");
        }
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let console = fs::metadata(out.join("dev/console")).unwrap();
        assert!(console.file_type().is_char_device());
        assert_eq!(console.rdev(), libc::makedev(5, 1));
        assert_eq!(
            fs::metadata(out.join("sbin/vminitd"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            fs::metadata(out.join("tmp")).unwrap().permissions().mode() & 0o7777,
            0o1777
        );
        let order = fs::read_to_string(out.join("etc/vminitd/modules")).unwrap();
        let lines: Vec<&str> = order.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines.last().copied(), Some("/lib/modules/virtio_blk.ko"));
        for l in &lines {
            let inside = out.join(l.trim_start_matches('/'));
            let name = Path::new(l).file_stem().unwrap().to_str().unwrap();
            let src = mods.iter().find(|m| m.name == name).unwrap();
            assert_eq!(fs::read(inside).unwrap(), fs::read(&src.path).unwrap());
        }
        assert_eq!(fs::read(out.join("etc/extra")).unwrap(), b"extra");

        // A different init gives a different archive.
        fs::write(&init, b"\x7fELF other init").unwrap();
        let c = spec.build_cached(&cache).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn missing_init_is_named() {
        let err = Initfs::new(Path::new("/nonexistent/vminitd"))
            .to_bytes()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vminitd"), "{err}");
    }
}
