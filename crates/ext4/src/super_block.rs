//! Superblock, group descriptors, bitmaps and the jbd2 journal superblock.
//!
//! ```text
//!  superblock (1024 bytes at byte 1024; backups at the start of sparse groups)
//!  descriptor (32 bytes): block_bitmap | inode_bitmap | inode_table | free_blocks u16 |
//!     free_inodes u16 | used_dirs u16 | flags u16 | exclude_bitmap | bbitmap_csum u16 |
//!     ibitmap_csum u16 | itable_unused u16 | checksum u16
//! ```
//!
//! Field offsets follow the kernel's `struct ext4_super_block` / `struct ext4_group_desc`;
//! the journal superblock follows `include/linux/jbd2.h` (big-endian).

use crate::alloc::Alloc;
use crate::csum;
use crate::data::Image;
use crate::layout::*;

/// The final shape of the filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub blocks: u64,
    pub groups: u64,
    /// GDT blocks after each superblock copy.
    pub gdt: u64,
    /// Inodes per group.
    pub ipg: u64,
    /// Inode table blocks per group.
    pub itb: u64,
    /// Journal size in blocks (0: no journal).
    pub journal_blocks: u64,
    pub uuid: [u8; 16],
}

// Feature flags (kernel fs/ext4/ext4.h).
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_EXT_ATTR: u32 = 0x8;
const COMPAT_DIR_INDEX: u32 = 0x20;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_DIR_NLINK: u32 = 0x20;
const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// Group descriptor flag: the inode table is zeroed.
const BG_INODE_ZEROED: u16 = 0x4;

pub(crate) struct Writer<'a> {
    pub geo: &'a Geometry,
    pub alloc: &'a Alloc,
    pub image: &'a Image,
    pub fs_seed: u32,
    pub max_ino: u32,
    /// Block bitmaps of all groups, then inode bitmaps of all groups.
    pub bitmap_blocks: &'a [u64],
    pub itables: &'a [u64],
    pub dirs_per_group: &'a [u32],
    pub label: &'a str,
    pub journal_i_block: Option<[u8; 60]>,
    pub data_mode: Option<crate::DataMode>,
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

impl Writer<'_> {
    pub(crate) fn write(&self) -> std::io::Result<()> {
        let geo = self.geo;
        let mut gdt = vec![0u8; (geo.gdt * BLOCK) as usize];
        let mut free_blocks_total = 0u64;
        let mut free_inodes_total = 0u64;
        for g in 0..geo.groups {
            // Block bitmap.
            let mut bb = vec![0u8; BLOCK as usize];
            let first = g * BPG;
            let mut free = 0u64;
            for k in 0..BPG / 64 {
                let base = first + k * 64;
                let mut w = self.alloc.word(base / 64);
                if base + 64 > geo.blocks {
                    // Blocks past the end of the filesystem are marked used (padding).
                    let valid = geo.blocks.saturating_sub(base);
                    let pad = if valid == 0 {
                        u64::MAX
                    } else {
                        u64::MAX << valid
                    };
                    w |= pad;
                }
                free += u64::from((!w).count_ones());
                bb[(k * 8) as usize..(k * 8 + 8) as usize].copy_from_slice(&w.to_le_bytes());
            }
            free_blocks_total += free;
            // Inode bitmap: inodes 1..=max_ino are in use, padding bits set.
            let mut ib = vec![0xffu8; BLOCK as usize];
            let first_ino = g * geo.ipg + 1;
            let mut free_inodes = 0u64;
            for i in 0..geo.ipg {
                if first_ino + i > u64::from(self.max_ino) {
                    ib[(i / 8) as usize] &= !(1 << (i % 8));
                    free_inodes += 1;
                }
            }
            free_inodes_total += free_inodes;
            let bbn = self.bitmap_blocks[g as usize];
            let ibn = self.bitmap_blocks[(geo.groups + g) as usize];
            self.image.write_at(bbn, &bb)?;
            self.image.write_at(ibn, &ib)?;
            let bb_csum = csum::raw(self.fs_seed, &bb[..(BPG / 8) as usize]);
            let ib_csum = csum::raw(self.fs_seed, &ib[..(geo.ipg / 8) as usize]);

            let d = &mut gdt[(g * DESC_SIZE) as usize..((g + 1) * DESC_SIZE) as usize];
            put32(d, 0x00, bbn as u32);
            put32(d, 0x04, ibn as u32);
            put32(d, 0x08, self.itables[g as usize] as u32);
            put16(d, 0x0C, free as u16);
            put16(d, 0x0E, free_inodes as u16);
            put16(d, 0x10, self.dirs_per_group[g as usize] as u16);
            put16(d, 0x12, BG_INODE_ZEROED);
            put16(d, 0x18, bb_csum as u16);
            put16(d, 0x1A, ib_csum as u16);
            put16(d, 0x1C, 0);
            // ext4_group_desc_csum: crc32c(seed, group) then the descriptor without its
            // checksum field, low 16 bits.
            let c = csum::raw(self.fs_seed, &(g as u32).to_le_bytes());
            let c = csum::raw(c, &d[..0x1E]);
            let c = csum::raw(c, &[0, 0]);
            put16(d, 0x1E, c as u16);
        }

        let mut sb = self.superblock(free_blocks_total, free_inodes_total);
        for g in (0..geo.groups).filter(|&g| is_sparse_group(g)) {
            put16(&mut sb, 0x5A, g as u16);
            let c = csum::raw(!0, &sb[..0x3FC]);
            put32(&mut sb, 0x3FC, c);
            if g == 0 {
                self.image.file_write_at(&sb, 1024)?;
            } else {
                self.image.write_at(g * BPG, &sb)?;
            }
            self.image.write_at(g * BPG + 1, &gdt)?;
        }
        Ok(())
    }

    fn superblock(&self, free_blocks: u64, free_inodes: u64) -> Vec<u8> {
        let geo = self.geo;
        let mut sb = vec![0u8; 1024];
        // s_wtime is 32 bits on disk; the kernel stores the low bits the same way.
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let now = crate::tree::Time::now().sec as u32;
        put32(&mut sb, 0x00, (geo.ipg * geo.groups) as u32);
        put32(&mut sb, 0x04, geo.blocks as u32);
        put32(&mut sb, 0x08, 0);
        put32(&mut sb, 0x0C, free_blocks as u32);
        put32(&mut sb, 0x10, free_inodes as u32);
        put32(&mut sb, 0x14, 0); // first data block
        put32(&mut sb, 0x18, 2); // log block size: 1024 << 2
        put32(&mut sb, 0x1C, 2); // log cluster size
        put32(&mut sb, 0x20, BPG as u32);
        put32(&mut sb, 0x24, BPG as u32);
        put32(&mut sb, 0x28, geo.ipg as u32);
        put32(&mut sb, 0x2C, 0); // mtime
        put32(&mut sb, 0x30, now); // wtime
        put16(&mut sb, 0x34, 0); // mount count
        put16(&mut sb, 0x36, 0xFFFF); // max mount count: -1
        put16(&mut sb, 0x38, 0xEF53);
        put16(&mut sb, 0x3A, 1); // clean
        put16(&mut sb, 0x3C, 1); // errors: continue
        put32(&mut sb, 0x40, now); // last check
        put32(&mut sb, 0x48, 0); // creator OS: Linux
        put32(&mut sb, 0x4C, 1); // dynamic revision
        put32(&mut sb, 0x54, 11); // first non-reserved inode
        put16(&mut sb, 0x58, INODE_SIZE as u16);
        let mut compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX;
        if self.journal_i_block.is_some() {
            compat |= COMPAT_HAS_JOURNAL;
        }
        put32(&mut sb, 0x5C, compat);
        put32(
            &mut sb,
            0x60,
            INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_FLEX_BG,
        );
        put32(
            &mut sb,
            0x64,
            RO_COMPAT_SPARSE_SUPER
                | RO_COMPAT_LARGE_FILE
                | RO_COMPAT_HUGE_FILE
                | RO_COMPAT_DIR_NLINK
                | RO_COMPAT_EXTRA_ISIZE
                | RO_COMPAT_METADATA_CSUM,
        );
        sb[0x68..0x78].copy_from_slice(&geo.uuid);
        let label = self.label.as_bytes();
        let n = label.len().min(16);
        sb[0x78..0x78 + n].copy_from_slice(&label[..n]);
        if let Some(i_block) = self.journal_i_block {
            put32(&mut sb, 0xE0, 8); // journal inode
            sb[0xFD] = 1; // s_jnl_backup_type: EXT3_JNL_BACKUP_BLOCKS
            sb[0x10C..0x10C + 60].copy_from_slice(&i_block);
            let size = geo.journal_blocks * BLOCK;
            put32(&mut sb, 0x10C + 15 * 4, (size >> 32) as u32);
            put32(&mut sb, 0x10C + 16 * 4, size as u32);
        }
        // Hash seed for htree (legacy hash ignores it, but tools expect one).
        let seed = csum::raw(0x5eed, &geo.uuid);
        for i in 0..4u32 {
            put32(&mut sb, 0xEC + 4 * i as usize, seed.rotate_left(8 * i) ^ i);
        }
        sb[0xFC] = 0; // default hash: legacy
                      // Default mount options: user_xattr, acl, and the data mode in the EXT4_DEFM_JMODE
                      // bits, which ext4_fill_super turns into data=… when the mount names none.
        let jmode = match self.data_mode {
            None => 0,
            Some(crate::DataMode::Journal) => 0x20,
            Some(crate::DataMode::Ordered) => 0x40,
            Some(crate::DataMode::Writeback) => 0x60,
        };
        put32(&mut sb, 0x100, 0x000C | jmode);
        put32(&mut sb, 0x108, now); // mkfs time
        put16(&mut sb, 0x15C, 32); // min extra isize
        put16(&mut sb, 0x15E, 32); // want extra isize
        put32(&mut sb, 0x160, 0x2); // flags: unsigned directory hash
        sb[0x174] = 4; // log groups per flex
        sb[0x175] = 1; // checksum type: crc32c
        sb
    }
}

impl Image {
    pub(crate) fn file_write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, offset)
    }
}

/// The first block of the journal: a clean, empty jbd2 v2 superblock.
pub(crate) fn journal_superblock(blocks: u64, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    let be32 = |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    be32(&mut b, 0x00, 0xC03B_3998); // magic
    be32(&mut b, 0x04, 4); // superblock v2
    be32(&mut b, 0x08, 0);
    be32(&mut b, 0x0C, BLOCK as u32);
    be32(&mut b, 0x10, blocks as u32); // maxlen
    be32(&mut b, 0x14, 1); // first log block
    be32(&mut b, 0x18, 1); // sequence
    be32(&mut b, 0x1C, 0); // start: 0 = clean
    b[0x30..0x40].copy_from_slice(uuid);
    be32(&mut b, 0x40, 1); // nr_users
    b
}
