//! On-disk state of containers: one directory per container under `<root>/containers/<id>/`.
//!
//! ```text
//! <root>/containers/
//!   .lock                 flock held while allocating ids and names
//!   <id>/                 64 hex digits
//!     state.json          ContainerRecord, written temp + fsync + rename
//!     lock                flock held for every read-modify-write of state.json
//!     monitor.sock        control socket of the running monitor (attach, exec, kill, stop)
//!     container.log       stdout/stderr of the main process, JSON lines
//!     boot.log            the VM's serial console
//!     monitor.log         the monitor's own diagnostics
//!     rootfs.qcow2        copy-on-write disk over the cached image rootfs
//! ```
//!
//! There is no daemon: every command reads these files, and the monitor of a running container is
//! the only writer while it runs. A record whose monitor has died is repaired by
//! [`Store::reconcile`] the next time anyone looks at it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs4::fs_std::FileExt;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::spec::ProcessSpec;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory of the store could not be read or written.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// state.json is not valid.
    #[error("corrupt container state {path}")]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// No container has this id, id prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("container id prefix {0} is ambiguous")]
    Ambiguous(String),
    /// The name is taken by another container.
    #[error("container name {name:?} is already in use by container {id}")]
    NameInUse {
        /// The requested name.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// The name contains characters docker does not allow.
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    /// A private directory of the state belongs to another user.
    #[error(
        "permission denied: {} belongs to uid {owner}; its containers are that user's \
         (use a --root of your own)",
        path.display()
    )]
    NotOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Lifecycle status, as docker names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or start failed before the process ran).
    Created,
    /// The monitor is up and the main process runs.
    Running,
    /// The main process (or its VM) ended.
    Exited,
    /// Its run ended and its monitor waits to start it again under its restart policy
    /// (docker's `restarting`; see [`crate::restart`]).
    Restarting,
}

impl Status {
    /// Whether a monitor still owns the container: it runs, or is restarting between two
    /// runs (docker counts both as `State.Running`, so `stop`, `kill` and `ps` take both).
    pub fn is_up(self) -> bool {
        matches!(self, Status::Running | Status::Restarting)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Restarting => "restarting",
        })
    }
}

/// How the VM of a container is sized and booted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmOptions {
    /// Kernel for this container instead of the configured one (`-k`).
    pub kernel: Option<PathBuf>,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Forced accelerator (`kvm` or `tcg`); None picks one.
    pub accel: Option<String>,
    /// Boot cold even where a VM template could serve (`--no-template`).
    #[serde(default)]
    pub no_template: bool,
    /// The guest can mount overlayfs (its module is loaded): a builder's VM, whose RUN steps
    /// stack layers in the guest (docs/build.md). Off for containers, which do not need it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overlay: bool,
    /// Drivers the guest loads for the container's devices (`--device`: `fuse`, `tun`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// The guest's init for this container instead of the installed vminitd (`--init-image`:
    /// a static vminitd build), absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

/// Everything `create` decided; the monitor starts the container from this alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerConfig {
    /// The main process.
    pub process: ProcessSpec,
    /// VM sizing.
    pub vm: VmOptions,
    /// Cached ext4 rootfs of the image (the overlay's backing file); unused with `rootfs_dir`.
    pub rootfs: PathBuf,
    /// A host directory that is the container's root filesystem instead of an image's
    /// (the containerd shim: the bundle's `rootfs`, mounted by containerd's snapshotter),
    /// served to the guest through virtiofs; the container writes into it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_dir: Option<PathBuf>,
    /// Delete the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// Hostname inside the guest.
    pub hostname: String,
    /// Networks of the container in interface order (`eth0` first), as resolved at create
    /// (no `--network`: the default network); empty = loopback only (`--network none`).
    #[serde(default)]
    pub networks: Vec<String>,
    /// What the container asks of each of its networks besides an address, by network name:
    /// aliases (`--network-alias`, docker's `EndpointsConfig`) and a fixed address. Records
    /// written before endpoints existed have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, net::EndpointConfig>,
    /// Published ports (`-p`), bound by the monitor at every start.
    #[serde(default)]
    pub publish: Vec<net::ports::PortSpec>,
    /// Volumes and tmpfs mounts, in mount order.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// The container's unix sockets published on the host (`--publish-socket`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish_sockets: Vec<crate::sockets::PublishSocket>,
    /// Mount the rootfs read-only (`--read-only`).
    #[serde(default)]
    pub read_only: bool,
    /// `--cpus`, `-m`, `--pids-limit`: the container cgroup's limits (the VM is sized from
    /// them into `vm`).
    #[serde(default)]
    pub resources: crate::resources::ResourceLimits,
    /// `--privileged`: `/proc` and `/sys` unmasked and writable (the capability set is in
    /// `process`).
    #[serde(default)]
    pub privileged: bool,
    /// `--dns`, `--dns-search`, `--dns-option`.
    #[serde(default)]
    pub dns: crate::netconf::DnsConfig,
    /// `--add-host` lines for `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<crate::netconf::ExtraHost>,
    /// The entrypoint: the leading `process.args`, the rest being the command. docker shows
    /// the two apart (`Config.Entrypoint`, `Config.Cmd`). None in records written before it was
    /// kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The container's labels (docker's `Config.Labels`): its image's, overridden key by key
    /// by its own (`--label`), merged at create as docker merges them. Records written before
    /// containers had labels hold the image's alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The ports its image exposes, as the image writes them (`80/tcp`, `8080`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,

    /// The signal `stop` sends first, as written (`--stop-signal`, else the image's
    /// `StopSignal`); None: SIGTERM. See [`ContainerConfig::signal_to_stop`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits for the process before SIGKILL (`--stop-timeout`); None:
    /// [`DEFAULT_STOP_TIMEOUT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// When the monitor starts the container again after its process or VM ended
    /// (`--restart`); records from before restart policies have none.
    #[serde(default, skip_serializing_if = "crate::restart::RestartPolicy::is_no")]
    pub restart: crate::restart::RestartPolicy,
    /// The health check the monitor runs (docker's `Config.Healthcheck`): `--health-*` over
    /// the image's `HEALTHCHECK` ([`crate::health::merge`]); None: none configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<oci::spec::HealthConfig>,
    /// `--sysctl` settings the guest writes in the container's namespaces before its process
    /// starts (checked against docker's list, [`crate::sysctl`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Size of `/dev/shm` in bytes (`--shm-size`); None: [`DEFAULT_SHM_SIZE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// `--cgroupns host`: the guest's cgroup namespace instead of the container's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cgroupns_host: bool,
    /// `--device`: nodes of the guest kernel's own devices made in the container's `/dev`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::devices::DeviceMapping>,
    /// `--masked-path` (Apple's flag): more paths hidden in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    /// `--read-only-path` (Apple's flag): more paths read-only in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    /// `--volumes-from` values as given (docker's `HostConfig.VolumesFrom`); the mounts they
    /// brought are in `mounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// How its output is kept (`--log-driver`, `--log-opt`); records from before log
    /// options have the default (json-file, [`crate::logs::DEFAULT_ROTATION`]).
    #[serde(default, skip_serializing_if = "crate::logs::LogConfig::is_default")]
    pub log: crate::logs::LogConfig,
    /// Its place in a pod (`container pod`, [`crate::pod`]): the pod's infra container, whose
    /// VM the pod's members share, or one of those members. None: a container with a VM of
    /// its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRole>,
    /// A network namespace made by someone else (CNI, for a Kubernetes pod's sandbox) whose
    /// interface the VM takes over ([`net::podnet`]) instead of joining our networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
}

/// A container's part in a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "role")]
pub enum PodRole {
    /// The infra container: its VM is the pod's, its network the pod's network, and its
    /// process only holds them up (vminitd's pause).
    Infra {
        /// The pod's name.
        name: String,
    },
    /// A member: runs in the VM of the infra container `infra` (its id), with a root
    /// filesystem of its own and the pod's network.
    Member {
        /// The infra container's id.
        infra: String,
    },
}

/// docker's `/dev/shm` size when `--shm-size` is not given: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Seconds `stop` waits before SIGKILL when neither `stop -t` nor `--stop-timeout` says (docker's).
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

impl ContainerConfig {
    /// The signal that stops this container: its stop signal, or SIGTERM when it has none or
    /// the image's does not parse (docker falls back the same way; a flag was checked at
    /// create).
    pub fn signal_to_stop(&self) -> i32 {
        self.stop_signal
            .as_deref()
            .and_then(|s| crate::spec::parse_signal(s).ok())
            .unwrap_or(libc::SIGTERM)
    }

    /// How long `stop` waits after the stop signal before SIGKILL.
    pub fn grace_to_stop(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT))
    }
}

/// The record kept in state.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image reference as the user gave it, normalised.
    pub image: String,
    /// Digest of the image manifest.
    pub image_digest: String,
    /// Lifecycle status.
    pub status: Status,
    /// Exit code of the main process (docker's rules: 128+n when killed by signal n).
    pub exit_code: Option<i32>,
    /// Why the container ended, when not by its process's own exit.
    pub exit_reason: Option<String>,
    /// Whether the OOM killer killed a process of the container during its last run
    /// (docker's `OOMKilled`).
    #[serde(default)]
    pub oom_killed: bool,
    /// Its VM is frozen (`container pause`): still `running`, as docker's paused containers
    /// are; set and cleared by its monitor, cleared when the monitor ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Pid of the monitor process while it runs.
    pub monitor_pid: Option<u32>,
    /// Pid of the VM process (QEMU) while it runs.
    pub vm_pid: Option<u32>,
    /// The VM template its VM was restored from (None: booted cold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_template: Option<String>,
    /// Its VM was restored ahead of time and waited in the pool for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vm_prebooted: bool,
    /// When `create` wrote this record.
    pub created: DateTime<Utc>,
    /// When the main process last started.
    pub started: Option<DateTime<Utc>>,
    /// When it last ended.
    pub finished: Option<DateTime<Utc>>,
    /// The effective configuration.
    pub config: ContainerConfig,
    /// Network attachments (filled by the networking layer).
    #[serde(default)]
    pub networks: Vec<serde_json::Value>,
    /// Published ports as bound while the container runs (host ports the kernel chose filled
    /// in); empty when it does not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<net::ports::PortSpec>,
    /// Restarts its restart policy made since a user last started it (docker's
    /// `RestartCount`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
    /// A user stopped or killed it since it was last started (docker's
    /// `HasBeenManuallyStopped`): an `unless-stopped` container then stays down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_by_user: bool,
    /// Its health (docker's `State.Health`) since it first started with a health check;
    /// written by its monitor after each probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a container mounts besides its rootfs (`-v`, `--mount`, `--tmpfs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum MountSpec {
    /// A named volume's filesystem at `target`.
    Volume {
        /// Volume name.
        source: String,
        /// Absolute path in the container.
        target: String,
        /// Mounted read-only in the container.
        readonly: bool,
        /// Made for this container alone (`-v /path`, an image `VOLUME`); deleted with it.
        #[serde(default)]
        anonymous: bool,
        /// Do not fill the volume, while it is empty, with the image's content at `target`
        /// (docker's `nocopy`).
        #[serde(default)]
        nocopy: bool,
    },
    /// A host directory shared through virtiofs at `target`.
    Bind {
        /// Absolute, canonical host directory.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only, enforced by virtiofsd on the host.
        readonly: bool,
        /// For a single file: `source` is its directory (the share) and this its name there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// A host unix socket at `target`: the guest listens there in its stead and each
    /// connection is relayed to the host socket (a socket cannot cross virtiofs).
    Socket {
        /// Absolute, canonical host socket path.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
    },
    /// A fresh tmpfs at `target`.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// mount(8) options (`size=64m`, `mode=1777`, ...).
        options: Vec<String>,
    },
}

impl MountSpec {
    /// The path in the container.
    pub fn target(&self) -> &str {
        match self {
            MountSpec::Volume { target, .. }
            | MountSpec::Bind { target, .. }
            | MountSpec::Socket { target, .. }
            | MountSpec::Tmpfs { target, .. } => target,
        }
    }
}

/// Makes a new random container id: 32 random bytes as 64 hex digits.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// Checks a user-chosen name against docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(name: &str) -> Result<(), StateError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidName(name.to_string()))
    }
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "zesty", "bold", "clever",
];
const NOUNS: &[&str] = &[
    "otter", "falcon", "lynx", "heron", "badger", "marten", "puffin", "gecko", "ibis", "koala",
    "lemur", "newt", "orca", "panda", "quail", "raven", "stoat", "tapir", "vole", "wombat",
];

fn generated_name() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{}_{}{}",
        ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())],
        NOUNS[rng.gen_range(0..NOUNS.len())],
        rng.gen_range(0..1000)
    )
}

/// A held flock; released on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// Takes an exclusive flock on `path`, creating the file.
    pub fn exclusive(path: &Path) -> Result<Lock, StateError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open lock file", path))?;
        FileExt::lock_exclusive(&file).map_err(io_err("lock", path))?;
        Ok(Lock { file })
    }

    /// [`Lock::exclusive`] without waiting: an error when someone holds it.
    pub fn try_exclusive(path: &Path) -> Result<Lock, StateError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open lock file", path))?;
        let held = FileExt::try_lock_exclusive(&file).map_err(io_err("lock", path))?;
        if !held {
            return Err(io_err("lock", path)(std::io::Error::from(
                std::io::ErrorKind::WouldBlock,
            )));
        }
        Ok(Lock { file })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// The container state store under `<root>/containers`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) the store under a state root.
    pub fn open(root: &Path) -> Result<Store, StateError> {
        let dir = root.join("containers");
        private_dir(&dir)?;
        Ok(Store { dir })
    }

    /// Makes (if missing) the directory of a container's sockets, private to its owner.
    pub fn make_socket_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        let dir = self.socket_dir(id);
        if let Some(parent) = dir.parent().filter(|p| *p != self.dir) {
            private_dir(parent)?;
        }
        private_dir(&dir)?;
        Ok(dir)
    }

    /// The state root this store lives under.
    pub fn root(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// The directory holding one subdirectory per container.
    pub fn containers_dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of one container.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Directory of a container's unix sockets (`monitor.sock`, `agent.sock`): the container's
    /// own directory, unless its paths would pass the 108-byte `sun_path` limit (a deep
    /// `--root`); then `<runtime dir>/container-<hash of the store path>/<id prefix>`, where the
    /// runtime dir is /run as root, else $XDG_RUNTIME_DIR, else /tmp.
    pub fn socket_dir(&self, id: &str) -> PathBuf {
        let own = self.dir_of(id);
        if own.join("monitor.sock").as_os_str().len() < SUN_PATH_MAX {
            return own;
        }
        // SAFETY: geteuid has no preconditions.
        let base = if unsafe { libc::geteuid() } == 0 {
            PathBuf::from("/run")
        } else {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
        };
        let hash = fnv1a(self.dir.as_os_str().as_encoded_bytes());
        base.join(format!("container-{hash:016x}"))
            .join(&id[..id.len().min(16)])
    }

    /// Removes a container's sockets (and their directory when it is not the container's own).
    pub fn remove_sockets(&self, id: &str) {
        let dir = self.socket_dir(id);
        let _ = fs::remove_file(dir.join("monitor.sock"));
        let _ = fs::remove_file(dir.join("agent.sock"));
        let _ = fs::remove_file(dir.join("qmp.sock"));
        let _ = fs::remove_file(dir.join(crate::pod::SOCKET));
        if dir != self.dir_of(id) {
            // A directory of its own holds nothing but this container's sockets (virtiofsd's
            // too, which they leave behind when killed).
            let _ = fs::remove_dir_all(&dir);
            if let Some(parent) = dir.parent() {
                // Only succeeds once no other container of this store has sockets there.
                let _ = fs::remove_dir(parent);
            }
        }
    }

    /// Lock guarding state.json of one container.
    pub fn lock(&self, id: &str) -> Result<Lock, StateError> {
        Lock::exclusive(&self.dir_of(id).join("lock"))
    }

    /// Creates a new record, choosing the id and (unless given) the name, refusing a name in use.
    /// `make` receives the id and name and returns the record to write.
    pub fn create(
        &self,
        name: Option<&str>,
        make: impl FnOnce(&str, &str) -> ContainerRecord,
    ) -> Result<ContainerRecord, StateError> {
        if let Some(n) = name {
            validate_name(n)?;
        }
        let _guard = Lock::exclusive(&self.dir.join(".lock"))?;
        let existing = self.list()?;
        let name = match name {
            Some(n) => {
                if let Some(c) = existing.iter().find(|c| c.name == n) {
                    return Err(StateError::NameInUse {
                        name: n.to_string(),
                        id: c.id.clone(),
                    });
                }
                n.to_string()
            }
            None => loop {
                let n = generated_name();
                if !existing.iter().any(|c| c.name == n) {
                    break n;
                }
            },
        };
        let id = new_id();
        let record = make(&id, &name);
        let dir = self.dir_of(&id);
        private_dir(&dir)?;
        if let Err(e) = self.save(&record) {
            // A record that could not be written (a full disk) leaves no directory behind.
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(record)
    }

    /// Writes a record (callers hold [`Store::lock`] when they read-modify-write).
    pub fn save(&self, record: &ContainerRecord) -> Result<(), StateError> {
        self.write_record(record, atomic_file::write_atomic)
    }

    fn write_record(
        &self,
        record: &ContainerRecord,
        write: fn(&Path, &[u8]) -> std::io::Result<()>,
    ) -> Result<(), StateError> {
        let path = self.dir_of(&record.id).join("state.json");
        let json = serde_json::to_vec_pretty(record).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write(&path, &json).map_err(io_err("write", &path))
    }

    /// Reads one record by full id.
    pub fn load(&self, id: &str) -> Result<ContainerRecord, StateError> {
        let path = self.dir_of(id).join("state.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    /// [`Store::update`] without waiting for the disk: for the transitions of a start that a
    /// power cut may roll back (a monitor's pid, a VM's pid) on the start path, where each
    /// fsync cost about 1.5 ms. Crash recovery reads a container caught mid-start from any
    /// of those states as exited.
    pub fn update_unsynced(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, StateError> {
        self.update_with(id, f, atomic_file::write_atomic_unsynced)
    }

    fn update_with(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
        write: fn(&Path, &[u8]) -> std::io::Result<()>,
    ) -> Result<ContainerRecord, StateError> {
        let _guard = self.lock(id)?;
        let mut record = self.load(id)?;
        f(&mut record);
        self.write_record(&record, write)?;
        Ok(record)
    }

    /// Applies `f` to a record under its lock and saves the result.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, StateError> {
        self.update_with(id, f, atomic_file::write_atomic)
    }

    /// All records, oldest first. Directories without a readable state.json (half-deleted) are
    /// skipped.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, StateError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))? {
            let entry = entry.map_err(io_err("read", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".deleting-") {
                // A delete that crashed half-way: finish it.
                let _ = fs::remove_dir_all(entry.path());
                continue;
            }
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            match self.load(name) {
                Ok(r) => out.push(r),
                Err(StateError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes the directories of creates killed between making the directory and renaming
    /// the first record into it: no `state.json`, nothing in them but the dead writer's temp
    /// file (or a lock). Holds the lock [`Store::create`] holds, so a create under way is
    /// never taken for one. Returns the ids removed.
    pub fn remove_unborn(&self) -> Result<Vec<String>, StateError> {
        let _guard = Lock::exclusive(&self.dir.join(".lock"))?;
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))? {
            let entry = entry.map_err(io_err("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let is_id = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_id || !dir.is_dir() || dir.join("state.json").exists() {
                continue;
            }
            atomic_file::remove_dead_writers(&dir, atomic_file::temp_sibling_pid);
            let only_lock = fs::read_dir(&dir)
                .map_err(io_err("read", &dir))?
                .flatten()
                .all(|e| e.file_name() == "lock");
            if only_lock && fs::remove_dir_all(&dir).is_ok() {
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Finds a container by exact name, full id, or unique id prefix (docker's order).
    pub fn resolve(&self, key: &str) -> Result<ContainerRecord, StateError> {
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.name == key || c.id == key) {
            return Ok(c.clone());
        }
        let key_lc = key.to_ascii_lowercase();
        let mut hits = all
            .into_iter()
            .filter(|c| !key.is_empty() && c.id.starts_with(&key_lc));
        match (hits.next(), hits.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(StateError::Ambiguous(key.to_string())),
            _ => Err(StateError::NotFound(key.to_string())),
        }
    }

    /// Removes a container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        match self.retire(id)? {
            Some(doomed) => fs::remove_dir_all(&doomed).map_err(io_err("remove", &doomed)),
            None => Ok(()),
        }
    }

    /// The first half of [`Store::remove`]: the container is gone for every reader once this
    /// returns (its directory renamed to `.deleting-<id>`, which [`Store::list`] finishes off
    /// if nobody else does); the caller deletes the returned directory when it suits it.
    /// `None`: there was nothing to remove.
    pub fn retire(&self, id: &str) -> Result<Option<PathBuf>, StateError> {
        let dir = self.dir_of(id);
        // Nothing mounted under it may be walked into: a pod's share holds its containers'
        // bind mounts of host directories, left mounted if a monitor was killed.
        detach_mounts_under(&dir);
        if let Some(m) = mounts_under(&dir).first() {
            return Err(io_err("remove (still mounted)", m)(
                std::io::Error::from_raw_os_error(libc::EBUSY),
            ));
        }
        // Rename first so a concurrent list never sees a half-removed directory.
        let doomed = self.dir.join(format!(".deleting-{id}"));
        match fs::rename(&dir, &doomed) {
            Ok(()) => Ok(Some(doomed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("rename", &dir)(e)),
        }
    }

    /// Repairs a record whose monitor is gone while the record says it runs: marks it exited
    /// with a reason and kills a VM process left behind. Returns the record as it now is.
    pub fn reconcile(&self, record: ContainerRecord) -> Result<ContainerRecord, StateError> {
        if !needs_reconcile(&record) {
            return Ok(record);
        }
        let _guard = self.lock(&record.id)?;
        let fresh = self.load(&record.id)?;
        self.reconcile_locked(fresh)
    }

    /// [`Store::reconcile`] for a caller that already holds the container's lock.
    pub fn reconcile_locked(&self, record: ContainerRecord) -> Result<ContainerRecord, StateError> {
        if !needs_reconcile(&record) {
            return Ok(record);
        }
        let mut r = record;
        if let Some(vm) = r.vm_pid.take() {
            if process_is(vm, "qemu") {
                // SAFETY: plain kill(2) of a pid we verified is a qemu process.
                unsafe { libc::kill(vm as i32, libc::SIGKILL) };
            }
        }
        if r.status.is_up() {
            r.status = Status::Exited;
            r.exit_code.get_or_insert(crate::EXIT_RUNTIME_FAULT);
            r.exit_reason
                .get_or_insert_with(|| "monitor process died".to_string());
            // Its checks ended with it (docker's CloseMonitorChannel).
            if let Some(h) = &mut r.health {
                h.stopped();
            }
            r.finished.get_or_insert_with(Utc::now);
        }
        r.monitor_pid = None;
        r.paused = false;
        r.ports.clear();
        if let Err(e) = self.save(&r) {
            // A full disk must not make reading state fail: that is when `ls` and `rm -f` are
            // needed to free it. The record on disk still names a dead monitor, so every
            // reader repairs it the same way until a save succeeds.
            tracing::warn!("{}", crate::error_line(&e));
        }
        self.remove_sockets(&r.id);
        if !r.config.networks.is_empty() {
            // The dead monitor left its taps (and possibly others'): remove those of every
            // container whose monitor is gone.
            let alive = |id: &str| {
                id != r.id
                    && self
                        .load(id)
                        .ok()
                        .and_then(|c| c.monitor_pid)
                        .is_some_and(|pid| process_is(pid, crate::MONITOR_SUBCOMMAND))
            };
            // Only a container that holds a lease can have left taps (and only then is there
            // a namespace's worth of networking to touch).
            let cleanup = net::Networks::open(self.root()).and_then(|n| {
                if n.attachments(&r.id)?.is_empty() {
                    return Ok(Vec::new());
                }
                n.cleanup_stale(alive)
            });
            match cleanup {
                Ok(ids) if !ids.is_empty() => tracing::info!("removed stale taps of {ids:?}"),
                Ok(_) => {}
                Err(e) => tracing::warn!("clean up stale networking: {}", crate::error_line(&e)),
            }
        }
        Ok(r)
    }
}

/// Creates `dir` (and its parents) and makes it 0700: containers' records, logs, disks and
/// sockets are their owner's alone (another local user could otherwise read a container's
/// logs or reach its monitor). Existing directories are tightened too.
fn private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let owner = fs::metadata(dir).map_err(io_err("read", dir))?.uid();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // root may work in anyone's root (`sudo container --root ~user/...`); nobody else may.
    if me != 0 && owner != me {
        return Err(StateError::NotOwner {
            path: dir.to_path_buf(),
            owner,
        });
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("set the mode of", dir))
}

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = mount_points("self")
        .into_iter()
        .filter(|p| p.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// The mount points in the mount namespace of process `pid` (`self`: ours), from its
/// mountinfo (whose paths escape a space as `\040`).
pub(crate) fn mount_points(pid: &str) -> Vec<PathBuf> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// Lazily unmounts `path` with everything under it.
pub(crate) fn detach(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: umount2(2) with a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Lazily unmounts everything mounted at or under `dir`.
fn detach_mounts_under(dir: &Path) {
    for m in mounts_under(dir) {
        detach(&m);
    }
}

/// Unix socket paths must be shorter than this (`sun_path` is 108 bytes with the NUL).
pub const SUN_PATH_MAX: usize = 108;

/// FNV-1a, 64 bit: a stable short name for a store path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A record claims a monitor (or a running status) but no monitor process is alive.
fn needs_reconcile(r: &ContainerRecord) -> bool {
    (r.status.is_up() || r.monitor_pid.is_some())
        && !r
            .monitor_pid
            .is_some_and(|pid| process_is(pid, crate::MONITOR_SUBCOMMAND))
}

/// Whether `pid` is alive and its command line contains `needle` (guards against pid reuse).
pub fn process_is(pid: u32, needle: &str) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A zombie is not alive for our purposes.
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmd).contains(needle)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            image_digest: "sha256:00".into(),
            status: Status::Created,
            exit_code: None,
            exit_reason: None,
            oom_killed: false,
            paused: false,
            monitor_pid: None,
            vm_pid: None,
            vm_template: None,
            vm_prebooted: false,
            created: Utc::now(),
            started: None,
            finished: None,
            config: ContainerConfig {
                process: ProcessSpec::default(),
                vm: VmOptions::default(),
                rootfs: "/x".into(),
                rootfs_dir: None,
                auto_remove: false,
                hostname: "h".into(),
                networks: Vec::new(),
                endpoints: Default::default(),
                publish: Vec::new(),
                publish_sockets: Vec::new(),
                mounts: vec![],
                read_only: false,
                resources: Default::default(),
                privileged: false,
                dns: Default::default(),
                extra_hosts: Vec::new(),
                entrypoint: None,
                labels: BTreeMap::new(),
                exposed_ports: Vec::new(),
                stop_signal: None,
                stop_timeout: None,
                restart: Default::default(),
                healthcheck: None,
                sysctls: Default::default(),
                shm_size: None,
                cgroupns_host: false,
                devices: Vec::new(),
                masked_paths: Vec::new(),
                readonly_paths: Vec::new(),
                volumes_from: Vec::new(),
                log: Default::default(),
                pod: None,
                netns: None,
            },
            networks: vec![],
            ports: vec![],
            restart_count: 0,
            stopped_by_user: false,
            health: None,
        }
    }

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
    }

    #[test]
    fn directories_of_killed_creates_are_removed_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let kept = store.create(Some("web"), record).unwrap();
        // A create killed before its rename: its pid is gone (beyond any pid_max).
        let dead = "a".repeat(64);
        fs::create_dir(store.dir_of(&dead)).unwrap();
        fs::write(store.dir_of(&dead).join(".state.json.tmp-99999999-0"), b"{").unwrap();
        fs::write(store.dir_of(&dead).join("lock"), b"").unwrap();
        // One under way: its writer (this process) lives.
        let live = "b".repeat(64);
        fs::create_dir(store.dir_of(&live)).unwrap();
        let temp = format!(".state.json.tmp-{}-0", std::process::id());
        fs::write(store.dir_of(&live).join(&temp), b"{").unwrap();
        assert_eq!(store.remove_unborn().unwrap(), vec![dead.clone()]);
        assert!(!store.dir_of(&dead).exists());
        assert!(store.dir_of(&live).join(&temp).exists());
        assert_eq!(store.load(&kept.id).unwrap().name, "web");
    }

    #[test]
    fn create_refuses_duplicate_names_and_resolves_prefixes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let a = store.create(Some("web"), record).unwrap();
        let err = store.create(Some("web"), record).unwrap_err();
        assert!(matches!(err, StateError::NameInUse { .. }), "{err}");
        let b = store.create(None, record).unwrap();
        assert_ne!(b.name, "web");
        assert_eq!(store.resolve("web").unwrap().id, a.id);
        assert_eq!(store.resolve(&a.id[..8]).unwrap().id, a.id);
        assert_eq!(store.resolve(&b.name).unwrap().id, b.id);
        assert!(matches!(store.resolve("zzz"), Err(StateError::NotFound(_))));
        // The empty prefix matches everything, which is never a valid answer.
        assert!(store.resolve("").is_err());
        assert_eq!(store.list().unwrap().len(), 2);
        store.remove(&a.id).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        // A delete interrupted after its rename is finished by the next list.
        fs::create_dir_all(tmp.path().join("containers/.deleting-x/sub")).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(!tmp.path().join("containers/.deleting-x").exists());
        assert!(!store.dir_of(&a.id).exists());
    }

    #[test]
    fn ambiguous_prefix_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        for id in ["ab".repeat(32), format!("ab{}", "cd".repeat(31))] {
            fs::create_dir_all(store.dir_of(&id)).unwrap();
            store.save(&record(&id, &id[..6])).unwrap();
        }
        assert!(matches!(store.resolve("ab"), Err(StateError::Ambiguous(_))));
        assert!(store.resolve("abab").is_ok());
    }

    #[test]
    fn reconcile_marks_dead_monitor_exited() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut r = store.create(None, record).unwrap();
        r.status = Status::Running;
        // A pid that is certainly not a monitor: our own test process.
        r.monitor_pid = Some(std::process::id());
        store.save(&r).unwrap();
        let fixed = store.reconcile(store.load(&r.id).unwrap()).unwrap();
        assert_eq!(fixed.status, Status::Exited);
        assert_eq!(fixed.exit_code, Some(crate::EXIT_RUNTIME_FAULT));
        assert_eq!(fixed.monitor_pid, None);
        assert!(fixed.exit_reason.unwrap().contains("monitor"));
    }

    #[test]
    fn containers_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        fs::create_dir_all(tmp.path().join("containers")).unwrap();
        fs::set_permissions(
            tmp.path().join("containers"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(mode(store.containers_dir()), 0o700, "tightened on open");
        let r = store.create(None, record).unwrap();
        assert_eq!(mode(&store.dir_of(&r.id)), 0o700);
        let deep = tmp.path().join("b".repeat(60));
        let deep_store = Store::open(&deep).unwrap();
        let dir = deep_store.make_socket_dir(&r.id).unwrap();
        assert_ne!(dir, deep_store.dir_of(&r.id));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(dir.parent().unwrap()), 0o700);
        deep_store.remove_sockets(&r.id);
    }

    #[test]
    fn sockets_move_out_of_deep_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let id = new_id();
        assert_eq!(store.socket_dir(&id), store.dir_of(&id));
        let deep = tmp.path().join("a".repeat(60));
        let store = Store::open(&deep).unwrap();
        let dir = store.socket_dir(&id);
        assert_ne!(dir, store.dir_of(&id));
        assert!(dir.join("monitor.sock").as_os_str().len() < SUN_PATH_MAX);
        assert!(dir.ends_with(&id[..16]));
        // Stable for the same store, different for another.
        assert_eq!(dir, Store::open(&deep).unwrap().socket_dir(&id));
        let other = Store::open(&tmp.path().join("b".repeat(60))).unwrap();
        assert_ne!(dir, other.socket_dir(&id));
    }

    #[test]
    fn records_from_before_restart_policies_load_with_none() {
        let mut v = serde_json::to_value(record(&"a".repeat(64), "old")).unwrap();
        // What such a record lacks; a default policy writes nothing either.
        for k in ["restartCount", "stoppedByUser"] {
            assert!(v.get(k).is_none(), "{k}");
        }
        assert!(v["config"].get("restart").is_none());
        v["config"]["stopTimeout"] = serde_json::json!(3);
        let r: ContainerRecord = serde_json::from_value(v).unwrap();
        assert_eq!(r.config.restart, crate::restart::RestartPolicy::No);
        assert_eq!((r.restart_count, r.stopped_by_user), (0, false));
        let mut r = r;
        r.config.restart = crate::restart::RestartPolicy::OnFailure { max_retries: 4 };
        r.restart_count = 2;
        r.status = Status::Restarting;
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (&v["status"], &v["restartCount"], &v["config"]["restart"]),
            (
                &serde_json::json!("restarting"),
                &serde_json::json!(2),
                &serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 4})
            )
        );
        assert_eq!(serde_json::from_value::<ContainerRecord>(v).unwrap(), r);
    }

    #[test]
    fn update_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let r = store.create(Some("x"), record).unwrap();
        store.update(&r.id, |r| r.exit_code = Some(7)).unwrap();
        assert_eq!(store.load(&r.id).unwrap().exit_code, Some(7));
    }
}
