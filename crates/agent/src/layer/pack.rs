//! Packing an overlay directory (a RUN step's upper directory) as an OCI layer tar; the
//! rules are in [`super`]. The walk never follows a symlink, reads every xattr with the
//! `l*` calls, and turns overlay's whiteouts and opaque directories into the layer format's
//! `.wh.` entries on the way.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{
    is_whiteout_device, marker, pax_record, upper_xattr, ustar_split, whiteout_name, xattr,
    LayerError, Marker, UpperXattr, OPAQUE_MARKER, PAX_XATTR_PREFIX,
};
use crate::copy::pack::Cut;

/// Largest value of ustar's 11-digit octal numbers (size, mtime): 8 GiB - 1.
const USTAR_MAX_BIG: u64 = 0o777_7777_7777;
/// Largest value of ustar's 7-digit octal numbers (uid, gid).
const USTAR_MAX_ID: u64 = 0o777_7777;

/// Writes the contents of `dir` (not `dir` itself) as an OCI layer tar to `out`; returns
/// `out` after tar's end marker. On error the end marker is never written, so a receiver
/// can tell the stream is incomplete.
pub fn pack<W: Write>(out: W, dir: &Path) -> Result<W, LayerError> {
    let meta = fs::symlink_metadata(dir).map_err(read(dir))?;
    if !meta.is_dir() {
        return Err(LayerError::NotADir(dir.to_path_buf()));
    }
    let mut p = Packer {
        b: tar::Builder::new(Cut {
            inner: out,
            cut: false,
        }),
        links: HashMap::new(),
    };
    if let Err(e) = p.root(dir, &meta) {
        // Dropping the builder would write the end marker and make the partial stream
        // look complete to the receiver.
        p.b.get_mut().cut = true;
        return Err(e);
    }
    p.b.into_inner()
        .map(|c| c.inner)
        .map_err(LayerError::Stream)
}

fn read(path: &Path) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_path_buf();
    move |source| LayerError::Read { path, source }
}

/// Names and values of xattrs, sorted by name.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// One tar entry as the layer wants it.
struct Entry {
    name: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: Option<Vec<u8>>,
    dev: (u32, u32),
    xattrs: Xattrs,
}

impl Entry {
    /// An entry of `kind` named `name` with the owner, mode and mtime of `meta`.
    fn new(name: Vec<u8>, kind: tar::EntryType, meta: &fs::Metadata) -> Entry {
        Entry {
            name,
            kind,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            // Whole seconds, as docker writes them; before 1970 is written as 1970.
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            size: 0,
            link: None,
            dev: (0, 0),
            xattrs: Vec::new(),
        }
    }
}

struct Packer<W: Write> {
    b: tar::Builder<Cut<W>>,
    /// (device, inode) of files with more than one link → the name they were first written
    /// under.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Packer<W> {
    fn root(&mut self, dir: &Path, meta: &fs::Metadata) -> Result<(), LayerError> {
        // The root has no entry of its own (docker's layers have none either), but an
        // opaque root hides everything below and says so with a marker at the top.
        let (_, opaque) = self.xattrs(dir, true)?;
        if opaque {
            let mut e = Entry::new(OPAQUE_MARKER.to_vec(), tar::EntryType::Regular, meta);
            e.mode &= 0o777;
            self.append(&e, io::empty())?;
        }
        self.dir(dir, b"")
    }

    /// Writes the entries of `dir`, whose own name in the tar is `prefix` (`""` or `a/b/`).
    fn dir(&mut self, dir: &Path, prefix: &[u8]) -> Result<(), LayerError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(read(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read(dir))?;
        // Byte order (OsString compares its bytes): the same tree gives the same tar.
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(read(&path))?;
            self.entry(&path, &meta, prefix, name.as_bytes())?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
        prefix: &[u8],
        name: &[u8],
    ) -> Result<(), LayerError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        if is_whiteout_device(meta.mode(), meta.rdev()) {
            // Owner and mtime of the device, mode 0600 as docker's whiteouts. Never a hard
            // link: overlayfs (Linux 5.8+) links every whiteout to one shared inode in its
            // work directory.
            let mut e = Entry::new(
                [prefix, &whiteout_name(name)].concat(),
                tar::EntryType::Regular,
                meta,
            );
            e.mode = 0o600;
            return self.append(&e, io::empty());
        }
        if marker(name) != Marker::None {
            return Err(LayerError::Reserved(path.to_path_buf()));
        }
        let tar_name = [prefix, name].concat();
        if ft.is_dir() {
            let (xattrs, opaque) = self.xattrs(path, true)?;
            let dir_name = [&tar_name[..], b"/"].concat();
            let mut e = Entry::new(dir_name.clone(), tar::EntryType::Directory, meta);
            e.xattrs = xattrs;
            self.append(&e, io::empty())?;
            if opaque {
                let mut m = Entry::new(
                    [&dir_name[..], OPAQUE_MARKER].concat(),
                    tar::EntryType::Regular,
                    meta,
                );
                m.mode &= 0o777;
                self.append(&m, io::empty())?;
            }
            return self.dir(path, &dir_name);
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let mut e = Entry::new(tar_name, tar::EntryType::Link, meta);
                e.link = Some(first.clone());
                return self.append(&e, io::empty());
            }
            self.links.insert(key, tar_name.clone());
        }
        let (xattrs, _) = self.xattrs(path, false)?;
        let kind = if ft.is_symlink() {
            tar::EntryType::Symlink
        } else if ft.is_file() {
            tar::EntryType::Regular
        } else if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        let mut e = Entry::new(tar_name, kind, meta);
        e.xattrs = xattrs;
        match kind {
            tar::EntryType::Symlink => {
                let target = fs::read_link(path).map_err(read(path))?;
                e.link = Some(target.as_os_str().as_bytes().to_vec());
                self.append(&e, io::empty())
            }
            tar::EntryType::Regular => {
                let f = fs::File::open(path).map_err(read(path))?;
                e.size = meta.len();
                // The size in the header must match what follows: a file that changes
                // while it is packed is cut or padded to the size it had when stat'ed.
                let data = f.take(e.size).chain(io::repeat(0)).take(e.size);
                self.append(&e, data)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let rdev = meta.rdev();
                e.dev = (libc::major(rdev), libc::minor(rdev));
                self.append(&e, io::empty())
            }
            _ => self.append(&e, io::empty()),
        }
    }

    /// The xattrs of `path` that go into the layer, and whether it is an opaque directory.
    fn xattrs(&self, path: &Path, is_dir: bool) -> Result<(Xattrs, bool), LayerError> {
        let mut keep = Vec::new();
        let mut opaque = false;
        for (name, value) in xattr::read_all(path).map_err(read(path))? {
            match upper_xattr(&name, &value, is_dir) {
                UpperXattr::Keep => keep.push((name, value)),
                UpperXattr::Drop => {}
                UpperXattr::Opaque => opaque = true,
                UpperXattr::Unrepresentable => {
                    return Err(LayerError::Unrepresentable {
                        path: path.to_path_buf(),
                        attr: String::from_utf8_lossy(&name).into_owned(),
                    })
                }
            }
        }
        Ok((keep, opaque))
    }

    /// Writes `e` (with a PAX header first when ustar cannot hold it) and its data.
    fn append(&mut self, e: &Entry, data: impl Read) -> Result<(), LayerError> {
        let mut h = tar::Header::new_ustar();
        let mut records = Vec::new();
        match ustar_split(&e.name) {
            Some((prefix, name)) => {
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                if let Some(u) = h.as_ustar_mut() {
                    u.prefix[..prefix.len()].copy_from_slice(prefix);
                }
            }
            None => {
                records.push((b"path".to_vec(), e.name.clone()));
                // Readers without PAX see the name cut at 100 bytes.
                h.as_old_mut().name.copy_from_slice(&e.name[..100]);
            }
        }
        if let Some(link) = &e.link {
            let field = &mut h.as_old_mut().linkname;
            let room = field.len();
            if link.len() <= room {
                field[..link.len()].copy_from_slice(link);
            } else {
                records.push((b"linkpath".to_vec(), link.clone()));
                field.copy_from_slice(&link[..room]);
            }
        }
        for (key, value, max) in [
            (&b"size"[..], e.size, USTAR_MAX_BIG),
            (b"uid", e.uid, USTAR_MAX_ID),
            (b"gid", e.gid, USTAR_MAX_ID),
            (b"mtime", e.mtime, USTAR_MAX_BIG),
        ] {
            // The header still gets the number (in GNU base-256, which Go and GNU tar read).
            if value > max {
                records.push((key.to_vec(), value.to_string().into_bytes()));
            }
        }
        for (name, value) in &e.xattrs {
            records.push(([PAX_XATTR_PREFIX, name].concat(), value.clone()));
        }
        if !records.is_empty() {
            records.sort();
            let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut x = tar::Header::new_ustar();
            let xname = pax_header_name(&e.name);
            x.as_old_mut().name[..xname.len()].copy_from_slice(&xname);
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(0o644);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(0);
            x.set_size(body.len() as u64);
            x.set_cksum();
            self.b
                .append(&x, body.as_slice())
                .map_err(LayerError::Stream)?;
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.size);
        h.set_device_major(e.dev.0).map_err(LayerError::Stream)?;
        h.set_device_minor(e.dev.1).map_err(LayerError::Stream)?;
        h.set_cksum();
        self.b.append(&h, data).map_err(LayerError::Stream)
    }
}

/// The name of the PAX header of entry `name`, as Go's archive/tar names it
/// (`dir/PaxHeaders.0/base`), cut to ustar's 100 bytes; readers ignore it.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut n = [dir, b"PaxHeaders.0/", base].concat();
    n.truncate(100);
    n
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// (name, type, mode, link name, size) of every entry.
    pub(crate) fn listing(tar: &[u8]) -> Vec<(String, tar::EntryType, u32, String, u64)> {
        let mut ar = tar::Archive::new(tar);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    e.link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .unwrap_or_default(),
                    h.size().unwrap(),
                )
            })
            .collect()
    }

    fn mknod(path: &Path, kind: libc::mode_t, dev: libc::dev_t) {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        let r = unsafe { libc::mknod(c.as_ptr(), kind, dev) };
        assert_eq!(
            r,
            0,
            "mknod {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }

    #[test]
    fn whiteouts_links_and_names_become_layer_entries() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        fs::create_dir_all(up.join("etc/sub")).unwrap();
        fs::write(up.join("etc/new"), b"hello").unwrap();
        fs::set_permissions(up.join("etc/new"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(up.join("etc/new"), up.join("etc/sub/again")).unwrap();
        std::os::unix::fs::symlink("../new", up.join("etc/sub/link")).unwrap();
        // Whiteouts (Linux 5.8+ lets anyone make a 0/0 device), one shared by two names as
        // overlayfs does.
        mknod(&up.join("etc/gone"), libc::S_IFCHR, 0);
        fs::hard_link(up.join("etc/gone"), up.join("gone-too")).unwrap();
        mknod(&up.join("fifo"), libc::S_IFIFO | 0o640, 0);
        let long = "d".repeat(150);
        fs::create_dir(up.join(&long)).unwrap();
        fs::write(up.join(&long).join("f".repeat(120)), b"x").unwrap();

        let tar = pack(Vec::new(), up).unwrap();
        let l = listing(&tar);
        let names: Vec<_> = l.iter().map(|e| e.0.as_str()).collect();
        let deep = format!("{long}/{}", "f".repeat(120));
        let long_dir = format!("{long}/");
        assert_eq!(
            names,
            [
                long_dir.as_str(),
                deep.as_str(),
                "etc/",
                "etc/.wh.gone",
                "etc/new",
                "etc/sub/",
                "etc/sub/again",
                "etc/sub/link",
                "fifo",
                ".wh.gone-too",
            ],
            "{l:#?}"
        );
        let by = |n: &str| l.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(by("etc/.wh.gone").1, tar::EntryType::Regular);
        assert_eq!((by("etc/.wh.gone").2, by("etc/.wh.gone").4), (0o600, 0));
        assert_eq!(by(".wh.gone-too").1, tar::EntryType::Regular);
        assert_eq!(by("etc/new").2, 0o4755);
        assert_eq!(by("etc/new").4, 5);
        assert_eq!(by("etc/sub/again").1, tar::EntryType::Link);
        assert_eq!(by("etc/sub/again").3, "etc/new");
        assert_eq!(by("etc/sub/link").1, tar::EntryType::Symlink);
        assert_eq!(by("etc/sub/link").3, "../new");
        assert_eq!((by("fifo").1, by("fifo").2), (tar::EntryType::Fifo, 0o640));
        // Same tree, same bytes.
        assert_eq!(pack(Vec::new(), up).unwrap(), tar);
        // No entry for the root, no "./", plain ustar where the name fits.
        assert!(!names
            .iter()
            .any(|n| n.starts_with('.') && !n.starts_with(".wh.")));
        let first = tar::Header::from_byte_slice(&tar[..512]);
        assert!(first.as_ustar().is_some());
    }

    #[test]
    fn xattrs_travel_as_pax_records() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"").unwrap();
        if let Err(e) = xattr::set(&f, b"user.test", b"v\0bin") {
            assert!(xattr::unsupported(&e), "{e}");
            return; // a filesystem without user xattrs: nothing to test here
        }
        let tar = pack(Vec::new(), d.path()).unwrap();
        let mut ar = tar::Archive::new(tar.as_slice());
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let pax: Vec<(Vec<u8>, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key_bytes().to_vec(), r.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            pax,
            [(b"SCHILY.xattr.user.test".to_vec(), b"v\0bin".to_vec())]
        );
        assert_eq!(e.path_bytes().as_ref(), b"f");
    }

    #[test]
    fn names_reserved_for_whiteouts_and_sockets() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".wh.sneaky"), b"").unwrap();
        let e = pack(Vec::new(), d.path()).unwrap_err();
        assert!(
            matches!(&e, LayerError::Reserved(p) if *p == d.path().join(".wh.sneaky")),
            "{e}"
        );
        // A failed pack writes no end marker.
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), b"a").unwrap();
        fs::write(d.path().join("z.wh.ok"), b"").unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
        let names: Vec<_> = listing(&pack(Vec::new(), d.path()).unwrap())
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["a", "z.wh.ok"], "sockets are left out");
        assert!(matches!(
            pack(Vec::new(), &d.path().join("a")),
            Err(LayerError::NotADir(_))
        ));
    }

    #[test]
    fn pax_header_names_follow_go() {
        assert_eq!(pax_header_name(b"a/b/c"), b"a/b/PaxHeaders.0/c");
        assert_eq!(pax_header_name(b"dir/"), b"PaxHeaders.0/dir");
        assert_eq!(pax_header_name(&[b'x'; 200]).len(), 100);
    }
}
