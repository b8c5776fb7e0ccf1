//! Guest memory goes back to the host: a real container VM (QEMU, TCG here) fills a tmpfs with
//! 240 MiB, which QEMU's resident memory shows, then deletes it; the virtio balloon's free page
//! reporting must hand most of it back to the host within a bounded wait. A second VM booted
//! without the balloon (`CONTAINER_NO_BALLOON=1`) is the control: there the memory stays, so
//! the first result is the balloon's doing and the measurement is able to fail.
//!
//! Needs what tests/run.rs needs: the kernel .deb of scripts/setup.sh (or
//! CONTAINER_TEST_KERNEL_DEB), a static vminitd (CONTAINER_VMINITD), qemu-system-x86.

mod common;

use std::time::{Duration, Instant};

use common::{vm, Run};

/// The image: busybox-static imported as a one-layer rootfs (runs as root).
const IMAGE: &str = "localhost/memory-test:1";
/// What the guest allocates and frees, in MiB (the tmpfs holding it is 300 MiB).
const ALLOC_MIB: u64 = 240;
/// How long reporting may take; it normally takes about 2 s (the guest's reporting delay).
const RETURN_WAIT: Duration = Duration::from_secs(30);

/// The shared VM test environment with this file's image.
struct Env(vm::Env);

impl Env {
    fn new() -> Env {
        let env = vm::Env::tagged("mem", false);
        let tar = env.cli.root().join("rootfs.tar");
        common::images::rootfs_tarball(&tar);
        env.run(&["image", "import", tar.to_str().unwrap(), IMAGE])
            .success();
        Env(env)
    }

    /// Starts an idle container with a 300 MiB tmpfs on /t; returns QEMU's pid.
    fn start(&self, name: &str, balloon: bool) -> u32 {
        let mut cmd = self.0.cli.command(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--tmpfs",
            "/t:size=300m",
            IMAGE,
            "sleep",
            "1000000",
        ]);
        if !balloon {
            cmd.env("CONTAINER_NO_BALLOON", "1");
        } else {
            cmd.env_remove("CONTAINER_NO_BALLOON");
        }
        let o = cmd.output().expect("run container");
        assert!(
            o.status.success(),
            "run -d failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let info = self.0.run(&["inspect", name]).success().json();
        info[0]["vmPid"]
            .as_u64()
            .expect("vmPid of a running container") as u32
    }

    fn exec(&self, name: &str, script: &str) -> Run {
        self.0.run(&["exec", name, "sh", "-c", script]).success()
    }
}

/// Proportional set size of a process in MiB (`/proc/PID/smaps_rollup`).
fn pss_mib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_else(|e| panic!("read smaps_rollup of QEMU (pid {pid}): {e}"));
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no Pss line in smaps_rollup: {text}"));
    kib / 1024
}

/// QEMU's PSS once it has been stable (±2 MiB) for a second, at most `limit` later.
fn settled_pss(pid: u32, limit: Duration) -> u64 {
    let end = Instant::now() + limit;
    let mut last = pss_mib(pid);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = pss_mib(pid);
        if now.abs_diff(last) <= 2 || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// Boots a container, allocates and frees ALLOC_MIB in the guest; returns (idle, peak, after)
/// PSS of QEMU in MiB, `after` being the lowest seen within `wait` of the free (the wait ends
/// early once 60 % of the allocation is back).
fn allocate_and_free(env: &Env, name: &str, balloon: bool, wait: Duration) -> (u64, u64, u64) {
    let qemu = env.start(name, balloon);
    let idle = settled_pss(qemu, Duration::from_secs(10));
    env.exec(
        name,
        &format!("busybox dd if=/dev/zero of=/t/fill bs=1M count={ALLOC_MIB} 2>/dev/null"),
    );
    let peak = pss_mib(qemu);
    assert!(
        peak >= idle + ALLOC_MIB * 8 / 10,
        "the guest's {ALLOC_MIB} MiB did not show in QEMU's memory (idle {idle} MiB, after \
         filling {peak} MiB): nothing to measure"
    );
    env.exec(name, "busybox rm /t/fill");
    let freed_enough = peak - ALLOC_MIB * 6 / 10;
    let end = Instant::now() + wait;
    let mut after = pss_mib(qemu);
    while after > freed_enough && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        after = after.min(pss_mib(qemu));
    }
    eprintln!(
        "{name} (balloon {balloon}): QEMU PSS idle {idle} MiB, filled {peak} MiB, freed {after} MiB"
    );
    (idle, peak, after)
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn memory_returns_to_the_host_after_the_guest_frees_it() {
    let env = Env::new();

    let (idle, peak, after) = allocate_and_free(&env, "balloon", true, RETURN_WAIT);
    let returned = peak.saturating_sub(after);
    assert!(
        returned >= ALLOC_MIB * 6 / 10,
        "only {returned} MiB of the {ALLOC_MIB} MiB the guest freed went back to the host \
         within {RETURN_WAIT:?} (QEMU PSS idle {idle}, filled {peak}, freed {after} MiB)"
    );
    env.0.run(&["delete", "-f", "balloon"]).success();

    // The control: without the balloon nothing gives the pages back.
    let wait = Duration::from_secs(8);
    let (idle, peak, after) = allocate_and_free(&env, "noballoon", false, wait);
    assert!(
        peak.saturating_sub(after) < ALLOC_MIB * 3 / 10,
        "without the balloon QEMU still dropped from {peak} to {after} MiB (idle {idle} MiB): \
         the test cannot tell the balloon's effect apart"
    );
}
