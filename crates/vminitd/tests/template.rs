//! Template boots in a real VM: the static vminitd as PID 1 of a QEMU microvm (TCG) booted with
//! `container.template=1`, with a disk and a NIC (probed at boot) and a balloon whose driver
//! waits for `Resume`. The first test resumes the template in place; the second saves it (QMP
//! `stop` + `migrate` with `x-ignore-shared`, RAM in a shared file) with a small placeholder
//! disk and restores two clones with other, larger disks and other MACs, each of which must see
//! its own disk (capacity and content), MAC and `boot_id`.
//!
//! Needs what `tests/vm.rs` needs (kernel .deb, static vminitd, qemu-system-x86, cpio,
//! e2fsprogs, busybox-static).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::contract::TEMPLATE_ARG;
use agent::{Client, ErrorCode, Interface, Mount, Resume};
use common::*;
use testkit::guest::{self, Guest, KernelFiles, Microvm};

/// In load order; a template loads all of them at boot but the balloon's.
const MODULES: [&str; 9] = [
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_balloon",
];

const MEMORY_MIB: u32 = 256;

/// 2033-05-18, far from the host's clock, so the test sees that `Resume` set it.
const RESUME_TIME_S: u64 = 2_000_000_000;

/// The kernel and the template's initfs.
struct Fixture {
    kernel: KernelFiles,
    cpio: PathBuf,
}

fn fixture(dir: &Path) -> Fixture {
    let kernel = guest::unpack_kernel(&dir.join("kernel"));
    let cpio = guest::vminitd_initfs(&kernel, &MODULES, dir);
    Fixture { kernel, cpio }
}

/// A busybox ext4 disk whose `/hello` says `hello`.
fn disk(dir: &Path, name: &str, hello: &str) -> PathBuf {
    let root = dir.join(format!("{name}.d"));
    busybox_rootfs(&root);
    std::fs::write(root.join("hello"), hello).unwrap();
    let img = dir.join(format!("{name}.img"));
    testkit::mkfs_ext4(&root, &img, "32M");
    img
}

/// Where guest RAM lives: anonymous memory, or a file mapped shared (a template being saved)
/// or private (a clone, copy-on-write over the template's pages).
enum Ram<'a> {
    Anonymous,
    Template(&'a Path),
    Clone(&'a Path),
}

struct Vm {
    guest: Guest,
    agent: PathBuf,
    qmp: PathBuf,
}

/// Starts QEMU: the same devices in the same order for a template and its clones (their
/// device state must match), with this VM's disk, MAC, sockets and console.
fn start(fx: &Fixture, dir: &Path, name: &str, disk: &Path, mac: &str, ram: Ram) -> Vm {
    let agent = dir.join(format!("{name}.agent"));
    let qmp = dir.join(format!("{name}.qmp"));
    let append = guest::cmdline(&format!("rdinit=/sbin/vminitd {TEMPLATE_ARG}"));
    let mut vm = Microvm::new(
        &fx.kernel.vmlinuz,
        &fx.cpio,
        &append,
        MEMORY_MIB,
        &dir.join(format!("{name}.log")),
    );
    let backend = |path: &Path, share: &str| {
        format!(
            "memory-backend-file,id=mem,size={MEMORY_MIB}M,mem-path={},share={share}",
            path.display()
        )
    };
    match ram {
        Ram::Anonymous => {}
        Ram::Template(p) => {
            vm = vm.args([
                "-M",
                "microvm,memory-backend=mem",
                "-object",
                &backend(p, "on"),
            ]);
        }
        Ram::Clone(p) => {
            vm = vm
                .args([
                    "-M",
                    "microvm,memory-backend=mem",
                    "-object",
                    &backend(p, "off"),
                ])
                .args(["-incoming", "defer"]);
        }
    }
    let guest = vm
        .args(["-no-reboot", "-qmp"])
        .args([format!("unix:{},server=on,wait=off", qmp.display())])
        .args(["-drive"])
        .args([format!("id=d0,file={},format=raw,if=none", disk.display())])
        .args(["-device", "virtio-blk-device,drive=d0"])
        .args(["-device", "virtio-serial-device", "-chardev"])
        .args([format!(
            "socket,id=agent,path={},server=on,wait=off",
            agent.display()
        )])
        .args([
            "-device",
            "virtserialport,chardev=agent,name=containerization.agent",
        ])
        // A NIC whose user-mode backend reaches nothing outside the VM (restrict=on).
        .args(["-netdev", "user,id=n0,restrict=on", "-device"])
        .args([format!("virtio-net-device,netdev=n0,mac={mac}")])
        .args(["-device", "virtio-balloon-device"])
        .spawn();
    Vm { guest, agent, qmp }
}

async fn connect(vm: &Vm, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = tokio::net::UnixStream::connect(&vm.agent).await {
            match tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                Client::connect(s),
            )
            .await
            {
                Ok(Ok(c)) => return c,
                Ok(Err(e)) => panic!("handshake failed: {e}\nboot log:\n{}", vm.guest.log()),
                Err(_) => panic!(
                    "guest did not answer in {timeout:?}\nboot log:\n{}",
                    vm.guest.log()
                ),
            }
        }
        assert!(Instant::now() < deadline, "agent socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn resume(entropy: Vec<u8>, disks: Vec<u64>) -> Resume {
    Resume {
        entropy,
        time_unix_ns: RESUME_TIME_S * 1_000_000_000,
        balloon: false,
        disks,
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b
}

fn mount_vda() -> Mount {
    Mount {
        source: "/dev/vda".into(),
        target: "/run/containers/c1/rootfs".into(),
        fstype: "ext4".into(),
        options: vec![],
    }
}

fn eth0(mac: &str) -> Interface {
    Interface {
        name: "eth0".into(),
        addresses: vec!["10.0.2.15/24".into()],
        gateway: None,
        gateway6: None,
        mtu: None,
        mac: Some(mac.into()),
    }
}

/// Runs `script` as the first process of container c1, on the mounted disk, and returns its
/// stdout lines.
async fn sh(c: &Client, script: &str) -> Vec<String> {
    let rootfs = Path::new("/run/containers/c1/rootfs");
    let (o, e, st) = run(
        c,
        create("c1", Some(rootfs), process(&["sh", "-c", script])),
    )
    .await
    .unwrap();
    assert_eq!(st.code, Some(0), "{script}: {o}{e}");
    o.lines().map(String::from).collect()
}

/// A template boot (anonymous RAM: not saved) with one disk saying "from the disk", and its
/// agent connected: (the disk, the VM, the client).
async fn template_vm(dir: &Path) -> (PathBuf, Vm, Client) {
    let fx = fixture(dir);
    let img = disk(dir, "disk", "from the disk");
    let vm = start(&fx, dir, "t", &img, "02:00:00:00:00:01", Ram::Anonymous);
    let c = connect(&vm, Duration::from_secs(90)).await;
    (img, vm, c)
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs QEMU and the guest kernel: run scripts/test.sh"
)]
async fn a_template_defers_only_the_balloon_and_resumes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (img, vm, c) = template_vm(dir.path()).await;

    // Too little entropy is refused, and leaves the VM resumable.
    let disks = vec![size(&img)];
    assert_eq!(
        c.resume(resume(random_bytes(31), disks.clone()))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::InvalidArgument)
    );

    let t = Instant::now();
    c.resume(resume(random_bytes(64), disks.clone()))
        .await
        .unwrap();
    eprintln!("resume took {:?}", t.elapsed());
    // One Resume per VM; the refusal leaves the VM usable.
    let again = c.resume(resume(random_bytes(64), disks)).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::InvalidArgument), "{again}");
    c.ping().await.unwrap();

    c.mount(mount_vda()).await.unwrap();
    c.setup_interface(eth0("02:00:00:00:00:02")).await.unwrap();
    let out = sh(
        &c,
        "cat /hello; echo; date +%s; cat /sys/class/net/eth0/address; ls /sys/bus/virtio/drivers",
    )
    .await;
    assert_eq!(out[0], "from the disk", "{out:?}");
    let guest_time: u64 = out[1].parse().unwrap();
    assert!(
        (RESUME_TIME_S..RESUME_TIME_S + 300).contains(&guest_time),
        "guest clock {guest_time}"
    );
    assert_eq!(out[2], "02:00:00:00:00:02", "{out:?}");
    // The balloon's driver was not asked for, and its unbound device did not hold Resume up.
    let drivers = &out[3..];
    assert!(drivers.iter().any(|d| d == "virtio_blk"), "{drivers:?}");
    assert!(
        !drivers.iter().any(|d| d == "virtio_balloon"),
        "{drivers:?}"
    );
    let log = vm.guest.log();
    assert!(log.contains("template boot"), "{log}");
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs QEMU and the guest kernel: run scripts/test.sh"
)]
async fn a_resume_that_asks_for_the_balloon_loads_its_driver_after_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (img, vm, c) = template_vm(dir.path()).await;
    let mut r = resume(random_bytes(64), vec![size(&img)]);
    r.balloon = true;
    c.resume(r).await.unwrap();
    // The driver loads once the answer is out: it binds its device shortly after.
    c.mount(mount_vda()).await.unwrap();
    let out = sh(
        &c,
        "i=0; while [ ! -e /sys/bus/virtio/drivers/virtio_balloon ] && [ $i -lt 100 ]; do \
         sleep 0.1; i=$((i+1)); done; ls /sys/bus/virtio/drivers/virtio_balloon | grep -c virtio",
    )
    .await;
    assert_eq!(out, vec!["1".to_string()], "{}", vm.guest.log());
}

/// A QMP connection (QEMU's JSON monitor): one command at a time, events skipped.
struct Qmp {
    rd: BufReader<StdUnixStream>,
    wr: StdUnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(30);
        let s = loop {
            match StdUnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "QMP {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let mut q = Qmp {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
        };
        let mut greeting = String::new();
        q.rd.read_line(&mut greeting).unwrap();
        q.cmd("qmp_capabilities", serde_json::json!({}));
        q
    }

    fn cmd(&mut self, execute: &str, arguments: serde_json::Value) -> serde_json::Value {
        let req = serde_json::json!({"execute": execute, "arguments": arguments});
        writeln!(self.wr, "{req}").unwrap_or_else(|e| panic!("QMP {execute}: {e}"));
        loop {
            let mut line = String::new();
            let n = self.rd.read_line(&mut line);
            assert!(
                n.as_ref().is_ok_and(|n| *n > 0),
                "QMP {execute}: closed ({n:?})"
            );
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(r) = v.get("return") {
                return r.clone();
            }
            assert!(v.get("error").is_none(), "QMP {execute}: {v}");
        }
    }

    fn ignore_shared(&mut self) {
        self.cmd(
            "migrate-set-capabilities",
            serde_json::json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
        );
    }

    fn wait_migration(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.cmd("query-migrate", serde_json::json!({}));
            match r.get("status").and_then(|s| s.as_str()) {
                Some("completed") => return,
                Some("failed") | Some("cancelled") => panic!("migration: {r}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "migration: {r}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs QEMU and the guest kernel: run scripts/test.sh"
)]
async fn clones_of_a_saved_template_see_their_own_disks_macs_and_boot_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = fixture(d);
    let ram = d.join("ram");
    let state = d.join("state");
    std::fs::File::create(&ram)
        .unwrap()
        .set_len(u64::from(MEMORY_MIB) << 20)
        .unwrap();

    // The template: booted with a placeholder disk (1 MiB of zeros, as the runtime's), saved
    // once its agent port is open (no host has connected: a clone's first session starts from
    // scratch).
    let placeholder = d.join("placeholder.img");
    std::fs::File::create(&placeholder)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut t = start(
        &fx,
        d,
        "t",
        &placeholder,
        "02:00:00:00:00:01",
        Ram::Template(&ram),
    );
    t.guest.wait_for("agent port open", Duration::from_secs(90));
    let mut q = Qmp::connect(&t.qmp);
    q.cmd("stop", serde_json::json!({}));
    q.ignore_shared();
    q.cmd(
        "migrate",
        serde_json::json!({"uri": format!("exec:cat > {}", state.display())}),
    );
    q.wait_migration();
    // QEMU may close the monitor before it answers `quit`.
    let _ = writeln!(q.wr, r#"{{"execute": "quit"}}"#);
    t.guest.wait_exit(Duration::from_secs(30));

    let mut seen = Vec::new();
    for (n, mac) in [(1, "02:00:00:00:00:11"), (2, "02:00:00:00:00:22")] {
        let hello = format!("clone {n}");
        let img = disk(d, &format!("c{n}"), &hello);
        let started = Instant::now();
        let vm = start(
            &fx,
            d,
            &format!("c{n}"),
            &img,
            "02:00:00:00:00:01",
            Ram::Clone(&ram),
        );
        let mut q = Qmp::connect(&vm.qmp);
        q.ignore_shared();
        q.cmd(
            "migrate-incoming",
            serde_json::json!({"uri": format!("exec:cat {}", state.display())}),
        );
        q.wait_migration();
        q.cmd("cont", serde_json::json!({}));
        // The guest still holds the placeholder's capacity: QEMU announces this disk's.
        q.cmd(
            "block_resize",
            serde_json::json!({"device": "d0", "size": size(&img)}),
        );
        let c = connect(&vm, Duration::from_secs(30)).await;
        c.resume(resume(random_bytes(64), vec![size(&img)]))
            .await
            .unwrap();
        eprintln!(
            "clone {n}: resumed {:?} after QEMU start",
            started.elapsed()
        );
        c.mount(mount_vda()).await.unwrap();
        c.setup_interface(eth0(mac)).await.unwrap();
        let out = sh(
            &c,
            "cat /hello; echo; cat /sys/class/net/eth0/address /proc/sys/kernel/random/boot_id; \
             cat /sys/block/vda/size",
        )
        .await;
        assert_eq!(out[..2], [hello, mac.to_string()], "{out:?}");
        assert_eq!(out[3], (size(&img) / 512).to_string(), "{out:?}");
        seen.push(out[2].clone());
    }
    assert_ne!(seen[0], seen[1], "clones share a boot_id");
}
