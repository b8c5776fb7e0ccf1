//! kill -9 at random points (issue 16, "Faults"): of `image pull`, `image load`, `image
//! import`, `image push`, `rootfs create`, `run`, `stop`, `rm`, `volume create`, `volume rm`,
//! `network create`, `build` and `commit`; of a container's
//! monitor, QEMU and virtiofsd; and of the Engine API server while the docker client's
//! `run -d` or `rm -f` is under way (the shim's soak is in `crates/shim/tests/ctr.rs`). Each target is killed [`kills`] times (10 here; `bench/soak.sh` runs 100), each
//! time after a random delay within how long the command takes when left alone.
//!
//! After every kill:
//! - the content store verifies (every blob hashes to its name, every image's manifest, config
//!   and layers are there) and no half-written output is visible;
//! - `system cleanup` succeeds, and then every remaining container can be started and removed;
//! - once they are gone the host is exactly as before the first kill: no process of the state
//!   directory, no tap, bridge, address, nft rule or mount left in the test's namespace, no
//!   file left under the state directory (socket, lock, overlay, record, lease).
//!
//! The seed of each target's delays is printed; `CONTAINER_SOAK_SEED` repeats a run.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{push_image, wait_output, Env, IMAGE};
use common::Registry;
use testkit::soak::{kills, report, Rng};

/// Runs `cmd` and SIGKILLs it `delay` after it started unless it ended before; true if it
/// was killed.
fn kill_after(mut cmd: Command, delay: Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn container");
    let deadline = Instant::now() + delay;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            // `ip netns exec` execs the command: this is the `container` process itself.
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
}

/// How long `cmd` takes when left alone (it must succeed).
fn timed(cmd: Command) -> Duration {
    let t = Instant::now();
    wait_output(cmd).success();
    t.elapsed()
}

/// The shortest of three runs of `make()`, with `reset()` after each: a first run is slower
/// (cold caches), and delays past the end of the command would kill nothing.
fn calibrate(make: impl Fn() -> Command, reset: impl Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let t = timed(make());
            reset();
            t
        })
        .min()
        .unwrap()
}

/// Processes whose command line mentions `root` (monitors, QEMU, virtiofsd), as
/// `(pid, command line)`.
fn processes(root: &Path) -> Vec<(i32, String)> {
    let root = root.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&root) {
                v.push((pid, cmd));
            }
        }
    }
    v
}

/// Waits (up to `within`) for a process of `root` whose command line has `needle`.
fn wait_for_process(root: &Path, needle: &str, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some((pid, _)) = processes(root)
            .into_iter()
            .find(|(_, c)| c.contains(needle))
        {
            return Some(pid);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for `child` (`who`) to end after a kill of `what`; fails if it hangs.
#[track_caller]
fn ends_within(child: &mut std::process::Child, within: Duration, who: &str, what: &str) {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{who} hangs after a kill of {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) of a process of this test's own state directory.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Everything a leak would change, as text (compared before the first kill and after each).
fn host_state(env: &Env) -> String {
    let root = env.cli.root();
    let mut s = String::new();
    for (pid, cmd) in processes(root) {
        s += &format!("process {pid} {cmd}\n");
    }
    for l in env.netns.links() {
        s += &format!("link {l}\n");
    }
    for l in env.netns.ip(&["-o", "addr", "show"]).lines() {
        // Drop the interface index and the lifetimes' countdown.
        let l = l.split_once(": ").map_or(l, |(_, rest)| rest);
        let l = l.split("\\").next().unwrap_or(l).trim();
        s += &format!("address {l}\n");
    }
    for l in env.netns.ruleset().lines() {
        let l = l.trim();
        let l = match l.find("counter packets") {
            Some(i) => format!("{} counter", &l[..i]),
            None => l.to_string(),
        };
        s += &format!("nft {l}\n");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts
        .lines()
        .filter(|l| l.contains(&*root.to_string_lossy()))
    {
        s += &format!("mount {l}\n");
    }
    for f in files_under(root) {
        s += &format!("file {f}\n");
    }
    s
}

/// Paths under `root`, relative, except the content store's blobs and the logs that only grow
/// (they are checked on their own): records, sockets, locks, leases, disks, rootfs files.
fn files_under(root: &Path) -> BTreeSet<String> {
    testkit::paths_under(root, |rel| {
        rel.starts_with("content/blobs") || rel.starts_with("docker") || rel.starts_with("events")
    })
}

/// The content store holds no half-written blob and every listed image is whole.
#[track_caller]
fn store_verifies(env: &Env) {
    let blobs = env.cli.layout().join("blobs/sha256");
    for blob in env.cli.blobs() {
        let data = std::fs::read(blobs.join(&blob)).unwrap();
        assert_eq!(
            common::sha256(&data),
            format!("sha256:{blob}"),
            "blob {blob} is half-written"
        );
    }
    let index = env.cli.layout().join("index.json");
    let Ok(text) = std::fs::read_to_string(&index) else {
        return;
    };
    let index: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("index.json: {e}: {text}"));
    let have = |d: &serde_json::Value| {
        let digest = d["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap();
        assert!(blobs.join(hex).is_file(), "{digest} is named but missing");
        std::fs::read(blobs.join(hex)).unwrap()
    };
    for m in index["manifests"].as_array().into_iter().flatten() {
        let manifest: serde_json::Value = serde_json::from_slice(&have(m)).unwrap();
        let entries = match manifest["manifests"].as_array() {
            // An index: its platform manifests.
            Some(list) => list
                .iter()
                .map(|d| serde_json::from_slice(&have(d)).unwrap())
                .collect(),
            None => vec![manifest],
        };
        for m in entries {
            have(&m["config"]);
            for l in m["layers"].as_array().into_iter().flatten() {
                have(l);
            }
        }
    }
}

/// After a kill: `system cleanup`, then every container is started (unless it runs) and
/// removed, and the host is as `before`.
#[track_caller]
fn settle(env: &Env, before: &str, what: &str) {
    env.run(&["system", "cleanup"]).success();
    let list = env.run(&["ls", "-a", "--format", "json"]).success().json();
    // An `--rm` container may remove itself meanwhile (its process ended): that is no error.
    let gone = |r: &common::Run| r.stderr.contains("no such container");
    for c in list.as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        if c["status"] != "running" {
            let r = env.run(&["start", id]);
            assert!(
                r.code == 0 || gone(&r),
                "after a kill of {what}, start {c}: {r:?}"
            );
        }
        let r = env.run(&["rm", "-f", id]);
        assert!(
            r.code == 0 || gone(&r),
            "after a kill of {what}, rm -f {c}: {r:?}"
        );
    }
    // A monitor may still be tearing its VM down for a moment after `rm -f` returns.
    host_returns_to(env, before, what);
}

/// Waits (20 s at most) for the host to be as `before`; fails showing the difference.
#[track_caller]
fn host_returns_to(env: &Env, before: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = host_state(env);
        if now == before {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "after a kill of {what} the host differs:\n{}",
                diff(before, &now)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn diff(before: &str, now: &str) -> String {
    let b: BTreeSet<&str> = before.lines().collect();
    let n: BTreeSet<&str> = now.lines().collect();
    let mut s = String::new();
    for l in b.difference(&n) {
        s += &format!("- {l}\n");
    }
    for l in n.difference(&b) {
        s += &format!("+ {l}\n");
    }
    s
}

/// A root with the test image, its default network made and its VM template built by one
/// plain run: what the host looks like before any kill.
fn warm(tag: &str) -> (Env, String) {
    let env = Env::tagged(tag, true);
    env.run(&["run", "--rm", IMAGE, "true"]).success();
    let before = host_state(&env);
    (env, before)
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn kill_9_of_image_pull_and_rootfs_create() {
    let (env, _) = warm("soakimg");
    let reg = Registry::start();
    let scratch = tempfile::tempdir().unwrap();
    let layout = scratch.path().join("layout");
    let reference = push_image(&reg, &layout, "soak:1");
    let pull = || env.cli.host_command(&["image", "pull", "-q", &reference]);
    let rm = || {
        env.run(&["image", "rm", &reference]);
        env.run(&["image", "prune", "-a"]);
        assert_eq!(
            env.cli.blobs(),
            Vec::<String>::new(),
            "blobs after image rm"
        );
    };
    // The test image stays (loaded by `warm`): the pulled one shares its blobs, so drop it
    // first and pull into a store without them.
    env.run(&["image", "rm", IMAGE]).success();
    rm();
    let took = calibrate(pull, rm);
    let n = kills();
    let mut rng = Rng::new("pull");
    let mut killed = 0;
    for _ in 0..n {
        rm();
        killed += usize::from(kill_after(pull(), rng.within(took)));
        store_verifies(&env);
        // Whatever the kill left, the next pull completes the image and leaves no temp file.
        wait_output(pull()).success();
        store_verifies(&env);
        assert_eq!(env.cli.temp_files(), 0, "temp files left in content-ingest");
    }
    report("image pull", killed, n);

    let out = scratch.path().join("rootfs.ext4");
    let create = || {
        env.cli.command(&[
            "rootfs",
            "create",
            "--image",
            &reference,
            out.to_str().unwrap(),
        ])
    };
    let took = calibrate(create, || std::fs::remove_file(&out).unwrap());
    wait_output(create()).success();
    let dir = out.parent().unwrap().to_path_buf();
    let siblings = || -> BTreeSet<String> {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    std::fs::remove_file(&out).unwrap();
    let clean = siblings();
    let mut rng = Rng::new("rootfs create");
    let mut killed = 0;
    for _ in 0..n {
        killed += usize::from(kill_after(create(), rng.within(took)));
        // Either no output or a whole filesystem; no temp file next to it.
        if out.exists() {
            common::run(Command::new("e2fsck").arg("-fn").arg(&out));
            std::fs::remove_file(&out).unwrap();
        }
        // A temp file may stay until the next build of the same output, which removes it.
        wait_output(create()).success();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(siblings(), clean, "a killed rootfs create left files");
    }
    report("rootfs create", killed, n);

    // The rootfs cache, built by `create`: a killed build leaves nothing under a final name
    // that e2fsck rejects, and the next create of the image builds it and removes the
    // build's temp file.
    let cache = env.cli.root().join("rootfs");
    let cached = || -> Vec<String> {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect()
    };
    let clear = || {
        for name in cached() {
            std::fs::remove_file(cache.join(name)).unwrap();
        }
    };
    let make = || {
        env.cli
            .command(&["create", "--name", "r", &reference, "true"])
    };
    let took = calibrate(make, || {
        env.run(&["rm", "r"]).success();
        clear();
    });
    let mut rng = Rng::new("create (rootfs cache)");
    let mut killed = 0;
    for _ in 0..n {
        killed += usize::from(kill_after(make(), rng.within(took)));
        for name in cached().iter().filter(|n| n.ends_with(".ext4")) {
            common::run(Command::new("e2fsck").arg("-fn").arg(cache.join(name)));
        }
        // A container the kill left half-made is removed; then the same create works.
        let r = env.run(&["rm", "-f", "r"]);
        assert!(
            r.code == 0 || r.stderr.contains("no such container"),
            "{r:?}"
        );
        wait_output(make()).success();
        assert!(
            cached().iter().all(|n| n.ends_with(".ext4")),
            "temp files in the rootfs cache: {:?}",
            cached()
        );
        env.run(&["rm", "r"]).success();
        clear();
    }
    report("create (rootfs cache)", killed, n);
}

/// Kills of a CLI command that acts on a container: `prepare` makes the container (or
/// nothing), `command` is what gets killed.
fn soak_command(tag: &str, what: &str, prepare: &[&str], command: &[&str]) {
    let (env, before) = warm(tag);
    if !prepare.is_empty() {
        env.run(prepare).success();
    }
    let took = timed(env.cli.command(command));
    settle(&env, &before, what);
    let mut rng = Rng::new(what);
    let mut killed = 0;
    let n = kills();
    for _ in 0..n {
        if !prepare.is_empty() {
            env.run(prepare).success();
        }
        killed += usize::from(kill_after(env.cli.command(command), rng.within(took)));
        settle(&env, &before, what);
    }
    report(what, killed, n);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_run() {
    soak_command(
        "soakrun",
        "run",
        &[],
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_run_rm() {
    soak_command(
        "soakrunrm",
        "run --rm",
        &[],
        &["run", "--rm", IMAGE, "true"],
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_stop() {
    soak_command(
        "soakstop",
        "stop",
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
        &["stop", "-t", "1", "v"],
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_rm() {
    soak_command(
        "soakrm",
        "rm",
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
        &["rm", "-f", "v"],
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_volume_and_network_create() {
    let (env, _) = warm("soakvn");
    for (what, create, rm) in [
        (
            "volume create",
            vec!["volume", "create", "-s", "64M", "sv"],
            vec!["volume", "rm", "sv"],
        ),
        (
            "network create",
            vec!["network", "create", "--subnet", "10.231.0.0/24", "sn"],
            vec!["network", "rm", "sn"],
        ),
    ] {
        let took = calibrate(
            || env.cli.command(&create),
            || {
                env.run(&rm).success();
            },
        );
        // The store's lock file stays, as the other stores' do.
        let before = host_state(&env);
        let mut rng = Rng::new(what);
        let mut killed = 0;
        let n = kills();
        for _ in 0..n {
            killed += usize::from(kill_after(env.cli.command(&create), rng.within(took)));
            env.run(&["system", "cleanup"]).success();
            // Whatever it left is either whole (used by a container, then removed) or gone.
            if listed(&env, create[0], create.last().unwrap()) {
                let flag = if create[0] == "volume" {
                    "sv:/data".to_string()
                } else {
                    "sn".to_string()
                };
                let opt = if create[0] == "volume" {
                    "-v"
                } else {
                    "--network"
                };
                env.run(&["run", "--rm", opt, &flag, IMAGE, "true"])
                    .success();
                env.run(&rm).success();
            }
            settle(&env, &before, what);
            // And the same name can be made again.
            env.run(&create).success();
            env.run(&rm).success();
        }
        report(what, killed, n);
    }
}

/// Kills of a process a running container owns, found by `needle` in its command line:
/// at a random point of its life from the start of `run -d` to a while after.
fn soak_process(tag: &str, what: &str, needle: &str, run: &[&str]) {
    let (env, before) = warm(tag);
    let took = timed(env.cli.command(run));
    env.run(&["rm", "-f", "v"]).success();
    settle(&env, &before, what);
    let mut rng = Rng::new(what);
    let n = kills();
    for _ in 0..n {
        let mut child = env
            .cli
            .command(run)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let delay = rng.within(took * 2);
        let pid = wait_for_process(env.cli.root(), needle, took * 3)
            .unwrap_or_else(|| panic!("no {what} process"));
        if let Some(left) = delay.checked_sub(t.elapsed()) {
            std::thread::sleep(left);
        }
        sigkill(pid);
        // The `run -d` that was starting it must give up, not hang.
        ends_within(&mut child, Duration::from_secs(120), "run -d", what);
        settle(&env, &before, what);
    }
    report(what, n, n);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_the_monitor() {
    soak_process(
        "soakmon",
        "the monitor",
        "__monitor",
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_qemu() {
    soak_process(
        "soakqemu",
        "QEMU",
        "qemu-system",
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_virtiofsd() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f"), b"x").unwrap();
    let bind = format!("{}:/mnt", share.path().display());
    let run = [
        "run", "-d", "--name", "v", "-v", &bind, IMAGE, "sleep", "600",
    ];
    soak_process("soakfs", "virtiofsd", "virtiofsd", &run);

    // Killed while the container runs: the container ends, saying why.
    let env = Env::tagged("soakfs2", true);
    env.run(&run).success();
    let pid = wait_for_process(env.cli.root(), "virtiofsd", Duration::from_secs(5)).unwrap();
    sigkill(pid);
    let ended = common::retry(|| {
        let i = env.inspect("v");
        (i["status"] == "exited").then_some(i)
    })
    .expect("the container still runs after its virtiofsd died");
    let reason = ended["exitReason"].as_str().unwrap_or_default();
    let want = format!(
        "virtiofsd for {} killed by signal 9",
        share.path().display()
    );
    assert!(reason.contains(&want), "{ended}");
    assert_eq!(env.qemus(), 0);
}

/// Debian's docker 20.10 client.
const DOCKER: &str = "/usr/bin/docker";

/// `container system service` on `socket` in the env's namespace, once it answers.
fn start_service(env: &Env, socket: &Path) -> std::process::Child {
    let child = env
        .cli
        .command(&["system", "service", "--socket", socket.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn container system service");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the service did not open {socket:?} (a killed one's socket is in the way?)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The docker client against `socket`, its own config (no user's credentials).
fn docker(socket: &Path, config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(DOCKER);
    c.args(args)
        .stdin(Stdio::null())
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_CONTEXT");
    c
}

/// Kills of the Engine API server while the docker client's `command` is under way
/// (`prepare` through the CLI first): the client must end, not hang; the host settles as
/// after any kill, and a new server opens the same socket.
fn soak_service(tag: &str, what: &str, prepare: &[&str], command: &[&str]) {
    assert!(
        Path::new(DOCKER).exists(),
        "{DOCKER} is missing: install Debian's docker.io (scripts/setup.sh)"
    );
    let (env, before) = warm(tag);
    let socket = env.cli.root().join("docker.sock");
    let config = tempfile::tempdir().unwrap();
    let took = {
        let mut service = start_service(&env, &socket);
        let took = calibrate(
            || {
                if !prepare.is_empty() {
                    env.run(prepare).success();
                }
                docker(&socket, config.path(), command)
            },
            || settle_quietly(&env),
        );
        let _ = service.kill();
        let _ = service.wait();
        took
    };
    settle(&env, &before, what);
    let mut rng = Rng::new(what);
    let mut killed = 0;
    let n = kills();
    for _ in 0..n {
        if !prepare.is_empty() {
            env.run(prepare).success();
        }
        let mut service = start_service(&env, &socket);
        let mut client = docker(&socket, config.path(), command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.within(took);
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline && client.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        killed += usize::from(client.try_wait().unwrap().is_none());
        let _ = service.kill();
        let _ = service.wait();
        // The client sees its connection close and gives up.
        ends_within(
            &mut client,
            Duration::from_secs(30),
            "the docker client",
            what,
        );
        settle(&env, &before, what);
    }
    // What a killed server left does not keep the next one from serving.
    let mut service = start_service(&env, &socket);
    let r = wait_output(docker(&socket, config.path(), &["ps", "-a", "-q"]));
    let _ = service.kill();
    let _ = service.wait();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.trim().is_empty(), "{r:?}");
    report(what, killed, n);
}

/// Every container removed (between calibration runs).
fn settle_quietly(env: &Env) {
    for id in env.run(&["ls", "-a", "-q"]).success().stdout.lines() {
        env.run(&["rm", "-f", id.trim()]).success();
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and docker.io: run scripts/test.sh"
)]
fn kill_9_of_the_engine_api_server() {
    soak_service(
        "soakapirun",
        "the Engine API server during docker run -d",
        &[],
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
    );
    soak_service(
        "soakapirm",
        "the Engine API server during docker rm -f",
        &["run", "-d", "--name", "v", IMAGE, "sleep", "600"],
        &["rm", "-f", "v"],
    );
}

/// Kills of a command that makes an image (`make`, which succeeds when left alone and ends
/// in the same state each time): after each, the store verifies, `system cleanup` runs,
/// `make` completes, and the host is as after the first undisturbed run.
fn soak_image_maker(env: &Env, what: &str, make: &dyn Fn() -> Command) {
    soak_image_maker_reset(env, what, make, None);
}

/// [`soak_image_maker`] with `reset` run before each (killed) `make`, for commands that would
/// have nothing left to do once their image is there (`image load`, `import`).
fn soak_image_maker_reset(
    env: &Env,
    what: &str,
    make: &dyn Fn() -> Command,
    reset: Option<&dyn Fn()>,
) {
    let given = reset.is_some();
    let reset = || reset.iter().for_each(|r| r());
    let took = calibrate(make, reset);
    if given {
        // calibrate's last reset took the image away: the state to return to is after a make.
        wait_output(make()).success();
    }
    let before = host_state(env);
    let mut rng = Rng::new(what);
    let mut killed = 0;
    let n = kills();
    for _ in 0..n {
        reset();
        killed += usize::from(kill_after(make(), rng.within(took)));
        store_verifies(env);
        env.run(&["system", "cleanup"]).success();
        wait_output(make()).success();
        store_verifies(env);
        host_returns_to(env, &before, what);
    }
    report(what, killed, n);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn kill_9_of_build_and_commit() {
    let (env, _) = warm("soakbuild");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN echo built > /tmp/x\n"),
    )
    .unwrap();
    let ctx_arg = ctx.path().to_str().unwrap().to_string();
    // --no-cache: the RUN step (a builder VM) runs every time, so there is something to kill.
    let build = || {
        env.cli.command(&[
            "build",
            "--no-cache",
            "--network",
            "none",
            "-t",
            "soak-built:1",
            &ctx_arg,
        ])
    };
    soak_image_maker(&env, "build", &build);
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "soak-built:1",
            "cat",
            "/tmp/x",
        ])
        .success();
    assert_eq!(r.stdout, "built\n");

    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "source",
        IMAGE,
        "sh",
        "-c",
        "echo changed > /tmp/y; sleep 600",
    ])
    .success();
    let commit = || env.cli.command(&["commit", "source", "soak-committed:1"]);
    soak_image_maker(&env, "commit", &commit);
    // The container went on through every kill.
    assert_eq!(env.inspect("source")["status"], "running");
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "soak-committed:1",
            "cat",
            "/tmp/y",
        ])
        .success();
    assert_eq!(r.stdout, "changed\n");
    env.run(&["rm", "-f", "source"]).success();
}

/// Whether `container KIND ls -q` lists `name`.
fn listed(env: &Env, kind: &str, name: &str) -> bool {
    env.run(&[kind, "ls", "-q"])
        .success()
        .stdout
        .lines()
        .any(|l| l.trim() == name)
}

/// `sh -c SCRIPT` in a container with volume `sv` on /data, which must succeed.
fn on_volume(env: &Env, script: &str) -> common::Run {
    env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "sv:/data",
        IMAGE,
        "sh",
        "-c",
        script,
    ])
    .success()
}

/// 16 MiB that do not compress (xorshift), so a load, import or push of an image holding them
/// has bytes to move when the kill lands.
fn incompressible(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn kill_9_of_image_load_import_push_and_volume_rm() {
    let (env, _) = warm("soakio");
    let scratch = tempfile::tempdir().unwrap();
    let bulk = incompressible(16 << 20);
    let mut layers = common::images::busybox_layers();
    layers.push(
        common::images::LayerBuilder::new()
            .dir("bulk", 0o755, 0, 0)
            .file("bulk/data", &bulk, 0o644, 0, 0)
            .finish(),
    );
    let config = common::images::busybox_config("amd64", &layers)["config"].clone();
    let archive = common::images::archive(scratch.path(), "localhost/soak-load:1", &layers, config);
    let archive_s = archive.to_str().unwrap().to_string();
    // `image rm` keeps blobs another image shares; `image prune` takes the rest, so each load
    // stores the bulk layer again (IMAGE stays: a container of it is kept for the purpose).
    env.run(&["create", "--name", "keep", IMAGE, "true"])
        .success();
    let drop_image = |name: &str| {
        env.run(&["image", "rm", name]);
        env.run(&["image", "prune", "-a"]).success();
    };
    soak_image_maker_reset(
        &env,
        "image load",
        &|| env.cli.command(&["image", "load", "-i", &archive_s]),
        Some(&|| drop_image("localhost/soak-load:1")),
    );

    let rootfs = scratch.path().join("rootfs.tar");
    std::fs::write(&rootfs, &layers.last().unwrap().tar).unwrap();
    let rootfs_s = rootfs.to_str().unwrap().to_string();
    soak_image_maker_reset(
        &env,
        "image import",
        &|| {
            env.cli
                .command(&["image", "import", &rootfs_s, "soak-imported:1"])
        },
        Some(&|| drop_image("soak-imported:1")),
    );

    // A push ends the same each time, so it needs no reset: the registry has the blobs after
    // the first, and a killed push must leave the next one able to finish.
    let reg = Registry::start();
    let reference = format!("{}/soak/pushed:1", reg.addr);
    // The import soak's prunes took the loaded image.
    env.run(&["image", "load", "-i", &archive_s]).success();
    env.run(&["image", "tag", "localhost/soak-load:1", &reference])
        .success();
    soak_image_maker(&env, "image push", &|| {
        env.cli.host_command(&["image", "push", &reference])
    });
    // What the registry holds is whole: pulled anew, it runs and has every byte.
    env.run(&["image", "rm", &reference]).success();
    env.cli
        .host_command(&["image", "pull", "-q", &reference])
        .status()
        .unwrap();
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            &reference,
            "sh",
            "-c",
            "wc -c < /bulk/data",
        ])
        .success();
    assert_eq!(r.stdout.trim(), (16 << 20).to_string());

    // volume rm of a volume with data in it (`settle` removes every container: `keep` goes
    // first, so the state compared holds none).
    env.run(&["rm", "keep"]).success();
    let make = || {
        env.run(&["volume", "create", "-s", "64M", "sv"]).success();
        on_volume(&env, "dd if=/dev/zero of=/data/f bs=1M count=8 2>/dev/null");
    };
    make();
    let took = timed(env.cli.command(&["volume", "rm", "sv"]));
    let before = host_state(&env);
    let mut rng = Rng::new("volume rm");
    let mut killed = 0;
    let n = kills();
    for _ in 0..n {
        make();
        killed += usize::from(kill_after(
            env.cli.command(&["volume", "rm", "sv"]),
            rng.within(took),
        ));
        env.run(&["system", "cleanup"]).success();
        // Either still whole (it mounts and holds its file) or gone; never half.
        if listed(&env, "volume", "sv") {
            let r = on_volume(&env, "wc -c < /data/f");
            assert_eq!(r.stdout.trim(), (8 << 20).to_string());
            env.run(&["volume", "rm", "sv"]).success();
        }
        settle(&env, &before, "volume rm");
    }
    report("volume rm", killed, n);
}
