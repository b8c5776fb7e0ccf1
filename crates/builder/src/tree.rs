//! Trees of files the builder reads and writes: the build context, the root filesystem of a
//! stage or an image (`COPY --from`), and the stage a layer is built for.
//!
//! [`Tree`] answers what is at a path without following a final symlink (`lstat`);
//! [`SourceTree`] adds listing and reading, which a COPY source needs. [`resolve`] follows
//! symlinks the way a chroot would, so a tree never reaches outside its root: an absolute
//! link target starts again at the tree's root, and `..` at the root stays there — except in
//! trees that refuse such links ([`Tree::refuses_escaping_links`], the build context),
//! where they are an error naming the link.
//!
//! Paths are root-relative, `/`-separated and clean (`""` is the root); callers reach a path
//! only through ancestors that are directories ([`resolve`] guarantees it), so an
//! implementation may look the path up directly.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::path::{self as rel, Above};

/// What a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link and its target, as written.
    Symlink(String),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One file's metadata, as a layer tar carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content length of a regular file; 0 otherwise.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For a regular file with other hard links in the same tree: a number shared by all
    /// its names (the inode, for a directory on disk).
    pub link: Option<u64>,
}

impl Entry {
    /// A directory entry with no extended attributes.
    pub fn dir(mode: u32, uid: u32, gid: u32, mtime: i64) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode,
            uid,
            gid,
            size: 0,
            mtime,
            xattrs: BTreeMap::new(),
            link: None,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
}

/// Reading a tree failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file could not be read (permissions, I/O).
    #[error("cannot read {} in the {tree}", rel::display(path))]
    Read {
        /// The tree's name.
        tree: String,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A name on disk is not UTF-8 (paths are matched as text, like Docker's patterns).
    #[error(
        "a file name in {} of the {tree} is not UTF-8: {name:?}",
        rel::display(dir)
    )]
    NotUtf8 {
        /// The tree's name.
        tree: String,
        /// The directory holding it.
        dir: String,
        /// The name, lossily decoded.
        name: String,
    },
    /// A followed symlink leads outside a tree that refuses that (the build context).
    #[error(
        "symlink {} in the {tree} points outside it (to {target:?})",
        rel::display(path)
    )]
    Escape {
        /// The tree's name.
        tree: String,
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// More than 40 symlinks in one lookup (Linux's limit).
    #[error(
        "too many levels of symbolic links resolving {} in the {tree}",
        rel::display(path)
    )]
    Loop {
        /// The tree's name.
        tree: String,
        /// The path being resolved.
        path: String,
    },
    /// A path goes through something that is not a directory.
    #[error("{} in the {tree} is not a directory", rel::display(path))]
    NotADirectory {
        /// The tree's name.
        tree: String,
        /// The non-directory.
        path: String,
    },
    /// Something that should be there is not (a file removed during the build).
    #[error("{} does not exist in the {tree}", rel::display(path))]
    Missing {
        /// The tree's name.
        tree: String,
        /// The path.
        path: String,
    },
    /// A file changed size between listing and reading.
    #[error("{} in the {tree} changed while the build read it", rel::display(path))]
    Changed {
        /// The tree's name.
        tree: String,
        /// The file.
        path: String,
    },
}

/// A tree that can say what is at a path: enough for the stage a layer is built for (where
/// a destination leads, which directories exist).
pub trait Tree {
    /// What is at `path`, not following a final symlink; `None` when nothing is.
    fn entry(&self, path: &str) -> Result<Option<Entry>, TreeError>;

    /// The tree's name in messages ("build context", "stage build", "image alpine").
    fn name(&self) -> &str;

    /// Whether a followed symlink that leaves the tree (an absolute target, or `..` above
    /// the root) is an error rather than resolved inside the tree as a chroot would.
    fn refuses_escaping_links(&self) -> bool {
        false
    }
}

/// A tree files can be copied from: the build context or a root filesystem.
pub trait SourceTree: Tree {
    /// The names in the directory at `path`, sorted by their bytes.
    fn read_dir(&self, path: &str) -> Result<Vec<String>, TreeError>;

    /// The content of the regular file at `path`.
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, TreeError>;

    /// The SHA-256 of the regular file at `path`. A tree that reads the same file more
    /// than once in a build (the context: once for the cache key, once for the layer)
    /// remembers it.
    fn file_digest(&self, path: &str) -> Result<oci::Digest, TreeError> {
        super::digest::content_digest(self, path)
    }
}

/// An empty tree: the stage of `FROM scratch` before anything was added, and the context of
/// a build whose Dockerfile came on stdin.
#[derive(Debug, Clone, Default)]
pub struct EmptyTree {
    name: String,
}

impl EmptyTree {
    /// An empty tree called `name` in messages.
    pub fn new(name: &str) -> EmptyTree {
        EmptyTree { name: name.into() }
    }
}

impl Tree for EmptyTree {
    fn entry(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        Ok(path.is_empty().then(|| Entry::dir(0o755, 0, 0, 0)))
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl SourceTree for EmptyTree {
    fn read_dir(&self, _path: &str) -> Result<Vec<String>, TreeError> {
        Ok(Vec::new())
    }
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, TreeError> {
        Err(TreeError::Missing {
            tree: self.name.clone(),
            path: path.into(),
        })
    }
}

/// A directory on the host taken as a root filesystem as it is: owners, modes, links and
/// extended attributes as stored. This is what the builder gives `COPY --from` for an
/// unpacked stage or image.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
    name: String,
}

impl DirTree {
    /// The directory `root`, called `name` in messages.
    pub fn new(root: impl Into<PathBuf>, name: &str) -> DirTree {
        DirTree {
            root: root.into(),
            name: name.into(),
        }
    }

    /// The host path of a tree path.
    pub fn host_path(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    fn read_error(&self, path: &str) -> impl FnOnce(io::Error) -> TreeError + '_ {
        let path = path.to_string();
        move |source| TreeError::Read {
            tree: self.name.clone(),
            path,
            source,
        }
    }
}

impl Tree for DirTree {
    fn entry(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        let host = self.host_path(path);
        match fs::symlink_metadata(&host) {
            Ok(meta) => host_entry(&host, &meta)
                .map(Some)
                .map_err(self.read_error(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // A parent that is a file: nothing is there.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(self.read_error(path)(e)),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl SourceTree for DirTree {
    fn read_dir(&self, path: &str) -> Result<Vec<String>, TreeError> {
        list_dir(&self.host_path(path), &self.name, path)
    }
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, TreeError> {
        open_nofollow(&self.host_path(path))
            .map(|f| Box::new(f) as Box<dyn Read>)
            .map_err(self.read_error(path))
    }
}

/// Opens a regular file without following a symlink in its place (a swap after the tree
/// was listed must not make the build read something else).
pub(crate) fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The sorted names of a host directory, refusing names that are not UTF-8.
pub(crate) fn list_dir(host: &Path, tree: &str, path: &str) -> Result<Vec<String>, TreeError> {
    let read_error = |source| TreeError::Read {
        tree: tree.into(),
        path: path.into(),
        source,
    };
    let mut names = Vec::new();
    for item in fs::read_dir(host).map_err(read_error)? {
        let item = item.map_err(read_error)?;
        let name = item.file_name();
        match name.into_string() {
            Ok(name) => names.push(name),
            Err(name) => {
                return Err(TreeError::NotUtf8 {
                    tree: tree.into(),
                    dir: path.into(),
                    name: name.to_string_lossy().into_owned(),
                })
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The [`Entry`] of a host file from its `lstat` metadata, with its extended attributes.
pub(crate) fn host_entry(host: &Path, meta: &fs::Metadata) -> io::Result<Entry> {
    let ft = meta.file_type();
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        let target = fs::read_link(host)?;
        Kind::Symlink(target.to_string_lossy().into_owned())
    } else if ft.is_char_device() {
        Kind::CharDevice { major, minor }
    } else if ft.is_block_device() {
        Kind::BlockDevice { major, minor }
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_file() {
        Kind::File
    } else {
        // A socket: a tar cannot carry it, and Docker's context transfer skips it too.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a socket cannot be copied",
        ));
    };
    let link = (ft.is_file() && meta.nlink() > 1).then(|| meta.ino());
    Ok(Entry {
        size: if ft.is_file() { meta.len() } else { 0 },
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        xattrs: host_xattrs(host)?,
        link,
    })
}

/// The extended attributes a layer keeps (`security.capability`, and any outside the
/// `security.` and `system.` namespaces: those are the host's labels and ACLs, which
/// BuildKit's cache checksum leaves out for the same reason).
fn host_xattrs(host: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(host) {
        Ok(names) => names,
        // Filesystems without xattr support have none to copy.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if !kept_xattr(name) {
            continue;
        }
        if let Some(value) = xattr::get(host, name)? {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// Whether an extended attribute belongs in a layer (see [`host_xattrs`]).
pub(crate) fn kept_xattr(name: &str) -> bool {
    name == "security.capability" || !(name.starts_with("security.") || name.starts_with("system."))
}

/// Linux's limit on symlinks followed in one lookup.
const MAX_LINKS: usize = 40;

/// Resolves `path` in `tree`, following symlinks in every component (and in the last one
/// too when `follow_last`), chroot-style: the result is a root-relative path whose every
/// ancestor is a directory of the tree. The last component may not exist; an intermediate
/// one that does not exist or is not a directory is [`TreeError::Missing`] or
/// [`TreeError::NotADirectory`].
pub fn resolve(tree: &dyn Tree, path: &str, follow_last: bool) -> Result<String, TreeError> {
    resolve_with(tree, path, follow_last, false)
}

/// [`resolve`], but a missing component is taken as it is (with everything after it):
/// where a destination leads once its missing directories are created.
pub(crate) fn resolve_with(
    tree: &dyn Tree,
    path: &str,
    follow_last: bool,
    missing_ok: bool,
) -> Result<String, TreeError> {
    let mut pending: Vec<String> = path
        .split('/')
        .rev()
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            // `done` holds only directories, so `..` is lexical here.
            done.pop();
            continue;
        }
        let candidate = rel::join(&done.join("/"), &component);
        let last = pending.is_empty();
        if last && !follow_last {
            done.push(component);
            break;
        }
        match tree.entry(&candidate)? {
            Some(Entry {
                kind: Kind::Symlink(target),
                ..
            }) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(TreeError::Loop {
                        tree: tree.name().into(),
                        path: path.into(),
                    });
                }
                let escapes = target.starts_with('/')
                    || rel::clean(&rel::join(&done.join("/"), &target), Above::Refuse).is_none();
                if escapes && tree.refuses_escaping_links() {
                    return Err(TreeError::Escape {
                        tree: tree.name().into(),
                        path: candidate,
                        target,
                    });
                }
                if target.starts_with('/') {
                    done.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty() && *c != ".")
                        .map(String::from),
                );
            }
            Some(entry) if !last && !entry.is_dir() => {
                return Err(TreeError::NotADirectory {
                    tree: tree.name().into(),
                    path: candidate,
                })
            }
            None if !last && !missing_ok => {
                return Err(TreeError::Missing {
                    tree: tree.name().into(),
                    path: candidate,
                })
            }
            _ => done.push(component),
        }
    }
    Ok(done.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_chroot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../usr", root.join("usr/bin/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        fs::write(root.join("file"), "x").unwrap();
        let tree = DirTree::new(root, "stage");
        assert_eq!(resolve(&tree, "bin/sh", true).unwrap(), "usr/bin/sh");
        assert_eq!(resolve(&tree, "bin", false).unwrap(), "bin");
        assert_eq!(resolve(&tree, "bin", true).unwrap(), "usr/bin");
        assert_eq!(resolve(&tree, "abs/bin", true).unwrap(), "usr/bin");
        assert_eq!(resolve(&tree, "usr/bin/up/bin", true).unwrap(), "usr/bin");
        assert!(matches!(
            resolve(&tree, "loop", true),
            Err(TreeError::Loop { .. })
        ));
        assert!(matches!(
            resolve(&tree, "file/x", true),
            Err(TreeError::NotADirectory { .. })
        ));
        assert!(matches!(
            resolve(&tree, "nope/x", true),
            Err(TreeError::Missing { .. })
        ));
        assert_eq!(resolve(&tree, "nope", true).unwrap(), "nope");
    }
}
