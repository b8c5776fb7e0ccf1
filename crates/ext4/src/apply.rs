//! The OCI layer applier: one streaming pass over a (possibly compressed) tar per layer.
//!
//! Follows the OCI image spec's "Applying Changesets": `.wh.NAME` removes NAME from the
//! layers below, `.wh..wh..opq` hides everything below the directory from lower layers, a
//! later entry replaces an earlier one whatever the types (a directory over a directory
//! merges). Hard links resolve against the tree as it stands at that point of the stream.

use std::io::{BufRead, BufReader, Read};

use crate::data::{self, DataError};
use crate::finish::State;
use crate::tree::{clean_path, lossy, Body, Meta, Node, Time, Xattr};
use crate::{xattr, Ext4Error};

/// ext4's limit on the link count of a file.
const MAX_LINKS: u32 = 65_000;

/// What the first bytes of a layer say it is.
#[derive(Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Seconds with an optional fraction, as PAX writes times ("1700000000.5").
fn parse_pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = whole.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().ok()?;
    Some(if neg && nsec > 0 {
        Time {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        }
    } else if neg {
        Time { sec: -sec, nsec: 0 }
    } else {
        Time { sec, nsec }
    })
}

/// Metadata of one tar entry, PAX records applied.
struct EntryMeta {
    meta: Meta,
    major: u32,
    minor: u32,
}

fn entry_meta<R: Read>(e: &mut tar::Entry<R>) -> std::io::Result<EntryMeta> {
    let h = e.header();
    let mtime = Time {
        sec: h.mtime().unwrap_or(0) as i64,
        nsec: 0,
    };
    let mut m = Meta {
        perm: (h.mode()? & 0o7777) as u16,
        uid: h.uid()? as u32,
        gid: h.gid()? as u32,
        atime: mtime,
        mtime,
        ctime: mtime,
        xattrs: Vec::new(),
    };
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    let (mut atime, mut ctime) = (None, None);
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext.key_bytes();
            let val = ext.value_bytes();
            match key {
                b"mtime" => {
                    if let Some(t) = parse_pax_time(val) {
                        m.mtime = t;
                    }
                }
                b"atime" => atime = parse_pax_time(val),
                b"ctime" => ctime = parse_pax_time(val),
                b"uid" => {
                    if let Some(v) = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok()) {
                        m.uid = v;
                    }
                }
                b"gid" => {
                    if let Some(v) = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok()) {
                        m.gid = v;
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        m.xattrs.push(Xattr {
                            name: name.to_vec(),
                            value: val.to_vec(),
                        });
                    }
                }
            }
        }
    }
    m.atime = atime.unwrap_or(m.mtime);
    m.ctime = ctime.unwrap_or(m.mtime);
    Ok(EntryMeta {
        meta: m,
        major,
        minor,
    })
}

impl State {
    /// Applies one layer stream on top of the tree.
    pub(crate) fn apply_layer<R: Read>(&mut self, reader: R, name: &str) -> Result<(), Ext4Error> {
        self.layers += 1;
        let layer = self.layers;
        let read_err = |source| Ext4Error::ReadLayer {
            layer: name.to_string(),
            source,
        };
        let mut buffered = BufReader::with_capacity(1 << 16, reader);
        let kind = detect(buffered.fill_buf().map_err(read_err)?);
        let stream: Box<dyn Read + '_> = match kind {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(read_err)?)
            }
        };
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let path = entry.path_bytes().into_owned();
            self.apply_entry(&mut entry, &path, layer)
                .map_err(|reason| match reason {
                    EntryError::Bad(reason) => Ext4Error::BadEntry {
                        layer: name.to_string(),
                        entry: lossy(&path),
                        reason,
                    },
                    EntryError::Fatal(e) => e,
                })?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: &[u8],
        layer: u32,
    ) -> Result<(), EntryError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let mut em = entry_meta(entry).map_err(|e| EntryError::Bad(format!("bad header: {e}")))?;
        check_xattrs(&mut em.meta, path)?;
        let mut comps = clean_path(path);
        let Some(name) = comps.pop() else {
            // The root itself ("./"): only a directory may stand there.
            if kind == T::Directory {
                self.tree.node_mut(crate::tree::ROOT).meta = em.meta;
                return Ok(());
            }
            return Err(EntryError::Bad(
                "only a directory can replace the root".into(),
            ));
        };
        let implicit = Meta {
            perm: 0o755,
            ..em.meta.clone()
        };
        let implicit = Meta {
            xattrs: Vec::new(),
            ..implicit
        };
        let dir = self
            .tree
            .resolve_dir(&comps, Some((&implicit, layer)))
            .map_err(|e| EntryError::Bad(e.to_string()))?;

        // Whiteouts.
        if let Some(target) = name.strip_prefix(b".wh.") {
            if target == b".wh..opq" {
                self.tree.prune_lower(dir, layer, &mut self.alloc);
            } else if target.starts_with(b".wh.") {
                // Other aufs metadata (.wh..wh.plnk and friends): not part of the tree.
            } else if target.is_empty() || target == b"." || target == b".." {
                return Err(EntryError::Bad("whiteout of an invalid name".into()));
            } else if let Some(child) = self.tree.lookup(dir, target) {
                if child.layer < layer {
                    self.tree.unlink(dir, target, &mut self.alloc);
                } else if self.tree.is_dir(child.id) {
                    self.tree.prune_lower(child.id, layer, &mut self.alloc);
                }
            }
            return Ok(());
        }
        if name.len() > crate::tree::MAX_NAME {
            return Err(EntryError::Bad("name longer than 255 bytes".into()));
        }

        let body = match kind {
            T::Directory => {
                if let Some(child) = self.tree.lookup(dir, &name) {
                    if self.tree.is_dir(child.id) {
                        self.tree.node_mut(child.id).meta = em.meta;
                        self.tree.touch(dir, &name, layer);
                        return Ok(());
                    }
                }
                Body::Dir {
                    parent: dir,
                    children: Default::default(),
                }
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size();
                // Release what the name held first so its blocks can be reused.
                self.tree.unlink(dir, &name, &mut self.alloc);
                let extents = data::store(entry, size, &mut self.alloc, &self.image, &mut self.buf)
                    .map_err(|e| match e {
                        DataError::Read(e) => EntryError::Bad(format!("cannot read content: {e}")),
                        DataError::Write(e) => EntryError::Fatal(Ext4Error::WriteImage(e)),
                        DataError::NoSpace => EntryError::Fatal(Ext4Error::NoSpace {
                            size: self.alloc.limit() * crate::layout::BLOCK,
                            reason: format!("no room for the {size} bytes of {:?}", lossy(path)),
                        }),
                        DataError::TooLarge => EntryError::Bad(format!(
                            "file of {size} bytes is larger than ext4 allows"
                        )),
                    })?;
                Body::File { size, extents }
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Bad("symlink without a target".into()))?
                    .into_owned();
                if target.is_empty() || target.len() >= 4096 {
                    return Err(EntryError::Bad(format!(
                        "symlink target of {} bytes",
                        target.len()
                    )));
                }
                Body::Symlink(target)
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Bad("hard link without a target".into()))?
                    .into_owned();
                return self.hard_link(dir, &name, &target, layer);
            }
            T::Char | T::Block if em.major > 0xfff || em.minor > 0xf_ffff => {
                return Err(EntryError::Bad(format!(
                    "device number {}:{} is out of range (12-bit major, 20-bit minor)",
                    em.major, em.minor
                )));
            }
            T::Char => Body::CharDev {
                major: em.major,
                minor: em.minor,
            },
            T::Block => Body::BlockDev {
                major: em.major,
                minor: em.minor,
            },
            T::Fifo => Body::Fifo,
            other => {
                return Err(EntryError::Bad(format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                )));
            }
        };
        self.tree.unlink(dir, &name, &mut self.alloc);
        self.tree.add(
            dir,
            &name,
            Node {
                meta: em.meta,
                body,
                refs: 1,
            },
            layer,
        );
        Ok(())
    }

    fn hard_link(
        &mut self,
        dir: crate::tree::Id,
        name: &[u8],
        target: &[u8],
        layer: u32,
    ) -> Result<(), EntryError> {
        let mut tcomps = clean_path(target);
        let Some(tname) = tcomps.pop() else {
            return Err(EntryError::Bad("hard link to the root".into()));
        };
        let tdir = self
            .tree
            .resolve_dir(&tcomps, None)
            .map_err(|e| EntryError::Bad(format!("hard link target: {e}")))?;
        let Some(t) = self.tree.lookup(tdir, &tname) else {
            return Err(EntryError::Bad(format!(
                "hard link target {:?} does not exist",
                lossy(target)
            )));
        };
        if self.tree.is_dir(t.id) {
            return Err(EntryError::Bad("hard link to a directory".into()));
        }
        if self.tree.node(t.id).refs >= MAX_LINKS {
            return Err(EntryError::Bad(format!(
                "more than {MAX_LINKS} hard links to {:?}",
                lossy(target)
            )));
        }
        if self.tree.lookup(dir, name).map(|c| c.id) == Some(t.id) {
            self.tree.touch(dir, name, layer);
            return Ok(());
        }
        self.tree.unlink(dir, name, &mut self.alloc);
        // The entry replaced a directory that held the target's last name (`a` linked to
        // `a/b`): the target went with it, as it would on any filesystem.
        if !self.tree.is_live(t.id) {
            return Err(EntryError::Bad(format!(
                "hard link target {:?} was inside the directory the link replaces",
                lossy(target)
            )));
        }
        self.tree.link(dir, name, t.id, layer);
        Ok(())
    }
}

/// Drops attributes ext4 cannot hold (with a warning) and rejects sets too big for a block.
fn check_xattrs(meta: &mut Meta, path: &[u8]) -> Result<(), EntryError> {
    meta.xattrs.retain(|x| {
        let ok = xattr::encode(x).is_some();
        if !ok {
            tracing::warn!(entry = %lossy(path), name = %lossy(&x.name), "dropping extended attribute ext4 cannot store");
        }
        ok
    });
    let mut entries: Vec<xattr::Entry> = meta.xattrs.iter().filter_map(xattr::encode).collect();
    xattr::sort(&mut entries);
    if !entries.is_empty() && xattr::ibody(&entries).is_none() && !xattr::fits_block(&entries) {
        return Err(EntryError::Bad(
            "extended attributes exceed one 4 KiB block".into(),
        ));
    }
    Ok(())
}

/// An entry either is bad (reported with its name) or hit a fault of the image itself.
enum EntryError {
    Bad(String),
    Fatal(Ext4Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(detect(b"etc/passwd"), Compression::None);
    }

    #[test]
    fn pax_times_keep_fractions() {
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(Time {
                sec: 12,
                nsec: 500_000_000
            })
        );
        assert_eq!(parse_pax_time(b"7"), Some(Time { sec: 7, nsec: 0 }));
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Time {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
