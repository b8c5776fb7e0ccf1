//! Building state and the final layout: once every layer is applied, number the inodes,
//! size the filesystem, place bitmaps, inode tables, directories and the journal, and write
//! the group descriptors and superblocks (kernel `Documentation/filesystems/ext4/`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::alloc::Alloc;
use crate::csum;
use crate::data::Image;
use crate::dir::{self, Dirent};
use crate::extent::{self, Extent};
use crate::inode::{self, Raw};
use crate::layout::*;
use crate::super_block::{self, Geometry};
use crate::tree::{Body, Meta, Node, Time, Tree, ROOT};
use crate::xattr;
use crate::{Error, FormatOptions, Summary};

/// An image under construction.
pub(crate) struct State {
    out_path: PathBuf,
    tmp_path: PathBuf,
    pub(crate) image: Image,
    pub(crate) alloc: Alloc,
    pub(crate) tree: Tree,
    pub(crate) layers: u32,
    pub(crate) buf: Vec<u8>,
    opts: FormatOptions,
    fixed_blocks: Option<u64>,
    committed: bool,
}

impl Drop for State {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Smallest filesystem we write: 2 MiB (8 MiB with a journal).
const MIN_BLOCKS: u64 = 512;
const MIN_BLOCKS_JOURNAL: u64 = 2048;

/// Journal size for a filesystem of `total` blocks (as mke2fs picks it).
fn journal_blocks(total: u64) -> u64 {
    match total {
        t if t < 32_768 => 1024,
        t if t < 262_144 => 4096,
        t if t < 524_288 => 8192,
        _ => 16_384,
    }
}

/// A size given in bytes, trimmed so the last group is not uselessly small.
fn fixed_geometry(size: u64) -> Result<u64, Error> {
    let mut blocks = size / BLOCK;
    if blocks >= MAX_BLOCKS {
        return Err(Error::Unsupported(format!(
            "size {size} is above the 16 TiB limit of 32-bit ext4"
        )));
    }
    let groups = groups_for(blocks);
    let last = blocks - (groups - 1) * BPG;
    if groups > 1 && last < 1 + gdt_blocks(groups) + 64 {
        blocks -= last;
    }
    Ok(blocks)
}

impl State {
    pub(crate) fn create(output: &Path, opts: &FormatOptions) -> Result<Self, Error> {
        let (limit, reserve, fixed) = match opts.size {
            Some(size) => {
                let blocks = fixed_geometry(size)?;
                let min = if opts.journal {
                    MIN_BLOCKS_JOURNAL
                } else {
                    MIN_BLOCKS
                };
                if blocks < min {
                    return Err(Error::NoSpace {
                        size,
                        reason: format!("at least {} bytes are needed", min * BLOCK),
                    });
                }
                (blocks, gdt_blocks(groups_for(blocks)), Some(blocks))
            }
            None => (
                AUTO_MAX_BLOCKS,
                gdt_blocks(groups_for(AUTO_MAX_BLOCKS)),
                None,
            ),
        };
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        // Unique per process and per build, so parallel builds in one process never collide.
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp_path = output.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|source| Error::CreateOutput {
                path: tmp_path.clone(),
                source,
            })?;
        let t = Time::now();
        let root = Meta {
            perm: 0o755,
            atime: t,
            mtime: t,
            ctime: t,
            ..Meta::default()
        };
        Ok(State {
            out_path: output.to_path_buf(),
            tmp_path,
            image: Image { file },
            alloc: Alloc::new(limit, reserve),
            tree: Tree::new(root),
            layers: 0,
            buf: Vec::new(),
            opts: opts.clone(),
            fixed_blocks: fixed,
            committed: false,
        })
    }

    /// Adds `/lost+found` when the layers did not bring one.
    fn ensure_lost_found(&mut self) -> Result<(), Error> {
        match self.tree.lookup(ROOT, b"lost+found") {
            Some(c) if self.tree.is_dir(c.id) => Ok(()),
            Some(_) => Err(Error::Unsupported(
                "/lost+found in the layers is not a directory".into(),
            )),
            None => {
                let t = Time::now();
                let node = Node {
                    meta: Meta {
                        perm: 0o700,
                        atime: t,
                        mtime: t,
                        ctime: t,
                        ..Meta::default()
                    },
                    body: Body::Dir {
                        parent: ROOT,
                        children: BTreeMap::new(),
                    },
                    refs: 1,
                };
                self.tree.add(ROOT, b"lost+found", node, self.layers + 1);
                Ok(())
            }
        }
    }

    pub(crate) fn finish(mut self) -> Result<Summary, Error> {
        self.ensure_lost_found()?;

        // 1. Inode numbers: root 2, the rest from 11 in depth-first order.
        let order = self.tree.walk();
        let mut ino_of = vec![0u32; self.tree.capacity()];
        let mut next = FIRST_INO;
        for &id in &order {
            ino_of[id] = if id == ROOT {
                2
            } else {
                next += 1;
                next - 1
            };
        }
        let max_ino = next - 1;

        // 2. Metadata blocks the tree needs, beyond its file data.
        let mut meta_blocks = 0u64;
        for &id in &order {
            let node = self.tree.node(id);
            meta_blocks += xattr_block_needed(&node.meta) as u64;
            meta_blocks += match &node.body {
                Body::File { extents, .. } => extent::tree_blocks(extents.len()),
                Body::Dir { children, .. } => {
                    let ents = dirents(&self.tree, children, &ino_of);
                    if !dir::fits(&ents) {
                        return Err(Error::Unsupported(format!(
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

        // 3. Geometry.
        let geo = self.geometry(meta_blocks, u64::from(max_ino))?;
        self.alloc.set_geometry(geo.blocks, geo.gdt);
        for g in (0..geo.groups).filter(|&g| is_sparse_group(g)) {
            for b in g * BPG..g * BPG + 1 + geo.gdt {
                self.alloc.mark(b);
            }
        }
        let no_space = |what: &str| Error::NoSpace {
            size: geo.blocks * BLOCK,
            reason: format!("no room for {what}"),
        };

        // 4. Bitmaps and inode tables (flex_bg: anywhere).
        let mut bitmap_blocks = Vec::with_capacity(2 * geo.groups as usize);
        let runs = match self.alloc.take_fresh(2 * geo.groups) {
            Some(r) => vec![r],
            None => self
                .alloc
                .take_runs(2 * geo.groups)
                .ok_or_else(|| no_space("bitmaps"))?,
        };
        for r in runs {
            bitmap_blocks.extend(r.start..r.start + r.len);
        }
        let mut itables = Vec::with_capacity(geo.groups as usize);
        for _ in 0..geo.groups {
            let r = match self.alloc.take_fresh(geo.itb) {
                Some(r) => r,
                None => {
                    let r = self
                        .alloc
                        .take_contiguous(geo.itb)
                        .ok_or_else(|| no_space("inode tables"))?;
                    self.image.zero(r.start, r.len).map_err(Error::WriteImage)?;
                    r
                }
            };
            itables.push(r.start);
        }

        let fs_seed = csum::raw(!0, &geo.uuid);
        let mut table = TableWriter {
            image: &self.image,
            starts: &itables,
            ipg: geo.ipg,
            group: 0,
            buf: Vec::new(),
            fs_seed,
        };
        for ino in 1..FIRST_INO {
            table.put(ino, &Raw::default())?;
        }

        // 5. Journal.
        let mut journal_i_block = None;
        if geo.journal_blocks > 0 {
            let runs = match self.alloc.take_fresh(geo.journal_blocks) {
                Some(r) => vec![r],
                None => {
                    let runs = self
                        .alloc
                        .take_runs(geo.journal_blocks)
                        .ok_or_else(|| no_space("the journal"))?;
                    for r in &runs {
                        self.image.zero(r.start, r.len).map_err(Error::WriteImage)?;
                    }
                    runs
                }
            };
            let extents = extent::from_runs(&runs);
            let jsb = super_block::journal_superblock(geo.journal_blocks, &geo.uuid);
            self.image
                .write_at(runs[0].start, &jsb)
                .map_err(Error::WriteImage)?;
            let (i_block, tree_n) = extent_tree(
                &mut self.alloc,
                &self.image,
                &extents,
                JOURNAL_INO,
                fs_seed,
                &no_space,
            )?;
            let t = Time::now();
            let raw = Raw {
                mode: inode::S_IFREG | 0o600,
                size: geo.journal_blocks * BLOCK,
                atime: t,
                ctime: t,
                mtime: t,
                crtime: t,
                links: 1,
                blocks: geo.journal_blocks + tree_n,
                flags: inode::FL_EXTENTS,
                i_block,
                ..Raw::default()
            };
            table.put(JOURNAL_INO, &raw)?;
            journal_i_block = Some(i_block);
        }

        // 6. Every node of the tree.
        let mut dirs_per_group = vec![0u32; geo.groups as usize];
        let mut summary_files = 0u64;
        let mut summary_dirs = 0u64;
        let mut content = 0u64;
        for &id in &order {
            let ino = ino_of[id];
            let node = self.tree.node(id);
            let seed = csum::inode_seed(fs_seed, ino, 0);
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
            summary_files += 1;
            match &node.body {
                Body::File { size, extents } => {
                    let (i_block, tree_n) = extent_tree(
                        &mut self.alloc,
                        &self.image,
                        extents,
                        ino,
                        fs_seed,
                        &no_space,
                    )?;
                    raw.mode = inode::S_IFREG | perm;
                    raw.size = *size;
                    raw.i_block = i_block;
                    raw.flags = inode::FL_EXTENTS;
                    raw.blocks = extents.iter().map(|e| u64::from(e.len)).sum::<u64>() + tree_n;
                    content += size;
                }
                Body::Dir { children, parent } => {
                    let ents = dirents(&self.tree, children, &ino_of);
                    let (blocks, indexed) = dir::build(&ents, ino, ino_of[*parent], seed);
                    let runs = self
                        .alloc
                        .take_runs(blocks.len() as u64)
                        .ok_or_else(|| no_space("directories"))?;
                    let mut it = blocks.iter();
                    for r in &runs {
                        let mut joined = Vec::with_capacity((r.len * BLOCK) as usize);
                        for _ in 0..r.len {
                            joined.extend_from_slice(it.next().expect("one block per run slot"));
                        }
                        self.image
                            .write_at(r.start, &joined)
                            .map_err(Error::WriteImage)?;
                    }
                    let extents = extent::from_runs(&runs);
                    let (i_block, tree_n) = extent_tree(
                        &mut self.alloc,
                        &self.image,
                        &extents,
                        ino,
                        fs_seed,
                        &no_space,
                    )?;
                    let subdirs = children.values().filter(|c| self.tree.is_dir(c.id)).count();
                    let links = 2 + subdirs as u64;
                    raw.links = if links > 65_000 { 1 } else { links as u16 };
                    raw.mode = inode::S_IFDIR | perm;
                    raw.size = blocks.len() as u64 * BLOCK;
                    raw.i_block = i_block;
                    raw.flags = inode::FL_EXTENTS | if indexed { inode::FL_INDEX } else { 0 };
                    raw.blocks = blocks.len() as u64 + tree_n;
                    dirs_per_group[((ino - 1) as u64 / geo.ipg) as usize] += 1;
                    summary_dirs += 1;
                }
                Body::Symlink(target) => {
                    raw.mode = inode::S_IFLNK | 0o777;
                    raw.size = target.len() as u64;
                    if target.len() < 60 {
                        raw.i_block[..target.len()].copy_from_slice(target);
                    } else {
                        let r = self.alloc.take_run(1).ok_or_else(|| no_space("symlinks"))?;
                        let mut b = vec![0u8; BLOCK as usize];
                        b[..target.len()].copy_from_slice(target);
                        self.image
                            .write_at(r.start, &b)
                            .map_err(Error::WriteImage)?;
                        let (i_block, _) = extent::build(&extent::from_runs(&[r]), &[], seed);
                        raw.i_block = i_block;
                        raw.flags = inode::FL_EXTENTS;
                        raw.blocks = 1;
                    }
                }
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
            let mut entries: Vec<xattr::Entry> =
                m.xattrs.iter().filter_map(xattr::encode).collect();
            if !entries.is_empty() {
                xattr::sort(&mut entries);
                match xattr::ibody(&entries) {
                    Some(body) => raw.ibody = Some(body),
                    None => {
                        let r = self
                            .alloc
                            .take_run(1)
                            .ok_or_else(|| no_space("xattr blocks"))?;
                        let b = xattr::block(&entries, r.start, fs_seed).ok_or_else(|| {
                            Error::Unsupported(format!(
                                "extended attributes of inode {ino} exceed one block"
                            ))
                        })?;
                        self.image
                            .write_at(r.start, &b)
                            .map_err(Error::WriteImage)?;
                        raw.xattr_block = r.start;
                        raw.blocks += 1;
                    }
                }
            }
            table.put(ino, &raw)?;
        }

        table.flush()?;

        // 8. Bitmaps, descriptors, superblocks.
        let sb = super_block::Writer {
            geo: &geo,
            alloc: &self.alloc,
            image: &self.image,
            fs_seed,
            max_ino,
            bitmap_blocks: &bitmap_blocks,
            itables: &itables,
            dirs_per_group: &dirs_per_group,
            label: self.opts.label.as_deref().unwrap_or(""),
            journal_i_block,
        };
        sb.write().map_err(Error::WriteImage)?;

        let used_blocks = self.alloc.used();
        self.image
            .file
            .set_len(geo.blocks * BLOCK)
            .map_err(Error::WriteImage)?;
        self.image.file.sync_all().map_err(Error::WriteImage)?;
        std::fs::rename(&self.tmp_path, &self.out_path).map_err(|source| Error::CommitOutput {
            path: self.out_path.clone(),
            source,
        })?;
        self.committed = true;
        if let Some(parent) = self.out_path.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(Summary {
            size_bytes: geo.blocks * BLOCK,
            block_size: BLOCK as u32,
            blocks: geo.blocks,
            used_blocks,
            inodes: geo.ipg * geo.groups,
            used_inodes: u64::from(max_ino),
            files: summary_files,
            directories: summary_dirs,
            content_bytes: content,
        })
    }

    /// Chooses the final size, group count and inode table size.
    fn geometry(&self, meta_blocks: u64, max_ino: u64) -> Result<Geometry, Error> {
        let uuid = self.opts.uuid.unwrap_or_else(rand::random);
        let shape = |blocks: u64, spare_inodes: bool| -> Option<Geometry> {
            let groups = groups_for(blocks);
            let by_ratio = blocks * BLOCK / 16_384;
            let wanted = if spare_inodes {
                (max_ino + max_ino / 4 + 64).max(by_ratio)
            } else {
                max_ino.max(by_ratio)
            };
            let ipg = wanted.div_ceil(groups).div_ceil(INODES_PER_BLOCK) * INODES_PER_BLOCK;
            let ipg = ipg.clamp(INODES_PER_BLOCK, BPG);
            if ipg * groups < max_ino {
                return None;
            }
            let gdt = gdt_blocks(groups);
            let journal_blocks = if self.opts.journal {
                journal_blocks(blocks)
            } else {
                0
            };
            Some(Geometry {
                blocks,
                groups,
                gdt,
                ipg,
                itb: ipg / INODES_PER_BLOCK,
                journal_blocks,
                uuid,
            })
        };
        let overhead = |g: &Geometry| {
            sparse_groups_below(g.groups) * (1 + g.gdt)
                + g.groups * (2 + g.itb)
                + g.journal_blocks
                + extent::tree_blocks(
                    g.journal_blocks.div_ceil(u64::from(MAX_EXTENT_LEN)) as usize + 8,
                )
        };
        let used = self.alloc.used();
        if let Some(blocks) = self.fixed_blocks {
            let g = shape(blocks, false).ok_or_else(|| Error::NoSpace {
                size: blocks * BLOCK,
                reason: format!("{max_ino} inodes do not fit"),
            })?;
            let need = used + meta_blocks + overhead(&g);
            if need > blocks {
                return Err(Error::NoSpace {
                    size: blocks * BLOCK,
                    reason: format!("{} bytes are needed", need * BLOCK),
                });
            }
            return Ok(g);
        }
        // Grow until the content, its metadata and the headroom fit.
        let mut blocks = (self.alloc.hwm() + meta_blocks + 1024).max(MIN_BLOCKS);
        for _ in 0..16 {
            let Some(g) = shape(blocks, true) else {
                blocks *= 2;
                continue;
            };
            let need = (used + meta_blocks + overhead(&g)).max(self.alloc.hwm() + 1);
            let mut want = need + (used + meta_blocks) / 4 + 8192;
            want = want.max(self.opts.min_size.unwrap_or(0) / BLOCK);
            want = want.div_ceil(256) * 256;
            let groups = groups_for(want);
            let last = want - (groups - 1) * BPG;
            if groups > 1 && last < 1 + gdt_blocks(groups) + 256 {
                want += 256;
            }
            if want <= blocks {
                return Ok(g);
            }
            blocks = want;
            if blocks > AUTO_MAX_BLOCKS {
                return Err(Error::Unsupported(
                    "content needs more than 1 TiB; give a size".into(),
                ));
            }
        }
        Err(Error::Unsupported(
            "could not settle on a filesystem size".into(),
        ))
    }
}

const FIRST_INO: u32 = 11;
const JOURNAL_INO: u32 = 8;

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

/// Places the extent tree blocks of one inode; returns `i_block` and the tree's block count.
fn extent_tree(
    alloc: &mut Alloc,
    image: &Image,
    extents: &[Extent],
    ino: u32,
    fs_seed: u32,
    no_space: &dyn Fn(&str) -> Error,
) -> Result<([u8; 60], u64), Error> {
    let n = extent::tree_blocks(extents.len());
    let mut pbs = Vec::with_capacity(n as usize);
    if n > 0 {
        for r in alloc.take_runs(n).ok_or_else(|| no_space("extent trees"))? {
            pbs.extend(r.start..r.start + r.len);
        }
    }
    let (i_block, blocks) = extent::build(extents, &pbs, csum::inode_seed(fs_seed, ino, 0));
    for (pb, b) in blocks {
        image.write_at(pb, &b).map_err(Error::WriteImage)?;
    }
    Ok((i_block, n))
}

/// Inode tables, written one group at a time (inodes arrive in ascending order); only the
/// used part of each table is written, the rest reads as zeros already.
struct TableWriter<'a> {
    image: &'a Image,
    starts: &'a [u64],
    ipg: u64,
    group: u64,
    buf: Vec<u8>,
    fs_seed: u32,
}

impl TableWriter<'_> {
    fn put(&mut self, ino: u32, raw: &Raw) -> Result<(), Error> {
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

    fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.image
                .write_at(self.starts[self.group as usize], &self.buf)
                .map_err(Error::WriteImage)?;
            self.buf.clear();
        }
        Ok(())
    }
}
