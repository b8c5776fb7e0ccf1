//! The monitor's faults: everything that can go wrong while it runs a container or serves a
//! client, other than the container's process ending on its own. A fault is recorded as the
//! container's exit reason (state.json) or answered in an `Error`/`Exit` frame, never lost as
//! a log line only. Its [`ErrorCode`] ([`Fault::code`]) is the guest's when a guest call
//! failed, so a command that is missing reaches the user as 127 through [`crate::exit`].

use std::path::PathBuf;

use agent::ErrorCode;

use crate::backend::{BootError, GuestError};
use crate::protocol::ExitInfo;

/// A fault of the runtime while a monitor runs or serves a container; variants are named after
/// the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// Loading the container's record failed.
    #[error("load the container's state")]
    LoadState(#[source] crate::state::StateError),
    /// A volume could not be opened or is held by another running container.
    #[error("claim the container's volumes")]
    ClaimVolumes(#[source] crate::volume::VolumeError),
    /// The copy-on-write root disk could not be made.
    #[error("create the root disk {path}")]
    CreateOverlay {
        /// The overlay that was to be created.
        path: PathBuf,
        /// What the backend reported.
        #[source]
        source: BootError,
    },
    /// A pod member's filesystems could not be put in its pod's share.
    #[error("attach to the pod")]
    PodDisks(#[source] crate::pod::PodError),
    /// The network namespace given to the container could not be handed to its VM.
    #[error("take over the network namespace")]
    PodNetwork(#[source] net::podnet::PodNetError),
    /// A pod's share or shared agent socket could not be set up.
    #[error("share the pod's VM: {0}")]
    PodShare(String),
    /// Ports could not be bound or the networks not attached.
    #[error("network")]
    PrepareNetwork(#[source] net::SessionError),
    /// The port relays or DNS responders could not be started.
    #[error("network")]
    StartNetwork(#[source] net::SessionError),
    /// The VM did not boot or its agent never answered.
    #[error("boot the VM")]
    Boot(#[source] BootError),
    /// Hostname, interfaces, DNS or hosts could not be set in the guest.
    #[error("configure the guest")]
    Configure(#[source] GuestError),
    /// The root filesystem could not be mounted in the guest.
    #[error("mount the root filesystem")]
    MountRootfs(#[source] GuestError),
    /// A volume or share could not be mounted in the guest.
    #[error("mount the container's volumes")]
    MountVolumes(#[source] GuestError),
    /// The main process could not be created or started (its code says whether the command
    /// is missing or not executable).
    #[error("start the container's process")]
    StartProcess(#[source] GuestError),
    /// The relays of socket binds or published sockets could not start.
    #[error("relay the container's unix sockets")]
    Sockets(#[source] GuestError),
    /// Hold mode: the container could not be created for copies.
    #[error("create the container for copies")]
    HoldContainer(#[source] GuestError),
    /// The container's log file could not be opened.
    #[error("open the container log {path}")]
    OpenLog {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The wait for the main process failed while the VM still ran.
    #[error("wait for the container's process")]
    WaitProcess(#[source] GuestError),
    /// The VM ended before the container's process did.
    #[error("the VM exited unexpectedly: {0}")]
    VmExited(String),
    /// Hold mode: no copy came before the hold timed out.
    #[error("no copy came within {0} seconds")]
    NoCopy(u64),
    /// A request that needs the running container came while it does not run.
    #[error("cannot {op}: container is not running")]
    NotRunning {
        /// The operation asked for.
        op: &'static str,
    },
    /// The container could not start; a copy reports why.
    #[error("{0}")]
    NotStarted(String),
    /// The monitor ended before the process's status was known.
    #[error("the monitor ended before the container's process")]
    MonitorEnded,
    /// Signalling the main process failed.
    #[error("send the signal")]
    Kill(#[source] GuestError),
    /// Reading the container's resource counters failed.
    #[error("container statistics")]
    Stats(#[source] GuestError),
    /// Changing the container's cgroup limits failed.
    #[error("update the container's resource limits")]
    Update(#[source] GuestError),
    /// An exec process could not be started.
    #[error("start the exec process")]
    Exec(#[source] GuestError),
    /// The wait for an exec process failed.
    #[error("wait for the exec process")]
    WaitExec(#[source] GuestError),
    /// The source of a copy-out does not exist (docker's wording).
    #[error("Could not find the file {path} in container {container}")]
    CopySourceMissing {
        /// The path in the container.
        path: String,
        /// The container's name.
        container: String,
    },
    /// The guest refused to start a copy; its message is the whole story ("cannot copy to
    /// /ro: Read-only file system").
    #[error("{message}")]
    CopyRefused {
        /// The guest's category.
        code: ErrorCode,
        /// The guest's message.
        message: String,
    },
    /// Starting or finishing a copy failed on the agent connection.
    #[error("copy")]
    Copy(#[source] GuestError),
    /// The copy helper failed and said why on its stderr.
    #[error("{0}")]
    CopyFailed(String),
    /// The copy helper failed without a word.
    #[error("copy failed in the guest (status {0})")]
    CopyStatus(i32),
    /// A request that needs the guest came while the VM is frozen (docker's wording for
    /// exec: "Container NAME is paused, unpause the container before exec").
    #[error("container {name} is paused, unpause the container before {op}")]
    Paused {
        /// The container's name.
        name: String,
        /// The operation asked for.
        op: &'static str,
    },
    /// `pause` of a paused container (docker's wording).
    #[error("container {0} is already paused")]
    AlreadyPaused(String),
    /// `unpause` of a container that is not paused (docker's wording).
    #[error("container {0} is not paused")]
    NotPaused(String),
    /// Freezing or thawing the VM failed.
    #[error(transparent)]
    Freeze(crate::backend::ControlError),
    /// Listing the container's processes failed.
    #[error("list the container's processes")]
    Top(#[source] GuestError),
}

impl Fault {
    /// The stable category: the guest's for a failed guest call, one of ours otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            Fault::Configure(e)
            | Fault::MountRootfs(e)
            | Fault::MountVolumes(e)
            | Fault::StartProcess(e)
            | Fault::Sockets(e)
            | Fault::HoldContainer(e)
            | Fault::WaitProcess(e)
            | Fault::Kill(e)
            | Fault::Stats(e)
            | Fault::Update(e)
            | Fault::Exec(e)
            | Fault::Top(e)
            | Fault::WaitExec(e)
            | Fault::Copy(e) => e.code(),
            Fault::CopyRefused { code, .. } => *code,
            Fault::CopySourceMissing { .. } => ErrorCode::NotFound,
            Fault::NotRunning { .. }
            | Fault::Paused { .. }
            | Fault::AlreadyPaused(_)
            | Fault::NotPaused(_) => ErrorCode::WrongState,
            Fault::ClaimVolumes(crate::volume::VolumeError::InUse(_)) => ErrorCode::WrongState,
            Fault::LoadState(_)
            | Fault::ClaimVolumes(_)
            | Fault::CreateOverlay { .. }
            | Fault::PodDisks(_)
            | Fault::PodNetwork(_)
            | Fault::PodShare(_)
            | Fault::PrepareNetwork(_)
            | Fault::StartNetwork(_)
            | Fault::OpenLog { .. }
            | Fault::CopyFailed(_)
            | Fault::CopyStatus(_) => ErrorCode::Io,
            Fault::Boot(_)
            | Fault::Freeze(_)
            | Fault::VmExited(_)
            | Fault::NoCopy(_)
            | Fault::NotStarted(_)
            | Fault::MonitorEnded => ErrorCode::Internal,
        }
    }

    /// The fault as the monitor reports it: exit code from [`crate::exit`], the whole chain
    /// on one line as the reason.
    pub fn exit_info(&self) -> ExitInfo {
        ExitInfo::failed(self.code(), crate::error_line(self))
    }
}

impl From<Fault> for ExitInfo {
    fn from(f: Fault) -> Self {
        f.exit_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_command_stays_127_through_the_monitor() {
        let missing = GuestError::remote(
            "create_process",
            ErrorCode::ExecutableNotFound,
            "exec nosuch: not found",
        );
        let info = Fault::StartProcess(missing).exit_info();
        assert_eq!(info.code, 127);
        assert_eq!(info.error, Some(ErrorCode::ExecutableNotFound));
        assert_eq!(
            info.reason.as_deref(),
            Some("start the container's process: guest create_process failed: exec nosuch: not found")
        );
        let noexec = GuestError::remote("create_process", ErrorCode::NotExecutable, "x");
        assert_eq!(Fault::Exec(noexec).exit_info().code, 126);
    }

    #[test]
    fn faults_of_the_runtime_are_125() {
        for f in [
            Fault::VmExited("killed by signal 9".into()),
            Fault::NotRunning { op: "exec" },
            Fault::NoCopy(60),
            Fault::Kill(GuestError::NoProcess("main".into())),
        ] {
            let info = f.exit_info();
            assert_eq!(info.code, 125, "{f}");
            assert_eq!(info.reason, Some(crate::error_line(&f)));
        }
    }
}
