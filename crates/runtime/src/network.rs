//! Networks of a [`Runtime`]: the `net` crate's store of bridges, addresses and rules, reached
//! through the runtime so that front ends depend on one crate.

pub use net::{
    EndpointConfig, Ipv4Net, NetworkConfig, NetworkError, NetworkInfo, NetworkSpec, Networks,
    DEFAULT_NETWORK,
};

use crate::Runtime;

impl Runtime {
    /// The networks of this state directory.
    pub fn networks(&self) -> Result<Networks, NetworkError> {
        Networks::open(self.root())
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
            let unused = n.containers.is_empty() && n.config.name != net::DEFAULT_NETWORK;
            if unused && filters.matches_network(&n) {
                match nets.delete(&n.config.name) {
                    Ok(()) => pruned.push(n.config.name),
                    Err(NetworkError::InUse { .. } | NetworkError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pruned)
    }
}

/// The guest's one interface on QEMU's user-mode network (10.0.2.15 behind QEMU's NAT, the
/// host's loopback at 10.0.2.2): the rootless default network, and a builder VM's network.
pub fn user_mode_attachment() -> net::Attachment {
    crate::monitor::network::user_attachment()
}
