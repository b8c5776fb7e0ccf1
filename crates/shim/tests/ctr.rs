//! The shim with real components: Debian's containerd, started by each test with its own
//! config (root, state, sockets in a temp dir), finds `containerd-shim-container-v2` first on
//! its PATH; `ctr` imports a busybox test image and runs tasks in our VMs.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Containerd, Out, Setup, TIMEOUT};
use testkit::images;

const RUNTIME: &str = "io.containerd.container.v2";
const IMAGE: &str = "localhost/shim-test:1";

/// The busybox test image as an OCI archive (for `ctr image import`).
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shim-image");
        let _ = std::fs::remove_dir_all(&dir);
        let layers = images::busybox_with(&["sleep", "tty", "stty", "cat", "ps"], |l| l);
        let config = serde_json::json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        });
        images::archive(&dir, IMAGE, &layers, config)
    })
}

impl Containerd {
    /// A containerd without CRI, the busybox test image imported.
    fn start() -> Containerd {
        let c = Containerd::launch(Setup::default());
        c.ctr(&["image", "import", image_tar().to_str().expect("utf-8")])
            .success();
        c
    }

    /// `ctr run --rm --runtime ours IMAGE id ARGS…`.
    fn run(&self, id: &str, extra: &[&str], args: &[&str]) -> Out {
        let mut a = vec!["run", "--rm", "--runtime", RUNTIME];
        a.extend_from_slice(extra);
        a.extend_from_slice(&[IMAGE, id]);
        a.extend_from_slice(args);
        self.ctr(&a)
    }

    /// Starts a long-running task in the background (`ctr run -d`) and waits until it runs.
    fn run_detached(&self, id: &str, args: &[&str]) {
        let mut a = vec!["run", "-d", "--runtime", RUNTIME, IMAGE, id];
        a.extend_from_slice(args);
        self.ctr(&a).success();
        let deadline = Instant::now() + TIMEOUT;
        while !self
            .ctr(&["task", "ls"])
            .stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains("RUNNING"))
        {
            assert!(
                Instant::now() < deadline,
                "{id} did not run: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills and removes task and container `id`.
    /// Waits until no VM and no container record is left (a deleted task's VM goes down
    /// after containerd's delete returns), failing after 10 s.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.qemus() > 0 || self.records() > 0 {
            assert!(
                Instant::now() < deadline,
                "left behind: {} VMs, {} records",
                self.qemus(),
                self.records()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        let deadline = Instant::now() + TIMEOUT;
        while self.ctr(&["task", "delete", id]).code != 0
            && self.ctr(&["task", "ls"]).stdout.contains(id)
        {
            assert!(
                Instant::now() < deadline,
                "{id} would not go: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.ctr(&["container", "delete", id]).success();
    }

    /// Container records in the shim's state root.
    fn records(&self) -> usize {
        std::fs::read_dir(self.shim_root().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().len() == 64)
            .count()
    }

    /// `ctr ARGS…` on a terminal of its own (`ctr run -t` needs one): returns the exit code
    /// and what the terminal showed.
    fn ctr_on_terminal(&self, args: &[&str], answer: (&str, &[u8])) -> (i32, String) {
        let size = nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = self.command(args);
        cmd.stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave);
        // SAFETY: setsid and the TIOCSCTTY ioctl on fd 0 are async-signal-safe and touch no
        // memory of the parent; the terminal becomes ctr's controlling terminal.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn ctr");
        drop(cmd);
        let mut master = std::fs::File::from(pty.master);
        let mut typist = master.try_clone().expect("dup");
        let (prompt, input) = (answer.0.to_string(), answer.1.to_vec());
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let mut buf = [0u8; 4096];
            let mut typed = false;
            // Ends with EIO once the last holder of the terminal has gone.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                v.extend_from_slice(&buf[..n]);
                if !typed && String::from_utf8_lossy(&v).contains(&prompt) {
                    typed = true;
                    let _ = std::io::Write::write_all(&mut typist, &input);
                }
            }
            String::from_utf8_lossy(&v).into_owned()
        });
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "ctr -t hung");
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code().unwrap_or(-1), reader.join().expect("reader"))
    }
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn ctr_run_prints_output_and_passes_exit_codes_through() {
    let c = Containerd::start();
    let mut events = c
        .command(&["events"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ctr events");
    let t = Instant::now();
    let out = c.run("hi", &[], &["echo", "hi"]);
    eprintln!("ctr run --rm echo hi: {:?}", t.elapsed());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hi\n"),
        "{out:?}\n{}",
        c.log()
    );
    // The shim published the task's life back to containerd.
    let _ = events.kill();
    let mut seen = String::new();
    let _ = events
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut seen);
    let _ = events.wait();
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(
            seen.lines()
                .any(|l| l.contains(topic) && l.contains("\"hi\"")),
            "no {topic} event for hi: {seen}"
        );
    }
    // The snapshot reaches the guest as a disk (an ext4 image of its layers), not a share.
    let out = c
        .run(
            "disk",
            &[],
            &[
                "sh",
                "-c",
                "awk '$2 == \"/\" {print $3}' /proc/mounts; ls /bin/busybox",
            ],
        )
        .success();
    assert_eq!(out.stdout, "ext4\n/bin/busybox\n", "{out:?}");
    let out = c.run("three", &[], &["sh", "-c", "echo err >&2; exit 3"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stderr, "err\n");
    // A command the image lacks fails the start, as with runc, and leaves nothing behind.
    let out = c.run("missing", &[], &["/nonexistent"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("nonexistent"), "{out:?}");
    // The process runs as the spec says: working directory, environment; the memory limit
    // sizes the VM (256 MiB + the guest's overhead, under the default 512 MiB).
    let out = c
        .run(
            "spec",
            &[
                "--cwd",
                "/tmp",
                "--env",
                "A=b",
                "--memory-limit",
                "268435456",
            ],
            &[
                "sh",
                "-c",
                "id -u; pwd; echo $A; grep MemTotal /proc/meminfo",
            ],
        )
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..3], ["0", "/tmp", "b"], "{out:?}");
    let kib: u64 = lines[3]
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("MemTotal");
    assert!(
        kib < 450 * 1024,
        "the VM was not sized by the limit: {}",
        lines[3]
    );
    // A deleted task's VM goes down after ctr returns (containerd does not wait for it);
    // each shim ends once its VM is down and its record gone, after containerd's Shutdown.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.shims().is_empty() || c.qemus() > 0 || c.records() > 0 {
        assert!(
            Instant::now() < deadline,
            "left behind: {} shims, {} VMs, {} records",
            c.shims().len(),
            c.qemus(),
            c.records()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn ctr_run_with_a_terminal() {
    let c = Containerd::start();
    let (code, shown) = c.ctr_on_terminal(
        &[
            "run",
            "--rm",
            "-t",
            "--runtime",
            RUNTIME,
            IMAGE,
            "tty",
            "sh",
            "-c",
            "tty; echo ready; read x; stty size; echo got:$x; exit 4",
        ],
        ("ready", b"typed\n"),
    );
    assert_eq!(code, 4, "{shown}\n{}", c.log());
    assert!(shown.contains("/dev/pts/"), "{shown:?}");
    // Keystrokes reach the process through the stdin FIFO; ctr's terminal size reached the
    // guest's pty (ResizePty); the guest pty's line discipline ends lines with CR.
    assert!(shown.contains("got:typed\r"), "{shown:?}");
    assert!(shown.contains("33 101\r"), "{shown:?}");
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn exec_kill_ps_pause_and_resume_a_running_task() {
    let c = Containerd::start();
    c.run_detached("long", &["sh", "-c", "echo $$ > /tmp/pid; exec sleep 600"]);
    // The task runs; its first command may not have yet: ask until it has.
    let deadline = Instant::now() + TIMEOUT;
    let out = (0..)
        .map(|i| {
            let id = format!("e1-{i}");
            c.ctr(&["task", "exec", "--exec-id", &id, "long", "cat", "/tmp/pid"])
        })
        .find(|o| o.code == 0 || Instant::now() > deadline)
        .expect("an answer")
        .success();
    assert_eq!(out.stdout.trim(), "1", "{out:?}");
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "long",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.code, 7, "{out:?}");
    let ps = c.ctr(&["task", "ps", "long"]).success();
    assert!(
        ps.stdout.lines().skip(1).count() >= 1,
        "no processes: {ps:?}"
    );
    // Stats: the guest cgroup's counters as containerd's cgroup v2 metrics.
    let metrics = c.ctr(&["task", "metrics", "long"]).success();
    let value = |name: &str| -> u64 {
        metrics
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name}: {metrics:?}"))
    };
    assert!(value("pids.current ") >= 1 && value("memory.usage ") > 0);
    c.ctr(&["task", "pause", "long"]).success();
    assert!(c.ctr(&["task", "ls"]).stdout.contains("PAUSED"));
    c.ctr(&["task", "resume", "long"]).success();
    assert!(c.ctr(&["task", "ls"]).stdout.contains("RUNNING"));
    // The main process is the container's pid 1, which the kernel spares of signals it has no
    // handler for (as with runc): SIGKILL ends it.
    c.ctr(&["task", "kill", "-s", "SIGKILL", "long"]).success();
    let deadline = Instant::now() + TIMEOUT;
    while !c.ctr(&["task", "ls"]).stdout.contains("STOPPED") {
        assert!(Instant::now() < deadline, "not stopped: {}", c.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.remove("long");
    c.assert_nothing_left();
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn two_tasks_at_once_each_in_its_own_vm() {
    let c = Containerd::start();
    c.run_detached("one", &["sleep", "600"]);
    c.run_detached("two", &["sleep", "600"]);
    assert_eq!(c.qemus(), 2);
    c.remove("one");
    c.remove("two");
    c.assert_nothing_left();
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn a_killed_shim_leaves_no_vm_behind() {
    let c = Containerd::start();
    c.run_detached("victim", &["sleep", "600"]);
    assert_eq!(c.qemus(), 1);
    let shims = c.shims();
    assert!(!shims.is_empty(), "no shim process found");
    for pid in shims {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the shim");
    }
    // containerd sees its shim gone, runs the shim's `delete` action, which finds the VM by
    // the bundle and ends it.
    let deadline = Instant::now() + TIMEOUT;
    while c.qemus() > 0 {
        assert!(
            Instant::now() < deadline,
            "the VM outlived its shim: {}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(c.log().contains("cleaning up dead shim"), "{}", c.log());
    let _ = c.ctr(&["task", "delete", "victim"]);
    c.ctr(&["container", "delete", "victim"]).success();
    assert_eq!(c.records(), 0, "container records left behind");
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn a_vm_ends_with_its_shim_when_containerd_cannot_clean_up() {
    let mut c = Containerd::start();
    c.run_detached("orphan", &["sleep", "600"]);
    assert_eq!(c.qemus(), 1);
    // containerd down first, so nobody runs the dead shim's `delete`: the double fault of a
    // `delete` that containerd killed after its 5 s, or of containerd dying with the shim.
    c.kill();
    let shim = shim_daemon(&c).expect("the shim daemon");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    // The monitor watches its shim and ends the VM itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.qemus() > 0 {
        assert!(
            Instant::now() < deadline,
            "the VM outlived its shim and containerd: {}",
            c.monitor_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // containerd, back, cleans up the dead shim's task; then nothing is left.
    c.restart();
    let _ = c.ctr(&["task", "delete", "orphan"]);
    c.ctr(&["container", "delete", "orphan"]).success();
    c.assert_nothing_left();
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn a_task_survives_a_killed_containerd_and_is_cleaned_up_after() {
    let mut c = Containerd::start();
    c.run_detached("survivor", &["sleep", "600"]);
    c.kill_and_restart();
    // The new containerd reconnects to the shim through the bundle's address file.
    let ls = c.ctr(&["task", "ls"]).success();
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with("survivor") && l.contains("RUNNING")),
        "{ls:?}\n{}",
        c.log()
    );
    let out = c
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "x",
            "survivor",
            "echo",
            "still here",
        ])
        .success();
    assert_eq!(out.stdout, "still here\n");
    c.remove("survivor");
    c.assert_nothing_left();
}

#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn bind_mounts_of_the_spec_reach_the_guest() {
    let c = Containerd::start();
    let host = tempfile::tempdir().expect("temp dir");
    std::fs::write(host.path().join("note"), "from the host\n").expect("write");
    let mount = format!(
        "type=bind,src={},dst=/host,options=rbind:ro",
        host.path().display()
    );
    let out = c
        .run(
            "bind",
            &["--mount", &mount],
            &[
                "sh",
                "-c",
                "cat /host/note; touch /host/x 2>/dev/null || echo read-only",
            ],
        )
        .success();
    assert_eq!(out.stdout, "from the host\nread-only\n", "{out:?}");
    // The task wrote into the snapshot through virtiofs: the rootfs is the bundle's.
    let out = c
        .run("write", &[], &["sh", "-c", "echo x > /made && cat /made"])
        .success();
    assert_eq!(out.stdout, "x\n");
}

/// Mounts under this containerd's temp dir (snapshots, bundles' rootfs).
fn mounts_under(c: &Containerd) -> Vec<String> {
    let root = c.dir.path().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| t.starts_with(&root))
        .map(str::to_string)
        .collect()
}

/// The shim daemon serving this containerd's tasks: the shim binary without an action
/// (`start` and `delete` are one-shot commands containerd runs).
fn shim_daemon(c: &Containerd) -> Option<i32> {
    c.shims().into_iter().find(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let last = cmdline
            .split(|&b| b == 0)
            .rfind(|a| !a.is_empty())
            .unwrap_or_default();
        last != b"start" && last != b"delete"
    })
}

/// kill -9 of the shim at a random point of a request (issue 16): during `ctr run -d`
/// (create, start) and during `ctr task exec`, each [`testkit::soak::kills`] times. The ctr
/// client must end, not hang; containerd cleans up the dead shim (its `delete` action ends
/// the VM); then the task and container delete, and no shim, monitor, VM, record or mount
/// is left.
#[test]
#[cfg_attr(not(container_testenv), ignore = "needs root, QEMU and containerd")]
fn kill_9_of_the_shim_mid_request() {
    use testkit::soak::{kills, report, Rng};
    let c = Containerd::start();
    let mounts_before = mounts_under(&c);
    let run = |id: &str| c.command(&["run", "-d", "--runtime", RUNTIME, IMAGE, id, "sleep", "600"]);
    // A fresh exec id each time: ctr deletes an exec after it ends, not always before the
    // next one asks for the same id.
    let execs = std::cell::Cell::new(0);
    let exec = |id: &str| {
        execs.set(execs.get() + 1);
        let exec_id = format!("x{}", execs.get());
        c.command(&["task", "exec", "--exec-id", &exec_id, id, "true"])
    };
    let settle = |id: &str, what: &str| {
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        let deadline = Instant::now() + TIMEOUT;
        while c.ctr(&["task", "ls", "-q"]).stdout.lines().any(|l| l == id) {
            let _ = c.ctr(&["task", "delete", "-f", id]);
            assert!(
                Instant::now() < deadline,
                "after a kill of the shim {what}, task {id} would not go: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = c.ctr(&["container", "delete", id]);
        assert!(
            !c.ctr(&["container", "ls", "-q"])
                .stdout
                .lines()
                .any(|l| l == id),
            "container {id} stays"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shims = common::pids_of(&c.dir.path().to_string_lossy(), "containerd-shim", true);
            let left = (shims.len(), c.qemus(), c.records(), mounts_under(&c));
            if left == (0, 0, 0, mounts_before.clone()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after a kill of the shim {what}: shims and monitors {:?}, VMs {}, records {}, \
                 mounts {:?}\n{}\n{}",
                left.0,
                left.1,
                left.2,
                left.3,
                c.log(),
                c.monitor_logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let timed = |cmd: std::process::Command| {
        let t = Instant::now();
        let out = common::wait(cmd);
        assert_eq!(out.code, 0, "{out:?}");
        t.elapsed()
    };
    // Undisturbed, the shortest of three.
    let took_run = (0..3)
        .map(|i| {
            let id = format!("cal{i}");
            let t = timed(run(&id));
            c.remove(&id);
            t
        })
        .min()
        .unwrap();
    c.run_detached("calx", &["sleep", "600"]);
    let took_exec = (0..3).map(|_| timed(exec("calx"))).min().unwrap();
    c.remove("calx");
    c.assert_nothing_left();

    for (what, took) in [
        ("during ctr run -d", took_run),
        ("during ctr task exec", took_exec),
    ] {
        let mut rng = Rng::new(&format!("the shim {what}"));
        let mut killed = 0;
        let n = kills();
        for i in 0..n {
            let id = format!("k{i}");
            let mut client = if what.contains("exec") {
                c.run_detached(&id, &["sleep", "600"]);
                exec(&id)
            } else {
                run(&id)
            }
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ctr");
            let t = Instant::now();
            let delay = rng.within(took);
            // The shim daemon of a new task is started (by the shim's `start` action) during
            // the request; it is what serves the request, and what is killed.
            let daemon = loop {
                if let Some(pid) = shim_daemon(&c) {
                    break Some(pid);
                }
                if client.try_wait().unwrap().is_some() || t.elapsed() > took * 2 {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            if let Some(left) = delay.checked_sub(t.elapsed()) {
                std::thread::sleep(left);
            }
            if client.try_wait().unwrap().is_none() {
                killed += 1;
            }
            if let Some(pid) = daemon {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let deadline = Instant::now() + TIMEOUT;
            while client.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "ctr hangs after a kill of the shim {what}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            settle(&id, what);
        }
        report(&format!("the shim {what}"), killed, n);
    }
    // And the runtime works on afterwards.
    let out = c.run("after", &[], &["echo", "fine"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "fine\n"), "{out:?}");
}
