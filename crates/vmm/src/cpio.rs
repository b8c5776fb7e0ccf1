//! A writer for the `newc` cpio format, the format the Linux kernel unpacks as an initramfs.
//!
//! Layout of one entry (kernel `Documentation/driver-api/early-userspace/buffer-format.rst`):
//!
//! ```text
//! +--------+------------------------------------------+------+-----+------+-----+
//! | "070701" | 13 fields, 8 ASCII hex digits each     | name | NUL | pad4 | data | pad4 |
//! +--------+------------------------------------------+------+-----+------+-----+
//!   fields: ino mode uid gid nlink mtime filesize devmajor devminor
//!           rdevmajor rdevminor namesize check
//! ```
//!
//! The header plus name is padded to a multiple of 4 bytes, and so is the data. The archive ends
//! with an entry named `TRAILER!!!`. Names carry no leading `/`.

use std::io::{self, Write};

/// File type bits of `st_mode`.
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFLNK: u32 = 0o120000;

/// Errors of the cpio writer.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing the archive failed.
    #[error("cannot write cpio archive")]
    Write(#[source] io::Error),
    /// An entry name is empty, absolute after trimming, or contains a NUL byte.
    #[error("invalid cpio entry name {0:?}")]
    InvalidName(String),
    /// An entry is larger than the 32-bit size field allows.
    #[error("cpio entry {0:?} is larger than 4 GiB")]
    TooLarge(String),
}

/// Streams newc cpio entries to a writer. Call [`CpioWriter::finish`] to write the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// Adds a directory with permission bits `perm` (e.g. `0o755`).
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// Adds a regular file with permission bits `perm` and the given content.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// Adds a symbolic link `name` pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node with the given major and minor numbers.
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header("TRAILER!!!", 0, 1, (0, 0), 0, 0)?;
        self.pad()?;
        self.out.flush().map_err(CpioError::Write)?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        let name = name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(CpioError::InvalidName(name.to_string()));
        }
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(name.to_string()))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, mode, nlink, rdev, size, ino)?;
        self.put(data)?;
        self.pad()
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        size: u32,
        ino: u32,
    ) -> Result<(), CpioError> {
        let namesize = name.len() as u32 + 1;
        // mtime stays 0 so the same inputs give the same bytes (the archive is cached by hash).
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        let mut head = String::with_capacity(110 + name.len() + 1);
        head.push_str("070701");
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        head.push_str(name);
        head.push('\0');
        self.put(head.as_bytes())?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes).map_err(CpioError::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        let rem = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..rem])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("sbin", 0o755).unwrap();
        w.dir("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("sbin/init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        w.file("/etc-odd", 0o644, b"abc").unwrap();
        w.symlink("bin", "sbin").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn header_is_newc_and_aligned() {
        let bytes = sample();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let tail = String::from_utf8_lossy(&bytes[bytes.len() - 20..]).to_string();
        assert!(tail.contains("TRAILER!!!"), "{tail:?}");
    }

    #[test]
    fn rejects_bad_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(matches!(w.dir("/", 0o755), Err(CpioError::InvalidName(_))));
        assert!(matches!(
            w.file("a\0b", 0o644, b""),
            Err(CpioError::InvalidName(_))
        ));
    }

    /// GNU cpio (Debian) lists and extracts what we wrote: the outside oracle.
    #[test]
    #[cfg_attr(
        not(container_testenv),
        ignore = "needs root: GNU cpio makes the device nodes; run scripts/test.sh"
    )]
    fn gnu_cpio_reads_it_back() {
        let bytes = sample();
        let mut child = Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio (Debian package cpio) must be installed");
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 6, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" sbin"));
        assert!(lines[2].starts_with("crw-------") && lines[2].contains("5,   1"));
        assert!(lines[3].starts_with("-rwxr-xr-x") && lines[3].ends_with(" sbin/init"));
        assert!(lines[4].ends_with(" etc-odd"));
        assert!(lines[5].starts_with("lrwxrwxrwx") && lines[5].ends_with("bin -> sbin"));

        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("cpio")
            .args(["-id", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(child.wait().unwrap().success());
        let init = std::fs::read(dir.path().join("sbin/init")).unwrap();
        assert_eq!(init, b"#!/bin/sh\necho hi\n");
        assert_eq!(std::fs::read(dir.path().join("etc-odd")).unwrap(), b"abc");
        assert_eq!(
            std::fs::read_link(dir.path().join("bin")).unwrap(),
            std::path::PathBuf::from("sbin")
        );
    }
}
