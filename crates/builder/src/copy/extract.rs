//! `ADD` of a local archive (or a URL with `--unpack=true`): its entries become the layer's,
//! under the destination directory, with tar -x semantics.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};

use super::super::compress;
use super::super::layer::Data;
use super::super::path::{self as rel, Above};
use super::super::tree::{resolve_with, Entry, Kind, TreeError};
use super::{CopyError, Planner};

impl Planner<'_, '_> {
    /// Extracts an archive into the destination directory (tar -x semantics: entries
    /// replace what is there, directories merge and take the archive's metadata).
    pub(super) fn extract(
        &mut self,
        arg: &str,
        reader: Box<dyn Read + '_>,
    ) -> Result<(), CopyError> {
        let resolved = self.resolved_dest()?;
        match self.lookup(&resolved)? {
            None => {
                let owner = self.owner;
                self.mkdir_all(&resolved, owner)?;
            }
            Some(e) if e.is_dir() => {}
            Some(_) => return Err(CopyError::NotADirectory(resolved)),
        }
        let archive_err = |source| CopyError::Archive {
            source_arg: arg.into(),
            source,
        };
        if self.plan.spool.is_none() {
            self.plan.spool = Some(tempfile::tempfile().map_err(CopyError::Spool)?);
        }
        let (_, reader) = compress::decompress(reader).map_err(archive_err)?;
        let mut archive = tar::Archive::new(reader);
        let mut archive_files: HashSet<String> = HashSet::new();
        for item in archive.entries().map_err(archive_err)? {
            let mut item = item.map_err(archive_err)?;
            let raw = String::from_utf8_lossy(&item.path_bytes()).into_owned();
            let bad = |reason: &str| CopyError::ArchiveEntry {
                source_arg: arg.into(),
                entry: raw.clone(),
                reason: reason.into(),
            };
            let name = rel::clean(&raw, Above::Refuse)
                .ok_or_else(|| bad("it leads outside the destination"))?;
            if name.is_empty() {
                // `./`: the destination itself, which Docker's untar leaves as it is.
                continue;
            }
            // Parents resolve chroot-style, as Docker's untar inside the stage's root does:
            // `bin/tool` lands in `usr/bin` when the stage's `bin` is a link to it.
            let parent = resolve_with(
                &self.overlay(),
                &rel::join(&resolved, rel::parent(&name)),
                true,
                true,
            )
            .map_err(|e| match e {
                TreeError::NotADirectory { .. } => bad("a parent of it is not a directory"),
                e => CopyError::Stage(e),
            })?;
            self.mkdir_all(&parent, None).map_err(|e| match e {
                CopyError::NotADirectory(_) => bad("a parent of it is not a directory"),
                e => e,
            })?;
            let target = rel::join(&parent, rel::base(&name));
            let header = item.header().clone();
            let mode = header.mode().map_err(archive_err)? & 0o7777;
            let (uid, gid) = match self.owner {
                Some(owner) => owner,
                None => (
                    header
                        .uid()
                        .ok()
                        .and_then(|u| u32::try_from(u).ok())
                        .unwrap_or(0),
                    header
                        .gid()
                        .ok()
                        .and_then(|g| u32::try_from(g).ok())
                        .unwrap_or(0),
                ),
            };
            let mtime = header
                .mtime()
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let xattrs = super::super::context::archive_xattrs(&mut item).map_err(archive_err)?;
            let mut entry = Entry {
                kind: Kind::File,
                mode,
                uid,
                gid,
                size: 0,
                mtime,
                xattrs,
                link: None,
            };
            use tar::EntryType as T;
            let kind = header.entry_type();
            let data = match kind {
                T::Regular | T::Continuous | T::GNUSparse => {
                    let spool = self
                        .plan
                        .spool
                        .as_mut()
                        .ok_or_else(|| CopyError::Spool(io::ErrorKind::NotFound.into()))?;
                    let offset = spool.seek(SeekFrom::End(0)).map_err(CopyError::Spool)?;
                    let n = io::copy(&mut item, spool).map_err(archive_err)?;
                    entry.size = n;
                    Data::Spool(offset)
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
                    let link = item
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let link = rel::clean(&link, Above::Refuse)
                        .ok_or_else(|| bad("its hard link leads outside the destination"))?;
                    let link_parent = resolve_with(
                        &self.overlay(),
                        &rel::join(&resolved, rel::parent(&link)),
                        true,
                        true,
                    )
                    .map_err(CopyError::Stage)?;
                    let link_path = rel::join(&link_parent, rel::base(&link));
                    let Some(first) = self
                        .plan
                        .entries
                        .get(&link_path)
                        .filter(|o| o.entry.is_file() && archive_files.contains(&link_path))
                        .cloned()
                    else {
                        return Err(bad(
                            "its hard link target is not an earlier file of the archive",
                        ));
                    };
                    let group = match first.entry.link {
                        Some(g) => g,
                        None => {
                            let g = self.new_group();
                            if let Some(o) = self.plan.entries.get_mut(&link_path) {
                                o.entry.link = Some(g);
                            }
                            g
                        }
                    };
                    let mut linked = first;
                    linked.entry.link = Some(group);
                    archive_files.insert(target.clone());
                    self.emit(&target, linked.entry, linked.data)?;
                    continue;
                }
                T::Char | T::Block => {
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
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
                _ => continue,
            };
            let is_file = entry.is_file();
            self.emit(&target, entry, data)?;
            if is_file {
                archive_files.insert(target);
            } else {
                archive_files.remove(&target);
            }
        }
        Ok(())
    }
}
