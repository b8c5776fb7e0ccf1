//! Test fixtures: a busybox-static root filesystem and a vminitd process serving a socket.

#![allow(dead_code)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use agent::{Client, CreateProcess, ExitStatus, ProcessSpec};

/// Applets linked in the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "id", "ls", "sleep", "stty", "true", "false", "hostname", "env", "pwd",
    "grep", "head", "wc", "date", "ip", "yes",
];

/// Builds a minimal rootfs at `root` from Debian's busybox-static.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    for a in APPLETS {
        symlink("busybox", bin.join(a)).unwrap();
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "root", "home/alice"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n",
    )
    .unwrap();
    let notexec = bin.join("notexec");
    std::fs::write(&notexec, "#!/bin/sh\necho no\n").unwrap();
    std::fs::set_permissions(&notexec, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A `vminitd --listen` child, killed on drop.
pub struct Server {
    pub child: Child,
    pub socket: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(dir: &Path) -> Server {
    start_server_from(Path::new(env!("CARGO_BIN_EXE_vminitd")), dir)
}

/// [`start_server`] with the vminitd binary at `exe` (the static one, for what execs vminitd
/// again inside a container, where a dynamically linked build finds no loader).
pub fn start_server_from(exe: &Path, dir: &Path) -> Server {
    let socket = dir.join("agent.sock");
    let child = Command::new(exe)
        .arg("--listen")
        .arg(&socket)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .spawn()
        .expect("spawn vminitd");
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Server { child, socket }
}

pub async fn connect(socket: &Path) -> Client {
    // The socket file appears at bind(), a moment before listen(): retry refusals briefly.
    let mut tries = 0;
    let s = loop {
        match tokio::net::UnixStream::connect(socket).await {
            Ok(s) => break s,
            Err(e) if tries < 200 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("connect to vminitd: {e}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), Client::connect(s))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

pub fn process(args: &[&str]) -> ProcessSpec {
    ProcessSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn create(container: &str, rootfs: Option<&Path>, process: ProcessSpec) -> CreateProcess {
    CreateProcess {
        container: container.into(),
        rootfs: rootfs.map(|r| r.to_string_lossy().into_owned()),
        hostname: Some("testhost".into()),
        readonly_rootfs: false,
        privileged: false,
        mounts: vec![],
        remove_stubs: false,
        own_network: false,
        process,
        ..Default::default()
    }
}

/// Creates, attaches, starts and waits; returns (stdout, stderr, status).
pub async fn run(
    c: &Client,
    req: CreateProcess,
) -> Result<(String, String, ExitStatus), agent::ClientError> {
    let h = c.create_process(req).await?;
    let mut out = c.stdout(h);
    let mut err = c.stderr(h);
    c.start(h).await?;
    let status = c.wait(h).await?;
    let o = String::from_utf8_lossy(&out.read_to_end().await).into_owned();
    let e = String::from_utf8_lossy(&err.read_to_end().await).into_owned();
    Ok((o, e, status))
}
