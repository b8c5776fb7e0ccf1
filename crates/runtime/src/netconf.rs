//! A container's own name-resolution settings, docker's `--hostname`, `--dns`, `--dns-search`,
//! `--dns-option` and `--add-host`: parsed and checked here when the container is created, kept
//! in its record, and applied by the monitor on every start (`/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf` in the guest).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The `--add-host` address that stands for the host: the gateway of the container's first
/// network (docker's spelling).
pub const HOST_GATEWAY: &str = "host-gateway";

/// Errors in the flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetconfError {
    /// `--hostname` is not an RFC 1123 host name.
    #[error("invalid hostname {0:?}: use letters, digits, '-' and '.', at most 63 per label")]
    Hostname(String),
    /// `--add-host` is not `NAME:IP`.
    #[error("invalid --add-host {0:?}: expected NAME:IP (or NAME:host-gateway)")]
    AddHost(String),
}

/// resolv.conf settings that replace the network's (`servers`) or add to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsConfig {
    /// `--dns`: name servers instead of the network's DNS responder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<IpAddr>,
    /// `--dns-search`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// `--dns-option`, e.g. `ndots:2`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// `--no-dns`: the image's own `/etc/resolv.conf` stays (Apple's flag); the other fields
    /// must be empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub none: bool,
}

/// One `--add-host` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    /// The name.
    pub name: String,
    /// An address, or [`HOST_GATEWAY`].
    pub address: String,
}

impl ExtraHost {
    /// Parses `NAME:IP` or `NAME=IP` (IPv6 addresses contain colons, so the name ends at the
    /// first separator).
    pub fn parse(s: &str) -> Result<ExtraHost, NetconfError> {
        let bad = || NetconfError::AddHost(s.to_string());
        let (name, address) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(bad)?;
        let address = address.trim_start_matches('[').trim_end_matches(']');
        if check_hostname(name).is_err()
            || (address != HOST_GATEWAY && address.parse::<IpAddr>().is_err())
        {
            return Err(bad());
        }
        Ok(ExtraHost {
            name: name.to_string(),
            address: address.to_string(),
        })
    }

    /// The address, with [`HOST_GATEWAY`] replaced by `gateway`; `None` when it is the
    /// gateway and the container has no network.
    pub fn resolve(&self, gateway: Option<IpAddr>) -> Option<IpAddr> {
        if self.address == HOST_GATEWAY {
            gateway
        } else {
            self.address.parse().ok()
        }
    }
}

/// Checks an RFC 1123 host name (labels of letters, digits and inner hyphens, up to 63 bytes
/// each, 253 in all).
pub fn check_hostname(name: &str) -> Result<(), NetconfError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(NetconfError::Hostname(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_forms() {
        let h = ExtraHost::parse("db:10.0.0.5").unwrap();
        assert_eq!((h.name.as_str(), h.address.as_str()), ("db", "10.0.0.5"));
        let h = ExtraHost::parse("v6=fd00::1").unwrap();
        assert_eq!(h.address, "fd00::1");
        let h = ExtraHost::parse("v6:[fd00::2]").unwrap();
        assert_eq!(h.address, "fd00::2");
        let h = ExtraHost::parse("host.docker.internal:host-gateway").unwrap();
        assert_eq!(h.resolve(None), None);
        let gw: IpAddr = "192.168.64.1".parse().unwrap();
        assert_eq!(h.resolve(Some(gw)), Some(gw));
        for bad in ["db", "db:", ":1.2.3.4", "db:nope", "bad_name:1.2.3.4"] {
            assert_eq!(
                ExtraHost::parse(bad),
                Err(NetconfError::AddHost(bad.into()))
            );
        }
    }

    #[test]
    fn hostnames() {
        for ok in ["web", "web-1", "a.b.c", "x1"] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "under_score",
            "sp ace",
            &"a".repeat(64),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }
}
