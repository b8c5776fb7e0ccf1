//! Container networking end to end: real VMs (TCG) started by the real `container` binary, with
//! every command run under `ip netns exec` of a namespace the test creates (and deletes, pass
//! or fail), so bridges, taps and nf_tables rules never touch the host's namespace.
//!
//! Needs what `run.rs` needs (kernel .deb, static vminitd, qemu) plus `ip`, `nft`, `curl`
//! and busybox-static on the host.

mod common;

use common::retry;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;

use common::images;
use common::netns::Netns;
use common::{vm, Run};
use serde_json::json;

const IMAGE: &str = "localhost/net-test:1";
const PAGE: &str = "hello from the container\n";

/// Busybox with the network applets and a page for httpd at /www.
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("net-image");
        let _ = std::fs::remove_dir_all(&dir);
        let applets = [
            "ip", "httpd", "nc", "nslookup", "sleep", "cat", "grep", "mkfifo", "wc", "dd",
            "timeout",
        ];
        let layers = images::busybox_with(&applets, |l| {
            l.dir("www", 0o755, 0, 0)
                .file("www/index.html", PAGE.as_bytes(), 0o644, 0, 0)
        });
        let config = json!({
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "ExposedPorts": {"80/tcp": {}},
        });
        images::archive(&dir, IMAGE, &layers, config)
    })
}

/// The shared VM test environment (fresh root; every command in the namespace `ns`) with this
/// file's image; containers force-deleted on drop.
struct Env {
    vm: vm::Env,
}

impl Env {
    fn new(tag: &str) -> Env {
        let vm = vm::Env::tagged(tag, false);
        vm.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
            .success();
        Env { vm }
    }

    fn ns(&self) -> &Netns {
        &self.vm.netns
    }

    fn run(&self, args: &[&str]) -> Run {
        self.vm.run(args)
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        self.vm.inspect(name)
    }

    /// The container's first address without prefix.
    fn ip(&self, name: &str) -> String {
        let c = self.inspect(name);
        let a = c["networks"][0]["address"].as_str().expect("an address");
        a.split('/').next().unwrap().to_string()
    }

    /// `curl` of `url` from inside the namespace, retried while the server starts.
    fn host_get(&self, url: &str) -> String {
        let mut last = String::new();
        retry(|| {
            let (ok, out) = self.ns().exec("curl", &["-sSf", "-m", "3", url]);
            last = out.clone();
            ok.then_some(out)
        })
        .unwrap_or_else(|| panic!("GET {url} from the host namespace failed: {last}"))
    }

    /// HTTP GET of `/` on `host` `port` inside container `name` (busybox `nc`: the static
    /// busybox's `wget` crashes), retried while the server starts; the body.
    fn ctr_get(&self, name: &str, host: &str, port: u16) -> Option<String> {
        retry(|| self.ctr_get_once(name, host, port))
    }

    fn ctr_get_once(&self, name: &str, host: &str, port: u16) -> Option<String> {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}");
        let r = self.run(&["exec", name, "sh", "-c", &script]);
        let (head, body) = r.stdout.split_once("\r\n\r\n")?;
        (r.code == 0 && head.contains(" 200 ")).then(|| body.to_string())
    }

    /// Starts a one-shot busybox `nc -l -p PORT | wc -c > /tmp/bulk-PORT` in container `name`.
    /// Its stdin stays open on an idle fifo: busybox nc half-closes the connection when its
    /// stdin ends, and a busybox nc sender stops as soon as it reads that EOF.
    fn bulk_listen(&self, name: &str, port: u16) {
        let script = format!(
            "mkfifo /tmp/idle-{port}; exec 3<>/tmp/idle-{port}; \
             nc -l -p {port} <&3 | wc -c > /tmp/bulk-{port}"
        );
        self.run(&["exec", "-d", name, "sh", "-c", &script])
            .success();
    }

    /// The byte count the listener of [`Env::bulk_listen`] wrote once its peer closed.
    fn bulk_received(&self, name: &str, port: u16) -> usize {
        let path = format!("/tmp/bulk-{port}");
        retry(|| {
            let r = self.run(&["exec", name, "cat", &path]);
            r.stdout.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("{name} never finished receiving on port {port}"))
    }

    fn links(&self) -> String {
        self.ns().ip(&["-o", "link"])
    }

    fn tables(&self) -> String {
        self.ns().exec("nft", &["list", "tables"]).1
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn containers_get_addresses_reach_each_other_and_publish_ports() {
    let env = Env::new("ctr");
    env.run(&["run", "-d", "--name", "web", "-p", "18080:80", IMAGE])
        .success();
    let web = env.inspect("web");
    let net = &web["networks"][0];
    assert_eq!(net["network"], "default", "{web}");
    let address = net["address"].as_str().unwrap().to_string();
    let ip = env.ip("web");
    assert!(address.ends_with("/24"), "{address}");
    assert!(net["mac"].as_str().unwrap().starts_with("02:"), "{net}");
    let gateway = net["gateway"].as_str().unwrap().to_string();
    assert_ne!(gateway, ip);

    // The guest has it on eth0.
    let addr = env
        .run(&["exec", "web", "ip", "-o", "-4", "addr", "show", "eth0"])
        .success();
    assert!(addr.stdout.contains(&address), "{}", addr.stdout);
    let hosts = env
        .run(&["exec", "web", "cat", "/etc/resolv.conf"])
        .success();
    assert!(
        hosts.stdout.contains(&format!("nameserver {gateway}")),
        "{}",
        hosts.stdout
    );

    // Host → container by IP, and through the published port on the namespace's loopback.
    assert_eq!(env.host_get(&format!("http://{ip}/")), PAGE);
    assert_eq!(env.host_get("http://127.0.0.1:18080/"), PAGE);

    // The same host port again: a clear error before any VM boots.
    let r = env.run(&["run", "-d", "--name", "clash", "-p", "18080:80", IMAGE]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("18080"), "{}", r.stderr);
    assert!(env.inspect("clash")["vmPid"].is_null());
    env.run(&["delete", "clash"]).success();

    // Container → container by IP and by name (hosts file), and back by name (DNS).
    env.run(&["run", "-d", "--name", "client", IMAGE, "sleep", "600"])
        .success();
    let client_ip = env.ip("client");
    assert_ne!(client_ip, ip, "two containers share an address");
    assert_eq!(env.ctr_get("client", &ip, 80).as_deref(), Some(PAGE));
    assert_eq!(env.ctr_get("client", "web", 80).as_deref(), Some(PAGE));
    let lookup = env
        .run(&["exec", "web", "nslookup", "client", &gateway])
        .success();
    assert!(lookup.stdout.contains(&client_ip), "{}", lookup.stdout);

    // Bulk TCP, host → container and container → container: full-size segments through tap,
    // bridge and virtio-net. The page above fits in one packet, so an MTU or offload mismatch
    // that stalls real transfers would pass it.
    const BULK: usize = 4 << 20;
    env.bulk_listen("web", 5001);
    let send = format!("head -c {BULK} /dev/zero | timeout 60 busybox nc {ip} 5001");
    retry(|| env.ns().exec("sh", &["-c", &send]).0.then_some(()))
        .expect("host → web bulk send refused, or stalled past 60 s");
    assert_eq!(env.bulk_received("web", 5001), BULK, "host → container");
    env.bulk_listen("web", 5002);
    let send = format!(
        "dd if=/dev/zero of=/tmp/payload bs=1M count={} 2>/dev/null && \
         timeout 60 nc {ip} 5002 < /tmp/payload",
        BULK >> 20
    );
    retry(|| (env.run(&["exec", "client", "sh", "-c", &send]).code == 0).then_some(()))
        .expect("client → web bulk send refused, or stalled past 60 s");
    assert_eq!(
        env.bulk_received("web", 5002),
        BULK,
        "container → container"
    );

    // list shows the addresses.
    let table = env.run(&["list"]).success().stdout;
    assert!(table.contains(&ip) && table.contains(&client_ip), "{table}");
    let items = env.run(&["list", "--format", "json"]).success().json();
    let ips: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["ip"].as_str())
        .collect();
    assert!(
        ips.contains(&ip.as_str()) && ips.contains(&client_ip.as_str()),
        "{items}"
    );

    // A restart keeps the address and the published port.
    env.run(&["stop", "-t", "1", "web"]).success();
    env.run(&["start", "web"]).success();
    assert_eq!(env.ip("web"), ip);
    assert_eq!(env.host_get("http://127.0.0.1:18080/"), PAGE);
    // No host address given: both loopbacks, as docker lists 0.0.0.0 and [::].
    assert_eq!(
        env.run(&["port", "web"]).success().stdout,
        "80/tcp -> 127.0.0.1:18080\n80/tcp -> [::1]:18080\n"
    );
    env.run(&["port", "web", "81/tcp"])
        .fails_with("no public port 81/tcp");

    // -P: the image's EXPOSEd port on a free loopback port; -p with only a container port too.
    env.run(&[
        "run",
        "-d",
        "--name",
        "auto",
        "-P",
        "-p",
        "127.0.0.1::8000",
        IMAGE,
    ])
    .success();
    let ports = env.run(&["port", "auto"]).success().stdout;
    let host_of = |ctr: &str| -> String {
        ports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{ctr} -> ")))
            .unwrap_or_else(|| panic!("{ctr} not in {ports}"))
            .to_string()
    };
    let auto = host_of("80/tcp");
    assert!(
        auto.starts_with("127.0.0.1:") && !auto.ends_with(":0"),
        "{ports}"
    );
    assert!(host_of("8000/tcp").starts_with("127.0.0.1:"), "{ports}");
    assert_eq!(env.host_get(&format!("http://{auto}/")), PAGE);
    // -P's port on both loopbacks (one port), the explicit 127.0.0.1 alone.
    assert!(
        ports.contains(&format!("80/tcp -> [::1]:{}\n", &auto[10..])),
        "{ports}"
    );
    let inspected = env.inspect("auto");
    assert_eq!(
        inspected["ports"].as_array().map(Vec::len),
        Some(3),
        "{inspected}"
    );
    env.run(&["stop", "-t", "1", "auto"]).success();
    assert_eq!(env.run(&["port", "auto"]).success().stdout, "");
    env.run(&["delete", "auto"]).success();

    // After stop and delete nothing is left: no tap, no bridge, no table.
    assert!(env.links().contains("ctap"), "{}", env.links());
    env.run(&["delete", "-f", "web", "client"]).success();
    let links = env.links();
    assert!(!links.contains("ctap") && !links.contains("cbr"), "{links}");
    assert!(
        !env.tables().contains("containerization"),
        "{}",
        env.tables()
    );
    let (listening, out) = env
        .ns()
        .exec("curl", &["-sS", "-m", "2", "http://127.0.0.1:18080/"]);
    assert!(
        !listening && out.contains("(7)"),
        "the published port is still open: {out}"
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn network_none_has_only_loopback() {
    let env = Env::new("none");
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "ip",
            "-o",
            "link",
        ])
        .success();
    let names: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(names, ["lo"], "{}", r.stdout);
    assert!(!env.links().contains("ctap"));
    env.run(&["run", "--rm", "--network", "none", "-p", "8080:80", IMAGE])
        .fails_with("--network none");
    env.run(&["run", "--rm", "--network", "nosuch", IMAGE])
        .fails_with("nosuch");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn hostname_dns_and_extra_hosts_flags_shape_name_resolution() {
    let env = Env::new("names");
    let r = env
        .run(&[
            "run",
            "--rm",
            "-h",
            "web1",
            "--dns",
            "10.9.9.9",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:3",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "gw:host-gateway",
            IMAGE,
            "sh",
            "-c",
            "hostname; cat /etc/resolv.conf /etc/hosts; ip -o -4 route",
        ])
        .success();
    let out = &r.stdout;
    assert!(out.starts_with("web1\n"), "{out}");
    assert!(out.contains("nameserver 10.9.9.9"), "{out}");
    assert!(
        !out.contains("nameserver 192.168."),
        "--dns replaces the network's: {out}"
    );
    assert!(out.contains("search example.test"), "{out}");
    assert!(out.contains("options ndots:3"), "{out}");
    let hosts_line = |ip: &str, name: &str| {
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [ip, name])
    };
    assert!(hosts_line("10.1.2.3", "db"), "{out}");
    // host-gateway is the gateway of the container's network: its default route.
    let gateway = out
        .lines()
        .find_map(|l| l.strip_prefix("default via "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a default route");
    assert!(hosts_line(gateway, "gw"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("web1")),
        "own name in /etc/hosts: {out}"
    );
    env.run(&["run", "--rm", "--add-host", "nocolon", IMAGE, "true"])
        .fails_with("invalid --add-host \"nocolon\"");
    env.run(&["run", "--rm", "--hostname", "bad_name", IMAGE, "true"])
        .fails_with("invalid hostname \"bad_name\"");
    env.run(&["run", "--rm", "--dns", "not-an-ip", IMAGE, "true"])
        .fails_with("not-an-ip");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn network_aliases_resolve_through_dns_and_hosts() {
    let env = Env::new("alias");
    env.run(&["network", "create", "al"]).success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "al",
        "--network-alias",
        "www",
        "--network-alias",
        "api.internal",
        IMAGE,
    ])
    .success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "al",
        IMAGE,
        "sleep",
        "300",
    ])
    .success();
    let web = env.inspect("web");
    let id = web["id"].as_str().unwrap().to_string();
    let gateway = web["networks"][0]["gateway"].as_str().unwrap().to_string();
    let ip = env.ip("web");
    assert_eq!(
        web["NetworkSettings"]["Networks"]["al"]["Aliases"],
        json!(["www", "api.internal", &id[..12]])
    );
    // The network's DNS responder answers the aliases and the short id as the name.
    for name in ["www", "api.internal", &id[..12]] {
        let lookup = env
            .run(&["exec", "client", "nslookup", name, &gateway])
            .success();
        assert!(lookup.stdout.contains(&ip), "{name}: {}", lookup.stdout);
    }
    // The client started after web: its /etc/hosts lists web with its aliases.
    let hosts = env.run(&["exec", "client", "cat", "/etc/hosts"]).success();
    let words = [ip.as_str(), "web", "www", "api.internal"];
    assert!(
        hosts
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == words),
        "{}",
        hosts.stdout
    );
    assert_eq!(env.ctr_get("client", "www", 80).as_deref(), Some(PAGE));
    // Aliases need a network, and must be DNS names; both refused before anything is made.
    env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--network-alias",
        "x",
        IMAGE,
        "true",
    ])
    .fails_with("--network none");
    env.run(&[
        "run",
        "--rm",
        "--network",
        "al",
        "--network-alias",
        "a b",
        IMAGE,
        "true",
    ])
    .fails_with("invalid network alias \"a b\"");
    env.run(&["rm", "-f", "web", "client"]).success();
    env.run(&["network", "delete", "al"]).success();
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn ipv6_networks_addresses_names_and_both_loopbacks() {
    let env = Env::new("ipv6");
    env.run(&[
        "network",
        "create",
        "--subnet",
        "fd00:c0de:1::/64",
        "--subnet",
        "10.231.0.0/24",
        "v6",
    ])
    .success();
    env.run(&["network", "create", "--ipv6", "auto6"]).success();
    env.run(&["network", "create", "--gateway", "fd00::1", "x"])
        .fails_with("needs an IPv6 network");
    env.run(&[
        "network",
        "create",
        "--subnet",
        "fd00:1::/64",
        "--subnet",
        "fd00:2::/64",
        "y",
    ])
    .fails_with("one subnet per address family");
    env.run(&[
        "network",
        "create",
        "--subnet",
        "fd00:c0de:1:0:8000::/65",
        "y",
    ])
    .fails_with("overlaps network v6");
    let auto = env.run(&["network", "inspect", "auto6"]).success();
    let auto: serde_json::Value = serde_json::from_str(&auto.stdout).unwrap();
    let subnet6 = auto[0]["subnet6"].as_str().unwrap();
    assert!(
        subnet6.starts_with("fd") && subnet6.ends_with("::/64"),
        "{auto}"
    );
    let list = env.run(&["network", "ls"]).success().stdout;
    assert!(list.contains("fd00:c0de:1::/64"), "{list}");

    env.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "v6",
        "-p",
        "18088:80",
        // A range of ports, and a host range for one port (the first free one is taken).
        "-p",
        "127.0.0.1:18090-18091:80-81",
        "-p",
        "127.0.0.1:18095-18099:80",
        IMAGE,
    ])
    .success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "v6,mtu=1400",
        "--ip6",
        "fd00:c0de:1::99",
        "--mac-address",
        "02:12:34:56:78:9A",
        IMAGE,
        "sleep",
        "300",
    ])
    .success();
    let web = env.inspect("web");
    assert_eq!(web["networks"][0]["ipv6Address"], "fd00:c0de:1::2/64");
    assert_eq!(web["networks"][0]["ipv6Gateway"], "fd00:c0de:1::1");
    let docker = &web["NetworkSettings"]["Networks"]["v6"];
    assert_eq!(
        (
            &docker["GlobalIPv6Address"],
            &docker["GlobalIPv6PrefixLen"],
            &docker["IPv6Gateway"]
        ),
        (
            &json!("fd00:c0de:1::2"),
            &json!(64),
            &json!("fd00:c0de:1::1")
        )
    );
    // The guest's side: the pinned address and MAC, no tentative address, the IPv6 route.
    let addr = env
        .run(&["exec", "client", "ip", "-6", "addr", "show", "eth0"])
        .success()
        .stdout;
    assert!(addr.contains("fd00:c0de:1::99/64"), "{addr}");
    assert!(!addr.contains("tentative"), "{addr}");
    let link = env
        .run(&["exec", "client", "ip", "link", "show", "eth0"])
        .success()
        .stdout;
    assert!(link.contains("02:12:34:56:78:9a"), "{link}");
    assert!(link.contains("mtu 1400"), "{link}");
    let route = env
        .run(&["exec", "client", "ip", "-6", "route"])
        .success()
        .stdout;
    assert!(route.contains("default via fd00:c0de:1::1"), "{route}");
    // Container to container over IPv6, by address and by name (DNS AAAA, /etc/hosts).
    assert_eq!(
        env.ctr_get("client", "fd00:c0de:1::2", 80).as_deref(),
        Some(PAGE)
    );
    let lookup = env
        .run(&[
            "exec",
            "client",
            "nslookup",
            "-type=AAAA",
            "web",
            "10.231.0.1",
        ])
        .success()
        .stdout;
    assert!(lookup.contains("fd00:c0de:1::2"), "{lookup}");
    let hosts = env
        .run(&["exec", "client", "cat", "/etc/hosts"])
        .success()
        .stdout;
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["fd00:c0de:1::2", "web"]),
        "{hosts}"
    );
    // The host reaches the container's IPv6 address through the bridge.
    let mut last = String::new();
    let direct = retry(|| {
        let (ok, out) = env
            .ns()
            .exec("curl", &["-gsSf", "-m", "3", "http://[fd00:c0de:1::2]:80/"]);
        last = out.clone();
        ok.then_some(out)
    });
    assert_eq!(direct.as_deref(), Some(PAGE), "{last}");
    // -p without an address: both loopbacks, one port, as `container port` says.
    assert_eq!(env.host_get("http://127.0.0.1:18088/"), PAGE);
    let (ok, v6) = env
        .ns()
        .exec("curl", &["-gsSf", "-m", "3", "http://[::1]:18088/"]);
    assert!(ok && v6 == PAGE, "{v6}");
    let port = env.run(&["port", "web"]).success().stdout;
    assert!(
        port.contains("127.0.0.1:18088") && port.contains("[::1]:18088"),
        "{port}"
    );
    for line in [
        "80/tcp -> 127.0.0.1:18090\n",
        "81/tcp -> 127.0.0.1:18091\n",
        "80/tcp -> 127.0.0.1:18095\n",
    ] {
        assert!(port.contains(line), "{line}: {port}");
    }
    assert_eq!(env.host_get("http://127.0.0.1:18095/"), PAGE);
    // IPv6 egress is masqueraded like IPv4.
    let rules = env.ns().exec("nft", &["list", "ruleset"]).1;
    assert!(rules.contains("ip6 saddr fd00:c0de:1::/64"), "{rules}");
    // Addresses that cannot be had are refused before anything boots.
    env.run(&[
        "run",
        "--rm",
        "--name",
        "clash6",
        "--network",
        "v6,ip6=fd00:c0de:1::2",
        IMAGE,
        "true",
    ])
    .fails_with("another container has it");
    // A --rm container whose start failed goes, as docker's daemon removes it.
    env.run(&["inspect", "clash6"])
        .fails_with("no such container");
    env.run(&["run", "--rm", "--ip6", "fd00:c0de:1::5", IMAGE, "true"])
        .fails_with("has no IPv6");
    env.run(&["run", "--rm", "--network", "v6,mtu=1", IMAGE, "true"])
        .fails_with("between 1280 and the network's 1500");
    env.run(&["run", "--rm", "--network", "v6,speed=1", IMAGE, "true"])
        .fails_with("unknown option \"speed\"");
    // network connect/disconnect (stopped containers) and prune.
    env.run(&["create", "--name", "later", "--network", "v6", IMAGE])
        .success();
    env.run(&[
        "network",
        "connect",
        "--alias",
        "extra",
        "--ip6",
        "fd00:c0de:1::77",
        "auto6",
        "later",
    ])
    .fails_with("not a free host address of network auto6");
    env.run(&["network", "connect", "--alias", "extra", "auto6", "later"])
        .success();
    let later = env.inspect("later");
    assert_eq!(later["config"]["networks"], json!(["v6", "auto6"]));
    env.run(&["network", "connect", "auto6", "web"])
        .fails_with("web");
    env.run(&["network", "disconnect", "auto6", "later"])
        .success();
    let pruned = env.run(&["network", "prune", "-f"]).success().stdout;
    assert_eq!(pruned.trim(), "auto6");
    env.run(&["rm", "-f", "web", "client", "later"]).success();
    env.run(&["network", "delete", "v6"]).success();
    assert!(!env.links().contains("cbr"), "{}", env.links());
}

/// An httpd in namespace `ns` serving `dir` on port 8080, killed on drop.
struct Upstream(Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn internal_networks_have_no_egress_while_the_default_one_does() {
    let env = Env::new("egress");
    let upstream = Netns::new("up");
    env.ns().ip(&[
        "link", "add", "veth-h", "type", "veth", "peer", "name", "veth-u",
    ]);
    env.ns()
        .ip(&["link", "set", "veth-u", "netns", &upstream.name]);
    env.ns()
        .ip(&["addr", "add", "10.99.0.1/24", "dev", "veth-h"]);
    env.ns().ip(&["link", "set", "veth-h", "up"]);
    upstream.ip(&["addr", "add", "10.99.0.2/24", "dev", "veth-u"]);
    upstream.ip(&["link", "set", "veth-u", "up"]);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "upstream\n").unwrap();
    let _server = Upstream(
        upstream
            .command("busybox", &["httpd", "-f", "-p", "10.99.0.2:8080", "-h"])
            .arg(www.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    env.run(&["network", "create", "sealed", "--internal"])
        .success();
    env.run(&["run", "-d", "--name", "out", IMAGE, "sleep", "600"])
        .success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "in",
        "--network",
        "sealed",
        IMAGE,
        "sleep",
        "600",
    ])
    .success();
    assert_eq!(
        env.ctr_get("out", "10.99.0.2", 8080).as_deref(),
        Some("upstream\n")
    );
    assert_eq!(
        env.ctr_get_once("in", "10.99.0.2", 8080),
        None,
        "an internal network reached upstream"
    );
    // Networks are isolated from each other too (while the server answers on its own).
    let out_ip = env.ip("out");
    env.run(&["exec", "-d", "out", "httpd", "-p", "80", "-h", "/www"])
        .success();
    assert_eq!(env.ctr_get("out", &out_ip, 80).as_deref(), Some(PAGE));
    assert_eq!(
        env.ctr_get_once("in", &out_ip, 80),
        None,
        "networks are not isolated"
    );
    env.run(&["delete", "-f", "out", "in"]).success();
    env.run(&["network", "delete", "sealed"]).success();
    assert!(!env.links().contains("ctap"), "{}", env.links());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn concurrent_runs_never_share_an_address() {
    let env = Env::new("conc");
    let names = ["c1", "c2", "c3"];
    std::thread::scope(|s| {
        for name in names {
            let env = &env;
            s.spawn(move || {
                env.run(&["run", "-d", "--name", name, IMAGE, "sleep", "600"])
                    .success();
            });
        }
    });
    let mut ips: Vec<String> = names.iter().map(|n| env.ip(n)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), names.len(), "{ips:?}");
    // Every one of them holds its address inside its VM.
    for name in names {
        let ip = env.ip(name);
        let r = env.run(&["exec", name, "ip", "-o", "-4", "addr"]).success();
        assert!(r.stdout.contains(&ip), "{name}: {}", r.stdout);
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn taps_of_a_crashed_monitor_are_removed_when_the_runtime_notices() {
    let env = Env::new("crash");
    env.run(&["run", "-d", "--name", "victim", IMAGE, "sleep", "600"])
        .success();
    let ip = env.ip("victim");
    assert!(env.links().contains("ctap"), "{}", env.links());
    let monitor = env.inspect("victim")["monitorPid"].as_u64().unwrap();
    // SAFETY: kill(2) of the monitor this test started (pid read from its record).
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    let gone = retry(|| {
        let c = env
            .run(&["list", "-a", "--format", "json"])
            .success()
            .json();
        (c[0]["status"] == "exited" && !env.links().contains("ctap")).then_some(())
    });
    assert!(gone.is_some(), "taps left: {}", env.links());
    // The address stays the container's, and it starts again with it.
    env.run(&["start", "victim"]).success();
    assert_eq!(env.ip("victim"), ip);
    assert!(env.links().contains("ctap"));

    // A crash in the middle of a delete: the monitor is gone and so is the record, but the
    // tap and the address are left. `system cleanup` frees both.
    let id = env.inspect("victim")["id"].as_str().unwrap().to_string();
    let monitor = env.inspect("victim")["monitorPid"].as_u64().unwrap();
    // SAFETY: kill(2) of the monitor this test started (pid read from its record).
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    std::fs::remove_dir_all(env.vm.cli.root().join("containers").join(&id)).unwrap();
    let report = env
        .run(&["system", "cleanup", "--format", "json"])
        .success()
        .json();
    assert_eq!(report["tapsRemoved"], serde_json::json!([id]), "{report}");
    assert_eq!(
        report["addressesReleased"],
        serde_json::json!([id]),
        "{report}"
    );
    assert!(!env.links().contains("ctap"), "{}", env.links());
    env.run(&["run", "-d", "--name", "next", IMAGE, "sleep", "600"])
        .success();
    assert_eq!(env.ip("next"), ip, "the freed address is handed out again");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn without_net_admin_the_default_network_falls_back_to_qemu_user_mode() {
    // An unprivileged user (nobody, no capabilities) in a namespace of the test's own: no
    // bridge or tap can be made, so the default network is QEMU's user-mode NAT.
    let ns = Netns::new("rootless");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| -> Run {
        let mut cmd = ns.command(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                env!("CARGO_BIN_EXE_container"),
                "--root",
                root.to_str().unwrap(),
            ],
        );
        cmd.args(args).env("HOME", &root);
        vm::wait_output(cmd)
    };
    let deb = common::kernel_deb();
    as_nobody(&["system", "kernel", "set", "--deb", deb.to_str().unwrap()]).success();
    as_nobody(&["image", "load", "-i", image_tar().to_str().unwrap()]).success();
    as_nobody(&[
        "run", "-d", "--name", "web", "-p", "18090:80", "-p", "9000", IMAGE,
    ])
    .success();
    let ports = as_nobody(&["port", "web"]).success().stdout;
    assert!(ports.contains("80/tcp -> 127.0.0.1:18090\n"), "{ports}");
    assert!(ports.contains("9000/tcp -> 127.0.0.1:"), "{ports}");
    let info = as_nobody(&["inspect", "web"]).success().json();
    let net = &info[0]["networks"][0];
    assert_eq!(net["network"], "default (user-mode)", "{info}");
    assert_eq!(net["address"], "10.0.2.15/24", "{info}");
    // Published ports reach the container through QEMU's forwarding; outbound goes via its NAT.
    let page = retry(|| {
        let (ok, out) = ns.exec("curl", &["-sSf", "-m", "3", "http://127.0.0.1:18090/"]);
        ok.then_some(out)
    });
    assert_eq!(page.as_deref(), Some(PAGE));
    let route = as_nobody(&["exec", "web", "ip", "-o", "-4", "route"])
        .success()
        .stdout;
    assert!(route.contains("default via 10.0.2.2"), "{route}");
    // A taken host port is still an error before the VM boots.
    as_nobody(&["run", "-d", "--name", "clash", "-p", "18090:80", IMAGE]).fails_with("18090");
    as_nobody(&["delete", "-f", "web", "clash"]).success();
    // Nothing was made in the namespace, and named networks need the privilege.
    assert!(!ns.ip(&["-o", "link"]).contains("ctap"));
    as_nobody(&["network", "create", "mine"]).fails_with("mine");
}
