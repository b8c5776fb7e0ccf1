//! `container network …` end to end: the real binary run under `ip netns exec` of a namespace
//! this test creates (and deletes on drop, also on failure), with a fresh `--root`.

use std::process::{Command, Output};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("ctrcli-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    /// Runs a command inside the namespace.
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Cli<'a> {
    ns: &'a Netns,
    root: tempfile::TempDir,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let bin = env!("CARGO_BIN_EXE_container");
        let root = self.root.path().to_str().unwrap();
        let mut full = vec![bin, "--root", root];
        full.extend_from_slice(args);
        self.ns.exec(&full)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{args:?} should fail with 125"
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
        err
    }
}

fn stdout(out: Output) -> String {
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn network_create_list_inspect_delete() {
    let ns = Netns::new("net");
    let cli = Cli {
        ns: &ns,
        root: tempfile::tempdir().unwrap(),
    };

    assert_eq!(
        cli.ok(&["network", "create", "web", "--subnet", "10.61.0.0/24"])
            .trim(),
        "web"
    );
    cli.ok(&[
        "network",
        "create",
        "iso",
        "--internal",
        "--subnet",
        "10.62.0.0/24",
        "--gateway",
        "10.62.0.254",
    ]);

    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["network", "ls", "--format", "json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "iso", "web"]);
    assert_eq!(cli.ok(&["network", "list", "-q"]), "default\niso\nweb\n");

    let inspect: serde_json::Value =
        serde_json::from_str(&cli.ok(&["network", "inspect", "web", "iso"])).unwrap();
    let web = &inspect[0];
    assert_eq!(web["subnet"], "10.61.0.0/24");
    assert_eq!(web["gateway"], "10.61.0.1");
    assert_eq!(web["internal"], false);
    assert_eq!(web["active"], true);
    assert_eq!(inspect[1]["gateway"], "10.62.0.254");
    assert_eq!(inspect[1]["internal"], true);
    let web_bridge = web["bridge"].as_str().unwrap().to_string();
    let iso_bridge = inspect[1]["bridge"].as_str().unwrap().to_string();

    // The bridges exist in the namespace with their gateway addresses.
    let addrs = stdout(ns.exec(&["ip", "-o", "-4", "addr", "show"]));
    assert!(
        addrs.contains(&web_bridge) && addrs.contains("10.61.0.1/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains(&iso_bridge) && addrs.contains("10.62.0.254/24"),
        "{addrs}"
    );
    // NAT only for the non-internal network.
    let rules = stdout(ns.exec(&["nft", "list", "ruleset"]));
    assert!(
        rules.contains("ip saddr 10.61.0.0/24") && rules.contains("masquerade"),
        "{rules}"
    );
    assert!(!rules.contains("10.62.0.0/24"), "{rules}");

    // Bad input: one line, exit 125, nothing created.
    let err = cli.fails(&["network", "create", "x", "--subnet", "10.61.0.0/16"]);
    assert!(err.contains("overlaps network web"), "{err}");
    let err = cli.fails(&["network", "create", "x", "--subnet", "10.63.0.7/24"]);
    assert!(err.contains("host bits"), "{err}");
    let err = cli.fails(&["network", "create", "bad/name"]);
    assert!(err.contains("invalid network name"), "{err}");
    let err = cli.fails(&["network", "create", "web"]);
    assert!(err.contains("already exists"), "{err}");
    let err = cli.fails(&["network", "inspect", "nope"]);
    assert!(err.contains("network nope not found"), "{err}");
    assert!(!cli.root.path().join("networks/x.json").exists());

    // Delete: removes bridges and rules; an unknown name fails after the others are deleted.
    let out = cli.run(&["network", "rm", "web", "nope", "iso"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(stdout(out), "web\niso\n");
    let links = stdout(ns.exec(&["ip", "-o", "link", "show"]));
    assert!(!links.contains("cbr"), "{links}");
    let tables = stdout(ns.exec(&["nft", "list", "tables"]));
    assert!(!tables.contains("containerization"), "{tables}");
    assert_eq!(cli.ok(&["network", "ls", "-q"]), "default\n");
}
