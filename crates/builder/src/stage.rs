//! The stage a step is planned against, known on the host without unpacking it: an index
//! of the stage's layers (the base image's, then each step's), read from their tars in
//! order with OCI whiteouts applied. It is the [`Tree`] a COPY/ADD/WORKDIR step needs
//! (where a destination leads, what exists and with which metadata) and, through
//! [`StageTree::users`], its `/etc/passwd` and `/etc/group`, whose contents it keeps.
//!
//! Whiteouts (image-spec `layer.md`): `.wh.NAME` removes `NAME` (and all under it) of
//! lower layers; `.wh..wh..opq` in a directory removes everything lower layers had in it.
//! An entry replaces what was at its path, a non-directory also everything under it; a
//! directory entry over a directory replaces only its metadata.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

use super::compress;
use super::path::{self as rel, Above};
use super::tree::{Entry, Kind, Tree, TreeError};
use super::user::UserDb;

/// Files whose contents the index keeps (for `--chown` and `USER` lookups).
const KEPT: [&str; 2] = ["etc/passwd", "etc/group"];

/// Reading a layer into the index failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The layer stream could not be read.
    #[error("cannot read layer {layer} of the stage")]
    Read {
        /// The layer's position (0 is the first).
        layer: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A stage's files as the merged view of its layers (metadata only, plus the user
/// database's contents).
#[derive(Debug, Clone)]
pub struct StageTree {
    name: String,
    entries: BTreeMap<String, (Entry, usize)>,
    kept: HashMap<String, Vec<u8>>,
    layers: usize,
}

impl StageTree {
    /// An empty stage (`FROM scratch`), called `name` in messages.
    pub fn new(name: &str) -> StageTree {
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), (Entry::dir(0o755, 0, 0, 0), 0));
        StageTree {
            name: name.into(),
            entries,
            kept: HashMap::new(),
            layers: 0,
        }
    }

    /// How many layers were applied.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Applies the next layer, a tar stream (gzip, zstd… or plain: detected).
    pub fn apply_layer<R: Read>(&mut self, layer: R) -> Result<(), StageError> {
        let index = self.layers;
        let err = |source| StageError::Read {
            layer: index,
            source,
        };
        let (_, reader) = compress::decompress(layer).map_err(err)?;
        let mut archive = tar::Archive::new(reader);
        for item in archive.entries().map_err(err)? {
            let mut item = item.map_err(err)?;
            let raw = String::from_utf8_lossy(&item.path_bytes()).into_owned();
            // Layers are relative; a `..` cannot climb out of the root filesystem.
            let path = rel::clean(&raw, Above::Clamp).unwrap_or_default();
            let name = rel::base(&path);
            let dir = rel::parent(&path).to_string();
            if name == ".wh..wh..opq" {
                self.remove_under(&dir, Some(index));
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let target = rel::join(&dir, hidden);
                self.remove_under(&target, None);
                self.entries.remove(&target);
                self.kept.remove(&target);
                continue;
            }
            let header = item.header().clone();
            let mut entry = Entry {
                kind: Kind::File,
                mode: header.mode().map_err(err)? & 0o7777,
                uid: header
                    .uid()
                    .ok()
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or(0),
                gid: header
                    .gid()
                    .ok()
                    .and_then(|g| u32::try_from(g).ok())
                    .unwrap_or(0),
                size: header.size().unwrap_or(0),
                mtime: header
                    .mtime()
                    .map(|t| i64::try_from(t).unwrap_or(i64::MAX))
                    .unwrap_or(0),
                xattrs: super::context::archive_xattrs(&mut item).map_err(err)?,
                link: None,
            };
            use tar::EntryType as T;
            match header.entry_type() {
                T::Regular | T::Continuous | T::GNUSparse => {
                    if KEPT.contains(&path.as_str()) {
                        let mut content = Vec::new();
                        item.read_to_end(&mut content).map_err(err)?;
                        entry.size = content.len() as u64;
                        self.kept.insert(path.clone(), content);
                    } else {
                        self.kept.remove(&path);
                    }
                }
                T::Directory => {
                    entry.kind = Kind::Dir;
                    entry.size = 0;
                }
                T::Symlink => {
                    let target = item
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    entry.kind = Kind::Symlink(target);
                    entry.size = 0;
                }
                T::Link => {
                    let target = item
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let target = rel::clean(&target, Above::Clamp).unwrap_or_default();
                    if let Some((linked, _)) = self.entries.get(&target) {
                        entry = linked.clone();
                    }
                    match self.kept.get(&target).cloned() {
                        Some(content) if KEPT.contains(&path.as_str()) => {
                            self.kept.insert(path.clone(), content);
                        }
                        _ => {
                            self.kept.remove(&path);
                        }
                    }
                }
                T::Char | T::Block => {
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    entry.kind = if header.entry_type() == T::Char {
                        Kind::CharDevice { major, minor }
                    } else {
                        Kind::BlockDevice { major, minor }
                    };
                    entry.size = 0;
                }
                T::Fifo => {
                    entry.kind = Kind::Fifo;
                    entry.size = 0;
                }
                _ => continue,
            }
            if path.is_empty() {
                if entry.is_dir() {
                    self.entries.insert(path, (entry, index));
                }
                continue;
            }
            for parent in rel::ancestors(&path) {
                let is_dir = self.entries.get(parent).is_some_and(|(e, _)| e.is_dir());
                if !is_dir {
                    self.remove_under(parent, None);
                    self.entries
                        .insert(parent.to_string(), (Entry::dir(0o755, 0, 0, 0), index));
                }
            }
            if !entry.is_dir() {
                self.remove_under(&path, None);
            }
            self.entries.insert(path, (entry, index));
        }
        self.layers += 1;
        Ok(())
    }

    /// Removes what is under `dir` (not `dir` itself); only what lower layers than
    /// `below` put there, when given.
    fn remove_under(&mut self, dir: &str, below: Option<usize>) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, (_, layer))| !k.is_empty() && below.is_none_or(|b| *layer < b))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
            self.kept.remove(&k);
        }
    }

    /// The stage's `/etc/passwd` and `/etc/group` (empty when missing).
    pub fn users(&self) -> UserDb {
        let text = |p: &str| {
            self.kept
                .get(p)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        UserDb::parse(&text(KEPT[0]), &text(KEPT[1]))
    }

    /// Every path, in order (the root is `""`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

impl Tree for StageTree {
    fn entry(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        Ok(self.entries.get(path).map(|(e, _)| e.clone()))
    }
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserLookup;

    fn layer(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match kind {
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
                'l' => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_with_whiteouts() {
        let mut stage = StageTree::new("stage");
        stage
            .apply_layer(
                &layer(&[
                    ("etc/", 'd', ""),
                    ("etc/passwd", 'f', "app:x:1500:1600::/:/bin/sh\n"),
                    ("usr/bin/", 'd', ""),
                    ("bin", 'l', "usr/bin"),
                    ("opt/a/x", 'f', "x"),
                    ("opt/a/y", 'f', "y"),
                    ("gone/z", 'f', "z"),
                ])[..],
            )
            .unwrap();
        assert_eq!(stage.users().user("app").unwrap(), Some((1500, 1600)));
        stage
            .apply_layer(
                &layer(&[
                    ("opt/a/.wh..wh..opq", 'f', ""),
                    ("opt/a/new", 'f', "n"),
                    (".wh.gone", 'f', ""),
                    ("etc/.wh.passwd", 'f', ""),
                ])[..],
            )
            .unwrap();
        let paths: Vec<&str> = stage.paths().collect();
        assert_eq!(
            paths,
            [
                "",
                "bin",
                "etc",
                "opt",
                "opt/a",
                "opt/a/new",
                "usr",
                "usr/bin"
            ]
        );
        assert_eq!(stage.users().user("app").unwrap(), None);
        assert_eq!(
            crate::tree::resolve(&stage, "bin/sh", true).unwrap(),
            "usr/bin/sh"
        );
        assert_eq!(stage.layers(), 2);
    }
}
