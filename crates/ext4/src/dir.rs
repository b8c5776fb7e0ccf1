//! Directory blocks: linear ones, and an htree index (`dir_index`) for directories that need
//! more than one block, so lookups in a 100 000-entry directory stay O(log n) in the guest.
//!
//! ```text
//!  leaf block:  dirent… | tail (inode 0, rec_len 12, type 0xDE, crc32c)
//!  dirent:      inode u32 | rec_len u16 | name_len u8 | file_type u8 | name (padded to 4)
//!  dx root:     "." (12) | ".." (rec_len 4084) | info(8) | limit,count | block0 |
//!               (hash,block)… | dx_tail(reserved, crc32c)
//!  dx node:     fake dirent (inode 0, rec_len 4096) | limit,count | block0 | (hash,block)…
//! ```
//!
//! Hash: the legacy (`dx_hack_hash`) function, unsigned variant (`s_flags` bit 1); kernel
//! `fs/ext4/hash.c`, e2fsprogs `lib/ext2fs/dirhash.c`.

use crate::csum;
use crate::layout::BLOCK;

const BS: usize = BLOCK as usize;
/// Usable bytes of a leaf block before the checksum tail.
const LEAF_SPACE: usize = BS - 12;
/// dx entries in the root: (4096 - 32 header - 8 tail) / 8.
const ROOT_LIMIT: usize = (BS - 32 - 8) / 8;
/// dx entries in an interior node: (4096 - 8 header - 8 tail) / 8.
const NODE_LIMIT: usize = (BS - 8 - 8) / 8;

/// One name in a directory.
#[derive(Debug, Clone)]
pub(crate) struct Dirent<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    pub ftype: u8,
}

fn rec_len(name_len: usize) -> usize {
    (8 + name_len).div_ceil(4) * 4
}

/// `dx_hack_hash` (unsigned chars), masked as `ext2fs_dirhash` does.
pub(crate) fn hash(name: &[u8]) -> u32 {
    let (mut h0, mut h1): (u32, u32) = (0x12a3_fe2d, 0x37ab_e8f9);
    for &c in name {
        let mut h = h1.wrapping_add(h0 ^ u32::from(c).wrapping_mul(7_152_373));
        if h & 0x8000_0000 != 0 {
            h = h.wrapping_sub(0x7fff_ffff);
        }
        h1 = h0;
        h0 = h;
    }
    let mut h = (h0 << 1) & !1;
    if h == 0x7fff_ffff << 1 {
        h = (0x7fff_ffff - 1) << 1;
    }
    h
}

/// Splits entries into leaf blocks by space (order kept).
fn pack(entries: &[Dirent], first_used: usize) -> Vec<std::ops::Range<usize>> {
    let mut blocks = Vec::new();
    let mut start = 0;
    let mut used = first_used;
    for (i, e) in entries.iter().enumerate() {
        let r = rec_len(e.name.len());
        if used + r > LEAF_SPACE {
            blocks.push(start..i);
            start = i;
            used = 0;
        }
        used += r;
    }
    blocks.push(start..entries.len());
    blocks
}

fn put_dirent(b: &mut [u8], off: usize, e: &Dirent, rec: usize) {
    b[off..off + 4].copy_from_slice(&e.ino.to_le_bytes());
    b[off + 4..off + 6].copy_from_slice(&(rec as u16).to_le_bytes());
    b[off + 6] = e.name.len() as u8;
    b[off + 7] = e.ftype;
    b[off + 8..off + 8 + e.name.len()].copy_from_slice(e.name);
}

/// A leaf block with `entries`, the last one stretched to the tail, sealed with `seed`.
fn leaf(entries: &[Dirent], seed: u32) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    let mut off = 0;
    for (i, e) in entries.iter().enumerate() {
        let rec = if i + 1 == entries.len() {
            LEAF_SPACE - off
        } else {
            rec_len(e.name.len())
        };
        put_dirent(&mut b, off, e, rec);
        off += rec;
    }
    if entries.is_empty() {
        // An empty leaf: one unused entry spanning the block.
        b[4..6].copy_from_slice(&(LEAF_SPACE as u16).to_le_bytes());
    }
    // Checksum tail: a fake dirent with inode 0, rec_len 12, file type 0xDE.
    b[LEAF_SPACE + 4..LEAF_SPACE + 6].copy_from_slice(&12u16.to_le_bytes());
    b[LEAF_SPACE + 7] = 0xDE;
    let c = csum::raw(seed, &b[..LEAF_SPACE]);
    b[LEAF_SPACE + 8..].copy_from_slice(&c.to_le_bytes());
    b
}

/// Whether a two-level htree can index this many leaf blocks.
pub(crate) fn fits(children: &[Dirent]) -> bool {
    htree_shape(children).1 <= ROOT_LIMIT
}

/// How many blocks the directory will take and whether it is indexed.
pub(crate) fn block_count(children: &[Dirent]) -> (u64, bool) {
    let dot = rec_len(1) + rec_len(2);
    let linear = pack(children, dot);
    if linear.len() <= 1 {
        return (1, false);
    }
    let (leaves, nodes) = htree_shape(children);
    (1 + nodes as u64 + leaves.len() as u64, true)
}

struct Hashed<'a> {
    hash: u32,
    e: Dirent<'a>,
}

fn sorted_by_hash<'a>(children: &[Dirent<'a>]) -> Vec<Hashed<'a>> {
    let mut v: Vec<Hashed> = children
        .iter()
        .map(|e| Hashed {
            hash: hash(e.name),
            e: e.clone(),
        })
        .collect();
    v.sort_by(|a, b| a.hash.cmp(&b.hash).then_with(|| a.e.name.cmp(b.e.name)));
    v
}

/// Leaf ranges (over the hash-sorted entries) and the number of interior nodes.
fn htree_shape(children: &[Dirent]) -> (Vec<std::ops::Range<usize>>, usize) {
    let sorted: Vec<Dirent> = sorted_by_hash(children).into_iter().map(|h| h.e).collect();
    let leaves = pack(&sorted, 0);
    let nodes = if leaves.len() <= ROOT_LIMIT {
        0
    } else {
        leaves.len().div_ceil(NODE_LIMIT)
    };
    (leaves, nodes)
}

/// The directory's blocks in logical order. `me`/`parent` are the inode numbers for `.` and
/// `..`; `seed` is the directory inode's checksum seed. The second value says whether the
/// blocks form an htree (the inode then needs `EXT4_INDEX_FL`).
pub(crate) fn build(children: &[Dirent], me: u32, parent: u32, seed: u32) -> (Vec<Vec<u8>>, bool) {
    let dot = Dirent {
        name: b".",
        ino: me,
        ftype: 2,
    };
    let dotdot = Dirent {
        name: b"..",
        ino: parent,
        ftype: 2,
    };
    let (count, indexed) = block_count(children);
    if !indexed {
        debug_assert_eq!(count, 1);
        let mut all = vec![dot, dotdot];
        all.extend_from_slice(children);
        return (vec![leaf(&all, seed)], false);
    }
    let sorted = sorted_by_hash(children);
    let plain: Vec<Dirent> = sorted.iter().map(|h| h.e.clone()).collect();
    let leaves = pack(&plain, 0);
    // Hash key of each leaf: its first entry's hash, with the low "collision" bit set when
    // the previous leaf ends with the same hash.
    let keys: Vec<u32> = leaves
        .iter()
        .map(|r| {
            let h = sorted[r.start].hash;
            if r.start > 0 && sorted[r.start - 1].hash == h {
                h | 1
            } else {
                h
            }
        })
        .collect();
    let n_nodes = if leaves.len() <= ROOT_LIMIT {
        0
    } else {
        leaves.len().div_ceil(NODE_LIMIT)
    };
    let first_leaf = 1 + n_nodes as u32;
    let mut blocks = Vec::with_capacity(1 + n_nodes + leaves.len());

    // Root.
    let mut root = vec![0u8; BS];
    put_dirent(&mut root, 0, &dot, 12);
    put_dirent(&mut root, 12, &dotdot, BS - 12);
    // dx_root_info: reserved_zero u32, hash_version 0 (legacy), info_length 8,
    // indirect_levels, unused_flags.
    root[24..28].copy_from_slice(&0u32.to_le_bytes());
    root[28] = 0;
    root[29] = 8;
    root[30] = u8::from(n_nodes > 0);
    root[31] = 0;
    let root_entries: Vec<(u32, u32)> = if n_nodes == 0 {
        keys.iter()
            .enumerate()
            .map(|(i, &k)| (k, first_leaf + i as u32))
            .collect()
    } else {
        (0..n_nodes)
            .map(|n| (keys[n * NODE_LIMIT], 1 + n as u32))
            .collect()
    };
    dx_entries(&mut root, 32, ROOT_LIMIT, &root_entries, seed);
    blocks.push(root);

    // Interior nodes.
    for n in 0..n_nodes {
        let mut b = vec![0u8; BS];
        b[4..6].copy_from_slice(&(BS as u16).to_le_bytes());
        let lo = n * NODE_LIMIT;
        let hi = (lo + NODE_LIMIT).min(leaves.len());
        let entries: Vec<(u32, u32)> = (lo..hi).map(|i| (keys[i], first_leaf + i as u32)).collect();
        dx_entries(&mut b, 8, NODE_LIMIT, &entries, seed);
        blocks.push(b);
    }

    for r in leaves {
        blocks.push(leaf(&plain[r], seed));
    }
    (blocks, true)
}

/// Writes limit/count, the entries and the dx tail checksum at `off`.
fn dx_entries(b: &mut [u8], off: usize, limit: usize, entries: &[(u32, u32)], seed: u32) {
    b[off..off + 2].copy_from_slice(&(limit as u16).to_le_bytes());
    b[off + 2..off + 4].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    for (i, &(h, blk)) in entries.iter().enumerate() {
        let p = off + i * 8;
        if i > 0 {
            b[p..p + 4].copy_from_slice(&h.to_le_bytes());
        }
        b[p + 4..p + 8].copy_from_slice(&blk.to_le_bytes());
    }
    let tail = off + limit * 8;
    let c = csum::raw(seed, &b[..off + entries.len() * 8]);
    // The tail goes in whole, its checksum field still zero (kernel `ext4_dx_csum`).
    let c = csum::raw(c, &b[tail..tail + 8]);
    b[tail + 4..tail + 8].copy_from_slice(&c.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_hash_is_even_and_spreads() {
        let a = hash(b"file-1");
        let b = hash(b"file-2");
        assert_eq!(a & 1, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn small_dir_is_one_linear_block() {
        let names: Vec<Vec<u8>> = (0..10).map(|i| format!("f{i}").into_bytes()).collect();
        let ents: Vec<Dirent> = names
            .iter()
            .map(|n| Dirent {
                name: n,
                ino: 12,
                ftype: 1,
            })
            .collect();
        let (blocks, indexed) = build(&ents, 2, 2, 0);
        assert_eq!(blocks.len(), 1);
        assert!(!indexed);
    }

    #[test]
    fn big_dir_gets_an_index_with_two_levels() {
        let names: Vec<Vec<u8>> = (0..150_000)
            .map(|i| format!("entry-{i:08}").into_bytes())
            .collect();
        let ents: Vec<Dirent> = names
            .iter()
            .map(|n| Dirent {
                name: n,
                ino: 12,
                ftype: 1,
            })
            .collect();
        let (blocks, indexed) = build(&ents, 2, 2, 0);
        assert!(indexed);
        assert_eq!(blocks[0][30], 1, "indirect levels");
        assert_eq!(block_count(&ents).0, blocks.len() as u64);
    }
}
