//! A full disk under the state directory: pulls, loads, imports, commits, builds, rootfs
//! builds, container records, volumes, a container's own writes and its log meet ENOSPC on a
//! small loop-mounted ext4 holding `--root` (issue 16, "Faults").
//!
//! What must hold each time: one clear `Error:` line naming what failed and saying there is no
//! space, exit 125; nothing half-written visible afterwards (no image, no temp file in the
//! store's ingest area, no rootfs under its final name that e2fsck rejects, no half-created
//! container); and once the filler file is deleted, the same command succeeds.
//!
//! Needs root (mount, loop devices), e2fsprogs (mkfs.ext4 makes the small filesystem, e2fsck
//! is the oracle for rootfs files), docker-registry and skopeo, and what the VM tests need.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::vm::{wait_output, wait_output_within, Env};
use common::{images, tool, Registry};

/// The test image's big layer: incompressible, so it takes this much space in the content
/// store and again in the rootfs file.
const BIG_MIB: usize = 40;

/// The small filesystem's size: the image fits twice (store and rootfs) with room to spare.
const FS_MIB: u64 = 160;

/// The reference of the test image in the layout pushed to each test's registry.
const TAG: &str = "localhost/diskfull:1";

/// A small ext4 loop-mounted on a temp dir; killed what runs from it, unmounted and detached on
/// drop, pass or fail.
struct SmallFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl SmallFs {
    fn new(mib: u64) -> SmallFs {
        let dir = tempfile::Builder::new()
            .prefix("disk-full")
            .tempdir()
            .expect("temp dir");
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .expect("sparse image");
        // No reserved blocks: root would ignore them anyway, and the free space is then what
        // `df` says.
        tool("mkfs.ext4", &["-q", "-F", "-m", "0", img.to_str().unwrap()]);
        tool(
            "mount",
            &["-o", "loop", img.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        SmallFs { dir, mnt }
    }

    fn root(&self) -> PathBuf {
        self.mnt.join("root")
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }

    /// Bytes still free.
    fn free(&self) -> u64 {
        let out = tool("stat", &["-f", "-c", "%a %S", self.mnt.to_str().unwrap()]);
        let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }

    /// Takes space away with a filler file until about `mib` MiB are left.
    fn leave(&self, mib: u64) {
        self.give_back();
        let want = mib << 20;
        let free = self.free();
        assert!(free > want, "only {free} bytes free, wanted {want} left");
        tool(
            "fallocate",
            &[
                "-l",
                &(free - want).to_string(),
                self.filler().to_str().unwrap(),
            ],
        );
    }

    /// The filesystem's block size (mkfs picks 1 KiB for one this small).
    fn block_size(&self) -> usize {
        tool("stat", &["-f", "-c", "%S", self.mnt.to_str().unwrap()])
            .trim()
            .parse()
            .unwrap()
    }

    /// Takes every last block away (fallocate alone cannot: it needs room for its own
    /// extent tree). Writes one block at a time: a bigger write fails as soon as fewer blocks
    /// than it needs are left, and leaves those for the command under test.
    fn fill_up(&self) {
        use std::io::Write;
        self.leave(1);
        let block = vec![0u8; self.block_size()];
        let mut f = std::fs::File::create(self.mnt.join("filler-tail")).unwrap();
        while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
        assert_eq!(self.free(), 0, "the filesystem is not full");
    }

    /// Deletes the fillers: space returns.
    fn give_back(&self) {
        let _ = std::fs::remove_file(self.filler());
        let _ = std::fs::remove_file(self.mnt.join("filler-tail"));
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Whatever still runs from the filesystem (a monitor, QEMU) would keep it busy.
        let mnt = self.mnt.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).contains(&mnt) {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        // `mount -o loop` sets autoclear; this detaches a device left over anyway.
        let img = self.dir.path().join("fs.img");
        if let Ok(o) = Command::new("losetup").arg("-j").arg(&img).output() {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some(dev) = line.split(':').next() {
                    let _ = Command::new("losetup").args(["-d", dev]).status();
                }
            }
        }
    }
}

/// The test image as an OCI layout: the busybox test layers plus `/big.bin`, [`BIG_MIB`] MiB
/// of pseudo-random bytes, all stored uncompressed (gzip would gain nothing on the big one).
fn image_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("disk-full-image");
        let _ = std::fs::remove_dir_all(&dir);
        // xorshift64: incompressible enough for gzip and for any block-level dedup.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut big = Vec::with_capacity(BIG_MIB << 20);
        while big.len() < BIG_MIB << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            big.extend_from_slice(&x.to_le_bytes());
        }
        let layers = images::busybox_with(&["dd", "sync", "df"], |l| {
            l.file("big.bin", &big, 0o644, 0, 0)
        });
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(images::Layer::diff_id).collect::<Vec<_>>()},
        });
        let w = images::LayoutWriter::new(&dir);
        let layer_descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| w.blob("application/vnd.oci.image.layer.v1.tar", &l.tar))
            .collect();
        let config = w.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layer_descs,
        });
        let manifest = w.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        w.finish(TAG, manifest)
    })
}

/// The test image as an archive for `image load`.
fn image_archive() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("disk-full-image.tar");
        tool(
            "tar",
            &[
                "-C",
                image_layout().to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                ".",
            ],
        );
        tar
    })
}

/// A registry holding the test image; returns it and the image's reference there.
fn registry() -> (Registry, String) {
    let reg = Registry::start();
    let reference = reg.reference("diskfull:1");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{TAG}", image_layout().display()),
            &format!("docker://{reference}"),
        ],
    );
    (reg, reference)
}

/// The registry is on the host's loopback; containers run in the test's namespace.
fn pull(env: &Env, reference: &str) -> common::Run {
    wait_output(env.cli.host_command(&["image", "pull", "-q", reference]))
}

/// One `Error:` line, exit 125, saying there is no space and naming `what`.
#[track_caller]
fn no_space(r: common::Run, what: &str) -> String {
    let r = r.fails_with("no space left on device");
    assert!(r.stderr.contains(what), "error does not name {what}: {r:?}");
    r.stderr.trim().to_string()
}

/// Files (not directories) directly in `dir`, by name.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// No temp file in the content store's ingest area or its blobs directory, and every blob
/// hashes to its name.
#[track_caller]
fn store_is_clean(env: &Env) {
    assert_eq!(env.cli.temp_files(), 0, "temp files left in content-ingest");
    for blob in env.cli.blobs() {
        let data = std::fs::read(env.cli.layout().join("blobs/sha256").join(&blob)).unwrap();
        assert_eq!(
            common::sha256(&data),
            format!("sha256:{blob}"),
            "blob {blob} is half-written"
        );
    }
}

/// Every rootfs under a final name (`*.ext4`) is a consistent filesystem, and no temp file of
/// a build is left; returns the final names.
#[track_caller]
fn rootfs_cache_is_clean(env: &Env) -> Vec<String> {
    let dir = env.cli.root().join("rootfs");
    let mut finals = Vec::new();
    for name in files(&dir) {
        if name.ends_with(".lock") {
            continue;
        }
        assert!(
            name.ends_with(".ext4") && !name.starts_with('.'),
            "build temp file left in the rootfs cache: {name}"
        );
        common::run(Command::new("e2fsck").arg("-fn").arg(dir.join(&name)));
        finals.push(name);
    }
    finals
}

#[track_caller]
fn no_containers(env: &Env) {
    let ls = env.run(&["ls", "-a", "-q"]).success();
    assert!(ls.stdout.trim().is_empty(), "containers: {}", ls.stdout);
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn pull_into_a_full_disk_fails_cleanly_then_succeeds() {
    let fs = SmallFs::new(FS_MIB);
    let env = Env::at("dfpull", &fs.root(), false);
    let (_reg, reference) = registry();

    fs.leave(BIG_MIB as u64 / 2);
    let line = no_space(pull(&env, &reference), &reference);
    eprintln!("pull on a full disk: {line}");
    assert!(env.run(&["image", "ls", "-q"]).success().stdout.is_empty());
    store_is_clean(&env);

    // The same from an archive.
    let archive = image_archive().to_str().unwrap();
    // Not "cannot read" the archive: the archive is fine, the store is full.
    let line = no_space(env.run(&["image", "load", "-i", archive]), archive);
    assert!(line.contains("content store"), "{line}");
    eprintln!("load on a full disk: {line}");
    assert!(env.run(&["image", "ls", "-q"]).success().stdout.is_empty());
    store_is_clean(&env);

    fs.give_back();
    pull(&env, &reference).success();
    let ls = env.run(&["image", "ls", "-q"]).success();
    assert_eq!(ls.stdout.trim(), reference);
    store_is_clean(&env);
    env.run(&["image", "load", "-i", archive]).success();
    let ls = env.run(&["image", "ls", "-q"]).success();
    assert!(ls.stdout.contains(TAG), "{ls:?}");
    store_is_clean(&env);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn rootfs_build_on_a_full_disk_fails_cleanly_then_succeeds() {
    let fs = SmallFs::new(FS_MIB);
    let env = Env::at("dfroot", &fs.root(), false);
    let (_reg, reference) = registry();
    pull(&env, &reference).success();

    // The image is in the store; its rootfs (the big file again) does not fit.
    fs.leave(BIG_MIB as u64 / 2);
    let line = no_space(
        env.run(&["create", "--name", "c1", &reference, "true"]),
        "rootfs",
    );
    eprintln!("create on a full disk: {line}");
    assert!(rootfs_cache_is_clean(&env).is_empty());
    no_containers(&env);
    store_is_clean(&env);
    assert_eq!(
        env.run(&["image", "ls", "-q"]).success().stdout.trim(),
        reference
    );

    // Space returns: the same command works, and so does the container.
    fs.give_back();
    env.run(&["create", "--name", "c1", &reference, "cat", "/etc/passwd"])
        .success();
    assert_eq!(rootfs_cache_is_clean(&env).len(), 1);
    let r = env.run(&["start", "-a", "c1"]).success();
    assert!(r.stdout.contains("root:"), "{r:?}");

    // Not even a container's record fits: no half-created container either.
    fs.fill_up();
    let line = no_space(
        env.run(&["create", "--name", "c2", &reference, "true"]),
        // Its directory, or its state.json when the directory's block was still there.
        "/containers/",
    );
    eprintln!("create with no space at all: {line}");
    let ls = env.run(&["ls", "-a", "--format", "{{.Names}}"]).success();
    assert_eq!(ls.stdout.trim(), "c1");
    assert_eq!(env.container_dirs().len(), 1, "{:?}", env.container_dirs());
    fs.give_back();
    env.run(&["create", "--name", "c2", &reference, "true"])
        .success();
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn container_writing_into_a_full_disk_gets_an_error_and_keeps_running() {
    let fs = SmallFs::new(FS_MIB);
    let env = Env::at("dfwrite", &fs.root(), false);
    let (_reg, reference) = registry();
    pull(&env, &reference).success();
    env.run(&["run", "-d", "--name", "w", &reference, "sleep", "1000"])
        .success();

    // The overlay can grow by a little more than half the big file.
    fs.leave(BIG_MIB as u64 * 3 / 4);
    // QEMU's default for a full host disk is to pause the VM (werror=enospc), which would
    // hang this exec: fail fast instead of waiting for the suite's timeout.
    let write = "dd if=/big.bin of=/copy bs=1M conv=fsync; echo dd=$?";
    let r = wait_output_within(
        env.cli.command(&["exec", "w", "sh", "-c", write]),
        Duration::from_secs(90),
    );
    eprintln!("write into a full disk: {r:?}");
    assert!(
        r.stdout.contains("dd=1"),
        "the write did not fail in the container: {r:?}"
    );
    assert!(
        r.stderr.to_lowercase().contains("input/output error")
            || r.stderr.to_lowercase().contains("no space"),
        "{r:?}"
    );

    // The container lives on, answers, and reads its files.
    assert_eq!(env.inspect("w")["State"]["Status"], "running");
    let r = env
        .run(&["exec", "w", "sh", "-c", "echo alive; head -c 4 /etc/passwd"])
        .success();
    assert_eq!(r.stdout, "alive\nroot");

    // Listing and removing it work on the still-full disk (that is how a user frees space);
    // after space returns a new container runs.
    let ls = env.run(&["ls", "-a"]).success();
    assert!(ls.stdout.contains(" w"), "{ls:?}");
    let id = env.inspect("w")["Id"].as_str().unwrap().to_string();
    let r = env.run(&["rm", "-f", "w"]).success();
    eprintln!("rm -f on a full disk: {r:?}");
    no_containers(&env);
    fs.give_back();
    // Its address lease could not be written back on the full disk: cleanup frees it now.
    let r = env.run(&["system", "cleanup"]).success();
    assert!(
        r.stdout.contains(&format!(
            "released network addresses of deleted {}",
            &id[..12]
        )),
        "{r:?}"
    );
    let r = env
        .run(&[
            "run",
            "--rm",
            &reference,
            "sh",
            "-c",
            "echo ok > /x; cat /x",
        ])
        .success();
    assert_eq!(r.stdout, "ok\n");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn volume_create_on_a_full_disk_fails_cleanly_then_succeeds() {
    let fs = SmallFs::new(FS_MIB);
    let env = Env::at("dfvol", &fs.root(), false);
    // A state directory in use: its stores exist.
    env.run(&["volume", "ls"]).success();
    fs.fill_up();
    // A volume does not fit: one clear line, and no half-made volume.
    let line = no_space(env.run(&["volume", "create", "-s", "64M", "v1"]), "v1");
    eprintln!("volume create on a full disk: {line}");
    assert!(env.run(&["volume", "ls", "-q"]).success().stdout.is_empty());
    let vols: Vec<String> = files(&env.cli.root().join("volumes"))
        .into_iter()
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(vols.is_empty(), "{vols:?}");
    let dirs: Vec<_> = std::fs::read_dir(env.cli.root().join("volumes"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");
    fs.give_back();
    env.run(&["volume", "create", "-s", "64M", "v1"]).success();
    assert_eq!(
        env.run(&["volume", "ls", "-q"]).success().stdout.trim(),
        "v1"
    );
}

/// A full disk while a container prints: its output is dropped, not logged in pieces, and
/// the log grows again once space returns. (It once stopped for good: the monitor's warning
/// that output was not logged went to its own log on the same full disk, tracing's report
/// of that failure panicked, and the panic took the output pump with it.)
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_containers_log_grows_again_once_space_returns() {
    let fs = SmallFs::new(FS_MIB);
    let env = Env::at("dflog", &fs.root(), false);
    let (_reg, reference) = registry();
    pull(&env, &reference).success();
    let script = "i=0; while true; do i=$((i+1)); echo line$i; usleep 20000; done";
    env.run(&[
        "run", "-d", "--name", "talk", &reference, "sh", "-c", script,
    ])
    .success();
    let lines = || {
        let r = env.run(&["logs", "talk"]).success();
        r.stdout.lines().count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lines() < 20 {
        assert!(std::time::Instant::now() < deadline, "no output logged");
        std::thread::sleep(Duration::from_millis(200));
    }
    fs.fill_up();
    std::thread::sleep(Duration::from_secs(3));
    fs.give_back();
    let before = lines();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = lines();
        if now >= before + 20 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let id = env.inspect("talk")["Id"].as_str().unwrap().to_string();
            let monitor_log = std::fs::read_to_string(
                env.cli
                    .root()
                    .join("containers")
                    .join(id)
                    .join("monitor.log"),
            );
            panic!(
                "the log stopped growing after space returned: {before} lines, then {now}; \
                 monitor.log: {monitor_log:?}"
            );
        }
    }
    // Whole records only (a line cut short by the full disk was taken back), and the monitor
    // said when logging resumed.
    let logged = env.run(&["logs", "talk"]).success().stdout;
    let bad: Vec<&str> = logged
        .lines()
        .filter(|l| {
            l.strip_prefix("line")
                .and_then(|n| n.parse::<u64>().ok())
                .is_none()
        })
        .collect();
    assert!(bad.is_empty(), "damaged log lines: {bad:?}");
    let id = env.inspect("talk")["Id"].as_str().unwrap().to_string();
    let monitor_log = std::fs::read_to_string(
        env.cli
            .root()
            .join("containers")
            .join(id)
            .join("monitor.log"),
    )
    .unwrap();
    assert!(
        monitor_log.contains("container log written again"),
        "{monitor_log}"
    );
    // The container ran on through it all.
    assert_eq!(env.inspect("talk")["State"]["Status"], "running");
    env.run(&["rm", "-f", "talk"]).success();
}

/// Every file under the state directory, but the content store's blobs (checked by
/// [`store_is_clean`]), the kernel's files, the logs that any command may append to, and
/// lock files (empty; they name what may be built, not what was).
fn state_files(env: &Env) -> Vec<String> {
    testkit::paths_under(env.cli.root(), |rel| {
        rel.starts_with("content/blobs")
            || rel.starts_with("kernels")
            || rel.ends_with(".log")
            || rel.ends_with(".lock")
            || rel == "events.jsonl"
    })
    .into_iter()
    .filter(|p| !p.ends_with('/'))
    .collect()
}

/// The state directory holds the files it held `before`: nothing new, nothing gone.
#[track_caller]
fn same_files(env: &Env, before: &[String]) {
    let now = state_files(env);
    let added: Vec<_> = now.iter().filter(|f| !before.contains(f)).collect();
    let gone: Vec<_> = before.iter().filter(|f| !now.contains(f)).collect();
    assert!(
        added.is_empty() && gone.is_empty(),
        "left: {added:?}, gone: {gone:?}"
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn import_commit_and_build_on_a_full_disk_fail_cleanly_then_succeed() {
    // Room for commit's scratch copies (the image unpacked, the container exported and
    // unpacked: three times the image) once space returns.
    let fs = SmallFs::new(FS_MIB * 3);
    let env = Env::at("dfmake", &fs.root(), false);
    let (_reg, reference) = registry();
    pull(&env, &reference).success();
    let images = |env: &Env| {
        let mut v: Vec<String> = env
            .run(&["image", "ls", "-q"])
            .success()
            .stdout
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let images_before = images(&env);

    // `image import` of a filesystem tarball bigger than the space left.
    let tarball = fs.dir.path().join("rootfs.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        let data: Vec<u8> = (0..(12u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "data.bin", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let before = state_files(&env);
    fs.leave(4);
    let line = no_space(
        env.run(&["image", "import", tarball.to_str().unwrap(), "imported:1"]),
        tarball.to_str().unwrap(),
    );
    eprintln!("import on a full disk: {line}");
    assert_eq!(images(&env), images_before);
    store_is_clean(&env);
    same_files(&env, &before);
    fs.give_back();
    env.run(&["image", "import", tarball.to_str().unwrap(), "imported:1"])
        .success();

    // `commit` of a container that wrote more than is left.
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "writer",
        &reference,
        "sh",
        "-c",
        "dd if=/big.bin of=/copy bs=1M count=12 conv=fsync && echo > /done; sleep 1000",
    ])
    .success();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while env.run(&["exec", "writer", "cat", "/done"]).code != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never wrote"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let images_before = images(&env);
    let before = state_files(&env);
    fs.leave(4);
    let line = no_space(env.run(&["commit", "writer", "committed:1"]), "writer");
    eprintln!("commit on a full disk: {line}");
    assert_eq!(images(&env), images_before);
    store_is_clean(&env);
    same_files(&env, &before);
    assert_eq!(env.inspect("writer")["State"]["Status"], "running");
    fs.give_back();
    env.run(&["commit", "writer", "committed:1"]).success();
    env.run(&["rm", "-f", "writer"]).success();

    // A `build` whose RUN step writes more than is left.
    let ctx = fs.dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {reference}\nRUN dd if=/big.bin of=/copy bs=1M count=12\n"),
    )
    .unwrap();
    // The stage's base is made first (the base not fitting is `rootfs_build_on_a_full_disk…`):
    // the RUN step is what meets the full disk.
    let warm = fs.dir.path().join("warm");
    std::fs::create_dir(&warm).unwrap();
    std::fs::write(
        warm.join("Dockerfile"),
        format!("FROM {reference}\nRUN true\n"),
    )
    .unwrap();
    env.run(&["build", "--network", "none", warm.to_str().unwrap()])
        .success();
    let images_before = images(&env);
    let before = state_files(&env);
    fs.leave(4);
    let r = env.run(&[
        "build",
        "--network",
        "none",
        "-t",
        "built:1",
        ctx.to_str().unwrap(),
    ]);
    eprintln!("build on a full disk: {r:?}");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(images(&env), images_before);
    store_is_clean(&env);
    rootfs_cache_is_clean(&env);
    no_containers(&env);
    same_files(&env, &before);
    fs.give_back();
    env.run(&[
        "build",
        "--network",
        "none",
        "-t",
        "built:1",
        ctx.to_str().unwrap(),
    ])
    .success();
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "built:1",
            "stat",
            "-c",
            "%s",
            "/copy",
        ])
        .success();
    assert_eq!(r.stdout.trim(), (12u32 << 20).to_string());
}
