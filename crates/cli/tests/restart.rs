//! Restart policies through the real binary and real VMs: `on-failure:N` gives up after N
//! restarts, `always` brings a container back when its VM is killed under it, a user's
//! `stop` ends that, and `start --all-restartable` (what a boot unit runs) starts what the
//! policies would have restarted had their monitors been there. Every container here is on
//! `--network none`: restarts are about the VM, and each boot under TCG costs about a second.

mod common;

use std::time::{Duration, Instant};

use common::vm::{Env, IMAGE};
use serde_json::{json, Value};

/// `run -d --network none --name NAME FLAGS… IMAGE CMD…`, which must succeed.
fn run_detached(env: &Env, name: &str, flags: &[&str], cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    args.extend(flags);
    args.push(IMAGE);
    args.extend(cmd);
    env.run(&args).success();
}

/// Polls `inspect NAME` until `ok` holds for it (60 s at most); returns that document.
fn inspect_until(env: &Env, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = env.inspect(name);
        if ok(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{name} never {what}: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Exited, and its monitor gone (no restart pending).
fn down(info: &Value) -> bool {
    info["status"] == "exited" && info["monitorPid"].is_null()
}

/// How many times its log holds `line`.
fn count_lines(env: &Env, name: &str, line: &str) -> usize {
    let logs = env.run(&["logs", name]).success().stdout;
    logs.lines().filter(|l| *l == line).count()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn on_failure_gives_up_after_its_retries() {
    let env = Env::new(true);
    let t = Instant::now();
    run_detached(
        &env,
        "flaky",
        &["--restart", "on-failure:2"],
        &["sh", "-c", "echo run; exit 3"],
    );
    let info = inspect_until(&env, "flaky", "ended", down);
    println!("three runs of on-failure:2: {:?}", t.elapsed());
    assert_eq!(
        (&info["RestartCount"], &info["State"]["ExitCode"]),
        (&json!(2), &json!(3)),
        "{info}"
    );
    assert_eq!(
        info["HostConfig"]["RestartPolicy"],
        json!({"Name": "on-failure", "MaximumRetryCount": 2})
    );
    assert_eq!(info["restartCount"], 2);
    // The same container ran three times: one log, one disk.
    assert_eq!(count_lines(&env, "flaky", "run"), 3);
    // Its retries are used up: nothing for a boot to bring back.
    let r = env.run(&["start", "--all-restartable"]).success();
    assert_eq!(r.stdout, "");
    assert_eq!(env.qemus(), 0);

    // A clean exit is no failure.
    run_detached(
        &env,
        "clean",
        &["--restart", "on-failure"],
        &["sh", "-c", "echo run"],
    );
    let info = inspect_until(&env, "clean", "ended", down);
    assert_eq!(info["RestartCount"], 0, "{info}");
    assert_eq!(count_lines(&env, "clean", "run"), 1);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn always_comes_back_after_its_vm_is_killed_until_a_user_stops_it() {
    let env = Env::new(true);
    run_detached(
        &env,
        "keeper",
        &["--restart", "always", "--init"],
        &["sh", "-c", "echo up; exec sleep 600"],
    );
    let first = inspect_until(&env, "keeper", "ran", |i| {
        i["status"] == "running" && count_lines(&env, "keeper", "up") == 1
    });
    assert_eq!(first["HostConfig"]["RestartPolicy"]["Name"], "always");
    let qemu = first["State"]["Pid"].as_u64().unwrap();
    assert!(qemu > 0, "{first}");

    // The VM dies under it (QEMU killed): the monitor boots a new one for the same container.
    let t = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-9", &qemu.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let again = inspect_until(&env, "keeper", "came back", |i| {
        i["status"] == "running" && i["RestartCount"] == 1 && count_lines(&env, "keeper", "up") == 2
    });
    println!("back {:?} after its QEMU was killed", t.elapsed());
    assert_ne!(again["State"]["Pid"], first["State"]["Pid"]);
    assert_eq!(again["Id"], first["Id"]);
    assert_eq!(again["monitorPid"], first["monitorPid"], "the same monitor");
    assert_eq!(env.run(&["ls", "-q"]).success().stdout.len(), 65);
    let r = env
        .run(&["exec", "keeper", "echo", "in the new VM"])
        .success();
    assert_eq!(r.stdout, "in the new VM\n");

    // A user's stop ends it for good.
    env.run(&["stop", "keeper"]).success();
    let info = env.inspect("keeper");
    assert!(down(&info), "{info}");
    std::thread::sleep(Duration::from_secs(1));
    let info = env.inspect("keeper");
    assert!(down(&info), "restarted after a stop: {info}");
    assert_eq!(
        (&info["RestartCount"], &info["State"]["ExitCode"]),
        (&json!(1), &json!(143))
    );
    assert_eq!(env.qemus(), 0);

    // update --restart: docker's rules (not on an --rm container).
    env.run(&["update", "--restart", "on-failure:1", "keeper"])
        .success();
    let p = &env.inspect("keeper")["HostConfig"]["RestartPolicy"];
    assert_eq!(*p, json!({"Name": "on-failure", "MaximumRetryCount": 1}));
    env.run(&["create", "--rm", "--name", "gone", IMAGE])
        .success();
    env.run(&["update", "--restart", "always", "gone"])
        .fails_with("Restart policy cannot be updated because AutoRemove is enabled");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn start_all_restartable_brings_back_what_the_policies_would() {
    let env = Env::new(true);
    let sleep = ["sleep", "600"];
    let init = ["--init"];
    run_detached(
        &env,
        "up",
        &["--restart", "unless-stopped", init[0]],
        &sleep,
    );
    run_detached(&env, "plain", &init, &sleep);
    run_detached(
        &env,
        "stopped",
        &["--restart", "unless-stopped", init[0]],
        &sleep,
    );
    env.run(&["create", "--name", "never", "--restart", "always", IMAGE])
        .success();
    env.run(&["stop", "stopped"]).success();

    // The host goes down hard: monitors and VMs gone without a word.
    for name in ["up", "plain"] {
        let info = env.inspect(name);
        for key in ["monitorPid", "vmPid"] {
            let pid = info[key].as_u64().unwrap().to_string();
            std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap();
        }
    }
    let info = inspect_until(&env, "up", "noticed its monitor died", down);
    assert!(
        info["exitReason"].as_str().unwrap().contains("monitor"),
        "{info}"
    );

    // unless-stopped, not stopped by its user: back. No policy, a user's stop, never
    // started: not.
    let r = env.run(&["start", "--all-restartable"]).success();
    assert_eq!(r.stdout, "up\n");
    assert_eq!(env.inspect("up")["status"], "running");
    for name in ["plain", "stopped"] {
        assert_eq!(env.inspect(name)["status"], "exited", "{name}");
    }
    assert_eq!(env.inspect("never")["status"], "created");
    // Nothing left to do the second time.
    assert_eq!(
        env.run(&["start", "--all-restartable"]).success().stdout,
        ""
    );
}
