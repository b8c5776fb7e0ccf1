//! `container cp` end to end: the real binary, a real VM (QEMU, TCG here) running our static
//! vminitd, files and directories both ways, `-` tar streams, a volume and a tmpfs, the
//! errors, and paths that try to leave the container's root.
//!
//! Needs what `run.rs` needs: the kernel .deb of scripts/setup.sh (or
//! CONTAINER_TEST_KERNEL_DEB) and a static vminitd (or CONTAINER_VMINITD).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::images;
use common::{vm, Cli, Run};
use serde_json::json;

const IMAGE: &str = "localhost/cp-test:1";
/// An mtime that no file gets by accident (2001-09-09).
const MTIME: i64 = 1_000_000_000;

/// The shared VM test environment with this file's image, and a host directory to copy with.
struct Env {
    vm: vm::Env,
    host: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let vm = vm::Env::new(false);
        vm.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
            .success();
        Env {
            vm,
            host: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.vm.run(args)
    }

    /// Runs `container ARGS…` with optional stdin bytes; bounded by [`vm::TIMEOUT`].
    fn raw(&self, args: &[&str], input: Option<Vec<u8>>) -> (i32, Vec<u8>, Vec<u8>) {
        self.vm.run_bytes(args, input)
    }

    fn sh(&self, script: &str) -> String {
        self.run(&["exec", "c1", "sh", "-c", script])
            .success()
            .stdout
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.host.path().join(rel)
    }

    fn ps(&self, rel: &str) -> String {
        self.p(rel).to_string_lossy().into_owned()
    }
}

/// The busybox test image, running as root, with `sleep` as its command.
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cp-image");
        let _ = std::fs::remove_dir_all(&dir);
        let config = json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sleep", "600"],
        });
        images::archive(&dir, IMAGE, &images::busybox_layers(), config)
    })
}

fn set_mtime(p: &Path) {
    let t = UNIX_EPOCH + Duration::from_secs(MTIME as u64);
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

fn tar_names(data: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(data);
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn cp_copies_both_ways_with_docker_semantics() {
    let env = Env::new();
    std::fs::create_dir(env.p("shared")).unwrap();
    let bind = format!("{}:/bind", env.ps("shared"));
    env.run(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-v",
        "vol:/vol",
        "-v",
        &bind,
        IMAGE,
    ])
    .success();

    // A host file into the container and back: content, mode, mtime; owner root without -a,
    // kept with -a.
    let f = env.p("f.txt");
    std::fs::write(&f, b"file content\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(4321)).unwrap();
    set_mtime(&f);
    let t = Instant::now();
    env.run(&["cp", &env.ps("f.txt"), "c1:/tmp/"]).success();
    eprintln!("cp of one file into the container: {:?}", t.elapsed());
    assert_eq!(
        env.sh("cat /tmp/f.txt; stat -c '%a %Y %u:%g' /tmp/f.txt"),
        format!("file content\n750 {MTIME} 0:0\n")
    );
    env.run(&["cp", "-a", &env.ps("f.txt"), "c1:/tmp/kept"])
        .success();
    assert_eq!(env.sh("stat -c '%u:%g' /tmp/kept"), "1234:4321\n");
    std::fs::create_dir(env.p("out")).unwrap();
    env.run(&["cp", "c1:/tmp/f.txt", &env.ps("out")]).success();
    let back = env.p("out/f.txt");
    assert_eq!(std::fs::read(&back).unwrap(), b"file content\n");
    let m = std::fs::metadata(&back).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime(), m.uid()), (0o750, MTIME, 0));
    // To a new name, and over an existing file.
    env.run(&["cp", "c1:/tmp/kept", &env.ps("out/renamed")])
        .success();
    env.run(&["cp", "-a", "c1:/tmp/kept", &env.ps("out/f.txt")])
        .success();
    assert_eq!(
        std::fs::read(env.p("out/renamed")).unwrap(),
        b"file content\n"
    );
    assert_eq!(std::fs::metadata(env.p("out/f.txt")).unwrap().uid(), 1234);

    // A tree with a symlink and an empty directory, in and out.
    let src = env.p("tree");
    std::fs::create_dir_all(src.join("sub/empty")).unwrap();
    std::fs::write(src.join("sub/data"), b"data\n").unwrap();
    std::os::unix::fs::symlink("sub/data", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("abs")).unwrap();
    set_mtime(&src.join("sub"));
    env.run(&["cp", &env.ps("tree"), "c1:/tmp/tree"]).success();
    assert_eq!(
        env.sh(
            "cd /tmp/tree && cat link && busybox readlink abs && ls -d sub/empty && \
             stat -c %Y sub && ls -A | busybox sort | busybox xargs"
        ),
        format!("data\n/etc/passwd\nsub/empty\n{MTIME}\nabs link sub\n")
    );
    // Into an existing directory it lands under its own name; `/.` copies the contents.
    env.run(&["cp", "c1:/tmp/tree", &env.ps("out")]).success();
    assert_eq!(std::fs::read(env.p("out/tree/link")).unwrap(), b"data\n");
    assert_eq!(
        std::fs::read_link(env.p("out/tree/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(env.p("out/tree/sub/empty").is_dir());
    assert_eq!(
        std::fs::metadata(env.p("out/tree/sub")).unwrap().mtime(),
        MTIME
    );
    std::fs::create_dir(env.p("flat")).unwrap();
    env.run(&["cp", "c1:/tmp/tree/.", &env.ps("flat")])
        .success();
    assert!(env.p("flat/sub/data").is_file() && env.p("flat/link").is_symlink());
    // A directory cannot replace a file.
    env.run(&["cp", "c1:/tmp/tree", &env.ps("out/renamed")])
        .fails_with("cannot copy a directory to a file");

    // `-`: a tar stream on stdout and from stdin.
    let (code, tar, err) = env.raw(&["cp", "c1:/tmp/tree", "-"], None);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let names = tar_names(&tar);
    assert_eq!(
        names,
        [
            "tree",
            "tree/abs",
            "tree/link",
            "tree/sub",
            "tree/sub/data",
            "tree/sub/empty"
        ]
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(9);
    h.set_mode(0o600);
    h.set_mtime(MTIME as u64);
    b.append_data(&mut h, "streamed/in.txt", &b"streamed\n"[..])
        .unwrap();
    let (code, _, err) = env.raw(&["cp", "-", "c1:/tmp"], Some(b.into_inner().unwrap()));
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(
        env.sh("cat /tmp/streamed/in.txt; stat -c %a /tmp/streamed/in.txt"),
        "streamed\n600\n"
    );
    env.run(&["cp", "-", "c1:/tmp/streamed/in.txt"])
        .fails_with("is not a directory");

    // Into the volume and out of it again.
    env.run(&["cp", &env.ps("f.txt"), "c1:/vol/in-volume"])
        .success();
    assert_eq!(
        env.sh("busybox grep ' /vol ' /proc/mounts | busybox cut -d' ' -f1; cat /vol/in-volume"),
        "/dev/vdb\nfile content\n"
    );
    env.run(&["cp", "c1:/vol/in-volume", &env.ps("out/from-volume")])
        .success();
    assert_eq!(
        std::fs::read(env.p("out/from-volume")).unwrap(),
        b"file content\n"
    );

    // Into a bind mount: it lands in the host directory (through virtiofs), and back.
    env.run(&["cp", &env.ps("tree"), "c1:/bind/"]).success();
    assert_eq!(
        std::fs::read(env.p("shared/tree/sub/data")).unwrap(),
        b"data\n"
    );
    std::fs::write(env.p("shared/from-host"), b"host side\n").unwrap();
    let (code, tar, _) = env.raw(&["cp", "c1:/bind/from-host", "-"], None);
    assert_eq!((code, tar_names(&tar)), (0, vec!["from-host".to_string()]));

    // A large file crosses many flow-controlled frames both ways, byte for byte.
    let big: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(env.p("big"), &big).unwrap();
    let t = Instant::now();
    env.run(&["cp", &env.ps("big"), "c1:/vol/big"]).success();
    let t_in = t.elapsed();
    assert_eq!(
        env.sh("busybox sha256sum /vol/big | busybox cut -d' ' -f1"),
        format!("{}\n", common::sha256(&big).trim_start_matches("sha256:"))
    );
    let t = Instant::now();
    env.run(&["cp", "c1:/vol/big", &env.ps("out/big")])
        .success();
    let t_out = t.elapsed();
    assert!(std::fs::read(env.p("out/big")).unwrap() == big);
    eprintln!("cp of 32 MiB: into the container {t_in:?}, out of it {t_out:?}");

    // Errors: one line, exit 125, nothing left behind on the host.
    env.run(&["cp", "c1:/nope", &env.ps("out")])
        .fails_with("Could not find the file /nope in container c1");
    env.run(&["cp", "c1:/etc/passwd", &env.ps("missing/x")])
        .fails_with(&format!(
            "destination directory {} does not exist",
            env.ps("missing")
        ));
    env.run(&["cp", "c1:/etc/passwd", &env.ps("newdir/")])
        .fails_with("does not exist");
    env.run(&["cp", &env.ps("f.txt"), "ghost:/tmp"])
        .fails_with("ghost");
    env.run(&["cp", &env.ps("nope"), "c1:/tmp"])
        .fails_with("cannot copy");
    env.run(&["cp", &env.ps("f.txt"), "c1:/f"])
        .fails_with("Read-only file system");
    env.run(&["cp", &env.ps("f.txt"), &env.ps("g")])
        .fails_with("CONTAINER:PATH");
    let leftovers: Vec<_> = std::fs::read_dir(env.p("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Paths that try to leave the container's root stay inside it: `..` above `/`, and a
    // symlink to `/`, resolve to the container's own root. The guest's own filesystem holds
    // the container's rootfs mount point; the container does not.
    env.sh("busybox ln -s / /tmp/up");
    let (code, tar, _) = env.raw(&["cp", "c1:/../../etc/passwd", "-"], None);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&tar).contains("user:x:1000:1000:user:/data"));
    let (code, tar, _) = env.raw(&["cp", "c1:/tmp/up/tmp/up/etc/passwd", "-"], None);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&tar).contains("user:x:1000:1000:user:/data"));
    env.run(&[
        "cp",
        "c1:/../run/container/rootfs/etc/passwd",
        &env.ps("out"),
    ])
    .fails_with("Could not find the file");
    env.run(&["cp", "c1:/tmp/up/run/container", &env.ps("out")])
        .fails_with("Could not find the file");
    // A tar stream whose entries climb out is refused and writes nothing.
    let mut evil = tar::Header::new_gnu();
    evil.set_size(2);
    evil.set_mode(0o644);
    evil.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../../escape");
    evil.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&evil, &b"x\n"[..]).unwrap();
    let (code, _, err) = env.raw(&["cp", "-", "c1:/tmp/tree"], Some(b.into_inner().unwrap()));
    assert_eq!(code, 125);
    assert!(
        String::from_utf8_lossy(&err).contains("would escape the destination"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(
        env.sh("ls /tmp/escape /escape /tmp/tree/../escape 2>&1 | busybox grep -c 'No such'"),
        "3\n"
    );
}

/// Docker copies to and from stopped containers too: their VM is booted for the copy (hold
/// mode), their process is not run, and their recorded state does not change.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn cp_works_on_stopped_containers_without_changing_their_state() {
    let env = Env::new();
    std::fs::write(env.p("f"), b"into a created container\n").unwrap();
    env.run(&["create", "--name", "idle", "-v", "keep:/keep", IMAGE])
        .success();
    let t = Instant::now();
    env.run(&["cp", &env.ps("f"), "idle:/keep/f"]).success();
    eprintln!(
        "cp into a stopped container (VM boot included): {:?}",
        t.elapsed()
    );
    env.run(&["cp", &env.ps("f"), "idle:/etc/"]).success();
    let info = env.run(&["inspect", "idle"]).success().json();
    assert_eq!(info[0]["status"], "created", "{info}");
    // Both copies are there when it runs for real: the rootfs and the volume kept them.
    let r = env
        .run(&["run", "--rm", "-v", "keep:/keep", IMAGE, "cat", "/keep/f"])
        .success();
    assert_eq!(r.stdout, "into a created container\n");
    env.run(&["start", "idle"]).success();
    assert_eq!(
        env.run(&["exec", "idle", "cat", "/etc/f"]).success().stdout,
        "into a created container\n"
    );
    env.run(&["stop", "-t", "0", "idle"]).success();
    let before = env.run(&["inspect", "idle"]).success().json()[0].clone();
    assert_eq!(before["status"], "exited", "{before}");
    // Out of an exited container; its exit code and times stay.
    env.run(&["cp", "idle:/etc/f", &env.ps("back")]).success();
    assert_eq!(
        std::fs::read(env.p("back")).unwrap(),
        b"into a created container\n"
    );
    let after = env.run(&["inspect", "idle"]).success().json()[0].clone();
    for k in ["status", "exitCode", "exitReason", "started", "finished"] {
        assert_eq!(before.get(k), after.get(k), "{k}: {before} vs {after}");
    }
    // A container whose command does not even exist can still be copied to and from.
    env.run(&[
        "create",
        "--name",
        "broken",
        "-u",
        "nosuchuser",
        IMAGE,
        "/no/such/cmd",
    ])
    .success();
    env.run(&["cp", &env.ps("f"), "broken:/f"]).success();
    env.run(&["cp", "broken:/f", &env.ps("from-broken")])
        .success();
    assert_eq!(
        std::fs::read(env.p("from-broken")).unwrap(),
        b"into a created container\n"
    );
    // Errors of a held container are the same as a running one's.
    env.run(&["cp", "idle:/nope", &env.ps("x")])
        .fails_with("Could not find the file /nope in container idle");
    assert!(!env.p("x").exists());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn cp_parses_arguments_without_a_vm() {
    let cli = Cli::new();
    let r = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["--root", cli.root().to_str().unwrap(), "cp", "a:/x", "b:/y"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&r.stderr).contains("copying between containers"));
    cli.run(&["cp", "nosuch:/x", "/tmp"]).fails_with("nosuch");
}
