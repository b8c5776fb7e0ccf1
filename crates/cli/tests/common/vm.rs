//! The runtime test environment shared by the VM test binaries: a fresh `--root` with the
//! shared kernel, the runtime test image (busybox plus a few applets, Env/Cmd/WorkingDir/User
//! set), commands that must end within [`TIMEOUT`], and containers force-deleted on drop.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use super::images;
use super::netns::Netns;
use super::{Cli, Run};

/// The image every test runs.
pub const IMAGE: &str = "localhost/runtime-test:1";

/// A state root with the shared kernel and the test image, whose containers are force-deleted
/// on drop.
pub struct Env {
    /// The CLI on the fresh root.
    pub cli: Cli,
    /// Containers join the default network: each test runs in its own namespace.
    pub netns: Netns,
}

/// The test image as an OCI archive: the busybox test layers plus a layer with more applets
/// and a non-executable script; config with Env, Cmd, WorkingDir and User.
pub fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-image");
        let _ = std::fs::remove_dir_all(&dir);
        images::archive(&dir, IMAGE, &layers(), config())
    })
}

/// The test image as an OCI layout at `layout` (to push to a registry).
pub fn build_image(layout: &Path) -> PathBuf {
    images::layout(layout, IMAGE, &layers(), config())
}

/// Builds the test image as an OCI layout at `layout` and pushes it to `registry` as `name`
/// with skopeo; returns its reference there.
pub fn push_image(registry: &super::Registry, layout: &Path, name: &str) -> String {
    build_image(layout);
    let reference = registry.reference(name);
    super::tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{IMAGE}", layout.display()),
            &format!("docker://{reference}"),
        ],
    );
    reference
}

fn layers() -> Vec<images::Layer> {
    let applets = [
        "uname", "grep", "tty", "stty", "hostname", "pwd", "kill", "head", "mount",
    ];
    images::busybox_with(&applets, |l| {
        l.file("bin/notexec.sh", b"#!/bin/sh\necho no\n", 0o644, 0, 0)
    })
}

fn config() -> serde_json::Value {
    json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TESTVAR=hello", "OVERRIDE=image"],
        "Cmd": ["sh", "-c", "echo default cmd; id -u; pwd; echo $TESTVAR"],
        "WorkingDir": "/data",
        "User": "1000:1000",
    })
}

/// Everything `container` runs in tests must end: a hung VM fails the test instead of the suite.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `cmd` to its end (killed and failed after [`TIMEOUT`]), capturing its output.
pub fn wait_output(cmd: Command) -> Run {
    let (code, stdout, stderr) = wait_bytes(cmd, None);
    Run {
        code,
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// [`wait_output`] failing after `timeout` instead of [`TIMEOUT`]: for a command that hangs
/// when what it tests is broken, so the test fails fast.
pub fn wait_output_within(cmd: Command, timeout: Duration) -> Run {
    let (code, stdout, stderr) = wait_bytes_within(cmd, None, timeout);
    Run {
        code,
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// [`wait_output`] with `input` fed to its stdin, output as bytes.
pub fn wait_bytes(cmd: Command, input: Option<Vec<u8>>) -> (i32, Vec<u8>, Vec<u8>) {
    wait_bytes_within(cmd, input, TIMEOUT)
}

fn wait_bytes_within(
    cmd: Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> (i32, Vec<u8>, Vec<u8>) {
    let what = format!("{cmd:?}");
    try_wait_bytes(cmd, input, timeout)
        .unwrap_or_else(|| panic!("container {what} did not finish within {timeout:?}"))
}

/// Runs `cmd` to its end, or kills it after `timeout` and returns `None`.
fn try_wait_bytes(
    mut cmd: Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> Option<(i32, Vec<u8>, Vec<u8>)> {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn container");
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let t_out = drain(Box::new(child.stdout.take().unwrap()));
    let t_err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some((
        status.code().unwrap_or(-1),
        t_out.join().unwrap(),
        t_err.join().unwrap(),
    ))
}

impl Env {
    /// A fresh root with the kernel linked in and, if `load`, the test image loaded.
    pub fn new(load: bool) -> Env {
        Env::tagged("run", load)
    }

    /// [`Env::new`] with the network namespace's name starting with `tag`.
    pub fn tagged(tag: &str, load: bool) -> Env {
        Env::with_cli(tag, Cli::new(), load)
    }

    /// [`Env::tagged`] on the state directory `root` (which the test removes itself), e.g.
    /// on a small filesystem of its own; the kernel is linked in from the shared root, so it
    /// takes no space there.
    pub fn at(tag: &str, root: &Path, load: bool) -> Env {
        Env::with_cli(tag, Cli::at(root), load)
    }

    fn with_cli(tag: &str, mut cli: Cli, load: bool) -> Env {
        let netns = Netns::new(tag);
        cli.in_netns(&netns.name);
        cli.env(testkit::VMINITD_VAR, testkit::static_vminitd());
        let shared = super::shared_root();
        std::os::unix::fs::symlink(shared.join("kernels"), cli.root().join("kernels")).unwrap();
        std::os::unix::fs::symlink(shared.join("initfs"), cli.root().join("initfs")).unwrap();
        // Templates are keyed by the VM's shape: every test's VMs can share them.
        std::fs::create_dir_all(shared.join("templates")).unwrap();
        std::os::unix::fs::symlink(shared.join("templates"), cli.root().join("templates")).unwrap();
        let env = Env { cli, netns };
        if load {
            env.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
                .success();
        }
        env
    }

    pub fn run(&self, args: &[&str]) -> Run {
        wait_output(self.cli.command(args))
    }

    pub fn run_stdin(&self, args: &[&str], input: &'static str) -> Run {
        let (code, stdout, stderr) =
            wait_bytes(self.cli.command(args), Some(input.as_bytes().to_vec()));
        Run {
            code,
            stdout: String::from_utf8_lossy(&stdout).into(),
            stderr: String::from_utf8_lossy(&stderr).into(),
        }
    }

    /// `container ARGS…` with `input` on stdin, output as bytes (tar streams).
    pub fn run_bytes(&self, args: &[&str], input: Option<Vec<u8>>) -> (i32, Vec<u8>, Vec<u8>) {
        wait_bytes(self.cli.command(args), input)
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        self.run(&["inspect", name]).success().json()[0].clone()
    }

    pub fn container_dirs(&self) -> Vec<PathBuf> {
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
    pub fn qemus(&self) -> usize {
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

impl Env {
    /// [`Env::run`] that gives up (empty output) instead of panicking on a timeout: a panic in
    /// a destructor while a failed test unwinds aborts the whole binary, skipping every other
    /// cleanup.
    fn cleanup_run(&self, args: &[&str]) -> Run {
        let (code, stdout, stderr) =
            try_wait_bytes(self.cli.command(args), None, TIMEOUT).unwrap_or((-1, vec![], vec![]));
        Run {
            code,
            stdout: String::from_utf8_lossy(&stdout).into(),
            stderr: String::from_utf8_lossy(&stderr).into(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Pods first: a pod's VM is not removed while containers run in it.
        let pods = self.cleanup_run(&["pod", "ls", "-q"]).stdout;
        let pods: Vec<&str> = pods.lines().collect();
        if !pods.is_empty() {
            let mut args = vec!["pod", "rm", "-f"];
            args.extend(pods);
            self.cleanup_run(&args);
        }
        let ids = self.cleanup_run(&["list", "-a", "-q"]).stdout;
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["delete", "-f"];
            args.extend(ids);
            self.cleanup_run(&args);
        }
    }
}
