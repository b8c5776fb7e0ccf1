//! Per-VM copy-on-write disks: a qcow2 overlay over a cached raw image.
//!
//! The container's writes land in the overlay; the raw base (the image's ext4 rootfs, shared
//! by every container of that image) is never written. `qemu-img` (Debian `qemu-utils`, pulled
//! in by `qemu-system-x86`) writes the qcow2 header.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// `qemu-img` could not be run.
    #[error("cannot run qemu-img (install Debian package qemu-utils)")]
    Spawn(#[source] std::io::Error),
    /// `qemu-img` failed.
    #[error("qemu-img create {overlay} failed: {stderr}")]
    Create { overlay: PathBuf, stderr: String },
    /// Moving the finished overlay into place failed.
    #[error("cannot write overlay {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `overlay`, a qcow2 image whose backing file is the raw image `base` (referenced by
/// absolute path). The overlay appears complete or not at all, and an existing file is never
/// overwritten.
pub fn qcow2_overlay(base: &Path, overlay: &Path) -> Result<(), DiskError> {
    if !base.is_file() {
        return Err(DiskError::NoBase(base.to_path_buf()));
    }
    let base = std::path::absolute(base).map_err(|_| DiskError::NoBase(base.to_path_buf()))?;
    let tmp = temp_sibling(overlay);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(&tmp)
        .output()
        .map_err(DiskError::Spawn)?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(DiskError::Create {
            overlay: overlay.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    // link(2) fails if the overlay exists: a container's disk is never replaced by accident.
    let linked = std::fs::hard_link(&tmp, overlay);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            DiskError::Exists(overlay.to_path_buf())
        } else {
            DiskError::Write {
                path: overlay.to_path_buf(),
                source,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
