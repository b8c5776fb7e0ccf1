//! The 256-byte on-disk inode (kernel `struct ext4_inode`).
//!
//! ```text
//!  0x00 mode  0x02 uid_lo  0x04 size_lo  0x08 atime  0x0C ctime  0x10 mtime  0x14 dtime
//!  0x18 gid_lo  0x1A links  0x1C blocks_lo  0x20 flags  0x28 i_block[60]  0x64 generation
//!  0x68 file_acl_lo  0x6C size_hi  0x74 blocks_hi  0x76 file_acl_hi  0x78 uid_hi  0x7A gid_hi
//!  0x7C csum_lo  0x80 extra_isize(32)  0x82 csum_hi  0x84 ctime_extra  0x88 mtime_extra
//!  0x8C atime_extra  0x90 crtime  0x94 crtime_extra  0xA0.. in-inode xattrs
//! ```

use crate::csum;
use crate::layout::INODE_SIZE;
use crate::tree::Time;

pub(crate) const S_IFIFO: u16 = 0o010000;
pub(crate) const S_IFCHR: u16 = 0o020000;
pub(crate) const S_IFDIR: u16 = 0o040000;
pub(crate) const S_IFBLK: u16 = 0o060000;
pub(crate) const S_IFREG: u16 = 0o100000;
pub(crate) const S_IFLNK: u16 = 0o120000;

pub(crate) const FL_INDEX: u32 = 0x1000;
pub(crate) const FL_EXTENTS: u32 = 0x8_0000;

/// Everything needed to serialize one inode.
#[derive(Debug)]
pub(crate) struct Raw {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Time,
    pub ctime: Time,
    pub mtime: Time,
    pub crtime: Time,
    pub links: u16,
    /// Blocks in use, in 4 KiB blocks (data, tree and xattr blocks).
    pub blocks: u64,
    pub flags: u32,
    pub i_block: [u8; 60],
    pub xattr_block: u64,
    /// The 96 bytes after the extra fields (in-inode xattrs), if any.
    pub ibody: Option<[u8; 96]>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Time::default(),
            ctime: Time::default(),
            mtime: Time::default(),
            crtime: Time::default(),
            links: 0,
            blocks: 0,
            flags: 0,
            i_block: [0; 60],
            xattr_block: 0,
            ibody: None,
        }
    }
}

/// Low 32 bits of the seconds and the `_extra` word: epoch bits and nanoseconds.
// The casts are the on-disk encoding (kernel `ext4_encode_extra_time`): the low 32 bits of
// the seconds as stored, and two epoch bits taken from what lies above them.
#[allow(clippy::cast_sign_loss)]
fn split_time(t: Time) -> (u32, u32) {
    let lo = t.sec as i32;
    let epoch = ((t.sec - i64::from(lo)) >> 32) as u32 & 3;
    (lo as u32, (t.nsec.min(999_999_999) << 2) | epoch)
}

impl Raw {
    /// The on-disk bytes of inode `ino`, with its checksum (`fs_seed` from the superblock).
    pub(crate) fn encode(&self, ino: u32, fs_seed: u32) -> [u8; INODE_SIZE as usize] {
        let mut b = [0u8; INODE_SIZE as usize];
        let put16 =
            |b: &mut [u8], off: usize, v: u16| b[off..off + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut b, 0x00, self.mode);
        put16(&mut b, 0x02, self.uid as u16);
        put32(&mut b, 0x04, self.size as u32);
        let (at, atx) = split_time(self.atime);
        let (ct, ctx) = split_time(self.ctime);
        let (mt, mtx) = split_time(self.mtime);
        let (crt, crtx) = split_time(self.crtime);
        put32(&mut b, 0x08, at);
        put32(&mut b, 0x0C, ct);
        put32(&mut b, 0x10, mt);
        put16(&mut b, 0x18, self.gid as u16);
        put16(&mut b, 0x1A, self.links);
        let sectors = self.blocks * 8;
        put32(&mut b, 0x1C, sectors as u32);
        put32(&mut b, 0x20, self.flags);
        b[0x28..0x28 + 60].copy_from_slice(&self.i_block);
        put32(&mut b, 0x68, self.xattr_block as u32);
        put32(&mut b, 0x6C, (self.size >> 32) as u32);
        put16(&mut b, 0x74, (sectors >> 32) as u16);
        put16(&mut b, 0x76, (self.xattr_block >> 32) as u16);
        put16(&mut b, 0x78, (self.uid >> 16) as u16);
        put16(&mut b, 0x7A, (self.gid >> 16) as u16);
        put16(&mut b, 0x80, 32);
        put32(&mut b, 0x84, ctx);
        put32(&mut b, 0x88, mtx);
        put32(&mut b, 0x8C, atx);
        put32(&mut b, 0x90, crt);
        put32(&mut b, 0x94, crtx);
        if let Some(body) = &self.ibody {
            b[0xA0..].copy_from_slice(body);
        }
        // Checksum over the whole inode with both checksum fields zero (they are).
        let c = csum::raw(csum::inode_seed(fs_seed, ino, 0), &b);
        put16(&mut b, 0x7C, c as u16);
        put16(&mut b, 0x82, (c >> 16) as u16);
        b
    }
}

/// `i_block` of a device inode: old encoding when both numbers fit a byte, else the new one
/// in the second word (kernel `ext4_set_inode`/`new_encode_dev`).
pub(crate) fn device_block(major: u32, minor: u32) -> [u8; 60] {
    let mut b = [0u8; 60];
    if major < 256 && minor < 256 {
        b[0..4].copy_from_slice(&((major << 8) | minor).to_le_bytes());
    } else {
        let v = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12);
        b[4..8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_nanoseconds_and_epoch() {
        assert_eq!(split_time(Time { sec: 1, nsec: 5 }), (1, 5 << 2));
        // 2040 is past 2^31 seconds: epoch bit 1.
        let (lo, extra) = split_time(Time {
            sec: (1 << 31) + 10,
            nsec: 0,
        });
        assert_eq!(lo, (1u32 << 31) + 10);
        assert_eq!(extra & 3, 1);
        let (_, extra) = split_time(Time { sec: -1, nsec: 0 });
        assert_eq!(extra & 3, 0);
    }

    #[test]
    fn big_device_numbers_use_the_new_encoding() {
        let b = device_block(259, 70000);
        assert_eq!(&b[0..4], &[0, 0, 0, 0]);
        assert_ne!(&b[4..8], &[0, 0, 0, 0]);
    }
}
