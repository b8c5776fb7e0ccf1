//! docker's everyday `run`/`create` flags for what the guest kernel gives a container, through
//! the real binary: `--ulimit`, `--sysctl`, `--shm-size`. Bad values are refused before
//! anything is pulled or booted; one running container shows what the others set, in its
//! main process and in an `exec`.

mod common;

use common::vm::{Env, IMAGE};
use common::Cli;

#[test]
fn bad_values_are_refused_with_the_flags_name() {
    // Parsing fails before any state is touched: no root, VM or image needed.
    let cli = Cli::new();
    cli.run(&["run", "--ulimit", "nofile", "localhost/img:1"])
        .fails_with("invalid ulimit argument: nofile");
    cli.run(&["run", "--ulimit", "as=1", "localhost/img:1"])
        .fails_with("invalid ulimit type: as");
    let r = cli
        .run(&["create", "--ulimit", "nofile=2048:1024", "localhost/img:1"])
        .fails_with("ulimit soft limit must be less than or equal to hard limit: 2048 > 1024");
    assert!(r.stderr.contains("--ulimit"), "{}", r.stderr);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn the_guest_applies_limits_and_kernel_settings() {
    let env = Env::new(true);
    let script = "grep -E 'open files|core file' /proc/self/limits; sleep 600";
    env.run(&[
        "run",
        "-d",
        "--name",
        "tuned",
        "--ulimit",
        "nofile=512:1024",
        "--ulimit",
        "core=unlimited",
        "--ulimit",
        "nofile=256:2048",
        IMAGE,
        "sh",
        "-c",
        script,
    ])
    .success();
    let limits = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let want = vec![
        vec![
            "Max",
            "core",
            "file",
            "size",
            "unlimited",
            "unlimited",
            "bytes",
        ],
        vec!["Max", "open", "files", "256", "2048", "files"],
    ];
    // The main process (its output, once written) and an exec get the same limits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let main = loop {
        let out = env.run(&["logs", "tuned"]).success().stdout;
        if out.lines().count() >= 2 {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "logs: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(limits(&main), want);
    let exec = env
        .run(&[
            "exec",
            "tuned",
            "grep",
            "-E",
            "open files|core file",
            "/proc/self/limits",
        ])
        .success()
        .stdout;
    assert_eq!(limits(&exec), want);
    let h = &env.inspect("tuned")["HostConfig"];
    assert_eq!(
        h["Ulimits"],
        serde_json::json!([
            {"Name": "nofile", "Hard": 2048, "Soft": 256},
            {"Name": "core", "Hard": -1, "Soft": -1},
        ])
    );
}
