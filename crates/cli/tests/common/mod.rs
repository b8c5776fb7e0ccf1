//! Test support shared by the `container` integration tests (images, and later the runtime's).
//!
//! Use it from a test file with `mod common;`. What it gives, besides what it re-exports from
//! `testkit` (the [`Registry`], [`images`], [`netns`], [`kernel_deb`]):
//! - [`fake::FakeRegistry`]: a tiny HTTP registry serving canned answers, to tamper with
//!   digests and sizes, truncate downloads, serve malformed documents and require bearer tokens.
//! - [`Cli`]: runs the real `container` binary with a fresh `--root` temp dir.
//!
//! ```ignore
//! let reg = Registry::start();
//! let dir = tempfile::tempdir().unwrap();
//! let image = images::busybox(&dir.path().join("layout"));
//! images::push_with_skopeo(&image, &reg.reference("busybox:latest"));
//! let cli = Cli::new();
//! cli.run(&["image", "pull", "-q", &reg.reference("busybox")]).success();
//! cli.run(&["image", "pull", "nope"]).fails_with("not found"); // exit 125, one Error: line
//! ```

#![allow(dead_code)]

pub mod fake;
pub mod vm;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[allow(unused_imports)]
pub use testkit::{
    images, kernel_deb, netns, registry, run, sha256, static_fhprobe, tool, Registry,
};

/// The `container` binary with its own state directory (removed on drop unless given by the
/// test, see [`Cli::at`]).
pub struct Cli {
    root: PathBuf,
    /// Keeps a fresh root alive; `None` for a root the test owns.
    _temp: Option<tempfile::TempDir>,
    /// Network namespace every command runs in (`ip netns exec`), if any.
    netns: Option<String>,
    /// Environment every command gets.
    envs: Vec<(&'static str, OsString)>,
}

/// What a finished `container` run printed and returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the run exited 0.
    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run failed with exit 125 and one `Error:` line containing `needle`.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Run {
        assert_eq!(
            self.code, 125,
            "expected exit 125:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got: {}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("Error: "),
            "not an error line: {}",
            lines[0]
        );
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "error does not mention {needle:?}: {}",
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Cli {
    /// A fresh state directory.
    pub fn new() -> Cli {
        let temp = tempfile::tempdir().expect("temp dir");
        Cli {
            root: temp.path().to_path_buf(),
            _temp: Some(temp),
            netns: None,
            envs: Vec::new(),
        }
    }

    /// The state directory `root` (created), left in place on drop: for a root on a
    /// filesystem the test made and removes itself.
    pub fn at(root: &Path) -> Cli {
        std::fs::create_dir_all(root).expect("create the state dir");
        Cli {
            root: root.to_path_buf(),
            _temp: None,
            netns: None,
            envs: Vec::new(),
        }
    }

    /// Runs every later command inside network namespace `name`.
    pub fn in_netns(&mut self, name: &str) {
        self.netns = Some(name.to_string());
    }

    /// Sets `key` to `value` in the environment of every later command.
    pub fn env(&mut self, key: &'static str, value: impl Into<OsString>) {
        self.envs.push((key, value.into()));
    }

    /// The state directory (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store's OCI layout directory.
    pub fn layout(&self) -> PathBuf {
        self.root.join("content")
    }

    /// A `container --root <root> ARGS…` command, not yet run; HOME and DOCKER_CONFIG point
    /// into the state dir so the user's docker credentials never leak in.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_container")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_container")),
        };
        self.setup(&mut c, args);
        c
    }

    /// [`Cli::command`] in the host's network namespace even when the others run in one
    /// (e.g. to reach a registry on the host's loopback).
    pub fn host_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_container"));
        self.setup(&mut c, args);
        c
    }

    fn setup(&self, c: &mut Command, args: &[&str]) {
        c.arg("--root").arg(&self.root).args(args);
        c.env("HOME", &self.root)
            .env("DOCKER_CONFIG", self.root.join("docker"))
            .env_remove("CONTAINER_ROOT")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
    }

    /// Runs `container ARGS…` and collects its output.
    pub fn run(&self, args: &[&str]) -> Run {
        output(self.command(args).output().expect("run container"))
    }

    /// Runs `container ARGS…` with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn container");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        output(child.wait_with_output().expect("wait container"))
    }

    /// Names of blobs in the store.
    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.layout().join("blobs/sha256"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Files left in the ingest (temp) directory.
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.root.join("content-ingest"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Default for Cli {
    fn default() -> Self {
        Cli::new()
    }
}

fn output(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

/// A state root holding the guest kernel (set once per test binary from the .deb) and the init
/// filesystem cache; each test's root links to them instead of unpacking the kernel again.
pub fn shared_root() -> &'static std::path::Path {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kernel-root-{}", env!("CARGO_CRATE_NAME")));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_container"))
            .arg("--root")
            .arg(&root)
            .args(["system", "kernel", "set", "--deb"])
            .arg(kernel_deb())
            .output()
            .expect("run container system kernel set");
        assert!(
            o.status.success(),
            "kernel set: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::create_dir_all(root.join("initfs")).expect("create the initfs cache dir");
        root
    })
}

/// `f` until it gives a value, every 500 ms for up to 60 s (a server that starts, a port that
/// opens); None if it never did.
#[allow(dead_code)] // not every test binary retries
pub fn retry<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
