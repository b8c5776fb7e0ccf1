//! Choosing the accelerator: KVM when it can boot the configured kernel, TCG otherwise.
//!
//! A usable `/dev/kvm` is not enough. Some hosts expose **PVM** (pagetable-based
//! virtualization, `/sys/module/kvm_pvm`) through `/dev/kvm`; it only runs guest kernels built
//! with PVM guest support, and a stock kernel hangs early in boot. So:
//!
//! 1. `/dev/kvm` missing or unusable (`KVM_GET_API_VERSION` ≠ 12) → TCG.
//! 2. Ordinary hardware KVM (no `kvm_pvm` module) → KVM: it boots any x86-64 kernel.
//! 3. PVM → a **probe boot**: the kernel is started under KVM with no initramfs and
//!    `panic=-1`; a kernel that works prints its banner and panics for want of a root
//!    filesystem, which ends QEMU (`-no-reboot`) within a second. No exit within
//!    [`PROBE_TIMEOUT`] means KVM cannot run this kernel → TCG. The answer is cached per kernel
//!    and host kernel release, in the kernel's store directory (`accel.json`) and host-wide in
//!    [`host_cache_dir`] (`accel-<kernel id>.json`), so only the first VM of a kernel on a host
//!    pays for the probe, whatever state directory it uses.
//!
//! The user can always force one with `--accel kvm|tcg`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::kernel::{host_release, Kernel};
use atomic_file::write_atomic;

/// How long a probe boot under PVM may take before KVM is declared unusable for the kernel.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation: always works, slower.
    Tcg,
}

impl Accel {
    /// The name `-accel` takes.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(AccelError::Unknown(other.to_string())),
        }
    }
}

/// Errors of choosing an accelerator.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// A name other than `kvm` or `tcg`.
    #[error("unknown accelerator {0:?} (expected kvm or tcg)")]
    Unknown(String),
    /// KVM was forced but `/dev/kvm` cannot be used.
    #[error("--accel kvm: /dev/kvm is not usable ({0})")]
    KvmUnavailable(String),
    /// The probe VM could not be run at all.
    #[error("cannot run the KVM probe VM")]
    Probe(#[source] std::io::Error),
}

/// The accelerator chosen and why, for a one-line notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, in a few words.
    pub reason: String,
}

impl Decision {
    /// A one-line notice for the user, e.g. `using TCG (software emulation): …`.
    pub fn notice(&self) -> String {
        match self.accel {
            Accel::Kvm => format!("using KVM: {}", self.reason),
            Accel::Tcg => format!("using TCG (software emulation, slower): {}", self.reason),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ProbeCache {
    host_release: String,
    kvm_works: bool,
}

/// Picks the accelerator for booting `kernel`, honouring a forced choice.
pub fn choose(forced: Option<Accel>, kernel: &Kernel, qemu: &Path) -> Result<Decision, AccelError> {
    match forced {
        Some(Accel::Tcg) => {
            return Ok(Decision {
                accel: Accel::Tcg,
                reason: "requested with --accel tcg".into(),
            })
        }
        Some(Accel::Kvm) => {
            kvm_usable().map_err(AccelError::KvmUnavailable)?;
            return Ok(Decision {
                accel: Accel::Kvm,
                reason: "requested with --accel kvm".into(),
            });
        }
        None => {}
    }
    if let Err(why) = kvm_usable() {
        return Ok(Decision {
            accel: Accel::Tcg,
            reason: format!("/dev/kvm is not usable ({why})"),
        });
    }
    if !is_pvm_host() {
        return Ok(Decision {
            accel: Accel::Kvm,
            reason: "hardware virtualization available".into(),
        });
    }
    // Two caches: the kernel's own directory, and a host-wide one (so fresh state directories,
    // as tests use, do not probe again). Both are keyed by the host kernel release, because a
    // host kernel update can change what its KVM runs.
    let caches = [
        kernel.dir().join("accel.json"),
        host_cache_dir().join(format!("accel-{}.json", kernel.id)),
    ];
    let release = host_release();
    let cached = caches.iter().find_map(|path| {
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ProbeCache>(&b).ok())
            .filter(|c| c.host_release == release)
    });
    let works = match cached {
        Some(c) => c.kvm_works,
        None => probe_boot(qemu, &kernel.vmlinux, Accel::Kvm, PROBE_TIMEOUT)
            .map_err(AccelError::Probe)?,
    };
    let json = serde_json::to_vec(&ProbeCache {
        host_release: release,
        kvm_works: works,
    })
    .expect("probe cache serialises");
    for path in &caches {
        if !path.exists() {
            // A cache that cannot be written only costs another probe next time.
            let written = match path.parent() {
                Some(dir) => fs::create_dir_all(dir).and_then(|()| write_atomic(path, &json)),
                None => write_atomic(path, &json),
            };
            if let Err(e) = written {
                tracing::debug!("cannot cache KVM probe result at {}: {e}", path.display());
            }
        }
    }
    let name = kernel.release.as_deref().unwrap_or("the configured kernel");
    Ok(if works {
        Decision {
            accel: Accel::Kvm,
            reason: format!("PVM host and kernel {name} boots under it"),
        }
    } else {
        Decision {
            accel: Accel::Tcg,
            reason: format!("/dev/kvm is PVM, which cannot boot kernel {name}"),
        }
    })
}

/// Where host-wide facts are cached: `/run/container-vmm` (cleared at host reboot) for root,
/// else a per-user directory in the temp dir.
pub fn host_cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/run/container-vmm")
    } else {
        std::env::temp_dir().join(format!("container-vmm-{uid}"))
    }
}

/// Whether `/dev/kvm` opens and answers `KVM_GET_API_VERSION` with 12 (the stable API).
pub fn kvm_usable() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| e.to_string())?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int; the fd is open
    // for the duration of the call.
    let v = unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    match v {
        12 => Ok(()),
        v if v < 0 => Err(std::io::Error::last_os_error().to_string()),
        v => Err(format!("unexpected KVM API version {v}")),
    }
}

/// Whether the host's KVM is PVM.
pub fn is_pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// Boots `vmlinux` under `accel` without an initramfs and reports whether it reached the
/// kernel's "no root filesystem" panic, and QEMU exited, within `timeout`. Both are required: a
/// guest that triple-faults early also ends QEMU, but never prints the panic.
pub fn probe_boot(
    qemu: &Path,
    vmlinux: &Path,
    accel: Accel,
    timeout: Duration,
) -> std::io::Result<bool> {
    let console = atomic_file::temp_sibling(&std::env::temp_dir().join("vmm-kvm-probe.log"));
    let mut append = String::from("console=ttyS0 panic=-1 reboot=t root=/dev/nonexistent");
    if accel == Accel::Tcg {
        if let Some(khz) = host_tsc_khz() {
            append.push_str(&format!(" tsc_early_khz={khz}"));
        }
    }
    let mut child = Command::new(qemu)
        .args([
            "-M",
            "microvm",
            "-accel",
            accel.qemu_name(),
            "-m",
            "256M",
            "-smp",
            "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vmlinux)
        .args(["-append", &append])
        .arg("-chardev")
        .arg(format!("file,id=con,path={}", console.display()))
        .args(["-serial", "chardev:con"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let start = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait()? {
            break status.success();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = fs::read(&console).unwrap_or_default();
    let _ = fs::remove_file(&console);
    let panicked = log.windows(12).any(|w| w == b"Kernel panic");
    Ok(exited && panicked)
}

/// The host CPU's clock in kHz from `/proc/cpuinfo` (`cpu MHz`), which is the TSC rate the
/// guest sees under TCG.
pub fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_mhz(&text)
}

fn parse_cpu_mhz(cpuinfo: &str) -> Option<u64> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != "cpu MHz" {
            return None;
        }
        let mhz: f64 = v.trim().parse().ok()?;
        // Positive (checked) and far below u64::MAX: the float-to-integer cast is exact enough.
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_names() {
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("hvf"
            .parse::<Accel>()
            .unwrap_err()
            .to_string()
            .contains("hvf"));
        assert_eq!(Accel::Tcg.qemu_name(), "tcg");
    }

    #[test]
    fn forced_tcg_needs_nothing() {
        let k = Kernel {
            id: "x".into(),
            release: None,
            source: crate::kernel::KernelSource::Host { path: "/x".into() },
            image: "/nonexistent/image".into(),
            vmlinux: "/nonexistent/vmlinux".into(),
            modules_dir: None,
        };
        let d = choose(Some(Accel::Tcg), &k, Path::new("qemu-system-x86_64")).unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.notice().starts_with("using TCG"));
    }

    /// The probe recognises a kernel that boots: under TCG (slower, so a longer timeout) the
    /// Debian kernel reaches its root-mount panic; a file that is not a kernel does not.
    #[test]
    #[cfg_attr(not(container_testenv), ignore = "needs QEMU: run scripts/test.sh")]
    fn probe_sees_a_working_boot() {
        let tk = crate::testutil::debian_kernel();
        let root = tempfile::tempdir().unwrap();
        let k = crate::kernel::KernelStore::new(root.path())
            .for_path(&tk.vmlinuz)
            .unwrap();
        let qemu = Path::new("qemu-system-x86_64");
        assert!(probe_boot(qemu, &k.vmlinux, Accel::Tcg, Duration::from_secs(60)).unwrap());
        let junk = root.path().join("junk");
        fs::write(&junk, b"junk").unwrap();
        assert!(!probe_boot(qemu, &junk, Accel::Tcg, Duration::from_secs(10)).unwrap());
    }

    /// On this machine class (PVM, see ENVIRONMENT.md) the stock Debian kernel must land on
    /// TCG; on a host with hardware KVM it must land on KVM. Either way the answer is cached.
    #[test]
    #[cfg_attr(not(container_testenv), ignore = "needs QEMU: run scripts/test.sh")]
    fn auto_choice_matches_the_host() {
        let tk = crate::testutil::debian_kernel();
        let root = tempfile::tempdir().unwrap();
        let store = crate::kernel::KernelStore::new(root.path());
        let k = store.set_binary(&tk.vmlinuz, Some(&tk.modules)).unwrap();
        let qemu = Path::new("qemu-system-x86_64");
        let d = choose(None, &k, qemu).unwrap();
        match (kvm_usable().is_ok(), is_pvm_host()) {
            (false, _) => assert_eq!(d.accel, Accel::Tcg),
            (true, false) => assert_eq!(d.accel, Accel::Kvm),
            (true, true) => {
                assert_eq!(d.accel, Accel::Tcg, "{}", d.reason);
                assert!(d.reason.contains("PVM"));
                assert!(k.dir().join("accel.json").exists());
                let global = host_cache_dir().join(format!("accel-{}.json", k.id));
                assert!(global.exists());
                // A probe takes PROBE_TIMEOUT (5 s) here; a cache hit takes milliseconds.
                let t = Instant::now();
                assert_eq!(choose(None, &k, qemu).unwrap(), d);
                assert!(
                    t.elapsed() < Duration::from_secs(3),
                    "cached, no second probe"
                );
                // A fresh state directory finds the host-wide answer.
                let root2 = tempfile::tempdir().unwrap();
                let k2 = crate::kernel::KernelStore::new(root2.path())
                    .set_binary(&tk.vmlinuz, None)
                    .unwrap();
                let t = Instant::now();
                assert_eq!(choose(None, &k2, qemu).unwrap(), d);
                assert!(
                    t.elapsed() < Duration::from_secs(3),
                    "host-wide cache, no probe"
                );
            }
        }
    }

    #[test]
    fn cpu_mhz_parsing() {
        assert_eq!(
            parse_cpu_mhz("processor\t: 0\ncpu MHz\t\t: 2596.148\n"),
            Some(2596148)
        );
        assert_eq!(parse_cpu_mhz("nothing"), None);
        assert!(host_tsc_khz().is_some(), "this x86 host reports cpu MHz");
    }
}
