//! How containers stop and start again, through the real binary and real VMs: `--init`,
//! `--stop-signal`/`--stop-timeout` (and an image's StopSignal) against `stop -s/-t`,
//! `restart`, the verbs that take several containers working on them at once, `--all`, and
//! docker's idempotency (`start` of a running container, `rm X X`).

mod common;

use std::time::{Duration, Instant};

use common::images;
use common::vm::{Env, IMAGE};
use serde_json::json;

/// Runs `container ARGS…`, returning what it printed and how long it took.
fn timed(env: &Env, args: &[&str]) -> (common::Run, Duration) {
    let t = Instant::now();
    let r = env.run(args);
    (r, t.elapsed())
}

/// `run -d --name NAME FLAGS… IMAGE CMD…`, which must succeed.
fn run_detached(env: &Env, name: &str, flags: &[&str], cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend(flags);
    args.push(IMAGE);
    args.extend(cmd);
    env.run(&args).success();
}

/// Waits until the container's log holds `times` lines `line` (its process, in its run
/// `times`, is past its set-up).
fn wait_for_log(env: &Env, name: &str, line: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = || {
        let logs = env.run(&["logs", name]).success().stdout;
        logs.lines().filter(|l| *l == line).count()
    };
    while seen() < times {
        assert!(Instant::now() < deadline, "{name} never logged {line:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exit_code(env: &Env, name: &str) -> i64 {
    let info = env.inspect(name);
    assert_eq!(info["status"], "exited", "{info}");
    info["exitCode"].as_i64().unwrap()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn init_makes_a_sleep_stop_at_once_and_without_it_stop_waits_its_timeout() {
    let env = Env::new(true);
    run_detached(&env, "with-init", &["--init"], &["sleep", "600"]);
    run_detached(&env, "plain", &[], &["sleep", "600"]);
    let info = env.inspect("with-init");
    assert_eq!(info["HostConfig"]["Init"], true, "{info}");
    assert_eq!(env.inspect("plain")["HostConfig"]["Init"], json!(null));

    // The init is PID 1, the command its child; the container's command is still the image's
    // and the flags', as docker shows it.
    let r = env
        .run(&["exec", "with-init", "cat", "/proc/1/cmdline"])
        .success();
    let argv: Vec<&str> = r.stdout.split_terminator('\0').collect();
    assert_eq!(argv, ["vminitd-init", "--", "sleep", "600"]);
    assert_eq!(
        (&info["Path"], &info["Args"]),
        (&json!("sleep"), &json!(["600"]))
    );

    // SIGTERM reaches `sleep` through the init: 128+15 at once (docker --init: 143).
    let (r, fast) = timed(&env, &["stop", "with-init"]);
    r.success();
    assert!(fast < Duration::from_secs(2), "stop took {fast:?}");
    assert_eq!(exit_code(&env, "with-init"), 143);

    // Without it, `sleep` is PID 1 and ignores SIGTERM: stop waits its timeout, then kills.
    let (r, took) = timed(&env, &["stop", "-t", "2", "plain"]);
    r.success();
    assert!(took >= Duration::from_secs(2), "stop took {took:?}");
    assert_eq!(exit_code(&env, "plain"), 137);
    println!("stop with --init: {fast:?}; without, -t 2: {took:?}");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn the_stop_signal_reaches_a_trap_and_stop_s_overrides_it() {
    let env = Env::new(true);
    let script = "trap 'echo got INT; exit 3' INT; trap 'echo got USR1; exit 4' USR1; \
                  echo ready; while true; do sleep 0.1; done";
    run_detached(
        &env,
        "trap",
        &["--stop-signal", "SIGINT", "--stop-timeout", "30"],
        &["sh", "-c", script],
    );
    let c = &env.inspect("trap")["Config"];
    assert_eq!(
        (&c["StopSignal"], &c["StopTimeout"]),
        (&json!("SIGINT"), &json!(30))
    );
    wait_for_log(&env, "trap", "ready", 1);
    let (r, took) = timed(&env, &["stop", "trap"]);
    assert_eq!(r.success().stdout, "trap\n");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert_eq!(exit_code(&env, "trap"), 3);
    assert!(env.run(&["logs", "trap"]).stdout.ends_with("got INT\n"));

    // `stop -s` (Apple's flag) overrides the container's signal.
    env.run(&["start", "trap"]).success();
    wait_for_log(&env, "trap", "ready", 2);
    env.run(&["stop", "-s", "USR1", "trap"]).success();
    assert_eq!(exit_code(&env, "trap"), 4);

    // An image's StopSignal is the container's unless --stop-signal says otherwise.
    let dir = env.cli.root().join("stopsignal-image");
    let tar = images::archive(
        &dir,
        "localhost/stopsignal:1",
        &images::busybox_with(&[], |l| l),
        json!({
            "Env": ["PATH=/bin"],
            "Cmd": ["sh", "-c", script],
            "StopSignal": "SIGUSR1",
        }),
    );
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();
    env.run(&["run", "-d", "--name", "img", "localhost/stopsignal:1"])
        .success();
    assert_eq!(env.inspect("img")["Config"]["StopSignal"], "SIGUSR1");
    wait_for_log(&env, "img", "ready", 1);
    env.run(&["stop", "img"]).success();
    assert_eq!(exit_code(&env, "img"), 4);
    let id = env
        .run(&["create", "--stop-signal", "2", "localhost/stopsignal:1"])
        .success()
        .stdout;
    assert_eq!(env.inspect(id.trim())["Config"]["StopSignal"], "2");
    env.run(&["create", "--stop-signal", "SIGNOPE", IMAGE])
        .fails_with("invalid signal");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn several_containers_stop_start_and_die_at_once() {
    let env = Env::new(true);
    let names = ["p1", "p2", "p3"];
    for n in names {
        env.run(&["create", "--name", n, IMAGE, "sleep", "600"])
            .success();
    }
    let (r, took) = timed(&env, &["start", "p1", "p2", "p3"]);
    assert_eq!(r.success().stdout, "p1\np2\np3\n");
    println!("start of 3: {took:?}");
    // Already running: fine, as docker's start.
    assert_eq!(env.run(&["start", "p2", "p1"]).success().stdout, "p2\np1\n");

    // Each ignores SIGTERM (PID 1 without an init): the three timeouts run side by side.
    let (r, took) = timed(&env, &["stop", "-t", "2", "p1", "p2", "p3"]);
    assert_eq!(r.success().stdout, "p1\np2\np3\n");
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(5)).contains(&took),
        "stop of 3 took {took:?}"
    );
    println!("stop -t 2 of 3: {took:?}");
    for n in names {
        assert_eq!(exit_code(&env, n), 137);
    }
    // Stopping a stopped container is fine too; an unknown name fails alone, in its place.
    let r = env.run(&["stop", "p1", "nosuch", "p2"]);
    assert_eq!((r.code, r.stdout.as_str()), (125, "p1\np2\n"), "{r:?}");
    assert_eq!(r.stderr.trim(), "Error: no such container: nosuch");

    // --all: stop and kill take the running ones, rm skips them without -f.
    env.run(&["start", "p1", "p2"]).success();
    let r = env.run(&["rm", "--all"]).success();
    assert_eq!(r.stdout, "p3\n");
    let (r, took) = timed(&env, &["kill", "-a"]);
    assert_eq!(r.success().stdout, "p1\np2\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.run(&["ls", "-q"]).success().stdout.is_empty() {
        assert!(Instant::now() < deadline, "kill -a left containers running");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("kill -a of 2: {took:?}");
    env.run(&["start", "p1"]).success();
    env.run(&["stop", "-a", "-t", "0"]).success();
    assert_eq!(env.run(&["ls", "-q"]).success().stdout, "");
    env.run(&["start", "p1", "p2"]).success();
    let (r, took) = timed(&env, &["rm", "-af"]);
    assert_eq!(r.success().stdout, "p1\np2\n");
    println!("rm -af of 2 running: {took:?}");
    assert_eq!(env.run(&["ls", "-aq"]).success().stdout, "");
    assert_eq!(env.qemus(), 0);

    // `rm X X` removes X once; the second finds no such container (docker's answer).
    env.run(&["create", "--name", "twice", IMAGE]).success();
    let r = env.run(&["rm", "twice", "twice"]);
    assert_eq!((r.code, r.stdout.as_str()), (125, "twice\n"), "{r:?}");
    assert_eq!(r.stderr.trim(), "Error: no such container: twice");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn restart_starts_a_new_run_under_the_same_name() {
    let env = Env::new(true);
    run_detached(&env, "r1", &["--init"], &["sleep", "600"]);
    env.run(&["create", "--name", "r2", IMAGE, "sleep", "600"])
        .success();
    let before = env.inspect("r1");
    let (r, took) = timed(&env, &["restart", "r1", "r2"]);
    assert_eq!(r.success().stdout, "r1\nr2\n");
    println!("restart of 2: {took:?}");
    let after = env.inspect("r1");
    assert_eq!(
        (&after["status"], &after["Name"], &after["Id"]),
        (&json!("running"), &json!("/r1"), &before["Id"])
    );
    assert_ne!(after["State"]["StartedAt"], before["State"]["StartedAt"]);
    assert_eq!(after["State"]["ExitCode"], 0, "{after}");
    // Created, never run: restart starts it.
    assert_eq!(env.inspect("r2")["status"], "running");

    // An --rm container is kept across its restart, as docker keeps it, and still goes at
    // its end.
    run_detached(&env, "gone", &["--rm", "--init"], &["sleep", "600"]);
    env.run(&["restart", "-t", "1", "gone"]).success();
    assert_eq!(env.inspect("gone")["status"], "running");
    env.run(&["stop", "gone"]).success();
    env.run(&["inspect", "gone"])
        .fails_with("no such container");
    env.run(&["restart", "nosuch"])
        .fails_with("no such container");
}

/// A guest that no longer answers (its VM's vCPUs stopped with SIGSTOP, as a hung or hostile
/// guest would leave its agent) does not keep its container from stopping: after the grace
/// period and a bounded wait for the SIGKILL, the VM is killed from the host and the container
/// ends as SIGKILL ends it.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn stop_of_a_guest_that_does_not_answer_kills_its_vm() {
    let env = Env::new(true);
    run_detached(&env, "hung", &[], &["sleep", "600"]);
    let pid = env.inspect("hung")["vmPid"].as_i64().expect("vmPid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("SIGSTOP the VM");
    let (r, took) = timed(&env, &["stop", "-t", "1", "hung"]);
    r.success();
    println!("stop of a guest that does not answer: {took:?}");
    // Grace 1 s, SIGKILL answer at most 5 s, its effect at most 5 s, then the VM's kill.
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    assert_eq!(exit_code(&env, "hung"), 137);
    assert_eq!(env.qemus(), 0, "the VM outlived the stop");
    env.run(&["rm", "hung"]).success();
}
