//! Networks of a [`Runtime`]: the `net` crate's store of bridges, addresses and rules, reached
//! through the runtime so that front ends depend on one crate.

pub use net::{Ipv4Net, NetworkConfig, NetworkError, NetworkInfo, NetworkSpec, Networks};

use crate::Runtime;

impl Runtime {
    /// The networks of this state directory.
    pub fn networks(&self) -> Result<Networks, NetworkError> {
        Networks::open(self.root())
    }
}

/// The guest's one interface on QEMU's user-mode network (10.0.2.15 behind QEMU's NAT, the
/// host's loopback at 10.0.2.2): the rootless default network, and a builder VM's network.
pub fn user_mode_attachment() -> net::Attachment {
    crate::monitor::network::user_attachment()
}
