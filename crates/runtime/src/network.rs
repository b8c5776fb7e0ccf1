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
