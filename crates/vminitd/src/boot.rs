//! PID 1 boot: the console, kernel modules, a tmpfs root in place of the initramfs (so
//! containers can pivot_root), the standard mounts, cgroup v2 controllers, loopback. A
//! template boot ([`agent::contract::TEMPLATE_ARG`]) loads only the agent channel's modules
//! and the block driver, and keeps the others for `Resume` (src/template.rs).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use agent::contract::{MODULES_LIST, REPORTING_ORDER_ARG};

use crate::sys::{self, cvt};
use crate::template::{self, Deferred, DeferredModule, Template};

/// Runs every boot step; failures are logged and boot continues (a VM without, say, cgroups
/// still runs containers). Returns the VM's template state: the deferred modules of a
/// template boot, for `Resume`.
pub fn boot() -> Template {
    if let Err(e) = console() {
        // Nowhere to log yet; keep going.
        let _ = e;
    }
    crate::log!("starting, kernel {}", sys::kernel_release());
    step("mount /proc", || {
        sys::mkdir_p(Path::new("/proc"))
            .and_then(|_| sys::mount("proc", Path::new("/proc"), "proc", nse(), None))
    });
    step("mount /sys", || {
        sys::mkdir_p(Path::new("/sys"))
            .and_then(|_| sys::mount("sysfs", Path::new("/sys"), "sysfs", nse(), None))
    });
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let template = if template::is_template(&cmdline) {
        crate::log!(
            "template boot: the agent channel's and disks' modules now, the rest on resume"
        );
        Template::waiting(load_modules(Path::new(MODULES_LIST), true))
    } else {
        load_modules(Path::new(MODULES_LIST), false);
        apply_reporting_order();
        Template::none()
    };
    step("switch to a tmpfs root", switch_root);
    step("mount /dev/pts", || {
        sys::mkdir_p(Path::new("/dev/pts")).and_then(|_| {
            sys::mount(
                "devpts",
                Path::new("/dev/pts"),
                "devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some("ptmxmode=0666,mode=0620"),
            )
        })
    });
    step("mount /dev/shm", || {
        sys::mkdir_p(Path::new("/dev/shm")).and_then(|_| {
            sys::mount(
                "shm",
                Path::new("/dev/shm"),
                "tmpfs",
                nse(),
                Some("mode=1777"),
            )
        })
    });
    step("mount /run", || {
        sys::mkdir_p(Path::new("/run")).and_then(|_| {
            sys::mount(
                "tmpfs",
                Path::new("/run"),
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                Some("mode=755"),
            )
        })
    });
    step("mount /tmp", || {
        sys::mkdir_p(Path::new("/tmp")).and_then(|_| {
            sys::mount(
                "tmpfs",
                Path::new("/tmp"),
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                None,
            )
        })
    });
    step("mount cgroup2", || {
        let p = Path::new("/sys/fs/cgroup");
        sys::mkdir_p(p).and_then(|_| sys::mount("cgroup2", p, "cgroup2", nse(), None))
    });
    crate::system::enable_controllers(Path::new("/sys/fs/cgroup"));
    // PID 1 must survive a guest-wide out-of-memory: the OOM killer then picks a container
    // process (each child resets its own score, see spawn.rs), never vminitd.
    step("protect vminitd from the OOM killer", || {
        sys::write_file(Path::new("/proc/self/oom_score_adj"), b"-1000")
    });
    for d in ["/etc", "/run/containers"] {
        step(d, || sys::mkdir_p(Path::new(d)));
    }
    if let Err(e) = crate::netlink::loopback_up() {
        crate::log!("bring up lo: {e}");
    }
    template
}

fn nse() -> libc::c_ulong {
    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
}

fn step(what: &str, f: impl FnOnce() -> io::Result<()>) {
    if let Err(e) = f() {
        crate::log!("{what}: {e}");
    }
}

/// /dev (devtmpfs) and /dev/console as stdin/stdout/stderr.
fn console() -> io::Result<()> {
    sys::mkdir_p(Path::new("/dev"))?;
    match sys::mount(
        "devtmpfs",
        Path::new("/dev"),
        "devtmpfs",
        libc::MS_NOSUID,
        Some("mode=0755"),
    ) {
        Err(e) if e.raw_os_error() != Some(libc::EBUSY) => return Err(e),
        _ => {}
    }
    let fd = sys::open(Path::new("/dev/console"), libc::O_RDWR | libc::O_NOCTTY, 0)?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds of our own process.
        cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Loads the modules listed in `list`, in order, with finit_module(2). Already loaded
/// (EEXIST) is fine; a failure is logged and the next module is tried. Module files are
/// deleted afterwards: they live in the initramfs's RAM otherwise.
///
/// With `template`, only [`agent::contract::EARLY_MODULES`] are loaded; every other module is
/// opened and returned instead (its file is deleted all the same: the open fd keeps its
/// content, and the path would be unreachable after the switch to the tmpfs root).
pub fn load_modules(list: &Path, template: bool) -> Deferred {
    let mut deferred = Deferred::default();
    let Ok(text) = std::fs::read_to_string(list) else {
        crate::log!("no module list at {}", list.display());
        return deferred;
    };
    for path in module_paths(&text) {
        if template && !template::loads_early(path) {
            match DeferredModule::open(path) {
                Ok(m) => deferred.0.push(m),
                Err(e) => crate::log!("open module {}: {e}", path.display()),
            }
        } else {
            match load_module(path) {
                Ok(()) => crate::log!("loaded {}", path.display()),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => crate::log!("load module {}: {e}", path.display()),
            }
        }
        let _ = std::fs::remove_file(path);
    }
    deferred
}

/// The module paths of a module list: one per line; blank lines and `#` comments skipped.
fn module_paths(text: &str) -> impl Iterator<Item = &Path> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Path::new)
}

/// Where the same setting lives at run time.
const REPORTING_ORDER_PARAM: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// Re-applies `page_reporting.page_reporting_order=` from the kernel command line once the
/// balloon driver is loaded: Linux 6.1's `page_reporting_register()` (mm/page_reporting.c)
/// overwrites the value with the driver's default (pageblock order, 2 MiB) when the device
/// registers, so the argument alone has no effect there.
pub fn apply_reporting_order() {
    let Ok(cmdline) = std::fs::read_to_string("/proc/cmdline") else {
        return;
    };
    let Some(order) = reporting_order(&cmdline) else {
        return;
    };
    if let Err(e) = std::fs::write(REPORTING_ORDER_PARAM, order) {
        crate::log!("set free page reporting order {order}: {e}");
    }
}

/// The last `page_reporting.page_reporting_order=N` of a kernel command line, if N is a number.
fn reporting_order(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix(REPORTING_ORDER_ARG))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

fn load_module(path: &Path) -> io::Result<()> {
    sys::finit_module(&sys::open(path, libc::O_RDONLY, 0)?)
}

/// Replaces the initramfs root (which pivot_root cannot leave) with a tmpfs, moving /dev,
/// /proc and /sys over, the way switch_root(8) does.
fn switch_root() -> io::Result<()> {
    let new = Path::new("/.newroot");
    sys::mkdir_p(new)?;
    sys::mount("tmpfs", new, "tmpfs", 0, Some("mode=755"))?;
    for d in ["dev", "proc", "sys"] {
        let target = new.join(d);
        sys::mkdir_p(&target)?;
        sys::mount(&format!("/{d}"), &target, "none", libc::MS_MOVE, None)?;
    }
    std::env::set_current_dir(new)?;
    sys::mount(".", Path::new("/"), "none", libc::MS_MOVE, None)?;
    let dot = c".";
    // SAFETY: valid C string.
    cvt(unsafe { libc::chroot(dot.as_ptr()) })?;
    std::env::set_current_dir("/")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{module_paths, reporting_order};
    use crate::template::loads_early;
    use std::path::Path;

    #[test]
    fn a_template_splits_the_list_in_order() {
        let list = "/lib/modules/virtio_ring.ko\n/lib/modules/virtio.ko\n\n# comment\n\
                    /lib/modules/virtio_mmio.ko\n/lib/modules/virtio_blk.ko\n\
                    /lib/modules/virtio_console.ko\n /lib/modules/failover.ko \n\
                    /lib/modules/virtio_balloon.ko\n";
        let (early, late): (Vec<&Path>, Vec<&Path>) =
            module_paths(list).partition(|p| loads_early(p));
        let names = |v: Vec<&Path>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(early),
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "virtio_blk",
                "virtio_console",
                "failover"
            ]
        );
        assert_eq!(names(late), ["virtio_balloon"]);
    }

    #[test]
    fn reporting_order_from_the_command_line() {
        let c = "console=ttyS0 page_reporting.page_reporting_order=5 quiet\n";
        assert_eq!(reporting_order(c), Some("5"));
        assert_eq!(
            reporting_order(
                "page_reporting.page_reporting_order=3 page_reporting.page_reporting_order=7"
            ),
            Some("7")
        );
        assert_eq!(reporting_order("console=ttyS0 quiet"), None);
        assert_eq!(
            reporting_order("page_reporting.page_reporting_order="),
            None
        );
        assert_eq!(
            reporting_order("page_reporting.page_reporting_order=5;x"),
            None
        );
    }
}
