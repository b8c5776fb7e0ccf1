//! The runtime test environment shared by the VM test binaries: a fresh `--root` with the
//! shared kernel, the runtime test image (busybox plus a few applets, Env/Cmd/WorkingDir/User
//! set), commands that must end within [`TIMEOUT`], and containers force-deleted on drop.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use super::images::{self, LayerBuilder, LayoutWriter};
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
    _netns: Netns,
}

/// The test image as an OCI layout tarball: the busybox test layers plus a layer with more
/// applets and a non-executable script; config with Env, Cmd, WorkingDir and User.
pub fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-image");
        let _ = std::fs::remove_dir_all(&dir);
        let layout = build_image(&dir.join("layout"));
        let tar = dir.join("image.tar");
        super::tool(
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

pub fn build_image(layout: &Path) -> PathBuf {
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
pub const TIMEOUT: Duration = Duration::from_secs(180);

pub fn wait_output(mut cmd: Command) -> Run {
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
    pub fn new(load: bool) -> Env {
        let mut cli = Cli::new();
        let netns = Netns::new("run");
        cli.in_netns(&netns.name);
        let shared = super::shared_root();
        std::os::unix::fs::symlink(shared.join("kernels"), cli.root().join("kernels")).unwrap();
        std::os::unix::fs::symlink(shared.join("initfs"), cli.root().join("initfs")).unwrap();
        let env = Env { cli, _netns: netns };
        if load {
            env.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
                .ok();
        }
        env
    }

    pub fn run(&self, args: &[&str]) -> Run {
        wait_output(self.cli.command(args))
    }

    pub fn run_stdin(&self, args: &[&str], input: &'static str) -> Run {
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

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        self.run(&["inspect", name]).ok().json()[0].clone()
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
