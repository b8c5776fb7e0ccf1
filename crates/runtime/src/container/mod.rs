//! Container operations, one file per verb: [`create()`], [`start()`], [`stop()`]/[`kill()`],
//! [`delete()`]. Attach and exec sessions are in [`crate::client`].

mod create;
mod delete;
mod start;
mod stop;
mod update;

pub use create::{create, CreateRequest};
pub use delete::delete;
pub use start::{start, start_for_copy, MonitorCommand};
pub use stop::{kill, stop};
pub use update::{update, LimitsChange};

use crate::state::Status;

/// Errors of container operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The process could not be made from image and flags.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// A name-resolution flag is invalid.
    #[error(transparent)]
    Netconf(#[from] crate::netconf::NetconfError),
    /// Talking to the monitor failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// A resource flag is invalid.
    #[error(transparent)]
    Resources(#[from] crate::resources::ResourceError),
    /// A running container's new limits do not fit the VM it runs in.
    #[error(
        "cannot update container {name}: {what} does not fit its running VM ({have}); \
         stop it, update, and start it again"
    )]
    VmTooSmall {
        /// Container name.
        name: String,
        /// The limit asked for.
        what: String,
        /// The VM's size.
        have: String,
    },
    /// The operation does not fit the container's state.
    #[error("cannot {op} container {name}: it is {status}{hint}")]
    WrongState {
        /// The operation.
        op: &'static str,
        /// Container name.
        name: String,
        /// Its status.
        status: Status,
        /// Advice, starting with "; " or empty.
        hint: &'static str,
    },
    /// The monitor process could not be spawned.
    #[error("spawn monitor {program}")]
    SpawnMonitor {
        /// The executable.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
