//! File contents: streamed from a layer straight to their final blocks in the image.
//!
//! All-zero blocks become holes (the file reads back the same; the image stays sparse), so
//! sparse files in a layer stay sparse in the guest. Contiguous blocks go out in one write.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use crate::alloc::Alloc;
use crate::extent::{push_block, Extent};
use crate::layout::BLOCK;

/// Bytes read from a layer per step.
const CHUNK: usize = 1 << 20;

/// The image file being written.
#[derive(Debug)]
pub(crate) struct Image {
    pub file: File,
}

impl Image {
    pub(crate) fn write_at(&self, block: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, block * BLOCK)
    }

    /// Makes blocks `[start, start+len)` read as zeros without writing them.
    pub(crate) fn zero(&self, start: u64, len: u64) -> std::io::Result<()> {
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (start * BLOCK) as libc::off_t,
                (len * BLOCK) as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        // Filesystems without hole punching: write the zeros.
        let zeros = vec![0u8; CHUNK];
        let mut off = start * BLOCK;
        let end = (start + len) * BLOCK;
        while off < end {
            let n = ((end - off) as usize).min(CHUNK);
            self.file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        Ok(())
    }
}

/// Why file data could not be stored.
#[derive(Debug)]
pub(crate) enum DataError {
    /// The stream ended early or failed.
    Read(std::io::Error),
    /// Writing to the image failed.
    Write(std::io::Error),
    /// No free block left below the size limit.
    NoSpace,
    /// The file is larger than ext4 allows (2^32 blocks).
    TooLarge,
}

fn is_zero(block: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to only reinterprets the aligned middle.
    let (head, mid, tail) = unsafe { block.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Copies `size` bytes from `src` into newly allocated blocks; returns the extents.
pub(crate) fn store(
    src: &mut dyn Read,
    size: u64,
    alloc: &mut Alloc,
    image: &Image,
    buf: &mut Vec<u8>,
) -> Result<Vec<Extent>, DataError> {
    if size.div_ceil(BLOCK) > u64::from(u32::MAX) {
        return Err(DataError::TooLarge);
    }
    buf.resize(CHUNK, 0);
    let mut extents: Vec<Extent> = Vec::new();
    let mut left = size;
    let mut logical: u32 = 0;
    let mut prev: Option<u64> = None;
    while left > 0 {
        let want = (left.min(CHUNK as u64)) as usize;
        let mut got = 0;
        while got < want {
            match src.read(&mut buf[got..want]) {
                Ok(0) => {
                    return Err(DataError::Read(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "archive ends {} bytes before the end of the file",
                            left - got as u64
                        ),
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::Read(e)),
            }
        }
        left -= want as u64;
        let padded = want.div_ceil(BLOCK as usize) * BLOCK as usize;
        buf[want..padded].fill(0);
        // Pending contiguous write: (first physical block, offset in buf, bytes).
        let mut pending: Option<(u64, usize, usize)> = None;
        for off in (0..padded).step_by(BLOCK as usize) {
            let block = &buf[off..off + BLOCK as usize];
            if is_zero(block) {
                logical += 1;
                continue;
            }
            let pb = alloc.take_next(prev).ok_or(DataError::NoSpace)?;
            prev = Some(pb);
            push_block(&mut extents, logical, pb);
            logical = logical.checked_add(1).ok_or(DataError::TooLarge)?;
            pending = match pending {
                Some((start, boff, len))
                    if start + (len as u64 / BLOCK) == pb && boff + len == off =>
                {
                    Some((start, boff, len + BLOCK as usize))
                }
                Some((start, boff, len)) => {
                    image
                        .write_at(start, &buf[boff..boff + len])
                        .map_err(DataError::Write)?;
                    Some((pb, off, BLOCK as usize))
                }
                None => Some((pb, off, BLOCK as usize)),
            };
        }
        if let Some((start, boff, len)) = pending {
            image
                .write_at(start, &buf[boff..boff + len])
                .map_err(DataError::Write)?;
        }
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("img"))
            .expect("open");
        let image = Image { file };
        let mut alloc = Alloc::new(1000, 0);
        let mut content = vec![0u8; 5 * BLOCK as usize + 100];
        content[0] = 1;
        content[3 * BLOCK as usize] = 2;
        content[5 * BLOCK as usize + 99] = 3;
        let mut buf = Vec::new();
        let ext = store(
            &mut content.as_slice(),
            content.len() as u64,
            &mut alloc,
            &image,
            &mut buf,
        )
        .expect("store");
        let logicals: Vec<u32> = ext.iter().map(|e| e.logical).collect();
        assert_eq!(logicals, vec![0, 3, 5]);
        let mut back = vec![0u8; BLOCK as usize];
        image
            .file
            .read_exact_at(&mut back, ext[2].start * BLOCK)
            .expect("read");
        assert_eq!(back[99], 3);
    }

    #[test]
    fn short_stream_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("img")).expect("create");
        let image = Image { file };
        let mut alloc = Alloc::new(1000, 0);
        let mut buf = Vec::new();
        let got = store(&mut &[1u8; 10][..], 20, &mut alloc, &image, &mut buf);
        assert!(matches!(got, Err(DataError::Read(_))));
    }
}
