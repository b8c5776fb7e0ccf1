//! Test support shared by the shim's integration tests (`ctr.rs`, `cri.rs`): Debian's
//! containerd started by each test with its own config, root, state and sockets in a temp dir,
//! our shim first on its PATH, and everything it started stopped on drop, pass or fail.
//!
//! Each test binary uses a part of it, hence `dead_code` is allowed.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testkit::Netns;

/// Any ctr command that takes longer has hung.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Plugins that cannot load here or are not wanted by any test: their errors would only clutter
/// containerd's log.
const UNWANTED_PLUGINS: &str = r#""io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp""#;

/// A shim state root with the guest kernel set, shared by the tests of a binary (each test's
/// root links to its kernel and init filesystem cache).
pub fn kernel_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shim-kernel-root");
        runtime::system::KernelStore::new(&root)
            .set_from_deb(&testkit::kernel_deb())
            .expect("set the guest kernel");
        std::fs::create_dir_all(root.join("initfs")).expect("initfs dir");
        root
    })
}

/// What a finished command printed and returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn success(self) -> Out {
        assert_eq!(self.code, 0, "failed: {self:?}");
        self
    }
}

/// How a test's containerd is set up.
#[derive(Default)]
pub struct Setup {
    /// containerd's CRI plugin config (TOML, `{d}` standing for the temp dir); None disables
    /// the plugin (the `ctr` tests need no Kubernetes).
    pub cri: Option<String>,
    /// Files written under the temp dir before containerd starts: (relative path, content
    /// with `{d}` standing for the temp dir).
    pub files: Vec<(String, String)>,
    /// Run containerd (and so its shims and the CNI plugins it runs) inside this namespace.
    pub netns: Option<Netns>,
}

/// A containerd of the test's own, stopped (with everything it started) on drop.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Child,
    /// Dropped after containerd is gone (fields drop after `Drop::drop`).
    netns: Option<Netns>,
}

impl Containerd {
    pub fn launch(setup: Setup) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let shim_root = d.join("shim");
        std::fs::create_dir_all(&shim_root).expect("shim root");
        let kr = kernel_root();
        std::os::unix::fs::symlink(kr.join("kernels"), shim_root.join("kernels")).expect("link");
        std::os::unix::fs::symlink(kr.join("initfs"), shim_root.join("initfs")).expect("link");
        let (cri_disabled, cri) = match &setup.cri {
            Some(c) => ("", c.replace("{d}", &d.display().to_string())),
            None => (r#""io.containerd.grpc.v1.cri", "#, String::new()),
        };
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{cri_disabled}{UNWANTED_PLUGINS}]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
{cri}"#,
            d = d.display()
        );
        std::fs::write(d.join("config.toml"), config).expect("write config");
        for (rel, content) in &setup.files {
            let path = d.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, content.replace("{d}", &d.display().to_string()))
                .expect("write file");
        }
        let child = spawn_containerd(d, setup.netns.as_ref());
        let c = Containerd {
            dir,
            child,
            netns: setup.netns,
        };
        c.wait_ready();
        c
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ctr(&["version"]).code != 0 {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9 of containerd, then a new one on the same root, state and sockets (the shims
    /// and their VMs run on meanwhile).
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// Kills containerd (SIGKILL); its shims live on.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts containerd again on the same state after [`Containerd::kill`].
    pub fn restart(&mut self) {
        self.child = spawn_containerd(self.dir.path(), self.netns.as_ref());
        self.wait_ready();
    }

    /// containerd's log, where the shims' logs go too (containerd copies each shim's `log`
    /// FIFO into its own).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The network namespace containerd runs in, if the test gave one.
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn shim_root(&self) -> PathBuf {
        self.dir.path().join("shim")
    }

    /// The monitors' logs (one per container of our shim), each headed by its container.
    pub fn monitor_logs(&self) -> String {
        let mut out = String::new();
        let dir = self.shim_root().join("containers");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !e.path().is_dir() {
                continue;
            }
            let log = testkit::read_lossy(&e.path().join("monitor.log"));
            out.push_str(&format!("--- {}\n{log}", e.path().display()));
        }
        out
    }

    /// `ctr --address … ARGS…`, not run yet.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Out {
        wait(self.command(args))
    }

    /// Pids of this containerd's shim daemons (ours and runc's).
    pub fn shims(&self) -> Vec<i32> {
        pids_mentioning(&self.dir.path().to_string_lossy(), "containerd-shim")
    }

    /// QEMU processes whose command line mentions this test's shim root.
    pub fn qemus(&self) -> usize {
        processes_mentioning(&self.shim_root().to_string_lossy(), "qemu")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first (their shims and VMs), in every namespace, then containerd itself.
        let namespaces = self.ctr(&["namespaces", "ls", "-q"]).stdout;
        for ns in namespaces.lines().filter(|l| !l.is_empty()) {
            let tasks = self.ctr(&["-n", ns, "task", "ls", "-q"]).stdout;
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["-n", ns, "task", "kill", "-s", "SIGKILL", id]);
                let _ = self.ctr(&["-n", ns, "task", "delete", "-f", id]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims left (a test that failed half-way) and their monitors, whose VMs end with them.
        for pid in pids_of(&self.dir.path().to_string_lossy(), "containerd-shim", true) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The snapshotter's mounts (and CRI's sandbox shm) under the temp dir.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| t.starts_with(&root))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Starts containerd on the config in `d` (inside `netns` if given), with our shim first on
/// its PATH and the shim's state root and vminitd in its environment (containerd passes it on
/// to shims).
fn spawn_containerd(d: &Path, netns: Option<&Netns>) -> Child {
    let shim_dir = Path::new(env!("CARGO_BIN_EXE_containerd-shim-container-v2"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        shim_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("containerd.log"))
        .expect("log");
    let spawn = move || {
        Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .env("CONTAINER_SHIM_ROOT", d.join("shim"))
            .env(testkit::VMINITD_VAR, testkit::static_vminitd())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd")
    };
    // Not `ip netns exec`: that would also give containerd a mount namespace of its own, whose
    // mounts (snapshots, CRI's sandbox network namespaces) the test could not see or clean up.
    // A child forked from a thread that entered the namespace is in it, and nothing else.
    match netns {
        Some(ns) => ns.run(spawn),
        None => spawn(),
    }
}

/// Pids of processes whose executable name contains `exe` and whose command line or
/// environment mentions `needle`, monitors left out.
pub fn pids_mentioning(needle: &str, exe: &str) -> Vec<i32> {
    pids_of(needle, exe, false)
}

/// [`pids_mentioning`], with the monitors (the shim binary in its other role) when `monitors`.
pub fn pids_of(needle: &str, exe: &str, monitors: bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.contains(exe) && !comm.starts_with(&exe[..exe.len().min(15)]) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        // The shim binary is also each container's monitor: those are not shims.
        if !monitors && String::from_utf8_lossy(&cmdline).contains(runtime::MONITOR_SUBCOMMAND) {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let hay = [cmdline, environ].concat();
        if String::from_utf8_lossy(&hay).contains(needle) {
            out.push(pid);
        }
    }
    out
}

pub fn processes_mentioning(needle: &str, exe: &str) -> usize {
    pids_mentioning(needle, exe).len()
}

/// Runs `cmd` to its end (killed and failed after [`TIMEOUT`]).
pub fn wait(mut cmd: Command) -> Out {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}
