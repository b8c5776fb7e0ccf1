//! The guest kernel store: which kernel VMs boot, and its unpacked, cached forms.
//!
//! ```text
//! <root>/kernels/
//!   current.json          {"id": …}: the kernel `container system kernel set` chose
//!   <id>/                 id = SHA-256 of the kernel image as given
//!     kernel.json         what `container system kernel show` prints
//!     vmlinuz | image     the image as given (bzImage or ELF)
//!     vmlinux             the ELF unpacked from it, booted through PVH
//!     modules/            lib/modules/<release> from a .deb
//!     accel.json          the cached KVM probe result (see accel.rs)
//! ```
//!
//! Without a chosen kernel, the host's `/boot/vmlinuz-$(uname -r)` with
//! `/lib/modules/$(uname -r)` is used where it exists. A per-container kernel (`-k PATH`) is
//! cached the same way under its own id.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bzimage::{self, ImageKind};
use crate::fsutil::sha256_file;
use atomic_file::{temp_sibling, write_atomic};

/// Errors of the kernel store.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No kernel is set and the host has none to borrow.
    #[error(
        "no guest kernel configured and no host kernel at {0}; set one with \
         `container system kernel set --deb linux-image-….deb` or \
         `container system kernel set --binary VMLINUZ [--modules DIR]`"
    )]
    NoKernel(PathBuf),
    /// A kernel image cannot be read.
    #[error("cannot read kernel image {path}")]
    ReadImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not a usable kernel image.
    #[error("{path} is not a usable kernel image")]
    BadImage {
        path: PathBuf,
        #[source]
        source: bzimage::BzImageError,
    },
    /// The modules directory given does not exist or is not a directory.
    #[error("kernel modules directory {0} does not exist")]
    NoModulesDir(PathBuf),
    /// Extracting a kernel package failed.
    #[error("cannot install kernel package")]
    Deb(#[source] crate::deb::DebError),
    /// Writing to the kernel store failed.
    #[error("cannot write kernel store at {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored kernel's files cannot be read.
    #[error(
        "cannot read kernel store entry {path}; set the kernel again with \
         `container system kernel set`"
    )]
    Load {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `--tar` archive cannot be read.
    #[error("cannot read kernel archive {path}")]
    ReadTar {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The archive has no regular file (or link to one) at the path given.
    #[error("no kernel file {member} in archive {path}")]
    TarMember { path: PathBuf, member: String },
    /// The store's metadata cannot be read or written as JSON.
    #[error("cannot read or write kernel store metadata {path}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Where a kernel came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum KernelSource {
    /// A Debian package given to `system kernel set --deb`.
    Deb { path: PathBuf },
    /// A binary given to `system kernel set --binary`.
    Binary { path: PathBuf },
    /// The file `member` of the tar archive `path` (`system kernel set --tar`).
    Tar { path: PathBuf, member: String },
    /// A binary given per container (`-k`).
    Override { path: PathBuf },
    /// The host's own kernel (no kernel set).
    Host { path: PathBuf },
}

/// A guest kernel ready to boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kernel {
    /// SHA-256 of the image as given.
    pub id: String,
    /// `uname -r` of the kernel, when the image tells it.
    pub release: Option<String>,
    /// Where it came from.
    pub source: KernelSource,
    /// The image as given (bzImage or ELF), inside the store.
    pub image: PathBuf,
    /// The ELF vmlinux QEMU boots (PVH), inside the store.
    pub vmlinux: PathBuf,
    /// The modules directory, or `None` for a kernel with its drivers built in.
    pub modules_dir: Option<PathBuf>,
}

impl Kernel {
    /// The store directory of this kernel (holds caches such as the accelerator probe).
    pub fn dir(&self) -> &Path {
        self.vmlinux.parent().unwrap_or(Path::new("."))
    }
}

#[derive(Serialize, Deserialize)]
struct Current {
    id: String,
}

/// The kernels under `<root>/kernels`.
#[derive(Debug, Clone)]
pub struct KernelStore {
    dir: PathBuf,
    /// Install again over a stored entry of the same content instead of reusing it.
    force: bool,
}

impl KernelStore {
    /// The store of the state directory `root`.
    pub fn new(root: &Path) -> Self {
        KernelStore {
            dir: root.join("kernels"),
            force: false,
        }
    }

    /// With `force`, the `set_*` calls install anew even when the store holds an entry of the
    /// same content (`system kernel set --force`): its vmlinux is unpacked and its modules are
    /// copied again, so a damaged entry is repaired. Without it that entry is reused.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn store_err(&self, path: &Path) -> impl Fn(std::io::Error) -> KernelError {
        let path = path.to_path_buf();
        move |source| KernelError::Store {
            path: path.clone(),
            source,
        }
    }

    /// Installs the kernel and modules of a Debian `linux-image-*` package and makes it current.
    pub fn set_from_deb(&self, deb: &Path) -> Result<Kernel, KernelError> {
        let deb = absolute(deb);
        fs::create_dir_all(&self.dir).map_err(self.store_err(&self.dir))?;
        let tmp = temp_sibling(&self.dir.join("deb"));
        fs::create_dir_all(&tmp).map_err(self.store_err(&tmp))?;
        let result = (|| {
            let x = crate::deb::extract_kernel(&deb, &tmp).map_err(KernelError::Deb)?;
            let id = sha256_file(&x.vmlinuz).map_err(|source| KernelError::ReadImage {
                path: x.vmlinuz.clone(),
                source,
            })?;
            let final_dir = self.dir.join(&id);
            let source = KernelSource::Deb { path: deb.clone() };
            if let Some(mut k) = self.reusable(&id) {
                if k.vmlinux.is_file() && k.modules_dir.as_ref().is_some_and(|m| m.is_dir()) {
                    // Installed before: keep that copy (VMs may be reading its modules).
                    if k.source != source {
                        k.source = source;
                        self.write_meta(&final_dir, &k)?;
                    }
                    return Ok(k);
                }
            }
            let kernel = self.finish_entry(
                &tmp,
                &final_dir,
                &id,
                "vmlinuz",
                x.modules_dir.map(|_| final_dir.join("modules")),
                source,
            )?;
            self.install_dir(&tmp, &final_dir)?;
            Ok(kernel)
        })();
        let _ = fs::remove_dir_all(&tmp);
        let kernel = result?;
        self.set_current(&kernel)?;
        Ok(kernel)
    }

    /// Installs a kernel binary (bzImage or ELF vmlinux) and makes it current. `modules_dir`,
    /// when given, is referenced where it is (not copied).
    pub fn set_binary(
        &self,
        image: &Path,
        modules_dir: Option<&Path>,
    ) -> Result<Kernel, KernelError> {
        if let Some(m) = modules_dir {
            if !m.is_dir() {
                return Err(KernelError::NoModulesDir(m.to_path_buf()));
            }
        }
        let kernel = self.import(
            image,
            modules_dir.map(absolute),
            KernelSource::Binary {
                path: absolute(image),
            },
        )?;
        self.set_current(&kernel)?;
        Ok(kernel)
    }

    /// Installs the kernel file `member` of the tar archive `tar` (plain, gzip, xz or zstd;
    /// a symlink or hard link in the archive is followed) and makes it current, as Apple's
    /// `container system kernel set --tar FILE --binary MEMBER`. `modules_dir` as in
    /// [`KernelStore::set_binary`].
    pub fn set_from_tar(
        &self,
        tar: &Path,
        member: &str,
        modules_dir: Option<&Path>,
    ) -> Result<Kernel, KernelError> {
        if let Some(m) = modules_dir {
            if !m.is_dir() {
                return Err(KernelError::NoModulesDir(m.to_path_buf()));
            }
        }
        fs::create_dir_all(&self.dir).map_err(self.store_err(&self.dir))?;
        let extracted = temp_sibling(&self.dir.join("tar-kernel"));
        let result = (|| {
            extract_tar_member(tar, member, &extracted)?;
            self.import(
                &extracted,
                modules_dir.map(absolute),
                KernelSource::Tar {
                    path: absolute(tar),
                    member: member.to_string(),
                },
            )
        })();
        let _ = fs::remove_file(&extracted);
        let kernel = result?;
        self.set_current(&kernel)?;
        Ok(kernel)
    }

    /// A kernel for one container (`-k PATH`), cached in the store but not made current. Its
    /// modules: those of a stored kernel of the same release (e.g. the vmlinux of an installed
    /// package), else the host's `/lib/modules/<release>`, else none (drivers built in).
    pub fn for_path(&self, image: &Path) -> Result<Kernel, KernelError> {
        let source = KernelSource::Override {
            path: absolute(image),
        };
        let mut k = self.import(image, None, source)?;
        if let Some(rel) = k
            .release
            .clone()
            .or_else(|| self.release_of_stored_vmlinux(&k))
        {
            k.release = Some(rel.clone());
            let host = Path::new("/lib/modules").join(&rel);
            k.modules_dir = self
                .stored_modules_for(&rel)
                .or_else(|| host.is_dir().then_some(host));
        }
        Ok(k)
    }

    /// Stored kernels, as recorded in their `kernel.json`.
    pub fn list(&self) -> Vec<Kernel> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.') && !name.ends_with(".json"))
            .filter_map(|id| self.load(&id).ok())
            .collect()
    }

    /// The modules directory of a stored kernel of release `release`, if any.
    fn stored_modules_for(&self, release: &str) -> Option<PathBuf> {
        self.list()
            .into_iter()
            .filter(|k| k.release.as_deref() == Some(release))
            .find_map(|k| k.modules_dir.filter(|m| m.is_dir()))
    }

    /// An ELF vmlinux carries no boot header with its release; if it is byte-identical to the
    /// vmlinux unpacked from a stored kernel, that kernel's release is its release.
    fn release_of_stored_vmlinux(&self, k: &Kernel) -> Option<String> {
        let size = fs::metadata(&k.vmlinux).ok()?.len();
        self.list()
            .into_iter()
            .filter(|o| o.id != k.id && o.release.is_some())
            .filter(|o| fs::metadata(&o.vmlinux).is_ok_and(|m| m.len() == size))
            .find(|o| sha256_file(&o.vmlinux).ok() == sha256_file(&k.vmlinux).ok())
            .and_then(|o| o.release)
    }

    /// The kernel VMs boot: the one set, else the host's.
    pub fn current(&self) -> Result<Kernel, KernelError> {
        if let Some(k) = self.configured()? {
            return Ok(k);
        }
        let release = host_release();
        let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
        if !image.is_file() {
            return Err(KernelError::NoKernel(image));
        }
        let modules = Path::new("/lib/modules").join(&release);
        self.import(
            &image,
            modules.is_dir().then_some(modules),
            KernelSource::Host {
                path: image.clone(),
            },
        )
    }

    /// The kernel set with `set_*`, if any.
    pub fn configured(&self) -> Result<Option<Kernel>, KernelError> {
        let path = self.dir.join("current.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KernelError::Load { path, source }),
        };
        let cur: Current =
            serde_json::from_slice(&bytes).map_err(|source| KernelError::Metadata {
                path: path.clone(),
                source,
            })?;
        self.load(&cur.id).map(Some)
    }

    /// The stored entry `id`, unless it is missing or `force` asks for a new install.
    fn reusable(&self, id: &str) -> Option<Kernel> {
        (!self.force).then(|| self.load(id).ok()).flatten()
    }

    fn load(&self, id: &str) -> Result<Kernel, KernelError> {
        let path = self.dir.join(id).join("kernel.json");
        let bytes = fs::read(&path).map_err(|source| KernelError::Load {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| KernelError::Metadata { path, source })
    }

    fn set_current(&self, kernel: &Kernel) -> Result<(), KernelError> {
        let path = self.dir.join("current.json");
        let json = serde_json::to_vec_pretty(&Current {
            id: kernel.id.clone(),
        })
        .expect("serialising a string cannot fail");
        write_atomic(&path, &json).map_err(self.store_err(&path))
    }

    /// Copies an image into the store (once per content), unpacks it, writes its metadata.
    fn import(
        &self,
        image: &Path,
        modules_dir: Option<PathBuf>,
        source: KernelSource,
    ) -> Result<Kernel, KernelError> {
        let read_err = |source| KernelError::ReadImage {
            path: image.to_path_buf(),
            source,
        };
        let id = sha256_file(image).map_err(read_err)?;
        let final_dir = self.dir.join(&id);
        if let Some(mut k) = self.reusable(&id) {
            if k.vmlinux.is_file() {
                // Same bytes as before: keep the cache, record how it was chosen this time.
                if k.source != source || k.modules_dir != modules_dir {
                    k.source = source;
                    k.modules_dir = modules_dir;
                    self.write_meta(&final_dir, &k)?;
                }
                return Ok(k);
            }
        }
        fs::create_dir_all(&self.dir).map_err(self.store_err(&self.dir))?;
        let tmp = temp_sibling(&final_dir);
        fs::create_dir_all(&tmp).map_err(self.store_err(&tmp))?;
        let result = (|| {
            fs::copy(image, tmp.join("image")).map_err(read_err)?;
            let k = self.finish_entry(&tmp, &final_dir, &id, "image", modules_dir, source)?;
            self.install_dir(&tmp, &final_dir)?;
            Ok(k)
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    /// Unpacks `tmp/<image_name>` to `tmp/vmlinux` and writes `tmp/kernel.json` with the
    /// paths it will have once `tmp` is renamed to `final_dir`.
    fn finish_entry(
        &self,
        tmp: &Path,
        final_dir: &Path,
        id: &str,
        image_name: &str,
        modules_dir: Option<PathBuf>,
        source: KernelSource,
    ) -> Result<Kernel, KernelError> {
        let src = tmp.join(image_name);
        let bytes = fs::read(&src).map_err(|source| KernelError::ReadImage {
            path: src.clone(),
            source,
        })?;
        let origin = match &source {
            KernelSource::Deb { path }
            | KernelSource::Binary { path }
            | KernelSource::Tar { path, .. }
            | KernelSource::Override { path }
            | KernelSource::Host { path } => path.clone(),
        };
        let bad = |source| KernelError::BadImage {
            path: origin.clone(),
            source,
        };
        let kind = bzimage::kind(&bytes).map_err(bad)?;
        let release = bzimage::release(&bytes);
        let vmlinux = tmp.join("vmlinux");
        match kind {
            ImageKind::Elf => fs::hard_link(&src, &vmlinux)
                .or_else(|_| fs::copy(&src, &vmlinux).map(|_| ()))
                .map_err(self.store_err(&vmlinux))?,
            ImageKind::BzImage => {
                let elf = bzimage::extract_vmlinux(&bytes).map_err(bad)?;
                fs::write(&vmlinux, elf).map_err(self.store_err(&vmlinux))?;
            }
        }
        let kernel = Kernel {
            id: id.to_string(),
            release,
            source,
            image: final_dir.join(image_name),
            vmlinux: final_dir.join("vmlinux"),
            modules_dir,
        };
        self.write_meta(tmp, &kernel)?;
        Ok(kernel)
    }

    fn write_meta(&self, dir: &Path, kernel: &Kernel) -> Result<(), KernelError> {
        let path = dir.join("kernel.json");
        // Paths that are not UTF-8 cannot be written as JSON: reported, not panicked on.
        let json = serde_json::to_vec_pretty(kernel).map_err(|source| KernelError::Metadata {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json).map_err(self.store_err(&path))
    }

    /// Moves a finished entry into place. Entries are named by content, so when another
    /// process installed the same one first (rename onto a non-empty directory fails), that
    /// complete entry is kept: VMs may already be reading it. Only an incomplete leftover
    /// (no `kernel.json`) is replaced, or any entry with `force` (a running VM keeps the
    /// files it opened).
    fn install_dir(&self, tmp: &Path, final_dir: &Path) -> Result<(), KernelError> {
        match fs::rename(tmp, final_dir) {
            Ok(()) => Ok(()),
            Err(_) if !self.force && final_dir.join("kernel.json").is_file() => Ok(()),
            Err(_) => {
                let old = temp_sibling(final_dir);
                fs::rename(final_dir, &old).map_err(self.store_err(final_dir))?;
                let _ = fs::remove_dir_all(&old);
                fs::rename(tmp, final_dir).map_err(self.store_err(final_dir))
            }
        }
    }
}

/// A tar member's path as written in archives (`./a/b`, `/a/b` and `a//b` are `a/b`).
fn normal_member(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Writes the content of the archive's file `member` to `dest`, following links inside the
/// archive (kernel tarballs name their kernel through a `vmlinux.container` symlink).
fn extract_tar_member(tar: &Path, member: &str, dest: &Path) -> Result<(), KernelError> {
    use std::io::Read;
    let read_err = |source| KernelError::ReadTar {
        path: tar.to_path_buf(),
        source,
    };
    let missing = || KernelError::TarMember {
        path: tar.to_path_buf(),
        member: member.to_string(),
    };
    let mut wanted = normal_member(member);
    // Each hop rereads the archive (a stream cannot seek back); eight hops end a link loop.
    for _ in 0..8 {
        let mut file = fs::File::open(tar).map_err(read_err)?;
        let mut magic = [0u8; 6];
        let n = file.read(&mut magic).map_err(read_err)?;
        let file = fs::File::open(tar).map_err(read_err)?;
        let stream: Box<dyn Read> = match &magic[..n] {
            [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
            [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(xz2::read::XzDecoder::new(file)),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => {
                Box::new(zstd::stream::read::Decoder::new(file).map_err(read_err)?)
            }
            _ => Box::new(file),
        };
        let mut archive = tar::Archive::new(stream);
        let mut next = None;
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let path = entry.path().map_err(read_err)?;
            if normal_member(&path.to_string_lossy()) != wanted {
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let mut out = fs::File::create(dest).map_err(|source| KernelError::Store {
                    path: dest.to_path_buf(),
                    source,
                })?;
                std::io::copy(&mut entry, &mut out).map_err(read_err)?;
                return Ok(());
            }
            let target = entry.link_name().map_err(read_err)?.ok_or_else(missing)?;
            let target = target.to_string_lossy();
            next = Some(if kind.is_symlink() && !target.starts_with('/') {
                // Relative to the link's directory.
                let dir = wanted.rsplit_once('/').map_or("", |(d, _)| d);
                normal_member(&format!("{dir}/{target}"))
            } else {
                normal_member(&target)
            });
            break;
        }
        wanted = next.ok_or_else(missing)?;
    }
    Err(missing())
}

/// The host kernel's release (`uname -r`).
pub fn host_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_members_are_found_through_links_in_any_compression() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(6);
        h.set_mode(0o644);
        b.append_data(&mut h, "./opt/k/vmlinux-6.1", &b"kernel"[..])
            .unwrap();
        for (name, kind, target) in [
            (
                "opt/k/vmlinux.container",
                tar::EntryType::Symlink,
                "vmlinux-6.1",
            ),
            ("opt/k/hard", tar::EntryType::Link, "./opt/k/vmlinux-6.1"),
            ("loop", tar::EntryType::Symlink, "loop"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        let plain = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let xz = xz2::read::XzEncoder::new(&plain[..], 1);
        let xz: Vec<u8> = std::io::Read::bytes(xz).map(|b| b.unwrap()).collect();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        let out = dir.path().join("out");
        for (name, bytes) in [
            ("t.tar", &plain),
            ("t.tgz", &gz),
            ("t.txz", &xz),
            ("t.zst", &zst),
        ] {
            let tar = dir.path().join(name);
            fs::write(&tar, bytes).unwrap();
            for member in [
                "opt/k/vmlinux.container",
                "/opt/k/hard",
                "opt/k/vmlinux-6.1",
            ] {
                let _ = fs::remove_file(&out);
                extract_tar_member(&tar, member, &out).unwrap();
                assert_eq!(fs::read(&out).unwrap(), b"kernel", "{name} {member}");
            }
            for member in ["opt/k/none", "loop", "opt/k"] {
                assert!(
                    matches!(
                        extract_tar_member(&tar, member, &out),
                        Err(KernelError::TarMember { .. })
                    ),
                    "{name} {member}"
                );
            }
        }
    }

    #[test]
    fn set_from_deb_unpacks_vmlinux_and_modules() {
        let deb = testkit::kernel_deb();
        let root = tempfile::tempdir().unwrap();
        let store = KernelStore::new(root.path());
        assert!(store.configured().unwrap().is_none());
        let k = store.set_from_deb(&deb).unwrap();
        let elf = fs::read(&k.vmlinux).unwrap();
        // ELF64, little endian, x86-64, executable.
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2);
        assert_eq!(elf[5], 1);
        assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 2, "ET_EXEC");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 62, "EM_X86_64");
        // The PVH entry note QEMU needs to boot it directly.
        let parsed = object::read::elf::ElfFile64::<object::Endianness>::parse(&*elf).unwrap();
        use object::Object;
        assert!(parsed.section_by_name(".notes").is_some() || parsed.segments().count() > 0);
        assert!(k.release.as_deref().unwrap().ends_with("cloud-amd64"));
        assert!(k
            .modules_dir
            .as_ref()
            .unwrap()
            .join("modules.builtin")
            .exists());

        let again = store.configured().unwrap().unwrap();
        assert_eq!(again.id, k.id);
        // Setting the same package again keeps the installed copy in place.
        let marker = k.dir().join("marker");
        fs::write(&marker, b"").unwrap();
        assert_eq!(store.set_from_deb(&deb).unwrap().id, k.id);
        assert!(marker.exists());
        fs::remove_file(&marker).unwrap();
        assert_eq!(store.current().unwrap().vmlinux, k.vmlinux);
        // No temp directories left behind.
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn binary_and_override_share_the_cache() {
        let tk = crate::testutil::debian_kernel();
        let root = tempfile::tempdir().unwrap();
        let store = KernelStore::new(root.path());
        let k = store.set_binary(&tk.vmlinuz, Some(&tk.modules)).unwrap();
        assert_eq!(k.release.as_deref(), Some(tk.release.as_str()));
        assert_eq!(k.modules_dir.as_deref(), Some(tk.modules.as_path()));
        assert!(matches!(k.source, KernelSource::Binary { .. }));
        // An ELF given as-is boots as-is, and borrows the modules of the kernel it came from.
        let o = store.for_path(&k.vmlinux).unwrap();
        assert_ne!(o.id, k.id);
        assert_eq!(fs::read(&o.vmlinux).unwrap(), fs::read(&k.vmlinux).unwrap());
        assert_eq!(o.release, k.release);
        assert_eq!(o.modules_dir, k.modules_dir);
        assert!(matches!(o.source, KernelSource::Override { .. }));
        assert_eq!(store.list().len(), 2);
        // The override did not change the current kernel.
        assert_eq!(store.current().unwrap().id, k.id);
        // A store entry removed behind our back is reported with the way out.
        fs::remove_dir_all(k.dir()).unwrap();
        let err = store.current().unwrap_err();
        assert!(matches!(err, KernelError::Load { .. }), "{err}");
        assert!(
            err.to_string().contains("container system kernel set"),
            "{err}"
        );
    }

    /// Several processes importing the same kernel at once all get a complete entry.
    #[test]
    fn concurrent_imports_of_one_kernel() {
        let tk = crate::testutil::debian_kernel();
        let root = tempfile::tempdir().unwrap();
        let store = KernelStore::new(root.path());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                let image = tk.vmlinuz.clone();
                std::thread::spawn(move || store.for_path(&image).unwrap())
            })
            .collect();
        let kernels: Vec<Kernel> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for k in &kernels {
            assert_eq!(k.id, kernels[0].id);
            assert_eq!(&fs::read(&k.vmlinux).unwrap()[..4], b"\x7fELF");
        }
        // One entry, no temporary directories left.
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 1);
    }

    #[test]
    fn bad_inputs_are_named() {
        let root = tempfile::tempdir().unwrap();
        let store = KernelStore::new(root.path());
        let junk = root.path().join("junk");
        fs::write(&junk, b"not a kernel").unwrap();
        let err = store.set_binary(&junk, None).unwrap_err();
        assert!(matches!(err, KernelError::BadImage { .. }), "{err}");
        let err = store
            .set_binary(&junk, Some(Path::new("/nonexistent")))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent"));
        let err = store
            .for_path(Path::new("/nonexistent/vmlinuz"))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinuz"));
        assert!(store.configured().unwrap().is_none());
    }
}
