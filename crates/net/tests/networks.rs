//! The network library against the real kernel, inside namespaces each test creates: bridges,
//! taps, addresses, nf_tables rules, egress and isolation, published ports, cleanup.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use net::{NetworkSpec, Networks};
use testkit::netns::{plug, Netns};

fn spec(name: &str, subnet: &str, internal: bool) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        gateway: None,
        internal,
        ..Default::default()
    }
}

fn table(ns: &Netns) -> String {
    ns.ruleset()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn create_inspect_delete_network() {
    let host = Netns::new("crud");
    let root = tempfile::tempdir().unwrap();
    let config = host.run(|| {
        let nets = Networks::open(root.path()).unwrap();
        let config = nets
            .create(&spec("backend", "10.210.0.0/24", false))
            .unwrap();
        // A second create of the same name, and an overlapping subnet, are refused.
        let err = nets
            .create(&spec("backend", "10.211.0.0/24", false))
            .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let err = nets
            .create(&spec("other", "10.210.0.0/16", false))
            .unwrap_err();
        assert!(
            err.to_string().contains("overlaps network backend"),
            "{err}"
        );
        // Without --subnet a free /24 is picked.
        let auto = nets
            .create(&NetworkSpec {
                name: "auto".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(auto.subnet.to_string(), "192.168.65.0/24");
        let names: Vec<String> = nets
            .list()
            .unwrap()
            .into_iter()
            .map(|n| n.config.name)
            .collect();
        assert_eq!(names, ["auto", "backend", "default"]);
        let info = nets.inspect("backend").unwrap();
        assert!(info.active);
        assert_eq!(info.config.gateway, Ipv4Addr::new(10, 210, 0, 1));
        assert!(nets
            .inspect("nope")
            .unwrap_err()
            .to_string()
            .contains("network nope not found"));
        nets.delete("auto").unwrap();
        config
    });
    // Bridge with the gateway address, up.
    let addr = host.ip(&["-o", "-4", "addr", "show", "dev", &config.bridge]);
    assert!(addr.contains("10.210.0.1/24"), "{addr}");
    let rules = table(&host);
    assert!(rules.contains("table inet containerization"), "{rules}");
    assert!(
        rules.contains("ip saddr 10.210.0.0/24 oifname != \"") && rules.contains("masquerade"),
        "{rules}"
    );
    // Definition persisted as JSON.
    let json = std::fs::read_to_string(root.path().join("networks/backend.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["subnet"], "10.210.0.0/24");

    host.run(|| {
        Networks::open(root.path())
            .unwrap()
            .delete("backend")
            .unwrap()
    });
    assert!(!host.links().contains(&config.bridge));
    assert!(
        !table(&host).contains("containerization"),
        "{}",
        table(&host)
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn networks_by_id_endpoints_and_leaving_one_network() {
    let host = Netns::new("byid");
    let root = tempfile::tempdir().unwrap();
    host.run(|| {
        let nets = Networks::open(root.path()).unwrap();
        let a = nets.create(&spec("na", "10.212.0.0/24", false)).unwrap();
        let b = nets.create(&spec("nb", "10.213.0.0/24", false)).unwrap();
        // By name, full id and a unique prefix; a prefix of nothing is not found.
        assert_eq!(nets.resolve("na").unwrap().id, a.id);
        assert_eq!(nets.resolve(&a.id).unwrap().name, "na");
        assert_eq!(nets.inspect(&b.id[..8]).unwrap().config.name, "nb");
        let err = nets.resolve("zz-not-hex").unwrap_err();
        assert!(matches!(err, net::NetworkError::NotFound(_)), "{err}");
        // A key that is no valid name is still looked up as an id, never as a file.
        assert!(nets.resolve("../na").is_err());
        // A pinned address and aliases on one network, the lowest free address on the other.
        let endpoints = [(
            "na".to_string(),
            net::EndpointConfig {
                aliases: vec!["db".into()],
                ipv4_address: Some("10.212.0.77".parse().unwrap()),
                ..Default::default()
            },
        )]
        .into();
        let got = nets
            .attach_all("c1", Some("one"), &["na".into(), "nb".into()], &endpoints)
            .unwrap();
        assert_eq!(got[0].address.to_string(), "10.212.0.77/24");
        assert_eq!(got[0].network_id, a.id);
        assert_eq!(got[1].address.to_string(), "10.213.0.2/24");
        nets.attach("c2", Some("two"), "na").unwrap();
        let peers = nets.hosts("c2").unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(
            (peers[0].name.as_str(), &peers[0].aliases),
            ("one", &vec!["db".to_string()])
        );
        // Leaving one network frees that address alone; the other stays.
        nets.leave("c1", &a.id).unwrap();
        assert_eq!(nets.attachments("c1").unwrap().len(), 1);
        assert!(nets.hosts("c2").unwrap().is_empty());
        let err = nets.delete("nb").unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        nets.release("c1").unwrap();
        nets.release("c2").unwrap();
        nets.delete(&b.id).unwrap();
        nets.delete("na").unwrap();
        assert!(nets
            .list()
            .unwrap()
            .iter()
            .all(|n| n.config.name == "default"));
    });
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn concurrent_attach_gives_distinct_persistent_addresses() {
    let host = Netns::new("ipam");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let bridge = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .create(&spec("n", "10.212.0.0/24", false))
            .unwrap()
            .bridge
    });
    let bridge_mac = |host: &Netns| {
        let out = host.ip(&["-o", "link", "show", &bridge]);
        out.split("link/ether ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let mac_before = bridge_mac(&host);
    // 12 attaches from 6 threads, each with its own `Networks` (own lock descriptor) — the same
    // contention as separate processes.
    let attachments: Vec<net::Attachment> = host.run(|| {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..6)
                .map(|t| {
                    let path = path.clone();
                    s.spawn(move || {
                        (0..2)
                            .map(|i| {
                                let nets = Networks::open(&path).unwrap();
                                nets.attach(&format!("c{t}-{i}"), Some(&format!("name{t}{i}")), "n")
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        })
    });
    let addresses: BTreeSet<_> = attachments.iter().map(|a| a.address).collect();
    let macs: BTreeSet<_> = attachments.iter().map(|a| a.mac.clone()).collect();
    let taps: BTreeSet<_> = attachments.iter().map(|a| a.tap.clone()).collect();
    assert_eq!((addresses.len(), macs.len(), taps.len()), (12, 12, 12));
    assert!(attachments
        .iter()
        .all(|a| a.gateway == Ipv4Addr::new(10, 212, 0, 1) && a.mtu == 1500));

    // Every tap exists and is enslaved to the network's bridge, whose MAC did not change (a
    // changing gateway MAC would leave containers with stale ARP entries).
    assert_eq!(bridge_mac(&host), mac_before);
    let ports = host.ip(&["-o", "link", "show", "master", &bridge]);
    for tap in &taps {
        assert!(
            ports.contains(tap.as_str()),
            "{tap} not on {bridge}: {ports}"
        );
    }

    // Detach keeps the address; attaching again returns the same one.
    let first = attachments
        .iter()
        .find(|a| a.tap == attachments[0].tap)
        .unwrap()
        .clone();
    let id = "c0-0";
    let (again, hosts) = host.run(|| {
        let nets = Networks::open(&path).unwrap();
        nets.detach(id).unwrap();
        let again = nets.attach(id, None, "n").unwrap();
        (again, nets.hosts(id).unwrap())
    });
    assert_eq!(again, first);
    assert_eq!(hosts.len(), 11);
    assert!(hosts.iter().any(|h| h.name == "name01"));

    // Deleting the network is refused while leases exist; release everything, then delete.
    host.run(|| {
        let nets = Networks::open(&path).unwrap();
        let err = nets.delete("n").unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        for t in 0..6 {
            for i in 0..2 {
                nets.release(&format!("c{t}-{i}")).unwrap();
            }
        }
        assert!(nets.inspect("n").unwrap().containers.is_empty());
        nets.delete("n").unwrap();
    });
    let left: Vec<String> = host
        .links()
        .into_iter()
        .filter(|l| l.starts_with("ctap") || l.starts_with("cbr"))
        .collect();
    assert!(left.is_empty(), "leftover links {left:?}");
    assert!(!table(&host).contains("containerization"));
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn default_network_lives_while_used_and_cleanup_after_crash() {
    let host = Netns::new("dflt");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let (a, bridge) = host.run(|| {
        let nets = Networks::open(&path).unwrap();
        let a = nets
            .attach("c1", Some("one"), net::DEFAULT_NETWORK)
            .unwrap();
        (a, nets.inspect("default").unwrap().config.bridge)
    });
    assert_eq!(a.address.to_string(), "192.168.64.2/24");
    assert!(host.links().contains(&a.tap) && host.links().contains(&bridge));
    // A "crash": the container is gone without detach. cleanup_stale removes its tap and the idle
    // default bridge and rules, but keeps its address.
    let detached = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .cleanup_stale(|_| false)
            .unwrap()
    });
    assert_eq!(detached, ["c1"]);
    let links = host.links();
    assert!(
        !links.contains(&a.tap) && !links.contains(&bridge),
        "{links:?}"
    );
    assert!(!table(&host).contains("containerization"));
    let again = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .attach("c1", None, "default")
            .unwrap()
    });
    assert_eq!(again.address, a.address);
    // Rules removed behind our back (a firewall reload) come back with the next attach.
    let ours = host.run(|| Networks::open(&path).unwrap().firewall_table().to_string());
    testkit::run(&mut host.command("nft", &["delete", "table", "inet", &ours]));
    host.run(|| {
        Networks::open(&path)
            .unwrap()
            .attach("c2", None, "default")
            .unwrap()
    });
    let rules = host.run(|| Networks::open(&path).unwrap().firewall_rules().unwrap());
    assert!(rules.is_some_and(|r| r.contains("192.168.64.0/24") && r.contains("masquerade")));
    // c1's record is gone (a crash between delete and release): its address and tap are freed,
    // c2 keeps everything.
    let released = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .release_orphans(|id| id == "c2")
            .unwrap()
    });
    assert_eq!(released, ["c1"]);
    assert!(!host.links().contains(&again.tap));
    let c3 = host.run(|| {
        let nets = Networks::open(&path).unwrap();
        assert!(nets.attachments("c1").unwrap().is_empty());
        assert_eq!(nets.attachments("c2").unwrap().len(), 1);
        nets.attach("c3", None, "default").unwrap()
    });
    assert_eq!(c3.address, a.address);
    host.run(|| Networks::open(&path).unwrap().teardown().unwrap());
    assert!(!host
        .links()
        .iter()
        .any(|l| l.starts_with("ctap") || l.starts_with("cbr")));
    assert!(!table(&host).contains("containerization"));
}

/// Host namespace with two networks (one internal), an "upstream" namespace reached through
/// the host's default route, and one emulated container per network.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn egress_nat_isolation_and_published_ports() {
    let host = Netns::new("host");
    let upstream = Netns::new("up");
    let ctr = Netns::new("ctr");
    let ctr_internal = Netns::new("ctri");
    let ctr2 = Netns::new("ctr2");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();

    // Upstream: 10.250.0.2, the host's default route points at it.
    plug(&host, &upstream, "uplink", None, "10.250.0.2/24", None);
    host.ip(&["addr", "add", "10.250.0.1/24", "dev", "uplink"]);
    host.ip(&["route", "add", "default", "via", "10.250.0.2"]);

    let (a, b, c, bridges) = host.run(|| {
        let nets = Networks::open(&path).unwrap();
        nets.create(&spec("out", "10.213.0.0/24", false)).unwrap();
        nets.create(&spec("inner", "10.214.0.0/24", true)).unwrap();
        nets.create(&spec("out2", "10.215.0.0/24", false)).unwrap();
        let a = nets.attach("ca", Some("a"), "out").unwrap();
        let b = nets.attach("cb", Some("b"), "inner").unwrap();
        let c = nets.attach("cc", Some("c"), "out2").unwrap();
        let bridge = |n: &str| nets.inspect(n).unwrap().config.bridge;
        (a, b, c, [bridge("out"), bridge("inner"), bridge("out2")])
    });
    let [bridge_a, bridge_b, bridge_c] = bridges;
    assert!(a.dns.is_empty() || !a.dns.iter().any(|d| d.is_loopback()));
    let rules = table(&host);
    assert!(rules.contains("ip saddr 10.213.0.0/24"), "{rules}");
    assert!(
        !rules.contains("ip saddr 10.214.0.0/24"),
        "internal network must not be masqueraded: {rules}"
    );
    let forward = testkit::run(&mut host.command("cat", &["/proc/sys/net/ipv4/ip_forward"]));
    assert_eq!(forward.trim(), "1");

    // Emulated containers: a veth on each bridge with the allocated address (a VM would sit on
    // the tap instead).
    let gw = |g: Ipv4Addr| g.to_string();
    plug(
        &host,
        &ctr,
        "vca",
        Some(&bridge_a),
        &a.address.to_string(),
        Some(&gw(a.gateway)),
    );
    plug(
        &host,
        &ctr_internal,
        "vcb",
        Some(&bridge_b),
        &b.address.to_string(),
        Some(&gw(b.gateway)),
    );
    plug(
        &host,
        &ctr2,
        "vcc",
        Some(&bridge_c),
        &c.address.to_string(),
        Some(&gw(c.gateway)),
    );

    // Upstream listener records the source address it sees.
    let listener = upstream.run(|| TcpListener::bind("10.250.0.2:7000").unwrap());
    let seen = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let _ = s.write_all(b"hi");
        peer
    });
    let got = ctr.run(|| {
        let mut s =
            TcpStream::connect_timeout(&"10.250.0.2:7000".parse().unwrap(), Duration::from_secs(5))
                .unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&got, b"hi");
    let peer = seen.join().unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "10.250.0.1",
        "egress must be masqueraded"
    );

    // The internal network has no egress, and the two networks cannot reach each other.
    let blocked = |ns: &Netns, to: &str| {
        let to: SocketAddr = to.parse().unwrap();
        ns.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_err())
    };
    let _keep = upstream.run(|| TcpListener::bind("10.250.0.2:7001").unwrap());
    assert!(
        blocked(&ctr_internal, "10.250.0.2:7001"),
        "internal network reached upstream"
    );
    let _svc_b =
        ctr_internal.run(|| TcpListener::bind(format!("{}:7002", b.address.addr())).unwrap());
    assert!(
        blocked(&ctr, &format!("{}:7002", b.address.addr())),
        "networks are not isolated"
    );
    // Two networks with egress are isolated from each other too, both ways, while each
    // reaches upstream.
    let _svc_c = ctr2.run(|| TcpListener::bind(format!("{}:7004", c.address.addr())).unwrap());
    let _svc_a4 = ctr.run(|| TcpListener::bind(format!("{}:7004", a.address.addr())).unwrap());
    assert!(
        blocked(&ctr, &format!("{}:7004", c.address.addr())),
        "out -> out2 not isolated"
    );
    assert!(
        blocked(&ctr2, &format!("{}:7004", a.address.addr())),
        "out2 -> out not isolated"
    );
    assert!(!blocked(&ctr2, "10.250.0.2:7001"), "out2 has no egress");
    // The host itself reaches containers by IP.
    let _svc_a = ctr.run(|| TcpListener::bind(format!("{}:7003", a.address.addr())).unwrap());
    let reach: SocketAddr = format!("{}:7003", a.address.addr()).parse().unwrap();
    host.run(move || TcpStream::connect_timeout(&reach, Duration::from_secs(5)).unwrap());

    // Published ports from the host's loopback to the container, TCP and UDP.
    let tcp_echo = ctr.run(|| TcpListener::bind(format!("{}:8080", a.address.addr())).unwrap());
    let udp_echo = ctr.run(|| UdpSocket::bind(format!("{}:5353", a.address.addr())).unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = tcp_echo.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = udp_echo.recv_from(&mut buf).unwrap();
        udp_echo.send_to(&buf[..n], from).unwrap();
    });
    let container_ip = a.address.addr();
    host.run(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _guard = runtime.enter();
        let specs: Vec<net::ports::PortSpec> = vec![
            "18080:8080".parse().unwrap(),
            "15353:5353/udp".parse().unwrap(),
        ];
        let bound = net::ports::bind(&specs).unwrap();
        // A second bind of the same host ports fails before anything starts, naming the port.
        let err = net::ports::bind(&specs[..1]).unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:18080/tcp"), "{err}");
        let forwarder = bound.spawn(container_ip.into()).unwrap();
        let (tcp, udp) = std::thread::spawn(|| {
            let mut s = TcpStream::connect("127.0.0.1:18080").unwrap();
            s.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            u.send_to(b"dns?", "127.0.0.1:15353").unwrap();
            let mut ubuf = [0u8; 16];
            let n = u.recv(&mut ubuf).unwrap();
            (buf, ubuf[..n].to_vec())
        })
        .join()
        .unwrap();
        assert_eq!(&tcp, b"ping");
        assert_eq!(udp, b"dns?");
        drop(forwarder);
        runtime.shutdown_timeout(Duration::from_secs(1));
        // Released: the host port can be bound again.
        net::ports::bind(&specs[..1]).unwrap();
    });

    // Teardown: release both containers, delete both networks → nothing of ours is left.
    host.ip(&["link", "del", "vca"]);
    host.ip(&["link", "del", "vcb"]);
    host.ip(&["link", "del", "vcc"]);
    host.run(|| {
        let nets = Networks::open(&path).unwrap();
        for id in ["ca", "cb", "cc"] {
            nets.release(id).unwrap();
        }
        for name in ["out", "inner", "out2"] {
            nets.delete(name).unwrap();
        }
    });
    let left: Vec<String> = host
        .links()
        .into_iter()
        .filter(|l| l.starts_with("ctap") || l.starts_with("cbr"))
        .collect();
    assert!(left.is_empty(), "leftover links {left:?}");
    assert!(!table(&host).contains("containerization"));
}

/// Asks `server` for the A record of `name` from the calling thread's namespace; returns the
/// response code and the addresses.
fn query_a(server: SocketAddr, name: &str) -> (simple_dns::RCODE, Vec<Ipv4Addr>) {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket.send_to(&a_query(name), server).unwrap();
    let mut buf = [0u8; 1500];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no answer for {name} from {server}: {e}"));
    parse_a(&buf[..n])
}

/// The same over TCP (2-byte length prefix).
fn query_a_tcp(server: SocketAddr, name: &str) -> (simple_dns::RCODE, Vec<Ipv4Addr>) {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let query = a_query(name);
    stream
        .write_all(&(query.len() as u16).to_be_bytes())
        .unwrap();
    stream.write_all(&query).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).unwrap();
    parse_a(&buf)
}

fn a_query(name: &str) -> Vec<u8> {
    use simple_dns::{Packet, Question, CLASS, QCLASS, QTYPE, TYPE};
    let mut packet = Packet::new_query(0x4242);
    packet.questions.push(Question::new(
        simple_dns::Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().unwrap()
}

fn parse_a(bytes: &[u8]) -> (simple_dns::RCODE, Vec<Ipv4Addr>) {
    let reply = simple_dns::Packet::parse(bytes).unwrap();
    assert_eq!(reply.id(), 0x4242);
    let ips = reply
        .answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            simple_dns::rdata::RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
        .collect();
    (reply.rcode(), ips)
}

/// Answers every A question of a DNS message with `ip`.
fn fake_answer(query: &[u8], ip: Ipv4Addr) -> Vec<u8> {
    let query = simple_dns::Packet::parse(query).unwrap();
    let mut reply = simple_dns::Packet::new_reply(query.id());
    for q in &query.questions {
        reply.answers.push(simple_dns::ResourceRecord::new(
            q.qname.clone(),
            simple_dns::CLASS::IN,
            60,
            simple_dns::rdata::RData::A(ip.into()),
        ));
    }
    reply.questions = query.questions.clone();
    reply.build_bytes_vec().unwrap()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn dns_responder_resolves_containers_and_relays_the_rest() {
    let host = Netns::new("dnsh");
    let upstream = Netns::new("dnsu");
    let ctr = Netns::new("dnsc");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    plug(&host, &upstream, "uplink", None, "10.251.0.2/24", None);
    host.ip(&["addr", "add", "10.251.0.1/24", "dev", "uplink"]);

    // Upstream resolver: answers every A query with 203.0.113.7 (UDP) or .8 (TCP).
    let upstream_socket = upstream.run(|| UdpSocket::bind("10.251.0.2:53").unwrap());
    std::thread::spawn(move || loop {
        let mut buf = [0u8; 1500];
        let Ok((n, from)) = upstream_socket.recv_from(&mut buf) else {
            return;
        };
        let reply = fake_answer(&buf[..n], Ipv4Addr::new(203, 0, 113, 7));
        upstream_socket.send_to(&reply, from).unwrap();
    });
    let upstream_tcp = upstream.run(|| TcpListener::bind("10.251.0.2:53").unwrap());
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = upstream_tcp.accept() {
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf).unwrap();
            let reply = fake_answer(&buf, Ipv4Addr::new(203, 0, 113, 8));
            s.write_all(&(reply.len() as u16).to_be_bytes()).unwrap();
            s.write_all(&reply).unwrap();
        }
    });

    let (web, db) = host.run(|| {
        let nets = Networks::open(&path).unwrap();
        nets.create(&spec("dn", "10.217.0.0/24", false)).unwrap();
        nets.create(&spec("dni", "10.218.0.0/24", true)).unwrap();
        let web = nets.attach("c-web", Some("web"), "dn").unwrap();
        let db = nets.attach("c-db", Some("db"), "dn").unwrap();
        nets.attach("c-x", Some("x"), "dni").unwrap();
        (web, db)
    });
    assert_eq!(web.dns, [web.gateway]);
    let bridge = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .inspect("dn")
            .unwrap()
            .config
            .bridge
    });
    plug(
        &host,
        &ctr,
        "vdns",
        Some(&bridge),
        &web.address.to_string(),
        Some(&web.gateway.to_string()),
    );

    // Two monitors' responders on the same gateway port (SO_REUSEPORT), plus the internal
    // network's; all serving from the host namespace.
    let runtime = host.run(|| tokio::runtime::Runtime::new().unwrap());
    let gateway = web.gateway;
    let tasks = host.run(|| {
        let _guard = runtime.enter();
        let up = vec!["10.251.0.2:53".parse().unwrap()];
        let a = net::dns::DnsResponder::bind(&path, "dn", gateway, 53, false, up.clone()).unwrap();
        let b = net::dns::DnsResponder::bind(&path, "dn", gateway, 53, false, up).unwrap();
        let nets = Networks::open(&path).unwrap();
        let c = nets.dns_responder("dni").unwrap();
        [a.spawn().unwrap(), b.spawn().unwrap(), c.spawn().unwrap()]
    });

    let server: SocketAddr = SocketAddr::new(gateway.into(), 53);
    let (code, ips) = ctr.run(move || query_a(server, "db"));
    assert_eq!(
        (code, ips),
        (simple_dns::RCODE::NoError, vec![db.address.addr()])
    );
    let (_, ips) = ctr.run(move || query_a(server, "WEB."));
    assert_eq!(ips, [web.address.addr()]);
    // Other names go to the upstream resolver.
    let (_, ips) = ctr.run(move || query_a(server, "example.org"));
    assert_eq!(ips, [Ipv4Addr::new(203, 0, 113, 7)]);
    // The same over TCP, relayed to the upstream over TCP.
    let (_, ips) = ctr.run(move || query_a_tcp(server, "db"));
    assert_eq!(ips, [db.address.addr()]);
    let (_, ips) = ctr.run(move || query_a_tcp(server, "example.org"));
    assert_eq!(ips, [Ipv4Addr::new(203, 0, 113, 8)]);
    // A container attached after the responders started is found (kept current), and a name
    // of another network is not (relayed upstream instead).
    let late = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .attach("c-late", Some("late"), "dn")
            .unwrap()
    });
    let (_, ips) = ctr.run(move || query_a(server, "late"));
    assert_eq!(ips, [late.address.addr()]);
    let (_, ips) = ctr.run(move || query_a(server, "x"));
    assert_eq!(ips, [Ipv4Addr::new(203, 0, 113, 7)]);
    // The internal network answers its own names and NXDOMAIN for the rest.
    let internal_gw: SocketAddr = "10.218.0.1:53".parse().unwrap();
    let (code, ips) = host.run(move || query_a(internal_gw, "x"));
    assert_eq!((code, ips.len()), (simple_dns::RCODE::NoError, 1));
    let (code, _) = host.run(move || query_a(internal_gw, "example.org"));
    assert_eq!(code, simple_dns::RCODE::NameError);

    for task in tasks {
        task.abort();
    }
    drop(runtime);
    host.ip(&["link", "del", "vdns"]);
}

/// Eight processes attach to one network at once (each opens its own `Networks`, as eight
/// monitors would): the test binary re-runs this test as each of them.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn attach_from_many_processes() {
    if let Some(role) = testkit::child::role() {
        let (root, id) = role.rsplit_once(' ').expect("role: ROOT ID");
        let nets = Networks::open(std::path::Path::new(root)).unwrap();
        let a = nets.attach(id, None, "procs").unwrap();
        println!("ATTACHED {} {} {}", a.address, a.mac, a.tap);
        return;
    }
    let host = Netns::new("procs");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let lines: Vec<String> = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .create(&spec("procs", "10.219.0.0/24", false))
            .unwrap();
        let children: Vec<_> = (0..8)
            .map(|i| {
                let role = format!("{} p{i}", path.display());
                testkit::child::command("attach_from_many_processes", &role)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success());
                let text = String::from_utf8(out.stdout).unwrap();
                testkit::child::said(&text, "ATTACHED ")
                    .unwrap_or_else(|| panic!("child said: {text}"))
                    .to_string()
            })
            .collect()
    });
    let addresses: BTreeSet<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(addresses.len(), 8, "{lines:?}");
    let leases = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .inspect("procs")
            .unwrap()
            .containers
    });
    assert_eq!(leases.len(), 8);
    assert!(leases.iter().all(|l| l.attached));
    host.run(|| {
        let nets = Networks::open(&path).unwrap();
        for i in 0..8 {
            nets.release(&format!("p{i}")).unwrap();
        }
        nets.delete("procs").unwrap();
    });
    assert!(!host
        .links()
        .iter()
        .any(|l| l.starts_with("ctap") || l.starts_with("cbr")));
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn two_state_roots_share_a_namespace() {
    let host = Netns::new("roots");
    let (r1, r2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (p1, p2) = (r1.path().to_path_buf(), r2.path().to_path_buf());
    let (a1, a2, t1, t2) = host.run(|| {
        let (n1, n2) = (Networks::open(&p1).unwrap(), Networks::open(&p2).unwrap());
        let a1 = n1.attach("c", None, "default").unwrap();
        // The second root's default network steps aside to a free subnet.
        let a2 = n2.attach("c", None, "default").unwrap();
        (
            a1,
            a2,
            n1.firewall_table().to_string(),
            n2.firewall_table().to_string(),
        )
    });
    assert_eq!(a1.address.to_string(), "192.168.64.2/24");
    assert_eq!(a2.address.to_string(), "192.168.65.2/24");
    assert_ne!(t1, t2);
    let rules = table(&host);
    assert!(rules.contains(&t1) && rules.contains(&t2), "{rules}");
    // Releasing root 1's container retires its default bridge and table only.
    host.run(|| Networks::open(&p1).unwrap().release("c").unwrap());
    let rules = table(&host);
    assert!(
        !rules.contains(&t1) && rules.contains("192.168.65.0/24"),
        "{rules}"
    );
    host.run(|| Networks::open(&p2).unwrap().release("c").unwrap());
    assert!(!table(&host).contains("containerization"));
    assert!(!host
        .links()
        .iter()
        .any(|l| l.starts_with("ctap") || l.starts_with("cbr")));
}

/// The monitor's view: prepare (ports, taps), start (relays, DNS), stop.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces: run scripts/test.sh"
)]
fn container_network_session() {
    use net::ports::PortSpec;
    use net::{ContainerNetwork, NetworkMode};
    let host = Netns::new("sess");
    let ctr = Netns::new("sessc");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let mode = NetworkMode::from_flags(&[]).unwrap();
    let ports: Vec<PortSpec> = vec!["127.0.0.1:18081:80".parse().unwrap()];

    // A taken host port fails prepare before anything is allocated or created.
    let err = host.run(|| {
        let _busy = TcpListener::bind("127.0.0.1:18081").unwrap();
        ContainerNetwork::prepare(&path, "s1", Some("svc"), &mode, &Default::default(), &ports)
            .unwrap_err()
    });
    assert!(err.to_string().contains("127.0.0.1:18081/tcp"), "{err}");
    assert!(!host.links().iter().any(|l| l.starts_with("ctap")));
    let leases =
        std::fs::read_to_string(path.join("networks/leases/default.json")).unwrap_or_default();
    assert!(!leases.contains("s1"), "{leases}");
    let err = host.run(|| {
        ContainerNetwork::prepare(
            &path,
            "s1",
            None,
            &NetworkMode::None,
            &Default::default(),
            &ports,
        )
        .unwrap_err()
    });
    assert!(err.to_string().contains("without a network"), "{err}");

    let runtime = host.run(|| tokio::runtime::Runtime::new().unwrap());
    let prepared = host.run(|| {
        ContainerNetwork::prepare(&path, "s1", Some("svc"), &mode, &Default::default(), &ports)
            .unwrap()
    });
    let a = prepared.attachments()[0].clone();
    assert_eq!(a.network, "default");
    assert!(host.links().contains(&a.tap));
    let bridge = host.run(|| {
        Networks::open(&path)
            .unwrap()
            .inspect("default")
            .unwrap()
            .config
            .bridge
    });
    plug(
        &host,
        &ctr,
        "vsess",
        Some(&bridge),
        &a.address.to_string(),
        Some(&a.gateway.to_string()),
    );
    let svc = ctr.run(|| TcpListener::bind(format!("{}:80", a.address.addr())).unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = svc.accept().unwrap();
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nfrom the container")
            .unwrap();
    });
    let running = host.run(|| {
        let _guard = runtime.enter();
        prepared.start().unwrap()
    });
    let body = host.run(|| {
        let mut s = TcpStream::connect("127.0.0.1:18081").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(body.ends_with("from the container"), "{body}");
    let server = SocketAddr::new(a.gateway.into(), 53);
    let (_, ips) = ctr.run(move || query_a(server, "svc"));
    assert_eq!(ips, [a.address.addr()]);

    host.run(|| {
        let _guard = runtime.enter();
        running.stop().unwrap();
    });
    host.ip(&["link", "del", "vsess"]);
    assert!(!host
        .links()
        .iter()
        .any(|l| l.starts_with("ctap") || l.starts_with("cbr")));
    // The port is free again and the address is kept for the next start.
    host.run(|| TcpListener::bind("127.0.0.1:18081").unwrap());
    let again = host.run(|| {
        ContainerNetwork::prepare(&path, "s1", None, &mode, &Default::default(), &[]).unwrap()
    });
    assert_eq!(again.attachments()[0].address, a.address);
    host.run(|| {
        again.abort().unwrap();
        Networks::open(&path).unwrap().release("s1").unwrap();
    });
    drop(runtime);
}
