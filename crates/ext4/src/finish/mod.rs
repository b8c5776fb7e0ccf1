//! Building state and the final layout: once every layer is applied, number the inodes,
//! size the filesystem, place bitmaps, inode tables, directories and the journal, and write
//! the group descriptors and superblocks (kernel `Documentation/filesystems/ext4/`).
//!
//! This file holds the build state and the order of the stages; the sizing is in
//! `geometry.rs`, the inodes (numbering, journal, one inode per tree node) in `inodes.rs`.

mod geometry;
mod inodes;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::alloc::Alloc;
use crate::csum;
use crate::data::Image;
use crate::inode::Raw;
use crate::layout::*;
use crate::super_block::{self, Geometry};
use crate::tree::{Body, Meta, Node, Time, Tree, ROOT};
use crate::{Ext4Error, FormatOptions, Summary};
use geometry::{check_journal_size, fixed_geometry, MIN_BLOCKS, MIN_BLOCKS_JOURNAL};
use inodes::{NodeWriter, Numbering, TableWriter, FIRST_INO};

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

impl State {
    pub(crate) fn create(output: &Path, opts: &FormatOptions) -> Result<Self, Ext4Error> {
        let (limit, reserve, fixed) = match opts.size {
            Some(size) => {
                let blocks = fixed_geometry(size)?;
                let min = if opts.journal {
                    MIN_BLOCKS_JOURNAL
                } else {
                    MIN_BLOCKS
                };
                if blocks < min {
                    return Err(Ext4Error::NoSpace {
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
        if let (true, Some(size)) = (opts.journal, opts.journal_size) {
            check_journal_size(size, fixed)?;
        }
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
            .map_err(|source| Ext4Error::CreateOutput {
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
    fn ensure_lost_found(&mut self) -> Result<(), Ext4Error> {
        match self.tree.lookup(ROOT, b"lost+found") {
            Some(c) if self.tree.is_dir(c.id) => Ok(()),
            Some(_) => Err(Ext4Error::Unsupported(
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

    /// Adds each [`crate::EnsureEntry`] whose path is free (see [`crate::FormatOptions::ensure`]).
    fn ensure_entries(&mut self) {
        let t = Time::now();
        let meta = |perm: u16| Meta {
            perm,
            atime: t,
            mtime: t,
            ctime: t,
            ..Meta::default()
        };
        let layer = self.layers + 1;
        for e in std::mem::take(&mut self.opts.ensure) {
            let mut comps = crate::tree::clean_path(e.path.as_bytes());
            let Some(name) = comps.pop() else { continue };
            let Ok(dir) = self.tree.resolve_dir(&comps, Some((&meta(0o755), layer))) else {
                continue;
            };
            if name.len() > crate::tree::MAX_NAME || self.tree.lookup(dir, &name).is_some() {
                continue;
            }
            let body = if e.dir {
                Body::Dir {
                    parent: dir,
                    children: BTreeMap::new(),
                }
            } else {
                Body::File {
                    size: 0,
                    extents: Vec::new(),
                }
            };
            let node = Node {
                meta: meta(e.perm & 0o7777),
                body,
                refs: 1,
            };
            self.tree.add(dir, &name, node, layer);
        }
    }

    /// Lays the tree out and writes everything but file data (already in place), then renames
    /// the image to its final name. The stages run in this order because each one's block
    /// allocations decide where the next one's land: keep it, or images stop being
    /// reproducible.
    pub(crate) fn finish(mut self) -> Result<Summary, Ext4Error> {
        self.ensure_entries();
        if self.opts.lost_found {
            self.ensure_lost_found()?;
        }

        // 1–2. Inode numbers, and the metadata blocks the tree needs beyond its file data.
        let numbers = Numbering::new(&self.tree);
        let meta_blocks = numbers.meta_blocks(&self.tree)?;

        // 3. Geometry; superblock copies and descriptor tables are taken first.
        let geo = self.geometry(meta_blocks, u64::from(numbers.max_ino))?;
        self.alloc.set_geometry(geo.blocks, geo.gdt);
        for g in (0..geo.groups).filter(|&g| is_sparse_group(g)) {
            for b in g * BPG..g * BPG + 1 + geo.gdt {
                self.alloc.mark(b);
            }
        }

        // 4. Bitmaps and inode tables (flex_bg: anywhere).
        let (bitmap_blocks, itables) = self.place_tables(&geo)?;
        let fs_seed = csum::raw(!0, &geo.uuid);
        let mut table = TableWriter::new(&self.image, &itables, geo.ipg, fs_seed);
        for ino in 1..FIRST_INO {
            table.put(ino, &Raw::default())?;
        }

        // 5–6. The journal, then every node of the tree.
        let mut nodes = NodeWriter {
            alloc: &mut self.alloc,
            image: &self.image,
            fs_seed,
            size: geo.blocks * BLOCK,
        };
        let journal_i_block = nodes.journal(geo.journal_blocks, &geo.uuid, &mut table)?;
        let counts = nodes.tree(&self.tree, &numbers, geo.ipg, geo.groups, &mut table)?;
        table.flush()?;

        // 7. Bitmaps, descriptors, superblocks.
        let sb = super_block::Writer {
            geo: &geo,
            alloc: &self.alloc,
            image: &self.image,
            fs_seed,
            max_ino: numbers.max_ino,
            bitmap_blocks: &bitmap_blocks,
            itables: &itables,
            dirs_per_group: &counts.dirs_per_group,
            label: self.opts.label.as_deref().unwrap_or(""),
            journal_i_block,
            data_mode: self.opts.data_mode,
        };
        sb.write().map_err(Ext4Error::WriteImage)?;

        let used_blocks = self.alloc.used();
        self.commit(geo.blocks * BLOCK)?;
        Ok(Summary {
            size_bytes: geo.blocks * BLOCK,
            block_size: BLOCK as u32,
            blocks: geo.blocks,
            used_blocks,
            inodes: geo.ipg * geo.groups,
            used_inodes: u64::from(numbers.max_ino),
            files: counts.files,
            directories: counts.dirs,
            content_bytes: counts.content,
        })
    }

    /// Takes the blocks of the bitmaps (two per group) and of the inode tables; a table in
    /// blocks that held data before (freed by a whiteout) is zeroed, fresh ones already are.
    fn place_tables(&mut self, geo: &Geometry) -> Result<(Vec<u64>, Vec<u64>), Ext4Error> {
        let no_space = |what: &str| no_space(geo.blocks * BLOCK, what);
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
                    self.image
                        .zero(r.start, r.len)
                        .map_err(Ext4Error::WriteImage)?;
                    r
                }
            };
            itables.push(r.start);
        }
        Ok((bitmap_blocks, itables))
    }

    /// Sizes the file, makes it durable and renames it to its final name (then syncs the
    /// directory, so the rename survives a crash too).
    fn commit(&mut self, size: u64) -> Result<(), Ext4Error> {
        self.image
            .file
            .set_len(size)
            .map_err(Ext4Error::WriteImage)?;
        self.image.file.sync_all().map_err(Ext4Error::WriteImage)?;
        std::fs::rename(&self.tmp_path, &self.out_path).map_err(|source| {
            Ext4Error::CommitOutput {
                path: self.out_path.clone(),
                source,
            }
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
        Ok(())
    }
}

/// The error for a filesystem of `size` bytes that has no room left for `what`.
fn no_space(size: u64, what: &str) -> Ext4Error {
    Ext4Error::NoSpace {
        size,
        reason: format!("no room for {what}"),
    }
}
