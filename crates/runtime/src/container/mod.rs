//! Containers through one type, [`Container`], reached from a [`Runtime`](crate::Runtime):
//! one file per verb ([`create`](crate::Runtime::create) with [`prepare`], `start`, `stop`/`kill`,
//! `restart`, `exec`, `update`, `copy`, `delete`, `inspect`), every verb checked against the
//! container's state by one table ([`Verb::accepts`]). The CLI, the Engine API server, the
//! containerd shim and the builder all go through these methods. Attach and exec sessions relay
//! through [`crate::client`].

mod connect;
mod copy;
mod create;
mod delete;
mod exec;
mod export;
mod inspect;
mod mounts;
mod pause;
mod prepare;
mod prune;
mod rename;
mod restart;
mod restart_policy;
mod start;
pub(crate) use start::spawn_detached;
mod stop;
mod update;
mod wait;

pub use agent::PathStat;
pub use copy::{CopyOptions, HostPath};
pub(crate) use create::create_record;
pub use create::CreateRequest;
pub use inspect::Summary;
pub use mounts::{parse_mount, parse_tmpfs, parse_volume, MountError, VolumesFrom};
pub use prepare::{prepare, ContainerOptions, NetworkFlags, PortSpec, PortSpecs, Protocol};
pub use prune::{PruneReport, PruneUntil};
pub use start::MonitorCommand;
pub use stop::StopOptions;
pub use update::LimitsChange;
pub use wait::WaitCondition;

use crate::state::{ContainerRecord, Status};
use crate::Runtime;

/// Errors of container operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A pod cannot be made or joined, or a member's flag belongs to its pod.
    #[error(transparent)]
    Pod(#[from] crate::pod::PodError),
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
    /// A mount flag is invalid, or a volume cannot be made.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A network flag is invalid or names a missing network.
    #[error(transparent)]
    Network(#[from] net::NetworkError),
    /// The image cannot be found, pulled or turned into a rootfs.
    #[error(transparent)]
    Image(Box<crate::image::ImageError>),
    /// The volume store cannot be opened.
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// A copy between the host and the container failed.
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    /// A root filesystem directory that is not a directory.
    #[error("root filesystem {}: no such directory", .0.display())]
    RootfsDir(std::path::PathBuf),
    /// A root filesystem image that is not a file.
    #[error("root filesystem image {}: no such file", .0.display())]
    RootfsImage(std::path::PathBuf),
    /// A `--publish-socket` that cannot be made.
    #[error("{0}")]
    PublishSocket(String),
    /// `--kernel` names no file.
    #[error("kernel {}: no such file", .0.display())]
    Kernel(std::path::PathBuf),
    /// `--restart` does not fit the container (`--rm`).
    #[error(transparent)]
    RestartPolicy(#[from] crate::restart::RestartPolicyError),
    /// A `--health-*` flag is invalid.
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
    /// A `--log-driver` or `--log-opt` that cannot be honoured.
    #[error(transparent)]
    LogConfig(#[from] crate::logs::LogConfigError),
    /// A `--sysctl` docker does not allow.
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
    /// `-p` with `--network none`.
    #[error("cannot publish ports of a container without a network (--network none)")]
    PublishWithoutNetwork,
    /// A container's settings on a network (aliases, address), or a connect or disconnect,
    /// that do not fit its networks.
    #[error("{0}")]
    Endpoint(String),
    /// `--init-image` names nothing bootable.
    #[error("init image {0}: {1}")]
    InitImage(String, String),
    /// `connect`/`disconnect` of a running container: its VM's network devices are fixed at
    /// boot (a QEMU microvm has no hot-plug).
    #[error(
        "cannot {verb} container {name} {preposition} network {network} while it runs: its VM \
         cannot add or remove network interfaces; stop it first",
        preposition = if *.verb == "connect" { "to" } else { "from" }
    )]
    NetworkWhileRunning {
        /// `connect` or `disconnect`.
        verb: &'static str,
        /// Container name.
        name: String,
        /// Network name.
        network: String,
    },
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
    /// The verb cannot reach a frozen VM (`unpause` first).
    #[error("cannot {} container {name}: it is paused; unpause it first", .verb.phrase())]
    Paused {
        /// What was asked.
        verb: Verb,
        /// Container name.
        name: String,
    },
    /// `rename` to an unusable name (docker's wording).
    #[error("{0}")]
    Rename(String),
    /// `top` with `ps` options this runtime does not have.
    #[error(transparent)]
    Top(#[from] crate::top::TopError),
    /// `prune --filter` with a filter it does not take.
    #[error("{0}")]
    PruneFilter(String),
    /// The verb does not fit the container's state.
    #[error("cannot {} container {name}: it is {}{}", .verb.phrase(), .verb.refusal(*.status), .verb.hint())]
    WrongState {
        /// What was asked.
        verb: Verb,
        /// Container name.
        name: String,
        /// Its status.
        status: Status,
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

impl From<crate::image::ImageError> for ContainerError {
    fn from(e: crate::image::ImageError) -> Self {
        // Boxed: a pull error is large, and every container verb returns this type.
        ContainerError::Image(Box::new(e))
    }
}

/// What can be asked of a container; [`Verb::accepts`] is its state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Boot its VM and run its process.
    Start,
    /// Send its main process a signal.
    Kill,
    /// Run another process in it.
    Exec,
    /// Attach to its main process's stdio.
    Attach,
    /// Read its live resource usage.
    Stats,
    /// Remove it (a running one only when forced).
    Delete,
    /// Freeze its VM.
    Pause,
    /// Thaw its VM.
    Unpause,
    /// List its processes.
    Top,
}

impl Verb {
    /// Whether a container in `status` accepts this verb. `live` says a monitor process still
    /// owns it (a created or exited container whose monitor is starting or tearing down).
    pub fn accepts(self, status: Status, live: bool) -> bool {
        let running = status.is_up() || live;
        match self {
            Verb::Start | Verb::Delete => !running,
            // A kill between two runs ends the restarts, as docker's does.
            Verb::Kill => status.is_up(),
            Verb::Exec | Verb::Attach | Verb::Stats | Verb::Pause | Verb::Unpause | Verb::Top => {
                status == Status::Running
            }
        }
    }

    /// How the verb reads in "cannot … container NAME".
    fn phrase(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Kill => "kill",
            Verb::Exec => "exec in",
            Verb::Attach => "attach to",
            Verb::Stats => "get statistics of",
            Verb::Delete => "delete",
            Verb::Pause => "pause",
            Verb::Unpause => "unpause",
            Verb::Top => "list the processes of",
        }
    }

    /// Why a container in `status` refused it.
    fn refusal(self, status: Status) -> String {
        match self {
            Verb::Start | Verb::Delete if status == Status::Restarting => status.to_string(),
            Verb::Start | Verb::Delete => Status::Running.to_string(),
            _ => format!("not running ({status})"),
        }
    }

    /// Advice after the refusal.
    fn hint(self) -> &'static str {
        match self {
            Verb::Delete => "; stop it first or use --force",
            _ => "",
        }
    }
}

/// One container of a [`Runtime`], as its state was when it was looked up (every verb
/// reconciles it again with its monitor first).
#[derive(Debug, Clone)]
pub struct Container {
    rt: Runtime,
    record: ContainerRecord,
}

impl Container {
    pub(crate) fn new(rt: Runtime, record: ContainerRecord) -> Container {
        Container { rt, record }
    }

    /// The runtime it belongs to.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Its record: id, name, image, status, config, exit, networks, ports.
    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    /// The full id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The status when it was looked up.
    pub fn status(&self) -> Status {
        self.record.status
    }

    /// Reads the record again (reconciled with its monitor).
    pub fn refresh(&mut self) -> Result<(), ContainerError> {
        let store = self.rt.store();
        self.record = store.reconcile(store.load(&self.record.id)?)?;
        Ok(())
    }

    /// Refuses `verb` unless the container's current state accepts it.
    fn check(&self, verb: Verb) -> Result<(), ContainerError> {
        let r = &self.record;
        // docker refuses exec, attach and top on a paused container (its CLI: "You cannot
        // attach to a paused container, unpause it first"); here the agent could not answer.
        if r.paused && matches!(verb, Verb::Exec | Verb::Attach | Verb::Top) {
            return Err(ContainerError::Paused {
                verb,
                name: r.name.clone(),
            });
        }
        if verb.accepts(r.status, r.monitor_pid.is_some()) {
            return Ok(());
        }
        Err(ContainerError::WrongState {
            verb,
            name: r.name.clone(),
            status: r.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_refuses_wrong_transitions() {
        use Status::*;
        assert!(Verb::Start.accepts(Created, false) && Verb::Start.accepts(Exited, false));
        assert!(!Verb::Start.accepts(Running, true) && !Verb::Start.accepts(Exited, true));
        assert!(Verb::Exec.accepts(Running, true) && !Verb::Exec.accepts(Exited, false));
        assert!(!Verb::Kill.accepts(Created, false) && !Verb::Attach.accepts(Created, true));
        assert!(Verb::Delete.accepts(Exited, false) && !Verb::Delete.accepts(Running, true));
        assert!(!Verb::Start.accepts(Restarting, true) && !Verb::Delete.accepts(Restarting, true));
        assert!(Verb::Kill.accepts(Restarting, true) && !Verb::Exec.accepts(Restarting, true));
        let e = ContainerError::WrongState {
            verb: Verb::Exec,
            name: "web".into(),
            status: Exited,
        };
        assert_eq!(
            e.to_string(),
            "cannot exec in container web: it is not running (exited)"
        );
        let e = ContainerError::WrongState {
            verb: Verb::Delete,
            name: "web".into(),
            status: Running,
        };
        assert_eq!(
            e.to_string(),
            "cannot delete container web: it is running; stop it first or use --force"
        );
    }
}
