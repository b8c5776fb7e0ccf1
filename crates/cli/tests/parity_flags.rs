//! docker's everyday `run`/`create` flags, through the real binary: what the guest kernel gives
//! a container (`--ulimit`, `--sysctl`, `--shm-size`), `--volumes-from` and the log options
//! (`--log-driver`, `--log-opt`), `--detach-keys` of `run -it` and `start -a -i`, and
//! `top -o`. Bad values are
//! refused before anything is pulled or booted; one running container shows what the kernel
//! flags set, in its main process and in an `exec`.

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
    cli.run(&["run", "--volumes-from", "data:rx", "localhost/img:1"])
        .fails_with("--volumes-from data:rx: invalid mode for volumes-from: rx");
    cli.run(&["run", "--log-driver", "syslog", "localhost/img:1"])
        .fails_with("log driver \"syslog\" is not supported");
    cli.run(&["run", "--log-opt", "max-size=0", "localhost/img:1"])
        .fails_with("max-size must be a positive size");
    cli.run(&["run", "--log-opt", "compress=true", "localhost/img:1"])
        .fails_with("unknown log opt 'compress' for json-file log driver");
    cli.run(&["run", "--log-opt", "max-file", "localhost/img:1"])
        .fails_with("invalid log opt \"max-file\"");
    cli.run(&["run", "--detach-keys", "ctrl-1", "localhost/img:1"])
        .fails_with("invalid detach keys");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn detach_keys_leave_run_and_start_containers_running() {
    let env = Env::new(true);
    let running = |name: &str| env.inspect(name)["State"]["Running"] == true;
    // Typed input before the keys reaches the process; the keys themselves do not.
    let (code, _, err) = env.run_bytes(
        &[
            "run",
            "-it",
            "--name",
            "r",
            "--detach-keys",
            "ctrl-a,x",
            IMAGE,
            "sh",
            "-c",
            "cat > /tmp/in",
        ],
        Some(b"typed\x01y\n\x01x".to_vec()),
    );
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("read escape sequence"), "{err}");
    assert!(running("r"), "the container runs on after the detach");
    // What was typed before the keys reaches the process through its pty a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = env.run(&["exec", "r", "cat", "/tmp/in"]).success().stdout;
        if got == "typed\x01y\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // start -a -i with docker's default keys, ctrl-p ctrl-q.
    env.run(&["create", "-it", "--name", "s", IMAGE, "sh"])
        .success();
    let (code, _, err) = env.run_bytes(&["start", "-a", "-i", "s"], Some(b"\x10\x11".to_vec()));
    let err = String::from_utf8_lossy(&err);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("read escape sequence"), "{err}");
    assert!(running("s"));
    // top with ps's -o: the columns asked for, from the guest's /proc.
    let top = env
        .run(&["top", "s", "-o", "pid,comm,uid,user"])
        .success()
        .stdout;
    let rows: Vec<Vec<&str>> = top
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["PID", "COMMAND", "UID", "USER"],
            ["1", "sh", "1000", "user"]
        ],
        "{top}"
    );
    env.run(&["top", "s", "-o", "comm"])
        .fails_with("Couldn't find PID field in ps output");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn the_log_rotates_and_reads_back_across_its_files() {
    let env = Env::new(true);
    // 200 lines of about 60 bytes each as json-file records: 12 KB, rotated every 1 KB.
    let script = "i=1; while [ $i -le 200 ]; do echo line $i; i=$((i+1)); done";
    let r = env
        .run(&[
            "run",
            "--name",
            "rot",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=3",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    assert_eq!(r.stdout.lines().count(), 200, "the client saw everything");
    let d = env.inspect("rot");
    assert_eq!(
        d["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {"max-file": "3", "max-size": "1k"}})
    );
    let log = std::path::PathBuf::from(d["LogPath"].as_str().unwrap());
    let file = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    assert!(file(1).exists() && file(2).exists() && !file(3).exists());
    let total: u64 = [log.clone(), file(1), file(2)]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total < 3 * 1100, "3 files of about 1 KB: {total}");
    // `logs` reads the files oldest first: the last lines, in order, without a gap.
    let out = env.run(&["logs", "rot"]).success().stdout;
    let numbers: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.last(), Some(&200), "{out}");
    assert!(numbers.len() > 20 && numbers.len() < 60, "{out}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{out}");
    let last = env.run(&["logs", "-n", "2", "rot"]).success().stdout;
    assert_eq!(last, "line 199\nline 200\n");

    // --log-driver none: the attached client still sees the output; nothing is kept.
    let r = env
        .run(&[
            "run",
            "--name",
            "quiet",
            "--log-driver",
            "none",
            IMAGE,
            "echo",
            "hi",
        ])
        .success();
    assert_eq!(r.stdout, "hi\n");
    env.run(&["logs", "quiet"])
        .fails_with("configured logging driver does not support reading");
    let d = env.inspect("quiet");
    assert_eq!(d["HostConfig"]["LogConfig"]["Type"], "none");
    assert!(!std::path::Path::new(d["LogPath"].as_str().unwrap()).exists());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn volumes_from_shares_another_containers_volumes_and_binds() {
    let env = Env::new(true);
    let host = env.cli.root().join("shared-dir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), "from the host\n").unwrap();
    let bind = format!("{}:/bind:ro", host.display());
    // A data container, never started: its volumes are free for others to mount.
    env.run(&[
        "create",
        "--name",
        "data",
        "-v",
        "/anon",
        "-v",
        "named:/named",
        "-v",
        &bind,
        "--tmpfs",
        "/scratch",
        IMAGE,
    ])
    .success();
    env.run(&["create", "--volumes-from", "nope", IMAGE])
        .fails_with("no such container: nope");
    let script = "set -e; echo written > /anon/f; echo named > /named/f; cat /bind/hello; \
                  if grep -q ' /scratch ' /proc/mounts; then echo tmpfs came too; fi; \
                  if touch /bind/x 2>/dev/null; then echo bind writable; fi";
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "--volumes-from",
            "data",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    assert_eq!(r.stdout, "from the host\n");
    // :ro makes every inherited mount read-only; a container's own -v at a path wins.
    let script = "cat /anon/f; ls /named; \
                  if echo x > /anon/g 2>/dev/null; then echo anon writable; fi";
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "--volumes-from",
            "data:ro",
            "-v",
            "other:/named",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    assert_eq!(r.stdout, "written\n");
    // A container that took them keeps data's anonymous volume alive past data's removal.
    env.run(&[
        "create",
        "--name",
        "keeper",
        "--volumes-from",
        "data",
        IMAGE,
    ])
    .success();
    let h = &env.inspect("keeper")["HostConfig"];
    assert_eq!(h["VolumesFrom"], serde_json::json!(["data"]));
    let anon = env.inspect("data")["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .unwrap();
    env.run(&["rm", "data"]).success();
    let volumes = env.run(&["volume", "ls", "-q"]).success().stdout;
    assert!(volumes.lines().any(|v| v == anon), "{volumes}");
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

/// `/sys/fs/cgroup` is the container's own cgroup (a cgroup namespace of its own, docker's
/// default on cgroup v2): its limits are readable there, also from an exec, and the tree is
/// read-only; `--cgroupns host` shows the VM's whole tree instead.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn sys_fs_cgroup_is_the_containers_own_cgroup() {
    let env = Env::new(true);
    let script = "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; \
                  echo 1 > /sys/fs/cgroup/pids.max 2>/dev/null && echo writable || echo read-only";
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "-m",
            "96m",
            "--pids-limit",
            "40",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    assert_eq!(
        r.stdout,
        format!("0::/\n{}\n40\nread-only\n", 96u64 << 20),
        "{r:?}"
    );
    env.run(&[
        "run", "-d", "--name", "c", "-m", "96m", IMAGE, "sleep", "600",
    ])
    .success();
    let r = env
        .run(&[
            "exec",
            "c",
            "cat",
            "/proc/self/cgroup",
            "/sys/fs/cgroup/memory.max",
        ])
        .success();
    assert_eq!(r.stdout, format!("0::/\n{}\n", 96u64 << 20), "{r:?}");
    // The VM's tree: the container's cgroup is a path below its root, whose own files are
    // those of the root cgroup (no memory.max there).
    let r = env
        .run(&[
            "run",
            "--rm",
            "--cgroupns",
            "host",
            IMAGE,
            "sh",
            "-c",
            "cat /proc/self/cgroup; test -e /sys/fs/cgroup/memory.max || echo no-limit-at-root",
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("0::/") && lines[0].len() > 4,
        "{r:?}"
    );
    assert_eq!(lines[1], "no-limit-at-root", "{r:?}");
    env.run(&["run", "--rm", "--cgroupns", "nope", IMAGE, "true"])
        .fails_with("invalid value 'nope'");
}

/// `--device` makes the VM kernel's own fuse and tun devices in the container (their drivers
/// loaded), with the permissions asked for as the node's mode; a host disk is refused by name.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn device_makes_the_guest_kernels_fuse_and_tun() {
    let env = Env::new(true);
    // Opening /dev/net/tun without TUNSETIFF and reading gives EBADFD when the driver is
    // there, ENODEV when it is not.
    let script = "ls -l /dev/fuse /dev/tun0 | busybox awk '{print $1, $5, $6, $NF}'; \
                  cat /dev/tun0 2>&1; true";
    let r = env
        .run(&[
            "run",
            "--rm",
            "--device",
            "/dev/fuse",
            "--device",
            "/dev/net/tun:/dev/tun0:r",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "crw-rw-rw- 10, 229 /dev/fuse",
            "cr--r--r-- 10, 200 /dev/tun0"
        ],
        "{r:?}"
    );
    assert!(lines[2].contains("File descriptor in bad state"), "{r:?}");

    env.run(&["run", "--rm", "--device", "/dev/sda", IMAGE, "true"])
        .fails_with("--device /dev/sda: a container runs in a VM of its own");

    env.run(&[
        "create",
        "--name",
        "dev",
        "--device",
        "/dev/fuse:/dev/f:rw",
        IMAGE,
    ])
    .success();
    let r = env
        .run(&["inspect", "-f", "{{json .HostConfig.Devices}}", "dev"])
        .success();
    let devices: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        devices,
        serde_json::json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f",
                            "CgroupPermissions": "rw"}])
    );
    env.run(&["rm", "dev"]).success();
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and a kernel: run scripts/test.sh"
)]
fn apples_uid_gid_dns_and_platform_flags() {
    let env = Env::new(true);
    let script = "id -u; id -g; grep -c ' /etc/resolv.conf ' /proc/mounts; \
                  cat /etc/resolv.conf 2>/dev/null; true";
    let r = env
        .run(&[
            "run",
            "--rm",
            "--uid",
            "1234",
            "--gid",
            "99",
            "--dns-domain",
            "corp.test",
            "--dns-search",
            "b.test",
            "--os",
            "linux",
            "--arch",
            "x86_64",
            // The image's WorkingDir is its user's, mode 0750.
            "-w",
            "/",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..3], ["1234", "99", "1"], "{r:?}");
    assert!(r.stdout.contains("search corp.test b.test\n"), "{r:?}");
    // --no-dns: no resolv.conf of ours over the image's.
    let r = env
        .run(&["run", "--rm", "--no-dns", IMAGE, "sh", "-c", script])
        .success();
    assert_eq!(r.stdout.lines().nth(2), Some("0"), "{r:?}");
    assert!(!r.stdout.contains("nameserver"), "{r:?}");
    // What cannot be: refused before anything is made.
    env.run(&["run", "--rm", "--gid", "5", IMAGE, "true"])
        .fails_with("--uid");
    env.run(&["run", "--rm", "--no-dns", "--dns", "1.1.1.1", IMAGE, "true"])
        .fails_with("--no-dns");
    env.run(&["run", "--rm", "--arch", "arm64", IMAGE, "true"])
        .fails_with("arm64");
    env.run(&["run", "--rm", "-u", "1", "--uid", "2", IMAGE, "true"])
        .fails_with("--uid");
    // --masked-path and --read-only-path (Apple's): a file reads empty, a directory is an
    // empty read-only one, a read-only path refuses writes; the rest stays writable.
    let script = "cat /etc/passwd | wc -c; ls /old | wc -l; touch /old/x 2>&1; \
                  touch /tmp/x 2>&1; touch /root/y && echo root-writable";
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "--masked-path",
            "/etc/passwd",
            "--masked-path",
            "/old",
            "--read-only-path",
            "/tmp",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..2], ["0", "0"], "{r:?}");
    assert!(lines[2].contains("Read-only file system"), "{r:?}");
    assert!(lines[3].contains("Read-only file system"), "{r:?}");
    assert_eq!(lines[4], "root-writable", "{r:?}");
    env.run(&["run", "--rm", "--masked-path", "/a/../etc", IMAGE, "true"])
        .fails_with("--masked-path");
    // --debug (Apple's) is --log-level debug, down to the container's monitor.
    env.run(&["--debug", "create", "--name", "dbg", IMAGE, "true"])
        .success();
    env.run(&["--debug", "start", "-a", "dbg"]).success();
    let id = env.inspect("dbg")["id"].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(
        env.cli
            .root()
            .join("containers")
            .join(&id)
            .join("monitor.log"),
    )
    .unwrap_or_default();
    assert!(log.contains("DEBUG"), "{log}");
    // --init-image (Apple's): the VM's init for this container. A copy of vminitd boots; a
    // file that is no init cannot, which proves the flag is what the VM booted.
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("my-vminitd");
    std::fs::copy(std::env::var("CONTAINER_VMINITD").unwrap(), &init).unwrap();
    let r = env
        .run(&[
            "run",
            "--rm",
            "--init-image",
            init.to_str().unwrap(),
            IMAGE,
            "echo",
            "ok",
        ])
        .success();
    assert_eq!(r.stdout, "ok\n");
    std::fs::write(&init, "#!/bin/nothing\n").unwrap();
    let r = env.run(&[
        "run",
        "--rm",
        "--init-image",
        init.to_str().unwrap(),
        IMAGE,
        "true",
    ]);
    assert_eq!(r.code, 125, "{r:?}");
    env.run(&[
        "run",
        "--rm",
        "--init-image",
        "/nonexistent/init",
        IMAGE,
        "true",
    ])
    .fails_with("init image /nonexistent/init");
    // exec -d names the container it started in (Apple's).
    env.run(&[
        "run", "-d", "--name", "bg", "-v", "vv:/d", IMAGE, "sleep", "60",
    ])
    .success();
    // A --rm container whose start fails (its volume is in use) goes, as docker's daemon
    // removes it.
    env.run(&[
        "run", "--rm", "--name", "rmfail", "-v", "vv:/d", IMAGE, "true",
    ])
    .fails_with("in use");
    env.run(&["inspect", "rmfail"])
        .fails_with("no such container");
    let bg = env.inspect("bg")["id"].as_str().unwrap().to_string();
    let r = env.run(&["exec", "-d", "bg", "sleep", "1"]).success();
    assert_eq!(r.stdout.trim(), bg, "{r:?}");
    env.run(&["rm", "-f", "bg"]).success();
    // A network a created (never started) container names cannot be deleted or pruned.
    env.run(&["network", "create", "held"]).success();
    env.run(&["create", "--name", "holder", "--network", "held", IMAGE])
        .success();
    env.run(&["network", "rm", "held"])
        .fails_with("in use by container(s) holder");
    assert!(!env
        .run(&["network", "prune", "-f"])
        .success()
        .stdout
        .contains("held"));
    env.run(&["rm", "holder"]).success();
    env.run(&["network", "rm", "held"]).success();
    // image save to standard output, load from standard input (docker's and Apple's).
    let tar = dir.path().join("saved.tar");
    let status = env
        .cli
        .command(&["image", "save", IMAGE])
        .stdout(std::fs::File::create(&tar).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::metadata(&tar).unwrap().len() > 100_000);
    env.run(&["image", "rm", IMAGE]).success();
    let out = env
        .cli
        .command(&["image", "load"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(IMAGE),
        "{out:?}"
    );
    // system logs (Apple's): the monitors' logs, each line named after its container.
    let all = env.run(&["system", "logs"]).success().stdout;
    assert!(
        all.lines()
            .any(|l| l.starts_with("dbg | ") && l.contains("DEBUG")),
        "{all}"
    );
    let recent = env
        .run(&["system", "logs", "--last", "1h", "dbg"])
        .success();
    assert_eq!(
        recent.stdout.lines().count(),
        all.lines().count(),
        "{recent:?}"
    );
    let none = env
        .run(&["system", "logs", "--last", "1ns", "dbg"])
        .success();
    assert!(none.stdout.is_empty(), "{none:?}");
    env.run(&["system", "logs", "nosuch"]).fails_with("nosuch");
    env.run(&["rm", "dbg"]).success();
}
