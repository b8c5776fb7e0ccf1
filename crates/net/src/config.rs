//! The persisted definition of a network and the rules its fields obey: name syntax, subnet and
//! gateway consistency, and the kernel names (bridge, taps) derived from it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the network containers join when they name none.
pub const DEFAULT_NETWORK: &str = "default";

/// Subnet of the default network unless the user created `default` first or set
/// `CONTAINER_DEFAULT_SUBNET`.
pub const DEFAULT_SUBNET: &str = "192.168.64.0/24";

/// Environment variable that overrides [`DEFAULT_SUBNET`] when the default network is first made.
pub const DEFAULT_SUBNET_ENV: &str = "CONTAINER_DEFAULT_SUBNET";

/// MTU of bridges and taps: the Ethernet default, which virtio-net carries unchanged.
pub const DEFAULT_MTU: u32 = 1500;

/// Prefix of every bridge we create; the firewall matches our bridges by it.
pub const BRIDGE_PREFIX: &str = "cbr";

/// Prefix of every tap we create; stale-link cleanup matches by it.
pub const TAP_PREFIX: &str = "ctap";

/// What the user asks for in `container network create`.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    /// Network name (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters).
    pub name: String,
    /// IPv4 subnet; chosen automatically from 192.168.65.0/24 upwards when absent.
    pub subnet: Option<Ipv4Net>,
    /// Gateway address on the bridge; the first host address of the subnet when absent.
    pub gateway: Option<Ipv4Addr>,
    /// No egress: no NAT and no forwarding out of the bridge.
    pub internal: bool,
    /// User metadata (`network create --label`), kept with the definition.
    pub labels: BTreeMap<String, String>,
    /// IPv6 as well (`--ipv6`): the network gets an IPv6 subnet (given, or a random unique
    /// local /64) and every container an IPv6 address besides its IPv4 one.
    pub ipv6: bool,
    /// IPv6 subnet; implies `ipv6`.
    pub subnet6: Option<Ipv6Net>,
    /// IPv6 gateway on the bridge; the subnet's first address when absent.
    pub gateway6: Option<Ipv6Addr>,
}

/// What a container asks of one of its networks beyond a place on it: more names (docker's
/// network aliases, `--network-alias`) and a fixed address (docker's `IPAMConfig.IPv4Address`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConfig {
    /// Names its peers on the network resolve to it, besides its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its address on the network (default: the lowest free one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<Ipv4Addr>,
    /// Its IPv6 address on an IPv6 network (default: the lowest free one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Ipv6Addr>,
    /// Its MAC address on the network (default: derived from network and container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Its interface's MTU, at most the network's (default: the network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// Checks a network alias: a DNS name (labels of letters, digits, `-` and `_`, joined by dots),
/// what a resolver can ask for.
pub fn validate_alias(alias: &str) -> Result<(), ConfigError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if alias.len() > 253 || !alias.split('.').all(label_ok) {
        return Err(ConfigError::InvalidAlias(alias.to_string()));
    }
    Ok(())
}

/// A network as stored in `<root>/networks/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Network name.
    pub name: String,
    /// Random identifier (hex), fixed at creation; kernel names derive from it.
    pub id: String,
    /// IPv4 subnet the containers' addresses come from.
    pub subnet: Ipv4Net,
    /// Gateway address, configured on the bridge.
    pub gateway: Ipv4Addr,
    /// No egress when true.
    pub internal: bool,
    /// Name of the Linux bridge (at most 15 characters).
    pub bridge: String,
    /// MTU of the bridge, the taps and the guest's interface.
    pub mtu: u32,
    /// Creation time, RFC 3339.
    pub created: String,
    /// User metadata (`network create --label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// IPv6 subnet, on an IPv6 network; definitions written before IPv6 have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// IPv6 gateway on the bridge, on an IPv6 network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

impl NetworkConfig {
    /// Whether `address` is a host address of this network's subnet of its family: inside it,
    /// not the subnet's own address, not IPv4's broadcast; an IPv6 one only on an IPv6 network.
    pub fn is_host_address(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => {
                self.subnet.contains(&a)
                    && a != self.subnet.network()
                    && a != self.subnet.broadcast()
            }
            IpAddr::V6(a) => self
                .subnet6
                .is_some_and(|s| s.contains(&a) && a != s.network()),
        }
    }

    /// Whether `address` is this network's gateway (of either family).
    pub fn is_gateway(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => a == self.gateway,
            IpAddr::V6(a) => Some(a) == self.gateway6,
        }
    }
}

/// A reason a network definition is unacceptable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The name breaks the syntax rule.
    #[error("invalid network name {0:?}: use letters, digits, '_', '.', '-' (first a letter or digit), at most 64")]
    InvalidName(String),
    /// A network alias that is not a DNS name.
    #[error(
        "invalid network alias {0:?}: use a DNS name (letters, digits, '-', '_', dots between)"
    )]
    InvalidAlias(String),
    /// The subnet is too small to hold a gateway and a container.
    #[error("subnet {0} is too small: a network needs at least a /30")]
    SubnetTooSmall(Ipv4Net),
    /// The subnet has host bits set.
    #[error("subnet {0} has host bits set; did you mean {1}?")]
    SubnetHostBits(Ipv4Net, Ipv4Net),
    /// The gateway is not a host address of the subnet.
    #[error("gateway {gateway} is not a host address of subnet {subnet}")]
    GatewayOutside {
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The subnet given.
        subnet: Ipv4Net,
    },
    /// The IPv6 subnet is too small or has host bits set.
    #[error("invalid IPv6 subnet {0}: {1}")]
    Subnet6(Ipv6Net, &'static str),
    /// The IPv6 gateway is not an address of the IPv6 subnet.
    #[error("gateway {gateway} is not a host address of subnet {subnet}")]
    Gateway6Outside {
        /// The gateway given.
        gateway: Ipv6Addr,
        /// The subnet given.
        subnet: Ipv6Net,
    },
    /// An IPv6 gateway without an IPv6 network.
    #[error("an IPv6 gateway needs an IPv6 network (--ipv6 or an IPv6 --subnet)")]
    Gateway6WithoutIpv6,
    /// A MAC address that cannot be an interface's.
    #[error("invalid MAC address {0:?}: want a unicast address xx:xx:xx:xx:xx:xx")]
    InvalidMac(String),
}

/// Checks a network name against the syntax docker also uses.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(ConfigError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Checks that a subnet and gateway fit together and returns the gateway to use.
pub fn resolve_gateway(
    subnet: Ipv4Net,
    gateway: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, ConfigError> {
    if subnet.trunc() != subnet {
        return Err(ConfigError::SubnetHostBits(subnet, subnet.trunc()));
    }
    if subnet.prefix_len() > 30 {
        return Err(ConfigError::SubnetTooSmall(subnet));
    }
    let first = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let gateway = gateway.unwrap_or(first);
    let is_host =
        subnet.contains(&gateway) && gateway != subnet.network() && gateway != subnet.broadcast();
    if !is_host {
        return Err(ConfigError::GatewayOutside { gateway, subnet });
    }
    Ok(gateway)
}

/// Checks an IPv6 subnet and gateway and returns the gateway to use. The subnet's own address
/// (the subnet-router anycast address) is never a host's.
pub fn resolve_gateway6(
    subnet: Ipv6Net,
    gateway: Option<Ipv6Addr>,
) -> Result<Ipv6Addr, ConfigError> {
    if subnet.trunc() != subnet {
        return Err(ConfigError::Subnet6(subnet, "host bits set"));
    }
    if subnet.prefix_len() > 126 {
        return Err(ConfigError::Subnet6(
            subnet,
            "too small: a network needs at least a /126",
        ));
    }
    let first = Ipv6Addr::from(u128::from(subnet.network()) + 1);
    let gateway = gateway.unwrap_or(first);
    if !subnet.contains(&gateway) || gateway == subnet.network() {
        return Err(ConfigError::Gateway6Outside { gateway, subnet });
    }
    Ok(gateway)
}

/// A random unique local /64 (RFC 4193: `fd` and a 40-bit random global id), as docker picks
/// for an IPv6 network created without a subnet.
pub fn random_ula_subnet() -> Ipv6Net {
    let global: [u8; 5] = rand::random();
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&global);
    Ipv6Net::new(Ipv6Addr::from(octets), 64).unwrap_or_default()
}

/// Checks and normalises (lowercase) a MAC address a container asks for: unicast, not zero.
pub fn validate_mac(mac: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::InvalidMac(mac.to_string());
    let bytes = mac
        .split(':')
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    if bytes.len() != 6 || bytes[0] & 1 != 0 || bytes.iter().all(|b| *b == 0) {
        return Err(bad());
    }
    Ok(mac.to_ascii_lowercase())
}

/// Bridge name for a network id: `cbr` + 12 hex digits = 15 characters, the kernel's limit.
pub fn bridge_name(network_id: &str) -> String {
    format!(
        "{BRIDGE_PREFIX}{}",
        &short_hash(network_id.as_bytes())[..12]
    )
}

/// Tap name for one container on one network: `ctap` + 11 hex digits = 15 characters.
pub fn tap_name(network_id: &str, container_id: &str) -> String {
    let key = format!("{network_id}\0{container_id}");
    format!("{TAP_PREFIX}{}", &short_hash(key.as_bytes())[..11])
}

/// A locally administered unicast MAC derived from network and container (and a counter to
/// step past the rare collision).
pub fn mac_address(network_id: &str, container_id: &str, attempt: u32) -> String {
    let key = format!("{network_id}\0{container_id}\0{attempt}");
    let digest = Sha256::digest(key.as_bytes());
    // 0x02: locally administered (bit 1 set), unicast (bit 0 clear).
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        digest[0], digest[1], digest[2], digest[3], digest[4]
    )
}

/// The bridge's own MAC, fixed at creation. A bridge without an assigned MAC takes the lowest
/// MAC of its ports and changes it when a port with a lower one joins, which leaves every
/// container with a stale ARP entry for its gateway; an explicit address never changes.
pub fn bridge_mac(network_id: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("{network_id}\0bridge").as_bytes());
    [0x02, digest[0], digest[1], digest[2], digest[3], digest[4]]
}

fn short_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A fresh random network id (32 hex digits).
pub fn new_network_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("my_net.1-a").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert!(validate_alias("db").is_ok() && validate_alias("db.internal").is_ok());
        assert!(validate_alias("").is_err() && validate_alias("a..b").is_err());
        assert!(validate_alias("a b").is_err() && validate_alias("a/b").is_err());
    }

    #[test]
    fn gateways() {
        let net: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        assert_eq!(
            resolve_gateway(net, None).unwrap(),
            Ipv4Addr::new(10, 1, 2, 1)
        );
        assert_eq!(
            resolve_gateway(net, Some(Ipv4Addr::new(10, 1, 2, 254))).unwrap(),
            Ipv4Addr::new(10, 1, 2, 254)
        );
        assert!(resolve_gateway(net, Some(Ipv4Addr::new(10, 1, 2, 255))).is_err());
        assert!(resolve_gateway(net, Some(Ipv4Addr::new(10, 1, 3, 1))).is_err());
        assert!(resolve_gateway("10.1.2.1/24".parse().unwrap(), None).is_err());
        assert!(resolve_gateway("10.1.2.0/31".parse().unwrap(), None).is_err());
    }

    #[test]
    fn ipv6_gateways_and_ula_subnets() {
        let net: Ipv6Net = "fd00:1:2:3::/64".parse().unwrap();
        assert_eq!(
            resolve_gateway6(net, None).unwrap(),
            "fd00:1:2:3::1".parse::<Ipv6Addr>().unwrap()
        );
        assert!(resolve_gateway6(net, Some("fd00:1:2:3::fe".parse().unwrap())).is_ok());
        assert!(resolve_gateway6(net, Some("fd00:1:2:3::".parse().unwrap())).is_err());
        assert!(resolve_gateway6(net, Some("fd00:1:2:4::1".parse().unwrap())).is_err());
        assert!(resolve_gateway6("fd00::1/64".parse().unwrap(), None).is_err());
        assert!(resolve_gateway6("fd00::/127".parse().unwrap(), None).is_err());
        let a = random_ula_subnet();
        assert_eq!(a.prefix_len(), 64);
        assert_eq!(a.network().octets()[0], 0xfd);
        assert_eq!(a.trunc(), a);
        assert_ne!(a, random_ula_subnet());
    }

    #[test]
    fn macs() {
        assert_eq!(
            validate_mac("02:AB:cd:00:11:22").unwrap(),
            "02:ab:cd:00:11:22"
        );
        assert!(validate_mac("03:00:00:00:00:01").is_err());
        assert!(validate_mac("00:00:00:00:00:00").is_err());
        assert!(validate_mac("02:00:00:00:00").is_err());
        assert!(validate_mac("02:00:00:00:00:0g").is_err());
        assert!(validate_mac("02:00:00:00:00:001").is_err());
    }

    #[test]
    fn kernel_names_fit_and_are_stable() {
        let b = bridge_name("abc");
        assert_eq!(b.len(), 15);
        assert_eq!(b, bridge_name("abc"));
        assert_ne!(b, bridge_name("abd"));
        let t = tap_name("abc", "c1");
        assert_eq!(t.len(), 15);
        assert_ne!(t, tap_name("abc", "c2"));
        let m = mac_address("abc", "c1", 0);
        assert!(m.starts_with("02:"));
        assert_eq!(m, mac_address("abc", "c1", 0));
        assert_ne!(m, mac_address("abc", "c1", 1));
    }
}
