//! The build context: the files `COPY` and `ADD` read, from a directory or from a tar stream
//! (`container build -` with an archive on stdin), with `.dockerignore` applied.
//!
//! It is indexed once when it is opened (a walk that `lstat`s every file that is not
//! ignored, or one pass over the archive, whose file data is spooled to an anonymous temp
//! file), so every later question — what matches `COPY src/*.go`, what is a file's
//! metadata, what is a tree's digest — is answered from that snapshot, and a file is read
//! only when a layer or a digest needs its bytes.
//!
//! Docker's rules, as BuildKit applies them:
//! - Files reach the builder owned by root: every entry reads as uid 0, gid 0 (BuildKit's
//!   context transfer resets owners), so COPY without `--chown` gives root-owned files and
//!   the owner on the host never changes a cache key.
//! - `.dockerignore` at the context root — or `<Dockerfile>.dockerignore` beside the
//!   Dockerfile, which takes precedence — excludes paths; an excluded directory is entered
//!   only when an exception (`!pattern`) could re-include something under it, and it is
//!   kept (with its own metadata) exactly when something under it is.
//! - The Dockerfile and `.dockerignore` are read by the builder even when ignored (BuildKit
//!   reads them on their own channel), but COPY sees them only if they are not ignored.
//! - A followed symlink may not leave the context (an absolute target or `..` above the
//!   root); `COPY ../x` is refused. BuildKit silently clamps both to the root instead.
//! - On stdin, anything that is compressed (gzip, bzip2, xz, zstd) or starts with a tar
//!   header is an archive context; anything else is a Dockerfile, and the context is empty
//!   (docker's `DetectArchiveReader`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dockerfile::{Ignore, IgnoreError};
use oci::Digest;

use super::compress::{self, Compression};
use super::path::{self as rel, Above};
use super::tree::{self, Entry, Kind, SourceTree, Tree, TreeError};

/// The name of the context in messages.
pub const CONTEXT_NAME: &str = "build context";

/// The Dockerfile's name when none is given.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// Opening the context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory cannot be used.
    #[error("cannot use {} as the build context", path.display())]
    OpenDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The ignore file cannot be read.
    #[error("cannot read {}", path.display())]
    ReadIgnore {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The ignore file has a bad pattern.
    #[error("{name}")]
    Ignore {
        /// The file's name (`.dockerignore` or `<Dockerfile>.dockerignore`).
        name: String,
        /// The pattern error (`.dockerignore:LINE: ...`).
        #[source]
        source: IgnoreError,
    },
    /// Walking the directory failed (an unreadable directory, a name that is not UTF-8).
    #[error("cannot index the build context")]
    Walk(#[source] TreeError),
    /// The Dockerfile cannot be read.
    #[error("cannot read the Dockerfile {name}")]
    Dockerfile {
        /// Its path as given.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The Dockerfile is not in the archive.
    #[error("the build context archive has no {0}")]
    NoDockerfile(String),
    /// Reading the context archive failed.
    #[error("cannot read the build context archive")]
    Archive(#[source] io::Error),
    /// An entry of the context archive cannot be used.
    #[error("build context archive entry {entry:?}: {reason}")]
    ArchiveEntry {
        /// The entry's name.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The spool file for the archive's data could not be written.
    #[error("cannot spool the build context archive")]
    Spool(#[source] io::Error),
}

/// Where a file's bytes are.
#[derive(Debug, Clone, Copy)]
enum Data {
    /// Not a regular file.
    None,
    /// The host file at the context directory joined with the path.
    Host,
    /// At this offset of the spool file (its length is the entry's size).
    Spool(u64),
}

#[derive(Debug, Clone)]
struct Node {
    entry: Entry,
    data: Data,
}

/// Where the context's files are.
#[derive(Debug)]
enum Backing {
    Dir(PathBuf),
    Spool(fs::File),
    Empty,
}

/// Where the Dockerfile is when opening a context.
#[derive(Debug, Clone)]
pub enum DockerfileAt {
    /// `Dockerfile` at the context's root.
    Default,
    /// A path: on the host for a directory context (`-f`, relative to the current
    /// directory, as docker's CLI takes it), inside the archive for an archive context.
    Path(PathBuf),
    /// Its text, already read (`-f -`).
    Text(Vec<u8>),
}

/// A build context, indexed.
#[derive(Debug)]
pub struct Context {
    nodes: BTreeMap<String, Node>,
    children: HashMap<String, Vec<String>>,
    backing: Backing,
    dockerfile: Vec<u8>,
    ignore: Ignore,
    digests: Mutex<HashMap<String, Digest>>,
}

impl Context {
    /// A context from the directory `dir`.
    pub fn from_dir(dir: &Path, dockerfile: DockerfileAt) -> Result<Context, ContextError> {
        let meta = fs::symlink_metadata(dir)
            .and_then(|m| {
                // The context itself may be reached through a symlink; what is inside may not.
                if m.file_type().is_symlink() {
                    fs::metadata(dir)
                } else {
                    Ok(m)
                }
            })
            .map_err(|source| ContextError::OpenDir {
                path: dir.into(),
                source,
            })?;
        if !meta.is_dir() {
            return Err(ContextError::OpenDir {
                path: dir.into(),
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        let (text, dockerfile_path) = match dockerfile {
            DockerfileAt::Default => {
                let path = dir.join(DEFAULT_DOCKERFILE);
                (read_host(&path)?, Some(path))
            }
            DockerfileAt::Path(path) => (read_host(&path)?, Some(path)),
            DockerfileAt::Text(text) => (text, None),
        };
        let ignore = host_ignore(dir, dockerfile_path.as_deref())?;
        let mut nodes = BTreeMap::new();
        walk(dir, "", &meta, &ignore, &mut nodes).map_err(ContextError::Walk)?;
        apply_ignore(&mut nodes, &ignore);
        Ok(Context::finish(
            nodes,
            Backing::Dir(dir.into()),
            text,
            ignore,
        ))
    }

    /// A context from a tar stream (compressed or not); the Dockerfile is read from it
    /// (ignored or not) unless given as text.
    pub fn from_archive<R: Read>(
        reader: R,
        dockerfile: DockerfileAt,
    ) -> Result<Context, ContextError> {
        let (_, reader) = compress::decompress(reader).map_err(ContextError::Archive)?;
        let mut spool = tempfile::tempfile().map_err(ContextError::Spool)?;
        let mut nodes = read_archive(reader, &mut spool)?;
        let text = |name: &str, nodes: &BTreeMap<String, Node>| -> Result<Vec<u8>, ContextError> {
            let path = rel::clean(name, Above::Clamp).unwrap_or_default();
            let node = nodes
                .get(&path)
                .filter(|n| n.entry.is_file())
                .ok_or_else(|| ContextError::NoDockerfile(name.into()))?;
            read_spool(&spool, node).map_err(ContextError::Spool)
        };
        let (dockerfile_text, dockerfile_name) = match dockerfile {
            DockerfileAt::Default => (
                text(DEFAULT_DOCKERFILE, &nodes)?,
                Some(DEFAULT_DOCKERFILE.to_string()),
            ),
            DockerfileAt::Path(p) => {
                let name = p.to_string_lossy().into_owned();
                (text(&name, &nodes)?, Some(name))
            }
            DockerfileAt::Text(t) => (t, None),
        };
        // `<Dockerfile>.dockerignore` first, then `.dockerignore`, both from the archive.
        let mut ignore_text = None;
        let mut candidates = Vec::new();
        if let Some(name) = &dockerfile_name {
            candidates.push(format!("{name}.dockerignore"));
        }
        candidates.push(".dockerignore".to_string());
        for name in candidates {
            let path = rel::clean(&name, Above::Clamp).unwrap_or_default();
            if let Some(node) = nodes.get(&path).filter(|n| n.entry.is_file()) {
                let bytes = read_spool(&spool, node).map_err(ContextError::Spool)?;
                ignore_text = Some((name, String::from_utf8_lossy(&bytes).into_owned()));
                break;
            }
        }
        let ignore = match ignore_text {
            Some((name, text)) => {
                Ignore::parse(&text).map_err(|source| ContextError::Ignore { name, source })?
            }
            None => Ignore::default(),
        };
        apply_ignore(&mut nodes, &ignore);
        spool
            .seek(SeekFrom::Start(0))
            .map_err(ContextError::Spool)?;
        Ok(Context::finish(
            nodes,
            Backing::Spool(spool),
            dockerfile_text,
            ignore,
        ))
    }

    /// The context of `container build -`: an archive (compressed or not) is the context;
    /// anything else is the Dockerfile itself and the context is empty.
    pub fn from_stdin<R: Read>(
        mut reader: R,
        dockerfile: DockerfileAt,
    ) -> Result<Context, ContextError> {
        // Two blocks, as docker's CLI peeks: a pipe may hand them over in pieces.
        let mut head = Vec::with_capacity(1024);
        (&mut reader)
            .take(1024)
            .read_to_end(&mut head)
            .map_err(ContextError::Archive)?;
        let is_archive =
            Compression::detect(&head) != Compression::None || compress::is_tar_header(&head);
        let mut whole = io::Cursor::new(head).chain(reader);
        if is_archive {
            return Context::from_archive(whole, dockerfile);
        }
        let mut text = Vec::new();
        whole
            .read_to_end(&mut text)
            .map_err(ContextError::Archive)?;
        Ok(Context::empty(text))
    }

    /// An empty context whose Dockerfile is `dockerfile`.
    pub fn empty(dockerfile: Vec<u8>) -> Context {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            String::new(),
            Node {
                entry: Entry::dir(0o755, 0, 0, 0),
                data: Data::None,
            },
        );
        Context::finish(nodes, Backing::Empty, dockerfile, Ignore::default())
    }

    fn finish(
        nodes: BTreeMap<String, Node>,
        backing: Backing,
        dockerfile: Vec<u8>,
        ignore: Ignore,
    ) -> Context {
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for path in nodes.keys().filter(|p| !p.is_empty()) {
            children
                .entry(rel::parent(path).to_string())
                .or_default()
                .push(rel::base(path).to_string());
        }
        // BTreeMap order is by full path, which is not by name within a directory
        // ("a b" < "a/x" but the names are "a b" and "a"): sort each list.
        for names in children.values_mut() {
            names.sort();
        }
        Context {
            nodes,
            children,
            backing,
            dockerfile,
            ignore,
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// The Dockerfile's bytes.
    pub fn dockerfile(&self) -> &[u8] {
        &self.dockerfile
    }

    /// The ignore rules in force (empty without an ignore file).
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// How many paths the context holds (its root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the context holds nothing but its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Every path in the context, in order (the root is `""`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    fn node(&self, path: &str) -> Result<&Node, TreeError> {
        self.nodes.get(path).ok_or_else(|| TreeError::Missing {
            tree: CONTEXT_NAME.into(),
            path: path.into(),
        })
    }
}

impl Tree for Context {
    fn entry(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        Ok(self.nodes.get(path).map(|n| n.entry.clone()))
    }
    fn name(&self) -> &str {
        CONTEXT_NAME
    }
    fn refuses_escaping_links(&self) -> bool {
        true
    }
}

impl SourceTree for Context {
    fn read_dir(&self, path: &str) -> Result<Vec<String>, TreeError> {
        self.node(path)?;
        Ok(self.children.get(path).cloned().unwrap_or_default())
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, TreeError> {
        let node = self.node(path)?;
        let read_error = |source| TreeError::Read {
            tree: CONTEXT_NAME.into(),
            path: path.into(),
            source,
        };
        match (&self.backing, node.data) {
            (Backing::Dir(dir), Data::Host) => {
                let file = tree::open_nofollow(&dir.join(path)).map_err(read_error)?;
                let len = file.metadata().map_err(read_error)?.len();
                if len != node.entry.size {
                    return Err(TreeError::Changed {
                        tree: CONTEXT_NAME.into(),
                        path: path.into(),
                    });
                }
                // Never more than was indexed, even if the file grows meanwhile.
                Ok(Box::new(file.take(node.entry.size)))
            }
            (Backing::Spool(file), Data::Spool(offset)) => Ok(Box::new(SpoolReader {
                file,
                offset,
                end: offset + node.entry.size,
            })),
            _ => Err(read_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ))),
        }
    }

    fn file_digest(&self, path: &str) -> Result<Digest, TreeError> {
        if let Some(d) = self
            .digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Ok(d.clone());
        }
        let digest = super::digest::content_digest(self, path)?;
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_string(), digest.clone());
        Ok(digest)
    }
}

/// A window of the spool file, read with `pread` so that readers never share a position.
struct SpoolReader<'a> {
    file: &'a fs::File,
    offset: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.offset;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.offset += n as u64;
        Ok(n)
    }
}

fn read_spool(spool: &fs::File, node: &Node) -> io::Result<Vec<u8>> {
    let Data::Spool(offset) = node.data else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    SpoolReader {
        file: spool,
        offset,
        end: offset + node.entry.size,
    }
    .read_to_end(&mut out)?;
    Ok(out)
}

fn read_host(path: &Path) -> Result<Vec<u8>, ContextError> {
    fs::read(path).map_err(|source| ContextError::Dockerfile {
        name: path.display().to_string(),
        source,
    })
}

/// The ignore rules of a directory context: `<Dockerfile>.dockerignore` beside the
/// Dockerfile, else `<dir>/.dockerignore`.
fn host_ignore(dir: &Path, dockerfile: Option<&Path>) -> Result<Ignore, ContextError> {
    let mut candidates = Vec::new();
    if let Some(df) = dockerfile {
        let mut name = df.as_os_str().to_owned();
        name.push(".dockerignore");
        candidates.push(PathBuf::from(name));
    }
    candidates.push(dir.join(".dockerignore"));
    for path in candidates {
        match fs::read(&path) {
            Ok(bytes) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Ignore::parse(&String::from_utf8_lossy(&bytes))
                    .map_err(|source| ContextError::Ignore { name, source });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ContextError::ReadIgnore { path, source }),
        }
    }
    Ok(Ignore::default())
}

/// Indexes the directory `host` (the context path `path`, whose `lstat` is `meta`) and
/// what is under it, skipping excluded subtrees that no exception can reach into;
/// [`apply_ignore`] then drops the remaining excluded paths.
fn walk(
    host: &Path,
    path: &str,
    meta: &fs::Metadata,
    ignore: &Ignore,
    nodes: &mut BTreeMap<String, Node>,
) -> Result<(), TreeError> {
    let read_error = |p: &str| {
        let p = p.to_string();
        move |source| TreeError::Read {
            tree: CONTEXT_NAME.into(),
            path: p,
            source,
        }
    };
    let mut entry = tree::host_entry(host, meta).map_err(read_error(path))?;
    entry.uid = 0;
    entry.gid = 0;
    let is_dir = entry.is_dir();
    nodes.insert(
        path.to_string(),
        Node {
            data: if entry.is_file() {
                Data::Host
            } else {
                Data::None
            },
            entry,
        },
    );
    if !is_dir {
        return Ok(());
    }
    for name in tree::list_dir(host, CONTEXT_NAME, path)? {
        let child = rel::join(path, &name);
        let child_host = host.join(&name);
        let excluded = ignore.matches(&child);
        // An excluded file is never looked at (it may be unreadable); an excluded
        // directory is entered only when an exception may reach inside.
        if excluded && ignore.patterns().all(|(_, exception)| !exception) {
            continue;
        }
        let child_meta = fs::symlink_metadata(&child_host).map_err(read_error(&child))?;
        if excluded && !(child_meta.is_dir() && ignore.may_reinclude_under(&child)) {
            continue;
        }
        // Sockets cannot be copied; Docker's context transfer leaves them out too.
        if std::os::unix::fs::FileTypeExt::is_socket(&child_meta.file_type()) {
            continue;
        }
        walk(&child_host, &child, &child_meta, ignore, nodes)?;
    }
    Ok(())
}

/// Drops excluded paths, keeping an excluded directory when something under it is kept
/// (as Docker's walker does for `!` exceptions).
fn apply_ignore(nodes: &mut BTreeMap<String, Node>, ignore: &Ignore) {
    if ignore.is_empty() {
        return;
    }
    let mut needed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut drop = Vec::new();
    // Children sort after their parents, so in reverse every child is seen first.
    for (path, node) in nodes.iter().rev() {
        if path.is_empty() {
            continue;
        }
        let keep = !ignore.matches(path) || (node.entry.is_dir() && needed.contains(path));
        if keep {
            needed.insert(rel::parent(path).to_string());
        } else {
            drop.push(path.clone());
        }
    }
    for path in drop {
        nodes.remove(&path);
    }
}

/// Reads a context archive into nodes, its file data into `spool`.
fn read_archive<R: Read>(
    reader: R,
    spool: &mut fs::File,
) -> Result<BTreeMap<String, Node>, ContextError> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    nodes.insert(
        String::new(),
        Node {
            entry: Entry::dir(0o755, 0, 0, 0),
            data: Data::None,
        },
    );
    let mut archive = tar::Archive::new(reader);
    let mut offset = 0u64;
    let mut next_link = 1u64;
    for item in archive.entries().map_err(ContextError::Archive)? {
        let mut item = item.map_err(ContextError::Archive)?;
        let raw = String::from_utf8_lossy(&item.path_bytes()).into_owned();
        let bad = |reason: &str| ContextError::ArchiveEntry {
            entry: raw.clone(),
            reason: reason.into(),
        };
        let Some(path) = rel::clean(&raw, Above::Refuse) else {
            return Err(bad("the name leads outside the archive"));
        };
        let header = item.header();
        let mode = header.mode().map_err(ContextError::Archive)? & 0o7777;
        let mtime = header
            .mtime()
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let xattrs = archive_xattrs(&mut item).map_err(ContextError::Archive)?;
        let kind = item.header().entry_type();
        let mut entry = Entry {
            kind: Kind::File,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            mtime,
            xattrs,
            link: None,
        };
        use tar::EntryType as T;
        let data = match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                spool
                    .seek(SeekFrom::Start(offset))
                    .map_err(ContextError::Spool)?;
                let n = io::copy(&mut item, spool).map_err(ContextError::Archive)?;
                entry.size = n;
                let at = offset;
                offset += n;
                Data::Spool(at)
            }
            T::Directory => {
                entry.kind = Kind::Dir;
                Data::None
            }
            T::Symlink => {
                let target = item
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                entry.kind = Kind::Symlink(target);
                Data::None
            }
            T::Link => {
                let target = item
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let target = rel::clean(&target, Above::Refuse)
                    .ok_or_else(|| bad("the hard link leads outside the archive"))?;
                let node = nodes
                    .get_mut(&target)
                    .filter(|n| n.entry.is_file())
                    .ok_or_else(|| {
                        bad("the hard link's target is not an earlier file of the archive")
                    })?;
                let id = *node.entry.link.get_or_insert_with(|| {
                    next_link += 1;
                    next_link
                });
                let mut linked = node.clone();
                linked.entry.link = Some(id);
                insert_with_parents(&mut nodes, &path, linked);
                continue;
            }
            T::Char | T::Block => {
                let major = header_num(item.header().device_major());
                let minor = header_num(item.header().device_minor());
                entry.kind = if kind == T::Char {
                    Kind::CharDevice { major, minor }
                } else {
                    Kind::BlockDevice { major, minor }
                };
                Data::None
            }
            T::Fifo => {
                entry.kind = Kind::Fifo;
                Data::None
            }
            // Metadata entries the reader has already applied, or kinds with no file.
            _ => continue,
        };
        if path.is_empty() {
            // `./` itself: the root's metadata.
            if entry.is_dir() {
                nodes.insert(path, Node { entry, data });
            }
            continue;
        }
        insert_with_parents(&mut nodes, &path, Node { entry, data });
    }
    spool.flush().map_err(ContextError::Spool)?;
    Ok(nodes)
}

fn header_num(n: io::Result<Option<u32>>) -> u32 {
    n.ok().flatten().unwrap_or(0)
}

/// Inserts a node, creating directories the archive did not list and replacing whatever a
/// later entry overrides (a non-directory over a directory drops what was under it).
fn insert_with_parents(nodes: &mut BTreeMap<String, Node>, path: &str, node: Node) {
    for dir in rel::ancestors(path) {
        let is_dir = nodes.get(dir).is_some_and(|n| n.entry.is_dir());
        if !is_dir {
            nodes.insert(
                dir.to_string(),
                Node {
                    entry: Entry::dir(0o755, 0, 0, 0),
                    data: Data::None,
                },
            );
        }
    }
    if !node.entry.is_dir() {
        let prefix = format!("{path}/");
        let under: Vec<String> = nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            nodes.remove(&k);
        }
    }
    nodes.insert(path.to_string(), node);
}

/// The `SCHILY.xattr.*` records of an archive entry, filtered as host files' are.
pub(crate) fn archive_xattrs<R: Read>(
    item: &mut tar::Entry<'_, R>,
) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if let Some(exts) = item.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key() {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if tree::kept_xattr(name) {
                        out.insert(name.to_string(), ext.value_bytes().to_vec());
                    }
                }
            }
        }
    }
    Ok(out)
}
