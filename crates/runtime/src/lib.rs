//! Containers on the host: lifecycle, on-disk state, the per-container monitor process, the
//! image → rootfs cache and the per-container copy-on-write disk.
//!
//! There is no daemon. `create` writes a record under `<root>/containers/<id>/`; `start` spawns
//! a detached monitor process (the `container` binary re-executed with
//! [`MONITOR_SUBCOMMAND`]) that boots the VM and runs the process; every other command talks to
//! that monitor over its unix socket ([`protocol`]) or reads state.json ([`state`]).
//!
//! The VM and the guest agent sit behind the traits in [`backend`]; the monitor logic is tested
//! with fakes, and [`real`] wires in QEMU (`vmm`) and the agent client (`agent`).

#![warn(clippy::unwrap_used)]

pub mod backend;
pub mod cleanup;
pub mod client;
pub mod container;
pub mod devices;
pub mod docker;
pub mod events;
pub mod exit;
pub mod filter;
pub mod health;
pub mod image;
pub mod image_history;
pub mod images;
pub mod labels;
pub mod logs;
pub mod monitor;
pub mod netconf;
pub mod network;
pub mod outcome;
pub mod pace;
pub mod pod;
pub mod properties;
pub mod protocol;
pub mod real;
pub mod resources;
pub mod restart;
pub mod rootfs;
pub mod size;
pub mod snapshot;
pub mod sockets;
pub mod spec;
pub mod state;
pub mod stats;
pub mod sysctl;
pub mod system;
pub mod top;
pub mod ulimit;
pub mod vminitd;
pub mod volume;
pub mod volumes;

mod handle;

pub use container::{Container, ContainerError, ContainerOptions, Verb};
pub use handle::Runtime;

/// Exit code for faults of the runtime itself (docker's); see [`exit`] for the whole mapping.
pub use exit::RUNTIME_FAULT as EXIT_RUNTIME_FAULT;

/// The hidden CLI subcommand that runs a monitor; also how a monitor is recognised in /proc.
pub const MONITOR_SUBCOMMAND: &str = "__monitor";

/// The hidden CLI subcommand of a pool process: a pre-booted VM waiting to become a
/// container's monitor ([`real::pool`]). It contains [`MONITOR_SUBCOMMAND`], by which a
/// claimed one is recognised as its container's monitor.
pub const POOL_SUBCOMMAND: &str = "__monitor-pool";

/// An error and its sources on one line.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out
}
