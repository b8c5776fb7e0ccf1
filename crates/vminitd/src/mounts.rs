//! mount(8)-style option parsing and the guest-level `Mount`/`Umount` calls.

use std::io;
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
