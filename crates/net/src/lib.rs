//! Host networking for containers: one Linux bridge per network, one tap device per container
//! attachment, persistent address allocation, egress NAT and isolation in our own nf_tables
//! table, published ports through a userspace proxy, and the name map for `/etc/hosts`.
//!
//! A container's monitor uses [`ContainerNetwork`]: `prepare` before QEMU starts (published
//! ports bound, addresses allocated, taps made), `start` once the guest is configured (port
//! relays, DNS responder on each gateway), `stop` after the VM exited (taps removed, addresses
//! kept). [`Networks`] holds the lower-level operations and the `network` commands; the runtime
//! calls [`Networks::release`] when a container is deleted and [`Networks::cleanup_stale`]
//! after a crash.
//!
//! Everything here works in the network namespace of the calling thread, which is what lets the
//! tests run it inside namespaces they create.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

mod config;
pub mod dns;
mod firewall;
mod hosts;
mod ipam;
mod link;
mod networks;
pub mod podnet;
pub mod ports;
mod session;
mod store;
mod tap;

pub use config::{
    validate_alias, validate_mac, EndpointConfig, NetworkConfig, NetworkSpec, BRIDGE_PREFIX,
    DEFAULT_NETWORK, DEFAULT_SUBNET, DEFAULT_SUBNET_ENV, TAP_PREFIX,
};
pub use firewall::{FirewallError, TABLE_FAMILY, TABLE_PREFIX};
pub use hosts::{render_hosts, render_resolv_conf, HostEntry};
pub use ipam::IpamError;
pub use link::{delete as delete_links, list as links, LinkError, LinkInfo};
pub use networks::{Attachment, ContainerEntry, NetworkError, NetworkInfo, NetworkMode, Networks};
pub use session::{ContainerNetwork, PreparedNetwork, RunningNetwork, SessionError};
pub use store::StoreError;
pub use tap::{ScratchTap, TapError};

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
