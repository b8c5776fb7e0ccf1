//! Takes the kernel and its modules out of a Debian `linux-image-*` package.
//!
//! A `.deb` is an `ar` archive (`deb(5)`): the global header `!<arch>\n`, then members, each
//! with a 60-byte header and its data padded to an even length:
//!
//! ```text
//! name[16] mtime[12] uid[6] gid[6] mode[8] size[10] "`\n"
//! ```
//!
//! Members are `debian-binary`, `control.tar.*` and `data.tar.{xz,zst,gz}`. From the data tar we
//! take `boot/vmlinuz-<release>` and everything under `lib/modules/<release>/` (or
//! `usr/lib/modules/<release>/` on merged-/usr packages).

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// Errors of reading a kernel package.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The package file cannot be opened or read.
    #[error("cannot read package {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not an `ar` archive or a member header is malformed.
    #[error("{path} is not a Debian package ({what})")]
    Format { path: PathBuf, what: String },
    /// The package has no `data.tar.*` member.
    #[error("{0} has no data.tar member")]
    NoData(PathBuf),
    /// The data member uses a compression this crate does not read.
    #[error("{path}: unsupported data member {member}")]
    UnsupportedData { path: PathBuf, member: String },
    /// Reading the data tar or writing a file out of it failed.
    #[error("cannot extract {entry} from {path}")]
    Extract {
        path: PathBuf,
        entry: String,
        #[source]
        source: io::Error,
    },
    /// The package contains no `boot/vmlinuz-*`.
    #[error("{0} contains no boot/vmlinuz-* (not a kernel image package?)")]
    NoKernel(PathBuf),
}

/// What [`extract_kernel`] wrote.
#[derive(Debug, Clone)]
pub struct ExtractedKernel {
    /// The kernel image (`dest/vmlinuz`).
    pub vmlinuz: PathBuf,
    /// The kernel release, from the `vmlinuz-<release>` file name.
    pub release: String,
    /// `dest/modules` (the content of `lib/modules/<release>/`), when the package ships modules.
    pub modules_dir: Option<PathBuf>,
}

/// Extracts the kernel image to `dest/vmlinuz` and its modules to `dest/modules/`.
pub fn extract_kernel(deb: &Path, dest: &Path) -> Result<ExtractedKernel, DebError> {
    let file = fs::File::open(deb).map_err(|source| DebError::Read {
        path: deb.to_path_buf(),
        source,
    })?;
    extract_kernel_from(BufReader::new(file), deb, dest)
}

/// Like [`extract_kernel`], reading the package from `file`; `deb` only names it in errors.
pub fn extract_kernel_from(
    mut file: impl Read,
    deb: &Path,
    dest: &Path,
) -> Result<ExtractedKernel, DebError> {
    let read_err = |source| DebError::Read {
        path: deb.to_path_buf(),
        source,
    };
    let format = |what: &str| DebError::Format {
        path: deb.to_path_buf(),
        what: what.to_string(),
    };
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(read_err)?;
    if &magic != b"!<arch>\n" {
        return Err(format("no ar magic"));
    }
    loop {
        let mut header = [0u8; 60];
        match file.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(DebError::NoData(deb.to_path_buf()))
            }
            Err(e) => return Err(read_err(e)),
        }
        if &header[58..60] != b"`\n" {
            return Err(format("bad ar member header"));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format("bad ar member size"))?;
        if let Some(ext) = name.strip_prefix("data.tar") {
            let member = (&mut file).take(size);
            let reader: Box<dyn Read + '_> = match ext {
                ".xz" => Box::new(xz2::read::XzDecoder::new(member)),
                ".zst" => Box::new(zstd::stream::read::Decoder::new(member).map_err(read_err)?),
                ".gz" => Box::new(flate2::read::GzDecoder::new(member)),
                "" => Box::new(member),
                _ => {
                    return Err(DebError::UnsupportedData {
                        path: deb.to_path_buf(),
                        member: name,
                    })
                }
            };
            return unpack_data(deb, reader, dest);
        }
        // Skip this member and its padding byte.
        let skip = size + size % 2;
        io::copy(&mut (&mut file).take(skip), &mut io::sink()).map_err(read_err)?;
    }
}

fn unpack_data(deb: &Path, data: impl Read, dest: &Path) -> Result<ExtractedKernel, DebError> {
    let extract = |entry: &str, source| DebError::Extract {
        path: deb.to_path_buf(),
        entry: entry.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(data);
    let mut kernel: Option<(PathBuf, String)> = None;
    let mut modules_dir = None;
    let entries = archive.entries().map_err(|e| extract("data.tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| extract("data.tar", e))?;
        let path = entry
            .path()
            .map_err(|e| extract("data.tar", e))?
            .into_owned();
        let shown = path.display().to_string();
        let parts: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        // Never follow `..` out of dest.
        if path.components().any(|c| c == Component::ParentDir) {
            continue;
        }
        let kind = entry.header().entry_type();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let target = match parts.as_slice() {
            ["boot", name] if name.starts_with("vmlinuz-") && kind.is_file() => {
                let out = dest.join("vmlinuz");
                kernel = Some((out.clone(), name["vmlinuz-".len()..].to_string()));
                out
            }
            ["lib", "modules", _release, rest @ ..]
            | ["usr", "lib", "modules", _release, rest @ ..]
                if !rest.is_empty() && (kind.is_file() || kind.is_dir()) =>
            {
                let base = dest.join("modules");
                modules_dir = Some(base.clone());
                rest.iter().fold(base, |p, part| p.join(part))
            }
            _ => continue,
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| extract(&shown, e))?;
        }
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(|e| extract(&shown, e))?;
        } else {
            let mut out = fs::File::create(&target).map_err(|e| extract(&shown, e))?;
            io::copy(&mut entry, &mut out).map_err(|e| extract(&shown, e))?;
        }
    }
    let (vmlinuz, release) = kernel.ok_or_else(|| DebError::NoKernel(deb.to_path_buf()))?;
    Ok(ExtractedKernel {
        vmlinuz,
        release,
        modules_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Builds a small .deb with `ar` (binutils) and GNU tar: the outside format oracle.
    fn make_deb(dir: &Path, compress: &str) -> PathBuf {
        let root = dir.join("root");
        let kmod = root.join("lib/modules/9.9.9-test/kernel/drivers");
        fs::create_dir_all(&kmod).unwrap();
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join("boot/vmlinuz-9.9.9-test"), b"KERNEL").unwrap();
        fs::write(root.join("boot/config-9.9.9-test"), b"CONFIG").unwrap();
        fs::write(kmod.join("a.ko"), b"MODULE-A").unwrap();
        fs::write(root.join("lib/modules/9.9.9-test/modules.builtin"), b"").unwrap();
        fs::write(dir.join("debian-binary"), b"2.0\n").unwrap();
        let (flag, name) = match compress {
            "xz" => ("-J", "data.tar.xz"),
            "gz" => ("-z", "data.tar.gz"),
            _ => ("--zstd", "data.tar.zst"),
        };
        let st = Command::new("tar")
            .args(["-C", root.to_str().unwrap(), flag, "-cf"])
            .arg(dir.join(name))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("tar")
            .args(["-C", dir.to_str().unwrap(), "-czf"])
            .arg(dir.join("control.tar.gz"))
            .arg("debian-binary")
            .status()
            .unwrap();
        assert!(st.success());
        let deb = dir.join("k.deb");
        let st = Command::new("ar")
            .arg("rc")
            .arg(&deb)
            .arg(dir.join("debian-binary"))
            .arg(dir.join("control.tar.gz"))
            .arg(dir.join(name))
            .status()
            .expect("ar (binutils) must be installed");
        assert!(st.success());
        deb
    }

    #[test]
    fn extracts_kernel_and_modules_from_each_compression() {
        for c in ["xz", "gz", "zst"] {
            let dir = tempfile::tempdir().unwrap();
            let deb = make_deb(dir.path(), c);
            let dest = dir.path().join("out");
            fs::create_dir_all(&dest).unwrap();
            let k = extract_kernel(&deb, &dest).unwrap();
            assert_eq!(k.release, "9.9.9-test");
            assert_eq!(fs::read(&k.vmlinuz).unwrap(), b"KERNEL");
            let m = k.modules_dir.unwrap();
            assert_eq!(
                fs::read(m.join("kernel/drivers/a.ko")).unwrap(),
                b"MODULE-A"
            );
            assert!(m.join("modules.builtin").exists());
            assert!(!dest.join("config-9.9.9-test").exists());
        }
    }

    #[test]
    fn rejects_non_deb() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.deb");
        fs::write(&f, b"not an archive at all").unwrap();
        let err = extract_kernel(&f, dir.path()).unwrap_err();
        assert!(matches!(err, DebError::Format { .. }), "{err}");
    }

    /// The real Debian cloud kernel package, when the setup script has downloaded it.
    #[test]
    fn real_debian_kernel_package() {
        let deb = testkit::kernel_deb();
        let dir = tempfile::tempdir().unwrap();
        let k = extract_kernel(&deb, dir.path()).unwrap();
        assert!(k.release.ends_with("-cloud-amd64"), "{}", k.release);
        let m = k.modules_dir.unwrap();
        assert!(m.join("kernel/drivers/block/virtio_blk.ko").exists());
        assert!(m.join("modules.builtin").exists());
        let img = fs::read(&k.vmlinuz).unwrap();
        assert_eq!(
            crate::bzimage::kind(&img).unwrap(),
            crate::bzimage::ImageKind::BzImage
        );
        assert_eq!(
            crate::bzimage::release(&img).as_deref(),
            Some(k.release.as_str())
        );
    }
}
