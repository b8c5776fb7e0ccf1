//! Containers end to end: the real `container` binary boots real VMs (QEMU, TCG on these hosts)
//! with the Debian cloud kernel and our static vminitd, from a test image loaded into a fresh
//! `--root` (one test pulls it from a real registry instead).
//!
//! Needs: the kernel .deb of scripts/setup.sh (or CONTAINER_TEST_KERNEL_DEB), a static vminitd
//! (built by setup.sh, or CONTAINER_VMINITD), qemu-system-x86, skopeo and docker-registry.
//! Each test's containers are force-deleted when it ends, pass or fail.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::images::{self, LayerBuilder, LayoutWriter};
use common::netns::Netns;
use common::{Cli, Registry, Run};
use serde_json::json;

/// The image every test runs.
const IMAGE: &str = "localhost/runtime-test:1";

/// A state root with the shared kernel and the test image, whose containers are force-deleted
/// on drop.
struct Env {
    cli: Cli,
    /// Containers join the default network: each test runs in its own namespace.
    _netns: Netns,
}

/// The test image as an OCI layout tarball: the busybox test layers plus a layer with more
/// applets and a non-executable script; config with Env, Cmd, WorkingDir and User.
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-image");
        let _ = std::fs::remove_dir_all(&dir);
        let layout = build_image(&dir.join("layout"));
        let tar = dir.join("image.tar");
        common::tool(
            "tar",
            &[
                "-C",
                layout.to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                ".",
            ],
        );
        tar
    })
}

fn build_image(layout: &Path) -> PathBuf {
    let mut layers = images::busybox_layers();
    let mut extra = LayerBuilder::new();
    for applet in [
        "uname", "grep", "tty", "stty", "hostname", "pwd", "kill", "head", "mount",
    ] {
        extra = extra.symlink(&format!("bin/{applet}"), "busybox");
    }
    let extra = extra
        .file("bin/notexec.sh", b"#!/bin/sh\necho no\n", 0o644, 0, 0)
        .finish();
    layers.push(extra);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TESTVAR=hello", "OVERRIDE=image"],
            "Cmd": ["sh", "-c", "echo default cmd; id -u; pwd; echo $TESTVAR"],
            "WorkingDir": "/data",
            "User": "1000:1000",
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id()).collect::<Vec<_>>()},
    });
    let w = LayoutWriter::new(layout);
    let manifest = w.image(&config, &layers);
    w.finish(IMAGE, manifest)
}

/// Everything `container` runs in tests must end: a hung VM fails the test instead of the suite.
const TIMEOUT: Duration = Duration::from_secs(180);

fn wait_output(mut cmd: Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn container");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("container {cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

impl Env {
    /// A fresh root with the kernel linked in and, if `load`, the test image loaded.
    fn new(load: bool) -> Env {
        let mut cli = Cli::new();
        let netns = Netns::new("run");
        cli.in_netns(&netns.name);
        let shared = common::shared_root();
        std::os::unix::fs::symlink(shared.join("kernels"), cli.root().join("kernels")).unwrap();
        std::os::unix::fs::symlink(shared.join("initfs"), cli.root().join("initfs")).unwrap();
        let env = Env { cli, _netns: netns };
        if load {
            env.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
                .ok();
        }
        env
    }

    fn run(&self, args: &[&str]) -> Run {
        wait_output(self.cli.command(args))
    }

    fn run_stdin(&self, args: &[&str], input: &'static str) -> Run {
        let mut cmd = self.cli.command(args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(input.as_bytes());
        });
        let o = child.wait_with_output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        self.run(&["inspect", name]).ok().json()[0].clone()
    }

    fn container_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.cli.root().join("containers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// QEMU processes whose command line mentions this root.
    fn qemus(&self) -> usize {
        let root = self.cli.root().to_string_lossy().into_owned();
        let mut n = 0;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.starts_with("qemu-system") && cmd.contains(&root) {
                    n += 1;
                }
            }
        }
        n
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.run(&["list", "-a", "-q"]).stdout;
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["delete", "-f"];
            args.extend(ids);
            self.run(&args);
        }
    }
}

#[test]
fn run_prints_from_inside_its_own_vm_and_exits_with_its_code() {
    let env = Env::new(true);
    let r = env.run(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo hello; uname -r; grep ' / ' /proc/mounts; exit 7",
    ]);
    assert_eq!(r.code, 7, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "hello");
    let host = common::tool("uname", &["-r"]);
    assert!(lines[1].ends_with("-cloud-amd64"), "{r:?}");
    assert_ne!(
        lines[1],
        host.trim(),
        "the guest kernel must differ from the host's"
    );
    assert!(lines[2].starts_with("/dev/vda / ext4 rw"), "{r:?}");
    // --rm left nothing behind.
    assert!(env.container_dirs().is_empty());
    assert_eq!(env.qemus(), 0);

    let r = env.run(&["run", "--rm", IMAGE, "nosuchcommand"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("nosuchcommand"), "{r:?}");
    let r = env.run(&["run", "--rm", IMAGE, "/bin/notexec.sh"]);
    assert_eq!(r.code, 126, "{r:?}");
    assert!(env.container_dirs().is_empty());
}

#[test]
fn image_config_and_flags_shape_the_process() {
    let env = Env::new(true);
    // The image's Cmd, User, WorkingDir and Env.
    let r = env.run(&["run", "--rm", IMAGE]).ok();
    assert_eq!(r.stdout, "default cmd\n1000\n/data\nhello\n");

    // Flags override them; --env-file then -e; -e KEY copies from here.
    let envfile = env.cli.root().join("env.list");
    std::fs::write(&envfile, "# comment\nFROMFILE=file\nOVERRIDE=file\n").unwrap();
    let mut cmd = env.cli.command(&[
        "run",
        "--rm",
        "--env-file",
        envfile.to_str().unwrap(),
        "-e",
        "OVERRIDE=flag",
        "-e",
        "FROMHOST",
        "-w",
        "/tmp",
        "-u",
        "0",
        "--entrypoint",
        "/bin/sh",
        IMAGE,
        "-c",
        "echo $TESTVAR $FROMFILE $OVERRIDE $FROMHOST; pwd; id -u; hostname",
    ]);
    cmd.env("FROMHOST", "host-value");
    let r = wait_output(cmd).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "hello file flag host-value");
    assert_eq!(lines[1], "/tmp");
    assert_eq!(lines[2], "0");
    assert_eq!(lines[3].len(), 12, "hostname is the short id: {r:?}");

    // Piped stdin with -i reaches the process and EOF ends it.
    let r = env.run_stdin(&["run", "--rm", "-i", IMAGE, "cat"], "line one\nline two\n");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "line one\nline two\n"),
        "{r:?}"
    );
}

/// Runs `container ARGS…` with a new pty as its controlling terminal (31 rows, 97 columns),
/// types `input` into it, and returns the exit code and everything the terminal showed.
fn run_on_pty(env: &Env, args: &[&str], input: &[u8]) -> (Option<i32>, String) {
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 31,
            ws_col: 97,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let slave = pty.slave;
    let mut cmd = env.cli.command(args);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec: make the pty the controlling
    // terminal of a new session, as a shell would.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    {
        use std::io::Write;
        master.write_all(input).unwrap();
    }
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once every slave fd is closed, i.e. the client exited.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "container {args:?} on a pty did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap())
}

#[test]
fn tty_gives_the_process_a_terminal_of_the_callers_size() {
    let env = Env::new(true);
    let script = "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size; exit 3";
    let (code, out) = run_on_pty(&env, &["run", "--rm", "-t", IMAGE, "sh", "-c", script], b"");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("on-a-tty"), "not a pty: {out:?}");
    assert!(out.contains("31 97"), "window size not passed: {out:?}");
    // A pty turns \n into \r\n: proof the output went through a terminal.
    assert!(out.contains("\r\n"), "{out:?}");

    // -it: what is typed reaches an interactive shell, and its exit code comes back.
    let (code, out) = run_on_pty(
        &env,
        &["run", "--rm", "-i", "-t", IMAGE, "sh"],
        b"echo typed-$((40+2)); exit 4\n",
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("typed-42"), "{out:?}");
}

#[test]
fn detached_container_exec_logs_kill_stop_and_delete() {
    let env = Env::new(true);
    let script = "echo started; trap 'echo got TERM; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    let r = env
        .run(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", script])
        .ok();
    let id = r.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{r:?}");

    let list = env.run(&["list", "--format", "json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["image"], IMAGE);
    assert_eq!(list[0]["status"], "running");

    // A second container may not take the name.
    env.run(&["create", "--name", "web", IMAGE])
        .fails_with("already in use");

    // exec: output, exit code, the container's env and cwd, by id prefix.
    let r = env.run(&[
        "exec",
        &id[..8],
        "sh",
        "-c",
        "echo in exec $TESTVAR; pwd; exit 5",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (5, "in exec hello\n/data\n"),
        "{r:?}"
    );
    let r = env.run(&["exec", "web", "nosuchcommand"]);
    assert_eq!(r.code, 127, "{r:?}");
    let r = env.run_stdin(&["exec", "-i", "web", "cat"], "to exec\n");
    assert_eq!(r.stdout, "to exec\n");
    env.run(&[
        "exec",
        "-d",
        "web",
        "sh",
        "-c",
        "sleep 0.3; echo detached > /tmp/marker",
    ])
    .ok();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        env.run(&["exec", "web", "cat", "/tmp/marker"]).ok().stdout,
        "detached\n"
    );

    // logs, with -n.
    std::thread::sleep(Duration::from_millis(800));
    let r = env.run(&["logs", "web"]).ok();
    assert!(r.stdout.starts_with("started\ntick 0\n"), "{r:?}");
    let r = env.run(&["logs", "-n", "2", "web"]).ok();
    assert_eq!(r.stdout.lines().count(), 2, "{r:?}");
    assert!(r.stdout.lines().all(|l| l.starts_with("tick ")), "{r:?}");
    let boot = env.run(&["logs", "--boot", "web"]).ok();
    assert!(boot.stdout.contains("vminitd"), "boot log: {}", boot.stdout);

    let info = env.inspect("web");
    assert_eq!(info["status"], "running");
    assert!(info["monitorPid"].as_u64().is_some());
    assert!(info["started"].is_string());
    assert_eq!(info["networks"][0]["network"], "default", "{info}");
    assert_eq!(info["config"]["process"]["args"][0], "sh");

    // stop: SIGTERM reaches the process, which exits 0 by itself; `logs -f` follows until then.
    let follow = env.cli.command(&["logs", "-f", "-n", "1", "web"]);
    let follower = std::thread::spawn(move || wait_output(follow));
    std::thread::sleep(Duration::from_millis(500));
    let r = env.run(&["stop", "-t", "20", "web"]).ok();
    let followed = follower.join().unwrap().ok();
    assert!(followed.stdout.starts_with("tick "), "{followed:?}");
    assert!(followed.stdout.ends_with("got TERM\n"), "{followed:?}");
    assert_eq!(r.stdout.trim(), "web");
    let info = env.inspect("web");
    assert_eq!(
        (info["status"].as_str(), info["exitCode"].as_i64()),
        (Some("exited"), Some(0)),
        "{info}"
    );
    assert!(info["finished"].is_string());
    assert!(info["monitorPid"].is_null());
    let logs = env.run(&["logs", "-n", "1", "web"]).ok();
    assert_eq!(logs.stdout, "got TERM\n");
    assert_eq!(env.qemus(), 0);
    env.run(&["exec", "web", "true"]).fails_with("not running");

    // Restart it (the same disk), then kill -s KILL: 128+9.
    env.run(&["start", "web"]).ok();
    assert_eq!(env.inspect("web")["status"], "running");
    env.run(&["kill", "-s", "KILL", "web"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.inspect("web")["status"] != "exited" {
        assert!(Instant::now() < deadline, "kill did not end the container");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(env.inspect("web")["exitCode"], 137);

    env.run(&["delete", "web"]).ok();
    assert!(env.container_dirs().is_empty());
    assert_eq!(env.run(&["list", "-a", "-q"]).ok().stdout, "");
    assert_eq!(env.qemus(), 0);
}

#[test]
fn signals_to_an_attached_run_reach_the_container_process() {
    let env = Env::new(true);
    let mut cmd = env.cli.command(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got INT; exit 9' INT; echo ready; while true; do sleep 0.1; done",
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "run ended before the process was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    // SAFETY: kill(2) of the `container run` client this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(9), "{rest}");
    assert_eq!(rest, "got INT\n");
    assert!(env.container_dirs().is_empty());
}

#[test]
fn create_then_start_attached_and_two_containers_at_once() {
    let env = Env::new(true);
    let id = env
        .run(&[
            "create",
            "--name",
            "c1",
            IMAGE,
            "sh",
            "-c",
            "echo from c1; exit 4",
        ])
        .ok()
        .stdout;
    assert_eq!(env.inspect("c1")["status"], "created");
    let r = env.run(&["start", "-a", id.trim()]);
    assert_eq!((r.code, r.stdout.as_str()), (4, "from c1\n"), "{r:?}");

    env.run(&["run", "-d", "--name", "a", IMAGE, "sleep", "600"])
        .ok();
    env.run(&["run", "-d", "--name", "b", IMAGE, "sleep", "600"])
        .ok();
    let list = env.run(&["ls", "--format", "json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(env.qemus(), 2);
    let ha = env.run(&["exec", "a", "hostname"]).ok().stdout;
    let hb = env.run(&["exec", "b", "hostname"]).ok().stdout;
    assert_ne!(ha, hb);
    // Each exec is deleted in the guest once its status is collected; many in a row all work
    // and the container (whose main process must never be deleted) keeps running.
    for i in 0..30 {
        let r = env.run(&[
            "exec",
            "b",
            "sh",
            "-c",
            &format!("echo {i}; exit {}", i % 3),
        ]);
        assert_eq!(
            (r.code, r.stdout.trim()),
            (i % 3, i.to_string().as_str()),
            "{r:?}"
        );
    }
    let list = env.run(&["ls", "--format", "json"]).ok().json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "running"),
        "{list}"
    );
    env.run(&["delete", "b"]).fails_with("running");
    env.run(&["delete", "-f", "a", "b"]).ok();
    assert_eq!(env.qemus(), 0);
    assert_eq!(env.run(&["ls", "-a", "-q"]).ok().stdout.lines().count(), 1);
}

#[test]
fn killing_qemu_marks_the_container_exited_and_cleans_up() {
    let env = Env::new(true);
    env.run(&["run", "-d", "--name", "victim", IMAGE, "sleep", "600"])
        .ok();
    let info = env.inspect("victim");
    let vm = info["vmPid"].as_i64().expect("vm pid") as i32;
    let monitor = info["monitorPid"].as_i64().expect("monitor pid") as i32;
    let dir = env
        .cli
        .root()
        .join("containers")
        .join(info["id"].as_str().unwrap());
    assert!(dir.join("monitor.sock").exists());
    // SAFETY: kill(2) of the QEMU process this test's container runs.
    unsafe { libc::kill(vm, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.inspect("victim")["status"] != "exited" {
        assert!(
            Instant::now() < deadline,
            "container still running after its VM died"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = env.inspect("victim");
    assert_eq!(info["exitCode"], 125);
    assert!(
        info["exitReason"]
            .as_str()
            .unwrap()
            .contains("VM exited unexpectedly"),
        "{info}"
    );
    // The monitor is gone, and so are its sockets and the VM.
    std::thread::sleep(Duration::from_millis(300));
    let cmdline = std::fs::read(format!("/proc/{monitor}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("__monitor"),
        "monitor {monitor} still runs"
    );
    assert!(!dir.join("monitor.sock").exists());
    assert!(!dir.join("agent.sock").exists());
    assert_eq!(env.qemus(), 0);
    // Its disk goes with it.
    assert!(dir.join("rootfs.qcow2").exists());
    env.run(&["rm", "victim"]).ok();
    assert!(!dir.exists());
}

#[test]
fn run_with_an_image_pulled_from_a_registry() {
    let env = Env::new(false);
    let registry = Registry::start();
    let layout = env.cli.root().join("layout");
    build_image(&layout);
    let reference = registry.reference("runtime-test:1");
    common::tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{IMAGE}", layout.display()),
            &format!("docker://{reference}"),
        ],
    );
    // The registry listens on the host's loopback; the containers run in the test's namespace.
    wait_output(env.cli.host_command(&["image", "pull", &reference])).ok();
    let r = env
        .run(&[
            "run",
            "--rm",
            &reference,
            "sh",
            "-c",
            "echo pulled $TESTVAR",
        ])
        .ok();
    assert_eq!(r.stdout, "pulled hello\n");
    let images = env.run(&["image", "list", "--format", "json"]).ok().json();
    assert!(images.to_string().contains("runtime-test"), "{images}");
}

#[test]
fn bad_inputs_give_one_clear_line() {
    let env = Env::new(true);
    env.run(&["run", "--rm", "localhost:1/nope/missing:1", "true"])
        .fails_with("localhost:1/nope/missing");
    env.run(&["run", "--rm", "-k", "/nonexistent/vmlinux", IMAGE, "true"])
        .fails_with("/nonexistent/vmlinux");
    env.run(&["run", "--rm", "-w", "relative", IMAGE, "true"])
        .fails_with("absolute");
    env.run(&[
        "run",
        "--rm",
        "--env-file",
        "/nonexistent/env",
        IMAGE,
        "true",
    ])
    .fails_with("/nonexistent/env");
    env.run(&["run", "--rm", "--name", "bad/name", IMAGE, "true"])
        .fails_with("bad/name");
    for bad in [["--memory", "lots"], ["--cpus", "0"], ["--accel", "hvf"]] {
        let mut args = vec!["run", "--rm"];
        args.extend(bad);
        args.extend([IMAGE, "true"]);
        let r = env.run(&args);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(bad[0]), "{r:?}");
    }
    env.run(&["start", "nosuch"]).fails_with("nosuch");
    env.run(&["inspect", "nosuch"])
        .fails_with("no such container");
    env.run(&["logs", "nosuch"]).fails_with("no such container");
    // Nothing was left half-created by the failures.
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
}

#[test]
fn volumes_keep_data_across_containers_and_refuse_deletion_while_used() {
    let env = Env::new(true);
    assert_eq!(
        env.run(&["volume", "create", "data", "--size", "64m"])
            .ok()
            .stdout,
        "data\n"
    );
    let ls = env.run(&["volume", "ls", "--format", "json"]).ok().json();
    assert_eq!(ls[0]["name"], "data");
    assert_eq!(ls[0]["sizeBytes"], 64 << 20);
    env.run(&["volume", "create", "data"])
        .fails_with("already exists");
    env.run(&["volume", "create", "a/b"])
        .fails_with("invalid volume name");
    env.run(&["volume", "inspect", "nosuch"])
        .fails_with("no such volume");

    // Written by one container...
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "-v",
            "data:/data",
            IMAGE,
            "sh",
            "-c",
            "echo persisted > /data/f && grep ' /data ' /proc/mounts",
        ])
        .ok();
    assert!(r.stdout.starts_with("/dev/vdb /data ext4 rw"), "{r:?}");

    // ...read by the next, mounted read-only there; a stopped container still holds it.
    env.run(&[
        "create",
        "--name",
        "reader",
        "-u",
        "0",
        "-v",
        "data:/data:ro",
        IMAGE,
        "sh",
        "-c",
        "cat /data/f; touch /data/g",
    ])
    .ok();
    env.run(&["volume", "rm", "data"])
        .fails_with("in use by container(s) reader");
    let r = env.run(&["start", "-a", "reader"]);
    assert_eq!(r.stdout, "persisted\n", "{r:?}");
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    let info = env.run(&["volume", "inspect", "data"]).ok().json();
    assert_eq!(info[0]["containers"], json!(["reader"]));
    env.run(&["delete", "reader"]).ok();
    assert_eq!(env.run(&["volume", "rm", "data"]).ok().stdout, "data\n");
    assert_eq!(env.run(&["volume", "ls", "-q"]).ok().stdout, "");
    assert!(!env.cli.root().join("volumes/data").exists());
}

#[test]
fn read_only_rootfs_tmpfs_and_a_volume_in_use_by_a_running_container() {
    let env = Env::new(true);
    // --read-only rootfs; --tmpfs and a volume made on the fly by --mount stay writable.
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "--read-only",
            "--tmpfs",
            "/scratch:size=1m",
            "--mount",
            "type=volume,source=auto,target=/auto",
            IMAGE,
            "sh",
            "-c",
            "touch /x 2>/dev/null || echo rootfs-ro; echo t > /scratch/t && cat /scratch/t; \
             echo v > /auto/v && cat /auto/v; grep -E ' (/scratch|/) ' /proc/mounts",
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..3], ["rootfs-ro", "t", "v"], "{r:?}");
    assert!(lines[3].starts_with("/dev/vda / ext4 ro"), "{r:?}");
    assert!(
        lines[4].starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev")
            && lines[4].contains("size=1024k"),
        "{r:?}"
    );
    let ls = env.run(&["volume", "ls", "-q"]).ok();
    assert_eq!(ls.stdout, "auto\n");

    // One VM at a time: a second container cannot mount a volume a running one holds.
    env.run(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "auto:/auto",
        IMAGE,
        "sleep",
        "120",
    ])
    .ok();
    let r = env.run(&["run", "--rm", "-v", "auto:/auto", IMAGE, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("volume auto is in use"), "{r:?}");
    env.run(&["volume", "prune"]).ok();
    assert_eq!(env.run(&["volume", "ls", "-q"]).ok().stdout, "auto\n");
    env.run(&["delete", "-f", "holder"]).ok();
    assert_eq!(env.run(&["volume", "prune"]).ok().stdout, "auto\n");
    assert_eq!(env.run(&["volume", "ls", "-q"]).ok().stdout, "");
}

#[test]
fn anonymous_volumes_for_image_volumes_and_bare_paths_go_with_their_container() {
    let env = Env::new(true);
    // An image declaring `VOLUME /vol`.
    let dir = tempfile::tempdir().unwrap();
    let layers = images::busybox_layers();
    let mut config = images::busybox_config("amd64", &layers);
    config["config"]["Volumes"] = json!({"/vol/": {}});
    let w = LayoutWriter::new(&dir.path().join("layout"));
    let manifest = w.image(&config, &layers);
    let layout = w.finish("localhost/volume-test:1", manifest);
    let tar = dir.path().join("image.tar");
    common::tool(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .ok();

    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "-v",
            "/anon",
            "localhost/volume-test:1",
            "sh",
            "-c",
            "echo x > /vol/x && echo y > /anon/y && grep -E ' /(vol|anon) ' /proc/mounts",
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("/dev/vdb /anon ext4 rw"), "{r:?}");
    assert!(lines[1].starts_with("/dev/vdc /vol ext4 rw"), "{r:?}");
    // --rm took its anonymous volumes along.
    assert_eq!(env.run(&["volume", "ls", "-q"]).ok().stdout, "");

    // A named volume given for the image's VOLUME path replaces the anonymous one; a created
    // container's anonymous volume exists until the container is deleted.
    let id = env
        .run(&[
            "create",
            "-v",
            "named:/vol",
            "-v",
            "/other",
            "localhost/volume-test:1",
            "true",
        ])
        .ok()
        .stdout;
    let vols = env.run(&["volume", "ls", "-q"]).ok().stdout;
    let vols: Vec<&str> = vols.lines().collect();
    assert_eq!(vols.len(), 2, "{vols:?}");
    assert!(vols.contains(&"named"), "{vols:?}");
    env.run(&["delete", id.trim()]).ok();
    assert_eq!(env.run(&["volume", "ls", "-q"]).ok().stdout, "named\n");

    // Force-deleting a running container takes its anonymous volume too.
    env.run(&[
        "run", "-d", "--name", "busy", "-v", "/scratch", IMAGE, "sleep", "120",
    ])
    .ok();
    assert_eq!(
        env.run(&["volume", "ls", "-q"]).ok().stdout.lines().count(),
        2
    );
    env.run(&["delete", "-f", "busy"]).ok();
    assert_eq!(env.run(&["volume", "ls", "-q"]).ok().stdout, "named\n");
}

#[test]
fn bind_mounts_share_a_host_directory_through_virtiofs() {
    let env = Env::new(true);
    let host = tempfile::tempdir().unwrap();
    let share = host.path().join("share");
    let outside = host.path().join("outside");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(share.join("in.txt"), "from host\n").unwrap();
    std::fs::write(outside.join("secret"), "secret\n").unwrap();
    // A link out of the share resolves inside the guest, where the outside does not exist.
    std::os::unix::fs::symlink(&outside, share.join("escape")).unwrap();
    let rw = format!("{}:/mnt", share.display());
    let ro = format!("{}:/ro:ro", share.display());
    let r = env.run(&[
        "run",
        "--rm",
        "-u",
        "0",
        "-v",
        &rw,
        "-v",
        &ro,
        IMAGE,
        "sh",
        "-c",
        "cat /mnt/in.txt; echo from guest > /mnt/out.txt; cat /mnt/escape/secret 2>&1 || echo no-escape; \
         touch /ro/x 2>&1 || echo ro-refused; cat /ro/out.txt",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "from host", "{r:?}");
    assert!(lines.contains(&"no-escape"), "{r:?}");
    assert!(!r.stdout.contains("secret\n"), "{r:?}");
    assert!(r.stdout.contains("Read-only file system"), "{r:?}");
    assert!(lines.contains(&"ro-refused"), "{r:?}");
    assert_eq!(lines.last(), Some(&"from guest"), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(share.join("out.txt")).unwrap(),
        "from guest\n"
    );
    assert!(!share.join("x").exists());

    // A single file: its directory is shared, only the file appears in the container.
    let file = format!("{}:/etc/greeting:ro", share.join("in.txt").display());
    let r = env
        .run(&[
            "run",
            "--rm",
            "-v",
            &file,
            IMAGE,
            "sh",
            "-c",
            "cat /etc/greeting; ls /etc/out.txt 2>/dev/null || echo only-the-file",
        ])
        .ok();
    assert_eq!(r.stdout, "from host\nonly-the-file\n", "{r:?}");

    // While a container runs, its `:ro` share is served read-only by the host's virtiofsd,
    // sandboxed to the shared directory; every virtiofsd ends with its VM.
    let share_s = share.to_string_lossy().into_owned();
    let daemons = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("virtiofsd") && c.contains(&share_s))
            .collect()
    };
    env.run(&[
        "run", "-d", "--name", "ro", "-v", &ro, IMAGE, "sleep", "120",
    ])
    .ok();
    let running = daemons();
    assert!(!running.is_empty(), "no virtiofsd for {share_s}");
    for cmd in &running {
        assert!(
            cmd.contains("--readonly") && cmd.contains("--sandbox namespace"),
            "{cmd}"
        );
        assert!(cmd.contains(&format!("--shared-dir {share_s}")), "{cmd}");
    }
    env.run(&["delete", "-f", "ro"]).ok();
    assert_eq!(daemons(), Vec::<String>::new());
    env.run(&["run", "--rm", "-v", "/no/such/dir:/x", IMAGE, "true"])
        .fails_with("bind source /no/such/dir");
}

#[test]
fn capabilities_follow_the_flags_and_a_read_only_share_is_enforced_by_the_host() {
    let env = Env::new(true);
    // CapEff as the kernel reports it, for the set the flags ask for.
    let cap_eff = |flags: &[&str]| -> u64 {
        let mut args = vec!["run", "--rm", "--network", "none", "-u", "0"];
        args.extend(flags);
        args.extend([IMAGE, "sh", "-c", "grep CapEff /proc/self/status"]);
        let r = env.run(&args).ok();
        let hex = r.stdout.split_whitespace().nth(1).unwrap_or_default();
        u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{r:?}"))
    };
    const CHOWN: u64 = 1 << 0;
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_ADMIN: u64 = 1 << 21;
    let default = cap_eff(&[]);
    assert_eq!(default.count_ones(), 14, "{default:x}");
    assert_eq!(default & (SYS_ADMIN | NET_ADMIN), 0);
    let changed = cap_eff(&["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN"]);
    assert_eq!(changed, (default | NET_ADMIN) & !CHOWN);
    assert_eq!(cap_eff(&["--cap-drop", "ALL"]), 0);
    let all = cap_eff(&["--privileged"]);
    assert!(all & SYS_ADMIN != 0 && all.count_ones() >= 40, "{all:x}");
    env.run(&["run", "--rm", "--cap-add", "FLY", IMAGE, "true"])
        .fails_with("invalid capability \"FLY\"");

    // Without --privileged /proc/kcore is masked and /proc/sys read-only; with it, neither.
    let probe =
        "ls -l /proc/kcore | cut -c1; touch /proc/sys/kernel/hostname 2>&1 | grep -c Read-only";
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "0",
            IMAGE,
            "sh",
            "-c",
            probe,
        ])
        .ok();
    assert_eq!(r.stdout, "c\n1\n", "{r:?}");
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        "--privileged",
        IMAGE,
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(r.stdout, "-\n0\n", "{r:?}");

    // A container that may remount its `:ro` share read-write still cannot write through it:
    // the host's virtiofsd refuses.
    let host = tempfile::tempdir().unwrap();
    let ro = format!("{}:/ro:ro", host.path().display());
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        "--cap-add",
        "SYS_ADMIN",
        "-v",
        &ro,
        IMAGE,
        "sh",
        "-c",
        "mount -o remount,rw /ro && grep -c ' /ro virtiofs rw' /proc/mounts; \
         echo data > /ro/x || echo host-refused",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("1\n"),
        "the remount did not happen: {r:?}"
    );
    assert!(r.stdout.contains("host-refused"), "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(!host.path().join("x").exists());
}
