//! Fixed geometry of the filesystems we write and the arithmetic of block groups.
//!
//! ```text
//!  group 0:  [boot 1K | superblock 1K | pad] [GDT ...] [data ...........................]
//!  group 1:  [backup superblock] [backup GDT] [data ...]      (sparse_super: groups 0, 1
//!  group 2:  [data .................................]          and powers of 3, 5, 7)
//! ```
//!
//! Bitmaps and inode tables (flex_bg) are placed anywhere at the end, once the final tree
//! is known; see `finish.rs`.

/// Block size: 4 KiB, the only one we write.
pub(crate) const BLOCK: u64 = 4096;
/// Blocks per group: one bitmap block covers 8 * 4096 blocks.
pub(crate) const BPG: u64 = 32768;
/// On-disk inode size.
pub(crate) const INODE_SIZE: u64 = 256;
/// Group descriptor size (no 64bit feature).
pub(crate) const DESC_SIZE: u64 = 32;
/// Descriptors per GDT block.
pub(crate) const DESC_PER_BLOCK: u64 = BLOCK / DESC_SIZE;
/// Inodes per inode-table block.
pub(crate) const INODES_PER_BLOCK: u64 = BLOCK / INODE_SIZE;
/// Largest filesystem without the 64bit feature: 2^32 blocks.
pub(crate) const MAX_BLOCKS: u64 = 1 << 32;
/// Largest filesystem we grow to when no size is given (1 TiB): its GDT fits 64 blocks.
pub(crate) const AUTO_MAX_BLOCKS: u64 = 1 << 28;
/// Extent length limit for initialized extents.
pub(crate) const MAX_EXTENT_LEN: u32 = 32768;

/// Whether group `g` carries a superblock backup (sparse_super: 0, 1, powers of 3, 5, 7).
pub(crate) fn is_sparse_group(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            p *= base;
        }
        p == g
    })
}

/// GDT blocks needed for `groups` groups.
pub(crate) fn gdt_blocks(groups: u64) -> u64 {
    groups.div_ceil(DESC_PER_BLOCK)
}

/// Groups needed for `blocks` blocks.
pub(crate) fn groups_for(blocks: u64) -> u64 {
    blocks.div_ceil(BPG)
}

/// Number of groups below `groups` that hold superblock backups (including group 0).
pub(crate) fn sparse_groups_below(groups: u64) -> u64 {
    (0..groups).filter(|&g| is_sparse_group(g)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_groups_follow_powers() {
        let got: Vec<u64> = (0..100).filter(|&g| is_sparse_group(g)).collect();
        assert_eq!(got, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn gdt_size() {
        assert_eq!(gdt_blocks(1), 1);
        assert_eq!(gdt_blocks(128), 1);
        assert_eq!(gdt_blocks(129), 2);
        assert_eq!(gdt_blocks(groups_for(AUTO_MAX_BLOCKS)), 64);
    }
}
