//! Address allocation within one network: a lease per container id holding its address, MAC
//! and tap name. A lease survives the container's stops and restarts (the same address comes
//! back) and is freed only when the container is deleted.
//!
//! The functions here are pure; the caller holds the store lock around read → allocate → write,
//! which is what makes allocation safe across processes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::{mac_address, tap_name, NetworkConfig};

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
    /// MAC of the guest's interface.
    pub mac: String,
    /// Name of the host-side tap.
    pub tap: String,
    /// Container name (and aliases later), for name resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
        subnet: ipnet::Ipv4Net,
    },
}

impl Leases {
    /// The lease of `container_id`, creating one with the lowest free address if it has none.
    /// Returns the lease and whether it was newly created.
    pub fn allocate(
        &mut self,
        network: &NetworkConfig,
        container_id: &str,
        name: Option<&str>,
    ) -> Result<(Lease, bool), IpamError> {
        if let Some(lease) = self.leases.get_mut(container_id) {
            if name.is_some() {
                lease.name = name.map(str::to_string);
            }
            return Ok((lease.clone(), false));
        }
        let used: BTreeSet<Ipv4Addr> = self.leases.values().map(|l| l.address).collect();
        let first = u32::from(network.subnet.network()) + 1;
        let last = u32::from(network.subnet.broadcast()) - 1;
        let address = (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| *a != network.gateway && !used.contains(a))
            .ok_or_else(|| IpamError::Exhausted {
                network: network.name.clone(),
                subnet: network.subnet,
            })?;
        let macs: BTreeSet<&str> = self.leases.values().map(|l| l.mac.as_str()).collect();
        let mac = (0..)
            .map(|attempt| mac_address(&network.id, container_id, attempt))
            .find(|m| !macs.contains(m.as_str()))
            .unwrap_or_default();
        let lease = Lease {
            address,
            mac,
            tap: tap_name(&network.id, container_id),
            name: name.map(str::to_string),
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
        }
    }

    #[test]
    fn lowest_free_skipping_gateway_and_reuse() {
        let n = net("10.0.0.0/29", "10.0.0.1");
        let mut l = Leases::default();
        let (a, new) = l.allocate(&n, "a", Some("alpha")).unwrap();
        assert!(new);
        assert_eq!(a.address, Ipv4Addr::new(10, 0, 0, 2));
        let (b, _) = l.allocate(&n, "b", None).unwrap();
        assert_eq!(b.address, Ipv4Addr::new(10, 0, 0, 3));
        // Same container again: same lease.
        let (a2, new) = l.allocate(&n, "a", None).unwrap();
        assert!(!new);
        assert_eq!(a2, a);
        assert_ne!(a.mac, b.mac);
        assert_ne!(a.tap, b.tap);
        // Released addresses are reused.
        l.release("a");
        let (c, _) = l.allocate(&n, "c", None).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn gateway_elsewhere_and_exhaustion() {
        // /30: hosts .1 and .2; gateway .2 leaves only .1.
        let n = net("10.0.0.0/30", "10.0.0.2");
        let mut l = Leases::default();
        assert_eq!(
            l.allocate(&n, "a", None).unwrap().0.address,
            Ipv4Addr::new(10, 0, 0, 1)
        );
        let err = l.allocate(&n, "b", None).unwrap_err();
        assert!(err.to_string().contains("no free address"), "{err}");
    }
}
