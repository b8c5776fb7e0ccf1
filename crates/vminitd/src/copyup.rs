//! docker's volume copy-up: a volume that is still empty when it is mounted over a directory of
//! the image first receives that directory's content (files, directories, symlinks, device
//! nodes, with owners, modes and times), and its root takes the directory's owner and mode. A
//! volume that holds anything is left alone, so this happens once per volume.
//!
//! Runs in the container's child before `pivot_root`, with the image's directory reached
//! through the new root; nothing is followed through a symlink, so image content cannot point
//! the copy at the guest's own files.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::sys;

/// Copies `image_dir` (a path inside the new root `root`) into `volume` when `volume` is empty
/// (a `lost+found` alone counts as empty). Returns whether it copied.
pub fn populate(root: &Path, image_dir: &Path, volume: &Path) -> io::Result<bool> {
    // The image path must resolve inside the new root: an image symlink on the way would
    // otherwise lead to the guest's files.
    let resolved = match fs::canonicalize(image_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let root = fs::canonicalize(root)?;
    if !resolved.starts_with(&root) || !fs::symlink_metadata(&resolved)?.is_dir() {
        return Ok(false);
    }
    let occupied = fs::read_dir(volume)?
        .flatten()
        .any(|e| e.file_name() != "lost+found");
    if occupied {
        return Ok(false);
    }
    copy_children(&resolved, volume)?;
    copy_attrs(&fs::symlink_metadata(&resolved)?, volume)?;
    Ok(true)
}

fn copy_children(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&to)?;
            copy_children(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to)?;
        } else {
            // Devices, FIFOs and sockets: the node itself, never its content.
            sys::mknod(&to, meta.mode(), meta.rdev())?;
        }
        copy_attrs(&meta, &to)?;
    }
    Ok(())
}

/// Owner, then mode (chown clears set-id bits), then times (last: the rest touch them).
fn copy_attrs(meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    sys::set_times(
        to,
        (meta.atime(), meta.atime_nsec()),
        (meta.mtime(), meta.mtime_nsec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_into_an_empty_volume_once_and_stays_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let data = root.join("data");
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::write(data.join("sub/f"), "hello").unwrap();
        fs::set_permissions(data.join("sub/f"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", data.join("link")).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o1777)).unwrap();
        let vol = t.path().join("vol");
        fs::create_dir_all(vol.join("lost+found")).unwrap();

        assert!(populate(&root, &data, &vol).unwrap());
        assert_eq!(fs::read_to_string(vol.join("sub/f")).unwrap(), "hello");
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&vol.join("sub/f")), 0o640);
        assert_eq!(mode(&vol), 0o1777);
        assert_eq!(
            fs::read_link(vol.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let mtime = |p: &Path| fs::metadata(p).unwrap().mtime();
        assert_eq!(mtime(&vol.join("sub/f")), mtime(&data.join("sub/f")));

        // Not empty any more: a second mount copies nothing.
        fs::remove_file(vol.join("sub/f")).unwrap();
        assert!(!populate(&root, &data, &vol).unwrap());
        assert!(!vol.join("sub/f").exists());

        // A directory missing from the image, or one reached through a symlink out of the
        // root, gives nothing.
        let vol2 = t.path().join("vol2");
        fs::create_dir(&vol2).unwrap();
        assert!(!populate(&root, &root.join("nope"), &vol2).unwrap());
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        assert!(!populate(&root, &root.join("escape"), &vol2).unwrap());
        assert_eq!(fs::read_dir(&vol2).unwrap().count(), 0);
    }
}
