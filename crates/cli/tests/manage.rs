//! docker's other lifecycle verbs through the real binary and real VMs: `pause`/`unpause`
//! (the whole VM frozen; a signal that docker leaves pending waits for `unpause`, `stop`
//! thaws first), `top`, `rename`, `attach`, `wait`, `export` and `container prune`. Each test
//! groups its checks on as few containers as possible: every boot costs about a second here.

mod common;

use std::time::{Duration, Instant};

use common::vm::{Env, IMAGE};

/// Waits until the container's log holds `line`.
fn wait_for_log(env: &Env, name: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env
        .run(&["logs", name])
        .success()
        .stdout
        .lines()
        .any(|l| l == line)
    {
        assert!(Instant::now() < deadline, "{name} never logged {line:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn pause_top_rename_stop_export_prune_on_one_container() {
    let env = Env::tagged("manage", true);
    // A stop signal of its own: docker then leaves other signals pending while paused.
    let script = "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 1; done";
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "a",
        "--stop-signal",
        "USR2",
        IMAGE,
        "sh",
        "-c",
        script,
    ])
    .success();
    wait_for_log(&env, "a", "ready");
    let id = env.inspect("a")["Id"].as_str().unwrap().to_string();

    // top: ps -ef's columns, the container's own pids (its shell is 1), the image's user
    // (uid 1000) by its name in the image's /etc/passwd.
    let top = env.run(&["top", "a"]).success().stdout;
    let mut lines = top.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "{top}"
    );
    let first: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!((first[0], first[1], first[2]), ("user", "1", "0"), "{top}");
    assert_eq!(&first[7..9], ["sh", "-c"], "{top}");
    let aux = env.run(&["top", "a", "aux"]).success().stdout;
    assert!(aux.starts_with("USER "), "{aux}");
    assert!(aux.contains(" %MEM "), "{aux}");
    let pids = env.run(&["top", "a", "-o", "pid"]).success().stdout;
    assert!(pids.starts_with("PID\n1\n"), "{pids}");
    env.run(&["top", "a", "-L"])
        .fails_with("unsupported ps options");

    // rename while running: the name changes, the hostname does not.
    env.run(&["rename", "a", "b"]).success();
    assert_eq!(env.inspect("b")["Name"], "/b");
    let host = env.run(&["exec", "b", "hostname"]).success().stdout;
    assert_eq!(host.trim(), &id[..12]);
    env.run(&["rename", "b", "b"])
        .fails_with("same name as its current name");
    env.run(&["rename", "b", "bad name"])
        .fails_with("invalid container name");

    // pause: docker's State, the list's status and filter, refusals.
    env.run(&["pause", "b"]).success();
    let info = env.inspect("b");
    let state = &info["State"];
    assert_eq!(
        (&state["Status"], &state["Paused"], &state["Running"]),
        (&"paused".into(), &true.into(), &true.into()),
        "{info}"
    );
    let ls = env.run(&[
        "ls",
        "-f",
        "status=paused",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ls.success().stdout.contains("b Up"),
        "paused container not listed"
    );
    let ls = env
        .run(&["ls", "-a", "--format", "{{.Status}}"])
        .success()
        .stdout;
    assert!(ls.contains("(Paused)"), "{ls}");
    assert!(env
        .run(&["ls", "-q", "-f", "status=running"])
        .success()
        .stdout
        .is_empty());
    env.run(&["pause", "b"]).fails_with("already paused");
    env.run(&["exec", "b", "true"]).fails_with("paused");
    env.run(&["top", "b"]).fails_with("paused");
    env.run(&["stats", "--no-stream", "b"]).success();

    // A signal that is not its stop signal waits for unpause, as in docker's frozen cgroup.
    env.run(&["kill", "-s", "USR1", "b"]).success();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.inspect("b")["State"]["Paused"], true);
    assert!(!env
        .run(&["logs", "b"])
        .success()
        .stdout
        .contains("got-usr1"));
    env.run(&["unpause", "b"]).success();
    wait_for_log(&env, "b", "got-usr1");
    assert_eq!(env.inspect("b")["State"]["Status"], "running");
    env.run(&["unpause", "b"]).fails_with("is not paused");

    // stop of a paused container thaws it first; the shell (PID 1, no USR2 handler) dies by
    // the SIGKILL after the timeout: 137, which `wait` reports.
    env.run(&["pause", "b"]).success();
    env.run(&["stop", "-t", "1", "b"]).success();
    let info = env.inspect("b");
    assert_eq!(
        (
            &info["State"]["Status"],
            &info["State"]["Paused"],
            &info["State"]["ExitCode"]
        ),
        (&"exited".into(), &false.into(), &137.into()),
        "{info}"
    );
    assert_eq!(env.run(&["wait", "b"]).success().stdout, "137\n");
    env.run(&["pause", "b"]).fails_with("not running");

    // export of the stopped container: its root filesystem, nothing mounted over it.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("b.tar");
    env.run(&["export", "-o", tar.to_str().unwrap(), "b"])
        .success();
    let list = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(list.status.success());
    let names = String::from_utf8(list.stdout).unwrap();
    assert!(names.lines().any(|l| l == "bin/"), "{names}");
    assert!(names.lines().any(|l| l == "bin/sh"), "{names}");
    assert!(!names.lines().any(|l| l.starts_with("proc/1")), "{names}");
    assert!(!names.lines().any(|l| l.starts_with('/')), "{names}");
    let (code, out, _) = env.run_bytes(&["export", "b"], None);
    assert_eq!(code, 0);
    assert_eq!(out, std::fs::read(&tar).unwrap());

    // prune: the stopped container goes, docker's report.
    let r = env.run(&["prune", "-f"]).success().stdout;
    assert!(
        r.starts_with(&format!(
            "Deleted Containers:\n{id}\n\nTotal reclaimed space: "
        )),
        "{r}"
    );
    assert!(env.run(&["ls", "-a", "-q"]).success().stdout.is_empty());
    let r = env.run(&["prune", "-f"]).success().stdout;
    assert_eq!(r, "Total reclaimed space: 0B\n");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn attach_and_wait_give_the_exit_code() {
    let env = Env::tagged("attach", true);
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "w",
        IMAGE,
        "sh",
        "-c",
        "sleep 2; echo hello; echo oops >&2; exit 3",
    ])
    .success();
    // attach: the process's output here, then its exit code.
    let r = env.run(&["attach", "--no-stdin", "w"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("hello\n", "oops\n")
    );
    // wait: not-running returns at once for an exited container, with its code.
    assert_eq!(env.run(&["wait", "w", "w"]).success().stdout, "3\n3\n");
    env.run(&["attach", "w"]).fails_with("not running");
    env.run(&["wait", "--condition", "sometime", "w"])
        .fails_with("invalid");
    let r = env.run(&["wait", "nosuch"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("no such container: nosuch"), "{r:?}");

    // next-exit waits for a run that has not started yet; removed for the deletion.
    let waiter = {
        let cmd = env_command(&env, &["wait", "--condition", "next-exit", "w"]);
        std::thread::spawn(move || common::vm::wait_output(cmd))
    };
    std::thread::sleep(Duration::from_millis(300));
    env.run(&["start", "w"]).success();
    let r = waiter.join().unwrap().success();
    assert_eq!(r.stdout, "3\n");
    let remover = {
        let cmd = env_command(&env, &["wait", "--condition", "removed", "w"]);
        std::thread::spawn(move || common::vm::wait_output(cmd))
    };
    std::thread::sleep(Duration::from_millis(300));
    env.run(&["rm", "w"]).success();
    assert_eq!(remover.join().unwrap().success().stdout, "3\n");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn events_replay_follow_and_filter_the_lifecycle() {
    let env = Env::tagged("events", true);
    // A follower started before anything happens sees it as it happens.
    let mut follower = KillOnDrop(
        env.cli
            .command(&[
                "events",
                "--filter",
                "type=container",
                "--format",
                "{{.Action}} {{.Actor.Attributes.name}}",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let t0 = env
        .run(&["events", "--until", "0", "--since", "0"])
        .success();
    assert_eq!(t0.stdout, "", "nothing before the first event");
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "ev",
        "--label",
        "app=x",
        IMAGE,
        "sleep",
        "30",
    ])
    .success();
    env.run(&["rename", "ev", "ev2"]).success();
    env.run(&["pause", "ev2"]).success();
    env.run(&["unpause", "ev2"]).success();
    env.run(&["kill", "ev2"]).success();
    env.run(&["wait", "ev2"]).success();
    env.run(&["rm", "ev2"]).success();
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        "once",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(r.code, 3, "{r:?}");

    let history = env
        .run(&[
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "--filter",
            "type=container",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ])
        .success()
        .stdout;
    // A missing attribute renders as Go's `<no value>`.
    let lines: Vec<String> = history
        .lines()
        .map(|l| l.replace(" <no value>", ""))
        .collect();
    assert_eq!(
        lines,
        [
            "container create ev",
            "container start ev",
            "container rename ev2",
            "container pause ev2",
            "container unpause ev2",
            "container kill ev2",
            "container die ev2 137",
            "container destroy ev2",
            "container create once",
            "container start once",
            "container die once 3",
            "container destroy once",
        ],
        "{history}"
    );
    // Filters: by label (docker gives a container's labels as attributes), by event.
    let r = env
        .run(&[
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "-f",
            "label=app=x",
            "-f",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .success();
    assert_eq!(r.stdout, "ev2\n");
    let r = env
        .run(&[
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "-f",
            "container=once",
            "--format",
            "json",
        ])
        .success();
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], "create");
    assert_eq!(first["Actor"]["Attributes"]["name"], "once");
    env.run(&["events", "-f", "colour=red"])
        .fails_with("colour");
    env.run(&["events", "--since", "yesterday"])
        .fails_with("--since");

    // The follower saw the same, live; it stops on its signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = follower.0.stdout.take().unwrap();
    let seen = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.contains("destroy once") {
            match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    while !seen.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(follower);
    let seen = seen.join().unwrap();
    assert!(seen.starts_with("create ev\nstart ev\n"), "{seen}");
    assert!(seen.contains("destroy once"), "{seen}");
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command `env.run(args)` would run, to run it on another thread.
fn env_command(env: &Env, args: &[&str]) -> std::process::Command {
    env.cli.command(args)
}
