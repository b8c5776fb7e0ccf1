//! Extended attributes (kernel `fs/ext4/xattr.h`): in the inode's extra space when they fit,
//! otherwise in one xattr block.
//!
//! ```text
//!  in inode (offset 160):  magic 0xEA020000 | entries… | 0u32 | …free… | values (from the end)
//!  block:                  header(32) | entries… | 0u32 | …free… | values (from the end)
//!  entry:  name_len u8 | name_index u8 | value_offs u16 | value_inum u32 | value_size u32
//!          | hash u32 | name (padded to 4)
//! ```
//!
//! POSIX ACLs arrive in the generic xattr format and are stored in ext4's compact one.

use crate::csum;
use crate::layout::BLOCK;
use crate::tree::Xattr;

const MAGIC: u32 = 0xEA02_0000;
/// Bytes of the inode after the 32 bytes of extra fields: 256 - 160.
const IBODY_SPACE: usize = 96;

/// An attribute in on-disk form: namespace index, suffix, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub index: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Maps a full attribute name to its on-disk form; `None` for namespaces ext4 cannot store.
pub(crate) fn encode(x: &Xattr) -> Option<Entry> {
    const PREFIXES: [(&[u8], u8); 3] = [(b"user.", 1), (b"trusted.", 4), (b"security.", 6)];
    for (prefix, index) in PREFIXES {
        if let Some(rest) = x.name.strip_prefix(prefix) {
            if rest.is_empty() || rest.len() > 255 {
                return None;
            }
            return Some(Entry {
                index,
                name: rest.to_vec(),
                value: x.value.clone(),
            });
        }
    }
    let acl_index = match x.name.as_slice() {
        b"system.posix_acl_access" => 2,
        b"system.posix_acl_default" => 3,
        _ => return None,
    };
    Some(Entry {
        index: acl_index,
        name: Vec::new(),
        value: acl_to_disk(&x.value)?,
    })
}

/// Generic POSIX ACL xattr (version 2, 8-byte entries) to ext4's on-disk ACL (version 1,
/// 4-byte entries for the owner/group/mask/other tags, 8-byte ones with an id).
fn acl_to_disk(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) || v[0..4] != 2u32.to_le_bytes() {
        return None;
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[0..4]);
        match tag {
            0x01 | 0x04 | 0x10 | 0x20 => {}
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            _ => return None,
        }
    }
    Some(out)
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn entry_len(e: &Entry) -> usize {
    16 + pad4(e.name.len())
}

/// `ext4_xattr_hash_entry`.
fn entry_hash(e: &Entry) -> u32 {
    let mut h: u32 = 0;
    for &c in &e.name {
        h = (h << 5) ^ (h >> 27) ^ u32::from(c);
    }
    let mut padded = e.value.clone();
    padded.resize(pad4(padded.len()), 0);
    for w in padded.chunks_exact(4) {
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    h
}

/// Sorts as the kernel expects in blocks: by index, name length, name.
pub(crate) fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
}

/// Lays entries and values into `area`; entries start at `first`, values are addressed
/// relative to `base`. Returns the entry hashes, or `None` when they do not fit.
fn lay_out(entries: &[Entry], area: &mut [u8], first: usize, base: usize) -> Option<Vec<u32>> {
    let mut pos = first;
    let mut end = area.len();
    let mut hashes = Vec::new();
    for e in entries {
        let vlen = pad4(e.value.len());
        if pos + entry_len(e) + 4 > end.checked_sub(vlen)? {
            return None;
        }
        end -= vlen;
        area[end..end + e.value.len()].copy_from_slice(&e.value);
        let h = entry_hash(e);
        hashes.push(h);
        let d = &mut area[pos..];
        d[0] = e.name.len() as u8;
        d[1] = e.index;
        let voff = if e.value.is_empty() { 0 } else { end - base };
        d[2..4].copy_from_slice(&(voff as u16).to_le_bytes());
        d[4..8].copy_from_slice(&0u32.to_le_bytes());
        d[8..12].copy_from_slice(&(e.value.len() as u32).to_le_bytes());
        d[12..16].copy_from_slice(&h.to_le_bytes());
        d[16..16 + e.name.len()].copy_from_slice(&e.name);
        pos += entry_len(e);
    }
    Some(hashes)
}

/// The 96 bytes after the inode's extra fields holding `entries`, or `None` if too big.
pub(crate) fn ibody(entries: &[Entry]) -> Option<[u8; IBODY_SPACE]> {
    let mut area = [0u8; IBODY_SPACE];
    area[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    lay_out(entries, &mut area, 4, 4)?;
    Some(area)
}

/// An xattr block holding `entries` at physical block `pb`, or `None` if too big.
pub(crate) fn block(entries: &[Entry], pb: u64, fs_seed: u32) -> Option<Vec<u8>> {
    let mut b = vec![0u8; BLOCK as usize];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&1u32.to_le_bytes()); // refcount
    b[8..12].copy_from_slice(&1u32.to_le_bytes()); // blocks
    let hashes = lay_out(entries, &mut b, 32, 0)?;
    // ext4_xattr_rehash: the block hash folds the entry hashes.
    let mut h: u32 = 0;
    for eh in hashes {
        h = (h << 16) ^ (h >> 16) ^ eh;
    }
    b[12..16].copy_from_slice(&h.to_le_bytes());
    let c = csum::raw(fs_seed, &pb.to_le_bytes());
    let c = csum::raw(c, &b);
    b[16..20].copy_from_slice(&c.to_le_bytes());
    Some(b)
}

/// Whether `entries` fit one block (checked before blocks are allocated).
pub(crate) fn fits_block(entries: &[Entry]) -> bool {
    block(entries, 0, 0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(name: &str, value: &[u8]) -> Xattr {
        Xattr {
            name: name.as_bytes().to_vec(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn namespaces_map_to_indexes() {
        assert_eq!(encode(&x("user.a", b"1")).map(|e| e.index), Some(1));
        assert_eq!(
            encode(&x("security.capability", b"")).map(|e| e.index),
            Some(6)
        );
        assert_eq!(
            encode(&x("trusted.overlay.opaque", b"y")).map(|e| e.index),
            Some(4)
        );
        assert_eq!(encode(&x("bogus.a", b"1")), None);
    }

    #[test]
    fn small_attrs_fit_the_inode_and_big_ones_do_not() {
        let small = vec![encode(&x("user.k", b"v")).expect("user")];
        assert!(ibody(&small).is_some());
        let big = vec![encode(&x("user.k", &[7u8; 200])).expect("user")];
        assert!(ibody(&big).is_none());
        assert!(fits_block(&big));
        let huge = vec![encode(&x("user.k", &[7u8; 5000])).expect("user")];
        assert!(!fits_block(&huge));
    }

    #[test]
    fn acl_is_compacted() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_to_disk(&v).expect("valid acl");
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
    }
}
