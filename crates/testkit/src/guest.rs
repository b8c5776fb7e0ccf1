//! Guests booted straight from the Debian kernel package, below the runtime: for tests of one
//! guest-side piece (vminitd as PID 1, a NIC on our tap) that should not depend on the runtime's
//! kernel store or boot path. A QEMU microvm under TCG with the kernel arguments that keep such
//! boots fast and reliable there (ENVIRONMENT.md), an initramfs packed with `cpio`, the serial
//! console in a file, and QEMU killed when the [`Guest`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{read_lossy, run};

/// The kernel package unpacked: its `vmlinuz` and its module tree.
pub struct KernelFiles {
    /// `boot/vmlinuz-*`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<version>`.
    pub modules: PathBuf,
}

/// Unpacks [`crate::kernel_deb`] under `dir` with `dpkg-deb -x`.
pub fn unpack_kernel(dir: &Path) -> KernelFiles {
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(crate::kernel_deb())
        .arg(dir));
    let first = |sub: &str, prefix: &str| {
        std::fs::read_dir(dir.join(sub))
            .unwrap_or_else(|e| panic!("{sub} in the kernel package: {e}"))
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {sub}/{prefix}* in the kernel package"))
    };
    KernelFiles {
        vmlinuz: first("boot", "vmlinuz-"),
        modules: first("lib/modules", ""),
    }
}

impl KernelFiles {
    /// The path of module `name` (`virtio_net`, without `.ko`) in the module tree.
    pub fn module(&self, name: &str) -> PathBuf {
        let file = format!("{name}.ko");
        find(&self.modules, &file)
            .unwrap_or_else(|| panic!("module {file} not in {}", self.modules.display()))
    }
}

fn find(dir: &Path, file: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if e.file_type().ok()?.is_dir() {
            if let Some(found) = find(&p, file) {
                return Some(found);
            }
        } else if e.file_name() == file {
            return Some(p);
        }
    }
    None
}

/// Packs the tree at `tree` as a newc cpio archive (an initramfs) at `out`.
pub fn cpio(tree: &Path, out: &Path) {
    run(Command::new("sh").current_dir(tree).arg("-c").arg(format!(
        "find . | cpio -o -H newc --quiet > '{}'",
        out.display()
    )));
}

/// Builds vminitd's init filesystem under `dir` and packs it to `dir/initfs.cpio` (returned):
/// the static vminitd as `/sbin/vminitd`, the kernel's `modules` (names without `.ko`, in load
/// order) under `/lib/modules`, and their order in `/etc/vminitd/modules`. Nothing else: no
/// `/dev`, no shell.
pub fn vminitd_initfs(kernel: &KernelFiles, modules: &[&str], dir: &Path) -> PathBuf {
    let initfs = dir.join("initfs");
    for d in ["sbin", "lib/modules", "etc/vminitd"] {
        std::fs::create_dir_all(initfs.join(d)).unwrap();
    }
    std::fs::copy(crate::static_vminitd(), initfs.join("sbin/vminitd")).unwrap();
    let mut order = String::new();
    for m in modules {
        std::fs::copy(kernel.module(m), initfs.join(format!("lib/modules/{m}.ko"))).unwrap();
        order.push_str(&format!("/lib/modules/{m}.ko\n"));
    }
    std::fs::write(initfs.join("etc/vminitd/modules"), order).unwrap();
    let out = dir.join("initfs.cpio");
    cpio(&initfs, &out);
    out
}

/// The host's TSC frequency in kHz from /proc/cpuinfo, if it says.
pub fn tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    // A host clock rate: positive, and far below u64::MAX. (vmm::accel::host_tsc_khz reads the
    // same; testkit cannot depend on vmm, whose tests depend on testkit.)
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    let khz = (mhz * 1000.0) as u64;
    Some(khz)
}

/// Kernel arguments for a TCG microvm followed by `extra`. `tsc_early_khz` spares the guest
/// calibrating its TSC against the PIT, which fails and hangs the boot when the host's cores are
/// busy (as they are while tests run in parallel).
pub fn cmdline(extra: &str) -> String {
    let mut s = String::from(
        "console=ttyS0 panic=-1 pci=off i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable \
         no_timer_check cryptomgr.notests quiet",
    );
    if let Some(khz) = tsc_khz() {
        s.push_str(&format!(" tsc_early_khz={khz}"));
    }
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// A QEMU microvm command line (TCG, one vCPU, no default devices, serial console to a file),
/// to which a test adds its devices before [`Microvm::spawn`].
pub struct Microvm {
    cmd: Command,
    serial: PathBuf,
}

impl Microvm {
    /// `kernel` with `initrd`, kernel arguments `append` and `memory_mib` of RAM; the console
    /// goes to `serial`.
    pub fn new(kernel: &Path, initrd: &Path, append: &str, memory_mib: u32, serial: &Path) -> Self {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-M", "microvm", "-accel", "tcg", "-smp", "1"])
            .args(["-m", &memory_mib.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", append])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Microvm {
            cmd,
            serial: serial.to_path_buf(),
        }
    }

    /// More QEMU arguments (devices, `-no-reboot`).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd.args(args);
        self
    }

    /// Starts QEMU (in the calling thread's network namespace).
    pub fn spawn(mut self) -> Guest {
        let qemu = self.cmd.spawn().expect("start qemu-system-x86_64");
        Guest {
            qemu,
            serial: self.serial,
        }
    }
}

/// A running guest; QEMU is killed and reaped on drop.
pub struct Guest {
    /// The QEMU process.
    pub qemu: Child,
    serial: PathBuf,
}

impl Guest {
    /// What the guest wrote to its console so far.
    pub fn log(&self) -> String {
        read_lossy(&self.serial)
    }

    /// Waits until the console shows `marker` and returns the log; panics with the log when
    /// QEMU exits first or `timeout` passes.
    #[track_caller]
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(marker) {
                return log;
            }
            if let Some(status) = self.qemu.try_wait().expect("poll qemu") {
                panic!("qemu exited {status} before {marker:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit (the guest powered off); panics with the log after `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.qemu.try_wait().expect("poll qemu") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the guest did not power off within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}
