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
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::vm::{push_image, wait_output, Env, IMAGE, TIMEOUT};
use common::Registry;

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
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
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn image_config_and_flags_shape_the_process() {
    let env = Env::new(true);
    // The image's Cmd, User, WorkingDir and Env.
    let r = env.run(&["run", "--rm", IMAGE]).success();
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
    let r = wait_output(cmd).success();
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
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
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
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn detached_container_exec_logs_kill_stop_and_delete() {
    let env = Env::new(true);
    let script = "echo started; trap 'echo got TERM; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    let r = env
        .run(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", script])
        .success();
    let id = r.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{r:?}");

    let list = env.run(&["list", "--format", "json"]).success().json();
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
    .success();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        env.run(&["exec", "web", "cat", "/tmp/marker"])
            .success()
            .stdout,
        "detached\n"
    );

    // logs, with -n.
    std::thread::sleep(Duration::from_millis(800));
    let r = env.run(&["logs", "web"]).success();
    assert!(r.stdout.starts_with("started\ntick 0\n"), "{r:?}");
    let r = env.run(&["logs", "-n", "2", "web"]).success();
    assert_eq!(r.stdout.lines().count(), 2, "{r:?}");
    assert!(r.stdout.lines().all(|l| l.starts_with("tick ")), "{r:?}");
    let boot = env.run(&["logs", "--boot", "web"]).success();
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
    let r = env.run(&["stop", "-t", "20", "web"]).success();
    let followed = follower.join().unwrap().success();
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
    let logs = env.run(&["logs", "-n", "1", "web"]).success();
    assert_eq!(logs.stdout, "got TERM\n");
    assert_eq!(env.qemus(), 0);
    env.run(&["exec", "web", "true"]).fails_with("not running");

    // Restart it (the same disk), then kill -s KILL: 128+9.
    env.run(&["start", "web"]).success();
    assert_eq!(env.inspect("web")["status"], "running");
    env.run(&["kill", "-s", "KILL", "web"]).success();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.inspect("web")["status"] != "exited" {
        assert!(Instant::now() < deadline, "kill did not end the container");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(env.inspect("web")["exitCode"], 137);

    env.run(&["delete", "web"]).success();
    assert!(env.container_dirs().is_empty());
    assert_eq!(env.run(&["list", "-a", "-q"]).success().stdout, "");
    assert_eq!(env.qemus(), 0);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
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
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
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
        .success()
        .stdout;
    assert_eq!(env.inspect("c1")["status"], "created");
    let r = env.run(&["start", "-a", id.trim()]);
    assert_eq!((r.code, r.stdout.as_str()), (4, "from c1\n"), "{r:?}");

    env.run(&["run", "-d", "--name", "a", IMAGE, "sleep", "600"])
        .success();
    env.run(&["run", "-d", "--name", "b", IMAGE, "sleep", "600"])
        .success();
    let list = env.run(&["ls", "--format", "json"]).success().json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(env.qemus(), 2);
    let ha = env.run(&["exec", "a", "hostname"]).success().stdout;
    let hb = env.run(&["exec", "b", "hostname"]).success().stdout;
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
    let list = env.run(&["ls", "--format", "json"]).success().json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "running"),
        "{list}"
    );
    env.run(&["delete", "b"]).fails_with("running");
    env.run(&["delete", "-f", "a", "b"]).success();
    assert_eq!(env.qemus(), 0);
    assert_eq!(
        env.run(&["ls", "-a", "-q"])
            .success()
            .stdout
            .lines()
            .count(),
        1
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn killing_qemu_marks_the_container_exited_and_cleans_up() {
    let env = Env::new(true);
    env.run(&["run", "-d", "--name", "victim", IMAGE, "sleep", "600"])
        .success();
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
    env.run(&["rm", "victim"]).success();
    assert!(!dir.exists());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn run_with_an_image_pulled_from_a_registry() {
    let env = Env::new(false);
    let registry = Registry::start();
    let layout = env.cli.root().join("layout");
    let reference = push_image(&registry, &layout, "runtime-test:1");
    // The registry listens on the host's loopback; the containers run in the test's namespace.
    wait_output(env.cli.host_command(&["image", "pull", &reference])).success();
    let r = env
        .run(&[
            "run",
            "--rm",
            &reference,
            "sh",
            "-c",
            "echo pulled $TESTVAR",
        ])
        .success();
    assert_eq!(r.stdout, "pulled hello\n");
    let images = env
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    assert!(images.to_string().contains("runtime-test"), "{images}");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
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

/// QEMU holds no capability (empty bounding, permitted and effective sets, no_new_privs), yet
/// the VM boots, reaches its network through its tap and serves the container.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn qemu_runs_without_capabilities() {
    let env = Env::new(true);
    env.run(&["run", "-d", "--name", "c", IMAGE, "sleep", "600"])
        .success();
    let pid = env.inspect("c")["vmPid"].as_i64().expect("vmPid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("QEMU's status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(set), "0000000000000000", "{set} of QEMU: {status}");
    }
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    // The guest still works: an exec answers, its network interface has the address.
    let r = env.run(&["exec", "c", "cat", "/proc/net/dev"]).success();
    assert!(r.stdout.contains("eth0"), "{r:?}");
}
