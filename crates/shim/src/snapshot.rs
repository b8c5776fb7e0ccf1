//! A containerd snapshot as a read-only ext4 disk, so that a task's VM gets its root
//! filesystem as a block device and can start from a VM template, as `container run` does,
//! instead of booting cold around a virtiofs share (a template's clone maps guest memory
//! private; virtiofsd needs it shared).
//!
//! containerd's overlayfs snapshotter hands a task its rootfs as one `overlay` mount: the
//! committed layers as `lowerdir` (topmost first) and an empty `upperdir` for the container's
//! writes. Each lower directory is an unpacked layer in overlayfs's own format: a whiteout is a
//! 0:0 character device, an opaque directory carries `trusted.overlay.opaque` (or
//! `user.overlay.opaque` on a `userxattr` mount). Each is streamed as an OCI layer tar (whiteouts
//! as `.wh.` entries, attributes as PAX records) into our ext4 writer, bottom first. The image
//! depends only on the committed layers, which containerd never changes, so it is built once
//! per layer chain in the runtime's rootfs cache and shared by every task of the image.
//!
//! The container writes to its VM's own overlay disk over that image, as under `container
//! run`; those writes go with the task and never reach the snapshot's `upperdir` (gVisor's
//! default rootfs overlay makes the same trade). A snapshot whose `upperdir` already holds
//! files (a task started again on a used container) keeps the virtiofs share, so nothing
//! written there before is hidden; so does any mount this module does not understand.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;
use sha2::{Digest, Sha256};

/// `disk` (the default) or `share`: how a task outside a pod gets its root filesystem. `share`
/// always mounts the snapshot on the host and serves it through virtiofs, so that the
/// container's writes land in the snapshot (what `ctr snapshot diff` or a commit of a running
/// task sees) at the price of a cold boot.
pub const ROOTFS_ENV: &str = "CONTAINER_SHIM_ROOTFS";

/// The format name of snapshot images in the rootfs cache (`sha256-<key>.<FORMAT>.ext4`); bump
/// it when what [`write_layer`] streams changes.
const FORMAT: &str = "snapshot1";

/// Why a snapshot could not become a disk image.
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
    Cache(#[from] runtime::rootfs::RootfsError),
}

/// Whether the shim's environment asks for disks (the default) rather than shares.
pub fn disks_wanted() -> bool {
    std::env::var(ROOTFS_ENV).map_or(true, |v| v != "share")
}

/// The committed layer directories of a snapshot, bottom first, when `mounts` is one overlay
/// (or bind) mount of plain directories whose writable part is still empty; `None` when the
/// snapshot must be served as it is.
pub fn layers(mounts: &[Mount]) -> Option<Vec<PathBuf>> {
    let [m] = mounts else {
        return None;
    };
    let option = |key: &str| {
        m.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let dirs: Vec<PathBuf> = match m.type_.as_str() {
        "overlay" => {
            if !option("upperdir").is_none_or(|u| is_empty_dir(Path::new(u))) {
                return None;
            }
            let mut lower: Vec<PathBuf> =
                option("lowerdir")?.split(':').map(PathBuf::from).collect();
            lower.reverse();
            lower
        }
        // One committed layer seen read-only, or an active snapshot without parents (the
        // writable directory itself: only while it is empty).
        "bind" | "rbind" => {
            let source = PathBuf::from(&m.source);
            if m.options.iter().any(|o| o == "ro") {
                vec![source]
            } else if is_empty_dir(&source) {
                Vec::new()
            } else {
                return None;
            }
        }
        _ => return None,
    };
    dirs.iter()
        .all(|d| d.is_absolute() && d.is_dir())
        .then_some(dirs)
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// The read-only ext4 image of `layers` (bottom first) in the rootfs cache of the runtime
/// state directory `root`, built now unless a task of the same layers built it before.
pub fn image(root: &Path, layers: &[PathBuf]) -> Result<PathBuf, SnapshotError> {
    let key = key(layers)?;
    let cache = runtime::rootfs::RootfsCache::open(root)?;
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
    let dir = runtime::rootfs::RootfsCache::dir(root);
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
        min_size: Some(runtime::image::ROOTFS_MIN_SIZE),
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

/// Streams the overlayfs layer directory `dir` to `out` as an OCI layer tar.
fn write_layer(dir: &Path, out: File) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 16, out));
    let mut walk = Walk {
        tar: &mut tar,
        links: HashMap::new(),
    };
    walk.entry(dir, Path::new("."), &std::fs::symlink_metadata(dir)?)?;
    tar.into_inner()?.flush()
}

struct Walk<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    /// Files with several links seen so far: (device, inode) → the path they were stored at.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walk<'_, W> {
    /// Writes `path` (at `rel` in the layer) and, for a directory, everything under it.
    fn entry(&mut self, path: &Path, rel: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid().into());
        h.set_gid(meta.gid().into());
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(0);
        if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs's whiteout: the name is deleted from the layers below.
            let name = rel.file_name().unwrap_or_default();
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(name);
            h.set_entry_type(tar::EntryType::Regular);
            return self
                .tar
                .append_data(&mut h, rel.with_file_name(wh), std::io::empty());
        }
        let (xattrs, opaque) = attributes(path)?;
        self.pax(&xattrs)?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.tar.append_data(&mut h, rel, std::io::empty())?;
            if opaque {
                let mut wh = tar::Header::new_gnu();
                wh.set_entry_type(tar::EntryType::Regular);
                wh.set_mode(0o644);
                wh.set_uid(0);
                wh.set_gid(0);
                wh.set_mtime(0);
                wh.set_size(0);
                self.tar
                    .append_data(&mut wh, rel.join(".wh..wh..opq"), std::io::empty())?;
            }
            let mut children: Vec<_> = std::fs::read_dir(path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            children.sort();
            for name in children {
                let child = path.join(&name);
                let meta = std::fs::symlink_metadata(&child)?;
                self.entry(&child, &rel.join(&name), &meta)?;
            }
            return Ok(());
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let id = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&id) {
                    h.set_entry_type(tar::EntryType::Link);
                    let first = first.clone();
                    return self.tar.append_link(&mut h, rel, first);
                }
                self.links.insert(id, rel.to_path_buf());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            // A file that changed size under us would corrupt the stream: take exactly len.
            let file = File::open(path)?.take(meta.len());
            return self.tar.append_data(&mut h, rel, file);
        }
        if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(path)?;
            return self.tar.append_link(&mut h, rel, target);
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // A socket: nothing a layer can carry (docker's tars leave them out too).
            return Ok(());
        };
        h.set_entry_type(kind);
        let rdev = meta.rdev();
        h.set_device_major(nix::sys::stat::major(rdev) as u32)?;
        h.set_device_minor(nix::sys::stat::minor(rdev) as u32)?;
        self.tar.append_data(&mut h, rel, std::io::empty())
    }

    /// A PAX header carrying `xattrs` for the entry that follows.
    fn pax(&mut self, xattrs: &Xattrs) -> std::io::Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for (name, value) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name.as_encoded_bytes());
            pax_record(&mut body, &key, value);
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("././@PaxHeader")?;
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.tar.append(&h, body.as_slice())
    }
}

/// Extended attributes by name.
type Xattrs = Vec<(std::ffi::OsString, Vec<u8>)>;

/// One PAX record, `<length> <key>=<value>\n`, whose length counts its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The extended attributes of `path` an image keeps (overlayfs's own are its bookkeeping,
/// not the file's), and whether overlayfs marks it opaque.
fn attributes(path: &Path) -> std::io::Result<(Xattrs, bool)> {
    let mut kept = Vec::new();
    let mut opaque = false;
    let names = match xattr::list(path) {
        Ok(names) => names,
        // A filesystem without attributes has none to keep.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok((kept, false)),
        Err(e) => return Err(e),
    };
    for name in names {
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b"trusted.overlay.") || bytes.starts_with(b"user.overlay.") {
            if bytes.ends_with(b".opaque") {
                opaque |= xattr::get(path, &name)?.is_some_and(|v| v == b"y");
            }
            continue;
        }
        if let Some(value) = xattr::get(path, &name)? {
            kept.push((name, value));
        }
    }
    Ok((kept, opaque))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[String]) -> Mount {
        Mount {
            type_: kind.into(),
            source: source.into(),
            options: options.to_vec(),
            ..Default::default()
        }
    }

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

    #[test]
    fn pax_record_counts_its_own_length() {
        let mut out = Vec::new();
        pax_record(&mut out, b"SCHILY.xattr.user.a", b"1");
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), out.len());
        // Lengths that cross a power of ten.
        for n in 0..200 {
            let mut out = Vec::new();
            pax_record(&mut out, b"k", &vec![b'v'; n]);
            let text = String::from_utf8(out.clone()).unwrap();
            assert_eq!(
                text.split_once(' ').unwrap().0.parse::<usize>().unwrap(),
                out.len()
            );
        }
    }

    #[test]
    fn overlay_layers_come_bottom_first_and_need_an_empty_upper() {
        let t = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = t.path().join(n);
            std::fs::create_dir_all(&p).unwrap();
            p.display().to_string()
        };
        let (l1, l2, up, work) = (d("1"), d("2"), d("up"), d("work"));
        let opts = vec![
            format!("lowerdir={l2}:{l1}"),
            format!("upperdir={up}"),
            format!("workdir={work}"),
        ];
        let got = layers(&[mount("overlay", "overlay", &opts)]).unwrap();
        assert_eq!(got, [PathBuf::from(&l1), PathBuf::from(&l2)]);
        std::fs::write(Path::new(&up).join("written"), "x").unwrap();
        assert_eq!(layers(&[mount("overlay", "overlay", &opts)]), None);
        // A bind: read-only is a layer; writable only while empty.
        assert_eq!(
            layers(&[mount("bind", &l1, &["ro".into(), "rbind".into()])]).unwrap(),
            [PathBuf::from(&l1)]
        );
        assert_eq!(layers(&[mount("bind", &up, &["rbind".into()])]), None);
        assert_eq!(
            layers(&[mount("bind", &l1, &["rbind".into()])])
                .unwrap()
                .len(),
            0
        );
        // Anything else is served as it is.
        assert_eq!(layers(&[mount("ext4", "/dev/mapper/x", &[])]), None);
        assert_eq!(layers(&[]), None);
    }
}
