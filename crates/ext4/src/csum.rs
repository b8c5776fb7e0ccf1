//! CRC32C as the ext4 metadata checksums use it (`ext4_chksum`): the raw register update with
//! a caller-given seed and no final inversion (kernel `fs/ext4/ext4.h`).

/// `ext4_chksum(seed, data)`.
pub(crate) fn raw(seed: u32, data: &[u8]) -> u32 {
    // crc32c_append inverts on entry and exit; undo both to get the raw update.
    !crc32c::crc32c_append(!seed, data)
}

/// Per-inode checksum seed: `crc(crc(fs_seed, ino), generation)`.
pub(crate) fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    let s = raw(fs_seed, &ino.to_le_bytes());
    raw(s, &generation.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_matches_standard_crc_when_inverted() {
        // The standard CRC32C check value of "123456789" is 0xe3069283.
        assert_eq!(!raw(!0, b"123456789"), 0xe306_9283);
    }

    #[test]
    fn raw_chains() {
        let whole = raw(7, b"hello world");
        let parts = raw(raw(7, b"hello "), b"world");
        assert_eq!(whole, parts);
    }
}
