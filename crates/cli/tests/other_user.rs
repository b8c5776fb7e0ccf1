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
fn setpriv(setpriv_command: Command, prog: &str, args: &[&str]) -> std::process::Output {
    setpriv_as(setpriv_command, NOBODY, prog, args)
}

/// [`setpriv`] as `uid` (its group the same number).
fn setpriv_as(
    mut setpriv_command: Command,
    uid: &str,
    prog: &str,
    args: &[&str],
) -> std::process::Output {
    setpriv_command
        .args(["--reuid", uid, "--regid", uid, "--clear-groups", "--", prog])
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

/// `/proc/PID/status` fields of a process, by name.
fn status_of(pid: u64) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// `prog ARGS…` as `uid` (its group the same number, no other group).
fn as_uid(uid: u32, prog: &str, args: &[&str]) -> std::process::Output {
    setpriv_as(Command::new("setpriv"), &uid.to_string(), prog, args)
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn each_vms_qemu_runs_as_a_uid_of_its_own_that_reaches_no_containers_files() {
    let env = Env::new(true);
    let root = env.cli.root().to_path_buf();
    // World-readable, as a root under /var/lib usually is: only the runtime's own modes and
    // QEMU's uid stand in the way.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f"), "from the host\n").unwrap();
    let bind = format!("{}:/mnt", share.path().display());
    env.run(&["volume", "create", "vol"]).success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "a",
        "-u",
        "0",
        "-v",
        &bind,
        "-v",
        "vol:/data",
        IMAGE,
        "sleep",
        "600",
    ])
    .success();
    env.run(&["run", "-d", "--name", "b", IMAGE, "sleep", "600"])
        .success();

    let qemu = |name: &str| env.inspect(name)["vmPid"].as_u64().expect("vmPid");
    let (qa, qb) = (qemu("a"), qemu("b"));
    let uid_of = |pid: u64| -> u32 {
        let s = status_of(pid);
        let ids: Vec<&str> = s["Uid"].split_whitespace().collect();
        assert!(
            ids.iter().all(|u| *u == ids[0]),
            "real, effective, saved, fs: {ids:?}"
        );
        let gids: Vec<&str> = s["Gid"].split_whitespace().collect();
        assert!(
            gids.iter().all(|g| *g == ids[0]),
            "its group is its uid: {gids:?}"
        );
        assert_eq!(s["Groups"], "", "no supplementary group");
        assert_eq!(s["CapEff"], "0000000000000000");
        assert_eq!(s["CapPrm"], "0000000000000000");
        assert_eq!(s["CapBnd"], "0000000000000000");
        assert_eq!(s["NoNewPrivs"], "1");
        assert_eq!(s["Seccomp"], "2", "QEMU's sandbox");
        ids[0].parse().unwrap()
    };
    let (ua, ub) = (uid_of(qa), uid_of(qb));
    assert!(ua >= 0x7000_0000 && ub >= 0x7000_0000, "{ua} {ub}");
    assert_ne!(ua, ub, "each VM has a uid of its own");

    // What QEMU holds, it got open from the monitor: its disks (overlay and the image's
    // shared rootfs under it), the volume, its console log.
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{qa}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    let id_a = env.inspect("a")["id"].as_str().unwrap().to_string();
    let id_b = env.inspect("b")["id"].as_str().unwrap().to_string();
    let dir_a = root.join("containers").join(&id_a);
    let dir_b = root.join("containers").join(&id_b);
    for want in ["rootfs.qcow2", "boot.log"] {
        let want = dir_a.join(want).display().to_string();
        assert!(held.contains(&want), "QEMU of a holds no {want}: {held:?}");
    }
    assert!(
        held.iter()
            .any(|p| p.contains("/rootfs/") && p.ends_with(".ext4")),
        "{held:?}"
    );
    assert!(held.iter().any(|p| p.contains("/volumes/")), "{held:?}");
    // The command line still says whose VM it is (ps, and the tests' leak checks).
    let cmd = std::fs::read(format!("/proc/{qa}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmd).contains(&dir_a.display().to_string()));

    // As a's QEMU user, nothing of the state directory opens: not b's disk, not a's own (it
    // only ever gets it as a descriptor), not b's agent socket, not the volume's image.
    let a_user = |prog: &str, args: &[&str]| as_uid(ua, prog, args);
    for file in [
        dir_b.join("rootfs.qcow2"),
        dir_a.join("rootfs.qcow2"),
        dir_b.join("state.json"),
    ] {
        let out = a_user("cat", &[file.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "a's QEMU user reads {}",
            file.display()
        );
    }
    let listing = a_user("ls", &[root.join("containers").to_str().unwrap()]);
    assert!(
        !listing.status.success(),
        "a's QEMU user lists the containers"
    );
    let volumes = a_user(
        "find",
        &[root.join("volumes").to_str().unwrap(), "-type", "f"],
    );
    let found = String::from_utf8_lossy(&volumes.stdout);
    for image in found.lines() {
        assert!(
            !a_user("cat", &[image]).status.success(),
            "a's QEMU user reads the volume image {image}"
        );
    }
    let connect = a_user(
        "python3",
        &[
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
            &format!("{}/agent.sock", dir_b.display()),
        ],
    );
    assert!(
        !connect.status.success(),
        "a's QEMU user connects to b's agent"
    );

    // And everything handed over works: the bind both ways, the volume, the network, the
    // agent; a restarted VM takes a uid again.
    let out = env
        .run(&[
            "exec", "a", "sh", "-c",
            "cat /mnt/f && echo back > /mnt/g && echo kept > /data/k && cat /data/k && ip -4 addr show eth0",
        ])
        .success();
    assert!(
        out.stdout.contains("from the host") && out.stdout.contains("kept"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("inet "), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(share.path().join("g")).unwrap(),
        "back\n"
    );
    env.run(&["stop", "-t", "1", "a"]).success();
    env.run(&["start", "a"]).success();
    let again = uid_of(qemu("a"));
    assert!(again >= 0x7000_0000 && again != ub, "{again}");
    assert_eq!(
        env.run(&["exec", "a", "cat", "/data/k"])
            .success()
            .stdout
            .trim(),
        "kept"
    );

    // The setting: CONTAINER_QEMU_USER=invoker runs QEMU as the invoking user (root here,
    // still without capabilities), as before.
    let mut invoker = env
        .cli
        .command(&["run", "-d", "--name", "c", IMAGE, "sleep", "600"]);
    invoker.env("CONTAINER_QEMU_USER", "invoker");
    common::vm::wait_output(invoker).success();
    let s = status_of(qemu("c"));
    assert!(
        s["Uid"].split_whitespace().all(|u| u == "0"),
        "{}",
        s["Uid"]
    );
    assert_eq!(s["CapEff"], "0000000000000000");
    let bad = env.cli.command(&["run", "--rm", IMAGE, "true"]);
    let mut bad = bad;
    bad.env("CONTAINER_QEMU_USER", "everyone");
    let out = common::vm::wait_output(bad);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("CONTAINER_QEMU_USER=\"everyone\": expected own, invoker or FIRST-LAST"),
        "{}",
        out.stderr
    );
    env.run(&["rm", "-f", "a", "b", "c"]).success();
}
