//! `container network …` end to end: the real binary run under `ip netns exec` of a namespace
//! this test creates (and deletes on drop, also on failure), with a fresh `--root`.

mod common;

use common::{netns::Netns, Cli};

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn network_create_list_inspect_delete() {
    let ns = Netns::new("net");
    let mut cli = Cli::new();
    cli.in_netns(&ns.name);
    let ok = |args: &[&str]| cli.run(args).success().stdout;
    let fails = |args: &[&str], needle: &str| {
        let err = cli.run(args).fails_with(needle).stderr;
        assert!(err.contains(needle), "{err}");
    };

    assert_eq!(
        ok(&["network", "create", "web", "--subnet", "10.61.0.0/24"]).trim(),
        "web"
    );
    ok(&[
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
        serde_json::from_str(&ok(&["network", "ls", "--format", "json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "iso", "web"]);
    assert_eq!(ok(&["network", "list", "-q"]), "default\niso\nweb\n");

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&["network", "inspect", "web", "iso"])).unwrap();
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
    let addrs = ns.ip(&["-o", "-4", "addr", "show"]);
    assert!(
        addrs.contains(&web_bridge) && addrs.contains("10.61.0.1/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains(&iso_bridge) && addrs.contains("10.62.0.254/24"),
        "{addrs}"
    );
    // NAT only for the non-internal network.
    let rules = ns.ruleset();
    assert!(
        rules.contains("ip saddr 10.61.0.0/24") && rules.contains("masquerade"),
        "{rules}"
    );
    assert!(!rules.contains("10.62.0.0/24"), "{rules}");

    // Bad input: one line, exit 125, nothing created.
    fails(
        &["network", "create", "x", "--subnet", "10.61.0.0/16"],
        "overlaps network web",
    );
    fails(
        &["network", "create", "x", "--subnet", "10.63.0.7/24"],
        "host bits",
    );
    fails(&["network", "create", "bad/name"], "invalid network name");
    fails(&["network", "create", "web"], "already exists");
    fails(&["network", "inspect", "nope"], "network nope not found");
    assert!(!cli.root().join("networks/x.json").exists());

    // Delete: removes bridges and rules; an unknown name fails after the others are deleted.
    let out = cli.run(&["network", "rm", "web", "nope", "iso"]);
    assert_eq!(out.code, 125);
    assert_eq!(out.stdout, "web\niso\n");
    let links = ns.ip(&["-o", "link", "show"]);
    assert!(!links.contains("cbr"), "{links}");
    let tables = testkit::run(&mut ns.command("nft", &["list", "tables"]));
    assert!(!tables.contains("containerization"), "{tables}");
    assert_eq!(ok(&["network", "ls", "-q"]), "default\n");
}
