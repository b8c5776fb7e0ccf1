//! A small read-only ext4 reader: enough to look up paths, list directories and read files,
//! symlinks and metadata from images (ours, or any extent-based ext4 without inline data).
//!
//! Used by tests to read images back without mounting them, and by callers that need a file
//! out of a built rootfs (e.g. `/etc/passwd`) without a loop device.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The image file could not be opened or read.
    #[error("cannot read image")]
    Io(#[from] std::io::Error),
    /// The bytes are not an ext4 filesystem this reader understands.
    #[error("not a readable ext4 image: {0}")]
    Format(String),
    /// A path does not resolve.
    #[error("{0:?} not found in the image")]
    NotFound(String),
}

/// What kind of node an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// Metadata of one inode.
#[derive(Debug, Clone)]
pub struct Stat {
    /// Inode number.
    pub ino: u32,
    /// Node type.
    pub kind: FileKind,
    /// Permission bits (07777).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub links: u16,
    /// Modification time (seconds, nanoseconds).
    pub mtime: crate::Time,
}

/// An open image.
pub struct Reader {
    file: File,
    block_size: u64,
    inodes_per_group: u64,
    inode_size: u64,
    desc_size: u64,
    gdt_start: u64,
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl Reader {
    /// Opens an image and reads its superblock.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path)?;
        let mut sb = [0u8; 1024];
        file.read_exact_at(&mut sb, 1024)?;
        if le16(&sb, 0x38) != 0xEF53 {
            return Err(ReadError::Format("bad superblock magic".into()));
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return Err(ReadError::Format("bad block size".into()));
        }
        let block_size = 1024u64 << log;
        let incompat = le32(&sb, 0x60);
        let desc_size = if incompat & 0x80 != 0 {
            u64::from(le16(&sb, 0xFE)).max(32)
        } else {
            32
        };
        let first_data = u64::from(le32(&sb, 0x14));
        let ipg = u64::from(le32(&sb, 0x28));
        let isz = u64::from(le16(&sb, 0x58));
        if ipg == 0 || isz < 128 {
            return Err(ReadError::Format("bad inode geometry".into()));
        }
        Ok(Reader {
            file,
            block_size,
            inodes_per_group: ipg,
            inode_size: isz,
            desc_size,
            gdt_start: (first_data + 1) * block_size,
        })
    }

    fn inode(&self, ino: u32) -> Result<Vec<u8>, ReadError> {
        if ino == 0 {
            return Err(ReadError::Format("inode 0".into()));
        }
        let g = u64::from(ino - 1) / self.inodes_per_group;
        let idx = u64::from(ino - 1) % self.inodes_per_group;
        let mut d = vec![0u8; self.desc_size as usize];
        self.file
            .read_exact_at(&mut d, self.gdt_start + g * self.desc_size)?;
        let mut table = u64::from(le32(&d, 8));
        if self.desc_size >= 64 {
            table |= u64::from(le32(&d, 0x28)) << 32;
        }
        let mut b = vec![0u8; self.inode_size as usize];
        self.file
            .read_exact_at(&mut b, table * self.block_size + idx * self.inode_size)?;
        Ok(b)
    }

    /// Metadata of inode `ino`.
    pub fn stat_ino(&self, ino: u32) -> Result<Stat, ReadError> {
        let b = self.inode(ino)?;
        let mode = le16(&b, 0);
        let kind = match mode & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            0o020000 => FileKind::CharDev,
            0o060000 => FileKind::BlockDev,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            _ => return Err(ReadError::Format(format!("inode {ino} has mode {mode:o}"))),
        };
        let extra = if self.inode_size > 128 {
            le16(&b, 0x80)
        } else {
            0
        };
        let mtime_extra = if extra >= 12 { le32(&b, 0x88) } else { 0 };
        let sec = i64::from(le32(&b, 0x10) as i32) + (i64::from(mtime_extra & 3) << 32);
        Ok(Stat {
            ino,
            kind,
            perm: mode & 0o7777,
            uid: u32::from(le16(&b, 2)) | (u32::from(le16(&b, 0x78)) << 16),
            gid: u32::from(le16(&b, 0x18)) | (u32::from(le16(&b, 0x7A)) << 16),
            size: u64::from(le32(&b, 4)) | (u64::from(le32(&b, 0x6C)) << 32),
            links: le16(&b, 0x1A),
            mtime: crate::Time {
                sec,
                nsec: mtime_extra >> 2,
            },
        })
    }

    /// Extents of an inode as (logical block, physical block, length).
    fn extents(&self, ino: u32) -> Result<Vec<(u64, u64, u64)>, ReadError> {
        let b = self.inode(ino)?;
        if le32(&b, 0x20) & 0x8_0000 == 0 {
            return Err(ReadError::Format(format!(
                "inode {ino} does not use extents"
            )));
        }
        let mut out = Vec::new();
        self.walk_node(&b[0x28..0x28 + 60], &mut out, 0)?;
        Ok(out)
    }

    fn walk_node(
        &self,
        node: &[u8],
        out: &mut Vec<(u64, u64, u64)>,
        level: u32,
    ) -> Result<(), ReadError> {
        if le16(node, 0) != 0xF30A || level > 5 {
            return Err(ReadError::Format("bad extent header".into()));
        }
        let entries = le16(node, 2) as usize;
        let depth = le16(node, 6);
        if 12 + entries * 12 > node.len() {
            return Err(ReadError::Format("extent node overflows".into()));
        }
        for i in 0..entries {
            let e = &node[12 + i * 12..24 + i * 12];
            if depth == 0 {
                let len = u64::from(le16(e, 4));
                // Lengths above 32768 mark unwritten extents: they read as zeros.
                if len <= 32768 {
                    let start = u64::from(le32(e, 8)) | (u64::from(le16(e, 6)) << 32);
                    out.push((u64::from(le32(e, 0)), start, len));
                }
            } else {
                let child = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
                let mut buf = vec![0u8; self.block_size as usize];
                self.file.read_exact_at(&mut buf, child * self.block_size)?;
                self.walk_node(&buf, out, level + 1)?;
            }
        }
        Ok(())
    }

    /// The whole content of inode `ino` (holes read as zeros).
    pub fn read_ino(&self, ino: u32) -> Result<Vec<u8>, ReadError> {
        let st = self.stat_ino(ino)?;
        if st.kind == FileKind::Symlink && st.size < 60 {
            let b = self.inode(ino)?;
            return Ok(b[0x28..0x28 + st.size as usize].to_vec());
        }
        let size =
            usize::try_from(st.size).map_err(|_| ReadError::Format("file too large".into()))?;
        let mut data = vec![0u8; size];
        for (logical, start, len) in self.extents(ino)? {
            let off = logical * self.block_size;
            if off >= st.size {
                continue;
            }
            let n = (len * self.block_size).min(st.size - off) as usize;
            self.file.read_exact_at(
                &mut data[off as usize..off as usize + n],
                start * self.block_size,
            )?;
        }
        Ok(data)
    }

    /// Entries of directory inode `ino` (name, inode), `.` and `..` excluded.
    pub fn list_ino(&self, ino: u32) -> Result<Vec<(Vec<u8>, u32)>, ReadError> {
        let data = self.read_ino(ino)?;
        let mut out = Vec::new();
        for block in data.chunks(self.block_size as usize) {
            let mut off = 0;
            while off + 8 <= block.len() {
                let inode = le32(block, off);
                let rec = le16(block, off + 4) as usize;
                let nlen = block[off + 6] as usize;
                if rec < 8 || off + rec > block.len() || 8 + nlen > rec {
                    break;
                }
                let name = &block[off + 8..off + 8 + nlen];
                if inode != 0 && name != b"." && name != b".." {
                    out.push((name.to_vec(), inode));
                }
                off += rec;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Inode of `path` (absolute or relative to the root; symlinks are not followed).
    pub fn lookup(&self, path: &str) -> Result<u32, ReadError> {
        let mut ino = 2;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let entries = self.list_ino(ino)?;
            ino = entries
                .iter()
                .find(|(n, _)| n == part.as_bytes())
                .map(|(_, i)| *i)
                .ok_or_else(|| ReadError::NotFound(path.to_string()))?;
        }
        Ok(ino)
    }

    /// Metadata of `path`.
    pub fn stat(&self, path: &str) -> Result<Stat, ReadError> {
        self.stat_ino(self.lookup(path)?)
    }

    /// Content of the file (or symlink target) at `path`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.read_ino(self.lookup(path)?)
    }

    /// Names in the directory at `path`, sorted.
    pub fn list(&self, path: &str) -> Result<Vec<String>, ReadError> {
        Ok(self
            .list_ino(self.lookup(path)?)?
            .into_iter()
            .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }
}
