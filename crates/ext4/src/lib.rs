//! Our own ext4 writer: builds an ext4 filesystem image straight from OCI layer tarballs.
//!
//! No `mkfs`, no loop mount, no unpacking to a host directory: every layer is streamed once,
//! file contents go straight to their final blocks in the image file, and the metadata
//! (inodes, directories, bitmaps, group descriptors, superblocks) is laid out at the end when
//! the final tree is known. A hostile layer can therefore never touch a host path.
//!
//! ```text
//!  layer.tar(.gz|.zst) ──► apply (whiteouts, links, type changes) ──► in-memory tree
//!        │                                                               │
//!        └── file data ──► allocator ──► image blocks      finish ◄──────┘
//!                                                  (inodes, dirs, htree, bitmaps, sb)
//! ```
//!
//! Entry points: [`build_from_layers`], [`format_empty`], and [`Builder`] for callers that
//! hold layer readers rather than files.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

mod alloc;
mod apply;
mod csum;
mod data;
mod dir;
mod extent;
mod finish;
mod inode;
mod layout;
pub mod reader;
mod super_block;
mod tree;
mod xattr;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use tree::{Time, Xattr};

/// How to build the filesystem.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// Size of the filesystem in bytes (rounded down to 4 KiB). `None`: computed from the
    /// content with headroom (25 % plus 32 MiB).
    pub size: Option<u64>,
    /// With `size: None`, the computed size is at least this many bytes. The image file stays
    /// sparse, so room the content does not use costs no host disk; a container's writable
    /// rootfs wants that room.
    pub min_size: Option<u64>,
    /// Add an internal jbd2 journal (inode 8) so the guest gets crash safety.
    pub journal: bool,
    /// Size of the journal in bytes (rounded up to 4 KiB) when [`FormatOptions::journal`] is
    /// on; `None` picks it from the filesystem's size as mke2fs does (4 to 64 MiB). It must be
    /// 1024 to 10 240 000 blocks (mke2fs's bounds) and at most half the filesystem.
    pub journal_size: Option<u64>,
    /// The data mode the kernel mounts with unless a `data=` option says otherwise, written to
    /// the superblock's default mount options (`tune2fs -o journal_data_writeback` does the
    /// same); `None` leaves the kernel's default, `ordered`. Only meaningful with a journal.
    pub data_mode: Option<DataMode>,
    /// Filesystem UUID; random when `None` (set it for reproducible images).
    pub uuid: Option<[u8; 16]>,
    /// Volume label (at most 16 bytes are kept).
    pub label: Option<String>,
    /// Add an empty `/lost+found` (mode 0700) when the layers bring none, as `mke2fs` does.
    /// Default `true`. Turn it off where the root must hold exactly the layers' entries: an
    /// image's rootfs (docker on overlayfs shows no `lost+found`) and a new volume, which must
    /// be empty (`initdb` refuses a non-empty directory). The kernel never uses the directory;
    /// only `e2fsck` reconnects orphaned inodes there, and a repairing run (`-p`/`-y`) creates
    /// it when missing, while a read-only `e2fsck -fn` says nothing (e2fsprogs 1.42.9 and later).
    pub lost_found: bool,
    /// Entries added after the layers where nothing is at their path (an entry the layers
    /// brought, of whatever type, stays as it is): a container runtime's mount points, made
    /// once in the image instead of by every container (docker's init layer). Missing parent
    /// directories are made (0755, root); an entry whose parent is not a directory is left
    /// out. Default: none.
    pub ensure: Vec<EnsureEntry>,
}

/// An entry for [`FormatOptions::ensure`]: an empty directory or an empty regular file, owned
/// by root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureEntry {
    /// Absolute path in the image.
    pub path: String,
    /// A directory (`true`) or an empty regular file.
    pub dir: bool,
    /// Permission bits.
    pub perm: u16,
}

impl Default for FormatOptions {
    /// No fixed size, no journal, a random UUID, no label, a `lost+found`, nothing ensured.
    fn default() -> Self {
        FormatOptions {
            size: None,
            min_size: None,
            journal: false,
            journal_size: None,
            data_mode: None,
            uuid: None,
            label: None,
            lost_found: true,
            ensure: Vec::new(),
        }
    }
}

/// How ext4 journals file data (the `data=` mount option; see the kernel's
/// `Documentation/filesystems/ext4.rst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataMode {
    /// `data=journal`: data goes through the journal as metadata does.
    Journal,
    /// `data=ordered`: data is written before the metadata that points at it is committed.
    Ordered,
    /// `data=writeback`: data may reach the disk after its metadata.
    Writeback,
}

impl DataMode {
    /// The mode's name as the `data=` mount option spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataMode::Journal => "journal",
            DataMode::Ordered => "ordered",
            DataMode::Writeback => "writeback",
        }
    }
}

impl std::str::FromStr for DataMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "journal" => Ok(DataMode::Journal),
            "ordered" => Ok(DataMode::Ordered),
            "writeback" => Ok(DataMode::Writeback),
            _ => Err(format!(
                "unknown journal mode {s:?}: use ordered, writeback or journal"
            )),
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Size of the filesystem (and of the image file) in bytes.
    pub size_bytes: u64,
    /// Block size in bytes (always 4096).
    pub block_size: u32,
    /// Total number of blocks.
    pub blocks: u64,
    /// Blocks in use (data and metadata).
    pub used_blocks: u64,
    /// Inodes in the filesystem (capacity).
    pub inodes: u64,
    /// Inodes in use, the reserved ones included.
    pub used_inodes: u64,
    /// Regular files, directories, symlinks and other nodes in the final tree.
    pub files: u64,
    /// Directories in the final tree (the root, and lost+found when there is one, included).
    pub directories: u64,
    /// Bytes of regular-file content (apparent sizes).
    pub content_bytes: u64,
}

/// Everything that can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// The output (or its temporary file) could not be created.
    #[error("cannot create image {path}")]
    CreateOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing to the image failed.
    #[error("cannot write image")]
    WriteImage(#[source] std::io::Error),
    /// The finished image could not be moved into place.
    #[error("cannot commit image to {path}")]
    CommitOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A layer file could not be opened.
    #[error("cannot open layer {path}")]
    OpenLayer {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A layer stream could not be read (bad compression, truncated archive, bad header).
    #[error("cannot read layer {layer}")]
    ReadLayer {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    /// One entry of a layer is unusable.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    BadEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    /// The content does not fit the requested size.
    #[error("image of {size} bytes is too small: {reason}")]
    NoSpace { size: u64, reason: String },
    /// [`FormatOptions::journal_size`] is out of bounds.
    #[error("journal size of {size} bytes: {reason}")]
    JournalSize { size: u64, reason: String },
    /// The requested size or content is outside what this writer supports.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Builds an ext4 image at `output` from the layer files in order (lowest first).
///
/// Each layer may be a plain, gzip or zstd tarball (detected from its first bytes). The image
/// is written to a temporary file beside `output` and renamed into place when complete.
pub fn build_from_layers(
    layers: &[PathBuf],
    output: &Path,
    opts: &FormatOptions,
) -> Result<Summary, Ext4Error> {
    let mut builder = Builder::create(output, opts)?;
    for layer in layers {
        let file = File::open(layer).map_err(|source| Ext4Error::OpenLayer {
            path: layer.clone(),
            source,
        })?;
        builder.apply_layer(file, &layer.display().to_string())?;
    }
    builder.finish()
}

/// Writes an empty ext4 filesystem of `size` bytes at `output`: the root, and `/lost+found`
/// unless [`FormatOptions::lost_found`] is off.
pub fn format_empty(output: &Path, size: u64, opts: &FormatOptions) -> Result<Summary, Ext4Error> {
    let opts = FormatOptions {
        size: Some(size),
        ..opts.clone()
    };
    Builder::create(output, &opts)?.finish()
}

/// An image under construction: apply layers one by one, then [`Builder::finish`].
///
/// Dropping a builder without finishing removes its temporary file.
pub struct Builder {
    state: finish::State,
}

impl Builder {
    /// Starts an image that will be committed to `output`.
    pub fn create(output: &Path, opts: &FormatOptions) -> Result<Self, Ext4Error> {
        Ok(Builder {
            state: finish::State::create(output, opts)?,
        })
    }

    /// Applies one layer stream (plain, gzip or zstd tar) on top of what is there. `name`
    /// names the layer in error messages.
    pub fn apply_layer<R: std::io::Read>(
        &mut self,
        reader: R,
        name: &str,
    ) -> Result<(), Ext4Error> {
        self.state.apply_layer(reader, name)
    }

    /// Lays out the metadata, writes it and moves the image into place.
    pub fn finish(self) -> Result<Summary, Ext4Error> {
        self.state.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{FileKind, Reader};

    fn no_lost_found() -> FormatOptions {
        FormatOptions {
            lost_found: false,
            ..FormatOptions::default()
        }
    }

    /// One layer: `/etc/motd` and a regular file named `lost+found` (legal in an image).
    fn layer_with_a_lost_found_file() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in [("etc/motd", &b"hi\n"[..]), ("lost+found", &b"mine\n"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn lost_found_is_made_by_default_and_only_then() {
        let tmp = tempfile::tempdir().unwrap();
        let with = tmp.path().join("with");
        let s = format_empty(&with, 16 << 20, &FormatOptions::default()).unwrap();
        assert_eq!(s.directories, 2);
        let r = Reader::open(&with).unwrap();
        assert_eq!(r.list("/").unwrap(), ["lost+found"]);
        assert_eq!(r.stat("/lost+found").unwrap().perm, 0o700);
        assert_eq!(r.stat("/").unwrap().links, 3);

        let without = tmp.path().join("without");
        let s = format_empty(&without, 16 << 20, &no_lost_found()).unwrap();
        assert_eq!(s.directories, 1);
        let r = Reader::open(&without).unwrap();
        assert!(r.list("/").unwrap().is_empty());
        // The root's link count is what the kernel and e2fsck expect of a directory without
        // subdirectories: its own `.` and its name (`..` of itself).
        assert_eq!(r.stat("/").unwrap().links, 2);
    }

    #[test]
    fn without_lost_found_the_root_holds_exactly_the_layers_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer.tar");
        std::fs::write(&layer, layer_with_a_lost_found_file()).unwrap();

        let image = tmp.path().join("img");
        build_from_layers(std::slice::from_ref(&layer), &image, &no_lost_found()).unwrap();
        let r = Reader::open(&image).unwrap();
        assert_eq!(r.list("/").unwrap(), ["etc", "lost+found"]);
        // The image's own entry of that name is kept as it is.
        assert_eq!(r.stat("/lost+found").unwrap().kind, FileKind::File);
        assert_eq!(r.read("/lost+found").unwrap(), b"mine\n");

        // With the directory asked for, a file in its place cannot be turned into one.
        let err = build_from_layers(
            &[layer],
            &tmp.path().join("img2"),
            &FormatOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("lost+found"), "{err}");
    }

    #[test]
    fn ensured_entries_fill_only_free_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            b.append_data(&mut h, path, data).unwrap();
        };
        add(
            "etc/hosts",
            tar::EntryType::Regular,
            b"127.0.0.1 mine\n",
            None,
        );
        add("proc", tar::EntryType::Symlink, b"", Some("/somewhere"));
        add("sys", tar::EntryType::Regular, b"a file\n", None);
        add("run", tar::EntryType::Regular, b"", None);
        let layer = tmp.path().join("layer.tar");
        std::fs::write(&layer, b.into_inner().unwrap()).unwrap();

        let entry = |path: &str, dir: bool, perm: u16| EnsureEntry {
            path: path.into(),
            dir,
            perm,
        };
        let opts = FormatOptions {
            ensure: vec![
                entry("/proc", true, 0o755),
                entry("/sys", true, 0o755),
                entry("/dev", true, 0o755),
                entry("/etc/hosts", false, 0o644),
                entry("/etc/hostname", false, 0o644),
                entry("/var/lib/new", true, 0o700),
                entry("/run/inside", false, 0o644),
            ],
            ..no_lost_found()
        };
        let image = tmp.path().join("img");
        build_from_layers(&[layer], &image, &opts).unwrap();
        let r = Reader::open(&image).unwrap();
        assert_eq!(
            r.list("/").unwrap(),
            ["dev", "etc", "proc", "run", "sys", "var"]
        );
        // Made where nothing was: empty, root's, with the permissions asked for.
        let dev = r.stat("/dev").unwrap();
        assert_eq!((dev.kind, dev.perm, dev.uid), (FileKind::Dir, 0o755, 0));
        assert!(r.list("/dev").unwrap().is_empty());
        let hostname = r.stat("/etc/hostname").unwrap();
        assert_eq!(
            (hostname.kind, hostname.perm, hostname.size),
            (FileKind::File, 0o644, 0)
        );
        // Parents made on the way.
        assert_eq!(r.stat("/var").unwrap().perm, 0o755);
        assert_eq!(r.stat("/var/lib/new").unwrap().perm, 0o700);
        // What the layers brought stays, whatever its type; under a file nothing is made.
        assert_eq!(r.read("/etc/hosts").unwrap(), b"127.0.0.1 mine\n");
        assert_eq!(r.stat("/proc").unwrap().kind, FileKind::Symlink);
        assert_eq!(r.read("/sys").unwrap(), b"a file\n");
        assert_eq!(r.stat("/run").unwrap().kind, FileKind::File);
    }
}
