//! OCI image layers in and out of overlayfs, for `container build`: what an overlay directory's
//! entries mean as a layer tar and back (OCI image spec, layer.md "Representing Changesets"
//! and "Whiteouts"; the kernel's Documentation/filesystems/overlayfs.rst), the checks every
//! entry name passes, and the two walks that apply them ([`pack`](fn@pack), [`unpack`](fn@unpack)). vminitd runs
//! both in the builder VM (`LayerOut`, `LayerIn`); the decisions here are plain functions of
//! names and attributes, so the host can apply the same rules to what it writes itself.
//!
//! ```text
//!  overlay directory                          OCI layer tar
//!  NAME  char device 0/0 (whiteout)   ─pack─▶  .wh.NAME            empty regular file, 0600
//!  DIR   trusted.overlay.opaque=y     ─pack─▶  DIR/ then DIR/.wh..wh..opq
//!  trusted.overlay.* xattrs           ─pack─▶  left out (overlay's bookkeeping)
//!  any other entry and xattr          ─pack─▶  kept (xattrs as PAX SCHILY.xattr.NAME)
//!
//!  NAME  char device 0/0, mode 0     ◀unpack─  .wh.NAME            (DIR opaque when the same
//!  DIR   trusted.overlay.opaque=y    ◀unpack─  DIR/.wh..wh..opq     layer also has DIR/)
//!        (skipped)                   ◀unpack─  .wh..wh.*           other aufs metadata
//! ```
//!
//! The tar is what docker and buildah write for a layer: names relative to the layer's root
//! without a leading `./` and without an entry for the root itself, directories with a
//! trailing `/`, a directory's entries right after it in byte order of their names (so the
//! same tree always gives the same bytes), hard links as links to the first name seen,
//! ustar headers with a PAX extended header only where one is needed (long names, xattrs,
//! numbers too big for ustar), mtimes in whole seconds, no user or group names, no atime or
//! ctime. Sockets are left out (tar cannot carry them; docker skips them too).

pub mod pack;
pub mod unpack;
mod xattr;

use std::path::PathBuf;

pub use pack::pack;
pub use unpack::{unpack, UnpackReport};

/// Prefix of a whiteout entry: `.wh.NAME` removes NAME of the layers below.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The opaque marker: `DIR/.wh..wh..opq` hides everything the layers below have in DIR.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix of aufs metadata entries (`.wh..wh.plnk`, …), which are not part of the tree.
pub const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// Namespace of overlayfs' own xattrs (as root; `userxattr` mounts use `user.overlay.`).
pub const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
/// The xattr that makes a directory opaque (value `y`).
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
/// Key prefix of a PAX record that carries an xattr (GNU tar, Go's archive/tar, libarchive).
pub const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// What the last component of a layer tar entry's name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker<'a> {
    /// An ordinary entry.
    None,
    /// `.wh.NAME`: NAME is deleted (the slice is NAME).
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: the directory it is in hides the layers below.
    Opaque,
    /// Other `.wh..wh.` names: aufs' own metadata, skipped.
    AufsMeta,
}

/// Classifies the last component of an entry name.
pub fn marker(name: &[u8]) -> Marker<'_> {
    if name == OPAQUE_MARKER {
        Marker::Opaque
    } else if name.starts_with(AUFS_META_PREFIX) {
        Marker::AufsMeta
    } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        Marker::Whiteout(hidden)
    } else {
        Marker::None
    }
}

/// The file name of the whiteout that deletes `name`.
pub fn whiteout_name(name: &[u8]) -> Vec<u8> {
    [WHITEOUT_PREFIX, name].concat()
}

/// Whether an entry of an overlay directory is a whiteout: a character device 0/0
/// (overlayfs.rst, "whiteouts and opaque directories").
pub fn is_whiteout_device(mode: u32, rdev: u64) -> bool {
    mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0
}

/// What [`pack`](fn@pack) does with one xattr of an entry of an overlay directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperXattr {
    /// A file attribute: goes into the layer.
    Keep,
    /// overlayfs bookkeeping that means nothing in a layer (`origin`, `impure`, `nlink`,
    /// `upper`, `uuid`, …): left out.
    Drop,
    /// `trusted.overlay.opaque=y` on a directory: the opaque marker.
    Opaque,
    /// An overlay feature whose meaning lives outside the entry (a renamed directory's
    /// `redirect`, a `metacopy` file without its data, an xattr-based whiteout): the
    /// directory cannot be written as a layer. Mount the overlay with
    /// `redirect_dir=off,metacopy=off` so the kernel never creates them.
    Unrepresentable,
}

/// Decides what [`pack`](fn@pack) does with xattr `name` = `value` of an entry (`is_dir`: a directory).
pub fn upper_xattr(name: &[u8], value: &[u8], is_dir: bool) -> UpperXattr {
    let Some(key) = name.strip_prefix(OVERLAY_XATTR_PREFIX) else {
        return UpperXattr::Keep;
    };
    match key {
        b"opaque" if is_dir && value == b"y" => UpperXattr::Opaque,
        // Linux 6.7+ marks a directory holding xattr whiteouts with "x".
        b"opaque" if is_dir => UpperXattr::Unrepresentable,
        b"redirect" | b"metacopy" | b"whiteout" => UpperXattr::Unrepresentable,
        _ => UpperXattr::Drop,
    }
}

/// Whether [`unpack`](fn@unpack) applies an xattr a layer carries. overlayfs' own never come from a
/// layer: one could redirect a lookup or fake a metacopy in the builder's overlay; the only
/// one a layer can ask for, opaqueness, has its marker entry.
pub fn layer_xattr_allowed(name: &[u8]) -> bool {
    !name.starts_with(OVERLAY_XATTR_PREFIX)
}

/// Splits a layer entry's name (or a hard link's target) into its components: empty and `.`
/// components dropped (`./etc/` is `etc`), an absolute name or a `..` component refused.
/// The empty result is the layer's root.
pub fn entry_components(raw: &[u8]) -> Result<Vec<&[u8]>, LayerError> {
    if raw.starts_with(b"/") {
        return Err(LayerError::Escape(shown(raw)));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(LayerError::Escape(shown(raw))),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// An entry name for messages.
pub(crate) fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// One PAX extended header record: `"<len> <key>=<value>\n"`, where `len` counts the whole
/// record, its own digits included (POSIX.1-2008, pax "extended header").
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // " " + "=" + "\n"
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    // The length's digits are part of the length: grow until it describes itself.
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(len.to_string().as_bytes());
    r.push(b' ');
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Splits a name too long for ustar's 100-byte `name` field at a `/` into `prefix` (at most
/// 155 bytes) and `name` (at most 100), as POSIX ustar allows; `None` when no split fits
/// (the name then needs a PAX `path` record).
pub fn ustar_split(name: &[u8]) -> Option<(&[u8], &[u8])> {
    const NAME: usize = 100;
    const PREFIX: usize = 155;
    if name.len() <= NAME {
        return Some((&[], name));
    }
    // The longest prefix that fits leaves the shortest name; a directory's trailing slash
    // is part of its name, never the split point.
    let mut end = name.len().min(PREFIX + 1);
    if end == name.len() && name.ends_with(b"/") {
        end -= 1;
    }
    let i = name[..end].iter().rposition(|b| *b == b'/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    (!prefix.is_empty() && !rest.is_empty() && rest.len() <= NAME).then_some((prefix, rest))
}

/// Errors of packing or unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading the layer directory failed.
    #[error("read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the layer directory failed.
    #[error("write {}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The tar stream could not be read or written.
    #[error("tar stream")]
    Stream(#[source] std::io::Error),
    /// The stream ended without tar's end marker (the sender failed or went away).
    #[error("the tar stream ended before its end")]
    Truncated,
    /// An entry name that is absolute or has a `..` component.
    #[error("layer entry {0:?} would escape the layer directory")]
    Escape(String),
    /// A path component is a symlink an entry would be written through.
    #[error("layer entry {entry:?} would be written through the symlink {}", link.display())]
    Symlink {
        /// The entry.
        entry: String,
        /// The symlink in its path.
        link: PathBuf,
    },
    /// A path component is not a directory.
    #[error("layer entry {entry:?} needs {} to be a directory", path.display())]
    NotADirectory {
        /// The entry.
        entry: String,
        /// The component that is not a directory.
        path: PathBuf,
    },
    /// A hard link whose target is not an earlier non-directory entry of the same layer.
    #[error("hard link {entry:?} points to {target:?}, which is not a file of this layer")]
    LinkTarget {
        /// The link's name.
        entry: String,
        /// What it points to.
        target: String,
    },
    /// The layer's root entry (`./`) is not a directory.
    #[error("layer entry {0:?} is the layer's root but not a directory")]
    RootNotDir(String),
    /// An overlay attribute that a layer cannot express (see [`UpperXattr::Unrepresentable`]).
    #[error(
        "{} has the overlay attribute {attr}, which an OCI layer cannot express \
         (mount the overlay with redirect_dir=off,metacopy=off)", path.display()
    )]
    Unrepresentable {
        /// The entry.
        path: PathBuf,
        /// The xattr.
        attr: String,
    },
    /// A file whose name starts with `.wh.`: in a layer it would read as a whiteout.
    #[error("{} is named like a whiteout (.wh.*), which OCI layers reserve", .0.display())]
    Reserved(PathBuf),
    /// The directory to unpack into exists already.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    /// The directory to pack is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADir(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_whiteouts_opaque_dirs_and_aufs_metadata() {
        assert_eq!(marker(b"passwd"), Marker::None);
        assert_eq!(marker(b".wh.passwd"), Marker::Whiteout(b"passwd"));
        assert_eq!(marker(b".wh..wh..opq"), Marker::Opaque);
        assert_eq!(marker(b".wh..wh.plnk"), Marker::AufsMeta);
        assert_eq!(marker(b".wh..hidden"), Marker::Whiteout(b".hidden"));
        assert_eq!(marker(b".whx"), Marker::None);
        assert_eq!(whiteout_name(b"a b"), b".wh.a b");
        assert_eq!(marker(&whiteout_name(b"x")), Marker::Whiteout(b"x"));
    }

    #[test]
    fn whiteouts_are_char_devices_0_0() {
        assert!(is_whiteout_device(libc::S_IFCHR, 0));
        assert!(!is_whiteout_device(
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3)
        ));
        assert!(!is_whiteout_device(libc::S_IFBLK, 0));
        assert!(!is_whiteout_device(libc::S_IFREG, 0));
    }

    #[test]
    fn overlay_xattrs_are_dropped_or_refused_others_kept() {
        use UpperXattr::*;
        assert_eq!(upper_xattr(b"security.capability", b"\x01", false), Keep);
        assert_eq!(upper_xattr(b"user.mime", b"text/plain", false), Keep);
        assert_eq!(upper_xattr(b"trusted.md5", b"x", false), Keep);
        assert_eq!(upper_xattr(b"trusted.overlay.opaque", b"y", true), Opaque);
        assert_eq!(
            upper_xattr(b"trusted.overlay.opaque", b"x", true),
            Unrepresentable
        );
        assert_eq!(upper_xattr(b"trusted.overlay.opaque", b"y", false), Drop);
        assert_eq!(upper_xattr(b"trusted.overlay.origin", b"\0", false), Drop);
        assert_eq!(upper_xattr(b"trusted.overlay.impure", b"y", true), Drop);
        assert_eq!(
            upper_xattr(b"trusted.overlay.redirect", b"/a", true),
            Unrepresentable
        );
        assert_eq!(
            upper_xattr(b"trusted.overlay.metacopy", b"", false),
            Unrepresentable
        );
        assert!(layer_xattr_allowed(b"security.capability"));
        assert!(!layer_xattr_allowed(b"trusted.overlay.redirect"));
    }

    #[test]
    fn entry_names_stay_inside_the_layer() {
        let c = |s: &[u8]| entry_components(s).map(|v| v.concat());
        assert_eq!(
            entry_components(b"etc/passwd").unwrap(),
            [&b"etc"[..], b"passwd"]
        );
        assert_eq!(c(b"./etc/").unwrap(), b"etc");
        assert_eq!(entry_components(b"./").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(entry_components(b".").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(entry_components(b"a//b/./c").unwrap().len(), 3);
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a/.."] {
            assert!(
                matches!(entry_components(bad), Err(LayerError::Escape(_))),
                "{}",
                shown(bad)
            );
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        // 9 bytes of key/value/separators: with one digit 10, which needs two: 11.
        let r = pax_record(b"pa", b"abcd");
        assert_eq!(r, b"11 pa=abcd\n");
        for n in 0..300 {
            let v = vec![b'x'; n];
            let r = pax_record(b"SCHILY.xattr.user.k", &v);
            let (len, _) = r.split_at(r.iter().position(|b| *b == b' ').unwrap());
            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn long_names_split_at_a_slash_or_need_pax() {
        assert_eq!(
            ustar_split(b"etc/passwd"),
            Some((&b""[..], &b"etc/passwd"[..]))
        );
        let long = [&[b'd'; 120][..], b"/", &[b'f'; 90]].concat();
        assert_eq!(ustar_split(&long), Some((&long[..120], &long[121..])));
        // A last component over 100 bytes cannot be split.
        let long_leaf = [&b"dir/"[..], &[b'f'; 101]].concat();
        assert_eq!(ustar_split(&long_leaf), None);
        // Nor a prefix over 155 bytes.
        let deep = [&[b'd'; 200][..], b"/f"].concat();
        assert_eq!(ustar_split(&deep), None);
        // A directory's trailing slash stays with its name.
        let dir = [&[b'd'; 120][..], b"/sub/"].concat();
        assert_eq!(ustar_split(&dir), Some((&dir[..120], &b"sub/"[..])));
    }
}
