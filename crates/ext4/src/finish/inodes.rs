//! The inodes of the image: their numbers, the journal's inode, and one inode per tree node
//! with whatever blocks it needs besides file data (directory blocks, extent tree blocks,
//! long symlink targets, xattr blocks), written group by group into the inode tables.

use std::collections::BTreeMap;

use super::no_space;
use crate::alloc::Alloc;
use crate::csum;
use crate::data::Image;
use crate::dir::{self, Dirent};
use crate::extent::{self, Extent};
use crate::inode::{self, Raw};
use crate::layout::*;
use crate::super_block;
use crate::tree::{Body, Meta, Time, Tree, ROOT};
use crate::xattr;
use crate::Ext4Error;

/// The first inode number for files; 1–10 are reserved (kernel `EXT4_GOOD_OLD_FIRST_INO`).
pub(super) const FIRST_INO: u32 = 11;
const JOURNAL_INO: u32 = 8;

/// Inode numbers: root 2, the rest from [`FIRST_INO`] in depth-first order.
pub(super) struct Numbering {
    order: Vec<usize>,
    ino_of: Vec<u32>,
    /// The highest number given.
    pub(super) max_ino: u32,
}

impl Numbering {
    pub(super) fn new(tree: &Tree) -> Numbering {
        let order = tree.walk();
        let mut ino_of = vec![0u32; tree.capacity()];
        let mut next = FIRST_INO;
        for &id in &order {
            ino_of[id] = if id == ROOT {
                2
            } else {
                next += 1;
                next - 1
            };
        }
        Numbering {
            order,
            ino_of,
            max_ino: next - 1,
        }
    }

    /// Metadata blocks the tree needs beyond its file data, for sizing.
    pub(super) fn meta_blocks(&self, tree: &Tree) -> Result<u64, Ext4Error> {
        let mut meta_blocks = 0u64;
        for &id in &self.order {
            let node = tree.node(id);
            meta_blocks += u64::from(xattr_block_needed(&node.meta));
            meta_blocks += match &node.body {
                Body::File { extents, .. } => extent::tree_blocks(extents.len()),
                Body::Dir { children, .. } => {
                    let ents = dirents(tree, children, &self.ino_of);
                    if !dir::fits(&ents) {
                        return Err(Ext4Error::Unsupported(format!(
                            "a directory of {} entries is beyond a two-level htree",
                            ents.len()
                        )));
                    }
                    let (n, _) = dir::block_count(&ents);
                    n + extent::tree_blocks(n as usize)
                }
                Body::Symlink(t) if t.len() >= 60 => 1,
                _ => 0,
            };
        }
        Ok(meta_blocks)
    }
}

/// What the superblock and the caller's summary count of the written tree.
pub(super) struct Counts {
    pub(super) dirs_per_group: Vec<u32>,
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) content: u64,
}

/// Writes inodes and the blocks they need, taking blocks from the allocator.
pub(super) struct NodeWriter<'a> {
    pub(super) alloc: &'a mut Alloc,
    pub(super) image: &'a Image,
    pub(super) fs_seed: u32,
    /// The filesystem's size in bytes, for "no space" errors.
    pub(super) size: u64,
}

impl NodeWriter<'_> {
    /// The journal's blocks, superblock and inode; its `i_block` for the superblock's backup.
    pub(super) fn journal(
        &mut self,
        blocks: u64,
        uuid: &[u8; 16],
        table: &mut TableWriter,
    ) -> Result<Option<[u8; 60]>, Ext4Error> {
        if blocks == 0 {
            return Ok(None);
        }
        let runs = match self.alloc.take_fresh(blocks) {
            Some(r) => vec![r],
            None => {
                let runs = self
                    .alloc
                    .take_runs(blocks)
                    .ok_or_else(|| no_space(self.size, "the journal"))?;
                for r in &runs {
                    self.image
                        .zero(r.start, r.len)
                        .map_err(Ext4Error::WriteImage)?;
                }
                runs
            }
        };
        let extents = extent::from_runs(&runs);
        let jsb = super_block::journal_superblock(blocks, uuid);
        self.image
            .write_at(runs[0].start, &jsb)
            .map_err(Ext4Error::WriteImage)?;
        let (i_block, tree_n) = self.extent_tree(&extents, JOURNAL_INO)?;
        let t = Time::now();
        let raw = Raw {
            mode: inode::S_IFREG | 0o600,
            size: blocks * BLOCK,
            atime: t,
            ctime: t,
            mtime: t,
            crtime: t,
            links: 1,
            blocks: blocks + tree_n,
            flags: inode::FL_EXTENTS,
            i_block,
            ..Raw::default()
        };
        table.put(JOURNAL_INO, &raw)?;
        Ok(Some(i_block))
    }

    /// Every node of the tree, in inode order.
    pub(super) fn tree(
        &mut self,
        tree: &Tree,
        numbers: &Numbering,
        ipg: u64,
        groups: u64,
        table: &mut TableWriter,
    ) -> Result<Counts, Ext4Error> {
        let mut counts = Counts {
            dirs_per_group: vec![0u32; groups as usize],
            files: 0,
            dirs: 0,
            content: 0,
        };
        for &id in &numbers.order {
            let ino = numbers.ino_of[id];
            let node = tree.node(id);
            let m = &node.meta;
            let mut raw = Raw {
                uid: m.uid,
                gid: m.gid,
                atime: m.atime,
                ctime: m.ctime,
                mtime: m.mtime,
                crtime: m.mtime,
                links: node.refs.min(65_000) as u16,
                ..Raw::default()
            };
            let perm = m.perm & 0o7777;
            counts.files += 1;
            match &node.body {
                Body::File { size, extents } => {
                    self.file(&mut raw, ino, *size, extents)?;
                    raw.mode = inode::S_IFREG | perm;
                    counts.content += size;
                }
                Body::Dir { children, parent } => {
                    let ents = dirents(tree, children, &numbers.ino_of);
                    self.dir(&mut raw, ino, numbers.ino_of[*parent], &ents)?;
                    let subdirs = children.values().filter(|c| tree.is_dir(c.id)).count();
                    let links = 2 + subdirs as u64;
                    raw.links = if links > 65_000 { 1 } else { links as u16 };
                    raw.mode = inode::S_IFDIR | perm;
                    counts.dirs_per_group[(u64::from(ino - 1) / ipg) as usize] += 1;
                    counts.dirs += 1;
                }
                Body::Symlink(target) => self.symlink(&mut raw, ino, target)?,
                Body::CharDev { major, minor } => {
                    raw.mode = inode::S_IFCHR | perm;
                    raw.i_block = inode::device_block(*major, *minor);
                }
                Body::BlockDev { major, minor } => {
                    raw.mode = inode::S_IFBLK | perm;
                    raw.i_block = inode::device_block(*major, *minor);
                }
                Body::Fifo => raw.mode = inode::S_IFIFO | perm,
            }
            self.xattrs(&mut raw, ino, m)?;
            table.put(ino, &raw)?;
        }
        Ok(counts)
    }

    /// A regular file: its data is in place already; only its extent tree is written.
    fn file(
        &mut self,
        raw: &mut Raw,
        ino: u32,
        size: u64,
        extents: &[Extent],
    ) -> Result<(), Ext4Error> {
        let (i_block, tree_n) = self.extent_tree(extents, ino)?;
        raw.size = size;
        raw.i_block = i_block;
        raw.flags = inode::FL_EXTENTS;
        raw.blocks = extents.iter().map(|e| u64::from(e.len)).sum::<u64>() + tree_n;
        Ok(())
    }

    /// A directory: its blocks (linear or htree), then its extent tree.
    fn dir(
        &mut self,
        raw: &mut Raw,
        ino: u32,
        parent: u32,
        ents: &[Dirent],
    ) -> Result<(), Ext4Error> {
        let seed = csum::inode_seed(self.fs_seed, ino, 0);
        let (blocks, indexed) = dir::build(ents, ino, parent, seed);
        let runs = self
            .alloc
            .take_runs(blocks.len() as u64)
            .ok_or_else(|| no_space(self.size, "directories"))?;
        let mut it = blocks.iter();
        for r in &runs {
            let mut joined = Vec::with_capacity((r.len * BLOCK) as usize);
            for _ in 0..r.len {
                joined.extend_from_slice(it.next().expect("one block per run slot"));
            }
            self.image
                .write_at(r.start, &joined)
                .map_err(Ext4Error::WriteImage)?;
        }
        let extents = extent::from_runs(&runs);
        let (i_block, tree_n) = self.extent_tree(&extents, ino)?;
        raw.size = blocks.len() as u64 * BLOCK;
        raw.i_block = i_block;
        raw.flags = inode::FL_EXTENTS | if indexed { inode::FL_INDEX } else { 0 };
        raw.blocks = blocks.len() as u64 + tree_n;
        Ok(())
    }

    /// A symlink: a target under 60 bytes lives in the inode itself (a "fast" symlink), a
    /// longer one in a block of its own.
    fn symlink(&mut self, raw: &mut Raw, ino: u32, target: &[u8]) -> Result<(), Ext4Error> {
        raw.mode = inode::S_IFLNK | 0o777;
        raw.size = target.len() as u64;
        if target.len() < 60 {
            raw.i_block[..target.len()].copy_from_slice(target);
            return Ok(());
        }
        let r = self
            .alloc
            .take_run(1)
            .ok_or_else(|| no_space(self.size, "symlinks"))?;
        let mut b = vec![0u8; BLOCK as usize];
        b[..target.len()].copy_from_slice(target);
        self.image
            .write_at(r.start, &b)
            .map_err(Ext4Error::WriteImage)?;
        let seed = csum::inode_seed(self.fs_seed, ino, 0);
        let (i_block, _) = extent::build(&extent::from_runs(&[r]), &[], seed);
        raw.i_block = i_block;
        raw.flags = inode::FL_EXTENTS;
        raw.blocks = 1;
        Ok(())
    }

    /// Extended attributes: in the inode's spare space when they fit, else in one block.
    fn xattrs(&mut self, raw: &mut Raw, ino: u32, m: &Meta) -> Result<(), Ext4Error> {
        let mut entries: Vec<xattr::Entry> = m.xattrs.iter().filter_map(xattr::encode).collect();
        if entries.is_empty() {
            return Ok(());
        }
        xattr::sort(&mut entries);
        if let Some(body) = xattr::ibody(&entries) {
            raw.ibody = Some(body);
            return Ok(());
        }
        let r = self
            .alloc
            .take_run(1)
            .ok_or_else(|| no_space(self.size, "xattr blocks"))?;
        let b = xattr::block(&entries, r.start, self.fs_seed).ok_or_else(|| {
            Ext4Error::Unsupported(format!(
                "extended attributes of inode {ino} exceed one block"
            ))
        })?;
        self.image
            .write_at(r.start, &b)
            .map_err(Ext4Error::WriteImage)?;
        raw.xattr_block = r.start;
        raw.blocks += 1;
        Ok(())
    }

    /// Places the extent tree blocks of one inode; returns `i_block` and the tree's block count.
    fn extent_tree(&mut self, extents: &[Extent], ino: u32) -> Result<([u8; 60], u64), Ext4Error> {
        let n = extent::tree_blocks(extents.len());
        let mut pbs = Vec::with_capacity(n as usize);
        if n > 0 {
            let runs = self
                .alloc
                .take_runs(n)
                .ok_or_else(|| no_space(self.size, "extent trees"))?;
            for r in runs {
                pbs.extend(r.start..r.start + r.len);
            }
        }
        let seed = csum::inode_seed(self.fs_seed, ino, 0);
        let (i_block, blocks) = extent::build(extents, &pbs, seed);
        for (pb, b) in blocks {
            self.image.write_at(pb, &b).map_err(Ext4Error::WriteImage)?;
        }
        Ok((i_block, n))
    }
}

fn xattr_block_needed(m: &Meta) -> bool {
    if m.xattrs.is_empty() {
        return false;
    }
    let mut entries: Vec<xattr::Entry> = m.xattrs.iter().filter_map(xattr::encode).collect();
    xattr::sort(&mut entries);
    !entries.is_empty() && xattr::ibody(&entries).is_none()
}

fn ftype(body: &Body) -> u8 {
    match body {
        Body::File { .. } => 1,
        Body::Dir { .. } => 2,
        Body::CharDev { .. } => 3,
        Body::BlockDev { .. } => 4,
        Body::Fifo => 5,
        Body::Symlink(_) => 7,
    }
}

fn dirents<'a>(
    tree: &Tree,
    children: &'a BTreeMap<Box<[u8]>, crate::tree::Child>,
    ino_of: &[u32],
) -> Vec<Dirent<'a>> {
    children
        .iter()
        .map(|(name, c)| Dirent {
            name,
            ino: ino_of[c.id],
            ftype: ftype(&tree.node(c.id).body),
        })
        .collect()
}

/// Inode tables, written one group at a time (inodes arrive in ascending order); only the
/// used part of each table is written, the rest reads as zeros already.
pub(super) struct TableWriter<'a> {
    image: &'a Image,
    starts: &'a [u64],
    ipg: u64,
    group: u64,
    buf: Vec<u8>,
    fs_seed: u32,
}

impl<'a> TableWriter<'a> {
    pub(super) fn new(image: &'a Image, starts: &'a [u64], ipg: u64, fs_seed: u32) -> Self {
        TableWriter {
            image,
            starts,
            ipg,
            group: 0,
            buf: Vec::new(),
            fs_seed,
        }
    }

    /// Encodes inode `ino` into its table; inodes must come in ascending groups.
    pub(super) fn put(&mut self, ino: u32, raw: &Raw) -> Result<(), Ext4Error> {
        let g = u64::from(ino - 1) / self.ipg;
        debug_assert!(g >= self.group, "inodes arrive in ascending groups");
        if g != self.group {
            self.flush()?;
            self.group = g;
        }
        let off = (u64::from(ino - 1) % self.ipg * INODE_SIZE) as usize;
        if self.buf.len() < off + INODE_SIZE as usize {
            self.buf.resize(off + INODE_SIZE as usize, 0);
        }
        self.buf[off..off + INODE_SIZE as usize].copy_from_slice(&raw.encode(ino, self.fs_seed));
        Ok(())
    }

    /// Writes what is buffered of the current group's table.
    pub(super) fn flush(&mut self) -> Result<(), Ext4Error> {
        if !self.buf.is_empty() {
            self.image
                .write_at(self.starts[self.group as usize], &self.buf)
                .map_err(Ext4Error::WriteImage)?;
            self.buf.clear();
        }
        Ok(())
    }
}
