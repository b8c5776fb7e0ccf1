//! The layer of a `COPY` or `ADD` step, built on the host with Docker's semantics (as
//! BuildKit's file operations implement them).
//!
//! The step is planned against three things the builder supplies ([`CopyEnv`]): the tree
//! the sources are read from (the [`Context`](super::context::Context), or a stage's or
//! an image's root filesystem for `COPY --from`), the stage being built (where the
//! destination leads, what exists there), and the stage's users and groups for `--chown`.
//! The result is a [`LayerPlan`]: the entries of the layer, written later as a tar.
//!
//! What happens to each source, in order:
//! - A path is cleaned (`..` may not leave the build context; trailing `/` means nothing)
//!   and, with wildcards, matched with Go's `filepath.Match` component by component; a
//!   wildcard may match nothing (BuildKit allows it), a plain path must exist. Each match
//!   is followed if it is a symlink (inside the tree).
//! - `ADD` of a local file that is a tar archive (plain, gzip, bzip2, xz, zstd: by content)
//!   extracts it into the destination directory instead (`--unpack=false` turns that off;
//!   a URL is extracted only with `--unpack=true`). Entries keep their owners and modes
//!   unless `--chown` (BuildKit applies it to them; `--chmod` it does not); their parents
//!   resolve through the stage's symlinks, as an untar inside the stage would.
//! - A directory's *contents* are copied into the destination, which is created if
//!   missing; sub-directories merge with existing ones (and take the source's metadata).
//!   A directory cannot replace a non-directory ("cannot copy to non-directory"), a file
//!   cannot replace a directory.
//! - A file goes *into* the destination when that is an existing directory or ends in `/`,
//!   and *is* the destination otherwise.
//! - Owners: `--chown` if given; else the source's (root for the build context, whose
//!   owners read as 0; the stage's own for `--from`). `--chmod` (octal) replaces the
//!   permission bits of everything copied, directories included, but not of directories
//!   created on the way.
//! - Created directories (missing parents, a missing destination) get 0755, the `--chown`
//!   owner or root, and a fixed mtime ([`CopySpec::created_mtime`], default 0) so a layer
//!   does not depend on when it was built; copied files keep their mtimes.
//! - Symlinks are copied as symlinks; hard links among the files of one source stay hard
//!   links (as BuildKit's copier does within each source).
//! - The destination is resolved in the stage chroot-style: `COPY x /bin/` where `/bin` is
//!   a symlink to `usr/bin` writes `usr/bin/x`. Every directory on the way to an entry is
//!   in the layer (existing ones with their current metadata), so the layer can be
//!   unpacked on its own into an empty overlay directory.
//!
//! Where we differ on purpose: more than one source item (several arguments or a
//! wildcard's matches) may not write a *file* as a destination that does not end in `/`
//! (the reference's rule, which keeps `COPY a b /x` from silently keeping only `b`;
//! BuildKit does not check, and merging several directories into one stays allowed);
//! unknown `--chown` names are an error; names starting with `.wh.` are refused because a
//! layer would turn them into deletions; `--link` changes nothing, our layers are always
//! independent of what is below.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::Arc;

use dockerfile::{Ignore, IgnoreError};

use super::compress;
use super::fetch::Download;
use super::layer::{Data, LayerPlan, Out};
use super::path::{self as rel, Above};
use super::tree::{resolve, resolve_with, Entry, Kind, SourceTree, Tree, TreeError};
use super::user::{OwnerSpec, UserError, UserLookup};

mod extract;

/// Which instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `COPY`.
    Copy,
    /// `ADD`: also extracts local archives and downloads URLs.
    Add,
}

impl Op {
    fn keyword(self) -> &'static str {
        match self {
            Op::Copy => "COPY",
            Op::Add => "ADD",
        }
    }
}

/// One source of a COPY or ADD.
#[derive(Debug)]
pub enum CopySource {
    /// A path or wildcard pattern in the source tree.
    Path(String),
    /// A here-document (`COPY <<EOF /dest`): a file named `name` (mode 0644).
    Inline {
        /// The file name.
        name: String,
        /// Its content.
        content: Arc<[u8]>,
    },
    /// An `http(s)://` URL of `ADD`, still to be downloaded ([`CopySpec::download`]).
    Url(String),
    /// A downloaded URL.
    Download(Download),
}

/// A COPY or ADD step, its words already expanded.
#[derive(Debug)]
pub struct CopySpec {
    /// COPY or ADD.
    pub op: Op,
    /// The sources, in order.
    pub sources: Vec<CopySource>,
    /// The destination as written (relative to `workdir` unless absolute; a trailing `/`
    /// makes it a directory).
    pub dest: String,
    /// The stage's working directory (`WorkingDir`), absolute; empty for `/`.
    pub workdir: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod` (octal).
    pub chmod: Option<String>,
    /// `ADD --unpack`.
    pub unpack: Option<bool>,
    /// `ADD --checksum` (for a URL).
    pub checksum: Option<String>,
    /// `--exclude` patterns, relative to each copied source.
    pub excludes: Vec<String>,
    /// `--link`: accepted; the layer is the same.
    pub link: bool,
    /// The mtime of directories this step creates (seconds since the epoch).
    pub created_mtime: i64,
}

/// What the builder supplies to plan a step.
pub struct CopyEnv<'a> {
    /// Where sources are read: the context, or a root filesystem for `COPY --from`.
    pub source: &'a dyn SourceTree,
    /// The stage as it is before this step.
    pub stage: &'a dyn Tree,
    /// The stage's users and groups, for `--chown` names.
    pub users: &'a dyn UserLookup,
}

/// A COPY or ADD step that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source could not be read.
    #[error("{source_arg}")]
    Source {
        /// The source as written.
        source_arg: String,
        /// Why.
        #[source]
        source: TreeError,
    },
    /// A source (without wildcards) does not exist.
    #[error("{source_arg}: not found in the {tree}")]
    NotFound {
        /// The source as written.
        source_arg: String,
        /// The tree's name.
        tree: String,
    },
    /// A source climbs out of the build context.
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    /// A source pattern is malformed.
    #[error("{0}: syntax error in pattern")]
    BadPattern(String),
    /// An `--exclude` pattern is malformed.
    #[error("--exclude")]
    Exclude(#[source] IgnoreError),
    /// `--chown` cannot be resolved.
    #[error("--chown={value}")]
    Chown {
        /// The value.
        value: String,
        /// Why.
        #[source]
        source: UserError,
    },
    /// `--chmod` is not an octal mode.
    #[error("invalid chmod parameter: {0:?}: it should be an octal number between 0 and 07777")]
    Chmod(String),
    /// A flag or source kind this builder does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A directory would replace something that is not one.
    #[error("cannot copy to non-directory: {}", rel::display(.0))]
    NotADirectory(String),
    /// A file would replace a directory.
    #[error("cannot replace directory {} with a file", rel::display(.0))]
    ReplaceDir(String),
    /// Several sources would all be written as one file.
    #[error("when using {op} with more than one source file, the destination must be a directory and end with a /")]
    MultipleSources {
        /// COPY or ADD.
        op: &'static str,
    },
    /// A name a layer would read as a deletion.
    #[error("cannot put {} in a layer: names starting with .wh. mark deletions in OCI layers", rel::display(.0))]
    Whiteout(String),
    /// Reading an archive for ADD failed.
    #[error("ADD {source_arg}: cannot read the archive")]
    Archive {
        /// The source as written.
        source_arg: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An archive entry cannot be extracted.
    #[error("ADD {source_arg}: archive entry {entry:?}: {reason}")]
    ArchiveEntry {
        /// The source as written.
        source_arg: String,
        /// The entry's name.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The stage could not be read.
    #[error("cannot read the stage")]
    Stage(#[source] TreeError),
    /// A URL source was not downloaded before planning.
    #[error("ADD {0}: the URL was not downloaded")]
    NotDownloaded(String),
    /// The spool file for archive contents failed.
    #[error("cannot spool archive contents")]
    Spool(#[source] io::Error),
}

fn is_url(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// A git source as BuildKit recognises the common forms (`git@host:repo`, `git://`,
/// `ssh://`, an http(s) URL ending in `.git` with or without a `#ref` fragment).
fn is_git(src: &str) -> bool {
    let no_fragment = src.split('#').next().unwrap_or(src);
    src.starts_with("git@")
        || src.starts_with("git://")
        || src.starts_with("ssh://")
        || (is_url(src) && no_fragment.trim_end_matches('/').ends_with(".git"))
}

impl CopySpec {
    /// A spec with these sources and destination, the working directory `/` and no flags.
    pub fn new(op: Op, sources: Vec<CopySource>, dest: &str) -> CopySpec {
        CopySpec {
            sources,
            ..CopySpec::base(op, dest, "")
        }
    }

    fn base(op: Op, dest: &str, workdir: &str) -> CopySpec {
        CopySpec {
            op,
            sources: Vec::new(),
            dest: dest.into(),
            workdir: workdir.into(),
            chown: None,
            chmod: None,
            unpack: None,
            checksum: None,
            excludes: Vec::new(),
            link: false,
            created_mtime: 0,
        }
    }

    /// The spec of an expanded `COPY` (here-documents as their text, as the builder
    /// expanded it). `COPY --from` is the builder's to resolve: it picks the source tree.
    pub fn from_copy(copy: &dockerfile::Copy, workdir: &str) -> Result<CopySpec, CopyError> {
        if copy.parents {
            return Err(CopyError::Unsupported(
                "COPY --parents is not supported yet".into(),
            ));
        }
        let mut spec = CopySpec::base(Op::Copy, &copy.dest, workdir);
        for source in &copy.sources {
            spec.sources.push(match source {
                dockerfile::Source::Path(p) if is_url(p) || is_git(p) => {
                    return Err(CopyError::Unsupported(format!(
                        "COPY {p}: source can't be a URL for COPY (use ADD)"
                    )))
                }
                dockerfile::Source::Path(p) => CopySource::Path(p.clone()),
                dockerfile::Source::Heredoc(h) => CopySource::Inline {
                    name: h.name.clone(),
                    content: Arc::from(h.text().into_bytes()),
                },
            });
        }
        spec.chown = copy.chown.clone();
        spec.chmod = copy.chmod.clone();
        spec.excludes = copy.excludes.clone();
        spec.link = copy.link;
        Ok(spec)
    }

    /// The spec of an expanded `ADD`; its URLs still need [`CopySpec::download`].
    pub fn from_add(add: &dockerfile::Add, workdir: &str) -> Result<CopySpec, CopyError> {
        let mut spec = CopySpec::base(Op::Add, &add.dest, workdir);
        for source in &add.sources {
            spec.sources.push(match source {
                dockerfile::Source::Path(p) if is_git(p) => {
                    return Err(CopyError::Unsupported(format!(
                        "ADD {p}: git sources are not supported yet"
                    )))
                }
                dockerfile::Source::Path(p) if is_url(p) => CopySource::Url(p.clone()),
                dockerfile::Source::Path(p) => CopySource::Path(p.clone()),
                dockerfile::Source::Heredoc(h) => CopySource::Inline {
                    name: h.name.clone(),
                    content: Arc::from(h.text().into_bytes()),
                },
            });
        }
        if add.checksum.is_some() {
            let urls = spec
                .sources
                .iter()
                .filter(|s| matches!(s, CopySource::Url(_)))
                .count();
            if spec.sources.len() != 1 || urls != 1 {
                return Err(CopyError::Unsupported(
                    "ADD --checksum needs exactly one source, an HTTP(S) URL".into(),
                ));
            }
        }
        spec.chown = add.chown.clone();
        spec.chmod = add.chmod.clone();
        spec.unpack = add.unpack;
        spec.checksum = add.checksum.clone();
        spec.excludes = add.excludes.clone();
        spec.link = add.link;
        Ok(spec)
    }

    /// The URLs still to be downloaded.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s {
            CopySource::Url(u) => Some(u.as_str()),
            _ => None,
        })
    }

    /// Downloads every URL source into a temporary file in `dir` (checked against
    /// `--checksum` when given).
    pub async fn download(&mut self, dir: &Path) -> Result<(), super::fetch::FetchError> {
        for source in &mut self.sources {
            if let CopySource::Url(url) = source {
                let d = super::fetch::download(url, dir, self.checksum.as_deref()).await?;
                *source = CopySource::Download(d);
            }
        }
        Ok(())
    }
}

/// The paths a COPY source selects in `tree`, in Docker's order: the path itself when it
/// has no wildcards (it must exist), else every path whose components match the pattern's
/// (a matching directory is taken whole, not searched further). Paths come back cleaned
/// and root-relative, with the part before the first wildcard resolved.
pub fn expand(tree: &dyn SourceTree, pattern: &str) -> Result<Vec<String>, CopyError> {
    let above = if tree.refuses_escaping_links() {
        Above::Refuse
    } else {
        Above::Clamp
    };
    let cleaned =
        rel::clean(pattern, above).ok_or_else(|| CopyError::OutsideContext(pattern.into()))?;
    let not_found = || CopyError::NotFound {
        source_arg: pattern.into(),
        tree: tree.name().into(),
    };
    let source_err = |e: TreeError| match e {
        TreeError::Missing { .. } | TreeError::NotADirectory { .. } => not_found(),
        other => CopyError::Source {
            source_arg: pattern.into(),
            source: other,
        },
    };
    if !rel::has_wildcards(&cleaned) {
        let followed = resolve(tree, &cleaned, true).map_err(source_err)?;
        if tree.entry(&followed).map_err(source_err)?.is_none() {
            return Err(not_found());
        }
        return Ok(vec![cleaned]);
    }
    let components: Vec<&str> = cleaned.split('/').collect();
    let first_wild = components
        .iter()
        .position(|c| rel::has_wildcards(c))
        .unwrap_or(components.len());
    let prefix = components[..first_wild].join("/");
    let rest = components[first_wild..].join("/");
    rel::glob_match(&rest, "").map_err(|_| CopyError::BadPattern(pattern.into()))?;
    let base = resolve(tree, &prefix, true).map_err(source_err)?;
    let mut out = Vec::new();
    match tree.entry(&base).map_err(source_err)? {
        None => return Err(not_found()),
        Some(e) if e.is_dir() => {
            let depth = rest.split('/').count();
            walk_matches(tree, &base, "", &rest, depth, &mut out).map_err(source_err)?;
        }
        Some(_) => {}
    }
    Ok(out)
}

fn walk_matches(
    tree: &dyn SourceTree,
    base: &str,
    relative: &str,
    pattern: &str,
    depth: usize,
    out: &mut Vec<String>,
) -> Result<(), TreeError> {
    let dir = rel::join(base, relative);
    for name in tree.read_dir(&dir)? {
        let candidate = rel::join(relative, &name);
        if rel::glob_match(pattern, &candidate).unwrap_or(false) {
            out.push(rel::join(base, &candidate));
            continue;
        }
        // `*` never matches `/`, so a pattern of N components only matches N-deep paths.
        if candidate.split('/').count() < depth {
            let path = rel::join(base, &candidate);
            if tree.entry(&path)?.is_some_and(|e| e.is_dir()) {
                walk_matches(tree, base, &candidate, pattern, depth, out)?;
            }
        }
    }
    Ok(())
}

/// Parses `--chmod`: octal, at most 07777.
fn parse_chmod(value: &str) -> Result<u32, CopyError> {
    match u32::from_str_radix(value, 8) {
        Ok(mode) if mode <= 0o7777 && !value.is_empty() => Ok(mode),
        _ if value
            .bytes()
            .any(|b| b.is_ascii_alphabetic() || b == b'+' || b == b'=') =>
        {
            Err(CopyError::Unsupported(format!(
                "--chmod={value}: symbolic modes are not supported yet; use an octal mode"
            )))
        }
        _ => Err(CopyError::Chmod(value.into())),
    }
}

/// The stage with what this step has planned so far on top: where a later source's
/// destination leads depends on what earlier sources wrote.
struct Overlay<'p> {
    out: &'p BTreeMap<String, Out>,
    stage: &'p dyn Tree,
}

impl Tree for Overlay<'_> {
    fn entry(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        if let Some(o) = self.out.get(path) {
            return Ok(Some(o.entry.clone()));
        }
        // Something this step wrote over a directory hides what the stage had under it.
        for dir in rel::ancestors(path) {
            if self.out.get(dir).is_some_and(|o| !o.entry.is_dir()) {
                return Ok(None);
            }
        }
        self.stage.entry(path)
    }
    fn name(&self) -> &str {
        self.stage.name()
    }
}

struct Planner<'a, 'e> {
    spec: &'a CopySpec,
    env: &'e CopyEnv<'a>,
    plan: LayerPlan<'a>,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    excludes: Option<Ignore>,
    /// Whether more than one item is copied (for [`CopyError::MultipleSources`]).
    multi: bool,
    /// The destination, root-relative, before resolving symlinks.
    dest: String,
    /// Whether the destination was written as a directory (`/` at the end, `.`).
    dest_is_dir: bool,
    /// Hard-link groups: (source item, the tree's link id) → the layer's group.
    groups: HashMap<(usize, u64), u64>,
    next_group: u64,
    item: usize,
}

/// Plans the layer of a COPY or ADD step.
pub fn plan<'a>(spec: &'a CopySpec, env: &CopyEnv<'a>) -> Result<LayerPlan<'a>, CopyError> {
    let owner = match &spec.chown {
        Some(value) => Some(
            OwnerSpec::parse(value)
                .and_then(|o| o.resolve(env.users))
                .map_err(|source| CopyError::Chown {
                    value: value.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let mode = spec.chmod.as_deref().map(parse_chmod).transpose()?;
    let excludes = if spec.excludes.is_empty() {
        None
    } else {
        Some(Ignore::from_patterns(&spec.excludes).map_err(CopyError::Exclude)?)
    };
    if spec.checksum.is_some()
        && !spec
            .sources
            .iter()
            .all(|s| matches!(s, CopySource::Download(_) | CopySource::Url(_)))
    {
        return Err(CopyError::Unsupported(
            "ADD --checksum needs an HTTP(S) URL source".into(),
        ));
    }
    let absolute = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        format!("{}/{}", spec.workdir, spec.dest)
    };
    let dest = rel::clean(&absolute, Above::Clamp).unwrap_or_default();
    let dest_is_dir = spec.dest.is_empty()
        || spec.dest == "."
        || spec.dest.ends_with('/')
        || spec.dest.ends_with("/.");

    // Expand every pattern first: the number of items decides whether a file may be
    // written as the destination itself.
    let mut expanded = Vec::with_capacity(spec.sources.len());
    let mut items = 0;
    for source in &spec.sources {
        match source {
            CopySource::Path(p) => {
                let matches = expand(env.source, p)?;
                items += matches.len();
                expanded.push(matches);
            }
            _ => {
                items += 1;
                expanded.push(Vec::new());
            }
        }
    }
    let mut planner = Planner {
        spec,
        env,
        plan: LayerPlan::new(Some(env.source)),
        owner,
        mode,
        excludes,
        multi: items > 1,
        dest,
        dest_is_dir,
        groups: HashMap::new(),
        next_group: 0,
        item: 0,
    };
    for (source, matches) in spec.sources.iter().zip(expanded) {
        match source {
            CopySource::Path(p) => {
                for m in matches {
                    planner.item += 1;
                    planner.add_path(p, &m)?;
                }
            }
            CopySource::Inline { name, content } => {
                planner.item += 1;
                let mut entry = Entry::dir(0o644, 0, 0, spec.created_mtime);
                entry.kind = Kind::File;
                entry.size = content.len() as u64;
                let entry = planner.adjust(entry);
                planner.place_file(name, entry, Data::Inline(content.clone()))?;
            }
            CopySource::Download(d) => {
                planner.item += 1;
                planner.add_download(d)?;
            }
            CopySource::Url(u) => return Err(CopyError::NotDownloaded(u.clone())),
        }
    }
    planner.fill_parents()?;
    Ok(planner.plan)
}

impl<'a> Planner<'a, '_> {
    fn overlay(&self) -> Overlay<'_> {
        Overlay {
            out: &self.plan.entries,
            stage: self.env.stage,
        }
    }

    fn lookup(&self, path: &str) -> Result<Option<Entry>, CopyError> {
        self.overlay().entry(path).map_err(CopyError::Stage)
    }

    /// Where the destination leads, its missing directories taken as they are.
    fn resolved_dest(&self) -> Result<String, CopyError> {
        resolve_with(&self.overlay(), &self.dest, true, true).map_err(|e| match e {
            TreeError::NotADirectory { path, .. } => CopyError::NotADirectory(path),
            e => CopyError::Stage(e),
        })
    }

    /// A directory this step creates.
    fn created_dir(&self, owner: Option<(u32, u32)>) -> Entry {
        let (uid, gid) = owner.unwrap_or((0, 0));
        Entry::dir(0o755, uid, gid, self.spec.created_mtime)
    }

    /// Creates `path` and its missing parents (resolved paths: nothing on the way is a
    /// symlink).
    fn mkdir_all(&mut self, path: &str, owner: Option<(u32, u32)>) -> Result<(), CopyError> {
        let mut current = String::new();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            current = rel::join(&current, component);
            match self.lookup(&current)? {
                Some(e) if e.is_dir() => {}
                Some(_) => return Err(CopyError::NotADirectory(current)),
                None => {
                    let entry = self.created_dir(owner);
                    self.emit(&current, entry, Data::None)?;
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, path: &str, entry: Entry, data: Data) -> Result<(), CopyError> {
        if rel::base(path).starts_with(".wh.") {
            return Err(CopyError::Whiteout(path.into()));
        }
        if path.is_empty() {
            return Ok(());
        }
        if !entry.is_dir() {
            let prefix = format!("{path}/");
            let under: Vec<String> = self
                .plan
                .entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .collect();
            for k in under {
                self.plan.entries.remove(&k);
            }
        }
        self.plan
            .entries
            .insert(path.to_string(), Out { entry, data });
        Ok(())
    }

    fn new_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    /// A copied entry's metadata: `--chown`, `--chmod`, and its hard-link group.
    fn adjust(&mut self, mut entry: Entry) -> Entry {
        if let Some((uid, gid)) = self.owner {
            entry.uid = uid;
            entry.gid = gid;
        }
        if let Some(mode) = self.mode {
            if !matches!(entry.kind, Kind::Symlink(_)) {
                entry.mode = mode;
            }
        }
        entry.link = match (entry.is_file(), entry.link) {
            (true, Some(id)) => match self.groups.get(&(self.item, id)) {
                Some(&group) => Some(group),
                None => {
                    let group = self.new_group();
                    self.groups.insert((self.item, id), group);
                    Some(group)
                }
            },
            _ => None,
        };
        entry
    }

    fn add_path(&mut self, arg: &str, matched: &str) -> Result<(), CopyError> {
        let tree = self.env.source;
        let source_err = |e| CopyError::Source {
            source_arg: arg.into(),
            source: e,
        };
        let followed = resolve(tree, matched, true).map_err(source_err)?;
        let entry =
            tree.entry(&followed)
                .map_err(source_err)?
                .ok_or_else(|| CopyError::NotFound {
                    source_arg: arg.into(),
                    tree: tree.name().into(),
                })?;
        if self.spec.op == Op::Add && self.spec.unpack.unwrap_or(true) && entry.is_file() {
            let archive = compress::is_archive(tree.open(&followed).map_err(source_err)?);
            if archive {
                let reader = tree.open(&followed).map_err(source_err)?;
                return self.extract(arg, reader);
            }
        }
        if entry.is_dir() {
            return self.copy_dir(arg, &followed);
        }
        let data = if entry.is_file() {
            Data::Tree(followed)
        } else {
            Data::None
        };
        let mut entry = entry;
        // A single file has no partner to stay linked to.
        entry.link = None;
        let entry = self.adjust(entry);
        self.place_file(rel::base(matched), entry, data)
    }

    fn add_download(&mut self, d: &'a Download) -> Result<(), CopyError> {
        if self.spec.unpack == Some(true) {
            let file = std::fs::File::open(d.path()).map_err(|source| CopyError::Archive {
                source_arg: d.url.clone(),
                source,
            })?;
            if compress::is_archive(file) {
                let file = std::fs::File::open(d.path()).map_err(|source| CopyError::Archive {
                    source_arg: d.url.clone(),
                    source,
                })?;
                return self.extract(&d.url.clone(), Box::new(file));
            }
        }
        // Docker: a downloaded file is 0600 unless --chmod says otherwise, and takes its
        // mtime from Last-Modified.
        let mut entry = Entry::dir(0o600, 0, 0, d.mtime.unwrap_or(self.spec.created_mtime));
        entry.kind = Kind::File;
        entry.size = d.size;
        let entry = self.adjust(entry);
        self.place_file(&d.name, entry, Data::Host(d.path().to_path_buf()))
    }

    /// Puts one non-directory: into the destination if that is (or is written as) a
    /// directory, as the destination otherwise.
    fn place_file(&mut self, name: &str, entry: Entry, data: Data) -> Result<(), CopyError> {
        if self.dest_is_dir {
            let dest = self.dest.clone();
            self.mkdir_all_through(&dest)?;
        }
        let resolved = self.resolved_dest()?;
        let existing = self.lookup(&resolved)?;
        let target = match existing {
            Some(e) if e.is_dir() => rel::join(&resolved, name),
            _ => {
                if self.multi {
                    return Err(CopyError::MultipleSources {
                        op: self.spec.op.keyword(),
                    });
                }
                resolved
            }
        };
        if self.lookup(&target)?.is_some_and(|e| e.is_dir()) {
            return Err(CopyError::ReplaceDir(target));
        }
        let owner = self.owner;
        self.mkdir_all(rel::parent(&target), owner)?;
        self.emit(&target, entry, data)
    }

    /// Creates the destination written as a directory, following symlinks on the way.
    fn mkdir_all_through(&mut self, dest: &str) -> Result<(), CopyError> {
        let saved = std::mem::replace(&mut self.dest, dest.to_string());
        let resolved = self.resolved_dest();
        self.dest = saved;
        let owner = self.owner;
        self.mkdir_all(&resolved?, owner)
    }

    fn copy_dir(&mut self, arg: &str, source_dir: &str) -> Result<(), CopyError> {
        let resolved = self.resolved_dest()?;
        match self.lookup(&resolved)? {
            None => {
                let owner = self.owner;
                self.mkdir_all(&resolved, owner)?;
            }
            Some(e) if e.is_dir() => {}
            Some(_) => return Err(CopyError::NotADirectory(resolved)),
        }
        let mut pending = Vec::new();
        self.copy_children(arg, source_dir, "", &resolved, &mut pending)
    }

    /// Copies what is in `source_dir` into `dest_dir`. `pending` holds excluded
    /// directories entered for an `--exclude` exception: they are created only when
    /// something under them is copied.
    fn copy_children(
        &mut self,
        arg: &str,
        source_dir: &str,
        relative: &str,
        dest_dir: &str,
        pending: &mut Vec<(String, Entry)>,
    ) -> Result<(), CopyError> {
        let tree = self.env.source;
        let source_err = |e| CopyError::Source {
            source_arg: arg.into(),
            source: e,
        };
        for name in tree.read_dir(source_dir).map_err(source_err)? {
            let source = rel::join(source_dir, &name);
            let rel_path = rel::join(relative, &name);
            let dest = rel::join(dest_dir, &name);
            let entry =
                tree.entry(&source)
                    .map_err(source_err)?
                    .ok_or_else(|| CopyError::Source {
                        source_arg: arg.into(),
                        source: TreeError::Missing {
                            tree: tree.name().into(),
                            path: source.clone(),
                        },
                    })?;
            let excluded = self
                .excludes
                .as_ref()
                .is_some_and(|ex| ex.matches(&rel_path));
            if entry.is_dir() {
                if excluded {
                    if self
                        .excludes
                        .as_ref()
                        .is_some_and(|ex| ex.may_reinclude_under(&rel_path))
                    {
                        pending.push((dest.clone(), entry));
                        self.copy_children(arg, &source, &rel_path, &dest, pending)?;
                        if pending.last().is_some_and(|(p, _)| *p == dest) {
                            pending.pop();
                        }
                    }
                    continue;
                }
                self.flush_pending(pending)?;
                self.put_dir(&dest, entry)?;
                self.copy_children(arg, &source, &rel_path, &dest, pending)?;
            } else {
                if excluded {
                    continue;
                }
                self.flush_pending(pending)?;
                if self.lookup(&dest)?.is_some_and(|e| e.is_dir()) {
                    return Err(CopyError::ReplaceDir(dest));
                }
                let data = if entry.is_file() {
                    Data::Tree(source)
                } else {
                    Data::None
                };
                let entry = self.adjust(entry);
                self.emit(&dest, entry, data)?;
            }
        }
        Ok(())
    }

    fn put_dir(&mut self, dest: &str, entry: Entry) -> Result<(), CopyError> {
        match self.lookup(dest)? {
            Some(e) if !e.is_dir() => return Err(CopyError::NotADirectory(dest.into())),
            _ => {}
        }
        let entry = self.adjust(entry);
        self.emit(dest, entry, Data::None)
    }

    fn flush_pending(&mut self, pending: &mut Vec<(String, Entry)>) -> Result<(), CopyError> {
        for (dest, entry) in std::mem::take(pending) {
            self.put_dir(&dest, entry)?;
        }
        Ok(())
    }

    /// Adds every directory on the way to an entry that the step did not create, with its
    /// metadata in the stage, so the layer unpacks on its own.
    fn fill_parents(&mut self) -> Result<(), CopyError> {
        let mut missing = Vec::new();
        for path in self.plan.entries.keys() {
            for dir in rel::ancestors(path) {
                if !self.plan.entries.contains_key(dir) {
                    missing.push(dir.to_string());
                }
            }
        }
        missing.sort();
        missing.dedup();
        for dir in missing {
            let entry = match self.env.stage.entry(&dir).map_err(CopyError::Stage)? {
                Some(e) if e.is_dir() => e,
                _ => self.created_dir(None),
            };
            self.plan.entries.insert(
                dir,
                Out {
                    entry,
                    data: Data::None,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_values() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert_eq!(parse_chmod("04755").unwrap(), 0o4755);
        assert!(matches!(parse_chmod("10000"), Err(CopyError::Chmod(_))));
        assert!(matches!(parse_chmod("u+x"), Err(CopyError::Unsupported(_))));
        assert!(matches!(parse_chmod("9"), Err(CopyError::Chmod(_))));
    }

    #[test]
    fn git_and_urls() {
        assert!(is_git("https://github.com/a/b.git"));
        assert!(is_git("https://github.com/a/b.git#main:docs"));
        assert!(is_git("git@github.com:a/b.git"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert!(is_url("http://127.0.0.1/x"));
    }
}
