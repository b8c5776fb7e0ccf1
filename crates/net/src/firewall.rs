//! Egress NAT and isolation in our own nf_tables table, `inet containerization-<root>`: one
//! table per state root (suffix: 8 hex digits of a hash of the root's path), so two state
//! roots on one host never rewrite each other's rules.
//!
//! Choice: we drive the `nft` binary (Debian package `nftables`) with a text ruleset on stdin.
//! `nft -f` applies a whole file as one kernel transaction, so the table is replaced
//! atomically: the script first declares the table (a no-op if it exists), deletes it, and
//! declares it again with the rules for every network whose bridge currently exists. That makes
//! every apply idempotent and self-healing, and when no bridge of ours is left the table is
//! simply deleted. The kernel netlink API for nf_tables is awkward to drive from Rust without
//! libnftnl; `nft` is the reference client of that API and ships with every distribution.
//!
//! Rules, per network with bridge `B` and subnet `S`:
//!
//! ```text
//! forward:     iifname B oifname != B oifname "cbr*" drop       (no traffic between networks)
//!   internal:  iifname B oifname != B drop ; oifname B iifname != B drop
//!   otherwise: iifname B oifname != B accept                    (egress)
//!              oifname B ct state established,related accept    (replies)
//!              oifname B iifname != B drop                      (nothing unsolicited in)
//! postrouting: ip saddr S oifname != B masquerade               (not for internal networks)
//!              ip6 saddr S6 oifname != B masquerade             (IPv6 networks, as docker's
//!                                                                 ip6tables NAT for ULAs)
//! ```
//!
//! The forward rules match interfaces only, so in an `inet` table they hold for IPv4 and IPv6
//! alike.
//!
//! Bridged traffic inside one network never reaches the `forward` hook (no br_netfilter), so
//! containers on the same network talk freely. Traffic between the host and its containers
//! uses input/output, which we leave alone. We never change other tables; a host firewall whose
//! own forward chain drops everything still wins, as nf_tables evaluates every base chain.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::config::{NetworkConfig, BRIDGE_PREFIX};

/// Address family of our table.
pub const TABLE_FAMILY: &str = "inet";
/// Prefix of our tables' names.
pub const TABLE_PREFIX: &str = "containerization";

/// The table of the state root at `root` (canonicalised when possible).
pub fn table_name(root: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    format!("{TABLE_PREFIX}-{}", &hex::encode(digest)[..8])
}

/// A failure applying or reading rules.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not be run.
    #[error("cannot run nft (install Debian package 'nftables')")]
    Spawn(#[source] io::Error),
    /// `nft` rejected the ruleset.
    #[error("nft failed to apply the ruleset: {0}")]
    Apply(String),
    /// `nft list` failed.
    #[error("nft failed to list table {TABLE_FAMILY} {0}: {1}")]
    List(String, String),
    /// Writing the sysctl that enables forwarding failed.
    #[error("cannot enable {0} forwarding")]
    Forwarding(&'static str, #[source] io::Error),
}

/// The nft script that makes table `table` hold exactly the rules for `networks`.
pub fn render(table: &str, networks: &[&NetworkConfig]) -> String {
    let mut s = format!("table {TABLE_FAMILY} {table}\ndelete table {TABLE_FAMILY} {table}\n");
    if networks.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table {TABLE_FAMILY} {table} {{");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for n in networks {
        let b = &n.bridge;
        let _ = writeln!(
            s,
            "    iifname \"{b}\" oifname != \"{b}\" oifname \"{BRIDGE_PREFIX}*\" drop"
        );
        if n.internal {
            let _ = writeln!(s, "    iifname \"{b}\" oifname != \"{b}\" drop");
            let _ = writeln!(s, "    oifname \"{b}\" iifname != \"{b}\" drop");
        } else {
            let _ = writeln!(s, "    iifname \"{b}\" oifname != \"{b}\" accept");
            let _ = writeln!(s, "    oifname \"{b}\" ct state established,related accept");
            let _ = writeln!(s, "    oifname \"{b}\" iifname != \"{b}\" drop");
        }
    }
    s.push_str("  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for n in networks.iter().filter(|n| !n.internal) {
        let _ = writeln!(
            s,
            "    ip saddr {} oifname != \"{}\" masquerade",
            n.subnet, n.bridge
        );
        if let Some(subnet6) = n.subnet6 {
            let _ = writeln!(
                s,
                "    ip6 saddr {subnet6} oifname != \"{}\" masquerade",
                n.bridge
            );
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// Replaces our table with the rules for `networks` in one transaction (deletes it when the
/// list is empty), and turns on IPv4 forwarding when a network needs egress.
pub fn apply(table: &str, networks: &[&NetworkConfig]) -> Result<(), FirewallError> {
    let script = render(table, networks);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(FirewallError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if !out.status.success() {
        return Err(FirewallError::Apply(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    if networks.iter().any(|n| !n.internal) {
        // Per network namespace (the sysctl is resolved in the caller's namespace). We never
        // turn it off again: other software on the host may rely on it, as with docker.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
            .map_err(|e| FirewallError::Forwarding("IPv4", e))?;
    }
    if networks.iter().any(|n| !n.internal && n.subnet6.is_some()) {
        // As docker does for IPv6 networks. Forwarding on makes the namespace a router, which
        // ignores router advertisements on interfaces whose accept_ra is 1 (not 2).
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", b"1")
            .map_err(|e| FirewallError::Forwarding("IPv6", e))?;
    }
    Ok(())
}

/// Table `table` as `nft list` prints it, or `None` when it does not exist.
pub fn list(table: &str) -> Result<Option<String>, FirewallError> {
    let out = Command::new("nft")
        .args(["list", "table", TABLE_FAMILY, table])
        .output()
        .map_err(FirewallError::Spawn)?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file or directory") {
        return Ok(None);
    }
    Err(FirewallError::List(
        table.to_string(),
        err.trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, internal: bool) -> NetworkConfig {
        NetworkConfig {
            name: name.into(),
            id: name.into(),
            subnet: "10.7.0.0/24".parse().unwrap(),
            gateway: "10.7.0.1".parse().unwrap(),
            internal,
            bridge: format!("cbr{name}"),
            mtu: 1500,
            created: String::new(),
            labels: Default::default(),
            subnet6: None,
            gateway6: None,
        }
    }

    #[test]
    fn table_per_root() {
        let a = table_name(std::path::Path::new("/nonexistent/a"));
        assert!(a.starts_with("containerization-") && a.len() == 25, "{a}");
        assert_ne!(a, table_name(std::path::Path::new("/nonexistent/b")));
    }

    #[test]
    fn empty_only_deletes() {
        let s = render("containerization-x", &[]);
        assert!(s.contains("delete table inet containerization-x"));
        assert!(!s.contains("chain"));
    }

    #[test]
    fn internal_has_no_masquerade() {
        let (a, b) = (net("a", false), net("b", true));
        let s = render("t", &[&a, &b]);
        assert!(s.contains("ip saddr 10.7.0.0/24 oifname != \"cbra\" masquerade"));
        assert!(!s.contains("oifname != \"cbrb\" masquerade"));
        assert!(s.contains("iifname \"cbrb\" oifname != \"cbrb\" drop"));
        assert!(!s.contains("ip6"));
    }

    #[test]
    fn ipv6_networks_masquerade_their_ula() {
        let mut a = net("a", false);
        a.subnet6 = Some("fd00:7::/64".parse().unwrap());
        let mut b = net("b", true);
        b.subnet6 = Some("fd00:8::/64".parse().unwrap());
        let s = render("t", &[&a, &b]);
        assert!(s.contains("ip6 saddr fd00:7::/64 oifname != \"cbra\" masquerade"));
        assert!(!s.contains("fd00:8::"));
    }
}
