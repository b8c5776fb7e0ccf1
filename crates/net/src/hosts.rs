//! Name resolution for containers: `/etc/hosts` content listing the other containers of the
//! same networks by name, and `/etc/resolv.conf` content with upstream name servers.
//!
//! Names are resolved two ways: the DNS responder on the gateway ([`crate::dns`]) answers with
//! the current leases, so containers started later are found; and the hosts file written at
//! start (from [`crate::Networks::hosts`]) lists the peers known then, so names resolve even
//! for programs that read only `/etc/hosts`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// One name → address line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostEntry {
    /// Container name.
    pub name: String,
    /// Its aliases on the shared network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its address on the shared network.
    pub address: Ipv4Addr,
    /// Its IPv6 address there, on an IPv6 network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Addr>,
}

/// The full `/etc/hosts` of a container named `hostname` whose own address is `own` (if it has
/// one), with `peers` (others on its networks).
pub fn render_hosts(hostname: &str, own: Option<Ipv4Addr>, peers: &[HostEntry]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match own {
        Some(ip) => s.push_str(&format!("{ip}\t{hostname}\n")),
        None => s.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    for peer in peers.iter().filter(|p| p.name != hostname) {
        let addresses = std::iter::once(std::net::IpAddr::from(peer.address))
            .chain(peer.address6.map(std::net::IpAddr::from));
        for address in addresses {
            s.push_str(&format!("{address}\t{}", peer.name));
            for alias in &peer.aliases {
                s.push_str(&format!(" {alias}"));
            }
            s.push('\n');
        }
    }
    s
}

/// The `/etc/resolv.conf` for a container using `servers`.
pub fn render_resolv_conf(servers: &[Ipv4Addr]) -> String {
    let mut s = String::new();
    for server in servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    s
}

/// Every IPv4 `nameserver` of a resolv.conf text, in order.
pub fn nameservers(resolv_conf: &str) -> Vec<Ipv4Addr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            words.next()?.parse::<Ipv4Addr>().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_self_and_peers() {
        let peers = vec![
            HostEntry {
                name: "web".into(),
                aliases: vec![],
                address: Ipv4Addr::new(10, 0, 0, 2),
                address6: None,
            },
            HostEntry {
                name: "db".into(),
                aliases: vec!["database".into()],
                address: Ipv4Addr::new(10, 0, 0, 3),
                address6: Some("fd00::3".parse().unwrap()),
            },
        ];
        let s = render_hosts("web", Some(Ipv4Addr::new(10, 0, 0, 2)), &peers);
        assert!(s.contains("10.0.0.2\tweb\n"));
        assert!(s.contains("10.0.0.3\tdb database\n"));
        assert!(s.contains("fd00::3\tdb database\n"));
        assert_eq!(s.matches("web").count(), 1);
    }

    #[test]
    fn nameservers_skip_junk() {
        let conf =
            "# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fe80::1\nsearch a\n";
        let all = vec![Ipv4Addr::new(127, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 2)];
        assert_eq!(nameservers(conf), all);
        assert_eq!(
            render_resolv_conf(&[Ipv4Addr::new(1, 1, 1, 1)]),
            "nameserver 1.1.1.1\n"
        );
    }
}
