//! VM templates, guest side: a VM booted with [`TEMPLATE_ARG`] loads the agent channel's, the
//! block and network drivers and overlayfs ([`EARLY_MODULES`]) and keeps the others (the
//! balloon's) open here as [`Deferred`] modules; the host then pauses and saves it, and each
//! clone restored from that snapshot gets one `Resume`, which this module answers: new
//! entropy, the wall clock, the deferred drivers, a wait until every device they drive is
//! usable, and the disks' own capacities.
//!
//! ```text
//!  template boot                     snapshot           clone (one per restore)
//!  EARLY_MODULES loaded ──┐          RAM file +         Resume { entropy, time, balloon, disks }
//!  (placeholder disks     │          device state       RNDADDENTROPY + RNDRESEEDCRNG
//!   and NICs probed)      ├────────▶ ──────────────▶    clock_settime(CLOCK_REALTIME)
//!  others opened, kept ───┤                              finit_module(kept fd) in list order
//!  (files unlinked)       │                              (if any: wait: drivers bound, nodes)
//!  agent port served  ────┘                              wait: each vdX has its capacity;
//!                                                        BLKFLSBUF on each vdX; answer;
//!                                                        then the balloon's finit_module
//! ```
//!
//! Disks and NICs are probed in the template, against placeholders of the clones' kind: fixing
//! what a clone's differ in is cheaper than probing again (about 110 ms for a disk and 100 ms
//! for a NIC of each clone's start under TCG). The devices and their negotiated features are
//! the template's; only the backing files and taps differ. A disk's capacity is the one thing
//! its driver read that changes: the host has QEMU announce each clone's capacity after the
//! restore (a virtio config change), the guest waits for the sizes `Resume` names and drops
//! the placeholders' block cache (the template read their first sectors when it scanned for
//! partitions). A NIC's MAC is the other: the interface is down until `SetupInterface`, which
//! sets the clone's address (and through the control queue QEMU's receive filter) first.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use agent::contract::{EARLY_MODULES, TEMPLATE_ARG};
use agent::Resume;

use crate::error::GuestError;
use crate::sys::{self, cvt};

/// Fewest entropy bytes a `Resume` must carry: 256 bits, what the kernel's CRNG needs to
/// count as seeded (drivers/char/random.c, `POOL_READY_BITS`).
pub const MIN_ENTROPY: usize = 32;

/// How long `Resume` waits for the deferred drivers to bind their devices.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// The virtio device id of the memory balloon (virtio spec 1.2, section 5 "Device Types"); its
/// driver is loaded only when the host asks, so its device may stay unbound.
const VIRTIO_ID_BALLOON: u32 = 5;

/// File stem of the balloon driver's module.
const BALLOON_MODULE: &str = "virtio_balloon";

/// Whether a kernel command line asks for a template boot.
pub fn is_template(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == TEMPLATE_ARG)
}

/// A module's name as the kernel knows it: the file stem, with `-` read as `_` (the kernel
/// treats both alike in module names).
pub fn module_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('-', "_"))
        .unwrap_or_default()
}

/// Whether a template loads the module at `path` at boot.
pub fn loads_early(path: &Path) -> bool {
    let name = module_name(path);
    EARLY_MODULES.iter().any(|m| *m == name)
}

/// A module opened at boot and loaded on `Resume`. The file itself is unlinked at boot (it
/// lives in the initramfs's RAM, unreachable after the switch to the tmpfs root anyway); the
/// open fd keeps its content until the module is loaded.
pub struct DeferredModule {
    /// Path in the initramfs, for messages.
    pub path: PathBuf,
    /// Module name (see [`module_name`]).
    pub name: String,
    fd: OwnedFd,
}

impl DeferredModule {
    /// Opens the module file.
    pub fn open(path: &Path) -> io::Result<DeferredModule> {
        Ok(DeferredModule {
            path: path.to_path_buf(),
            name: module_name(path),
            fd: sys::open(path, libc::O_RDONLY, 0)?,
        })
    }
}

/// The modules a template boot kept for `Resume`, in load order.
#[derive(Default)]
pub struct Deferred(pub Vec<DeferredModule>);

/// What `Resume` may still do in this VM.
enum State {
    /// Not booted as a template (or running as an ordinary process).
    NotTemplate,
    /// A template (or a clone of one) that has not been resumed.
    Waiting(Deferred),
    /// `Resume` has run (or is running).
    Resumed,
}

/// The template state of the VM, owned by the agent: the deferred modules until `Resume`.
pub struct Template(Mutex<State>);

impl Template {
    /// A VM that was not booted as a template: `Resume` is refused.
    pub fn none() -> Template {
        Template(Mutex::new(State::NotTemplate))
    }

    /// A template boot, holding the modules for `Resume`.
    pub fn waiting(deferred: Deferred) -> Template {
        Template(Mutex::new(State::Waiting(deferred)))
    }

    /// Takes the deferred modules for the one `Resume` allowed; a second call, or one on a VM
    /// not booted as a template, is refused and changes nothing.
    fn take(&self) -> Result<Deferred, GuestError> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *state, State::Resumed) {
            State::Waiting(d) => Ok(d),
            State::Resumed => Err(GuestError::InvalidArgument(
                "resume: this VM was already resumed".into(),
            )),
            State::NotTemplate => {
                *state = State::NotTemplate;
                Err(GuestError::InvalidArgument(
                    "resume: this VM was not booted as a template".into(),
                ))
            }
        }
    }

    /// Answers `Resume`: renews entropy and clock, loads the deferred drivers and waits for
    /// their devices (see [`agent::Resume`]).
    pub async fn resume(&self, r: &Resume) -> Result<(), GuestError> {
        // Checked before the state is taken, so a host that sent too little can try again.
        if r.entropy.len() < MIN_ENTROPY {
            return Err(GuestError::InvalidArgument(format!(
                "resume: {} bytes of entropy, at least {MIN_ENTROPY} needed",
                r.entropy.len()
            )));
        }
        let deferred = self.take()?;
        add_entropy(&r.entropy).map_err(|e| GuestError::sys("resume: add entropy", e))?;
        crate::system::set_clock(r.time_unix_ns)?;
        let (balloon, drivers): (Vec<_>, Vec<_>) = deferred
            .0
            .into_iter()
            .partition(|m| m.name == BALLOON_MODULE);
        // The balloon's driver is not needed to run the container: it loads once this answer
        // is on its way, while the host works on its next request.
        if r.balloon && !balloon.is_empty() {
            tokio::spawn(async move {
                load_deferred(Deferred(balloon));
            });
        }
        let loaded_drivers = !drivers.is_empty();
        let failed = load_deferred(Deferred(drivers));
        let (sys_dir, dev_dir) = (Path::new("/sys"), Path::new("/dev"));
        let ready = async {
            // Drivers bind and devtmpfs makes nodes asynchronously, after the probe. Only a
            // driver loaded now can leave a device unbound: the template probed the rest
            // (walking sysfs costs about 15 ms of a clone's start under TCG).
            if loaded_drivers {
                wait_until_settled(DEVICE_WAIT, Duration::from_millis(5), || {
                    missing_devices(sys_dir, dev_dir)
                })
                .await?;
            }
            // QEMU's capacity change reaches the driver as a config interrupt that a kernel
            // worker handles, so a disk's new size may lag the restore by a moment.
            wait_until_settled(DEVICE_WAIT, Duration::from_millis(2), || {
                wrong_capacities(sys_dir, &r.disks)
            })
            .await
        };
        match ready.await {
            Ok(()) => drop_disk_caches(r.disks.len()),
            Err(missing) => {
                let mut op = format!("resume: after {DEVICE_WAIT:?}, {missing}");
                if !failed.is_empty() {
                    op.push_str(&format!(
                        " (modules that failed to load: {})",
                        failed.join(", ")
                    ));
                }
                Err(GuestError::sys(
                    op,
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                ))
            }
        }
    }
}

/// The block device name of the `index`th virtio disk: `vda`, `vdb`, … (the order the
/// template probed them in, their attach order).
pub fn disk_name(index: usize) -> Option<String> {
    let letter = u8::try_from(index).ok().filter(|i| *i < 26)?;
    Some(format!("vd{}", char::from(b'a' + letter)))
}

/// The disks whose size under `sys_dir` is not the one in `disks`, described.
pub fn wrong_capacities(sys_dir: &Path, disks: &[u64]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (i, want) in disks.iter().enumerate() {
        let Some(name) = disk_name(i) else {
            wrong.push(format!("disk {i}: more disks than vda..vdz"));
            continue;
        };
        let sectors = std::fs::read_to_string(sys_dir.join("block").join(&name).join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if sectors.map(|s| s * 512) != Some(*want) {
            wrong.push(format!(
                "{name} has {} bytes, not {want}",
                sectors.map_or("no size".to_string(), |s| (s * 512).to_string())
            ));
        }
    }
    wrong
}

/// `BLKFLSBUF`: `_IO(0x12, 97)` (include/uapi/linux/fs.h).
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// Drops the block cache of the first `count` disks: whatever the template read of its
/// placeholders (the partition scan) must not be served for the clone's own disks.
fn drop_disk_caches(count: usize) -> Result<(), GuestError> {
    for name in (0..count).filter_map(disk_name) {
        let dev = Path::new("/dev").join(&name);
        let fd = sys::open(&dev, libc::O_RDONLY | libc::O_CLOEXEC, 0)
            .map_err(|e| GuestError::sys(format!("resume: open {}", dev.display()), e))?;
        // SAFETY: BLKFLSBUF takes no argument; fd is an open block device.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), BLKFLSBUF) })
            .map_err(|e| GuestError::sys(format!("resume: drop the cache of {name}"), e))?;
    }
    Ok(())
}

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])` (include/uapi/linux/random.h).
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`, Linux ≥ 4.17.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mixes `bytes` into the kernel's input pool, credited in full, and reseeds the CRNG from it,
/// so that every later `getrandom`, and `boot_id` on its first read, differs from the
/// template's and from every other clone's.
fn add_entropy(bytes: &[u8]) -> io::Result<()> {
    let info = rand_pool_info(bytes)?;
    let urandom = sys::open(Path::new("/dev/urandom"), libc::O_RDWR, 0)?;
    // SAFETY: `info` is a `struct rand_pool_info` (two ints, then `buf_size` bytes) in a
    // u32-aligned buffer that outlives the call; the kernel only reads it.
    cvt(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    cvt(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG) })?;
    Ok(())
}

/// `struct rand_pool_info { int entropy_count /* bits */; int buf_size /* bytes */; __u32
/// buf[]; }`, in u32 words so the ints are aligned.
fn rand_pool_info(bytes: &[u8]) -> io::Result<Vec<u32>> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "too much entropy");
    let size = i32::try_from(bytes.len()).map_err(|_| too_big())?;
    let bits = size.checked_mul(8).ok_or_else(too_big)?;
    let mut words = vec![0u32; 2 + bytes.len().div_ceil(4)];
    words[0] = u32::from_ne_bytes(bits.to_ne_bytes());
    words[1] = u32::from_ne_bytes(size.to_ne_bytes());
    for (w, chunk) in words[2..].iter_mut().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u32::from_ne_bytes(b);
    }
    Ok(words)
}

/// Loads the deferred modules in list order (after the balloon's, re-applying the free page
/// reporting order that its registration resets). Returns the modules that failed (already
/// loaded is not a failure); each failure is logged.
fn load_deferred(deferred: Deferred) -> Vec<String> {
    let mut failed = Vec::new();
    for m in deferred.0 {
        match sys::finit_module(&m.fd) {
            Ok(()) => crate::log!("loaded {}", m.path.display()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                crate::log!("load module {}: {e}", m.path.display());
                failed.push(m.name.clone());
            }
        }
        if m.name == BALLOON_MODULE {
            crate::boot::apply_reporting_order();
        }
    }
    failed
}

/// Polls `check` every `interval` until it finds nothing left, or `timeout` passes; then the
/// error names what was still left (`check`'s descriptions, joined).
async fn wait_until_settled(
    timeout: Duration,
    interval: Duration,
    check: impl Fn() -> Vec<String>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = check();
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(left.join("; "));
        }
        tokio::time::sleep(interval).await;
    }
}

/// What is not ready yet under `sys_dir` (a sysfs) and `dev_dir` (a devtmpfs): every virtio
/// device but the balloon needs its `driver` link (the driver probed it), every `vd*` disk in
/// `block/` its node in `dev_dir` (devtmpfs creates nodes asynchronously, after the probe).
pub fn missing_devices(sys_dir: &Path, dev_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    for dev in sorted_entries(&sys_dir.join("bus/virtio/devices")) {
        let id = std::fs::read_to_string(dev.join("device"))
            .ok()
            .and_then(|s| parse_device_id(&s));
        if id == Some(VIRTIO_ID_BALLOON) {
            continue;
        }
        if !dev.join("driver").exists() {
            let name = dev.file_name().map(|n| n.to_string_lossy().into_owned());
            missing.push(format!(
                "virtio device {} ({}) has no driver",
                name.unwrap_or_default(),
                id.map_or("unknown type", device_kind)
            ));
        }
    }
    for disk in sorted_entries(&sys_dir.join("block")) {
        let Some(name) = disk.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if name.starts_with("vd") && !dev_dir.join(&name).exists() {
            missing.push(format!(
                "disk {name} has no {}",
                dev_dir.join(&name).display()
            ));
        }
    }
    missing
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A sysfs virtio `device` file: the device id in hex, `0x0002\n`.
fn parse_device_id(s: &str) -> Option<u32> {
    let s = s.trim();
    let hex = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(hex, 16).ok()
}

/// What a virtio device id is, for messages (virtio spec 1.2, section 5).
fn device_kind(id: u32) -> &'static str {
    match id {
        1 => "network card",
        2 => "block device",
        3 => "console",
        4 => "entropy source",
        5 => "memory balloon",
        19 => "socket device",
        26 => "file system device",
        _ => "unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_argument_is_a_whole_word() {
        assert!(is_template("console=ttyS0 container.template=1 quiet\n"));
        assert!(!is_template("console=ttyS0 container.template=10"));
        assert!(!is_template("xcontainer.template=1"));
        assert!(!is_template(""));
    }

    #[test]
    fn early_modules_by_file_stem() {
        assert!(loads_early(Path::new("/lib/modules/virtio_ring.ko")));
        assert!(loads_early(Path::new("/lib/modules/virtio-mmio.ko")));
        assert!(loads_early(Path::new("virtio_console.ko")));
        assert!(loads_early(Path::new("/lib/modules/virtio_blk.ko")));
        assert!(loads_early(Path::new("/lib/modules/overlay.ko")));
        assert!(loads_early(Path::new("/lib/modules/virtio_net.ko")));
        assert!(!loads_early(Path::new(
            "/lib/modules/virtio/virtio_balloon.ko"
        )));
        // A pod member's image files come after the template's restore: no need at boot.
        assert!(!loads_early(Path::new("/lib/modules/loop.ko")));
        assert_eq!(module_name(Path::new("/x/net-failover.ko")), "net_failover");
    }

    #[test]
    fn rand_pool_info_layout() {
        let bytes: Vec<u8> = (1..=6).collect();
        let w = rand_pool_info(&bytes).unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], 48);
        assert_eq!(w[1], 6);
        assert_eq!(w[2].to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(w[3].to_ne_bytes(), [5, 6, 0, 0]);
    }

    #[test]
    fn device_ids() {
        assert_eq!(parse_device_id("0x0005\n"), Some(5));
        assert_eq!(parse_device_id("0x001a"), Some(26));
        assert_eq!(parse_device_id("zz"), None);
    }

    #[test]
    fn missing_devices_skips_the_balloon_and_waits_for_disk_nodes() {
        let t = tempfile::tempdir().unwrap();
        let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
        let virtio = sys.join("bus/virtio/devices");
        for (name, id) in [
            ("virtio0", "0x0003"),
            ("virtio1", "0x0002"),
            ("virtio2", "0x0005"),
        ] {
            std::fs::create_dir_all(virtio.join(name)).unwrap();
            std::fs::write(virtio.join(name).join("device"), format!("{id}\n")).unwrap();
        }
        std::fs::create_dir_all(virtio.join("virtio0/driver")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        assert_eq!(
            missing_devices(&sys, &dev),
            vec!["virtio device virtio1 (block device) has no driver".to_string()]
        );
        std::fs::create_dir_all(virtio.join("virtio1/driver")).unwrap();
        std::fs::create_dir_all(sys.join("block/vda")).unwrap();
        std::fs::create_dir_all(sys.join("block/loop0")).unwrap();
        let missing = missing_devices(&sys, &dev);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].starts_with("disk vda has no "), "{missing:?}");
        std::fs::write(dev.join("vda"), "").unwrap();
        assert!(missing_devices(&sys, &dev).is_empty());
    }

    #[test]
    fn disks_are_named_in_attach_order_and_checked_by_capacity() {
        assert_eq!(disk_name(0).as_deref(), Some("vda"));
        assert_eq!(disk_name(25).as_deref(), Some("vdz"));
        assert_eq!(disk_name(26), None);
        let sys = tempfile::tempdir().unwrap();
        for (name, sectors) in [("vda", "2048\n"), ("vdb", "131072\n")] {
            std::fs::create_dir_all(sys.path().join("block").join(name)).unwrap();
            std::fs::write(sys.path().join("block").join(name).join("size"), sectors).unwrap();
        }
        assert!(wrong_capacities(sys.path(), &[1 << 20, 64 << 20]).is_empty());
        let wrong = wrong_capacities(sys.path(), &[2 << 20, 64 << 20, 4096]);
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        assert_eq!(wrong[0], "vda has 1048576 bytes, not 2097152");
        assert!(wrong[1].starts_with("vdc has no size"), "{wrong:?}");
    }

    #[tokio::test]
    async fn resume_is_refused_outside_a_template_and_twice() {
        let r = Resume {
            entropy: vec![7; 64],
            time_unix_ns: 0,
            balloon: false,
            disks: vec![],
        };
        let err = Template::none().resume(&r).await.unwrap_err();
        assert!(matches!(err, GuestError::InvalidArgument(_)), "{err}");
        assert!(
            err.to_string().contains("not booted as a template"),
            "{err}"
        );

        let t = Template::waiting(Deferred::default());
        let short = Resume {
            entropy: vec![7; 31],
            ..r.clone()
        };
        let err = t.resume(&short).await.unwrap_err();
        assert!(err.to_string().contains("31 bytes of entropy"), "{err}");
        // The refusal took nothing: the template can still be resumed (here the deferred list
        // is taken; the ioctls need root and a real kernel, which the VM test covers).
        assert!(t.take().is_ok());
        let err = t.take().err().unwrap();
        assert!(err.to_string().contains("already resumed"), "{err}");
    }
}
