//! The two seams between the container lifecycle and the machinery below it: the VM backend
//! (boots a VM and hands back its agent connection) and the guest agent (processes inside it).
//!
//! The monitor's logic is written against these traits only, so it is tested with the fakes in
//! `monitor::tests`; the real implementations (QEMU from the `vmm` crate, the `agent` client)
//! live in [`crate::real`].

use std::path::PathBuf;
use std::sync::Arc;

use agent::ErrorCode;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::exit::Termination;

use crate::resources::ResourceLimits;
use crate::spec::ProcessSpec;
use crate::state::VmOptions;
use crate::stats::Sample;

/// Errors of calls to the guest. Each has an [`ErrorCode`] ([`GuestError::code`]): the guest's
/// own for an error it answered, one chosen here for a failure on the host's side; the code
/// is what [`crate::exit`] turns into 127/126/125.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest answered the call with an error.
    #[error("guest {call} failed: {message}")]
    Remote {
        /// The agent call that failed.
        call: &'static str,
        /// The guest's stable category.
        code: ErrorCode,
        /// The guest's one line: what failed, with what input.
        message: String,
    },
    /// The agent connection failed, closed, or speaks another protocol version.
    #[error(transparent)]
    Agent(agent::ClientError),
    /// The host knows no process with this id in the guest.
    #[error("no such process {0} in the guest")]
    NoProcess(String),
    /// This guest cannot do what was asked (the operation is named).
    #[error("this guest cannot {0}")]
    Unsupported(&'static str),
    /// The request was refused on the host before it reached the guest.
    #[error("{0}")]
    InvalidArgument(String),
}

impl GuestError {
    /// An error the guest answered with.
    pub fn remote(call: &'static str, code: ErrorCode, message: impl Into<String>) -> Self {
        GuestError::Remote {
            call,
            code,
            message: message.into(),
        }
    }

    /// The stable category of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            GuestError::Remote { code, .. } => *code,
            GuestError::Agent(agent::ClientError::Version { .. }) => ErrorCode::ProtocolVersion,
            GuestError::Agent(agent::ClientError::UnexpectedReply { .. }) => ErrorCode::Internal,
            GuestError::Agent(e) => e.code().unwrap_or(ErrorCode::Io),
            GuestError::NoProcess(_) => ErrorCode::NotFound,
            GuestError::Unsupported(_) => ErrorCode::Unsupported,
            GuestError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        }
    }
}

impl From<agent::ClientError> for GuestError {
    /// The one place agent client errors become guest errors: a guest's answer keeps its code
    /// and message, anything else is a failure of the connection.
    fn from(e: agent::ClientError) -> Self {
        match e {
            agent::ClientError::Remote {
                call,
                code,
                message,
                ..
            } => GuestError::Remote {
                call,
                code,
                message,
            },
            other => GuestError::Agent(other),
        }
    }
}

/// How a guest process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    /// exit(code).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ProcessExit {
    /// How the process terminated, for [`crate::exit`].
    pub fn termination(self) -> Termination {
        match self {
            ProcessExit::Code(c) => Termination::Exited(c),
            ProcessExit::Signal(s) => Termination::Signaled(s),
        }
    }

    /// The exit code the user sees ([`crate::exit::exit_code`]): the code, or 128+n for
    /// signal n.
    pub fn code(self) -> i32 {
        crate::exit::exit_code(self.termination())
    }
}

/// Output of a started process; each receiver ends when its stream reaches EOF. With a
/// terminal, everything arrives on `stdout`.
#[derive(Debug)]
pub struct ProcessOutput {
    /// Standard output (or the pty).
    pub stdout: mpsc::Receiver<Bytes>,
    /// Standard error.
    pub stderr: mpsc::Receiver<Bytes>,
}

/// Kernel settings of a container that the guest applies inside its namespaces when it creates
/// it (`--sysctl`, `--shm-size`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerTuning {
    /// sysctls by key (checked against docker's list at create).
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// Size of its `/dev/shm` in bytes (`--shm-size`); None: docker's 64 MiB.
    pub shm_size: Option<u64>,
    /// `--cgroupns host`: the guest's cgroup namespace instead of its own.
    pub cgroupns_host: bool,
    /// `--device` nodes to make in its `/dev`.
    pub devices: Vec<crate::devices::DeviceMapping>,
    /// `--masked-path`: more paths hidden.
    pub masked_paths: Vec<String>,
    /// `--read-only-path`: more paths read-only.
    pub readonly_paths: Vec<String>,
}

/// A filesystem mount in the guest, as mount(8) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMount {
    /// Device, `tmpfs`, or a guest path for `bind`.
    pub source: String,
    /// Absolute target path (in the VM, or in the container for container mounts).
    pub target: String,
    /// `ext4`, `tmpfs`, `bind`, ...
    pub fstype: String,
    /// mount(8) options.
    pub options: Vec<String>,
}

/// The agent inside a running VM. Methods take `&self`: the monitor drives several processes
/// at once, so implementations synchronise internally.
#[async_trait]
pub trait Guest: Send + Sync {
    /// Sets the hostname of the guest, brings up its network interfaces and sets the
    /// resolv.conf and hosts entries containers in it get.
    async fn configure(&self, hostname: &str, network: &GuestNetwork) -> Result<(), GuestError>;
    /// Mounts the container's root filesystem from a block device.
    async fn mount_rootfs(&self, device: &str, fstype: &str) -> Result<(), GuestError>;
    /// Mounts a filesystem in the VM itself (outside the container), e.g. a volume's disk.
    async fn mount(&self, mount: &GuestMount) -> Result<(), GuestError>;
    /// Sets the extra mounts (targets inside the container), the rootfs mode and whether
    /// `/proc` and `/sys` stay unmasked (`--privileged`) for the container the first
    /// [`Guest::spawn`] creates.
    fn set_container_mounts(
        &self,
        mounts: Vec<GuestMount>,
        readonly_rootfs: bool,
        privileged: bool,
    );
    /// Sets the kernel settings the container gets when the first [`Guest::spawn`] creates it
    /// (applied in its namespaces before its process runs).
    fn set_container_tuning(&self, _tuning: ContainerTuning) {}
    /// Sets the cgroup limits the container gets when the first [`Guest::spawn`] creates it
    /// (applied before its process runs).
    fn set_container_resources(&self, _limits: ResourceLimits) {}
    /// Replaces the running container's cgroup limits (absent ones: unlimited).
    async fn update_resources(&self, _limits: ResourceLimits) -> Result<(), GuestError> {
        Err(GuestError::Unsupported("change resource limits"))
    }
    /// One reading of the container's resource counters.
    async fn stats(&self) -> Result<Sample, GuestError> {
        Err(GuestError::Unsupported("report statistics"))
    }
    /// The container's processes (`container top`).
    async fn processes(&self) -> Result<agent::ProcessList, GuestError> {
        Err(GuestError::Unsupported("list processes"))
    }
    /// Creates and starts a process; `id` is ours to choose and unique in this VM.
    async fn spawn(&self, id: &str, spec: &ProcessSpec) -> Result<ProcessOutput, GuestError>;
    /// Waits for a process to end.
    async fn wait(&self, id: &str) -> Result<ProcessExit, GuestError>;
    /// The container's OOM kill count as the guest reported it with the exit of process
    /// `id` (its first process), once [`Guest::wait`] returned; `None` when the guest did not
    /// (then [`Guest::stats`] has it).
    fn oom_kills_at_exit(&self, _id: &str) -> Option<u64> {
        None
    }
    /// Sends a signal to a process.
    async fn signal(&self, id: &str, signal: i32) -> Result<(), GuestError>;
    /// Writes to a process's stdin.
    async fn write_stdin(&self, id: &str, data: Bytes) -> Result<(), GuestError>;
    /// Closes a process's stdin (EOF).
    async fn close_stdin(&self, id: &str) -> Result<(), GuestError>;
    /// Resizes a process's pty.
    async fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), GuestError>;
    /// Asks the guest to power off.
    async fn shutdown(&self) -> Result<(), GuestError>;
    /// Creates the container with process `id` without ever starting it, so that its
    /// filesystem (rootfs and mounts) exists for copies while the container is stopped.
    async fn prepare(&self, _id: &str, _spec: &ProcessSpec) -> Result<(), GuestError> {
        Err(GuestError::Unsupported("hold a stopped container"))
    }
    /// Starts packing `path` of the container as a tar stream, as process `id`: returns what
    /// the path is, the stream (`stdout`) and the reason of a failure (`stderr`); then
    /// [`Guest::wait`] (non-zero: incomplete) and [`Guest::release`]. A missing path is a
    /// [`GuestError::Remote`] with [`ErrorCode::NotFound`].
    async fn copy_out(
        &self,
        _id: &str,
        _path: &str,
        _follow_link: bool,
    ) -> Result<(agent::PathStat, ProcessOutput), GuestError> {
        Err(GuestError::Unsupported("copy files"))
    }
    /// Starts packing the container's root filesystem as the VM mounted it (without its
    /// volumes, binds, tmpfs and `/proc`, as `docker export`) as a tar stream, as process
    /// `id`; then as [`Guest::copy_out`].
    async fn export(&self, _id: &str) -> Result<ProcessOutput, GuestError> {
        Err(GuestError::Unsupported("export a root filesystem"))
    }
    /// Starts unpacking a tar stream at `path` in the container, as process `id`: send it
    /// with [`Guest::write_stdin`] and [`Guest::close_stdin`], then [`Guest::wait`] (non-zero:
    /// failed, `stderr` says why) and [`Guest::release`].
    async fn copy_in(
        &self,
        _id: &str,
        _path: &str,
        _source: Option<agent::CopySource>,
        _preserve_owner: bool,
    ) -> Result<ProcessOutput, GuestError> {
        Err(GuestError::Unsupported("copy files"))
    }
    /// Frees an exited exec process in the guest once its status has been collected (never
    /// the main process: that would tear the container down). Without it the guest keeps an
    /// entry per exec for the VM's lifetime.
    async fn release(&self, _id: &str) -> Result<(), GuestError> {
        Ok(())
    }
    /// Listens in the guest, as listener `id`, in the stead of the host socket `host` (its
    /// owner and mode are copied); returns the guest path to bind into the container.
    async fn listen_socket(
        &self,
        _id: &str,
        _host: &std::path::Path,
    ) -> Result<String, GuestError> {
        Err(GuestError::Unsupported("relay unix sockets"))
    }
    /// Closes listener `id` of [`Guest::listen_socket`]. A pod member's listeners live in a
    /// VM that outlives its run, so they are closed when it ends (and before it listens
    /// again, for a monitor that died).
    async fn close_socket(&self, _id: &str) -> Result<(), GuestError> {
        Ok(())
    }
    /// Starts relaying the container's sockets: `inbound` pairs the listeners made by
    /// [`Guest::listen_socket`] with their host sockets, `publish` names the container's
    /// sockets to publish on the host. The relays stop when the result is dropped.
    fn relay_sockets(
        &self,
        inbound: Vec<(String, PathBuf)>,
        publish: &[crate::sockets::PublishSocket],
    ) -> Result<crate::sockets::SocketRelays, GuestError> {
        if inbound.is_empty() && publish.is_empty() {
            Ok(Default::default())
        } else {
            Err(GuestError::Unsupported("relay unix sockets"))
        }
    }
    /// The agent connection itself, for callers that drive the guest beyond one container
    /// (the builder: overlay mounts, a container per RUN step, layer capture); `None` for
    /// guests that are not reached through the agent protocol (test fakes).
    fn agent_client(&self) -> Option<agent::Client> {
        None
    }
}

/// The guest side of a container's networking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestNetwork {
    /// Interfaces in `eth0`, `eth1`, … order.
    pub interfaces: Vec<net::Attachment>,
    /// `/etc/hosts` lines beyond localhost: address and names.
    pub hosts: Vec<(std::net::IpAddr, Vec<String>)>,
    /// The container's own resolver settings (`--dns` servers replace the networks').
    pub dns: crate::netconf::DnsConfig,
}

/// A network device of the VM: a host tap (or QEMU's user-mode network) and the guest MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// Host tap device (empty with `user`).
    pub tap: String,
    /// Guest MAC address.
    pub mac: String,
    /// QEMU user-mode networking instead of a tap, forwarding these published ports (host
    /// ports already chosen).
    pub user: Option<Vec<net::ports::PortSpec>>,
}

/// What the monitor asks the backend to boot.
#[derive(Debug, Clone)]
pub struct VmRequest {
    /// The container's state directory (logs go here).
    pub dir: PathBuf,
    /// Where the VM's unix sockets go (short enough for `sun_path`).
    pub socket_dir: PathBuf,
    /// The container's root filesystem.
    pub rootfs: VmRootfs,
    /// Serial console log.
    pub console_log: PathBuf,
    /// Sizing and kernel choice.
    pub options: VmOptions,
    /// Network devices (virtio-net over taps), `eth0` first.
    pub nets: Vec<NetDevice>,
    /// Raw ext4 images of the container's volumes, attached after the rootfs (`/dev/vdb`...).
    pub volume_disks: Vec<PathBuf>,
    /// Host directories served by one virtiofsd each, tags `share0`, `share1`, ...
    pub shares: Vec<HostShare>,
    /// A pod's infra container: the pod's share, served under [`crate::pod::POD_TAG`], and a
    /// guest that can mount its members' filesystems (loop devices, overlayfs).
    pub pod_share: Option<HostShare>,
    /// A network namespace (someone else's) that QEMU runs in: its `nets` taps are there.
    pub netns: Option<PathBuf>,
}

/// Where a VM's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmRootfs {
    /// A read-write disk (a qcow2 overlay over the image's ext4), `/dev/vda`; volume disks
    /// follow it.
    Disk(PathBuf),
    /// A host directory served by its own virtiofsd under the tag [`ROOTFS_TAG`]; volume
    /// disks start at `/dev/vda`.
    Share(HostShare),
    /// A pod member's: no VM of its own, its image and upper filesystems in the pod's share
    /// (see [`crate::pod`]); `boot` connects to the pod's VM instead of starting one.
    Pod(PodMember),
}

/// Where a pod member finds its pod's VM and its own files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMember {
    /// The pod's shared agent socket.
    pub socket: PathBuf,
    /// The member's directory in the guest (`base.ext4`, `upper.ext4`, its mount points).
    pub guest_dir: String,
    /// Its root filesystem is the directory `bundle/` there (see [`crate::pod::MemberDisks`]).
    pub directory: bool,
}

/// The virtiofs tag of a [`VmRootfs::Share`].
pub const ROOTFS_TAG: &str = "rootfs";

impl VmRootfs {
    /// How many disks come before the volumes' (`/dev/vda` is the first).
    pub fn disks_before_volumes(&self) -> usize {
        match self {
            VmRootfs::Disk(_) => 1,
            VmRootfs::Share(_) | VmRootfs::Pod(_) => 0,
        }
    }
}

/// A host directory shared with the VM through virtiofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostShare {
    /// The directory; the guest sees nothing outside it.
    pub dir: PathBuf,
    /// Refuse writes on the host side.
    pub readonly: bool,
    /// Let the guest make device nodes in it. Off for a user's bind (`-v`): virtiofsd makes a
    /// node as root on the host, so a container's `mknod` would leave a node for a host disk
    /// in a host directory (fifos and sockets need no privilege and are always allowed). On
    /// for a root filesystem or a pod's share, which are the container's own trees.
    pub device_nodes: bool,
}

/// Why a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmExit(pub String);

/// A booted VM.
#[async_trait]
pub trait Vm: Send {
    /// Host pid of the VM process.
    fn pid(&self) -> Option<u32>;
    /// Waits for the VM process to end (cancel-safe).
    async fn wait(&mut self) -> VmExit;
    /// Kills the VM process and reaps it.
    async fn kill(&mut self);
    /// A handle that freezes and thaws the running VM (`container pause`), shareable with
    /// the monitor's client sessions; `None` when this VM cannot be frozen.
    fn control(&self) -> Option<Arc<dyn VmControl>> {
        None
    }
}

/// Errors freezing or thawing a VM.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The VM's control channel (QEMU's QMP) failed or refused the command.
    #[error("{op} the VM")]
    Command {
        /// `pause` or `resume`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Freezes and thaws a whole VM: every vCPU stops, so every process of the guest, the agent
/// included, stops with it (docker's cgroup freezer, one level down).
#[async_trait]
pub trait VmControl: Send + Sync {
    /// Stops the VM's vCPUs.
    async fn pause(&self) -> Result<(), ControlError>;
    /// Lets them run again.
    async fn resume(&self) -> Result<(), ControlError>;
}

/// A booted VM with its agent connection.
pub struct Booted {
    /// The VM.
    pub vm: Box<dyn Vm>,
    /// Its agent.
    pub guest: Arc<dyn Guest>,
    /// The key of the VM template it was restored from (None: booted cold).
    pub template: Option<String>,
    /// It was restored ahead of time and waited in the pool (`real::pool`).
    pub prebooted: bool,
}

/// Errors booting a VM.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The VM could not be started or its agent never answered.
    #[error("{message}")]
    Boot {
        /// One line saying what failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Boots VMs.
#[async_trait]
pub trait VmBackend: Send + Sync {
    /// Makes the per-container copy-on-write disk `overlay` over the cached `base` image.
    async fn create_overlay(
        &self,
        base: &std::path::Path,
        overlay: &std::path::Path,
    ) -> Result<(), BootError>;
    /// Boots a VM and connects to its agent.
    async fn boot(&self, req: &VmRequest) -> Result<Booted, BootError>;
    /// The container's main process runs: the time for work that should not slow its start
    /// (pre-booting the next VM of its shape).
    fn started(&self) {}
}
