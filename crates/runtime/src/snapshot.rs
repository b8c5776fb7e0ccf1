//! A stack of unpacked layer directories (containerd's overlayfs snapshots) as a read-only ext4
//! image in the rootfs cache, so that a front end handed directories (the containerd shim)
//! still gives its VM a disk, which can start from a VM template, instead of a virtiofs share.
//!
//! Each directory is an unpacked layer in overlayfs's own format: a whiteout is a 0:0
//! character device, an opaque directory carries `trusted.overlay.opaque`. Each is streamed as
//! an OCI layer tar (whiteouts as `.wh.` entries, attributes as PAX records), by the same packer
//! as the builder's RUN layers ([`agent::layer::pack`]), into our ext4 writer, bottom first.
//! The image depends only on the layers, which containerd never changes once committed, so it
//! is built once per layer chain (`rootfs/sha256-<key>.snapshot2.ext4`, the key naming each
//! directory and its inode) and shared; a `.layers` file beside it lists the directories, so
//! that [`prune`] can remove images whose layers are gone.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The format name of snapshot images in the rootfs cache (`sha256-<key>.<FORMAT>.ext4`); bump
/// it when what [`write_layer`] streams changes.
const FORMAT: &str = "snapshot2";

/// Why a layer stack could not become a disk image.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading a layer directory failed.
    #[error("snapshot layer {}: {source}", .path.display())]
    Read {
        /// The layer directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The runtime's rootfs cache failed (the ext4 writer's error inside).
    #[error("snapshot image: {0}")]
    Cache(#[from] crate::rootfs::RootfsError),
}

/// The read-only ext4 image of `layers` (bottom first) in the rootfs cache of the runtime
/// state directory `root`, built now unless a task of the same layers built it before.
pub fn image(root: &Path, layers: &[PathBuf]) -> Result<PathBuf, SnapshotError> {
    let key = key(layers)?;
    let cache = crate::rootfs::RootfsCache::open(root)?;
    let path = cache.ensure_in_format(&format!("sha256:{key}"), Some(FORMAT), |tmp| {
        build(layers, tmp)
    })?;
    // What `prune` reads to know when the layers are gone. Best effort: without it the
    // image stays until the cache is cleared.
    let record = path.with_extension("layers");
    if !record.exists() {
        let list: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        let _ = atomic_file::write_atomic(&record, list.join("\n").as_bytes());
    }
    Ok(path)
}

/// Removes the cached images whose layers containerd has removed (their snapshots were
/// garbage collected, so no task can use them again). Returns how many went.
pub fn prune(root: &Path) -> usize {
    let dir = crate::rootfs::RootfsCache::dir(root);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let record = entry.path();
        if record.extension().is_none_or(|x| x != "layers") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&record) else {
            continue;
        };
        if text.lines().all(|l| Path::new(l).is_dir()) {
            continue;
        }
        // Image first: a record without its image is harmless, the reverse would leak.
        let _ = std::fs::remove_file(record.with_extension("ext4"));
        let _ = std::fs::remove_file(&record);
        removed += 1;
    }
    removed
}

/// Names a layer chain: each directory's path and identity (device, inode, change time), so
/// that a directory replaced under the same path gets a new image.
fn key(layers: &[PathBuf]) -> Result<String, SnapshotError> {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    for layer in layers {
        let m = std::fs::metadata(layer).map_err(|source| SnapshotError::Read {
            path: layer.clone(),
            source,
        })?;
        h.update(b"\0");
        h.update(layer.as_os_str().as_encoded_bytes());
        h.update(format!("\0{}:{}:{}.{}", m.dev(), m.ino(), m.ctime(), m.ctime_nsec()).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// The reason a build failed: the layer's reader when it failed first, else the writer.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error(transparent)]
    Read(#[from] SnapshotError),
    #[error(transparent)]
    Write(#[from] ext4::Ext4Error),
}

/// Writes the image of `layers` at `output`: each layer is streamed as a tar through a pipe
/// from a reader thread into the ext4 writer, so no layer is ever held whole in memory.
fn build(layers: &[PathBuf], output: &Path) -> Result<(), BuildError> {
    let opts = ext4::FormatOptions {
        journal: true,
        // The container's writes go to an overlay of this image: the room is theirs (the
        // file stays sparse), as for an image's rootfs.
        min_size: Some(crate::image::ROOTFS_MIN_SIZE),
        lost_found: false,
        ..Default::default()
    };
    let mut builder = ext4::Builder::create(output, &opts)?;
    for layer in layers {
        let (rx, tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SnapshotError::Read {
                path: layer.clone(),
                source: e.into(),
            })?;
        let dir = layer.clone();
        let reader = std::thread::spawn(move || write_layer(&dir, File::from(tx)));
        let applied = builder.apply_layer(File::from(rx), &layer.display().to_string());
        // The pipe's read end is closed now, so a reader still writing fails at once (a
        // broken pipe: the writer's own error says why it stopped reading).
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("layer reader panicked")));
        match read {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe || applied.is_ok() => {
                return Err(SnapshotError::Read {
                    path: layer.clone(),
                    source: e,
                }
                .into())
            }
            _ => applied?,
        }
    }
    builder.finish()?;
    Ok(())
}

/// Streams the overlayfs layer directory `dir` to `out` as an OCI layer tar, with the same
/// rules the builder packs its RUN steps' overlay directories by ([`agent::layer`]).
fn write_layer(dir: &Path, out: File) -> std::io::Result<()> {
    let out = BufWriter::with_capacity(1 << 16, out);
    let mut out = agent::layer::pack(out, dir).map_err(std::io::Error::other)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two overlayfs layers as containerd's snapshotter leaves them (a whiteout, an opaque
    /// directory, hard links, a symlink, an attribute) come out as the merged tree; checked
    /// with our reader and with e2fsprogs as the oracle. Needs root (a 0:0 device, `trusted.`).
    #[test]
    fn overlay_layers_become_the_merged_filesystem() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        for d in ["a", "d/old"] {
            std::fs::create_dir_all(l1.join(d)).unwrap();
        }
        std::fs::write(l1.join("a/gone"), "one").unwrap();
        std::fs::write(l1.join("a/keep"), "kept").unwrap();
        std::fs::write(l1.join("h1"), "linked").unwrap();
        std::fs::hard_link(l1.join("h1"), l1.join("a/h2")).unwrap();
        symlink("a/keep", l1.join("s")).unwrap();
        xattr::set(l1.join("a/keep"), "user.test", b"value").unwrap();
        std::fs::create_dir_all(l2.join("a")).unwrap();
        std::fs::create_dir_all(l2.join("d")).unwrap();
        nix::sys::stat::mknod(
            &l2.join("a/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        xattr::set(l2.join("d"), "trusted.overlay.opaque", b"y").unwrap();
        std::fs::write(l2.join("d/new"), "new").unwrap();
        std::fs::write(l2.join("top"), vec![7u8; 100_000]).unwrap();

        let out = t.path().join("img.ext4");
        build(&[l1, l2], &out).unwrap();
        let r = ext4::reader::Reader::open(&out).unwrap();
        assert_eq!(r.list("/a").unwrap(), ["h2", "keep"]);
        assert_eq!(r.list("/d").unwrap(), ["new"]);
        assert_eq!(r.read("/a/keep").unwrap(), b"kept");
        assert_eq!(r.read("/top").unwrap(), vec![7u8; 100_000]);
        let (h1, h2) = (r.stat("/h1").unwrap(), r.stat("/a/h2").unwrap());
        assert_eq!((h1.ino, h1.links), (h2.ino, 2));
        assert_eq!(r.read("/s").unwrap(), b"a/keep");
        let mut names = r.list("/").unwrap();
        names.sort();
        assert_eq!(names, ["a", "d", "h1", "s", "top"]);

        let fsck = std::process::Command::new("e2fsck")
            .args(["-fn"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{fsck:?}");
        let ea = std::process::Command::new("debugfs")
            .arg("-R")
            .arg("ea_get /a/keep user.test")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&ea.stdout).contains("value"),
            "{ea:?}"
        );
        let ea = std::process::Command::new("debugfs")
            .arg("-R")
            .arg("ea_list /d")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&ea.stdout).contains("overlay"),
            "{ea:?}"
        );
    }
}
