//! `Mount` with our `loop` option, on this machine's kernel: an ext4 image file (written by the
//! workspace's `ext4` crate) is mounted through a loop device by the same `mounts::mount` and
//! `system::umount` the agent's `Mount` and `Umount` call, and the device must be free again
//! after the umount, or after a mount that failed. Needs root and `/dev/loop-control`; skipped
//! (with a message) otherwise.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::images::LayerBuilder;
use vminitd::{mounts, system};

const HELLO: &[u8] = b"hello from the image\n";

fn can_loop(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let control = Path::new("/dev/loop-control").exists();
    if !root || !control {
        eprintln!(
            "skipped {test}: needs root (euid 0: {root}) and /dev/loop-control (present: {control})"
        );
    }
    root && control
}

/// An ext4 image holding `/hello.txt` and an empty `/data`, with room to write.
fn image(dir: &Path) -> PathBuf {
    let layer = LayerBuilder::new()
        .file("hello.txt", HELLO, 0o644, 0, 0)
        .dir("data", 0o755, 0, 0)
        .finish();
    let out = dir.join("member.ext4");
    let mut b = ext4::Builder::create(&out, &ext4::FormatOptions::default()).unwrap();
    b.apply_layer(&layer.tar[..], "fixture").unwrap();
    b.finish().unwrap();
    out
}

/// The source (`/dev/loopN`) of the mount at `target`, from /proc/self/mountinfo.
fn mount_source(target: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let (head, tail) = l.split_once(" - ")?;
        let mountpoint = head.split(' ').nth(4)?;
        (Path::new(mountpoint) == target).then(|| tail.split(' ').nth(1).unwrap().to_string())
    })
}

/// `/sys/block/loopN/ATTR` of `/dev/loopN` (`loop/backing_file`, `ro`, ...).
fn block_attr(dev: &str, attr: &str) -> Option<String> {
    let name = dev.strip_prefix("/dev/")?;
    std::fs::read_to_string(format!("/sys/block/{name}/{attr}"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn loop_attr(dev: &str, attr: &str) -> Option<String> {
    block_attr(dev, &format!("loop/{attr}"))
}

/// The loop devices whose backing file is `file` now.
fn devices_backed_by(file: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let backing = loop_attr(&format!("/dev/{name}"), "backing_file");
        if backing.is_some_and(|b| Path::new(b.trim_end_matches(" (deleted)")) == file) {
            found.push(name);
        }
    }
    found
}

/// Waits (briefly: auto-clear may finish after the last close returns) until no loop device
/// has `file` attached. Another user may bind the freed device at once, so the check is on
/// the file, not on the device being unbound.
fn assert_released(file: &Path) {
    let start = Instant::now();
    loop {
        let left = devices_backed_by(file);
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{left:?} still attached to {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches whatever is still mounted at the target when a test fails half-way, so a failed
/// run leaves no mount (and so no loop device) behind on the machine.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        while mount_source(&self.0).is_some() {
            if system::umount(self.0.to_str().unwrap(), true).is_err() {
                break;
            }
        }
    }
}

fn opts(o: &[&str]) -> Vec<String> {
    o.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_image_file_mounts_read_write_through_a_loop_device_and_umount_frees_it() {
    if !can_loop("loop rw") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path());
    let target = t.path().join("rootfs");
    let _cleanup = Cleanup(target.clone());
    let src = img.to_str().unwrap();

    mounts::mount(src, &target, "ext4", &opts(&["loop", "nodev"])).unwrap();
    let dev = mount_source(&target).expect("mounted");
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    assert_eq!(
        loop_attr(&dev, "backing_file").as_deref(),
        Some(img.to_str().unwrap())
    );
    assert_eq!(loop_attr(&dev, "autoclear").as_deref(), Some("1"));
    assert_eq!(block_attr(&dev, "ro").as_deref(), Some("0"));
    eprintln!(
        "{dev}: direct I/O {:?} (backing file on this machine's {})",
        loop_attr(&dev, "dio"),
        t.path().display()
    );
    assert_eq!(std::fs::read(target.join("hello.txt")).unwrap(), HELLO);
    std::fs::write(target.join("data/written.txt"), b"by the member\n").unwrap();

    system::umount(target.to_str().unwrap(), false).unwrap();
    assert_eq!(mount_source(&target), None);
    assert_released(&img);

    // The write reached the image file: read it back through a read-only loop device.
    mounts::mount(src, &target, "ext4", &opts(&["ro", "loop"])).unwrap();
    assert_eq!(
        std::fs::read(target.join("data/written.txt")).unwrap(),
        b"by the member\n"
    );
    system::umount(target.to_str().unwrap(), false).unwrap();
    assert_released(&img);
}

#[test]
fn a_read_only_loop_mount_refuses_writes() {
    if !can_loop("loop ro") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path());
    let target = t.path().join("ro");
    let _cleanup = Cleanup(target.clone());
    mounts::mount(
        img.to_str().unwrap(),
        &target,
        "ext4",
        &opts(&["loop", "ro"]),
    )
    .unwrap();
    let dev = mount_source(&target).expect("mounted");
    // The device itself is read-only, not only the mount.
    assert_eq!(block_attr(&dev, "ro").as_deref(), Some("1"));
    assert_eq!(std::fs::read(target.join("hello.txt")).unwrap(), HELLO);
    let err = std::fs::write(target.join("data/nope"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    system::umount(target.to_str().unwrap(), false).unwrap();
    assert_released(&img);
}

#[test]
fn a_missing_image_file_is_named_and_attaches_nothing() {
    if !can_loop("loop missing file") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("pod/x.ext4");
    let target = t.path().join("m");
    let _cleanup = Cleanup(target.clone());
    let err = mounts::mount(img.to_str().unwrap(), &target, "ext4", &opts(&["loop"])).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{msg}");
    assert!(
        msg.starts_with(&format!("loop device for {}: ", img.display())),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(devices_backed_by(&img).is_empty());
    assert_eq!(mount_source(&target), None);
}

#[test]
fn a_file_that_is_no_filesystem_fails_to_mount_and_frees_its_device() {
    if !can_loop("loop not a filesystem") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("zeros.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let target = t.path().join("m");
    let _cleanup = Cleanup(target.clone());
    let err = mounts::mount(img.to_str().unwrap(), &target, "ext4", &opts(&["loop"])).unwrap_err();
    eprintln!("mounting zeros: {err}");
    assert_eq!(mount_source(&target), None);
    assert_released(&img);

    // A directory is not an image file: refused before any device is taken.
    let err = mounts::mount(
        t.path().to_str().unwrap(),
        &target,
        "ext4",
        &opts(&["loop", "ro"]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "loop device for {}: not a regular file",
            t.path().display()
        )),
        "{err}"
    );
}

#[test]
fn loop_device_attach_reports_its_device() {
    if !can_loop("loop attach") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path());
    let dev = mounts::LoopDevice::attach(&img, true).unwrap();
    assert_eq!(dev.path_str(), format!("/dev/loop{}", dev.number()));
    assert_eq!(devices_backed_by(&img), [format!("loop{}", dev.number())]);
    assert_eq!(
        loop_attr(dev.path_str(), "dio").as_deref() == Some("1"),
        dev.direct_io()
    );
    // Dropping the only opener of an auto-clearing device detaches the file.
    drop(dev);
    assert_released(&img);
}
