//! The builder's RUN steps in a real VM (docs/build.md, "RUN in our VMs"): the static vminitd
//! as PID 1 of a QEMU microvm (TCG) with the Debian cloud kernel and its overlay module, an
//! ext4 base on virtio-blk mounted read-only, overlay upper directories on a tmpfs. A step
//! runs in a container on the overlay and creates, modifies and deletes base files and
//! replaces a base directory; `LayerOut` packs its upper directory, and the tar must say
//! exactly that (whiteout, opaque marker, modes, owners, xattrs, hard link, symlink, devices).
//! `LayerIn` unpacks the tar into a new directory, which packs back to the same bytes and,
//! stacked on the base, shows the same tree as the step's own upper directory does.
//!
//! Needs what `tests/vm.rs` needs (kernel .deb, static vminitd, qemu-system-x86, cpio,
//! e2fsprogs, busybox-static), and root (owners, xattrs and devices of the base image).

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::{Client, ErrorCode, ExitStatus, LayerIn, LayerOut, Mount};
use common::*;
use testkit::guest::{self, Guest, Microvm};

/// In load order: block, the agent's port, overlayfs.
const MODULES: [&str; 6] = [
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "overlay",
];

/// Applets the steps use, beyond the common rootfs's.
const APPLETS: &[&str] = &[
    "rm", "mkdir", "ln", "chmod", "chown", "mkfifo", "mknod", "find", "sort", "md5sum", "cut",
    "stat", "readlink", "dd", "test", "[", "mv",
];

/// A file capability: VFS_CAP_REVISION_2 with cap_net_raw permitted and effective.
const CAP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The step: every kind of change a RUN makes to a base image (`mv` of a base directory
/// included, which overlayfs would record as a redirect unless mounted `redirect_dir=off`).
const STEP: &str = "set -e
echo new > /new.txt
echo changed >> /data/modify.txt
rm /data/delete.txt
rm -rf /olddir
mkdir /olddir
echo fresh > /olddir/fresh
mkdir -p /newdir/sticky
chmod 1777 /newdir/sticky
echo s > /newdir/setuid
chmod 4755 /newdir/setuid
echo o > /newdir/owned
chown 1000:1001 /newdir/owned
ln /new.txt /newdir/hard
ln -s ../new.txt /newdir/link
mkfifo -m 0640 /newdir/fifo
mknod -m 0620 /newdir/null c 1 3
chmod 0750 /data/cap
mv /movable /moved
";

/// Lists the tree a container sees (not its /proc, /sys, /dev, nor the /etc files vminitd
/// binds per container): name, raw mode, owner, size, links, mtime, device, content digest,
/// link target.
const LISTING: &str =
    "cd / && find . -xdev -mindepth 1 ! -path ./proc ! -path ./sys ! -path ./dev \
! -path ./etc/hosts ! -path ./etc/hostname ! -path ./etc/resolv.conf | sort | while read -r f; do
  if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then s=$(md5sum < \"$f\" | cut -d' ' -f1); else s=-; fi
  if [ -L \"$f\" ]; then t=$(readlink \"$f\"); else t=-; fi
  echo \"$(stat -c '%n %f %u:%g %s %h %Y %t:%T' \"$f\") $s $t\"
done";

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer valid for its length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
}

/// The base image's tree: busybox, the /etc files vminitd binds (so that a container creates
/// nothing in the upper directory), and what the step changes.
fn base_tree(root: &Path) {
    busybox_rootfs(root);
    for a in APPLETS {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    for (f, content) in [
        ("keep.txt", "keep\n"),
        ("modify.txt", "original\n"),
        ("delete.txt", "doomed\n"),
        ("cap", "#!/bin/sh\n"),
    ] {
        std::fs::write(data.join(f), content).unwrap();
    }
    set_xattr(&data.join("cap"), "security.capability", &CAP);
    set_xattr(&data.join("cap"), "trusted.note", b"kept");
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::create_dir_all(root.join("olddir/sub")).unwrap();
    std::fs::write(root.join("olddir/a"), "a").unwrap();
    std::fs::write(root.join("olddir/sub/b"), "b").unwrap();
    std::fs::create_dir(root.join("movable")).unwrap();
    std::fs::write(root.join("movable/m"), "moved").unwrap();
    std::fs::create_dir(root.join("multi")).unwrap();
    std::fs::write(root.join("multi/x"), "linked").unwrap();
    std::fs::hard_link(root.join("multi/x"), root.join("multi/y")).unwrap();
}

struct Vm {
    guest: Guest,
    socket: PathBuf,
}

fn boot(dir: &Path) -> Vm {
    let kernel = guest::unpack_kernel(&dir.join("kernel"));
    let cpio = guest::vminitd_initfs(&kernel, &MODULES, dir);

    let tree = dir.join("base");
    base_tree(&tree);
    let img = dir.join("base.img");
    testkit::mkfs_ext4(&tree, &img, "64M");

    let socket = dir.join("agent.sock");
    let append = guest::cmdline("rdinit=/sbin/vminitd");
    let guest = Microvm::new(&kernel.vmlinuz, &cpio, &append, 512, &dir.join("boot.log"))
        .args(["-no-reboot", "-drive"])
        .args([format!("id=d0,file={},format=raw,if=none", img.display())])
        .args(["-device", "virtio-blk-device,drive=d0"])
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
    Vm { guest, socket }
}

async fn connect_vm(vm: &Vm, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = tokio::net::UnixStream::connect(&vm.socket).await {
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

async fn mount(c: &Client, source: &str, target: &str, fstype: &str, options: &[&str]) {
    c.mount(Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    })
    .await
    .unwrap_or_else(|e| panic!("mount {fstype} on {target}: {e}"));
}

/// An overlay of `lower` (topmost first) with `upper`, as the builder mounts a step's root.
async fn overlay(c: &Client, target: &str, lower: &[&str], upper: Option<(&str, &str)>) {
    let mut opts = vec![format!("lowerdir={}", lower.join(":"))];
    if let Some((up, work)) = upper {
        opts.push(format!("upperdir={up}"));
        opts.push(format!("workdir={work}"));
    }
    // What LayerOut needs of the kernel: renamed directories and metadata-only copy-ups
    // cannot be written as layers.
    opts.extend(["redirect_dir=off", "metacopy=off", "index=off"].map(String::from));
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    mount(c, "overlay", target, "overlay", &opts).await;
}

/// Runs `script` as the first (and only) process of a new container on `rootfs`; returns
/// its stdout after checking it succeeded.
async fn step(c: &Client, id: &str, rootfs: &str, script: &str) -> String {
    let h = c
        .create_process(create(
            id,
            Some(Path::new(rootfs)),
            process(&["sh", "-c", script]),
        ))
        .await
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
    let (mut out, mut err) = (c.stdout(h), c.stderr(h));
    c.start(h).await.unwrap();
    let status = c.wait(h).await.unwrap();
    let (o, e) = (out.read_to_end().await, err.read_to_end().await);
    let (o, e) = (String::from_utf8_lossy(&o), String::from_utf8_lossy(&e));
    assert_eq!(status.code, Some(0), "{id} failed: {e}\n{o}");
    // The container goes away with its process: nothing holds the overlay any more.
    c.delete(h).await.unwrap();
    o.into_owned()
}

/// `LayerOut` of `path`: the tar, and how long it took.
async fn layer_out(c: &Client, path: &str) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let st = c
        .layer_out(LayerOut { path: path.into() })
        .await
        .unwrap_or_else(|e| panic!("layer_out {path}: {e}"));
    assert!(st.stat.is_none());
    let (mut out, mut err) = (c.stdout(st.handle), c.stderr(st.handle));
    let tar = out.read_to_end().await;
    let why = err.read_to_end().await;
    let status = c.wait(st.handle).await.unwrap();
    c.delete(st.handle).await.unwrap();
    assert_eq!(
        status.code,
        Some(0),
        "layer_out {path}: {}",
        String::from_utf8_lossy(&why)
    );
    (tar, t.elapsed())
}

/// `LayerIn` of `tar` into the new directory `path`: its exit status and stderr.
async fn layer_in(c: &Client, path: &str, tar: &[u8]) -> (ExitStatus, String) {
    let st = c
        .layer_in(LayerIn { path: path.into() })
        .await
        .unwrap_or_else(|e| panic!("layer_in {path}: {e}"));
    let mut err = c.stderr(st.handle);
    let mut w = c.stdin(st.handle);
    w.write_all(tar).await.unwrap();
    w.close().await.unwrap();
    let status = c.wait(st.handle).await.unwrap();
    let why = String::from_utf8_lossy(&err.read_to_end().await).into_owned();
    c.delete(st.handle).await.unwrap();
    (status, why)
}

/// One tar entry as the test checks it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    name: String,
    kind: tar::EntryType,
    mode: u32,
    owner: (u64, u64),
    size: u64,
    link: String,
    dev: (u32, u32),
    xattrs: Vec<String>,
}

fn entries(tar: &[u8]) -> Vec<Seen> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let xattrs = e
                .pax_extensions()
                .unwrap()
                .map(|p| {
                    p.map(|r| String::from_utf8_lossy(r.unwrap().key_bytes()).into_owned())
                        .filter_map(|k| k.strip_prefix("SCHILY.xattr.").map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let h = e.header();
            Seen {
                name: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                owner: (h.uid().unwrap(), h.gid().unwrap()),
                size: h.size().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default(),
                dev: (
                    h.device_major().unwrap().unwrap_or(0),
                    h.device_minor().unwrap().unwrap_or(0),
                ),
                xattrs,
            }
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs QEMU, the guest kernel and root: run scripts/test.sh"
)]
async fn run_step_changes_become_a_layer_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = boot(dir.path());
    let t0 = Instant::now();
    let c = connect_vm(&vm, Duration::from_secs(90)).await;
    eprintln!("agent answered {:?} after QEMU start", t0.elapsed());

    mount(&c, "/dev/vda", "/build/base", "ext4", &["ro"]).await;
    mount(&c, "tmpfs", "/build/scratch", "tmpfs", &["mode=755"]).await;
    // The step's upper directory is the layer's directory from the start: once captured it
    // is stacked as a lower as it is, with no rename.
    overlay(
        &c,
        "/build/root1",
        &["/build/base"],
        Some(("/build/scratch/layers/1", "/build/scratch/work")),
    )
    .await;
    let params = step(
        &c,
        "params",
        "/build/root1",
        "cd /sys/module/overlay/parameters && for p in *; do echo \"$p=$(cat $p)\"; done",
    )
    .await;
    eprintln!("overlay module defaults: {}", params.replace('\n', " "));

    let t = Instant::now();
    step(&c, "step1", "/build/root1", STEP).await;
    eprintln!("the step ran in {:?}", t.elapsed());
    c.umount("/build/root1", false).await.unwrap();

    let (tar, took) = layer_out(&c, "/build/scratch/layers/1").await;
    eprintln!("LayerOut: {} bytes in {took:?}", tar.len());
    let seen = entries(&tar);
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data/",
            "data/cap",
            "data/.wh.delete.txt",
            "data/modify.txt",
            // With redirect_dir=off the kernel refuses to rename a lower directory (EXDEV)
            // and mv copies it.
            ".wh.movable",
            "moved/",
            "moved/m",
            "new.txt",
            "newdir/",
            "newdir/fifo",
            "newdir/hard",
            "newdir/link",
            "newdir/null",
            "newdir/owned",
            "newdir/setuid",
            "newdir/sticky/",
            "olddir/",
            "olddir/.wh..wh..opq",
            "olddir/fresh",
        ],
        "{seen:#?}"
    );
    let by = |n: &str| seen.iter().find(|e| e.name == n).unwrap();
    use tar::EntryType::*;
    // A copied-up directory keeps the base's owner and mode; overlay's xattrs stay behind.
    assert_eq!(
        (by("data/").kind, by("data/").mode, by("data/").owner),
        (Directory, 0o750, (1000, 1000))
    );
    assert!(by("data/").xattrs.is_empty(), "{:?}", by("data/"));
    // Copied up by a chmod: the file capability and the other xattr came along.
    assert_eq!((by("data/cap").mode, by("data/cap").size), (0o750, 10));
    assert_eq!(
        by("data/cap").xattrs,
        ["security.capability", "trusted.note"]
    );
    let wh = by("data/.wh.delete.txt");
    assert_eq!((wh.kind, wh.size, wh.mode), (Regular, 0, 0o600));
    assert_eq!(
        by("data/modify.txt").size,
        "original\nchanged\n".len() as u64
    );
    assert_eq!((by("new.txt").kind, by("new.txt").size), (Regular, 4));
    assert_eq!(
        (by("newdir/hard").kind, by("newdir/hard").link.as_str()),
        (Link, "new.txt")
    );
    assert_eq!(
        (by("newdir/link").kind, by("newdir/link").link.as_str()),
        (Symlink, "../new.txt")
    );
    assert_eq!(
        (by("newdir/fifo").kind, by("newdir/fifo").mode),
        (Fifo, 0o640)
    );
    let null = by("newdir/null");
    assert_eq!((null.kind, null.mode, null.dev), (Char, 0o620, (1, 3)));
    assert_eq!(by("newdir/owned").owner, (1000, 1001));
    assert_eq!(by("newdir/setuid").mode, 0o4755);
    assert_eq!(
        (by("newdir/sticky/").kind, by("newdir/sticky/").mode),
        (Directory, 0o1777)
    );
    let opq = by("olddir/.wh..wh..opq");
    assert_eq!((opq.kind, opq.size), (Regular, 0));
    assert_eq!(by("olddir/fresh").size, 6);
    // The same directory packs to the same bytes.
    assert_eq!(layer_out(&c, "/build/scratch/layers/1").await.0, tar);

    // Into a new directory; packed again, it is the same layer, byte for byte (xattrs,
    // whiteouts and the opaque marker included).
    let t = Instant::now();
    let (status, why) = layer_in(&c, "/build/scratch/layers/in", &tar).await;
    assert_eq!(status.code, Some(0), "layer_in: {why}");
    assert_eq!(why, "");
    eprintln!("LayerIn: {} bytes in {:?}", tar.len(), t.elapsed());
    assert_eq!(layer_out(&c, "/build/scratch/layers/in").await.0, tar);

    // The step's view (its upper directory over the base) and the unpacked layer's, as the
    // next step gets it (with an upper directory of its own), show the same tree.
    overlay(
        &c,
        "/build/view1",
        &["/build/scratch/layers/1", "/build/base"],
        None,
    )
    .await;
    overlay(
        &c,
        "/build/root2",
        &["/build/scratch/layers/in", "/build/base"],
        Some(("/build/scratch/layers/2", "/build/scratch/work")),
    )
    .await;
    let view1 = step(&c, "view1", "/build/view1", LISTING).await;
    let view2 = step(&c, "view2", "/build/root2", LISTING).await;
    assert_eq!(view1, view2);
    let line = |path: &str| {
        view1
            .lines()
            .find(|l| l.starts_with(&format!("{path} ")))
            .map(String::from)
    };
    assert!(line("./data/delete.txt").is_none(), "{view1}");
    assert!(line("./data/keep.txt").is_some(), "{view1}");
    assert!(line("./olddir/fresh").is_some(), "{view1}");
    assert!(
        line("./olddir/a").is_none() && line("./olddir/sub").is_none(),
        "{view1}"
    );
    // Hard links: the step's own, and the base's (untouched, so never copied up).
    assert!(line("./newdir/hard").unwrap().contains(" 2 "), "{view1}");
    assert!(line("./multi/y").unwrap().contains(" 2 "), "{view1}");
    // The step wrote nothing to the next step's upper directory by listing it.
    let (next, _) = layer_out(&c, "/build/scratch/layers/2").await;
    assert!(entries(&next).is_empty(), "{:#?}", entries(&next));

    // Throughput of a bigger step: 400 files of 64 KiB.
    step(
        &c,
        "big",
        "/build/root2",
        "mkdir /big && i=0; while [ $i -lt 400 ]; do \
         dd if=/dev/zero of=/big/f$i bs=65536 count=1 2>/dev/null; i=$((i+1)); done",
    )
    .await;
    let (big, took) = layer_out(&c, "/build/scratch/layers/2").await;
    assert_eq!(entries(&big).len(), 401);
    eprintln!(
        "LayerOut of 400 x 64 KiB: {} bytes in {took:?} ({:.1} MiB/s)",
        big.len(),
        big.len() as f64 / took.as_secs_f64() / f64::from(1 << 20)
    );
    let t = Instant::now();
    let (status, why) = layer_in(&c, "/build/scratch/layers/big", &big).await;
    assert_eq!(status.code, Some(0), "{why}");
    eprintln!("LayerIn of the same: {:?}", t.elapsed());

    // Refusals: before any byte (typed errors), or by the helper (nothing is created).
    let e = c
        .layer_out(LayerOut {
            path: "/build/scratch/nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    let e = c
        .layer_out(LayerOut {
            path: "build/scratch".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
    let e = c
        .layer_in(LayerIn {
            path: "/build/scratch/layers/in".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyExists), "{e}");
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"../evil\0");
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    let evil = evil.into_inner().unwrap();
    let (status, why) = layer_in(&c, "/build/scratch/layers/evil", &evil).await;
    assert_eq!(status.code, Some(1));
    assert!(why.contains("would escape the layer directory"), "{why}");
    let e = c
        .layer_out(LayerOut {
            path: "/build/scratch/layers/evil".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::NotFound),
        "nothing was created: {e}"
    );

    c.shutdown(false).await.unwrap();
    let status = vm.guest.wait_exit(Duration::from_secs(30));
    eprintln!("qemu exited with {status}");
    let log = vm.guest.log();
    assert!(!log.contains("BUG:"), "{log}");
}
