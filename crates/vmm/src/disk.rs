//! Per-VM copy-on-write disks: a qcow2 overlay over a cached raw image.
//!
//! The container's writes land in the overlay; the raw base (the image's ext4 rootfs, shared
//! by every container of that image) is never written. We write the overlay's few header
//! clusters ourselves (the layout `qemu-img create -f qcow2 -F raw -b BASE` makes, checked
//! against `qemu-img check` in the tests): spawning qemu-img cost about 10 ms of every start.

use std::io::Write;
use std::path::{Path, PathBuf};

use atomic_file::temp_sibling;

/// Errors of creating disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The base image does not exist.
    #[error("base disk image {0} does not exist")]
    NoBase(PathBuf),
    /// The overlay already exists (it holds a container's writes; it is not replaced).
    #[error("disk {0} already exists")]
    Exists(PathBuf),
    /// The base's path does not fit in the overlay's header.
    #[error(
        "base disk path {0} is too long for a qcow2 header ({QCOW2_MAX_BACKING} bytes at most)"
    )]
    PathTooLong(PathBuf),
    /// Writing the overlay or moving it into place failed.
    #[error("cannot write overlay {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// QEMU refuses backing file names longer than this.
const QCOW2_MAX_BACKING: usize = 1023;
const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Guest bytes one L1 entry maps: an L2 table of CLUSTER/8 entries of one cluster each.
const L1_SPAN: u64 = (CLUSTER / 8) * CLUSTER;
/// Header extension: the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
/// Fixed header length of version 3 with the compression-type byte, padded to 8.
const HEADER_LEN: u32 = 112;

/// Creates `overlay`, a qcow2 image whose backing file is the raw image `base` (referenced by
/// absolute path). The overlay appears complete or not at all, and an existing file is never
/// overwritten.
pub fn qcow2_overlay(base: &Path, overlay: &Path) -> Result<(), DiskError> {
    let no_base = || DiskError::NoBase(base.to_path_buf());
    let meta = std::fs::metadata(base).map_err(|_| no_base())?;
    if !meta.is_file() {
        return Err(no_base());
    }
    let base = std::path::absolute(base).map_err(|_| no_base())?;
    let bytes = qcow2_header(&base, meta.len())?;
    let tmp = temp_sibling(overlay);
    let write_err = |source| DiskError::Write {
        path: overlay.to_path_buf(),
        source,
    };
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(&bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    // link(2) fails if the overlay exists: a container's disk is never replaced by accident.
    let linked = std::fs::hard_link(&tmp, overlay);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            DiskError::Exists(overlay.to_path_buf())
        } else {
            write_err(source)
        }
    })
}

/// The backing file of the qcow2 image open as `file` (its path relative to `dir` if not
/// absolute) and the backing format its header names (`None`: QEMU probes it), or `None` when
/// the image has no backing file. Read for QEMUs that get their disks as open descriptors
/// ([`crate::config::QemuUser::Own`]): such a QEMU cannot open the backing file by the path
/// in the header, so the caller opens it and names it on the command line instead.
pub fn qcow2_backing(
    file: &std::fs::File,
    dir: &Path,
) -> std::io::Result<Option<(PathBuf, Option<String>)>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileExt;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut h = [0u8; 104];
    file.read_exact_at(&mut h, 0)?;
    let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let be64 = |o: usize| u64::from(be32(o)) << 32 | u64::from(be32(o + 4));
    if be32(0) != 0x5146_49FB {
        return Err(bad("not a qcow2 image"));
    }
    let (offset, len) = (be64(8), be32(16));
    if offset == 0 || len == 0 {
        return Ok(None);
    }
    if len as usize > QCOW2_MAX_BACKING {
        return Err(bad("backing file name too long"));
    }
    let mut name = vec![0u8; len as usize];
    file.read_exact_at(&mut name, offset)?;
    let path = Path::new(std::ffi::OsStr::from_bytes(&name));
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    // Version 3 states its header's length; version 2's is 72. Extensions follow it.
    let mut at = if be32(4) >= 3 {
        u64::from(be32(100))
    } else {
        72
    };
    let mut format = None;
    // A header cluster holds at most a few dozen extensions; the bound stops a crafted loop.
    for _ in 0..64 {
        let mut ext = [0u8; 8];
        file.read_exact_at(&mut ext, at)?;
        let kind = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
        let size = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
        if kind == 0 {
            break;
        }
        if kind == EXT_BACKING_FORMAT && size <= 16 {
            let mut f = vec![0u8; size as usize];
            file.read_exact_at(&mut f, at + 8)?;
            format = Some(
                String::from_utf8_lossy(&f)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
        at += 8 + u64::from(size).div_ceil(8) * 8;
    }
    Ok(Some((path, format)))
}

/// The whole file of an empty version-3 qcow2 overlay of `size` bytes over raw `base`:
/// cluster 0 the header, its extensions and the backing path; cluster 1 the refcount table;
/// cluster 2 its one refcount block; cluster 3 on the L1 table (all entries unallocated).
fn qcow2_header(base: &Path, size: u64) -> Result<Vec<u8>, DiskError> {
    use std::os::unix::ffi::OsStrExt;
    let name = base.as_os_str().as_bytes();
    if name.len() > QCOW2_MAX_BACKING {
        return Err(DiskError::PathTooLong(base.to_path_buf()));
    }
    // qcow2 sizes are in 512-byte sectors.
    let size = size.div_ceil(512) * 512;
    let l1_entries = size.div_ceil(L1_SPAN).max(1);
    let l1_offset = 3 * CLUSTER;
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);
    let clusters = 3 + l1_clusters;
    let refcount_table = CLUSTER;
    let refcount_block = 2 * CLUSTER;

    let mut h = Vec::with_capacity(CLUSTER as usize);
    let u32b = |h: &mut Vec<u8>, v: u32| h.extend_from_slice(&v.to_be_bytes());
    let u64b = |h: &mut Vec<u8>, v: u64| h.extend_from_slice(&v.to_be_bytes());
    // Extensions follow the header: the backing format ("raw", padded to 8), then the end.
    let backing_offset = u64::from(HEADER_LEN) + 8 + 8 + 8;
    u32b(&mut h, 0x5146_49FB); // "QFI\xfb"
    u32b(&mut h, 3); // version
    u64b(&mut h, backing_offset);
    u32b(&mut h, name.len() as u32);
    u32b(&mut h, CLUSTER_BITS);
    u64b(&mut h, size);
    u32b(&mut h, 0); // no encryption
    u32b(&mut h, l1_entries as u32);
    u64b(&mut h, l1_offset);
    u64b(&mut h, refcount_table);
    u32b(&mut h, 1); // refcount table clusters
    u32b(&mut h, 0); // snapshots
    u64b(&mut h, 0);
    u64b(&mut h, 0); // incompatible features: none (not dirty, not corrupt)
    u64b(&mut h, 0); // compatible features
    u64b(&mut h, 0); // autoclear features
    u32b(&mut h, 4); // refcount order: 16-bit refcounts
    u32b(&mut h, HEADER_LEN);
    h.extend_from_slice(&[0u8; 8]); // compression type zlib, padding
    debug_assert_eq!(h.len(), HEADER_LEN as usize);
    u32b(&mut h, EXT_BACKING_FORMAT);
    u32b(&mut h, 3);
    h.extend_from_slice(b"raw\0\0\0\0\0");
    u64b(&mut h, 0); // end of extensions
    debug_assert_eq!(h.len() as u64, backing_offset);
    h.extend_from_slice(name);

    let mut file = vec![0u8; (l1_offset + l1_entries * 8) as usize];
    file[..h.len()].copy_from_slice(&h);
    let rt = refcount_table as usize;
    file[rt..rt + 8].copy_from_slice(&refcount_block.to_be_bytes());
    let rb = refcount_block as usize;
    for c in 0..clusters as usize {
        file[rb + 2 * c..rb + 2 * c + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn overlay_points_at_raw_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        let f = std::fs::File::create(&base).unwrap();
        f.set_len(64 << 20).unwrap();
        let overlay = dir.path().join("c1.qcow2");
        qcow2_overlay(&base, &overlay).unwrap();
        let out = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&overlay)
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["backing-filename-format"], "raw");
        assert_eq!(info["backing-filename"], base.display().to_string());
        assert_eq!(info["virtual-size"], 64 << 20);
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
        check(&overlay);
        let f = std::fs::File::open(&overlay).unwrap();
        assert_eq!(
            qcow2_backing(&f, dir.path()).unwrap(),
            Some((base.clone(), Some("raw".to_string())))
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let err = qcow2_overlay(&base, &overlay).unwrap_err();
        assert!(matches!(err, DiskError::Exists(_)), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn missing_base_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = qcow2_overlay(&dir.path().join("nope"), &dir.path().join("o")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    /// `qemu-img check` finds no error and no leak.
    fn check(image: &Path) {
        let out = Command::new("qemu-img")
            .args(["check", "--output=json"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["check-errors"], 0, "{r}");
        assert!(
            r.get("leaks").is_none() && r.get("corruptions").is_none(),
            "{r}"
        );
    }

    #[test]
    fn overlay_of_a_large_odd_sized_base_takes_writes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        // 3 TiB + 4 KiB: an L1 table of 6145 entries, across two clusters.
        let size = (3u64 << 40) + 4096;
        std::fs::File::create(&base).unwrap().set_len(size).unwrap();
        let overlay = dir.path().join("big.qcow2");
        qcow2_overlay(&base, &overlay).unwrap();
        check(&overlay);
        // QEMU writes through it: clusters are allocated after ours and the refcounts hold.
        let out = Command::new("qemu-io")
            .args([
                "-f",
                "qcow2",
                "-c",
                "write -P 0x5a 2T 1M",
                "-c",
                "read -P 0x5a 2T 1M",
            ])
            .arg(&overlay)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("fail"));
        check(&overlay);
        assert_eq!(
            std::fs::metadata(&base).unwrap().len(),
            size,
            "base untouched"
        );
    }

    #[test]
    fn too_long_a_base_path_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        while deep.as_os_str().len() < 1100 {
            deep.push("a".repeat(100));
        }
        std::fs::create_dir_all(&deep).unwrap();
        let base = deep.join("base.img");
        std::fs::File::create(&base)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let err = qcow2_overlay(&base, &dir.path().join("o.qcow2")).unwrap_err();
        assert!(matches!(err, DiskError::PathTooLong(_)), "{err}");
        assert!(!dir.path().join("o.qcow2").exists());
    }
}
