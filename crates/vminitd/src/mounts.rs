//! mount(8)-style option parsing and the guest-level `Mount`/`Umount` calls.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use agent::contract::MOUNT_OPTION_LOOP;

use crate::sys;

/// Splits mount(8) options into mount flags and the filesystem data string.
/// Returns (flags, data, propagation flags to apply after the mount). Our `loop` option is
/// [`mount`]'s, never the filesystem's: it is left out of both.
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
            MOUNT_OPTION_LOOP => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","), prop)
}

/// Mounts `source` of `fstype` on `target` (created when missing) with mount(8) options.
/// A read-only bind mount needs a second remount, done here.
///
/// With the `loop` option, `source` is a regular file that is mounted through a loop device
/// ([`LoopDevice::attach`], read-only when the options end up `ro`); the device detaches
/// itself when the mount goes away, or at once when the mount fails.
pub fn mount(source: &str, target: &Path, fstype: &str, options: &[String]) -> io::Result<()> {
    let (mut flags, data, prop) = parse_options(options);
    if fstype == "bind" {
        flags |= libc::MS_BIND;
    }
    let wants_loop = options.iter().any(|o| o == MOUNT_OPTION_LOOP);
    if wants_loop && flags & libc::MS_BIND != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the loop option does not go with a bind mount",
        ));
    }
    // Anything but a directory (a file, a relayed socket) is bound onto a file.
    let is_file_bind =
        flags & libc::MS_BIND != 0 && std::fs::metadata(source).is_ok_and(|m| !m.is_dir());
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
    // Held until mount(2) returns: the mount then holds the device open, and our close is no
    // longer its last one (auto-clear); a failed mount leaves ours the last, which frees it.
    let attached = if wants_loop {
        Some(LoopDevice::attach(
            Path::new(source),
            flags & libc::MS_RDONLY != 0,
        )?)
    } else {
        None
    };
    let source = match &attached {
        Some(dev) => dev.path_str(),
        None => source,
    };
    sys::mount(source, target, fstype, flags, data)?;
    drop(attached);
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

/// How often [`LoopDevice::attach`] takes another free device when the one it was given was
/// bound by someone else first (`LOOP_CTL_GET_FREE` only names a device, it does not reserve it).
const LOOP_ATTEMPTS: usize = 8;

/// A loop device with a file attached by [`LoopDevice::attach`], open. The device is
/// auto-clearing: once this handle and every mount of the device are gone, the kernel detaches
/// the file and the device is free again.
#[derive(Debug)]
pub struct LoopDevice {
    path: String,
    number: u32,
    direct_io: bool,
    _fd: OwnedFd,
}

/// A failure to set up the loop device for a file; names the file, keeps the OS error (and its
/// errno for the wire) as its source.
#[derive(Debug)]
pub struct LoopError {
    file: PathBuf,
    what: String,
    source: io::Error,
}

impl std::fmt::Display for LoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loop device for {}: {}: {}",
            self.file.display(),
            self.what,
            self.source
        )
    }
}

impl std::error::Error for LoopError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn loop_error(file: &Path, what: impl Into<String>, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        LoopError {
            file: file.to_path_buf(),
            what: what.into(),
            source,
        },
    )
}

impl LoopDevice {
    /// Attaches the regular file `file` to a free loop device with `LOOP_CONFIGURE`:
    /// auto-clearing, read-only with `read_only` (the file is then opened read-only too), and
    /// with direct I/O where the kernel takes it for this file. Direct I/O keeps the file's
    /// blocks out of the guest's page cache: the filesystem mounted on the device caches them
    /// already, and a second copy would cost the VM's memory twice over (the image files of a
    /// pod's members sit on virtiofs, whose FUSE file operations do direct I/O).
    ///
    /// A device that someone else binds between `LOOP_CTL_GET_FREE` and `LOOP_CONFIGURE`
    /// (EBUSY) is given up for another free one, a few times. A missing `/dev/loopN` node is
    /// made. Every error names the file.
    pub fn attach(file: &Path, read_only: bool) -> io::Result<LoopDevice> {
        let mode = if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        let backing = std::fs::File::from(
            sys::open(file, mode, 0).map_err(|e| loop_error(file, "open the file", e))?,
        );
        let meta = backing
            .metadata()
            .map_err(|e| loop_error(file, "stat the file", e))?;
        if !meta.file_type().is_file() {
            let what = if meta.file_type().is_block_device() {
                "a block device, mount it directly"
            } else {
                "not a regular file"
            };
            return Err(loop_error(
                file,
                what,
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let control = sys::open(Path::new("/dev/loop-control"), libc::O_RDWR, 0)
            .map_err(|e| loop_error(file, "open /dev/loop-control", e))?;
        let mut last = None;
        for _ in 0..LOOP_ATTEMPTS {
            let number = sys::loop_ctl_get_free(&control)
                .map_err(|e| loop_error(file, "LOOP_CTL_GET_FREE", e))?;
            let path = format!("/dev/loop{number}");
            let dev = open_loop_node(file, number, &path, mode)?;
            match configure(&dev, &backing, read_only) {
                Ok(direct_io) => {
                    return Ok(LoopDevice {
                        path,
                        number,
                        direct_io,
                        _fd: dev,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some((path, e)),
                Err(e) => return Err(loop_error(file, format!("attach to {path}"), e)),
            }
        }
        let (path, e) = last.unwrap_or_else(|| {
            (
                "a loop device".to_string(),
                io::Error::from_raw_os_error(libc::EBUSY),
            )
        });
        Err(loop_error(
            file,
            format!("attach to {path} (each of {LOOP_ATTEMPTS} free devices was taken first)"),
            e,
        ))
    }

    /// The device node, `/dev/loopN`.
    pub fn path_str(&self) -> &str {
        &self.path
    }

    /// N of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether the kernel took direct I/O for this file.
    pub fn direct_io(&self) -> bool {
        self.direct_io
    }
}

/// `LOOP_CONFIGURE` of `dev` over `backing`; returns whether direct I/O is on. Linux 6.1
/// quietly drops the direct I/O flag for a file that cannot do it; a kernel that refuses it
/// instead (EINVAL) gets the same configuration without it, on the still unbound device.
fn configure(dev: &OwnedFd, backing: &std::fs::File, read_only: bool) -> io::Result<bool> {
    let fd = u32::try_from(backing.as_raw_fd())
        .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut config = sys::LoopConfig {
        fd,
        ..Default::default()
    };
    config.info.flags = sys::LO_FLAGS_AUTOCLEAR | sys::LO_FLAGS_DIRECT_IO;
    if read_only {
        config.info.flags |= sys::LO_FLAGS_READ_ONLY;
    }
    match sys::loop_configure(dev, &config) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            config.info.flags &= !sys::LO_FLAGS_DIRECT_IO;
            sys::loop_configure(dev, &config)?;
        }
        other => other?,
    }
    Ok(sys::loop_get_status(dev)
        .map(|info| info.flags & sys::LO_FLAGS_DIRECT_IO != 0)
        .unwrap_or(false))
}

/// Opens `/dev/loopN`, making the node first when it is missing (a /dev without devtmpfs, or
/// one that has not caught up with a device `LOOP_CTL_GET_FREE` just added). Errors name
/// `file`, the file the device is for.
fn open_loop_node(file: &Path, number: u32, path: &str, mode: libc::c_int) -> io::Result<OwnedFd> {
    let node = Path::new(path);
    match sys::open(node, mode, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            match sys::mknod(node, libc::S_IFBLK | 0o660, loop_dev_t(number)) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(loop_error(file, format!("make {path}"), e))
                }
                _ => {}
            }
            sys::open(node, mode, 0)
        }
        other => other,
    }
    .map_err(|e| loop_error(file, format!("open {path}"), e))
}

/// The device number of loop device `number`: sysfs' when it says (the minor is `N << part_shift`
/// when the driver's `max_part` is set), else major 7, minor N.
fn loop_dev_t(number: u32) -> libc::dev_t {
    std::fs::read_to_string(format!("/sys/block/loop{number}/dev"))
        .ok()
        .and_then(|s| parse_dev(&s))
        .unwrap_or_else(|| libc::makedev(sys::LOOP_MAJOR, number))
}

/// `MAJOR:MINOR` as sysfs writes it.
fn parse_dev(s: &str) -> Option<libc::dev_t> {
    let (major, minor) = s.trim().split_once(':')?;
    Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
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

    #[test]
    fn the_loop_option_never_reaches_the_filesystem() {
        let opts: Vec<String> = ["loop", "ro", "errors=remount-ro", "loop"]
            .map(String::from)
            .to_vec();
        let (flags, data, prop) = parse_options(&opts);
        assert_eq!((flags, prop), (libc::MS_RDONLY, 0));
        assert_eq!(data, "errors=remount-ro");
        assert_eq!(parse_options(&["loop".into()]).1, "");
    }

    #[test]
    fn loop_device_numbers() {
        assert_eq!(parse_dev("7:3\n"), Some(libc::makedev(7, 3)));
        assert_eq!(parse_dev("259:0"), Some(libc::makedev(259, 0)));
        assert_eq!(parse_dev("7"), None);
        assert_eq!(loop_dev_t(u32::MAX), libc::makedev(7, u32::MAX));
    }

    #[test]
    fn a_missing_loop_node_is_made() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/loop-control").exists() {
            eprintln!("skipped: needs root and /dev/loop-control");
            return;
        }
        let control = sys::open(Path::new("/dev/loop-control"), libc::O_RDWR, 0).unwrap();
        let n = sys::loop_ctl_get_free(&control).unwrap();
        let t = tempfile::tempdir().unwrap();
        // A node outside /dev stands for one that devtmpfs did not make.
        let node = t.path().join(format!("loop{n}"));
        let fd = open_loop_node(
            Path::new("/x.ext4"),
            n,
            node.to_str().unwrap(),
            libc::O_RDONLY,
        )
        .unwrap();
        let meta = std::fs::metadata(&node).unwrap();
        assert!(meta.file_type().is_block_device());
        assert_eq!(meta.rdev(), loop_dev_t(n));
        assert_eq!(libc::major(meta.rdev()), sys::LOOP_MAJOR);
        // It is the device: unbound, so its status is ENXIO.
        let err = sys::loop_get_status(&fd).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENXIO));
    }

    #[test]
    fn loop_with_bind_is_refused_before_anything_is_attached() {
        let t = tempfile::tempdir().unwrap();
        let err = mount(
            "/nonexistent.img",
            &t.path().join("m"),
            "bind",
            &["loop".into()],
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
