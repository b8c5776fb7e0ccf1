//! Unpacking an OCI layer tar into a new directory that overlayfs can stack as a lower
//! layer; the rules are in [`super`].
//!
//! The layer is built under a hidden sibling (`.NAME.layer-PID-N`) and renamed to its name
//! only after the stream ended with tar's end marker, so a failed or cut stream leaves
//! nothing behind. Entry names are checked with [`entry_components`] (no `..`, nothing
//! absolute) and every directory on an entry's path must be a real directory of the layer:
//! nothing is ever written through a symlink, whether the stream made it or not. Later
//! entries replace earlier ones of the same name, as tar readers do. Whiteouts are made once
//! every entry is in (a layer that has both `.wh.DIR` and `DIR/` means "DIR is new here",
//! which overlayfs expresses as an opaque DIR); directories get their metadata last, deepest
//! first, so writing into them does not change their mtimes.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{
    entry_components, layer_xattr_allowed, marker, shown, xattr, LayerError, Marker, OPAQUE_XATTR,
    PAX_XATTR_PREFIX,
};
use crate::copy::unpack::Counted;

/// What an unpack left out without failing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Xattrs the layer directory's filesystem does not support (`EOPNOTSUPP`; `user.*` on
    /// tmpfs before Linux 6.6), as `NAME on PATH`. They are left out as overlayfs' own
    /// copy-up leaves them out; every other failure to set one fails the unpack.
    pub dropped_xattrs: Vec<String>,
}

/// Owner, mode, mtime and xattrs of an entry.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Unpacks the layer tar `input` into the new directory `dest` (its parent must exist, it
/// must not). On error nothing is left at `dest` or beside it.
pub fn unpack<R: Read>(input: R, dest: &Path) -> Result<UnpackReport, LayerError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(LayerError::Exists(dest.to_path_buf()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest.file_name().unwrap_or(OsStr::new("layer"));
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".layer-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = parent.join(tmp_name);
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LayerError::Write { path, source }
    };
    fs::create_dir(&tmp).map_err(write(dest))?;
    let mut u = Unpacker {
        root: tmp.clone(),
        root_meta: None,
        dirs: BTreeMap::new(),
        whiteouts: Vec::new(),
        report: UnpackReport::default(),
    };
    let mut counted = Counted::new(input);
    let result = (|| {
        // A fixed mode: the umask must not decide what the merged root looks like.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(write(dest))?;
        let end = u.entries(&mut tar::Archive::new(&mut counted))?;
        if !counted.ended_well(end) {
            return Err(LayerError::Truncated);
        }
        u.finish()?;
        fs::rename(&tmp, dest).map_err(write(dest))
    })();
    if let Err(mut e) = result {
        let _ = fs::remove_dir_all(&tmp);
        // Name the path the caller asked for, not its temporary stand-in.
        if let LayerError::Write { path, .. } | LayerError::Read { path, .. } = &mut e {
            if let Ok(rest) = path.strip_prefix(&tmp) {
                *path = dest.join(rest);
            }
        }
        return Err(e);
    }
    // Read what follows the end marker so the sender is not cut off mid-write.
    let _ = io::copy(&mut counted.inner, &mut io::sink());
    Ok(u.report)
}

struct Unpacker {
    /// The (temporary) layer directory.
    root: PathBuf,
    /// Metadata of the layer's root entry (`./`), if the tar has one.
    root_meta: Option<Meta>,
    /// Directories of the layer and their metadata, by path below the root.
    dirs: BTreeMap<PathBuf, Meta>,
    /// Whiteouts: the path below the root they hide, and their owner and mtime.
    whiteouts: Vec<(PathBuf, Meta)>,
    report: UnpackReport,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_path_buf();
    move |source| LayerError::Write { path, source }
}

fn rel_path(comps: &[&[u8]]) -> PathBuf {
    comps.iter().map(|c| OsStr::from_bytes(c)).collect()
}

impl Unpacker {
    /// Writes every entry; returns where the last entry's data (padded to a block) ends.
    fn entries<R: Read>(&mut self, ar: &mut tar::Archive<R>) -> Result<u64, LayerError> {
        let mut end = 0u64;
        for entry in ar.entries().map_err(LayerError::Stream)? {
            let mut entry = entry.map_err(LayerError::Stream)?;
            let size = entry.header().entry_size().map_err(LayerError::Stream)?;
            end = entry.raw_file_position() + size.div_ceil(512) * 512;
            self.entry(&mut entry)?;
        }
        Ok(end)
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), LayerError> {
        let kind = e.header().entry_type();
        let raw = e.path_bytes().into_owned();
        let comps = entry_components(&raw)?;
        let meta = meta_of(e)?;
        let Some((last, parent)) = comps.split_last() else {
            if kind != tar::EntryType::Directory {
                return Err(LayerError::RootNotDir(shown(&raw)));
            }
            self.root_meta = Some(meta);
            return Ok(());
        };
        match marker(last) {
            Marker::AufsMeta => return Ok(()),
            Marker::Opaque => {
                let dir = self.dir_path(&raw, parent)?;
                return xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(write_err(&dir));
            }
            Marker::Whiteout(hidden) => {
                if hidden.is_empty() {
                    return Err(LayerError::Escape(shown(&raw)));
                }
                self.dir_path(&raw, parent)?;
                let mut rel = rel_path(parent);
                rel.push(OsStr::from_bytes(hidden));
                self.whiteouts.push((rel, meta));
                return Ok(());
            }
            Marker::None => {}
        }
        let is_dir = kind == tar::EntryType::Directory;
        if !is_dir
            && !matches!(
                kind,
                tar::EntryType::Regular
                    | tar::EntryType::Continuous
                    | tar::EntryType::GNUSparse
                    | tar::EntryType::Symlink
                    | tar::EntryType::Link
                    | tar::EntryType::Char
                    | tar::EntryType::Block
                    | tar::EntryType::Fifo
            )
        {
            // PAX and GNU metadata entries are consumed by the tar crate; a global PAX
            // header, a volume label and the like have nothing to create.
            return Ok(());
        }
        let path = self.dir_path(&raw, parent)?.join(OsStr::from_bytes(last));
        let rel = rel_path(&comps);
        let existing = fs::symlink_metadata(&path).ok();
        if is_dir {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    fs::remove_file(&path).map_err(write_err(&path))?;
                    mkdir(&path, 0o700)?;
                }
                None => mkdir(&path, 0o700)?,
            }
            self.dirs.insert(rel, meta);
            return Ok(());
        }
        match existing {
            Some(m) if m.is_dir() => {
                // A later entry replaces an earlier one, a directory's tree included.
                fs::remove_dir_all(&path).map_err(write_err(&path))?;
                let gone: Vec<_> = self
                    .dirs
                    .range(rel.clone()..)
                    .map(|(k, _)| k.clone())
                    .take_while(|k| k.starts_with(&rel))
                    .collect();
                for k in gone {
                    self.dirs.remove(&k);
                }
            }
            Some(_) => fs::remove_file(&path).map_err(write_err(&path))?,
            None => {}
        }
        let c = || {
            std::ffi::CString::new(path.as_os_str().as_bytes())
                .map_err(|_| LayerError::Escape(shown(&raw)))
        };
        match kind {
            tar::EntryType::Link => {
                let target_raw = e.link_name_bytes().unwrap_or_default().into_owned();
                let src = self.link_source(&raw, &target_raw)?;
                // linkat(2) without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                return fs::hard_link(&src, &path).map_err(write_err(&path));
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(write_err(&path))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let h = e.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let ty = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                mknod(&c()?, ty | 0o600, libc::makedev(major, minor)).map_err(write_err(&path))?;
            }
            _ => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(write_err(&path))?;
                io::copy(e, &mut f).map_err(|source| match source.raw_os_error() {
                    // Reading the stream and writing the file fail alike in io::copy; the
                    // OS error code tells a full disk apart.
                    Some(_) => LayerError::Write {
                        path: path.clone(),
                        source,
                    },
                    None => LayerError::Stream(source),
                })?;
            }
        }
        self.apply(&path, &meta, kind == tar::EntryType::Symlink)
    }

    /// The directory `parent` (components below the root) of entry `raw`, made when missing
    /// (mode 0755, as docker's unpacker makes missing parents); a component that is a symlink
    /// or not a directory is refused.
    fn dir_path(&self, raw: &[u8], parent: &[&[u8]]) -> Result<PathBuf, LayerError> {
        let mut p = self.root.clone();
        for c in parent {
            p.push(OsStr::from_bytes(c));
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(LayerError::Symlink {
                        entry: shown(raw),
                        link: self.shown_path(&p),
                    })
                }
                Ok(m) if !m.is_dir() => {
                    return Err(LayerError::NotADirectory {
                        entry: shown(raw),
                        path: self.shown_path(&p),
                    })
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir(&p, 0o755)?,
                Err(source) => return Err(LayerError::Write { path: p, source }),
            }
        }
        Ok(p)
    }

    /// The existing non-directory a hard link entry `raw` points to, inside the layer.
    fn link_source(&self, raw: &[u8], target_raw: &[u8]) -> Result<PathBuf, LayerError> {
        let bad = || LayerError::LinkTarget {
            entry: shown(raw),
            target: shown(target_raw),
        };
        let comps = entry_components(target_raw)?;
        let Some((last, parent)) = comps.split_last() else {
            return Err(bad());
        };
        if marker(last) != Marker::None {
            return Err(bad());
        }
        let mut p = self.root.clone();
        for c in parent {
            p.push(OsStr::from_bytes(c));
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(LayerError::Symlink {
                        entry: shown(raw),
                        link: self.shown_path(&p),
                    })
                }
                Ok(m) if m.is_dir() => {}
                _ => return Err(bad()),
            }
        }
        p.push(OsStr::from_bytes(last));
        match fs::symlink_metadata(&p) {
            Ok(m) if !m.is_dir() => Ok(p),
            _ => Err(bad()),
        }
    }

    /// A path under the temporary root as the caller knows it: relative to the layer.
    fn shown_path(&self, p: &Path) -> PathBuf {
        p.strip_prefix(&self.root).unwrap_or(p).to_path_buf()
    }

    /// Whiteouts, then directory metadata (deepest first), then the root's.
    fn finish(&mut self) -> Result<(), LayerError> {
        for (rel, meta) in std::mem::take(&mut self.whiteouts) {
            // The hiding entry's parent may have been replaced since (by a later entry):
            // then there is nothing left to hide in it.
            let Some(dir) = self.real_dir(rel.parent().unwrap_or(Path::new(""))) else {
                continue;
            };
            let Some(name) = rel.file_name() else {
                continue;
            };
            let path = dir.join(name);
            match fs::symlink_metadata(&path) {
                // The layer has the name itself: new here, whatever the layers below have.
                Ok(m) if m.is_dir() => {
                    xattr::set(&path, OPAQUE_XATTR, b"y").map_err(write_err(&path))?;
                }
                Ok(_) => {}
                Err(_) => {
                    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                        .map_err(|_| LayerError::Escape(path.display().to_string()))?;
                    // overlayfs' own whiteouts have mode 0 (fs/overlayfs/dir.c).
                    mknod(&c, libc::S_IFCHR, 0).map_err(write_err(&path))?;
                    let wh = Meta {
                        mode: 0,
                        xattrs: Vec::new(),
                        ..meta
                    };
                    self.apply(&path, &wh, false)?;
                }
            }
        }
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, meta) in dirs {
            if self.real_dir(&rel).is_some() {
                self.apply(&self.root.join(&rel), &meta, false)?;
            }
        }
        if let Some(meta) = self.root_meta.take() {
            let root = self.root.clone();
            self.apply(&root, &meta, false)?;
        }
        Ok(())
    }

    /// `rel` under the root if every component of it is a directory (no symlink).
    fn real_dir(&self, rel: &Path) -> Option<PathBuf> {
        let mut p = self.root.clone();
        for c in rel.components() {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                _ => return None,
            }
        }
        Some(p)
    }

    /// Owner, mode, xattrs and mtime, in that order: chown clears set-id bits and file
    /// capabilities, and each of the others would change the mtime.
    fn apply(&mut self, p: &Path, m: &Meta, symlink: bool) -> Result<(), LayerError> {
        std::os::unix::fs::lchown(p, Some(m.uid), Some(m.gid)).map_err(write_err(p))?;
        if !symlink {
            fs::set_permissions(p, fs::Permissions::from_mode(m.mode)).map_err(write_err(p))?;
        }
        for (name, value) in &m.xattrs {
            if !layer_xattr_allowed(name) {
                continue;
            }
            match xattr::set(p, name, value) {
                Ok(()) => {}
                Err(e) if xattr::unsupported(&e) => self.report.dropped_xattrs.push(format!(
                    "{} on {}",
                    String::from_utf8_lossy(name),
                    self.shown_path(p).display()
                )),
                Err(e) => return Err(write_err(p)(e)),
            }
        }
        crate::copy::set_mtime(p, m.mtime).map_err(write_err(p))
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<(), LayerError> {
    fs::create_dir(p).map_err(write_err(p))?;
    // Exactly `mode`, whatever the umask.
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(write_err(p))
}

fn mknod(c: &std::ffi::CStr, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: a valid C string; mknod takes plain integers otherwise.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The entry's owner, mode, mtime and xattrs, PAX records taking precedence over the
/// header's fields (`uid`, `gid`, `mtime` may only fit there).
fn meta_of<R: Read>(e: &mut tar::Entry<R>) -> Result<Meta, LayerError> {
    let h = e.header();
    let mut m = Meta {
        mode: h.mode().map_err(LayerError::Stream)? & 0o7777,
        // Some writers leave these fields empty; GNU tar reads that as 0.
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(pax) = e.pax_extensions().map_err(LayerError::Stream)? {
        for r in pax {
            let r = r.map_err(LayerError::Stream)?;
            let (k, v) = (r.key_bytes(), r.value_bytes());
            let number = || {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse::<i64>().ok())
            };
            match k {
                b"uid" => {
                    m.uid = number()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(m.uid)
                }
                b"gid" => {
                    m.gid = number()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(m.gid)
                }
                b"mtime" => m.mtime = number().unwrap_or(m.mtime),
                _ => {
                    if let Some(name) = k.strip_prefix(PAX_XATTR_PREFIX) {
                        m.xattrs.push((name.to_vec(), v.to_vec()));
                    }
                }
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::pack;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A tar with raw entry names (the tar crate's builder refuses `..` and absolute names):
    /// (name, type, data or link target).
    fn raw_tar(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            // SAFETY: geteuid/getegid cannot fail.
            h.set_uid(u64::from(unsafe { libc::geteuid() }));
            // SAFETY: as above.
            h.set_gid(u64::from(unsafe { libc::getegid() }));
            h.set_mtime(1_000_000_000);
            let is_link = matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link);
            h.set_size(if is_link { 0 } else { data.len() as u64 });
            if is_link {
                h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
            }
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, if is_link { &[][..] } else { *data }).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn is_whiteout(p: &Path) -> bool {
        let m = fs::symlink_metadata(p).unwrap();
        m.file_type().is_char_device() && m.rdev() == 0
    }

    #[test]
    fn whiteouts_become_devices_and_the_tree_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let tar = raw_tar(&[
            (b"etc/", tar::EntryType::Directory, b""),
            (b"etc/.wh.passwd", tar::EntryType::Regular, b""),
            (
                b"etc/hosts",
                tar::EntryType::Regular,
                b"127.0.0.1 localhost\n",
            ),
            (b"etc/hosts.link", tar::EntryType::Link, b"etc/hosts"),
            (b"etc/sym", tar::EntryType::Symlink, b"../nowhere"),
            (b"./usr/.wh..wh.plnk", tar::EntryType::Regular, b""),
            (b"var/lib/.wh.dpkg", tar::EntryType::Regular, b""),
        ]);
        let dest = d.path().join("layer");
        let report = unpack(tar.as_slice(), &dest).unwrap();
        assert!(report.dropped_xattrs.is_empty());
        assert!(is_whiteout(&dest.join("etc/passwd")));
        // A whiteout's directory that the tar does not list is made, 0755.
        assert!(is_whiteout(&dest.join("var/lib/dpkg")));
        let m = fs::metadata(dest.join("var/lib")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read(dest.join("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        let (a, b) = (
            fs::metadata(dest.join("etc/hosts")).unwrap(),
            fs::metadata(dest.join("etc/hosts.link")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert_eq!(
            fs::read_link(dest.join("etc/sym")).unwrap(),
            Path::new("../nowhere")
        );
        assert!(
            !dest.join("usr/.wh..wh.plnk").exists(),
            "aufs metadata skipped"
        );
        let m = fs::metadata(dest.join("etc")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o755, 1_000_000_000));
        // Nothing temporary beside it.
        let siblings: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(siblings.len(), 1);

        // Packing it again gives the layer back: whiteouts as .wh. files, the link as a link.
        let again = pack(Vec::new(), &dest).unwrap();
        let names: Vec<_> = pack::tests::listing(&again)
            .into_iter()
            .map(|e| (e.0, e.1))
            .collect();
        use tar::EntryType::*;
        assert_eq!(
            names,
            [
                // In the order of the names on disk (docker's too): passwd after hosts.
                ("etc/".to_string(), Directory),
                ("etc/hosts".into(), Regular),
                ("etc/hosts.link".into(), Link),
                ("etc/.wh.passwd".into(), Regular),
                ("etc/sym".into(), Symlink),
                ("var/".into(), Directory),
                ("var/lib/".into(), Directory),
                ("var/lib/.wh.dpkg".into(), Regular),
            ]
        );
        // And unpacking that once more packs to the same bytes.
        let dest2 = d.path().join("layer2");
        unpack(again.as_slice(), &dest2).unwrap();
        assert_eq!(pack(Vec::new(), &dest2).unwrap(), again);
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let d = tempfile::tempdir().unwrap();
        let tar = raw_tar(&[
            (b"x/", tar::EntryType::Directory, b""),
            (b"x/old", tar::EntryType::Regular, b"old"),
            (b"x", tar::EntryType::Regular, b"now a file"),
            (b"f", tar::EntryType::Regular, b"first"),
            (b"f", tar::EntryType::Regular, b"second"),
            (b".wh.f", tar::EntryType::Regular, b""),
        ]);
        let dest = d.path().join("l");
        unpack(tar.as_slice(), &dest).unwrap();
        assert_eq!(fs::read(dest.join("x")).unwrap(), b"now a file");
        // The layer has f itself: its whiteout only applies to the layers below.
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"second");
    }

    #[test]
    fn escapes_are_refused_and_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            raw_tar(&[(b"../evil", tar::EntryType::Regular, b"x")]),
            raw_tar(&[(b"/abs/evil", tar::EntryType::Regular, b"x")]),
            raw_tar(&[(b"a/../../evil", tar::EntryType::Regular, b"x")]),
            raw_tar(&[(b"../.wh.evil", tar::EntryType::Regular, b"")]),
            // Through a symlink the stream made.
            raw_tar(&[
                (
                    b"link",
                    tar::EntryType::Symlink,
                    outside.as_os_str().as_bytes(),
                ),
                (b"link/evil", tar::EntryType::Regular, b"x"),
            ]),
            raw_tar(&[
                (b"link", tar::EntryType::Symlink, b"../outside"),
                (b"link/.wh.evil", tar::EntryType::Regular, b""),
            ]),
            // Hard links to outside, to nothing, to a directory.
            raw_tar(&[(b"h", tar::EntryType::Link, b"../outside/x")]),
            raw_tar(&[(b"h", tar::EntryType::Link, b"missing")]),
            raw_tar(&[
                (b"dir/", tar::EntryType::Directory, b""),
                (b"h", tar::EntryType::Link, b"dir"),
            ]),
        ];
        for (i, tar) in cases.iter().enumerate() {
            let dest = d.path().join("l");
            let e = unpack(tar.as_slice(), &dest).unwrap_err();
            assert!(
                matches!(
                    e,
                    LayerError::Escape(_)
                        | LayerError::Symlink { .. }
                        | LayerError::LinkTarget { .. }
                ),
                "case {i}: {e}"
            );
            assert!(!dest.exists(), "case {i}");
            assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "case {i}");
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "case {i}");
        }
        let e = unpack(cases[4].as_slice(), &d.path().join("l")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer entry \"link/evil\" would be written through the symlink link"
        );
    }

    #[test]
    fn a_cut_stream_or_an_existing_directory_commits_nothing() {
        let d = tempfile::tempdir().unwrap();
        let tar = raw_tar(&[
            (b"a", tar::EntryType::Regular, b"a"),
            (b"b", tar::EntryType::Regular, b"b"),
        ]);
        let dest = d.path().join("l");
        // Cut at an entry boundary: after a's header and data block.
        let e = unpack(&tar[..1024], &dest).unwrap_err();
        assert!(matches!(e, LayerError::Truncated), "{e}");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        unpack(tar.as_slice(), &dest).unwrap();
        let e = unpack(tar.as_slice(), &dest).unwrap_err();
        assert!(matches!(e, LayerError::Exists(_)), "{e}");
        let e = unpack(tar.as_slice(), &d.path().join("no/such/parent")).unwrap_err();
        assert!(matches!(e, LayerError::Write { .. }), "{e}");
    }

    #[test]
    #[cfg_attr(
        not(container_testenv),
        ignore = "needs root (trusted.* xattrs, chown): run scripts/test.sh"
    )]
    fn opaque_directories_owners_and_xattrs_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("upper");
        fs::create_dir_all(up.join("opq/keep")).unwrap();
        fs::write(up.join("opq/keep/f"), b"f").unwrap();
        xattr::set(&up.join("opq"), OPAQUE_XATTR, b"y").unwrap();
        // overlayfs bookkeeping that must not travel.
        xattr::set(&up.join("opq/keep"), b"trusted.overlay.impure", b"y").unwrap();
        xattr::set(&up.join("opq/keep/f"), b"trusted.overlay.origin", b"\0\x01").unwrap();
        // A file capability (VFS_CAP_REVISION_2, cap_net_raw permitted + effective).
        let cap = [
            0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        fs::write(up.join("ping"), b"#!").unwrap();
        std::os::unix::fs::lchown(up.join("ping"), Some(1000), Some(1001)).unwrap();
        fs::set_permissions(up.join("ping"), fs::Permissions::from_mode(0o4711)).unwrap();
        xattr::set(&up.join("ping"), b"security.capability", &cap).unwrap();
        xattr::set(&up.join("ping"), b"trusted.note", b"kept").unwrap();

        let tar = pack(Vec::new(), &up).unwrap();
        let l = pack::tests::listing(&tar);
        let names: Vec<_> = l.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "opq/",
                "opq/.wh..wh..opq",
                "opq/keep/",
                "opq/keep/f",
                "ping"
            ]
        );
        let mut ar = tar::Archive::new(tar.as_slice());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let keys: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .map(|p| {
                    p.map(|r| String::from_utf8_lossy(r.unwrap().key_bytes()).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            if name == "ping" {
                assert_eq!(
                    keys,
                    [
                        "SCHILY.xattr.security.capability",
                        "SCHILY.xattr.trusted.note"
                    ]
                );
                assert_eq!(
                    (e.header().uid().unwrap(), e.header().gid().unwrap()),
                    (1000, 1001)
                );
                assert_eq!(e.header().mode().unwrap(), 0o4711);
            } else {
                assert!(keys.is_empty(), "{name}: {keys:?}");
            }
        }

        let dest = d.path().join("lower");
        unpack(tar.as_slice(), &dest).unwrap();
        assert_eq!(
            xattr::get(&dest.join("opq"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!dest.join("opq/.wh..wh..opq").exists());
        assert_eq!(
            xattr::get(&dest.join("opq/keep"), b"trusted.overlay.impure").unwrap(),
            None
        );
        let m = fs::metadata(dest.join("ping")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o4711));
        assert_eq!(
            xattr::get(&dest.join("ping"), b"security.capability").unwrap(),
            Some(cap.to_vec())
        );
        assert_eq!(
            pack(Vec::new(), &dest).unwrap(),
            tar,
            "the round trip is exact"
        );

        // `.wh.DIR` with `DIR/` in the same layer: DIR is new here, i.e. opaque. overlayfs'
        // own xattrs in a layer are never applied.
        let mut b = tar::Builder::new(Vec::new());
        let body = crate::layer::pax_record(b"SCHILY.xattr.trusted.overlay.redirect", b"/etc");
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(body.len() as u64);
        b.append_data(&mut x, "PaxHeaders.0/d", body.as_slice())
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "d/", io::empty()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o600);
        b.append_data(&mut h, ".wh.d", io::empty()).unwrap();
        let tar = b.into_inner().unwrap();
        let dest = d.path().join("lower2");
        unpack(tar.as_slice(), &dest).unwrap();
        assert_eq!(
            xattr::get(&dest.join("d"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert_eq!(
            xattr::get(&dest.join("d"), b"trusted.overlay.redirect").unwrap(),
            None
        );
    }
}
