//! VM templates end to end: containers start from a restored copy of a pre-booted VM, each
//! with its own identity (RNG, boot id, MAC, address, hostname, clock) and its own disk;
//! cases a template cannot serve boot cold; another VM shape or a rebuilt init gets a template of
//! its own; a template build killed half-way is never used.
//!
//! Needs what tests/run.rs needs (root, QEMU, the kernel .deb, the static vminitd).

mod common;

use std::time::{Duration, Instant};

use common::vm::{Env, IMAGE};

/// A fresh root whose templates are its own (not the test binary's shared store), with
/// templates on: QEMU 7.2 (Debian 12) would otherwise boot cold by default, because its clones
/// cannot return freed memory (see runtime::real::template).
fn own_templates() -> Env {
    let mut env = Env::tagged("tpl", true);
    env.cli.env("CONTAINER_TEMPLATES", "on");
    std::fs::remove_file(env.cli.root().join("templates")).unwrap();
    env
}

/// The guest clock of container `name` is within 5 s of this host's.
fn assert_clock_is_the_hosts(env: &Env, name: &str) {
    let guest: u64 = exec(env, name, "busybox date +%s").parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(guest.abs_diff(host) <= 5, "guest {guest} host {host}");
}

/// The arguments that start container `name` detached, without a network, sleeping, with
/// `extra` options.
fn sleeper_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sleep", "600"]);
    args
}

/// Starts container `name` detached, without a network, sleeping.
fn sleeper(env: &Env, name: &str) {
    env.run(&sleeper_args(name, &[])).success();
}

fn exec(env: &Env, name: &str, script: &str) -> String {
    env.run(&["exec", name, "sh", "-c", script])
        .success()
        .stdout
        .trim()
        .to_string()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn containers_start_from_one_template_each_with_its_own_identity() {
    let env = own_templates();
    for name in ["a", "b"] {
        env.run(&["run", "-d", "--name", name, IMAGE, "sleep", "600"])
            .success();
    }
    let templates = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    let templates = templates.as_array().unwrap();
    assert_eq!(templates.len(), 1, "{templates:?}");
    let key = templates[0]["key"].as_str().unwrap();
    let (a, b) = (env.inspect("a"), env.inspect("b"));
    assert_eq!(a["vmTemplate"], key, "{a}");
    assert_eq!(b["vmTemplate"], key, "{b}");

    // What must be unique is unique: the kernel's RNG, the boot id, addresses, names.
    let boot_id = "cat /proc/sys/kernel/random/boot_id";
    assert_ne!(exec(&env, "a", boot_id), exec(&env, "b", boot_id));
    let random = "busybox head -c 16 /dev/urandom | busybox od -An -tx1";
    assert_ne!(exec(&env, "a", random), exec(&env, "b", random));
    for (name, doc) in [("a", &a), ("b", &b)] {
        let net = &doc["networks"][0];
        let mac = exec(&env, name, "cat /sys/class/net/eth0/address");
        assert_eq!(mac, net["mac"].as_str().unwrap(), "{doc}");
        let ip = exec(&env, name, "busybox ip -4 addr show eth0");
        assert!(
            ip.contains(net["address"].as_str().unwrap()),
            "{ip} vs {doc}"
        );
        assert_eq!(
            exec(&env, name, "busybox hostname"),
            doc["id"].as_str().unwrap()[..12]
        );
        // The NIC was probed in the template with the template's MAC: frames to the clone's
        // own must reach it (QEMU's receive filter follows the address the guest set).
        let address = net["address"].as_str().unwrap().split('/').next().unwrap();
        assert!(ping(&env, address), "{name} ({address}) did not answer");
        // The clock is this host's, not the template's.
        assert_clock_is_the_hosts(&env, name);
    }
    // Each clone has its own disk: a write of one is not seen by the other, nor by the next.
    exec(&env, "a", "echo mine > /data/written-by-a");
    assert_eq!(exec(&env, "a", "cat /data/written-by-a"), "mine");
    assert_eq!(
        exec(
            &env,
            "b",
            "test -e /data/written-by-a && echo seen || echo unseen"
        ),
        "unseen"
    );
    let r = env
        .run(&["run", "--rm", IMAGE, "sh", "-c", "ls /data; echo done"])
        .success();
    assert!(!r.stdout.contains("written-by-a"), "{r:?}");

    // Cold boots: asked for, and bind mounts (virtiofs needs shared guest memory).
    env.run(&[
        "run",
        "-d",
        "--name",
        "cold",
        "--no-template",
        IMAGE,
        "sleep",
        "600",
    ])
    .success();
    assert!(env.inspect("cold")["vmTemplate"].is_null());
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("f"), "from the host").unwrap();
    let bind = format!("{}:/h", host_dir.path().display());
    env.run(&[
        "run", "-d", "--name", "bind", "-v", &bind, IMAGE, "sleep", "600",
    ])
    .success();
    assert!(env.inspect("bind")["vmTemplate"].is_null());
    assert_eq!(exec(&env, "bind", "cat /h/f"), "from the host");

    // df counts it; prune removes it; the next start makes a new one.
    let df = env
        .run(&["system", "df", "--format", "json"])
        .success()
        .json();
    let row = df
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "templates")
        .cloned()
        .unwrap();
    assert_eq!(row["count"], 1, "{df}");
    assert!(row["bytes"].as_u64().unwrap() > 0, "{df}");
    env.run(&["delete", "-f", "a", "b", "cold", "bind"])
        .success();
    assert!(env
        .run(&["system", "template", "prune"])
        .success()
        .stdout
        .contains("removed 1"));
    let left = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(left.as_array().unwrap().len(), 0);
    env.run(&["run", "--rm", IMAGE, "true"]).success();
    let again = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(again.as_array().unwrap().len(), 1);
}

/// The keys of the templates `system template list` shows.
fn template_keys(env: &Env) -> Vec<String> {
    let list = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn another_vm_shape_or_a_rebuilt_init_gets_a_template_of_its_own() {
    let mut env = own_templates();
    env.cli.env("CONTAINER_POOL", "0");
    sleeper(&env, "first");
    let first = template_keys(&env);
    assert_eq!(first.len(), 1, "{first:?}");
    // The same shape again: the same template.
    sleeper(&env, "again");
    assert_eq!(template_keys(&env), first);
    assert_eq!(env.inspect("again")["vmTemplate"], first[0].as_str());

    // Another memory size is another VM shape.
    env.run(&sleeper_args("bigger", &["--memory", "768m"]))
        .success();
    let keys = template_keys(&env);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let bigger = env.inspect("bigger");
    let bigger_key = bigger["vmTemplate"].as_str().unwrap().to_string();
    assert!(!first.contains(&bigger_key), "{bigger}");
    assert_eq!(
        exec(
            &env,
            "bigger",
            "busybox awk '/MemTotal/ {print ($2 > 600000)}' /proc/meminfo"
        ),
        "1"
    );

    // A rebuilt vminitd (here the same binary with a byte appended, which an ELF loader
    // ignores) makes another init filesystem, so the next start builds a template of its own
    // rather than restoring a VM that runs the old init.
    let dir = tempfile::tempdir().unwrap();
    let rebuilt = dir.path().join("vminitd");
    let mut bytes = std::fs::read(testkit::static_vminitd()).unwrap();
    bytes.push(0);
    std::fs::write(&rebuilt, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rebuilt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = env
        .cli
        .command(&sleeper_args("rebuilt", &[]))
        .env(testkit::VMINITD_VAR, &rebuilt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keys = template_keys(&env);
    assert_eq!(keys.len(), 3, "{keys:?}");
    let rebuilt_key = env.inspect("rebuilt")["vmTemplate"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !first.contains(&rebuilt_key) && rebuilt_key != bigger_key,
        "{rebuilt_key} {keys:?}"
    );
    assert_eq!(exec(&env, "rebuilt", "echo ok"), "ok");

    env.run(&["delete", "-f", "first", "again", "bigger", "rebuilt"])
        .success();
    env.run(&["system", "template", "prune"]).success();
    assert!(template_keys(&env).is_empty());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_template_build_killed_half_way_is_never_used() {
    let env = own_templates();
    let templates = env.cli.root().join("templates");
    env.run(&["create", "--name", "victim", IMAGE, "true"])
        .success();
    let mut start = env.cli.command(&["start", "victim"]);
    let mut child = start.spawn().unwrap();
    // Wait until a build is under way, then kill its monitor (the builder) with SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(120);
    let building = loop {
        let tmp = std::fs::read_dir(&templates).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        });
        if let Some(t) = tmp {
            break t.path();
        }
        assert!(Instant::now() < deadline, "no template build started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let monitor = env.inspect("victim")["monitorPid"].as_u64().unwrap();
    // SAFETY: kill(2) of a pid this test's container started; a stale pid only fails.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.qemus() > 0 {
        assert!(Instant::now() < deadline, "QEMU outlived its monitor");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing half-made counts as a template.
    let listed = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    // The next start makes a whole one (clearing the leftover) and runs from it.
    env.run(&["system", "cleanup"]).success();
    let r = env
        .run(&["run", "--name", "after", IMAGE, "echo", "ok"])
        .success();
    assert_eq!(r.stdout, "ok\n");
    let after = env.inspect("after");
    let log = std::fs::read_to_string(
        env.cli
            .root()
            .join("containers")
            .join(after["id"].as_str().unwrap())
            .join("monitor.log"),
    )
    .unwrap_or_default();
    assert!(after["vmTemplate"].is_string(), "{after}\n{log}");
    let left: Vec<_> = std::fs::read_dir(&templates)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !building.exists(),
        "{} left behind: {left:?}\n{log}",
        building.display()
    );
    let listed = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn concurrent_first_runs_build_one_template_and_all_start_from_it() {
    let env = own_templates();
    let names = ["p1", "p2", "p3"];
    // Started together on an empty template store: one builds, the others wait for it.
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            env.cli
                .command(&[
                    "--log-level",
                    "info",
                    "run",
                    "-d",
                    "--network",
                    "none",
                    "--name",
                    n,
                    IMAGE,
                    "sleep",
                    "600",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let listed = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let key = listed[0]["key"].as_str().unwrap();
    let mut builders = 0;
    for n in names {
        let doc = env.inspect(n);
        assert_eq!(
            doc["vmTemplate"], key,
            "{n} did not start from the template: {doc}"
        );
        let log = std::fs::read_to_string(
            env.cli
                .root()
                .join("containers")
                .join(doc["id"].as_str().unwrap())
                .join("monitor.log"),
        )
        .unwrap_or_default();
        builders += usize::from(log.contains("made VM template"));
        assert_eq!(exec(&env, n, "echo up"), "up");
    }
    assert_eq!(builders, 1, "one template build, not {builders}");
    let leftovers: Vec<_> = std::fs::read_dir(env.cli.root().join("templates"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    env.run(&["delete", "-f", "p1", "p2", "p3"]).success();
}

/// The pool's waiting VMs as their entries say (`<root>/pool/*/entry.json`).
fn waiting(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_dir(env.cli.root().join("pool"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("entry.json")).ok())
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .collect()
}

/// Waits until a pre-booted VM with `nets` NICs waits (after the start that asked for it);
/// returns its pool process's pid.
fn until_one_waits(env: &Env, nets: u64) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(e) = waiting(env).iter().find(|e| e["nets"] == nets) {
            return e["pid"].as_u64().unwrap() as u32;
        }
        assert!(Instant::now() < deadline, "no pre-booted VM came up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn until_gone(pid: u32, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "pool process {pid} outlived {why}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pings `address` from the test's network namespace (the host side of the container's).
fn ping(env: &Env, address: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &env.netns.name,
            "busybox",
            "ping",
            "-c1",
            "-W5",
            address,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_pre_booted_vm_becomes_the_next_container_of_its_shape() {
    let env = own_templates();
    // The first start makes the template; once its process runs, a VM of its shape is
    // restored ahead of time and waits.
    env.run(&["run", "--rm", "--network", "none", IMAGE, "true"])
        .success();
    let first = until_one_waits(&env, 0);
    let listed = env
        .run(&["system", "template", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(listed[0]["waiting"], 1, "{listed}");
    let key = listed[0]["key"].as_str().unwrap().to_string();
    assert_eq!(waiting(&env)[0]["key"], key.as_str());

    // The next container of that shape is that VM: its pool process is its monitor, QEMU
    // stays its child, and its own disk is behind the placeholder.
    sleeper(&env, "p");
    let p = env.inspect("p");
    assert_eq!(p["vmPrebooted"], true, "{p}");
    assert_eq!(p["vmTemplate"], key.as_str(), "{p}");
    assert_eq!(p["monitorPid"], first, "{p}");
    assert_eq!(exec(&env, "p", "cat /bin/notexec.sh"), "#!/bin/sh\necho no");
    exec(&env, "p", "echo mine > /data/written-by-p");
    assert_eq!(exec(&env, "p", "cat /data/written-by-p"), "mine");
    assert_eq!(
        exec(&env, "p", "busybox hostname"),
        p["id"].as_str().unwrap()[..12]
    );
    assert_clock_is_the_hosts(&env, "p");

    // Its start made the next one: a second pre-booted container has an identity of its own
    // and does not see the first one's writes.
    let second = until_one_waits(&env, 0);
    assert_ne!(second, first);
    sleeper(&env, "q");
    let q = env.inspect("q");
    assert_eq!(q["vmPrebooted"], true, "{q}");
    let boot_id = "cat /proc/sys/kernel/random/boot_id";
    assert_ne!(exec(&env, "p", boot_id), exec(&env, "q", boot_id));
    let random = "busybox head -c 16 /dev/urandom | busybox od -An -tx1";
    assert_ne!(exec(&env, "p", random), exec(&env, "q", random));
    assert_eq!(
        exec(
            &env,
            "q",
            "test -e /data/written-by-p && echo seen || echo unseen"
        ),
        "unseen"
    );
    // A container's stop ends its VM as any monitor's does.
    env.run(&["delete", "-f", "p"]).success();
    until_gone(first, "its container");

    // A VM with a NIC waits with a tap of its own, which becomes the container's: its name,
    // bridge and address, reachable from the host.
    let third = until_one_waits(&env, 0);
    env.run(&["run", "-d", "--name", "net1", IMAGE, "sleep", "600"])
        .success();
    assert_eq!(env.inspect("net1")["vmPrebooted"], false);
    until_one_waits(&env, 1);
    env.run(&["run", "-d", "--name", "net2", IMAGE, "sleep", "600"])
        .success();
    let net2 = env.inspect("net2");
    assert_eq!(net2["vmPrebooted"], true, "{net2}");
    let attachment = &net2["networks"][0];
    let address = attachment["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(
        ping(&env, address),
        "net2 ({address}) did not answer: {net2}"
    );
    assert_eq!(
        exec(&env, "net2", "cat /sys/class/net/eth0/address"),
        attachment["mac"].as_str().unwrap()
    );
    // Both containers' taps are on the network's bridge under their session's names; the
    // pool's own (for the next VM) is attached to nothing.
    let links = std::process::Command::new("ip")
        .args(["-n", &env.netns.name, "-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let bridged: Vec<&str> = links.lines().filter(|l| l.contains(" master ")).collect();
    assert_eq!(bridged.len(), 2, "{links}");
    assert!(bridged.iter().all(|l| l.contains(": ctap")), "{links}");

    // Not served by the pool: a start with the pool turned off.
    let mut off = env.cli.command(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "off",
        IMAGE,
        "sleep",
        "600",
    ]);
    off.env("CONTAINER_POOL", "0");
    assert!(off.output().unwrap().status.success());
    assert_eq!(env.inspect("off")["vmPrebooted"], false);
    assert!(waiting(&env).iter().any(|e| e["pid"] == third));

    // Prune stops the waiting VMs with the templates; containers keep running.
    let pids: Vec<u32> = waiting(&env)
        .iter()
        .map(|e| e["pid"].as_u64().unwrap() as u32)
        .collect();
    env.run(&["system", "template", "prune"]).success();
    for pid in pids {
        until_gone(pid, "system template prune");
    }
    assert!(waiting(&env).is_empty());
    assert_eq!(exec(&env, "q", "echo up"), "up");
    assert!(ping(&env, address));
    env.run(&["delete", "-f", "q", "net1", "net2", "off"])
        .success();
    assert!(!String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-n", &env.netns.name, "-o", "link", "show"])
            .output()
            .unwrap()
            .stdout
    )
    .contains("cpo"));

    // A waiting VM leaves by itself after CONTAINER_POOL_IDLE seconds.
    let mut idle = env
        .cli
        .command(&["run", "--rm", "--network", "none", IMAGE, "true"]);
    idle.env("CONTAINER_POOL_IDLE", "2");
    assert!(idle.output().unwrap().status.success());
    let last = until_one_waits(&env, 0);
    until_gone(last, "its idle time");
    assert_eq!(env.qemus(), 0, "a pre-booted VM's QEMU outlived it");
}
