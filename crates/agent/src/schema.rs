//! The whole host↔guest contract in one file: every request, every reply and the types they
//! carry. Control messages travel as JSON payloads of `Request`/`Response` frames (see
//! [`crate::frame`]); process stdio travels as raw bytes in `Data` frames, so JSON only ever
//! carries small control messages.
//!
//! Evolution rules (protocol version [`PROTOCOL_VERSION`]): new optional fields get
//! `#[serde(default)]` and keep the version; removing or re-typing a field, or changing the
//! meaning of one, bumps the version. Unknown fields are ignored by both sides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of this schema and of the framing. Exchanged in the hello handshake; a peer with a
/// different version is refused with [`crate::ErrorCode::ProtocolVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Handle of a process created in the guest. Chosen by the guest, never reused during the life
/// of one guest (unlike PIDs).
pub type ProcessHandle = u32;

/// One call from the host to the guest. Serialized as `{"op": "<name>", ...fields}`.
// One value per call, moved not copied: boxing the big variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// No-op; answered with [`Response::Ok`]. Used for liveness and latency measurement.
    Ping,
    /// Guest-wide settings: hostname, DNS, hosts, sysctls, wall clock.
    Configure(Configure),
    /// Mount a filesystem in the guest (not yet inside a container).
    Mount(Mount),
    /// Unmount a path in the guest.
    Umount(Umount),
    /// Configure a network interface by name (addresses, gateway, MTU, link up).
    SetupInterface(Interface),
    /// Create a process; the first process of a container creates the container.
    CreateProcess(CreateProcess),
    /// Let a created process run (exec its program).
    Start(ProcessRef),
    /// Wait until a started process exits; answered with [`Response::Exited`].
    Wait(ProcessRef),
    /// Send a signal to a process.
    Kill(Kill),
    /// Change the window size of a process's terminal.
    ResizePty(ResizePty),
    /// Close the write side of a process's stdin pipe/pty (the process reads EOF).
    CloseStdin(ProcessRef),
    /// Forget an exited process and free its resources.
    Delete(ProcessRef),
    /// Resource usage of a container (or of the whole guest when `container` is absent).
    Stats(StatsRequest),
    /// Set resource limits of a container's cgroup (at creation, before start, or later).
    UpdateResources(Resources),
    /// Sync, unmount everything and power the VM off (or reboot). Answered before it happens.
    Shutdown(Shutdown),
    /// Start packing a path of a container as a tar stream; answered with
    /// [`Response::CopyStarted`]. The tar flows on the helper's stdout stream (see
    /// [`crate::copy`] for its naming rules); `Wait` on the handle tells whether it completed
    /// (non-zero: the reason is on its stderr stream), `Delete` frees it.
    CopyOut(CopyOut),
    /// Start unpacking a tar stream into a container; answered with [`Response::CopyStarted`].
    /// The host sends the tar on the helper's stdin stream, closes it, then `Wait`s.
    CopyIn(CopyIn),
    /// First request to a VM restored from a template (see [`Resume`]): renew what must be
    /// unique to this VM, then bind the device drivers the template left unloaded.
    Resume(Resume),
    /// Start packing a guest directory (a build step's overlay upper directory) as an OCI
    /// layer tar; answered with [`Response::CopyStarted`] (no `stat`). The tar flows on the
    /// helper's stdout stream like `CopyOut`'s (see [`crate::layer`] for its format);
    /// `Wait` on the handle tells whether it completed (non-zero: the reason is on its
    /// stderr stream), `Delete` frees it.
    LayerOut(LayerOut),
    /// Start unpacking an OCI layer tar into a new guest directory that overlayfs can stack
    /// as a lower layer; answered with [`Response::CopyStarted`]. The host sends the tar on
    /// the helper's stdin stream, closes it, then `Wait`s (non-zero: nothing was created,
    /// stderr says why; zero: stderr may carry `warning:` lines).
    LayerIn(LayerIn),
    /// The processes of a container (`container top`); answered with
    /// [`Response::Processes`].
    Processes(ProcessesRequest),
    /// Listen on a unix socket in the guest at [`crate::contract::guest_socket`]`(id)`, for a
    /// host socket a container reaches through a bind mount of that guest path (`-v
    /// HOST.sock:PATH`, `--ssh`); answered with [`Response::Ok`]. The host then accepts each
    /// connection with `SocketAccept` and relays it to the host socket.
    SocketListen(SocketListen),
    /// Wait for the next connection on listener `id`; answered with
    /// [`Response::CopyStarted`] (no `stat`) once one arrives: the handle's stdin carries what
    /// the host sends to the connection, its stdout what the container sends, each ending when
    /// that side shuts down; then `Wait` and `Delete`. Fails with `NotFound` once the listener
    /// is closed.
    SocketAccept(SocketRef),
    /// Close listener `id` and remove its socket; pending accepts fail; answered with
    /// [`Response::Ok`].
    SocketClose(SocketRef),
    /// Connect to a unix socket inside a container, at `path` resolved in its mount namespace
    /// (a socket the container serves, published on the host with `--publish-socket`);
    /// answered with [`Response::CopyStarted`] like `SocketAccept`. A path that is no socket
    /// or that nobody listens on fails the call.
    SocketConnect(SocketConnect),
}

impl Request {
    /// Stable name of the call, for error messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Configure(_) => "configure",
            Request::Mount(_) => "mount",
            Request::Umount(_) => "umount",
            Request::SetupInterface(_) => "setup_interface",
            Request::CreateProcess(_) => "create_process",
            Request::Start(_) => "start",
            Request::Wait(_) => "wait",
            Request::Kill(_) => "kill",
            Request::ResizePty(_) => "resize_pty",
            Request::CloseStdin(_) => "close_stdin",
            Request::Delete(_) => "delete",
            Request::Stats(_) => "stats",
            Request::UpdateResources(_) => "update_resources",
            Request::Shutdown(_) => "shutdown",
            Request::CopyOut(_) => "copy_out",
            Request::CopyIn(_) => "copy_in",
            Request::Resume(_) => "resume",
            Request::LayerOut(_) => "layer_out",
            Request::LayerIn(_) => "layer_in",
            Request::Processes(_) => "processes",
            Request::SocketListen(_) => "socket_listen",
            Request::SocketAccept(_) => "socket_accept",
            Request::SocketClose(_) => "socket_close",
            Request::SocketConnect(_) => "socket_connect",
        }
    }
}

/// A successful reply. Errors travel as [`crate::WireError`] instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// The call succeeded and has nothing to return.
    Ok,
    /// A process was created.
    Created(Created),
    /// A process was started.
    Started(Started),
    /// A process exited.
    Exited(ExitStatus),
    /// Resource usage.
    Stats(Stats),
    /// A copy helper runs (see [`Request::CopyOut`], [`Request::CopyIn`],
    /// [`Request::LayerOut`], [`Request::LayerIn`]).
    CopyStarted(CopyStarted),
    /// A container's processes.
    Processes(ProcessList),
}

/// Guest-wide configuration. Every field is optional; absent fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Configure {
    /// Hostname of the guest and default hostname of its containers.
    #[serde(default)]
    pub hostname: Option<String>,
    /// DNS configuration, written as `/etc/resolv.conf` for containers.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// Extra `/etc/hosts` entries for containers (localhost entries are always present).
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
    /// sysctls to set, e.g. `"net.ipv4.ip_forward": "1"` (written under `/proc/sys`).
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    /// Wall-clock time to set, in nanoseconds since the Unix epoch (the guest has no RTC sync).
    #[serde(default)]
    pub time_unix_ns: Option<u64>,
}

/// Resolver configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    /// Name server addresses, in order.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// `options` line entries, e.g. `ndots:2`.
    #[serde(default)]
    pub options: Vec<String>,
    /// Leave each container's own `/etc/resolv.conf` (the image's) as it is; the other fields
    /// are then ignored (`--no-dns`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_image: bool,
}

/// One `/etc/hosts` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEntry {
    /// Address.
    pub ip: String,
    /// Names for that address.
    pub names: Vec<String>,
}

/// A mount in the guest's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Device or source, e.g. `/dev/vda`, `tmpfs`, a virtiofs tag, or a path for `bind`.
    pub source: String,
    /// Absolute target path in the guest; created (with parents) when missing.
    pub target: String,
    /// Filesystem type, e.g. `ext4`, `tmpfs`, `virtiofs`, `overlay`; `bind` for a bind mount.
    pub fstype: String,
    /// Options as in mount(8): flags (`ro`, `nosuid`, `nodev`, `noexec`, `noatime`, `rbind`, ...)
    /// and filesystem data (`size=64m`, `mode=755`, ...). One option of ours, for a container's
    /// bind of a volume: `copyup` fills the still-empty source with the image's content at the
    /// target first (docker's volume copy-up).
    ///
    /// `overlay` (a guest mount; the VM needs the overlay module: the runtime's
    /// `VmOptions::overlay`) takes `lowerdir=TOP:…:BOTTOM`, `upperdir=` and `workdir=`;
    /// missing upper and work directories are created, the upper one with the owner and
    /// mode of the topmost lower directory, since the merged root takes the upper's. For
    /// layers that [`Request::LayerOut`] can capture, also pass `redirect_dir=off` and
    /// `metacopy=off` (both are kernel build/module options otherwise).
    ///
    /// `loop` ([`crate::contract::MOUNT_OPTION_LOOP`], mount(8)'s `-o loop`): `source` is a
    /// regular file in the guest, e.g. an ext4 image in a virtiofs share (a pod member's
    /// rootfs: a running microvm takes no new disk). vminitd attaches it to a free loop device
    /// (read-only with `ro`), auto-clearing, with direct I/O where the file allows it, and
    /// mounts that device with the other options; the `Umount` of the target frees the
    /// device. The VM needs the loop driver: `vmm::Features::loop_devices`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Unmount request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Umount {
    /// Absolute target path.
    pub target: String,
    /// Lazy (detach) unmount.
    #[serde(default)]
    pub lazy: bool,
}

/// Network interface setup, by interface name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name in the guest, e.g. `eth0` (`lo` is brought up by vminitd itself).
    pub name: String,
    /// Addresses in CIDR form, e.g. `10.88.0.2/16` or `fd00::2/64`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Default gateway; a default route through it is added.
    #[serde(default)]
    pub gateway: Option<String>,
    /// IPv6 default gateway; an IPv6 default route through it is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    /// MTU to set.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// MAC address to set (`02:…`) before the link goes up: a VM restored from a template
    /// starts with the template's.
    #[serde(default)]
    pub mac: Option<String>,
}

/// Create a process. The first process of `container` creates the container: fresh mount, PID
/// and UTS namespaces over `rootfs`. Later ones (exec) join that container's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateProcess {
    /// Container id (any non-empty string of `[A-Za-z0-9_.-]`).
    pub container: String,
    /// Container creation only: guest path of the mounted root filesystem.
    #[serde(default)]
    pub rootfs: Option<String>,
    /// Container creation only: hostname inside the container (default: the guest's).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Container creation only: mount the rootfs read-only.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Container creation only: extra mounts inside the container, targets relative to its `/`.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Container creation only: leave `/proc` and `/sys` unmasked and writable (docker's
    /// `--privileged`; the capability set is separate).
    #[serde(default)]
    pub privileged: bool,
    /// Container creation only: keep the guest's cgroup namespace (`--cgroupns host`). By
    /// default the container gets one of its own, rooted at its cgroup, and `/sys/fs/cgroup`
    /// shows that tree (read-only unless `privileged`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cgroupns_host: bool,
    /// Container creation only: the mount points the guest makes in the rootfs because it
    /// lacks them (`/proc`, `/sys`, `/dev`, `/etc/hosts`, `/etc/hostname`,
    /// `/etc/resolv.conf`, an `/etc` for them) are removed again when the container is
    /// deleted, if still empty. A builder's RUN step sets it, so that its layer holds only
    /// what the command changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove_stubs: bool,
    /// Container creation only: a network namespace of its own with only loopback, up
    /// (docker's `--network none` inside a VM that has a network: a builder's
    /// `RUN --network=none`). Otherwise the container shares the VM's network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_network: bool,
    /// Container creation only: sysctls (`net.core.somaxconn`, `kernel.shmmax`) written under
    /// `/proc/sys` from inside the container's namespaces before its process runs, so that
    /// those an IPC namespace scopes reach the container's own (docker's `--sysctl`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Container creation only: the size of its `/dev/shm` tmpfs in bytes (docker's
    /// `--shm-size`); absent: 64 MiB, docker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Container creation only: character device nodes to make in its `/dev` (docker's
    /// `--device`), the guest kernel's own devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceNode>,
    /// Container creation only: more paths to hide (an empty read-only tmpfs over a directory,
    /// `/dev/null` over a file), after the OCI defaults; applied with `privileged` too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    /// Container creation only: more paths made read-only, after the OCI defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    /// Start the process as soon as it is created, as a `Start` would: one round trip fewer
    /// for a host that has nothing to do in between (its output is buffered by the client
    /// until it asks for the streams). A failed exec fails the request and removes the process.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start: bool,
    /// The process itself.
    pub process: ProcessSpec,
}

/// A character device node in a container's `/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Absolute path in the container, under `/dev/`.
    pub path: String,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits of the node (e.g. 0o666).
    pub mode: u32,
}

/// An OCI-like process description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv; `args[0]` is looked up in `PATH` (from `env`) when it has no `/`.
    pub args: Vec<String>,
    /// Environment, `KEY=value`. `PATH` and `HOME` get defaults when missing.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory inside the container (default `/`); created if missing.
    #[serde(default)]
    pub cwd: Option<String>,
    /// `name|uid[:group|gid]`, resolved from the container's `/etc/passwd` and `/etc/group`.
    /// Empty means root.
    #[serde(default)]
    pub user: String,
    /// Supplementary groups (names or gids) in addition to those from `/etc/group`.
    #[serde(default)]
    pub additional_groups: Vec<String>,
    /// Allocate a pty; stdout carries both output streams then.
    #[serde(default)]
    pub terminal: bool,
    /// Whether the host will send stdin; without it the process gets `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Resource limits to set before exec.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// Capability sets; absent means docker's rule over `capability_set`.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// When `capabilities` is absent: the container's set (docker's `--cap-add`/`--cap-drop`
    /// result, see [`crate::caps::resolve`]); a root process gets it bounding, permitted and
    /// effective, any other user only as its bounding set. Absent means docker's default set.
    #[serde(default)]
    pub capability_set: Option<Vec<String>>,
    /// Set `no_new_privs`.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Initial terminal size (rows, cols), when `terminal`.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Run `args` under a small init (docker's `--init`): the process is vminitd itself in
    /// its container-init mode, which runs `args` as its only child, forwards the signals it
    /// gets to it, reaps every orphan of the container and exits with the child's status. For
    /// a container's first process, which is PID 1 of its PID namespace and so gets no signal
    /// it has no handler for. With `init` and no `args`, the init is a pod's pause process:
    /// it runs nothing, reaps orphans and exits 0 on SIGTERM, SIGINT or SIGHUP.
    #[serde(default)]
    pub init: bool,
}

/// One rlimit, OCI style (`RLIMIT_NOFILE`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Name, e.g. `RLIMIT_NOFILE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Capability sets by name (`CAP_CHOWN`, ...), OCI style.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Bounding set.
    #[serde(default)]
    pub bounding: Vec<String>,
    /// Effective set.
    #[serde(default)]
    pub effective: Vec<String>,
    /// Permitted set.
    #[serde(default)]
    pub permitted: Vec<String>,
    /// Inheritable set.
    #[serde(default)]
    pub inheritable: Vec<String>,
    /// Ambient set.
    #[serde(default)]
    pub ambient: Vec<String>,
}

/// Refers to a process by handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    /// The handle from [`Created`].
    pub handle: ProcessHandle,
}

/// Reply to `CreateProcess`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// Handle for later calls and the stdio stream ids (see [`stream_id`]).
    pub handle: ProcessHandle,
}

/// Reply to `Start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// PID in the guest's initial PID namespace.
    pub pid: i32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code when it exited normally.
    #[serde(default)]
    pub code: Option<i32>,
    /// Signal number when it was killed by a signal.
    #[serde(default)]
    pub signal: Option<i32>,
    /// For a container's first process: the OOM kills its container's cgroup had counted when
    /// it was reaped (`memory.events` `oom_kill`), so the host needs no second request to tell
    /// an OOM kill. Absent for other processes, or when the count could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
}

/// Signal delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    /// Target process.
    pub handle: ProcessHandle,
    /// Signal number (Linux numbering).
    pub signal: i32,
    /// Signal every process of the container (its PID namespace), not just this one.
    #[serde(default)]
    pub all: bool,
}

/// Terminal size change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizePty {
    /// Target process (created with `terminal`).
    pub handle: ProcessHandle,
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A limit value meaning "unlimited" (written as `max`).
pub const NO_LIMIT: u64 = u64::MAX;

/// Limits for a container's cgroup v2. Absent fields are left as they are; [`NO_LIMIT`] in
/// `memory_max` or `pids_max` (and an absent quota with a period) removes the limit (`max`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Container id.
    pub container: String,
    /// `memory.max` in bytes.
    #[serde(default)]
    pub memory_max: Option<u64>,
    /// CPU time per period (`cpu.max` quota), microseconds; `--cpus 1.5` is 150000/100000.
    #[serde(default)]
    pub cpu_quota_us: Option<u64>,
    /// `cpu.max` period in microseconds (default 100000).
    #[serde(default)]
    pub cpu_period_us: Option<u64>,
    /// `pids.max`.
    #[serde(default)]
    pub pids_max: Option<u64>,
}

/// Statistics request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsRequest {
    /// Container id; absent means the whole guest.
    #[serde(default)]
    pub container: Option<String>,
}

/// Resource usage from cgroup v2 and `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// `cpu.stat` usage_usec.
    pub cpu_usage_usec: u64,
    /// `cpu.stat` user_usec.
    pub cpu_user_usec: u64,
    /// `cpu.stat` system_usec.
    pub cpu_system_usec: u64,
    /// `memory.current` in bytes.
    pub memory_current: u64,
    /// `memory.max` in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// `memory.stat` anon + file split, as read.
    pub memory_anon: u64,
    /// Page cache bytes (`memory.stat` file).
    pub memory_file: u64,
    /// `io.stat` totals over all devices.
    pub io_read_bytes: u64,
    /// `io.stat` wbytes total.
    pub io_write_bytes: u64,
    /// Number of processes (`pids.current` or the cgroup's procs).
    pub pids: u64,
    /// Per-interface counters (loopback excluded).
    pub networks: Vec<NetDevStats>,
    /// Total guest memory from `/proc/meminfo` (bytes).
    pub guest_memory_total: u64,
    /// Available guest memory from `/proc/meminfo` (bytes).
    pub guest_memory_available: u64,
    /// Inactive page cache (`memory.stat` inactive_file): reclaimable, so `docker stats`
    /// leaves it out of the usage it shows.
    #[serde(default)]
    pub memory_inactive_file: u64,
    /// Processes of the cgroup killed by an OOM killer, cgroup or global (`memory.events`
    /// oom_kill).
    #[serde(default)]
    pub oom_kills: u64,
    /// `pids.max`; `None` when unlimited.
    #[serde(default)]
    pub pids_limit: Option<u64>,
    /// CPUs online in the guest.
    #[serde(default)]
    pub online_cpus: u32,
    /// The guest's CLOCK_MONOTONIC when the sample was taken, in nanoseconds: the time base
    /// for CPU percentages (two samples' usage delta over this delta), free of the
    /// host↔guest round trip.
    #[serde(default)]
    pub monotonic_ns: u64,
}

/// One line of `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetDevStats {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// Shutdown request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {
    /// Reboot instead of power off.
    #[serde(default)]
    pub reboot: bool,
}

/// Copy a path out of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOut {
    /// Container id.
    pub container: String,
    /// Path inside the container, resolved in its mount namespace (rootfs, volumes, binds,
    /// tmpfs); relative paths are taken from its `/`.
    pub path: String,
    /// When the path itself is a symlink, pack what it points to instead of the link.
    #[serde(default)]
    pub follow_link: bool,
}

/// Renewal of a VM restored from a template. A template is booted with
/// [`crate::contract::TEMPLATE_ARG`]: vminitd then loads only the modules of the agent's
/// channel and the block driver ([`crate::contract::EARLY_MODULES`]), keeps the others open,
/// and waits. Every clone of it starts with the same RNG state, clock and boot data, so this
/// request, answered with `Ok` before any other is served, (1) mixes `entropy` into the
/// kernel's pool and reseeds it (so `/proc/sys/kernel/random/boot_id`, read first after this,
/// differs per clone), (2) sets the wall clock, (3) loads the deferred modules, so network
/// interfaces are probed only now, with this VM's backends, and waits until every virtio
/// device but the balloon has its driver and every disk its `/dev` node, (4) waits until each
/// disk reports its capacity in `disks` and drops the block cache of the placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Random bytes from the host (at least 32) for the kernel's pool.
    pub entropy: Vec<u8>,
    /// Wall-clock time, in nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// Load the balloon driver too. Off for clones under QEMU < 8.2, whose free page reporting
    /// punches holes into the shared template RAM file of a private mapping.
    #[serde(default)]
    pub balloon: bool,
    /// Capacity in bytes of each virtio disk, in attach order (`/dev/vda` first). The template
    /// probed its placeholder disks; the guest waits until its block devices report these
    /// capacities (QEMU announces them after the restore) and drops what it cached of the
    /// placeholders, so nothing of the template's disks is seen.
    #[serde(default)]
    pub disks: Vec<u64>,
}

/// Pack a guest directory as an OCI layer tar ([`Request::LayerOut`]).
///
/// Its entries become the layer as overlayfs means them: a character device 0/0 (a
/// whiteout) becomes `.wh.NAME`, a directory with `trusted.overlay.opaque=y` gets a
/// `DIR/.wh..wh..opq` entry after it, overlayfs' other `trusted.overlay.*` xattrs are left
/// out; files, hard links, symlinks, devices and fifos keep owners, modes, mtimes and xattrs.
/// The directory itself has no entry. A `redirect` or `metacopy` xattr, or a file named
/// `.wh.*`, fails the helper: the layer could not say what the directory means. The
/// directory is read as it is: nothing should write to it meanwhile (stop the step's
/// processes first; unmounting the overlay is not needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOut {
    /// Absolute guest path of the directory (in the guest's mount namespace, not a
    /// container's), e.g. an overlay's upper directory.
    pub path: String,
}

/// Unpack an OCI layer tar into a new guest directory ([`Request::LayerIn`]).
///
/// The reverse of [`LayerOut`]: `.wh.NAME` becomes a character device 0/0 NAME (nothing is
/// removed: the directory is a layer of its own, stacked above the ones it hides from),
/// `DIR/.wh..wh..opq` sets `trusted.overlay.opaque=y` on DIR, a layer that has both
/// `.wh.DIR` and `DIR/` gets an opaque DIR; owners, modes, mtimes, xattrs (overlayfs' own
/// never), hard links (to earlier entries of the same layer only), symlinks and devices are
/// kept. Names with `..`, absolute names and paths through a symlink are refused. The
/// directory appears only when the stream ended with tar's end marker; before that it is
/// built under a hidden name beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIn {
    /// Absolute guest path of the directory to create: its parent must exist, it must not
    /// (`AlreadyExists`).
    pub path: String,
}

/// Copy a tar stream into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyIn {
    /// Container id.
    pub container: String,
    /// Destination path inside the container as the user wrote it (a trailing `/` matters).
    pub path: String,
    /// What the stream holds, so the guest can apply docker's path rules; `None` for a raw
    /// tar stream (`cp - c:/dir`), which is unpacked as is into the existing directory `path`.
    #[serde(default)]
    pub source: Option<CopySource>,
    /// Keep the uids/gids of the archive; otherwise everything is owned by root (0:0).
    #[serde(default)]
    pub preserve_owner: bool,
}

/// The source of a copy, as the receiving side needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySource {
    /// Whether it is a directory.
    pub is_dir: bool,
    /// The source path ended in `/.`: copy the directory's contents, not the directory.
    #[serde(default)]
    pub contents_only: bool,
}

/// Reply to `CopyOut`/`CopyIn` and `LayerOut`/`LayerIn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStarted {
    /// Handle of the helper: its stdout (copy-out, layer-out) or stdin (copy-in, layer-in)
    /// carries the tar.
    pub handle: ProcessHandle,
    /// `CopyOut`: what the path is.
    #[serde(default)]
    pub stat: Option<PathStat>,
}

/// What a copied path is (docker's `X-Docker-Container-Path-Stat`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    /// Base name; the name of the tar's root entry.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// The target when the path is a symlink (and was not followed).
    #[serde(default)]
    pub link_target: String,
}

impl PathStat {
    /// Whether the path is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// Which stdio stream of a process a [`crate::frame::Frame`] of kind `Data`/`Window` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StdioStream {
    /// Host → guest.
    Stdin = 0,
    /// Guest → host (also the pty output when `terminal`).
    Stdout = 1,
    /// Guest → host.
    Stderr = 2,
}

/// The stream id of one stdio stream of a process: `handle * 4 + stream`.
pub fn stream_id(handle: ProcessHandle, stream: StdioStream) -> u32 {
    handle.wrapping_mul(4) | stream as u32
}

/// Splits a stream id into process handle and stream; `None` for the unused slot 3.
pub fn split_stream_id(id: u32) -> Option<(ProcessHandle, StdioStream)> {
    let stream = match id & 3 {
        0 => StdioStream::Stdin,
        1 => StdioStream::Stdout,
        2 => StdioStream::Stderr,
        _ => return None,
    };
    Some((id >> 2, stream))
}

/// First frame from the host after every (re)connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the host.
    pub version: u32,
    /// Random value echoed in [`HelloAck`]; lets the host skip stale bytes from an earlier
    /// connection that were still queued in the channel.
    pub nonce: u64,
}

/// The guest's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloAck {
    /// [`PROTOCOL_VERSION`] of the guest.
    pub version: u32,
    /// The nonce of the `Hello` being answered.
    pub nonce: u64,
    /// Guest kernel release (`uname -r`).
    #[serde(default)]
    pub kernel: String,
    /// Processes alive in the guest, so a reconnecting host can pick up where it left off.
    #[serde(default)]
    pub processes: Vec<ProcessHandle>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_is_tagged_and_round_trips() {
        let req = Request::Kill(Kill {
            handle: 3,
            signal: 9,
            all: false,
        });
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(text, r#"{"op":"kill","handle":3,"signal":9,"all":false}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let ping: Request = serde_json::from_str(r#"{"op":"ping"}"#).unwrap();
        assert_eq!(ping, Request::Ping);
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_apply() {
        let text = r#"{"op":"create_process","container":"c1","future":1,
                       "process":{"args":["/bin/true"],"new_thing":true}}"#;
        let Request::CreateProcess(cp) = serde_json::from_str::<Request>(text).unwrap() else {
            panic!("wrong variant");
        };
        assert_eq!(cp.process.args, vec!["/bin/true"]);
        assert!(!cp.process.terminal);
        assert!(cp.rootfs.is_none());
    }

    #[test]
    fn layer_requests_are_tagged_by_name() {
        let req = Request::LayerOut(LayerOut {
            path: "/build/layers/3".into(),
        });
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(text, r#"{"op":"layer_out","path":"/build/layers/3"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let req: Request = serde_json::from_str(r#"{"op":"layer_in","path":"/l/4"}"#).unwrap();
        assert_eq!(req.name(), "layer_in");
    }

    #[test]
    fn stream_ids_split_back() {
        for h in [0u32, 1, 77, (u32::MAX >> 2)] {
            for s in [StdioStream::Stdin, StdioStream::Stdout, StdioStream::Stderr] {
                assert_eq!(split_stream_id(stream_id(h, s)), Some((h, s)));
            }
        }
        assert_eq!(split_stream_id(3), None);
    }
}

/// A guest socket listener, named by the host (unique in the VM: the host uses the container
/// id and the mount's index).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRef {
    /// Listener id: letters, digits, `-`, `_` and `.`, at most 64 bytes.
    pub id: String,
}

/// A guest listener standing in for a host socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketListen {
    /// Listener id (as [`SocketRef::id`]).
    pub id: String,
    /// Owner of the guest socket: the host socket's uid and gid, numerically.
    #[serde(default)]
    pub uid: u32,
    /// See `uid`.
    #[serde(default)]
    pub gid: u32,
    /// Permission bits of the guest socket: the host socket's.
    #[serde(default)]
    pub mode: u32,
}

/// A connection to a unix socket in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketConnect {
    /// Container id.
    pub container: String,
    /// The socket's path as the container sees it (absolute).
    pub path: String,
}

/// Which container's processes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessesRequest {
    /// Container id.
    pub container: String,
}

/// Every process of a container's cgroup (sub-cgroups included), read from the guest's
/// `/proc`, with what the host needs to turn ticks into times (`ps` does the same sums).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessList {
    /// The processes, by guest pid.
    pub processes: Vec<ProcessInfo>,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the tick fields.
    pub clock_ticks: u64,
    /// Ticks since the guest booted, when the list was read (`/proc/uptime`).
    pub uptime_ticks: u64,
    /// When the guest booted, in seconds since the Unix epoch (`/proc/stat` btime).
    pub boot_time: u64,
    /// The guest's memory in KiB (`/proc/meminfo` MemTotal), for `%MEM`.
    pub mem_total_kb: u64,
}

/// One process, pids as the container sees them (its own PID namespace: its first process
/// is 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Pid in the container's PID namespace.
    pub pid: i32,
    /// Parent's pid in that namespace; 0 when the parent is outside the container.
    pub ppid: i32,
    /// Real uid.
    pub uid: u32,
    /// The uid's name in the container's `/etc/passwd` (empty: none).
    #[serde(default)]
    pub user: String,
    /// Controlling terminal (`pts/0`), or `?`.
    pub tty: String,
    /// State letter (`R`, `S`, `D`, `Z`, `T`, ...), with `s` for a session leader.
    pub stat: String,
    /// Start, in ticks after boot.
    pub start_ticks: u64,
    /// User + system CPU time, in ticks.
    pub cpu_ticks: u64,
    /// Virtual size in KiB.
    pub vsz_kb: u64,
    /// Resident set in KiB.
    pub rss_kb: u64,
    /// Its command line (`comm` in brackets when it has none, as `ps` shows a kernel
    /// thread).
    pub args: Vec<String>,
    /// Its executable's name as the kernel keeps it (`/proc/<pid>/comm`, at most 15 bytes:
    /// `ps -o comm`); empty from guests that did not send it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comm: String,
}
