//! The tailored guest kernel (kernel/config-6.1-container, built by scripts/build-kernel.sh):
//! a monolithic kernel with no modules directory runs containers with a virtiofs bind mount and
//! a network, end to end with real VMs (see `common::vm`).
//!
//! Building that kernel takes minutes (about 8 on 2 idle cores, far more on a busy machine), so
//! this test does not build it: it runs when `scripts/build-kernel.sh` has built it before (the
//! script's `--cached` answers without building) and otherwise says SKIPPED on stderr.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::vm::{Env, IMAGE};

/// The cached vmlinux of the tailored kernel, if `scripts/build-kernel.sh` built it.
fn tailored_vmlinux() -> Option<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-kernel.sh");
    let out = Command::new(script).arg("--cached").output().ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_file()).then_some(path)
}

#[test]
fn tailored_kernel_runs_containers_with_mounts_and_network() {
    let Some(vmlinux) = tailored_vmlinux() else {
        eprintln!(
            "SKIPPED tailored_kernel_runs_containers_with_mounts_and_network: no cached tailored \
             kernel; run scripts/build-kernel.sh once to enable this test"
        );
        return;
    };
    let env = Env::new(true);
    let k = vmlinux.to_str().unwrap();
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("from-host"), "host data\n").unwrap();
    let bind = format!("{}:/share", share.path().display());
    // -k: this container only; the shared state's current kernel stays the cloud kernel.
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "-k",
            k,
            // vminitd writes these into the container's cgroup (cpu.max, memory.max, pids.max):
            // a kernel without those controllers fails the run.
            "--cpus",
            "0.5",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            "-v",
            &bind,
            IMAGE,
            "sh",
            "-c",
            "uname -r; cat /proc/sys/kernel/modules_disabled 2>/dev/null || echo no-modules; \
             cat /share/from-host; echo guest data > /share/from-guest; \
             busybox zcat /proc/config.gz | grep -c -e '^CONFIG_VIRTIO_FS=y' -e '^CONFIG_MEMCG=y'; \
             gw=$(busybox ip route | busybox awk '/^default/ {print $3}'); \
             busybox ping -c 1 -W 5 \"$gw\" >/dev/null && echo gateway answers",
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].ends_with("-container"), "{r:?}");
    // CONFIG_MODULES=n: the kernel has no modules_disabled sysctl at all.
    assert_eq!(lines[1], "no-modules", "{r:?}");
    assert_eq!(lines[2], "host data", "{r:?}");
    assert_eq!(lines[3], "2", "{r:?}");
    assert_eq!(lines[4], "gateway answers", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(share.path().join("from-guest")).unwrap(),
        "guest data\n"
    );
}
