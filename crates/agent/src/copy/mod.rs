//! `container cp` on both sides of the wire: docker's path rules ([`plan`]), packing a path
//! into a tar stream ([`pack`]) and unpacking one safely ([`unpack`]). The host (CLI) packs
//! for copy-in and unpacks for copy-out; vminitd does the reverse inside the container's
//! mount namespace. Keeping both halves here makes the stream's naming a single contract:
//!
//! - the packer names the root entry after the source (`name`, `name/sub/file`, ...);
//! - the receiver maps the first component of every entry with a [`RootRule`] chosen by
//!   [`plan`] from what the destination is, then writes under [`Target::dir`].
//!
//! Unpacking never writes outside `Target::dir`: entries with `..` or an absolute path are
//! refused, no path component that already exists as a symlink is written through, and each
//! top-level entry that did not exist is built under a temporary name and renamed into place
//! only when the whole stream succeeded.

pub mod pack;
pub mod unpack;

use std::path::{Path, PathBuf};

use crate::schema::CopySource;

pub use pack::pack;
pub use unpack::{unpack, UnpackOptions};

/// What the destination path currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// Nothing there.
    Missing,
    /// A file (or anything that is not a directory).
    File,
    /// A directory (after following symlinks).
    Dir,
}

/// How the first path component of every tar entry is mapped on unpacking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRule {
    /// Entries keep their names (the source lands inside `dir` under its own name).
    Keep,
    /// The root entry is renamed: `src/...` becomes `name/...`.
    Rename(String),
    /// The root entry is dropped: the source's contents land in `dir`.
    Strip,
}

/// Where and how a stream is unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Existing directory to unpack into.
    pub dir: PathBuf,
    /// Mapping of the entries' first component.
    pub root: RootRule,
}

/// A copy that docker's rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A destination ending in `/` (or a raw stream's destination) must be a directory.
    #[error("destination directory {0} does not exist")]
    DestDirMissing(String),
    /// The destination's parent directory does not exist.
    #[error("destination directory {0} does not exist")]
    ParentMissing(String),
    /// A destination ending in `/` (or a raw stream's destination) is a file.
    #[error("destination {0} is not a directory")]
    NotADirectory(String),
    /// A directory cannot replace a file.
    #[error("cannot copy a directory to a file: {0}")]
    DirToFile(String),
}

/// Splits `path` into its parent and last component, lexically (`"a/b/"` → `("a", "b")`,
/// `"b"` → `(".", "b")`). `None` when there is no last component (`/`, `..`).
pub fn split_last(path: &str) -> Option<(String, String)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = match trimmed.rfind('/') {
        Some(0) => ("/", &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (".", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((parent.to_string(), name.to_string()))
}

/// The name of the root entry for a source path: its last component, ignoring trailing
/// `/` and `/.` (`/` itself packs as `rootfs`).
pub fn source_name(path: &str) -> String {
    let mut p = path;
    loop {
        let t = p.trim_end_matches('/');
        match t.strip_suffix("/.") {
            Some(rest) => p = rest,
            None if t == "." => return "rootfs".into(),
            None => {
                p = t;
                break;
            }
        }
    }
    match split_last(p) {
        Some((_, name)) => name,
        None => "rootfs".into(),
    }
}

/// Whether a source path asks for a directory's contents rather than the directory: it
/// ends in `/.` (docker's rule), or it is the root, which has no name of its own.
pub fn contents_only(path: &str) -> bool {
    path.ends_with("/.") || path.trim_end_matches('/').is_empty() || path == "."
}

/// Whether `path` names a directory explicitly (`dir/` or `dir/.`).
pub fn names_dir(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.") || path == "."
}

/// Docker's `cp` rules: where the stream described by `source` goes when copied to `dest`,
/// which is currently `kind` (and whose parent is a directory: `parent_is_dir`).
/// `source` is `None` for a raw tar stream (`-`), which must go into an existing directory.
///
/// | source | dest missing | dest is a file | dest is a dir |
/// |---|---|---|---|
/// | file | created (error if `dest` ends in `/`) | overwritten | copied into it |
/// | dir | created with the contents | error | copied into it (`src/.`: contents) |
pub fn plan(
    source: Option<&CopySource>,
    dest: &str,
    kind: DestKind,
    parent_is_dir: bool,
) -> Result<Target, PlanError> {
    let dest_dir = || Target {
        dir: PathBuf::from(dest),
        root: RootRule::Keep,
    };
    let Some(src) = source else {
        return match kind {
            DestKind::Dir => Ok(dest_dir()),
            DestKind::File => Err(PlanError::NotADirectory(dest.into())),
            DestKind::Missing => Err(PlanError::DestDirMissing(dest.into())),
        };
    };
    match kind {
        DestKind::Dir => Ok(Target {
            dir: PathBuf::from(dest),
            root: if src.is_dir && src.contents_only {
                RootRule::Strip
            } else {
                RootRule::Keep
            },
        }),
        DestKind::File if names_dir(dest) => Err(PlanError::NotADirectory(dest.into())),
        DestKind::File if src.is_dir => Err(PlanError::DirToFile(dest.into())),
        DestKind::File | DestKind::Missing => {
            if kind == DestKind::Missing && names_dir(dest) && !src.is_dir {
                return Err(PlanError::DestDirMissing(dest.into()));
            }
            let Some((parent, name)) = split_last(dest) else {
                return Err(PlanError::DestDirMissing(dest.into()));
            };
            if !parent_is_dir {
                return Err(PlanError::ParentMissing(parent));
            }
            Ok(Target {
                dir: PathBuf::from(parent),
                root: RootRule::Rename(name),
            })
        }
    }
}

/// Errors of packing or unpacking.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading a source path failed.
    #[error("read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a destination path failed.
    #[error("write {}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The tar stream could not be read or written.
    #[error("tar stream")]
    Stream(#[source] std::io::Error),
    /// An entry name that is absolute or has a `..` component.
    #[error("tar entry {0:?} would escape the destination")]
    Escape(String),
    /// An entry outside the stream's root entry.
    #[error("tar entry {0:?} is not under the copied root {1:?}")]
    Foreign(String, String),
    /// A path component is a symlink that an entry would be written through.
    #[error("refusing to write through symlink {}", .0.display())]
    Symlink(PathBuf),
    /// A directory exists where a non-directory should go.
    #[error("cannot overwrite directory {} with non-directory", .0.display())]
    DirWithFile(PathBuf),
    /// The stream ended without tar's end marker (the sender failed or went away).
    #[error("the tar stream ended before its end")]
    Truncated,
    /// A non-directory exists where a directory should go.
    #[error("cannot overwrite non-directory {} with directory", .0.display())]
    FileWithDir(PathBuf),
}

/// The error and its sources in one line (`write /x: Read-only file system (os error 30)`),
/// for the wire and the CLI alike.
/// Sets the access and modification times of `p` (not following a final symlink) to
/// `mtime` seconds since the epoch, as unpacking a tar entry ends.
pub fn set_mtime(p: &Path, mtime: i64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: a valid C string and two timespecs, as utimensat(2) takes.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `dir/name` without doubling a `/` and with `.` as the current directory.
pub(crate) fn join(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> CopySource {
        CopySource {
            is_dir: false,
            contents_only: false,
        }
    }
    fn dir(contents_only: bool) -> CopySource {
        CopySource {
            is_dir: true,
            contents_only,
        }
    }
    fn t(dir: &str, root: RootRule) -> Result<Target, PlanError> {
        Ok(Target {
            dir: PathBuf::from(dir),
            root,
        })
    }
    fn rename(n: &str) -> RootRule {
        RootRule::Rename(n.into())
    }

    #[test]
    fn file_source_follows_docker_rules() {
        let f = file();
        // Missing dest: created under its own name.
        assert_eq!(
            plan(Some(&f), "/tmp/new", DestKind::Missing, true),
            t("/tmp", rename("new"))
        );
        assert_eq!(
            plan(Some(&f), "new", DestKind::Missing, true),
            t(".", rename("new"))
        );
        // Missing dest ending with `/`: the directory must exist.
        assert_eq!(
            plan(Some(&f), "/tmp/new/", DestKind::Missing, true),
            Err(PlanError::DestDirMissing("/tmp/new/".into()))
        );
        // Missing parent.
        assert_eq!(
            plan(Some(&f), "/nope/new", DestKind::Missing, false),
            Err(PlanError::ParentMissing("/nope".into()))
        );
        // Existing file: overwritten.
        assert_eq!(
            plan(Some(&f), "/etc/x", DestKind::File, true),
            t("/etc", rename("x"))
        );
        assert_eq!(
            plan(Some(&f), "/etc/x/", DestKind::File, true),
            Err(PlanError::NotADirectory("/etc/x/".into()))
        );
        // Existing directory: copied into it.
        assert_eq!(
            plan(Some(&f), "/etc", DestKind::Dir, true),
            t("/etc", RootRule::Keep)
        );
        assert_eq!(
            plan(Some(&f), "/", DestKind::Dir, true),
            t("/", RootRule::Keep)
        );
    }

    #[test]
    fn dir_source_follows_docker_rules() {
        let d = dir(false);
        assert_eq!(
            plan(Some(&d), "/srv/new", DestKind::Missing, true),
            t("/srv", rename("new"))
        );
        // A directory may be created even when named with a trailing slash.
        assert_eq!(
            plan(Some(&d), "/srv/new/", DestKind::Missing, true),
            t("/srv", rename("new"))
        );
        assert_eq!(
            plan(Some(&d), "/srv/file", DestKind::File, true),
            Err(PlanError::DirToFile("/srv/file".into()))
        );
        assert_eq!(
            plan(Some(&d), "/srv", DestKind::Dir, true),
            t("/srv", RootRule::Keep)
        );
        // `src/.`: the contents go into the existing directory.
        assert_eq!(
            plan(Some(&dir(true)), "/srv", DestKind::Dir, true),
            t("/srv", RootRule::Strip)
        );
        // ... and into a new one just like a plain directory copy.
        assert_eq!(
            plan(Some(&dir(true)), "/srv/new", DestKind::Missing, true),
            t("/srv", rename("new"))
        );
        assert_eq!(
            plan(Some(&d), "/", DestKind::Missing, true),
            Err(PlanError::DestDirMissing("/".into()))
        );
    }

    #[test]
    fn raw_streams_need_an_existing_directory() {
        assert_eq!(
            plan(None, "/data", DestKind::Dir, true),
            t("/data", RootRule::Keep)
        );
        assert_eq!(
            plan(None, "/data", DestKind::Missing, true),
            Err(PlanError::DestDirMissing("/data".into()))
        );
        assert_eq!(
            plan(None, "/data", DestKind::File, true),
            Err(PlanError::NotADirectory("/data".into()))
        );
    }

    #[test]
    fn source_names() {
        assert_eq!(source_name("/etc/passwd"), "passwd");
        assert_eq!(source_name("/etc/"), "etc");
        assert_eq!(source_name("/etc/."), "etc");
        assert_eq!(source_name("data/./."), "data");
        assert_eq!(source_name("/"), "rootfs");
        assert_eq!(source_name("/."), "rootfs");
        assert_eq!(source_name("."), "rootfs");
        assert!(contents_only("/etc/.") && contents_only("/") && !contents_only("/etc/"));
    }

    #[test]
    fn split_last_is_lexical() {
        assert_eq!(split_last("a/b/"), Some(("a".into(), "b".into())));
        assert_eq!(split_last("/b"), Some(("/".into(), "b".into())));
        assert_eq!(split_last("b"), Some((".".into(), "b".into())));
        assert_eq!(split_last("/"), None);
        assert_eq!(split_last("a/.."), None);
        assert!(names_dir("a/") && names_dir("a/.") && !names_dir("a"));
    }
}
