//! The real backends: the guest agent over the `agent` crate ([`agent`]) and QEMU VMs from the
//! `vmm` crate ([`qemu`]).

pub mod agent;
mod pod;
pub mod pool;
pub mod qemu;
pub mod template;
pub mod virtiofs;
mod vm;

pub use self::agent::AgentGuest;
pub use self::qemu::QemuBackend;
