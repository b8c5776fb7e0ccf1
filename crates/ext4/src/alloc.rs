//! Block allocator: one bit per block, grown on demand.
//!
//! While layers stream in, the final size may be unknown, so the allocator hands out blocks
//! below a limit (the given size, or 1 TiB) and skips the start of every sparse group, where
//! the superblock backup and GDT will go (`reserve` blocks after the superblock). Blocks at or
//! above the high-water mark have never been written, so they read as zeros: inode tables
//! are placed there when possible so they need not be written out.

use crate::layout::{is_sparse_group, BPG};

/// A run of blocks `[start, start + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub start: u64,
    pub len: u64,
}

#[derive(Debug)]
pub(crate) struct Alloc {
    bits: Vec<u64>,
    /// Blocks `[0, limit)` may be handed out.
    limit: u64,
    /// GDT blocks reserved after each sparse group's superblock.
    reserve: u64,
    cursor: u64,
    /// One past the highest block ever handed out.
    hwm: u64,
    used: u64,
}

impl Alloc {
    pub(crate) fn new(limit: u64, reserve: u64) -> Self {
        Alloc {
            bits: Vec::new(),
            limit,
            reserve,
            cursor: 0,
            hwm: 0,
            used: 0,
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn hwm(&self) -> u64 {
        self.hwm
    }

    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Narrows or widens the allocatable range and the per-group reserve (at finish time,
    /// when the geometry is final).
    pub(crate) fn set_geometry(&mut self, limit: u64, reserve: u64) {
        self.limit = limit;
        self.reserve = reserve;
        self.cursor = 0;
    }

    /// End of the reserved range at the start of `b`'s group, if `b` lies in it.
    fn reserved_end(&self, b: u64) -> Option<u64> {
        let g = b / BPG;
        let off = b % BPG;
        if is_sparse_group(g) && off < 1 + self.reserve {
            Some(g * BPG + 1 + self.reserve)
        } else {
            None
        }
    }

    pub(crate) fn is_used(&self, b: u64) -> bool {
        let w = (b / 64) as usize;
        w < self.bits.len() && self.bits[w] & (1 << (b % 64)) != 0
    }

    fn set(&mut self, b: u64) {
        let w = (b / 64) as usize;
        if w >= self.bits.len() {
            self.bits.resize((w + 1).max(self.bits.len() * 2), 0);
        }
        debug_assert!(self.bits[w] & (1 << (b % 64)) == 0);
        self.bits[w] |= 1 << (b % 64);
        self.used += 1;
        self.hwm = self.hwm.max(b + 1);
    }

    /// Marks a block used without allocating it (superblocks, GDT at finish). The
    /// high-water mark is left alone: these blocks are written anyway.
    pub(crate) fn mark(&mut self, b: u64) {
        if !self.is_used(b) {
            let hwm = self.hwm;
            self.set(b);
            self.hwm = hwm;
        }
    }

    /// Raw bitmap word `i` (blocks `64 i .. 64 i + 63`).
    pub(crate) fn word(&self, i: u64) -> u64 {
        self.bits.get(i as usize).copied().unwrap_or(0)
    }

    /// Frees a run handed out before.
    pub(crate) fn free(&mut self, run: Run) {
        for b in run.start..run.start + run.len {
            let w = (b / 64) as usize;
            if w < self.bits.len() && self.bits[w] & (1 << (b % 64)) != 0 {
                self.bits[w] &= !(1 << (b % 64));
                self.used -= 1;
            }
        }
    }

    fn is_free(&self, b: u64) -> bool {
        b < self.limit && self.reserved_end(b).is_none() && !self.is_used(b)
    }

    /// First free block at or after `from`, below the limit.
    fn find_free(&self, mut from: u64) -> Option<u64> {
        while from < self.limit {
            if let Some(end) = self.reserved_end(from) {
                from = end;
                continue;
            }
            let w = (from / 64) as usize;
            if w < self.bits.len() && self.bits[w] == u64::MAX && from.is_multiple_of(64) {
                from += 64;
                continue;
            }
            if !self.is_used(from) {
                return Some(from);
            }
            from += 1;
        }
        None
    }

    /// One block, preferably right after `prev` so the file's extent grows.
    pub(crate) fn take_next(&mut self, prev: Option<u64>) -> Option<u64> {
        if let Some(p) = prev {
            if self.is_free(p + 1) {
                self.set(p + 1);
                self.cursor = p + 2;
                return Some(p + 1);
            }
        }
        let b = self.find_free(self.cursor).or_else(|| self.find_free(0))?;
        self.set(b);
        self.cursor = b + 1;
        Some(b)
    }

    /// Up to `want` contiguous blocks starting at the first free block.
    pub(crate) fn take_run(&mut self, want: u64) -> Option<Run> {
        let start = self.take_next(None)?;
        let mut len = 1;
        while len < want && self.is_free(start + len) {
            self.set(start + len);
            len += 1;
        }
        self.cursor = start + len;
        Some(Run { start, len })
    }

    /// Blocks for `want` blocks of metadata as a list of runs (contiguous when possible).
    pub(crate) fn take_runs(&mut self, want: u64) -> Option<Vec<Run>> {
        let mut runs: Vec<Run> = Vec::new();
        let mut left = want;
        while left > 0 {
            let r = self.take_run(left)?;
            left -= r.len;
            match runs.last_mut() {
                Some(last) if last.start + last.len == r.start => last.len += r.len,
                _ => runs.push(r),
            }
        }
        Some(runs)
    }

    /// `len` contiguous blocks never written before (at or above the high-water mark), if
    /// they fit below the limit.
    pub(crate) fn take_fresh(&mut self, len: u64) -> Option<Run> {
        let mut start = self.hwm;
        loop {
            if start + len > self.limit {
                return None;
            }
            match (start..start + len).find(|&b| self.reserved_end(b).is_some()) {
                Some(b) => start = self.reserved_end(b).unwrap_or(b + 1),
                None => break,
            }
        }
        for b in start..start + len {
            self.set(b);
        }
        Some(Run { start, len })
    }

    /// `len` contiguous free blocks anywhere.
    pub(crate) fn take_contiguous(&mut self, len: u64) -> Option<Run> {
        let mut start = self.find_free(0)?;
        loop {
            if start + len > self.limit {
                return None;
            }
            match (start..start + len).find(|&b| !self.is_free(b)) {
                Some(b) => start = self.find_free(b + 1)?,
                None => break,
            }
        }
        for b in start..start + len {
            self.set(b);
        }
        Some(Run { start, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_reserved_group_starts() {
        let mut a = Alloc::new(3 * BPG, 2);
        // Group 0: block 0 is the superblock, 1..=2 the GDT reserve.
        assert_eq!(a.take_next(None), Some(3));
        assert_eq!(a.take_next(Some(3)), Some(4));
        let r = a.take_fresh(BPG).expect("fresh run");
        // Cannot straddle group 1's reserved start.
        assert_eq!(r.start, BPG + 3);
    }

    #[test]
    fn reuses_freed_blocks_when_full() {
        let mut a = Alloc::new(10, 0);
        let mut got = Vec::new();
        while let Some(b) = a.take_next(None) {
            got.push(b);
        }
        assert_eq!(got, (1..10).collect::<Vec<_>>());
        a.free(Run { start: 4, len: 2 });
        assert_eq!(a.take_run(5), Some(Run { start: 4, len: 2 }));
        assert_eq!(a.used(), 9);
    }
}
