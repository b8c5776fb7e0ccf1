//! A pod member's rootfs as it will arrive in a running VM: an ext4 image file in a virtiofs
//! share, mounted by vminitd (PID 1 of a QEMU microvm, TCG, the Debian cloud kernel) with our
//! `loop` option. The `loop` module is in the VM's list like the drivers (what
//! `vmm::Features::loop_devices` adds) and must be loaded at boot; a container runs on the
//! mount and writes; after `Umount` the device is free; a read-only mount refuses writes; and
//! the host finds the container's write in the image file (e2fsprogs' `debugfs` reads it).
//!
//! Needs what `tests/vm.rs` needs (kernel .deb, static vminitd, qemu-system-x86, cpio,
//! e2fsprogs, busybox-static), virtiofsd, and root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::{Client, Mount};
use common::*;
use testkit::guest::{self, Guest, Microvm};

/// In load order: the virtio transport, the agent's port, virtiofs, and the loop driver.
const MODULES: [&str; 7] = [
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_console",
    "fuse",
    "virtiofs",
    "loop",
];

const MEMORY_MIB: u32 = 512;

/// Size of the image's big file, read to see what the page cache holds of it.
const BIG_MIB: usize = 32;

/// The loop devices with a file attached, one line each: `loopN FILE dio=D autoclear=A ro=R`.
const BOUND: &str = "for d in /sys/block/loop*; do
  if [ -f $d/loop/backing_file ]; then
    echo \"${d##*/} $(cat $d/loop/backing_file) dio=$(cat $d/loop/dio) \
autoclear=$(cat $d/loop/autoclear) ro=$(cat $d/ro)\"
  fi
done";

struct Pod {
    guest: Guest,
    virtiofsd: Child,
    socket: PathBuf,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.virtiofsd.kill();
        let _ = self.virtiofsd.wait();
    }
}

fn virtiofsd() -> PathBuf {
    if let Some(p) = std::env::var_os("CONTAINER_VIRTIOFSD") {
        return p.into();
    }
    let cargo_bin =
        Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/virtiofsd");
    if cargo_bin.is_file() {
        return cargo_bin;
    }
    "virtiofsd".into()
}

fn boot(dir: &Path, share: &Path) -> Pod {
    let kernel = guest::unpack_kernel(&dir.join("kernel"));
    let cpio = guest::vminitd_initfs(&kernel, &MODULES, dir);

    let fs_socket = dir.join("fs.sock");
    let virtiofsd = Command::new(virtiofsd())
        .arg("--socket-path")
        .arg(&fs_socket)
        .arg("--shared-dir")
        .arg(share)
        .args(["--sandbox", "none", "--cache", "auto"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start virtiofsd (cargo install virtiofsd)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs_socket.exists() {
        assert!(Instant::now() < deadline, "virtiofsd made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }

    let socket = dir.join("agent.sock");
    let append = guest::cmdline("rdinit=/sbin/vminitd");
    let guest = Microvm::new(
        &kernel.vmlinuz,
        &cpio,
        &append,
        MEMORY_MIB,
        &dir.join("boot.log"),
    )
    // vhost-user reads guest memory directly: it must be shared (QEMU merges the -M options).
    .args(["-M", "microvm,memory-backend=mem", "-object"])
    .args([format!(
        "memory-backend-memfd,id=mem,size={MEMORY_MIB}M,share=on"
    )])
    .args(["-no-reboot", "-chardev"])
    .args([format!("socket,id=fs0,path={}", fs_socket.display())])
    .args(["-device", "vhost-user-fs-device,chardev=fs0,tag=pod"])
    .args(["-device", "virtio-serial-device", "-chardev"])
    .args([format!(
        "socket,id=agent,path={},server=on,wait=off",
        socket.display()
    )])
    .args([
        "-device",
        "virtserialport,chardev=agent,name=containerization.agent",
    ])
    .spawn();
    Pod {
        guest,
        virtiofsd,
        socket,
    }
}

async fn connect_vm(pod: &Pod, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = tokio::net::UnixStream::connect(&pod.socket).await {
            match tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                Client::connect(s),
            )
            .await
            {
                Ok(Ok(c)) => return c,
                Ok(Err(e)) => panic!("handshake failed: {e}\nboot log:\n{}", pod.guest.log()),
                Err(_) => panic!(
                    "guest did not answer in {timeout:?}\nboot log:\n{}",
                    pod.guest.log()
                ),
            }
        }
        assert!(Instant::now() < deadline, "agent socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mount(c: &Client, source: &str, target: &str, fstype: &str, options: &[&str]) {
    c.mount(Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    })
    .await
    .unwrap_or_else(|e| panic!("mount {source} ({fstype}) on {target}: {e}"));
}

/// Runs `script` in a new container on `rootfs`; (stdout, stderr, exit code).
async fn sh(c: &Client, id: &str, rootfs: &str, script: &str) -> (String, String, Option<i32>) {
    let (o, e, status) = run(
        c,
        create(id, Some(Path::new(rootfs)), process(&["sh", "-c", script])),
    )
    .await
    .unwrap_or_else(|e| panic!("container {id}: {e}"));
    (o, e, status.code)
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs QEMU, the guest kernel, virtiofsd and root: run scripts/test.sh"
)]
async fn a_member_rootfs_image_on_virtiofs_mounts_through_a_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let tree = dir.path().join("tree");
    busybox_rootfs(&tree);
    std::fs::write(tree.join("hello"), "from the member image\n").unwrap();
    // Incompressible, so no layer below can share its pages.
    let big: Vec<u8> = (0..BIG_MIB << 20)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("big"), big).unwrap();
    let img = share.join("member.ext4");
    testkit::mkfs_ext4(&tree, &img, "96M");

    let mut pod = boot(dir.path(), &share);
    let t0 = Instant::now();
    let c = connect_vm(&pod, Duration::from_secs(90)).await;
    eprintln!("agent answered {:?} after QEMU start", t0.elapsed());
    let log = pod.guest.log();
    assert!(log.contains("loaded /lib/modules/loop.ko"), "{log}");

    mount(&c, "pod", "/run/pod", "virtiofs", &[]).await;
    let rootfs = "/run/containers/m1/rootfs";
    let t = Instant::now();
    mount(&c, "/run/pod/member.ext4", rootfs, "ext4", &["loop"]).await;
    eprintln!("loop mount took {:?}", t.elapsed());

    let (out, err, code) = sh(
        &c,
        "m1",
        rootfs,
        &format!("cat /hello && echo 'by the member' > /written && {BOUND}"),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    eprintln!("{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from the member image"));
    let bound: Vec<&str> = lines.collect();
    assert_eq!(bound.len(), 1, "{out}");
    let (dev, rest) = bound[0].split_once(' ').unwrap();
    assert!(
        rest.starts_with("/run/pod/member.ext4 ") && rest.contains("autoclear=1 ro=0"),
        "{rest}"
    );
    // virtiofs (FUSE) files do direct I/O: the image is cached once, under the mounted ext4.
    assert!(rest.contains("dio=1"), "{rest}");

    // What reading the image costs the VM's page cache: with direct I/O, the file once
    // (under the mounted ext4); without, twice (also under the virtiofs backing file).
    let (out, err, code) = sh(
        &c,
        "m1-read",
        rootfs,
        "grep '^Cached:' /proc/meminfo; cat /big > /dev/null; grep '^Cached:' /proc/meminfo",
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let kib: Vec<u64> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    let grew_mib = (kib[1].saturating_sub(kib[0])) as f64 / 1024.0;
    eprintln!(
        "reading {BIG_MIB} MiB through the loop device grew the page cache by {grew_mib:.1} MiB"
    );
    assert!(grew_mib < BIG_MIB as f64 * 1.5, "{out}");

    c.umount(rootfs, false).await.unwrap();

    // Read-only: the earlier device is free (no second one bound), writes are EROFS.
    let ro = "/run/containers/m2/rootfs";
    mount(&c, "/run/pod/member.ext4", ro, "ext4", &["loop", "ro"]).await;
    let (out, err, code) = sh(
        &c,
        "m2",
        ro,
        &format!("cat /written; echo x > /nope; echo \"write: $?\"; {BOUND}"),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["by the member", "write: 1"], "{out}");
    assert_eq!(lines.len(), 3, "one device bound: {out}");
    assert!(lines[2].ends_with("autoclear=1 ro=1"), "{out}");
    eprintln!("first device {dev}; read-only mount on {}", lines[2]);
    c.umount(ro, false).await.unwrap();

    // A missing image: one line naming it.
    let missing = c
        .mount(Mount {
            source: "/run/pod/absent.ext4".into(),
            target: "/run/containers/m3/rootfs".into(),
            fstype: "ext4".into(),
            options: vec!["loop".into()],
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("loop device for /run/pod/absent.ext4: open the file: "),
        "{missing}"
    );

    c.shutdown(false).await.unwrap();
    let status = pod.guest.wait_exit(Duration::from_secs(30));
    eprintln!("qemu exited with {status}");
    let log = pod.guest.log();
    assert!(!log.contains("BUG:"), "{log}");

    // The host sees the member's write in the image file.
    let got = testkit::run(
        Command::new("debugfs")
            .args(["-R", "cat /written"])
            .arg(&img),
    );
    assert_eq!(got, "by the member\n");
}
