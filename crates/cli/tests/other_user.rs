//! Another local user against a running container: the state directory and the monitor's
//! socket are its owner's alone (docs/security.md, "local users ↔ state directory"). The state
//! root is made world-readable first, as a root under /var/lib usually is, so that only the
//! runtime's own modes stand in the way.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::vm::{Env, IMAGE};

/// `nobody`: a uid and gid that own nothing here.
const NOBODY: &str = "65534";

/// `container --root ROOT ARGS…` as `nobody`, in the test's network namespace.
fn as_nobody(env: &Env, args: &[&str]) -> std::process::Output {
    // Into the namespace as root first: entering it takes privileges nobody lacks.
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &env.netns.name, "setpriv"]);
    // nobody has no home; the CLI must not need one to fail cleanly.
    c.env("HOME", "/nonexistent");
    let root = env.cli.root().to_str().unwrap().to_string();
    let mut all = vec!["--root", root.as_str()];
    all.extend_from_slice(args);
    setpriv(c, env!("CARGO_BIN_EXE_container"), &all)
}

/// `setpriv_command` (`setpriv`, possibly behind `ip netns exec`) running `prog ARGS…` as
/// nobody with no supplementary groups.
fn setpriv(mut setpriv_command: Command, prog: &str, args: &[&str]) -> std::process::Output {
    setpriv_command
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            prog,
        ])
        .args(args)
        .output()
        .expect("run setpriv")
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn another_user_cannot_reach_a_container() {
    let env = Env::new(true);
    let root = env.cli.root().to_path_buf();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.run(&[
        "run",
        "-d",
        "--name",
        "private",
        IMAGE,
        "sh",
        "-c",
        "echo secret-output; sleep 600",
    ])
    .success();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env
        .run(&["logs", "private"])
        .stdout
        .contains("secret-output")
    {
        assert!(Instant::now() < deadline, "no output from the container");
        std::thread::sleep(Duration::from_millis(200));
    }
    let id = env.inspect("private")["id"].as_str().unwrap().to_string();
    let dir = root.join("containers").join(&id);

    for args in [
        &["exec", "private", "cat", "/etc/hostname"][..],
        &["logs", "private"],
        &["attach", "private"],
        &["inspect", "private"],
        &["stop", "-t", "0", "private"],
        &["kill", "private"],
        &["rm", "-f", "private"],
        &["cp", "private:/etc/hostname", "/tmp/stolen"],
        &["stats", "--no-stream", "private"],
    ] {
        let out = as_nobody(&env, args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(
            out.status.code(),
            Some(0),
            "nobody could {args:?}: {stdout}"
        );
        assert!(!stdout.contains("secret-output"), "{args:?}: {stdout}");
        assert!(
            stderr.to_lowercase().contains("permission denied"),
            "{args:?} failed, but not for permissions: {stderr}"
        );
    }
    // Nor around the CLI: the container's files and its monitor's socket.
    let nobody = |prog: &str, args: &[&str]| setpriv(Command::new("setpriv"), prog, args);
    let dir_s = dir.to_str().unwrap();
    let listing = nobody("ls", &[root.join("containers").to_str().unwrap()]);
    assert!(!listing.status.success(), "nobody lists the containers");
    for file in ["state.json", "ctr.log", "boot.log", "rootfs.qcow2"] {
        let out = nobody("cat", &[&format!("{dir_s}/{file}")]);
        assert!(!out.status.success(), "nobody reads {file}");
    }
    let connect = nobody(
        "python3",
        &[
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
            &format!("{dir_s}/monitor.sock"),
        ],
    );
    assert!(!connect.status.success(), "nobody connects to the monitor");
    // And the container never noticed.
    assert_eq!(env.inspect("private")["status"], "running");
    env.run(&["exec", "private", "true"]).success();
}
