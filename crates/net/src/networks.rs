//! [`Networks`]: the operations the CLI and the runtime call. Each takes the store lock, reads
//! the state, changes the kernel (bridge, tap, nf_tables) and writes the state back, so
//! concurrent `container` processes never hand out the same address or race on a bridge.
//!
//! Lifetimes of kernel objects:
//! - a user-created network's bridge exists from `create` to `delete` (and is re-made on the
//!   next attach after a host reboot);
//! - the `default` network's definition is written on first use, its bridge made at the first
//!   attach and removed when its last container detaches;
//! - a tap exists from `attach` to `detach`; the address lease from the first `attach` to
//!   `release` (container deletion);
//! - our nf_tables table always holds exactly the rules for the bridges that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::config::{
    bridge_mac, bridge_name, new_network_id, random_ula_subnet, resolve_gateway, resolve_gateway6,
    validate_name, ConfigError, EndpointConfig, NetworkConfig, NetworkSpec, DEFAULT_MTU,
    DEFAULT_NETWORK, DEFAULT_SUBNET, DEFAULT_SUBNET_ENV,
};
use crate::dns::{host_upstreams, DnsError, DnsResponder};
use crate::hosts::HostEntry;
use crate::ipam::{IpamError, Lease};
use crate::store::{Store, StoreError, StoreLock};
use crate::{firewall, link, tap, FirewallError, LinkError, TapError};

/// A failed network operation.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Reading or writing state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The definition is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No address is left.
    #[error(transparent)]
    Allocate(#[from] IpamError),
    /// A netlink operation failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Creating a tap failed.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// Applying nf_tables rules failed.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// No such network.
    #[error("network {0} not found")]
    NotFound(String),
    /// An id prefix that more than one network's id starts with.
    #[error("network {0} is ambiguous: more than one network's id starts with it")]
    Ambiguous(String),
    /// `create` of a name that exists.
    #[error("network {0} already exists")]
    AlreadyExists(String),
    /// A name with a meaning of its own.
    #[error("network name {0} is reserved")]
    Reserved(String),
    /// `delete` of a network containers still use.
    #[error("cannot delete network {name}: in use by container(s) {containers}")]
    InUse {
        /// Network name.
        name: String,
        /// Comma-separated container ids (or names).
        containers: String,
    },
    /// The subnet overlaps another network or a host address.
    #[error("subnet {subnet} overlaps {other}")]
    Overlap {
        /// Requested subnet.
        subnet: String,
        /// What it collides with.
        other: String,
    },
    /// Contradictory `--network` flags.
    #[error("invalid --network: {0}")]
    BadMode(String),
    /// The DNS responder could not start.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// `CONTAINER_DEFAULT_SUBNET` is not a subnet.
    #[error("{DEFAULT_SUBNET_ENV}={0:?} is not an IPv4 subnet in CIDR form")]
    DefaultSubnet(String),
    /// No free /24 was found for a network without `--subnet`.
    #[error("no free subnet in 192.168.65.0-192.168.254.0/24; pass --subnet")]
    NoFreeSubnet,
}

/// A network with its current use, as `network list`/`inspect` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    /// The stored definition.
    #[serde(flatten)]
    pub config: NetworkConfig,
    /// Whether the bridge currently exists in this network namespace.
    pub active: bool,
    /// Containers holding an address on it.
    pub containers: Vec<ContainerEntry>,
}

/// One container's lease, as shown by `network inspect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEntry {
    /// Container id.
    pub id: String,
    /// Container name, if given at attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address with prefix.
    pub address: Ipv4Net,
    /// IPv6 address with prefix, on an IPv6 network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Net>,
    /// MAC address.
    pub mac: String,
    /// Whether its tap currently exists.
    pub attached: bool,
}

/// What a container needs to use a network: the runtime passes `tap` and `mac` to QEMU and the
/// rest to the guest agent. Serialises to the objects of `inspect`'s `networks` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// Network id.
    pub network_id: String,
    /// Host tap device for `-netdev tap,ifname=…`.
    pub tap: String,
    /// Guest MAC for `-device virtio-net-device,mac=…`.
    pub mac: String,
    /// Guest address and prefix, e.g. 192.168.64.2/24.
    pub address: Ipv4Net,
    /// Default gateway for the guest.
    pub gateway: Ipv4Addr,
    /// Guest IPv6 address and prefix, on an IPv6 network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Net>,
    /// IPv6 default gateway for the guest, on an IPv6 network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// MTU for the guest interface.
    pub mtu: u32,
    /// Name servers for the guest's /etc/resolv.conf: the gateway, where the container's
    /// monitor runs the network's DNS responder ([`Networks::dns_responder`]).
    pub dns: Vec<Ipv4Addr>,
}

/// What the `--network` flags of a container ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// `--network none`: loopback only, no attachment.
    None,
    /// These networks, in interface order (`eth0` first).
    Networks(Vec<String>),
}

impl NetworkMode {
    /// Interprets repeated `--network` values: none given → the default network; `none` alone
    /// → no network; otherwise the names in order, without duplicates.
    pub fn from_flags(values: &[String]) -> Result<Self, NetworkError> {
        if values.is_empty() {
            return Ok(NetworkMode::Networks(vec![DEFAULT_NETWORK.to_string()]));
        }
        if values.iter().any(|v| v == "none") {
            if values.len() > 1 {
                return Err(NetworkError::BadMode(
                    "--network none cannot be combined with other networks".into(),
                ));
            }
            return Ok(NetworkMode::None);
        }
        let mut seen = BTreeSet::new();
        for v in values {
            validate_name(v)?;
            if !seen.insert(v.as_str()) {
                return Err(NetworkError::BadMode(format!("network {v} given twice")));
            }
        }
        Ok(NetworkMode::Networks(values.to_vec()))
    }
}

/// The networks of one state root. Cheap to open; every method locks for its own duration.
#[derive(Debug, Clone)]
pub struct Networks {
    root: PathBuf,
    store: Store,
    table: String,
}

impl Networks {
    /// Opens the networks of state root `root` (creating `<root>/networks`).
    pub fn open(root: &Path) -> Result<Self, NetworkError> {
        let store = Store::open(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            store,
            table: firewall::table_name(root),
        })
    }

    /// Creates a network and its bridge and rules.
    pub fn create(&self, spec: &NetworkSpec) -> Result<NetworkConfig, NetworkError> {
        validate_name(&spec.name)?;
        if matches!(spec.name.as_str(), "none" | "host") {
            return Err(NetworkError::Reserved(spec.name.clone()));
        }
        let lock = self.store.lock()?;
        let config = self.define(&lock, spec)?;
        if let Err(e) = self.materialize(&lock, &config) {
            let _ = link::delete(std::slice::from_ref(&config.bridge));
            let _ = self.store.remove_network(&lock, &config.name);
            let _ = self.sync_firewall(&lock);
            return Err(e);
        }
        Ok(config)
    }

    /// Validates `spec` against the other networks and the host and writes its definition.
    fn define(&self, lock: &StoreLock, spec: &NetworkSpec) -> Result<NetworkConfig, NetworkError> {
        validate_name(&spec.name)?;
        if self.store.read_network(lock, &spec.name)?.is_some() {
            return Err(NetworkError::AlreadyExists(spec.name.clone()));
        }
        let others = self.store.list_networks(lock)?;
        let host = link::host_networks(&[])?;
        let taken = |subnet: Ipv4Net| -> Option<String> {
            if let Some(n) = others.iter().find(|n| overlaps(n.subnet, subnet)) {
                return Some(format!("network {} ({})", n.name, n.subnet));
            }
            host.iter()
                .find(|(_, a)| overlaps(a.trunc(), subnet))
                .map(|(l, a)| format!("address {a} on {l}"))
        };
        let subnet = match spec.subnet {
            Some(subnet) => {
                // Syntax first (host bits, size, gateway), then collisions.
                resolve_gateway(subnet, spec.gateway)?;
                if let Some(other) = taken(subnet) {
                    return Err(NetworkError::Overlap {
                        subnet: subnet.to_string(),
                        other,
                    });
                }
                subnet
            }
            None => (65..=254u8)
                .filter_map(|third| Ipv4Net::new(Ipv4Addr::new(192, 168, third, 0), 24).ok())
                .find(|s| taken(*s).is_none())
                .ok_or(NetworkError::NoFreeSubnet)?,
        };
        let gateway = resolve_gateway(subnet, spec.gateway)?;
        let (subnet6, gateway6) = self.define6(spec, &others)?;
        let id = new_network_id();
        let config = NetworkConfig {
            name: spec.name.clone(),
            bridge: bridge_name(&id),
            id,
            subnet,
            gateway,
            internal: spec.internal,
            mtu: DEFAULT_MTU,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: spec.labels.clone(),
            subnet6,
            gateway6,
        };
        self.store.write_network(lock, &config)?;
        Ok(config)
    }

    /// The IPv6 subnet and gateway of a new network: none unless `spec` asks for IPv6; its
    /// subnet when given (refused when it overlaps another network's), else a random unique
    /// local /64.
    fn define6(
        &self,
        spec: &NetworkSpec,
        others: &[NetworkConfig],
    ) -> Result<(Option<Ipv6Net>, Option<Ipv6Addr>), NetworkError> {
        if !spec.ipv6 && spec.subnet6.is_none() {
            if spec.gateway6.is_some() {
                return Err(ConfigError::Gateway6WithoutIpv6.into());
            }
            return Ok((None, None));
        }
        let taken = |subnet: Ipv6Net| {
            others
                .iter()
                .filter_map(|n| n.subnet6.map(|s| (n, s)))
                .find(|(_, s)| overlaps(*s, subnet))
                .map(|(n, s)| format!("network {} ({s})", n.name))
        };
        let subnet = match spec.subnet6 {
            Some(subnet) => {
                resolve_gateway6(subnet, spec.gateway6)?;
                if let Some(other) = taken(subnet) {
                    return Err(NetworkError::Overlap {
                        subnet: subnet.to_string(),
                        other,
                    });
                }
                subnet
            }
            // 40 random bits: a collision is as good as impossible, but cheap to step past.
            None => std::iter::repeat_with(random_ula_subnet)
                .take(8)
                .find(|s| taken(*s).is_none())
                .ok_or(NetworkError::NoFreeSubnet)?,
        };
        let gateway = resolve_gateway6(subnet, spec.gateway6)?;
        Ok((Some(subnet), Some(gateway)))
    }

    /// The definition of `name`, writing the default network's on first use.
    fn config(&self, lock: &StoreLock, name: &str) -> Result<NetworkConfig, NetworkError> {
        if let Some(config) = self.store.read_network(lock, name)? {
            return Ok(config);
        }
        if name != DEFAULT_NETWORK {
            return Err(NetworkError::NotFound(name.to_string()));
        }
        // An explicit CONTAINER_DEFAULT_SUBNET is used as given; otherwise 192.168.64.0/24,
        // or the next free /24 when that one is taken (e.g. by another state root's default).
        let explicit = std::env::var(DEFAULT_SUBNET_ENV).ok();
        let subnet_text = explicit
            .clone()
            .unwrap_or_else(|| DEFAULT_SUBNET.to_string());
        let subnet = subnet_text
            .trim()
            .parse::<Ipv4Net>()
            .map_err(|_| NetworkError::DefaultSubnet(subnet_text.clone()))?;
        let mut spec = NetworkSpec {
            name: DEFAULT_NETWORK.to_string(),
            subnet: Some(subnet),
            ..Default::default()
        };
        match self.define(lock, &spec) {
            Err(NetworkError::Overlap { .. }) if explicit.is_none() => {
                spec.subnet = None;
                self.define(lock, &spec)
            }
            other => other,
        }
    }

    /// Bridge with gateway address, and rules.
    fn materialize(&self, lock: &StoreLock, config: &NetworkConfig) -> Result<(), NetworkError> {
        let gateway = Ipv4Net::new(config.gateway, config.subnet.prefix_len())
            .map_err(|_| ConfigError::SubnetTooSmall(config.subnet))?;
        let gateway6 = with_prefix6(config, config.gateway6);
        link::ensure_bridge(
            &config.bridge,
            bridge_mac(&config.id),
            config.mtu,
            gateway,
            gateway6,
        )?;
        self.sync_firewall(lock)
    }

    /// Makes our nf_tables table match the bridges that exist.
    fn sync_firewall(&self, lock: &StoreLock) -> Result<(), NetworkError> {
        let present: BTreeSet<String> = link::list()?.into_iter().map(|l| l.name).collect();
        let networks = self.store.list_networks(lock)?;
        let active: Vec<&NetworkConfig> = networks
            .iter()
            .filter(|n| present.contains(&n.bridge))
            .collect();
        firewall::apply(&self.table, &active)?;
        Ok(())
    }

    /// All networks (the default one included) with their use.
    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetworkError> {
        let lock = self.store.lock()?;
        if let Err(e) = self.config(&lock, DEFAULT_NETWORK) {
            tracing::warn!("default network unavailable: {e}");
        }
        let present: BTreeSet<String> = link::list()?.into_iter().map(|l| l.name).collect();
        self.store
            .list_networks(&lock)?
            .into_iter()
            .map(|config| self.info(&lock, config, &present))
            .collect()
    }

    /// The network `key` names: its name, its id, or a prefix of one id (docker's rule for
    /// network references; a name wins over an id).
    fn find(&self, lock: &StoreLock, key: &str) -> Result<NetworkConfig, NetworkError> {
        if key == DEFAULT_NETWORK {
            return self.config(lock, key);
        }
        self.find_existing(lock, key)
    }

    /// [`Networks::find`] without writing the default network's definition.
    fn find_existing(&self, lock: &StoreLock, key: &str) -> Result<NetworkConfig, NetworkError> {
        // Only a valid name may become a file name; anything else can still be an id.
        if validate_name(key).is_ok() {
            if let Some(config) = self.store.read_network(lock, key)? {
                return Ok(config);
            }
        }
        let all = self.store.list_networks(lock)?;
        if let Some(exact) = all.iter().find(|n| n.id == key) {
            return Ok(exact.clone());
        }
        let mut prefixed = all
            .into_iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key));
        match (prefixed.next(), prefixed.next()) {
            (Some(one), None) => Ok(one),
            (Some(_), Some(_)) => Err(NetworkError::Ambiguous(key.to_string())),
            (None, _) => Err(NetworkError::NotFound(key.to_string())),
        }
    }

    /// The definition of the network `key` names (name, id or unique id prefix).
    pub fn resolve(&self, key: &str) -> Result<NetworkConfig, NetworkError> {
        let lock = self.store.lock()?;
        self.find(&lock, key)
    }

    /// One network (by name, id or unique id prefix) with its use.
    pub fn inspect(&self, key: &str) -> Result<NetworkInfo, NetworkError> {
        let lock = self.store.lock()?;
        let config = self.find(&lock, key)?;
        let present: BTreeSet<String> = link::list()?.into_iter().map(|l| l.name).collect();
        self.info(&lock, config, &present)
    }

    fn info(
        &self,
        lock: &StoreLock,
        config: NetworkConfig,
        present: &BTreeSet<String>,
    ) -> Result<NetworkInfo, NetworkError> {
        let leases = self.store.read_leases(lock, &config.name)?;
        let prefix = config.subnet.prefix_len();
        let containers = leases
            .leases
            .into_iter()
            .map(|(id, l)| ContainerEntry {
                id,
                name: l.name,
                address: Ipv4Net::new(l.address, prefix).unwrap_or_default(),
                address6: with_prefix6(&config, l.address6),
                mac: l.mac,
                attached: l.attached,
            })
            .collect();
        Ok(NetworkInfo {
            active: present.contains(&config.bridge),
            config,
            containers,
        })
    }

    /// Deletes a network (by name, id or unique id prefix): its bridge, its rules and its
    /// definition. Refused while any container holds an address on it.
    pub fn delete(&self, key: &str) -> Result<(), NetworkError> {
        let lock = self.store.lock()?;
        let config = self.find_existing(&lock, key)?;
        let name = config.name.as_str();
        let leases = self.store.read_leases(&lock, name)?;
        if !leases.leases.is_empty() {
            let containers: Vec<String> = leases
                .leases
                .iter()
                .map(|(id, l)| l.name.clone().unwrap_or_else(|| id.clone()))
                .collect();
            return Err(NetworkError::InUse {
                name: name.to_string(),
                containers: containers.join(", "),
            });
        }
        link::delete(&[config.bridge])?;
        self.store.remove_network(&lock, name)?;
        self.sync_firewall(&lock)
    }

    /// Connects container `container_id` (optionally named, for name resolution) to `network`:
    /// allocates or reuses its address, makes sure bridge and rules exist, creates its tap and
    /// enslaves it. Call before the VM boots; the tap must exist when QEMU starts.
    pub fn attach(
        &self,
        container_id: &str,
        container_name: Option<&str>,
        network: &str,
    ) -> Result<Attachment, NetworkError> {
        self.attach_endpoint(
            container_id,
            container_name,
            network,
            &EndpointConfig::default(),
        )
    }

    /// [`Networks::attach`] with the container's aliases on the network and, if it asks for
    /// one, its fixed address.
    pub fn attach_endpoint(
        &self,
        container_id: &str,
        container_name: Option<&str>,
        network: &str,
        endpoint: &EndpointConfig,
    ) -> Result<Attachment, NetworkError> {
        let lock = self.store.lock()?;
        let config = self.config(&lock, network)?;
        let mut leases = self.store.read_leases(&lock, network)?;
        let (mut lease, created) =
            leases.allocate(&config, container_id, container_name, endpoint)?;
        lease.attached = true;
        leases
            .leases
            .insert(container_id.to_string(), lease.clone());
        // The lease is written (attached) before the tap exists: a crash in between leaves a
        // record that `cleanup_stale` can act on, never an untracked tap.
        self.store.write_leases(&lock, network, &leases)?;
        let result = self
            .materialize(&lock, &config)
            .and_then(|()| tap::create(&lease.tap).map_err(NetworkError::from))
            .and_then(|()| {
                link::attach_to_bridge(&lease.tap, &config.bridge, config.mtu)
                    .map_err(NetworkError::from)
            });
        if let Err(e) = result {
            let _ = link::delete(std::slice::from_ref(&lease.tap));
            if created {
                leases.release(container_id);
            } else if let Some(l) = leases.leases.get_mut(container_id) {
                l.attached = false;
            }
            let _ = self.store.write_leases(&lock, network, &leases);
            return Err(e);
        }
        Ok(attachment(&config, &lease))
    }

    /// Attaches `container_id` to each of `networks` in order (its `eth0`, `eth1`, …), with
    /// what `endpoints` asks for on each. On a failure the attachments made so far are
    /// detached again (addresses kept) and the error returned.
    pub fn attach_all(
        &self,
        container_id: &str,
        container_name: Option<&str>,
        networks: &[String],
        endpoints: &BTreeMap<String, EndpointConfig>,
    ) -> Result<Vec<Attachment>, NetworkError> {
        let mut out = Vec::new();
        let none = EndpointConfig::default();
        for network in networks {
            let endpoint = endpoints.get(network).unwrap_or(&none);
            match self.attach_endpoint(container_id, container_name, network, endpoint) {
                Ok(a) => out.push(a),
                Err(e) => {
                    if !out.is_empty() {
                        let _ = self.detach(container_id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Removes the taps of `container_id` on every network, keeping its addresses for its next
    /// start. Idempotent. Call when the VM has stopped.
    pub fn detach(&self, container_id: &str) -> Result<(), NetworkError> {
        let lock = self.store.lock()?;
        self.detach_locked(&lock, container_id, false)
    }

    /// Renames `container_id` in its leases, so that its peers resolve it by its new name
    /// (docker's `rename` moves a container's DNS name too).
    pub fn rename_container(&self, container_id: &str, name: &str) -> Result<(), NetworkError> {
        let lock = self.store.lock()?;
        for config in self.store.list_networks(&lock)? {
            let mut leases = self.store.read_leases(&lock, &config.name)?;
            if let Some(lease) = leases.leases.get_mut(container_id) {
                lease.name = Some(name.to_string());
                self.store.write_leases(&lock, &config.name, &leases)?;
            }
        }
        Ok(())
    }

    /// Frees the address of `container_id` on `network` alone (removing its tap if it has one):
    /// a stopped container leaves that network (docker's `network disconnect`).
    pub fn leave(&self, container_id: &str, network: &str) -> Result<(), NetworkError> {
        let lock = self.store.lock()?;
        let config = self.find(&lock, network)?;
        let mut leases = self.store.read_leases(&lock, &config.name)?;
        if let Some(lease) = leases.release(container_id) {
            link::delete(std::slice::from_ref(&lease.tap))?;
            self.store.write_leases(&lock, &config.name, &leases)?;
            self.retire_default_if_idle(&lock, &config, &leases)?;
        }
        Ok(())
    }

    /// Detaches and frees the addresses of `container_id`. Call when the container is deleted.
    pub fn release(&self, container_id: &str) -> Result<(), NetworkError> {
        let lock = self.store.lock()?;
        self.detach_locked(&lock, container_id, true)
    }

    fn detach_locked(
        &self,
        lock: &StoreLock,
        container_id: &str,
        release: bool,
    ) -> Result<(), NetworkError> {
        for config in self.store.list_networks(lock)? {
            let mut leases = self.store.read_leases(lock, &config.name)?;
            let Some(lease) = leases.leases.get_mut(container_id) else {
                continue;
            };
            link::delete(std::slice::from_ref(&lease.tap))?;
            lease.attached = false;
            if release {
                leases.release(container_id);
            }
            self.store.write_leases(lock, &config.name, &leases)?;
            self.retire_default_if_idle(lock, &config, &leases)?;
        }
        Ok(())
    }

    /// The default network's bridge and rules go away with its last attached container.
    fn retire_default_if_idle(
        &self,
        lock: &StoreLock,
        config: &NetworkConfig,
        leases: &crate::ipam::Leases,
    ) -> Result<(), NetworkError> {
        if config.name == DEFAULT_NETWORK && !leases.leases.values().any(|l| l.attached) {
            link::delete(std::slice::from_ref(&config.bridge))?;
            self.sync_firewall(lock)?;
        }
        Ok(())
    }

    /// Binds the DNS responder of `network` on its gateway, port 53, relaying other names to
    /// the host's resolvers. The monitor of each container calls this for each attachment and
    /// runs it ([`DnsResponder::spawn`]) while the container runs.
    pub fn dns_responder(&self, network: &str) -> Result<DnsResponder, NetworkError> {
        let config = {
            let lock = self.store.lock()?;
            self.config(&lock, network)?
        };
        Ok(DnsResponder::bind(
            &self.root,
            network,
            config.gateway,
            53,
            config.internal,
            host_upstreams(),
        )?
        .only_from(config.subnet))
    }

    /// Name of this state root's nf_tables table (family `inet`).
    pub fn firewall_table(&self) -> &str {
        &self.table
    }

    /// This state root's nf_tables table as `nft list` prints it; `None` when it does not exist
    /// (no bridge of ours is up).
    pub fn firewall_rules(&self) -> Result<Option<String>, NetworkError> {
        Ok(firewall::list(&self.table)?)
    }

    /// The attachments `container_id` holds (attached or not), for `inspect`.
    pub fn attachments(&self, container_id: &str) -> Result<Vec<Attachment>, NetworkError> {
        let lock = self.store.lock()?;
        let mut out = Vec::new();
        for config in self.store.list_networks(&lock)? {
            let leases = self.store.read_leases(&lock, &config.name)?;
            if let Some(lease) = leases.leases.get(container_id) {
                out.push(attachment(&config, lease));
            }
        }
        Ok(out)
    }

    /// The named containers sharing a network with `container_id`, with their address on that
    /// network: the lines for its `/etc/hosts` (see [`crate::render_hosts`]).
    pub fn hosts(&self, container_id: &str) -> Result<Vec<HostEntry>, NetworkError> {
        let lock = self.store.lock()?;
        let mut out = Vec::new();
        for config in self.store.list_networks(&lock)? {
            let leases = self.store.read_leases(&lock, &config.name)?;
            if !leases.leases.contains_key(container_id) {
                continue;
            }
            for (id, lease) in &leases.leases {
                if let (false, Some(name)) = (id == container_id, &lease.name) {
                    out.push(HostEntry {
                        name: name.clone(),
                        aliases: lease.aliases.clone(),
                        address: lease.address,
                        address6: lease.address6,
                    });
                }
            }
        }
        Ok(out)
    }

    /// After a crash: removes the taps of containers `is_alive` says are gone (their addresses
    /// are kept, as for a stop), retires an idle default bridge and re-syncs the rules. Returns
    /// the ids of the containers it detached.
    pub fn cleanup_stale(
        &self,
        is_alive: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, NetworkError> {
        let lock = self.store.lock()?;
        let mut detached = Vec::new();
        for config in self.store.list_networks(&lock)? {
            let mut leases = self.store.read_leases(&lock, &config.name)?;
            let mut changed = false;
            for (id, lease) in leases.leases.iter_mut() {
                if lease.attached && !is_alive(id) {
                    link::delete(std::slice::from_ref(&lease.tap))?;
                    lease.attached = false;
                    changed = true;
                    detached.push(id.clone());
                }
            }
            if changed {
                self.store.write_leases(&lock, &config.name, &leases)?;
            }
            self.retire_default_if_idle(&lock, &config, &leases)?;
        }
        self.sync_firewall(&lock)?;
        detached.sort();
        detached.dedup();
        Ok(detached)
    }

    /// After a crash between a container's deletion and the release of its addresses: frees
    /// the leases (and removes the taps) of containers `exists` says are gone for good.
    /// Returns their ids.
    pub fn release_orphans(
        &self,
        exists: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, NetworkError> {
        let lock = self.store.lock()?;
        let mut released = Vec::new();
        for config in self.store.list_networks(&lock)? {
            let mut leases = self.store.read_leases(&lock, &config.name)?;
            let orphans: Vec<String> = leases
                .leases
                .keys()
                .filter(|id| !exists(id))
                .cloned()
                .collect();
            if orphans.is_empty() {
                continue;
            }
            for id in &orphans {
                if let Some(lease) = leases.release(id) {
                    link::delete(std::slice::from_ref(&lease.tap))?;
                }
            }
            self.store.write_leases(&lock, &config.name, &leases)?;
            self.retire_default_if_idle(&lock, &config, &leases)?;
            released.extend(orphans);
        }
        released.sort();
        released.dedup();
        Ok(released)
    }

    /// Removes every kernel object of this state root: all taps (leases are kept, marked
    /// detached), all bridges, and our nf_tables table. Definitions stay; the next attach or
    /// create re-makes what it needs.
    pub fn teardown(&self) -> Result<(), NetworkError> {
        let lock = self.store.lock()?;
        let mut names = Vec::new();
        for config in self.store.list_networks(&lock)? {
            let mut leases = self.store.read_leases(&lock, &config.name)?;
            for lease in leases.leases.values_mut() {
                names.push(lease.tap.clone());
                lease.attached = false;
            }
            self.store.write_leases(&lock, &config.name, &leases)?;
            names.push(config.bridge);
        }
        link::delete(&names)?;
        firewall::apply(&self.table, &[])?;
        Ok(())
    }
}

fn attachment(config: &NetworkConfig, lease: &Lease) -> Attachment {
    // The gateway runs our DNS responder (see `dns`), which knows the containers' names and
    // relays the rest to the host's resolvers.
    let dns = vec![config.gateway];
    Attachment {
        network: config.name.clone(),
        network_id: config.id.clone(),
        tap: lease.tap.clone(),
        mac: lease.mac.clone(),
        address: Ipv4Net::new(lease.address, config.subnet.prefix_len()).unwrap_or_default(),
        gateway: config.gateway,
        address6: with_prefix6(config, lease.address6),
        gateway6: config.gateway6.filter(|_| lease.address6.is_some()),
        // Only ever lower than the network's: the tap and the bridge keep the network's.
        mtu: lease.mtu.map_or(config.mtu, |m| m.min(config.mtu)),
        dns,
    }
}

/// `address` with the prefix length of `config`'s IPv6 subnet.
fn with_prefix6(config: &NetworkConfig, address: Option<Ipv6Addr>) -> Option<Ipv6Net> {
    Ipv6Net::new(address?, config.subnet6?.prefix_len()).ok()
}

/// Whether two subnets of one family share an address.
fn overlaps<N: Into<ipnet::IpNet>>(a: N, b: N) -> bool {
    let (a, b): (ipnet::IpNet, ipnet::IpNet) = (a.into(), b.into());
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_flags() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            NetworkMode::from_flags(&[]).unwrap(),
            NetworkMode::Networks(v(&["default"]))
        );
        assert_eq!(
            NetworkMode::from_flags(&v(&["none"])).unwrap(),
            NetworkMode::None
        );
        assert_eq!(
            NetworkMode::from_flags(&v(&["a", "b"])).unwrap(),
            NetworkMode::Networks(v(&["a", "b"]))
        );
        assert!(NetworkMode::from_flags(&v(&["none", "a"])).is_err());
        assert!(NetworkMode::from_flags(&v(&["a", "a"])).is_err());
        assert!(NetworkMode::from_flags(&v(&["a/b"])).is_err());
    }

    #[test]
    fn overlap_rule() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(overlaps(n("10.0.0.0/16"), n("10.0.5.0/24")));
        assert!(overlaps(n("10.0.5.0/24"), n("10.0.0.0/16")));
        assert!(!overlaps(n("10.0.5.0/24"), n("10.0.6.0/24")));
        let n6 = |s: &str| s.parse::<Ipv6Net>().unwrap();
        assert!(overlaps(n6("fd00:1::/64"), n6("fd00:1:0:0:8000::/65")));
        assert!(!overlaps(n6("fd00:1::/64"), n6("fd00:2::/64")));
    }
}
