//! Health checks through the real binary and a real VM: a check that fails until a file the
//! test creates with `exec` exists turns the container from unhealthy to healthy, as
//! `inspect` (docker's `State.Health`), `list --format '{{.Status}}'` and `--filter health=`
//! show; the flags are refused in docker's words before anything runs.

mod common;

use std::time::{Duration, Instant};

use common::vm::{Env, IMAGE};
use serde_json::{json, Value};

/// Polls `inspect NAME` until `ok` holds for it (30 s at most); returns that document.
fn inspect_until(env: &Env, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = env.inspect(name);
        if ok(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{name} never {what}: {info}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn list(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["list"];
    all.extend(args);
    env.run(&all).success().stdout.trim().to_string()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_check_turns_healthy_once_its_file_exists() {
    let env = Env::new(true);
    // Refused before an image is looked at, in docker's words.
    env.run(&["run", "--no-healthcheck", "--health-cmd", "true", IMAGE])
        .fails_with("--no-healthcheck conflicts with --health-* options");
    env.run(&["run", "--health-retries", "-1", IMAGE])
        .fails_with("--health-retries cannot be negative");

    let t = Instant::now();
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "1s",
        "--health-timeout",
        "5s",
        "--health-retries",
        "1",
        IMAGE,
        "sleep",
        "600",
    ])
    .success();
    let info = inspect_until(&env, "hc", "turned unhealthy", |i| {
        i["State"]["Health"]["Status"] == "unhealthy"
    });
    let health = &info["State"]["Health"];
    assert_eq!(health["FailingStreak"], 1, "{info}");
    assert_eq!(health["Log"][0]["ExitCode"], 1, "{info}");
    assert_eq!(
        info["Config"]["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"], "Interval": 1_000_000_000i64,
               "Timeout": 5_000_000_000i64, "Retries": 1})
    );
    assert!(
        list(&env, &["--format", "{{.Status}}"]).ends_with("(unhealthy)"),
        "{}",
        list(&env, &["--format", "{{.Status}}"])
    );
    assert_eq!(
        list(&env, &["-f", "health=unhealthy", "--format", "{{.Names}}"]),
        "hc"
    );
    assert_eq!(
        list(&env, &["-f", "health=healthy", "--format", "{{.Names}}"]),
        ""
    );

    env.run(&["exec", "hc", "sh", "-c", ": > /tmp/ok"])
        .success();
    let info = inspect_until(&env, "hc", "turned healthy", |i| {
        i["State"]["Health"]["Status"] == "healthy"
    });
    let health = &info["State"]["Health"];
    assert_eq!(health["FailingStreak"], 0);
    let log = health["Log"].as_array().unwrap();
    assert!(log.len() <= 5, "{info}");
    let last = log.last().unwrap();
    assert_eq!(
        (&last["ExitCode"], &last["Output"]),
        (&json!(0), &json!("fine\n"))
    );
    println!("unhealthy to healthy in {:?}", t.elapsed());
    let status = list(&env, &["--format", "{{.Names}} {{.Status}}"]);
    assert!(
        status.starts_with("hc Up ") && status.ends_with(" (healthy)"),
        "{status}"
    );
    assert_eq!(
        list(&env, &["-f", "health=healthy", "--format", "{{.Names}}"]),
        "hc"
    );
    assert_eq!(
        list(&env, &["-f", "health=none", "--format", "{{.Names}}"]),
        ""
    );

    // Paused, its checks stop and docker calls it unhealthy; after unpause they go on.
    env.run(&["pause", "hc"]).success();
    inspect_until(&env, "hc", "turned unhealthy when paused", |i| {
        i["State"]["Health"]["Status"] == "unhealthy"
    });
    env.run(&["unpause", "hc"]).success();
    inspect_until(&env, "hc", "turned healthy after unpause", |i| {
        i["State"]["Health"]["Status"] == "healthy"
    });

    // Stopped, its checks end: docker says unhealthy and keeps the log.
    env.run(&["stop", "-t", "1", "hc"]).success();
    let info = env.inspect("hc");
    assert_eq!(info["State"]["Health"]["Status"], "unhealthy", "{info}");
    env.run(&["rm", "-f", "hc"]).success();
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn the_image_s_healthcheck_runs_under_the_flags() {
    let env = Env::new(true);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {IMAGE}\nHEALTHCHECK --interval=1s --timeout=20s --retries=4 CMD echo from-image\n"
        ),
    )
    .unwrap();
    env.run(&[
        "build",
        "-q",
        "-t",
        "checked:1",
        ctx.path().to_str().unwrap(),
    ])
    .success();

    // The flags replace the fields they give, the image's fill the rest (moby's merge).
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "img",
        "--health-timeout",
        "3s",
        "checked:1",
        "sleep",
        "600",
    ])
    .success();
    let info = inspect_until(&env, "img", "turned healthy", |i| {
        i["State"]["Health"]["Status"] == "healthy"
    });
    assert_eq!(
        info["Config"]["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "echo from-image"], "Interval": 1_000_000_000i64,
               "Timeout": 3_000_000_000i64, "Retries": 4})
    );
    let log = info["State"]["Health"]["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["Output"], "from-image\n");
    env.run(&["rm", "-f", "img"]).success();

    // --no-healthcheck turns the image's off: nothing runs, no State.Health.
    env.run(&["create", "--name", "off", "--no-healthcheck", "checked:1"])
        .success();
    let info = env.inspect("off");
    // moby's merge fills the zero fields of `["NONE"]` from the image too; they do nothing.
    assert_eq!(info["Config"]["Healthcheck"]["Test"], json!(["NONE"]));
    assert_eq!(info["Config"]["Healthcheck"]["Retries"], 4);
    assert!(info["State"].get("Health").is_none(), "{info}");
    assert_eq!(
        list(&env, &["-a", "-f", "health=none", "--format", "{{.Names}}"]),
        "off"
    );
}
