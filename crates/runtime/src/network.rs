//! Networks of a [`Runtime`]: the `net` crate's store of bridges, addresses and rules, reached
//! through the runtime so that front ends depend on one crate.

pub use net::{
    validate_mac, EndpointConfig, IpNet, Ipv4Net, Ipv6Net, NetworkConfig, NetworkError,
    NetworkInfo, NetworkSpec, Networks, DEFAULT_NETWORK,
};

use crate::Runtime;

impl Runtime {
    /// The networks of this state directory.
    pub fn networks(&self) -> Result<Networks, NetworkError> {
        Networks::open(self.root())
    }

    /// Creates a network (its bridge and rules) and records its `create` event.
    pub fn network_create(&self, spec: &NetworkSpec) -> Result<NetworkConfig, NetworkError> {
        let config = self.networks()?.create(spec)?;
        network_event(self.root(), "create", &config, None);
        Ok(config)
    }

    /// Deletes network `key` (name, id or unique id prefix; refused while in use) and records
    /// its `destroy` event; returns its name.
    pub fn network_delete(&self, key: &str) -> Result<String, NetworkError> {
        let nets = self.networks()?;
        let config = nets.resolve(key)?;
        // A created container has no address yet, but its start would need the network.
        let users = self.containers_on(&config.name);
        if !users.is_empty() {
            return Err(NetworkError::InUse {
                name: config.name.clone(),
                containers: users.join(", "),
            });
        }
        nets.delete(&config.name)?;
        network_event(self.root(), "destroy", &config, None);
        Ok(config.name)
    }

    /// Deletes every network `filters` selects that no container has a place on, the default
    /// network excepted (it is built in, as docker's `bridge`); returns their names. One that
    /// a container joined meanwhile stays.
    pub fn network_prune(
        &self,
        filters: &crate::filter::Filters,
    ) -> Result<Vec<String>, NetworkError> {
        let nets = self.networks()?;
        let mut pruned = Vec::new();
        for n in nets.list()? {
            let unused = n.containers.is_empty()
                && n.config.name != net::DEFAULT_NETWORK
                && self.containers_on(&n.config.name).is_empty();
            if unused && filters.matches_network(&n) {
                match nets.delete(&n.config.name) {
                    Ok(()) => {
                        network_event(self.root(), "destroy", &n.config, None);
                        pruned.push(n.config.name)
                    }
                    Err(NetworkError::InUse { .. } | NetworkError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pruned)
    }
}

impl Runtime {
    /// The names of the containers whose configuration names network `name`, started or not.
    fn containers_on(&self, name: &str) -> Vec<String> {
        self.store()
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.config.networks.iter().any(|n| n == name))
            .map(|r| r.name)
            .collect()
    }
}

/// Records a network event as docker gives it: the network's id, its name and type, and for
/// `connect`/`disconnect` the container's id.
pub(crate) fn network_event(
    root: &std::path::Path,
    action: &str,
    config: &NetworkConfig,
    container: Option<&str>,
) {
    let mut e = crate::events::Event::new(crate::events::Kind::Network, action, &config.id)
        .with("name", &config.name)
        .with("type", "bridge");
    if let Some(c) = container {
        e = e.with("container", c);
    }
    crate::events::Journal::new(root).record(&e);
}

/// The guest's one interface on QEMU's user-mode network (10.0.2.15 behind QEMU's NAT, the
/// host's loopback at 10.0.2.2): the rootless default network, and a builder VM's network.
pub fn user_mode_attachment() -> net::Attachment {
    crate::monitor::network::user_attachment()
}
