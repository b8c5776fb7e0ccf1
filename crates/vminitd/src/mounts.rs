//! mount(8)-style option parsing and the guest-level `Mount`/`Umount` calls.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sys;

/// Splits mount(8) options into mount flags and the filesystem data string.
/// Returns (flags, data, propagation flags to apply after the mount).
pub fn parse_options(options: &[String]) -> (libc::c_ulong, String, libc::c_ulong) {
    let mut flags: libc::c_ulong = 0;
    let mut prop: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "nosuid" => flags |= libc::MS_NOSUID,
            "suid" => flags &= !libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "dev" => flags &= !libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "exec" => flags &= !libc::MS_NOEXEC,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            "dirsync" => flags |= libc::MS_DIRSYNC,
            "noatime" => flags |= libc::MS_NOATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            "private" => prop |= libc::MS_PRIVATE,
            "rprivate" => prop |= libc::MS_PRIVATE | libc::MS_REC,
            "slave" => prop |= libc::MS_SLAVE,
            "rslave" => prop |= libc::MS_SLAVE | libc::MS_REC,
            "shared" => prop |= libc::MS_SHARED,
            "rshared" => prop |= libc::MS_SHARED | libc::MS_REC,
            "defaults" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","), prop)
}

/// Mounts `source` of `fstype` on `target` (created when missing) with mount(8) options.
/// A read-only bind mount needs a second remount, done here.
pub fn mount(source: &str, target: &Path, fstype: &str, options: &[String]) -> io::Result<()> {
    let (mut flags, data, prop) = parse_options(options);
    if fstype == "bind" {
        flags |= libc::MS_BIND;
    }
    let is_file_bind = flags & libc::MS_BIND != 0 && Path::new(source).is_file();
    if is_file_bind {
        if let Some(parent) = target.parent() {
            sys::mkdir_p(parent)?;
        }
        if !target.exists() {
            std::fs::File::create(target)?;
        }
    } else {
        sys::mkdir_p(target)?;
    }
    if fstype == "overlay" {
        prepare_overlay(&data)?;
    }
    let fstype = if flags & libc::MS_BIND != 0 {
        "none"
    } else {
        fstype
    };
    let data = if data.is_empty() {
        None
    } else {
        Some(data.as_str())
    };
    sys::mount(source, target, fstype, flags, data)?;
    if flags & libc::MS_BIND != 0 && flags & libc::MS_RDONLY != 0 {
        let keep = flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_REC);
        sys::mount(
            "none",
            target,
            "none",
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
            None,
        )?;
    }
    if prop != 0 {
        sys::mount("none", target, "none", prop, None)?;
    }
    Ok(())
}

/// The directories of an overlay mount's data (`lowerdir=A:B,upperdir=U,workdir=W`), with
/// overlayfs' backslash escapes of `,` and `:` undone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OverlayDirs {
    /// Lower directories, topmost first.
    pub lower: Vec<PathBuf>,
    /// The upper directory (none: a read-only overlay).
    pub upper: Option<PathBuf>,
    /// The work directory.
    pub work: Option<PathBuf>,
}

/// Splits `s` at every `sep` not escaped by a backslash; the escapes stay in the parts
/// (fs/overlayfs/super.c parses the data string, then each `lowerdir` list, this way).
fn split_escaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(s: &str) -> PathBuf {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    PathBuf::from(out)
}

/// Reads the directories of an overlay mount's data string.
pub fn overlay_dirs(data: &str) -> OverlayDirs {
    let mut dirs = OverlayDirs::default();
    for opt in split_escaped(data, ',') {
        if let Some(v) = opt.strip_prefix("lowerdir=") {
            dirs.lower = split_escaped(v, ':').into_iter().map(unescape).collect();
        } else if let Some(v) = opt.strip_prefix("upperdir=") {
            dirs.upper = Some(unescape(v));
        } else if let Some(v) = opt.strip_prefix("workdir=") {
            dirs.work = Some(unescape(v));
        }
    }
    dirs
}

/// Creates the upper and work directories of an overlay mount when missing, so the builder
/// needs no call of its own to start a step with a fresh upper directory. A new upper
/// directory gets the owner and mode of the topmost lower one: the merged root takes the
/// upper's attributes, and the image's root must stay what it was.
pub fn prepare_overlay(data: &str) -> io::Result<()> {
    let dirs = overlay_dirs(data);
    if let Some(upper) = &dirs.upper {
        if std::fs::symlink_metadata(upper).is_err() {
            if let Some(parent) = upper.parent() {
                sys::mkdir_p(parent)?;
            }
            std::fs::create_dir(upper)?;
            match dirs.lower.first().map(std::fs::metadata) {
                Some(Ok(top)) => {
                    std::os::unix::fs::chown(upper, Some(top.uid()), Some(top.gid()))?;
                    let mode = top.mode() & 0o7777;
                    std::fs::set_permissions(upper, std::fs::Permissions::from_mode(mode))?;
                }
                // overlayfs names a missing lower directory itself.
                _ => std::fs::set_permissions(upper, std::fs::Permissions::from_mode(0o755))?,
            }
        }
    }
    if let Some(work) = &dirs.work {
        sys::mkdir_p(work)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_data_names_its_directories() {
        let d = overlay_dirs("lowerdir=/l/2:/l/1:/base,upperdir=/u,workdir=/w,redirect_dir=off");
        assert_eq!(
            d,
            OverlayDirs {
                lower: ["/l/2", "/l/1", "/base"].map(PathBuf::from).to_vec(),
                upper: Some("/u".into()),
                work: Some("/w".into()),
            }
        );
        let d = overlay_dirs(r"lowerdir=/a\:b:/c\,d,upperdir=/u\,v");
        assert_eq!(d.lower, [PathBuf::from("/a:b"), PathBuf::from("/c,d")]);
        assert_eq!(d.upper, Some(PathBuf::from("/u,v")));
        assert_eq!(overlay_dirs("lowerdir=/x:/y").upper, None);
    }

    #[test]
    fn a_missing_upper_directory_takes_the_top_lower_ones_mode() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        std::fs::create_dir(&lower).unwrap();
        std::fs::set_permissions(&lower, std::fs::Permissions::from_mode(0o750)).unwrap();
        let upper = t.path().join("steps/3/upper");
        let work = t.path().join("steps/3/work");
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        prepare_overlay(&data).unwrap();
        let (l, u) = (
            std::fs::metadata(&lower).unwrap(),
            std::fs::metadata(&upper).unwrap(),
        );
        assert_eq!(u.mode() & 0o7777, 0o750);
        assert_eq!((u.uid(), u.gid()), (l.uid(), l.gid()));
        assert!(work.is_dir());
        // An existing upper directory is left as it is.
        std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o700)).unwrap();
        prepare_overlay(&data).unwrap();
        assert_eq!(std::fs::metadata(&upper).unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "nosuid", "size=64m", "mode=1777", "rbind", "rprivate"]
            .map(String::from)
            .to_vec();
        let (flags, data, prop) = parse_options(&opts);
        assert_eq!(
            flags,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_BIND | libc::MS_REC
        );
        assert_eq!(data, "size=64m,mode=1777");
        assert_eq!(prop, libc::MS_PRIVATE | libc::MS_REC);
        assert_eq!(parse_options(&["ro".into(), "rw".into()]).0, 0);
    }
}
