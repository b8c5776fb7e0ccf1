//! Address allocation within one network: a lease per container id holding its address, MAC
//! and tap name. A lease survives the container's stops and restarts (the same address comes
//! back) and is freed only when the container is deleted.
//!
//! The functions here are pure; the caller holds the store lock around read → allocate → write,
//! which is what makes allocation safe across processes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::config::{mac_address, tap_name, EndpointConfig, NetworkConfig};

/// The leases of one network, keyed by container id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases {
    /// Container id → its lease.
    pub leases: BTreeMap<String, Lease>,
}

/// One container's place on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Address within the network's subnet.
    pub address: Ipv4Addr,
    /// Address within the network's IPv6 subnet, on an IPv6 network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Addr>,
    /// MAC of the guest's interface.
    pub mac: String,
    /// Name of the host-side tap.
    pub tap: String,
    /// The guest interface's MTU when the container asked for one below the network's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Container name, for name resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More names the container answers to on this network (docker's network aliases);
    /// leases written before aliases existed have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// True while the tap exists (between attach and detach).
    #[serde(default)]
    pub attached: bool,
}

/// A failure to allocate.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every host address of the subnet is taken.
    #[error("no free address left in network {network} ({subnet})")]
    Exhausted {
        /// Network name.
        network: String,
        /// Its subnet.
        subnet: String,
    },
    /// The MAC address a container asked for is another container's on the network.
    #[error("MAC address {mac} is not available on network {network}: another container has it")]
    MacTaken {
        /// The MAC asked for.
        mac: String,
        /// Network name.
        network: String,
    },
    /// The address a container asked for cannot be its own.
    #[error("address {address} is not available on network {network}: {reason}")]
    Unavailable {
        /// The address asked for.
        address: IpAddr,
        /// Network name.
        network: String,
        /// Why not.
        reason: &'static str,
    },
}

impl Leases {
    /// The lease of `container_id`, creating one if it has none: at the addresses (IPv4 and,
    /// on an IPv6 network, IPv6) and MAC `endpoint` pins, else the lowest free addresses and a
    /// derived MAC. An existing lease takes the endpoint's aliases (and its pinned addresses
    /// and MAC, when they changed). Returns the lease and whether it was newly created.
    pub fn allocate(
        &mut self,
        network: &NetworkConfig,
        container_id: &str,
        name: Option<&str>,
        endpoint: &EndpointConfig,
    ) -> Result<(Lease, bool), IpamError> {
        let others = || {
            self.leases
                .iter()
                .filter(|(id, _)| id.as_str() != container_id)
                .map(|(_, l)| l)
        };
        let used: BTreeSet<Ipv4Addr> = others().map(|l| l.address).collect();
        let used6: BTreeSet<Ipv6Addr> = others().filter_map(|l| l.address6).collect();
        let macs: BTreeSet<String> = others().map(|l| l.mac.clone()).collect();
        let pinned = match endpoint.ipv4_address {
            Some(address) => Some(check_pinned(network, address, &used)?),
            None => None,
        };
        let pinned6 = match endpoint.ipv6_address {
            Some(address) => Some(check_pinned(network, address, &used6)?),
            None => None,
        };
        if let Some(mac) = &endpoint.mac_address {
            if macs.contains(mac) {
                return Err(IpamError::MacTaken {
                    mac: mac.clone(),
                    network: network.name.clone(),
                });
            }
        }
        if let Some(lease) = self.leases.get_mut(container_id) {
            if name.is_some() {
                lease.name = name.map(str::to_string);
            }
            lease.aliases.clone_from(&endpoint.aliases);
            if let Some(address) = pinned {
                lease.address = address;
            }
            if pinned6.is_some() {
                lease.address6 = pinned6;
            } else if lease.address6.is_none() && network.subnet6.is_some() {
                lease.address6 = Some(free6(network, &used6)?);
            }
            if let Some(mac) = &endpoint.mac_address {
                lease.mac.clone_from(mac);
            }
            lease.mtu = endpoint.mtu;
            return Ok((lease.clone(), false));
        }
        let first = u32::from(network.subnet.network()) + 1;
        let last = u32::from(network.subnet.broadcast()) - 1;
        let address = match pinned {
            Some(address) => address,
            None => (first..=last)
                .map(Ipv4Addr::from)
                .find(|a| *a != network.gateway && !used.contains(a))
                .ok_or_else(|| IpamError::Exhausted {
                    network: network.name.clone(),
                    subnet: network.subnet.to_string(),
                })?,
        };
        let address6 = match (pinned6, network.subnet6) {
            (Some(a), _) => Some(a),
            (None, Some(_)) => Some(free6(network, &used6)?),
            (None, None) => None,
        };
        let mac = match &endpoint.mac_address {
            Some(mac) => mac.clone(),
            None => (0..)
                .map(|attempt| mac_address(&network.id, container_id, attempt))
                .find(|m| !macs.contains(m))
                .unwrap_or_default(),
        };
        let lease = Lease {
            address,
            address6,
            mac,
            tap: tap_name(&network.id, container_id),
            mtu: endpoint.mtu,
            name: name.map(str::to_string),
            aliases: endpoint.aliases.clone(),
            attached: false,
        };
        self.leases.insert(container_id.to_string(), lease.clone());
        Ok((lease, true))
    }

    /// Frees the lease of `container_id`; returns it if there was one.
    pub fn release(&mut self, container_id: &str) -> Option<Lease> {
        self.leases.remove(container_id)
    }
}

/// `address` if a container may have it on `network`: a host address of the subnet of its
/// family, not the gateway, not another container's (`used`).
fn check_pinned<A: Copy + Ord + Into<IpAddr>>(
    network: &NetworkConfig,
    address: A,
    used: &BTreeSet<A>,
) -> Result<A, IpamError> {
    let ip: IpAddr = address.into();
    let unavailable = |reason| IpamError::Unavailable {
        address: ip,
        network: network.name.clone(),
        reason,
    };
    if ip.is_ipv6() && network.subnet6.is_none() {
        return Err(unavailable(
            "the network has no IPv6 (create it with --ipv6)",
        ));
    }
    if !network.is_host_address(ip) {
        return Err(unavailable("not a host address of its subnet"));
    }
    if network.is_gateway(ip) {
        return Err(unavailable("it is the gateway"));
    }
    if used.contains(&address) {
        return Err(unavailable("another container has it"));
    }
    Ok(address)
}

/// The lowest IPv6 address of `network`'s IPv6 subnet that is neither the subnet-router
/// anycast address, nor the gateway, nor in `used`.
fn free6(network: &NetworkConfig, used: &BTreeSet<Ipv6Addr>) -> Result<Ipv6Addr, IpamError> {
    let exhausted = || IpamError::Exhausted {
        network: network.name.clone(),
        subnet: network.subnet6.map(|s| s.to_string()).unwrap_or_default(),
    };
    let subnet = network.subnet6.ok_or_else(exhausted)?;
    let first = u128::from(subnet.network()) + 1;
    let last = u128::from(subnet.broadcast());
    // At most `used.len() + 2` candidates are looked at: the scan ends at the first gap.
    (first..=last)
        .map(Ipv6Addr::from)
        .find(|a| Some(*a) != network.gateway6 && !used.contains(a))
        .ok_or_else(exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(subnet: &str, gateway: &str) -> NetworkConfig {
        NetworkConfig {
            name: "t".into(),
            id: "id".into(),
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            internal: false,
            bridge: "cbrx".into(),
            mtu: 1500,
            created: String::new(),
            labels: Default::default(),
            subnet6: None,
            gateway6: None,
        }
    }

    fn none() -> EndpointConfig {
        EndpointConfig::default()
    }

    #[test]
    fn pinned_addresses_and_aliases() {
        let n = net("10.0.0.0/29", "10.0.0.1");
        let mut l = Leases::default();
        let pin = |a: &str| EndpointConfig {
            aliases: vec!["db".into()],
            ipv4_address: Some(a.parse().unwrap()),
            ..Default::default()
        };
        let (a, _) = l.allocate(&n, "a", None, &pin("10.0.0.5")).unwrap();
        assert_eq!(
            (a.address, a.aliases.as_slice()),
            (Ipv4Addr::new(10, 0, 0, 5), &["db".to_string()][..])
        );
        // The next free one skips the pinned address only where it is taken.
        let (b, _) = l.allocate(&n, "b", None, &none()).unwrap();
        assert_eq!(b.address, Ipv4Addr::new(10, 0, 0, 2));
        for (addr, why) in [
            ("10.0.0.5", "another"),
            ("10.0.0.1", "gateway"),
            ("10.0.0.7", "host address"),
            ("10.0.1.2", "host address"),
        ] {
            let err = l.allocate(&n, "c", None, &pin(addr)).unwrap_err();
            assert!(err.to_string().contains(why), "{addr}: {err}");
        }
        // Its own address is not "another container's"; aliases follow the endpoint.
        let (a2, new) = l.allocate(&n, "a", None, &pin("10.0.0.5")).unwrap();
        assert!(!new);
        assert_eq!(a2.address, a.address);
        let (a3, _) = l.allocate(&n, "a", None, &none()).unwrap();
        assert!(a3.aliases.is_empty());
    }

    #[test]
    fn lowest_free_skipping_gateway_and_reuse() {
        let n = net("10.0.0.0/29", "10.0.0.1");
        let mut l = Leases::default();
        let (a, new) = l.allocate(&n, "a", Some("alpha"), &none()).unwrap();
        assert!(new);
        assert_eq!(a.address, Ipv4Addr::new(10, 0, 0, 2));
        let (b, _) = l.allocate(&n, "b", None, &none()).unwrap();
        assert_eq!(b.address, Ipv4Addr::new(10, 0, 0, 3));
        // Same container again: same lease.
        let (a2, new) = l.allocate(&n, "a", None, &none()).unwrap();
        assert!(!new);
        assert_eq!(a2, a);
        assert_ne!(a.mac, b.mac);
        assert_ne!(a.tap, b.tap);
        // Released addresses are reused.
        l.release("a");
        let (c, _) = l.allocate(&n, "c", None, &none()).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn ipv6_addresses_and_pinned_macs() {
        let mut n = net("10.0.0.0/29", "10.0.0.1");
        let v4_only = Leases::default()
            .allocate(&n, "a", None, &none())
            .unwrap()
            .0;
        assert_eq!(v4_only.address6, None);
        n.subnet6 = Some("fd00:9::/126".parse().unwrap());
        n.gateway6 = Some("fd00:9::1".parse().unwrap());
        let mut l = Leases::default();
        let (a, _) = l.allocate(&n, "a", None, &none()).unwrap();
        assert_eq!(a.address6, Some("fd00:9::2".parse().unwrap()));
        let pin6 = |a: &str| EndpointConfig {
            ipv6_address: Some(a.parse().unwrap()),
            mac_address: Some("02:00:00:00:00:07".into()),
            ..Default::default()
        };
        for (addr, why) in [
            ("fd00:9::2", "another"),
            ("fd00:9::1", "gateway"),
            ("fd00:9::", "host address"),
            ("fd00:8::3", "host address"),
        ] {
            let err = l.allocate(&n, "b", None, &pin6(addr)).unwrap_err();
            assert!(err.to_string().contains(why), "{addr}: {err}");
        }
        let (b, _) = l.allocate(&n, "b", None, &pin6("fd00:9::3")).unwrap();
        assert_eq!(
            (b.address6, b.mac.as_str()),
            (Some("fd00:9::3".parse().unwrap()), "02:00:00:00:00:07")
        );
        let err = l.allocate(&n, "c", None, &pin6("fd00:9::3")).unwrap_err();
        assert!(err.to_string().contains("another"), "{err}");
        let mac_only = EndpointConfig {
            mac_address: Some("02:00:00:00:00:07".into()),
            ..Default::default()
        };
        let err = l.allocate(&n, "c", None, &mac_only).unwrap_err();
        assert!(err.to_string().contains("MAC address"), "{err}");
        // ::1 gateway, ::2 and ::3 taken: a /126 has nothing left.
        let err = l.allocate(&n, "c", None, &none()).unwrap_err();
        assert!(err.to_string().contains("no free address"), "{err}");
        n.subnet6 = None;
        let err = l.allocate(&n, "a", None, &pin6("fd00:9::2")).unwrap_err();
        assert!(err.to_string().contains("--ipv6"), "{err}");
    }

    #[test]
    fn gateway_elsewhere_and_exhaustion() {
        // /30: hosts .1 and .2; gateway .2 leaves only .1.
        let n = net("10.0.0.0/30", "10.0.0.2");
        let mut l = Leases::default();
        assert_eq!(
            l.allocate(&n, "a", None, &none()).unwrap().0.address,
            Ipv4Addr::new(10, 0, 0, 1)
        );
        let err = l.allocate(&n, "b", None, &none()).unwrap_err();
        assert!(err.to_string().contains("no free address"), "{err}");
    }
}
