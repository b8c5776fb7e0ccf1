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
    let r = cli
        .run(&["run", "--sysctl", "kernel.pid_max=100", "localhost/img:1"])
        .fails_with("sysctl 'kernel.pid_max=100' is not allowed");
    assert!(r.stderr.contains("--sysctl"), "{}", r.stderr);
    cli.run(&["run", "--sysctl", "vm.swappiness", "localhost/img:1"])
        .fails_with("sysctl 'vm.swappiness' is not allowed");
    cli.run(&["run", "--shm-size", "lots", "localhost/img:1"])
        .fails_with("--shm-size");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn the_guest_applies_limits_and_kernel_settings() {
    let env = Env::new(true);
    let script = "grep -E 'open files|core file' /proc/self/limits; \
                  cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmax \
                      /proc/sys/fs/mqueue/msg_max; \
                  sleep 600";
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
        "--sysctl",
        "net.core.somaxconn=1000",
        "--sysctl",
        "kernel.shmmax=65536",
        "--sysctl",
        "fs.mqueue.msg_max=64",
        "--shm-size",
        "256m",
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
        if out.lines().count() >= 5 {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "logs: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (main_limits, main_sysctls) = main.split_at(main.find("1000\n").unwrap_or(0));
    assert_eq!(limits(main_limits), want);
    assert_eq!(main_sysctls, "1000\n65536\n64\n");
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
    // An exec joins the container's IPC namespace, where the settings were made.
    let shm = env
        .run(&["exec", "tuned", "cat", "/proc/sys/kernel/shmmax"])
        .success()
        .stdout;
    assert_eq!(shm, "65536\n");
    let mounts = env
        .run(&["exec", "tuned", "cat", "/proc/mounts"])
        .success()
        .stdout;
    let dev_shm = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/dev/shm"))
        .unwrap_or_default();
    assert!(dev_shm.contains("size=262144k"), "{mounts}");
    let h = &env.inspect("tuned")["HostConfig"];
    assert_eq!(
        h["Ulimits"],
        serde_json::json!([
            {"Name": "nofile", "Hard": 2048, "Soft": 256},
            {"Name": "core", "Hard": -1, "Soft": -1},
        ])
    );
    assert_eq!(h["ShmSize"], 268435456);
    assert_eq!(
        h["Sysctls"],
        serde_json::json!({
            "fs.mqueue.msg_max": "64",
            "kernel.shmmax": "65536",
            "net.core.somaxconn": "1000",
        })
    );
    // A setting the guest kernel lacks fails the start, naming it.
    let r = env.run(&["run", "--rm", "--sysctl", "net.no.such=1", IMAGE, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("net.no.such=1"), "{}", r.stderr);
    // Without the flags: docker's 64 MiB /dev/shm, nothing else shown.
    env.run(&["create", "--name", "plain", IMAGE]).success();
    let h = &env.inspect("plain")["HostConfig"];
    assert_eq!(h["ShmSize"], 67108864);
    assert!(h["Ulimits"].is_null() && h.get("Sysctls").is_none(), "{h}");
}
