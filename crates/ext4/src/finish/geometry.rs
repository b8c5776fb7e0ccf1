//! Sizing the filesystem: how many blocks, groups and inodes, fixed by the caller or grown
//! until the content, its metadata and some headroom fit (the shape mke2fs would pick for
//! the same size).

use super::State;
use crate::extent;
use crate::layout::*;
use crate::super_block::Geometry;
use crate::Ext4Error;

/// Smallest filesystem we write: 2 MiB (8 MiB with a journal).
pub(super) const MIN_BLOCKS: u64 = 512;
pub(super) const MIN_BLOCKS_JOURNAL: u64 = 2048;

/// Journal size for a filesystem of `total` blocks (as mke2fs picks it).
fn journal_blocks(total: u64) -> u64 {
    match total {
        t if t < 32_768 => 1024,
        t if t < 262_144 => 4096,
        t if t < 524_288 => 8192,
        _ => 16_384,
    }
}

/// jbd2 refuses a journal under 1024 blocks; mke2fs makes none above 10 240 000 blocks.
const JOURNAL_MIN_BLOCKS: u64 = 1024;
const JOURNAL_MAX_BLOCKS: u64 = 10_240_000;

/// Checks a requested journal size (bytes) against jbd2's bounds and, when the filesystem's
/// size is fixed (`fs_blocks`), against half of it, as mke2fs does.
pub(super) fn check_journal_size(size: u64, fs_blocks: Option<u64>) -> Result<(), Ext4Error> {
    let blocks = size.div_ceil(BLOCK);
    let refuse = |reason: String| Err(Ext4Error::JournalSize { size, reason });
    if !(JOURNAL_MIN_BLOCKS..=JOURNAL_MAX_BLOCKS).contains(&blocks) {
        return refuse(format!(
            "must be {} MiB to {} MiB",
            (JOURNAL_MIN_BLOCKS * BLOCK) >> 20,
            (JOURNAL_MAX_BLOCKS * BLOCK) >> 20
        ));
    }
    match fs_blocks {
        Some(fs) if blocks > fs / 2 => refuse(format!(
            "more than half of the {} byte filesystem",
            fs * BLOCK
        )),
        _ => Ok(()),
    }
}

/// A size given in bytes, trimmed so the last group is not uselessly small.
pub(super) fn fixed_geometry(size: u64) -> Result<u64, Ext4Error> {
    let mut blocks = size / BLOCK;
    if blocks >= MAX_BLOCKS {
        return Err(Ext4Error::Unsupported(format!(
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
    /// Chooses the final size, group count and inode table size.
    pub(super) fn geometry(&self, meta_blocks: u64, max_ino: u64) -> Result<Geometry, Ext4Error> {
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
                self.opts
                    .journal_size
                    .map_or_else(|| journal_blocks(blocks), |b| b.div_ceil(BLOCK))
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
            let g = shape(blocks, false).ok_or_else(|| Ext4Error::NoSpace {
                size: blocks * BLOCK,
                reason: format!("{max_ino} inodes do not fit"),
            })?;
            let need = used + meta_blocks + overhead(&g);
            if need > blocks {
                return Err(Ext4Error::NoSpace {
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
                return Err(Ext4Error::Unsupported(
                    "content needs more than 1 TiB; give a size".into(),
                ));
            }
        }
        Err(Ext4Error::Unsupported(
            "could not settle on a filesystem size".into(),
        ))
    }
}
