//! Unpacking a tar stream under a [`Target`] without ever writing outside it.
//!
//! Every entry name is split into plain components (`..` and absolute names are refused),
//! its first component mapped by the [`RootRule`], and the result written below the target
//! directory. Each top-level name that does not exist yet is built under a hidden temporary
//! name (`.NAME.cp-PID-N`) and renamed into place after the last entry, so a failed copy
//! leaves nothing half-written; an existing directory is merged into, each file in it
//! replaced by an atomic rename. Components that exist as symlinks are never written
//! through. Directory modes and mtimes are applied last, deepest first, so writing their
//! contents does not disturb them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{join, CopyError, RootRule, Target};

/// Ownership of what is unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// `Some((uid, gid))`: own everything by this user; `None`: keep the archive's ids.
    pub owner: Option<(u32, u32)>,
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// A top-level name of the destination and where its entries are written.
struct Top {
    /// Where the entries go now: the final path (merge) or a temporary one.
    base: PathBuf,
    /// The final path, when `base` is temporary.
    rename_to: Option<PathBuf>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn temp_name(dir: &Path, name: &OsStr) -> PathBuf {
    let mut short = name.as_bytes().to_vec();
    short.truncate(180);
    let mut n = OsString::from(".");
    n.push(OsStr::from_bytes(&short));
    n.push(format!(
        ".cp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    join(dir, &n)
}

/// Splits an entry name into plain components; `.` and empty ones are dropped.
fn components(raw: &[u8]) -> Result<Vec<OsString>, CopyError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.starts_with(b"/") {
        return Err(CopyError::Escape(shown()));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(CopyError::Escape(shown())),
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

struct Unpacker<'a> {
    target: &'a Target,
    opts: &'a UnpackOptions,
    root_token: Option<OsString>,
    tops: HashMap<OsString, Top>,
    dirs: Vec<(PathBuf, Meta)>,
}

/// Unpacks the tar stream `input` under `target`. On error, top-level entries that were
/// being created are removed again.
pub fn unpack<R: Read>(input: R, target: &Target, opts: &UnpackOptions) -> Result<(), CopyError> {
    let mut u = Unpacker {
        target,
        opts,
        root_token: None,
        tops: HashMap::new(),
        dirs: Vec::new(),
    };
    let mut counted = Counted::new(input);
    let result = u
        .entries(&mut tar::Archive::new(&mut counted))
        .and_then(|end| {
            if !counted.ended_well(end) {
                return Err(CopyError::Truncated);
            }
            u.commit()
        });
    if let Err(mut e) = result {
        for top in u.tops.values() {
            let Some(to) = &top.rename_to else { continue };
            let _ = fs::remove_dir_all(&top.base).or_else(|_| fs::remove_file(&top.base));
            // Name the path the user asked for, not its temporary stand-in.
            if let CopyError::Write { path, .. } | CopyError::Symlink(path) = &mut e {
                if let Ok(rest) = path.strip_prefix(&top.base) {
                    *path = to.join(rest);
                }
            }
        }
        return Err(e);
    }
    // Read what follows the end marker so the sender is not cut off mid-write.
    let _ = io::copy(&mut counted.inner, &mut io::sink());
    Ok(())
}

/// Counts the bytes read and keeps the last block, to tell a stream that ended with tar's
/// end marker from one that was cut at an entry boundary: the tar crate takes both as the
/// end of the archive, but only the first may be committed. The layer unpacker
/// (`crate::layer::unpack`) checks its streams the same way.
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) read: u64,
    pub(crate) last: [u8; 512],
}

impl<R: Read> Counted<R> {
    /// Wraps a stream.
    pub(crate) fn new(inner: R) -> Self {
        Counted {
            inner,
            read: 0,
            last: [1; 512],
        }
    }

    /// Whether the stream, whose last entry's data ended at byte `end`, went on with tar's
    /// end marker (zero blocks) rather than stopping at the entry boundary.
    pub(crate) fn ended_well(&self, end: u64) -> bool {
        self.read >= end + 512 && self.last.iter().all(|b| *b == 0)
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        if n >= 512 {
            self.last.copy_from_slice(&got[n - 512..]);
        } else {
            self.last.copy_within(n.., 0);
            self.last[512 - n..].copy_from_slice(got);
        }
        self.read += n as u64;
        Ok(n)
    }
}

impl Unpacker<'_> {
    /// Writes every entry; returns where the last entry's data (padded to a block) ends.
    fn entries<R: Read>(&mut self, ar: &mut tar::Archive<R>) -> Result<u64, CopyError> {
        let mut end = 0u64;
        let mut entries = ar.entries().map_err(CopyError::Stream)?;
        for entry in &mut entries {
            let mut entry = entry.map_err(CopyError::Stream)?;
            let size = entry.header().entry_size().map_err(CopyError::Stream)?;
            end = entry.raw_file_position() + size.div_ceil(512) * 512;
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = self.map(&raw)? else {
                continue;
            };
            self.entry(&mut entry, &rel)?;
        }
        Ok(end)
    }

    /// Applies the directories' metadata and renames staged entries into place.
    fn commit(&mut self) -> Result<(), CopyError> {
        // Directories last, deepest first, so their contents do not change their mtimes.
        self.dirs
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, m) in std::mem::take(&mut self.dirs) {
            self.finish(&p, &m, false)?;
        }
        for top in self.tops.values() {
            if let Some(to) = &top.rename_to {
                fs::rename(&top.base, to).map_err(|source| CopyError::Write {
                    path: to.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The entry's path below the target directory, or `None` to skip it.
    fn map(&mut self, raw: &[u8]) -> Result<Option<Vec<OsString>>, CopyError> {
        let mut segs = components(raw)?;
        if self.target.root == RootRule::Keep {
            return Ok((!segs.is_empty()).then_some(segs));
        }
        if segs.is_empty() {
            return Ok(None);
        }
        let first = segs.remove(0);
        let token = self.root_token.get_or_insert_with(|| first.clone());
        if *token != first {
            return Err(CopyError::Foreign(
                String::from_utf8_lossy(raw).into_owned(),
                token.to_string_lossy().into_owned(),
            ));
        }
        match &self.target.root {
            RootRule::Rename(n) => segs.insert(0, OsString::from(n)),
            _ if segs.is_empty() => return Ok(None),
            _ => {}
        }
        Ok(Some(segs))
    }

    /// Where top-level name `name` is written, deciding it on first sight.
    fn top(&mut self, name: &OsStr, is_dir: bool) -> Result<PathBuf, CopyError> {
        if let Some(t) = self.tops.get(name) {
            return Ok(t.base.clone());
        }
        let dest = join(&self.target.dir, name);
        let top = match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() && !is_dir => return Err(CopyError::DirWithFile(dest)),
            Ok(m) if !m.is_dir() && is_dir => return Err(CopyError::FileWithDir(dest)),
            // An existing directory is merged into.
            Ok(m) if m.is_dir() => Top {
                base: dest,
                rename_to: None,
            },
            // A new name, or a file that is replaced in one rename at the end.
            _ => Top {
                base: temp_name(&self.target.dir, name),
                rename_to: Some(dest),
            },
        };
        let base = top.base.clone();
        self.tops.insert(name.to_os_string(), top);
        Ok(base)
    }

    /// Resolves `rel` to a path, creating missing parent directories and refusing to go
    /// through symlinks or non-directories.
    fn path_of(&mut self, rel: &[OsString], is_dir: bool) -> Result<PathBuf, CopyError> {
        let mut p = self.top(&rel[0], is_dir || rel.len() > 1)?;
        for c in &rel[1..] {
            // Every component before `c` must be a real directory.
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => return Err(CopyError::Symlink(p)),
                Ok(m) if !m.is_dir() => return Err(CopyError::FileWithDir(p)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&p).map_err(|source| CopyError::Write {
                        path: p.clone(),
                        source,
                    })?;
                }
                Err(source) => return Err(CopyError::Write { path: p, source }),
            }
            p.push(c);
        }
        Ok(p)
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>, rel: &[OsString]) -> Result<(), CopyError> {
        let h = e.header();
        let kind = h.entry_type();
        let meta = Meta {
            mode: h.mode().map_err(CopyError::Stream)? & 0o7777,
            // Some writers leave these fields empty; GNU tar reads that as 0.
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime: h.mtime().unwrap_or(0) as i64,
        };
        let is_dir = kind == tar::EntryType::Directory;
        if !is_dir
            && !matches!(
                kind,
                tar::EntryType::Regular
                    | tar::EntryType::Continuous
                    | tar::EntryType::Symlink
                    | tar::EntryType::Link
                    | tar::EntryType::Char
                    | tar::EntryType::Block
                    | tar::EntryType::Fifo
            )
        {
            // Metadata-only entries (pax, GNU extensions) are consumed by the tar crate;
            // anything else has nothing we could create.
            return Ok(());
        }
        let p = self.path_of(rel, is_dir)?;
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CopyError::Write { path, source }
        };
        let existing = fs::symlink_metadata(&p).ok();
        if is_dir {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => return Err(CopyError::FileWithDir(p)),
                None => fs::create_dir(&p).map_err(write_err(&p))?,
            }
            self.dirs.push((p, meta));
            return Ok(());
        }
        if existing.is_some_and(|m| m.is_dir()) {
            return Err(CopyError::DirWithFile(p));
        }
        let parent = p.parent().unwrap_or(Path::new("."));
        let tmp = temp_name(parent, p.file_name().unwrap_or(OsStr::new("x")));
        let made = (|| -> Result<bool, CopyError> {
            match kind {
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name_bytes()
                        .ok_or_else(|| CopyError::Escape(p.display().to_string()))?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &tmp)
                        .map_err(write_err(&p))?;
                    Ok(true)
                }
                tar::EntryType::Link => {
                    let raw = e
                        .link_name_bytes()
                        .ok_or_else(|| CopyError::Escape(p.display().to_string()))?
                        .into_owned();
                    let rel = self
                        .map(&raw)?
                        .ok_or_else(|| CopyError::Escape(String::from_utf8_lossy(&raw).into()))?;
                    let src = self.path_of(&rel, false)?;
                    fs::hard_link(&src, &tmp).map_err(write_err(&p))?;
                    Ok(false)
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
                    let c = std::ffi::CString::new(tmp.as_os_str().as_bytes())
                        .map_err(|_| CopyError::Escape(p.display().to_string()))?;
                    // SAFETY: a valid C string; mknod takes plain integers otherwise.
                    let r =
                        unsafe { libc::mknod(c.as_ptr(), ty | 0o600, libc::makedev(major, minor)) };
                    if r != 0 {
                        return Err(CopyError::Write {
                            path: p.clone(),
                            source: io::Error::last_os_error(),
                        });
                    }
                    Ok(true)
                }
                _ => {
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(write_err(&p))?;
                    io::copy(e, &mut f).map_err(|source| match source.kind() {
                        // Reading the stream and writing the file fail alike in io::copy;
                        // the OS error code tells a full or read-only disk apart.
                        _ if source.raw_os_error().is_some() => CopyError::Write {
                            path: p.clone(),
                            source,
                        },
                        _ => CopyError::Stream(source),
                    })?;
                    Ok(true)
                }
            }
        })();
        let result = made.and_then(|own_meta| {
            if own_meta {
                self.finish(&tmp, &meta, kind == tar::EntryType::Symlink)?;
            }
            fs::rename(&tmp, &p).map_err(write_err(&p))
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Applies owner, mode and mtime (in that order: chown clears set-id bits).
    fn finish(&self, p: &Path, m: &Meta, symlink: bool) -> Result<(), CopyError> {
        let err = |source| CopyError::Write {
            path: p.to_path_buf(),
            source,
        };
        let (uid, gid) = self.opts.owner.unwrap_or((m.uid, m.gid));
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(err)?;
        if !symlink {
            fs::set_permissions(p, fs::Permissions::from_mode(m.mode)).map_err(err)?;
        }
        crate::copy::set_mtime(p, m.mtime).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::pack;
    use std::os::unix::fs::MetadataExt;

    fn opts() -> UnpackOptions {
        UnpackOptions::default()
    }

    fn target(dir: &Path, root: RootRule) -> Target {
        Target {
            dir: dir.to_path_buf(),
            root,
        }
    }

    /// A tar with raw entry names (the tar crate's builder refuses `..`).
    fn raw_tar(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            // SAFETY: geteuid/getegid cannot fail.
            h.set_uid(u64::from(unsafe { libc::geteuid() }));
            // SAFETY: as above.
            h.set_gid(u64::from(unsafe { libc::getegid() }));
            h.set_mtime(0);
            h.set_size(if *kind == tar::EntryType::Symlink {
                0
            } else {
                data.len() as u64
            });
            if *kind == tar::EntryType::Symlink {
                h.set_link_name(std::str::from_utf8(data).unwrap()).unwrap();
            }
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            let body: &[u8] = if *kind == tar::EntryType::Symlink {
                &[]
            } else {
                data
            };
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn round_trip_keeps_modes_mtimes_links_and_empty_dirs() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub/empty")).unwrap();
        fs::write(src.join("sub/f"), b"content").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o701)).unwrap();
        std::os::unix::fs::symlink("/", src.join("root-link")).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::open(src.join("sub/f"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        fs::File::open(src.join("sub"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let tar = pack(Vec::new(), &src, "src", false).unwrap();

        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        // Into an existing directory: keeps its name.
        unpack(tar.as_slice(), &target(&out, RootRule::Keep), &opts()).unwrap();
        let f = out.join("src/sub/f");
        assert_eq!(fs::read(&f).unwrap(), b"content");
        let m = fs::metadata(&f).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o750);
        assert_eq!(m.mtime(), 1_000_000_000);
        let m = fs::metadata(out.join("src/sub")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o701, 1_000_000_000));
        assert!(out.join("src/sub/empty").is_dir());
        assert_eq!(
            fs::read_link(out.join("src/root-link")).unwrap(),
            Path::new("/")
        );
        // Renamed, and the contents only.
        unpack(
            tar.as_slice(),
            &target(&out, RootRule::Rename("copy".into())),
            &opts(),
        )
        .unwrap();
        assert_eq!(fs::read(out.join("copy/sub/f")).unwrap(), b"content");
        let flat = d.path().join("flat");
        fs::create_dir(&flat).unwrap();
        unpack(tar.as_slice(), &target(&flat, RootRule::Strip), &opts()).unwrap();
        assert_eq!(fs::read(flat.join("sub/f")).unwrap(), b"content");
        // Nothing temporary is left behind.
        for dir in [&out, &flat] {
            for e in fs::read_dir(dir).unwrap() {
                let name = e.unwrap().file_name();
                assert!(!name.to_string_lossy().contains(".cp-"), "{name:?} left");
            }
        }
    }

    #[test]
    fn a_file_replaces_a_file_and_owner_is_applied() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), b"new").unwrap();
        fs::write(d.path().join("old"), b"old old old").unwrap();
        let tar = pack(Vec::new(), &d.path().join("a"), "a", false).unwrap();
        // SAFETY: geteuid/getegid cannot fail.
        let me = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
        let o = UnpackOptions { owner: Some(me) };
        unpack(
            tar.as_slice(),
            &target(d.path(), RootRule::Rename("old".into())),
            &o,
        )
        .unwrap();
        assert_eq!(fs::read(d.path().join("old")).unwrap(), b"new");
        let m = fs::metadata(d.path().join("old")).unwrap();
        assert_eq!((m.uid(), m.gid()), me);
        // A directory is not replaced by a file.
        fs::create_dir(d.path().join("dir")).unwrap();
        let e = unpack(
            tar.as_slice(),
            &target(d.path(), RootRule::Rename("dir".into())),
            &o,
        );
        assert!(matches!(e, Err(CopyError::DirWithFile(_))), "{e:?}");
    }

    #[test]
    fn escaping_entries_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        for name in [&b"../evil"[..], b"/abs/evil", b"a/../../evil"] {
            let tar = raw_tar(&[(name, tar::EntryType::Regular, b"x")]);
            let e = unpack(tar.as_slice(), &target(&out, RootRule::Keep), &opts());
            assert!(matches!(e, Err(CopyError::Escape(_))), "{e:?}");
        }
        // A symlink in the stream cannot be written through.
        let tar = raw_tar(&[
            (b"a", tar::EntryType::Directory, b""),
            (b"a/link", tar::EntryType::Symlink, b"/tmp"),
            (b"a/link/evil", tar::EntryType::Regular, b"x"),
        ]);
        let e = unpack(tar.as_slice(), &target(&out, RootRule::Keep), &opts());
        // Named by its final path, not the temporary one it was staged under.
        assert!(
            matches!(&e, Err(CopyError::Symlink(p)) if *p == out.join("a/link")),
            "{e:?}"
        );
        // The failed copy left nothing: `a` was new, so it was staged and removed.
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
        assert!(!d.path().join("evil").exists());
        // Nor through a symlink that was already there.
        std::os::unix::fs::symlink(d.path(), out.join("pre")).unwrap();
        let tar = raw_tar(&[(b"pre/evil", tar::EntryType::Regular, b"x")]);
        let e = unpack(tar.as_slice(), &target(&out, RootRule::Keep), &opts());
        assert!(e.is_err());
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn a_cut_stream_is_not_committed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"a").unwrap();
        fs::write(src.join("b"), b"b").unwrap();
        let tar = pack(Vec::new(), &src, "src", false).unwrap();
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        // Cut after the entry `src/a` (dir header, file header, data block): at a boundary.
        let e = unpack(&tar[..512 * 3], &target(&out, RootRule::Keep), &opts());
        assert!(matches!(e, Err(CopyError::Truncated)), "{e:?}");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing committed");
        // Cut in the middle of a block.
        let e = unpack(
            &tar[..512 * 4 + 100],
            &target(&out, RootRule::Keep),
            &opts(),
        );
        assert!(e.is_err());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
        // The whole stream is fine.
        unpack(tar.as_slice(), &target(&out, RootRule::Keep), &opts()).unwrap();
        assert_eq!(fs::read(out.join("src/b")).unwrap(), b"b");
    }

    #[test]
    fn entries_outside_the_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let tar = raw_tar(&[
            (b"src", tar::EntryType::Directory, b""),
            (b"other/x", tar::EntryType::Regular, b"x"),
        ]);
        let e = unpack(tar.as_slice(), &target(d.path(), RootRule::Strip), &opts());
        assert!(matches!(e, Err(CopyError::Foreign(..))), "{e:?}");
    }
}
