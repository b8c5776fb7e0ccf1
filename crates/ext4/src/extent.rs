//! Extent trees (kernel `fs/ext4/ext4_extents.h`).
//!
//! ```text
//!  i_block (60 bytes):  header(12) + 4 × entry(12)
//!  tree block:          header(12) + 340 × entry(12) + tail crc32c(4)
//!  header:  magic 0xF30A | entries | max | depth | generation
//!  leaf:    logical u32 | len u16 | start_hi u16 | start_lo u32
//!  index:   logical u32 | leaf_lo u32 | leaf_hi u16 | unused u16
//! ```
//!
//! Up to four extents live in the inode itself; more need leaf blocks, and more than four
//! leaves need index levels above them.

use crate::csum;
use crate::layout::BLOCK;

/// A run of file blocks: logical block `logical` maps to physical `start`, `len` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub logical: u32,
    pub start: u64,
    pub len: u32,
}

const MAGIC: u16 = 0xF30A;
const ROOT_MAX: usize = 4;
/// Entries per tree block: (4096 - 12 header - 4 tail) / 12.
pub(crate) const BLOCK_MAX: usize = ((BLOCK as usize) - 12 - 4) / 12;

/// Number of tree blocks a file with `n` extents needs.
pub(crate) fn tree_blocks(n: usize) -> u64 {
    let mut total = 0;
    let mut level = n;
    while level > ROOT_MAX {
        level = level.div_ceil(BLOCK_MAX);
        total += level as u64;
    }
    total
}

fn header(buf: &mut [u8], entries: usize, max: usize, depth: u16) {
    buf[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    buf[2..4].copy_from_slice(&(entries as u16).to_le_bytes());
    buf[4..6].copy_from_slice(&(max as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&depth.to_le_bytes());
    buf[8..12].copy_from_slice(&0u32.to_le_bytes());
}

fn leaf_entry(buf: &mut [u8], e: &Extent) {
    buf[0..4].copy_from_slice(&e.logical.to_le_bytes());
    buf[4..6].copy_from_slice(&(e.len as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&((e.start >> 32) as u16).to_le_bytes());
    buf[8..12].copy_from_slice(&(e.start as u32).to_le_bytes());
}

fn index_entry(buf: &mut [u8], logical: u32, block: u64) {
    buf[0..4].copy_from_slice(&logical.to_le_bytes());
    buf[4..8].copy_from_slice(&(block as u32).to_le_bytes());
    buf[8..10].copy_from_slice(&((block >> 32) as u16).to_le_bytes());
    buf[10..12].copy_from_slice(&0u16.to_le_bytes());
}

/// The tree for `extents`: the 60-byte `i_block` and the tree blocks to write, placed at
/// `blocks` (exactly [`tree_blocks`] of them, in order). `seed` is the inode's checksum seed.
pub(crate) fn build(
    extents: &[Extent],
    blocks: &[u64],
    seed: u32,
) -> ([u8; 60], Vec<(u64, Vec<u8>)>) {
    let mut root = [0u8; 60];
    if extents.len() <= ROOT_MAX {
        header(&mut root, extents.len(), ROOT_MAX, 0);
        for (i, e) in extents.iter().enumerate() {
            leaf_entry(&mut root[12 + i * 12..], e);
        }
        return (root, Vec::new());
    }
    let mut out = Vec::new();
    let mut next_block = blocks.iter().copied();
    // Current level: (first logical block, physical block of the node) pairs.
    let mut level: Vec<(u32, u64)> = Vec::new();
    for chunk in extents.chunks(BLOCK_MAX) {
        let pb = next_block.next().expect("enough tree blocks");
        let mut buf = vec![0u8; BLOCK as usize];
        header(&mut buf, chunk.len(), BLOCK_MAX, 0);
        for (i, e) in chunk.iter().enumerate() {
            leaf_entry(&mut buf[12 + i * 12..], e);
        }
        seal(&mut buf, seed);
        out.push((pb, buf));
        level.push((chunk[0].logical, pb));
    }
    let mut depth = 1u16;
    while level.len() > ROOT_MAX {
        let mut up = Vec::new();
        for chunk in level.chunks(BLOCK_MAX) {
            let pb = next_block.next().expect("enough tree blocks");
            let mut buf = vec![0u8; BLOCK as usize];
            header(&mut buf, chunk.len(), BLOCK_MAX, depth);
            for (i, (logical, child)) in chunk.iter().enumerate() {
                index_entry(&mut buf[12 + i * 12..], *logical, *child);
            }
            seal(&mut buf, seed);
            out.push((pb, buf));
            up.push((chunk[0].0, pb));
        }
        level = up;
        depth += 1;
    }
    header(&mut root, level.len(), ROOT_MAX, depth);
    for (i, (logical, child)) in level.iter().enumerate() {
        index_entry(&mut root[12 + i * 12..], *logical, *child);
    }
    (root, out)
}

/// Writes the `ext4_extent_tail` checksum right after the `BLOCK_MAX` entries.
fn seal(buf: &mut [u8], seed: u32) {
    let off = 12 + BLOCK_MAX * 12;
    let c = csum::raw(seed, &buf[..off]);
    buf[off..off + 4].copy_from_slice(&c.to_le_bytes());
}

/// Appends physical block `pb` as file block `logical` to `extents`, growing the last extent
/// when both sides are contiguous.
pub(crate) fn push_block(extents: &mut Vec<Extent>, logical: u32, pb: u64) {
    if let Some(last) = extents.last_mut() {
        if last.logical + last.len == logical
            && last.start + u64::from(last.len) == pb
            && last.len < crate::layout::MAX_EXTENT_LEN
        {
            last.len += 1;
            return;
        }
    }
    extents.push(Extent {
        logical,
        start: pb,
        len: 1,
    });
}

/// Turns a list of physical runs into extents starting at logical block 0.
pub(crate) fn from_runs(runs: &[crate::alloc::Run]) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut logical = 0u32;
    for r in runs {
        for b in 0..r.len {
            push_block(&mut out, logical, r.start + b);
            logical += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_trees_live_in_the_inode() {
        assert_eq!(tree_blocks(4), 0);
        assert_eq!(tree_blocks(5), 1);
        assert_eq!(tree_blocks(340 * 4), 4);
        assert_eq!(tree_blocks(340 * 4 + 1), 5 + 1);
    }

    #[test]
    fn index_nodes_point_at_leaves() {
        let extents: Vec<Extent> = (0..1000)
            .map(|i| Extent {
                logical: i * 2,
                start: 10_000 + u64::from(i) * 2,
                len: 1,
            })
            .collect();
        let n = tree_blocks(extents.len()) as usize;
        let blocks: Vec<u64> = (0..n as u64).map(|b| 500 + b).collect();
        let (root, written) = build(&extents, &blocks, 1);
        assert_eq!(written.len(), 3);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 1, "depth");
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 3, "entries");
        // Second index entry starts at the first logical block of the second leaf.
        let second = u32::from_le_bytes(root[24..28].try_into().expect("4 bytes"));
        assert_eq!(second, 340 * 2);
    }
}
