//! Pods: several containers in one VM (podman's `pod`, a Kubernetes pod's sandbox).
//!
//! A pod is its **infra container** (podman's word): an ordinary container record whose
//! process is vminitd's pause, whose VM is the pod's VM and whose network (addresses,
//! published ports, DNS names) is the pod's. Its monitor mounts the pod's share (a host
//! directory served by virtiofs, tag [`POD_TAG`], at [`GUEST_POD_DIR`]) and shares its
//! agent connection on `pod.sock` in its socket directory (`agent::Client::share`).
//!
//! A **member** is a container whose record names the infra container. Its monitor boots no
//! VM: it connects to `pod.sock` and runs its container in the pod's VM, in namespaces of its
//! own except the network. microvm has no hotplug, so a member's root filesystem cannot be a
//! new disk: its image's ext4 (read-only, shared by every container of that image) and its
//! own upper ext4 (the writes, kept across restarts like a container's disk) are linked into
//! the pod's share as files, and the guest mounts them through loop devices under an
//! overlayfs. Everything a member owns stays in its own directory; the share only holds
//! links, removed with the member.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::container::{Container, ContainerError, ContainerOptions, StopOptions};
use crate::state::{ContainerRecord, PodRole, Status, Store};
use crate::Runtime;

/// The image name an infra container shows: it runs vminitd's pause, from no image.
pub const PAUSE_IMAGE: &str = "pause";

/// The virtiofs tag of a pod's share.
pub const POD_TAG: &str = "pod";

/// Where the pod's share is mounted in its VM.
pub const GUEST_POD_DIR: &str = "/run/pod";

/// The `fstype` of a pod member's root filesystem in [`crate::backend::Guest::mount_rootfs`]:
/// the source is its directory in the guest, the guest mounts the overlay of its files there.
pub const MEMBER_FSTYPE: &str = "pod-member";

/// The shared agent socket in the infra container's socket directory.
pub const SOCKET: &str = "pod.sock";

/// The share's directory under the infra container's directory.
const SHARE_DIR: &str = "pod";

/// The directory of the pod's files under the infra container's directory.
const FILES_DIR: &str = "pod-files";

/// Where a directory member's root filesystem is bound in its share directory.
pub const BUNDLE: &str = "bundle";

/// A member's upper filesystem (its writes) in its own directory.
const UPPER: &str = "upper.ext4";

/// Smallest upper filesystem of a member; larger images get their own size.
const MIN_UPPER: u64 = 1 << 30;

/// Size of the infra container's (empty) root filesystem: it only needs to exist.
const PAUSE_ROOTFS_SIZE: u64 = 8 << 20;

/// Errors of pod operations.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// No pod has that name or id.
    #[error("no such pod: {0}")]
    NotFound(String),
    /// A pod of that name exists already.
    #[error("pod name {0:?} is already in use")]
    NameInUse(String),
    /// The pod name is not a valid name.
    #[error("invalid pod name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    /// A running pod was to be removed without force.
    #[error("pod {0} is running: stop it first, or remove it with -f")]
    Running(String),
    /// A flag that belongs to the pod was given to one of its members.
    #[error("{0}")]
    Member(String),
    /// The pod's VM did not come up for a member.
    #[error("pod {pod}: {message}")]
    NotRunning {
        /// The pod's name.
        pod: String,
        /// What is wrong.
        message: String,
    },
    /// Files of the pod could not be written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The empty filesystem of the pause container could not be made.
    #[error("pause root filesystem: {0}")]
    Format(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PodError {
    let path = path.to_path_buf();
    move |source| PodError::Io { what, path, source }
}

/// The pod's name, if `record` is an infra container.
pub fn infra_name(record: &ContainerRecord) -> Option<&str> {
    match &record.config.pod {
        Some(PodRole::Infra { name }) => Some(name),
        _ => None,
    }
}

/// The infra container's id, if `record` is a pod's member.
pub fn infra_of(record: &ContainerRecord) -> Option<&str> {
    match &record.config.pod {
        Some(PodRole::Member { infra }) => Some(infra),
        _ => None,
    }
}

/// The infra container's name for the pod `name` (unique as container names are, which
/// makes pod names unique too).
pub fn infra_container_name(name: &str) -> String {
    format!("{name}-infra")
}

/// Checks a pod name (the container name rules).
pub fn check_name(name: &str) -> Result<(), PodError> {
    crate::state::validate_name(name).map_err(|_| PodError::InvalidName(name.to_string()))
}

/// Every pod's infra container, oldest first.
pub fn infras(store: &Store) -> Result<Vec<ContainerRecord>, crate::state::StateError> {
    Ok(store
        .list()?
        .into_iter()
        .filter(|r| infra_name(r).is_some())
        .collect())
}

/// The infra container of the pod with this name, id or unique id prefix.
pub fn resolve(store: &Store, key: &str) -> Result<ContainerRecord, PodError> {
    let infras = infras(store).map_err(|_| PodError::NotFound(key.to_string()))?;
    if let Some(r) = infras.iter().find(|r| infra_name(r) == Some(key)) {
        return Ok(r.clone());
    }
    let by_id: Vec<&ContainerRecord> = infras
        .iter()
        .filter(|r| !key.is_empty() && r.id.starts_with(key))
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(PodError::NotFound(key.to_string())),
    }
}

/// The members of the pod whose infra container is `infra`, oldest first.
pub fn members(
    store: &Store,
    infra: &str,
) -> Result<Vec<ContainerRecord>, crate::state::StateError> {
    Ok(store
        .list()?
        .into_iter()
        .filter(|r| infra_of(r) == Some(infra))
        .collect())
}

/// The host directory shared with the pod's VM: [`files_dir`] bound on itself as root (see
/// [`share_mount`]), where members' bind mounts are made.
pub fn share_dir(store: &Store, infra: &str) -> PathBuf {
    store.dir_of(infra).join(SHARE_DIR)
}

/// Where the pod's files are written: the directory [`share_dir`] binds. Hard links cannot
/// cross a mount point, even to the same filesystem, so the members' image and upper files
/// are linked here, never through the share's bind mount.
pub fn files_dir(store: &Store, infra: &str) -> PathBuf {
    store.dir_of(infra).join(FILES_DIR)
}

/// The pod's shared agent socket.
pub fn socket(store: &Store, infra: &str) -> PathBuf {
    store.socket_dir(infra).join(SOCKET)
}

/// A member's name inside the pod's VM: its container id in the guest and its directory in
/// the share (the id's first 12 digits, as a container's guest id).
pub fn guest_name(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The empty root filesystem of every infra container, made once under the state root.
pub fn pause_rootfs(root: &Path) -> Result<PathBuf, PodError> {
    let dir = root.join("pods");
    let path = dir.join("pause.ext4");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    // Made aside and renamed: a concurrent `pod create` or a crash never leaves half a file
    // under the final name.
    let tmp = dir.join(format!(".pause.ext4.{}", std::process::id()));
    ext4::format_empty(&tmp, PAUSE_ROOTFS_SIZE, &Default::default()).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PodError::Format(e.to_string())
    })?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    Ok(path)
}

/// A member's disks as the guest sees them, in the pod's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDisks {
    /// The infra container's id.
    pub infra: String,
    /// Its directory in the guest: `base.ext4`, `upper.ext4`, and the mount points.
    pub guest_dir: String,
    /// Its directory in the share on the host (removed with the member).
    pub host_dir: PathBuf,
    /// Its root filesystem is a host directory bound at `bundle/` (the containerd shim's),
    /// not an image's ext4 and an upper ext4.
    pub directory: bool,
}

/// Links a member's image filesystem and its upper filesystem (made on first use, sized as
/// its image's with at least [`MIN_UPPER`], sparse) into the pod's share.
pub fn attach_disks(store: &Store, record: &ContainerRecord) -> Result<MemberDisks, PodError> {
    let infra = infra_of(record)
        .ok_or_else(|| PodError::Member(format!("{} is not in a pod", record.name)))?
        .to_string();
    let name = guest_name(&record.id);
    let host_dir = files_dir(store, &infra).join(name);
    let mount_dir = share_dir(store, &infra).join(name);
    if let Some(rootfs) = &record.config.rootfs_dir {
        // A directory (the containerd shim's bundle rootfs): bound into the share as it is.
        std::fs::create_dir_all(host_dir.join(BUNDLE)).map_err(io("create", &host_dir))?;
        let monitor = pod_monitor(store, &infra)
            .filter(|pid| is_mount_point_of(&pid.to_string(), &share_dir(store, &infra)))
            .ok_or_else(|| PodError::NotRunning {
                pod: infra.clone(),
                message: "its share is not mounted (a pod's directory containers need root)".into(),
            })?;
        let target = cstr(&mount_dir.join(BUNDLE))?;
        let ops = [
            MountOp::Detach {
                target: target.clone(),
            },
            MountOp::Bind {
                src: cstr(rootfs)?,
                dst: target,
                readonly: false,
            },
        ];
        in_mount_ns(monitor, &ops)
            .map_err(io("bind the root filesystem into the pod's share", rootfs))?;
        bind_sources(store, &infra, name, &record.config.mounts)?;
        return Ok(MemberDisks {
            infra,
            guest_dir: format!("{GUEST_POD_DIR}/{name}"),
            host_dir,
            directory: true,
        });
    }
    let upper = store.dir_of(&record.id).join(UPPER);
    if !upper.exists() {
        let base_len = std::fs::metadata(&record.config.rootfs)
            .map_err(io("read", &record.config.rootfs))?
            .len();
        let tmp = upper.with_extension("ext4.tmp");
        ext4::format_empty(&tmp, base_len.max(MIN_UPPER), &Default::default()).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PodError::Format(e.to_string())
        })?;
        std::fs::rename(&tmp, &upper).map_err(io("rename", &upper))?;
    }
    // Kept from one start to the next while the pod lives: the guest caches what it looked
    // up in the share, and a directory made again is another inode, whose old handle the
    // guest would use and get ESTALE for. The links are the same files every time.
    std::fs::create_dir_all(&host_dir).map_err(io("create", &host_dir))?;
    link(&record.config.rootfs, &host_dir.join("base.ext4"))?;
    link(&upper, &host_dir.join(UPPER))?;
    bind_sources(store, &infra, name, &record.config.mounts)?;
    Ok(MemberDisks {
        infra,
        guest_dir: format!("{GUEST_POD_DIR}/{name}"),
        host_dir,
        directory: false,
    })
}

/// Makes the pod's share a mount point of its own in a shared peer group, before its
/// virtiofsd starts: virtiofsd sandboxes itself in a mount namespace that is a slave of ours,
/// so the members' bind mounts made under the share afterwards reach it (and the guest).
pub fn share_mount(files: &Path, dir: &Path) -> Result<(), PodError> {
    let path = cstr(dir)?;
    let source = cstr(files)?;
    if !is_mount_point(dir) {
        // SAFETY: mount(2) with valid C strings and null filesystem type and data.
        let r = unsafe {
            libc::mount(
                source.as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(io("bind-mount the pod's share", dir)(
                std::io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: as above; only the propagation flag changes.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io("share the pod's share", dir)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Undoes [`share_mount`] and every member bind still under it (the pod's VM is gone).
pub fn unshare_mount(dir: &Path) {
    if is_mount_point(dir) {
        crate::state::detach(dir);
    }
}

fn cstr(p: &Path) -> Result<std::ffi::CString, PodError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| PodError::Io {
        what: "use",
        path: p.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

/// Whether `dir` is a mount point in our mount namespace.
fn is_mount_point(dir: &Path) -> bool {
    is_mount_point_of("self", dir)
}

/// Whether `dir` is a mount point in the mount namespace of process `pid` (`self`: ours).
fn is_mount_point_of(pid: &str, dir: &Path) -> bool {
    let Some(dir) = canonical(dir) else {
        return false;
    };
    crate::state::mount_points(pid).contains(&dir)
}

/// `path` with its longest existing ancestor resolved: the rest may exist only in another
/// mount namespace (under the share, mounted in the pod monitor's).
fn canonical(path: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(c) = at.canonicalize() {
            return Some(rest.iter().rev().fold(c, |p, n| p.join(n)));
        }
        rest.push(at.file_name()?.to_os_string());
        at = at.parent()?;
    }
}

/// A mount operation on the pod's share.
enum MountOp {
    /// Bind `src` (recursively) on `dst`, read-only with `readonly`.
    Bind {
        src: std::ffi::CString,
        dst: std::ffi::CString,
        readonly: bool,
    },
    /// Lazily unmount `target`.
    Detach { target: std::ffi::CString },
}

/// Runs `ops` in the mount namespace of process `pid`: the pod's monitor, whose virtiofsd
/// serves the share and sees only what is mounted in its namespace (which need not be ours:
/// `ip netns exec` gives each command a mount namespace of its own). A multi-threaded process
/// cannot enter another mount namespace, so a forked child does, makes only syscalls, and
/// exits with the errno of the first bind that failed.
fn in_mount_ns(pid: u32, ops: &[MountOp]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    // SAFETY: fork; the child only makes async-signal-safe syscalls on data prepared before
    // the fork, then _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: syscalls on valid descriptors and C strings; _exit never returns.
        unsafe {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            for op in ops {
                match op {
                    MountOp::Bind { src, dst, readonly } => {
                        let mut flags = libc::MS_BIND | libc::MS_REC;
                        let none = std::ptr::null();
                        if libc::mount(src.as_ptr(), dst.as_ptr(), none, flags, none.cast()) != 0 {
                            libc::_exit(*libc::__errno_location());
                        }
                        if *readonly {
                            flags |= libc::MS_REMOUNT | libc::MS_RDONLY;
                            if libc::mount(none, dst.as_ptr(), none, flags, none.cast()) != 0 {
                                let e = *libc::__errno_location();
                                libc::umount2(dst.as_ptr(), libc::MNT_DETACH);
                                libc::_exit(e);
                            }
                        }
                    }
                    MountOp::Detach { target } => {
                        libc::umount2(target.as_ptr(), libc::MNT_DETACH);
                    }
                }
            }
            libc::_exit(0)
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(child, &mut status, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(errno) => Err(std::io::Error::from_raw_os_error(errno)),
        None => Err(std::io::Error::other("the mount helper was killed")),
    }
}

/// The pid of the pod's monitor (the infra container's), whose mount namespace has the share.
fn pod_monitor(store: &Store, infra: &str) -> Option<u32> {
    store.load(infra).ok()?.monitor_pid
}

/// Binds a member's bind-mount sources under its directory in the pod's share (`binds/<n>`,
/// in mount order; a file's directory for a file bind), read-only ones read-only.
fn bind_sources(
    store: &Store,
    infra: &str,
    name: &str,
    mounts: &[crate::state::MountSpec],
) -> Result<(), PodError> {
    let host_dir = files_dir(store, infra).join(name);
    let mount_dir = share_dir(store, infra).join(name);
    // A single file is bound as itself (onto an empty file), not through its directory:
    // a directory bound recursively could hold the state root, this share included.
    let binds: Vec<(PathBuf, bool, bool)> = mounts
        .iter()
        .filter_map(|m| match m {
            crate::state::MountSpec::Bind {
                source,
                readonly,
                file,
                ..
            } => Some(match file {
                Some(name) => (source.join(name), *readonly, true),
                None => (source.clone(), *readonly, false),
            }),
            _ => None,
        })
        .collect();
    if binds.is_empty() {
        return Ok(());
    }
    let share = share_dir(store, infra);
    let monitor = pod_monitor(store, infra)
        .filter(|pid| is_mount_point_of(&pid.to_string(), &share))
        .ok_or_else(|| {
            PodError::Member(
                "bind mounts of a pod's containers reach its VM through the pod's share, which \
                 only a pod run as root has: run the pod as root, or drop the bind mounts"
                    .into(),
            )
        })?;
    let mut ops = Vec::new();
    let binds_dir = host_dir.join("binds");
    std::fs::create_dir_all(&binds_dir).map_err(io("create", &binds_dir))?;
    for (i, (source, readonly, file)) in binds.into_iter().enumerate() {
        // Made through the files' path, mounted on through the share's (the same directory).
        let point = binds_dir.join(i.to_string());
        let made = if file {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&point)
                .map(drop)
        } else {
            std::fs::create_dir_all(&point)
        };
        made.map_err(io("create", &point))?;
        let target = mount_dir.join("binds").join(i.to_string());
        // A bind left by a monitor that died: replaced, never stacked.
        ops.push(MountOp::Detach {
            target: cstr(&target)?,
        });
        ops.push(MountOp::Bind {
            src: cstr(&source)?,
            dst: cstr(&target)?,
            readonly,
        });
    }
    in_mount_ns(monitor, &ops).map_err(|e| {
        release_in(monitor, &host_dir, &mount_dir);
        io("bind a source into the pod's share", &mount_dir)(e)
    })
}

/// Unmounts whatever is bound under `binds/` of a member's share directory, in the pod's
/// monitor's mount namespace.
fn release_in(monitor: u32, host_dir: &Path, mount_dir: &Path) {
    let pid = monitor.to_string();
    let ops: Vec<MountOp> = mounted_in(&pid, host_dir, mount_dir)
        .iter()
        .filter_map(|p| cstr(p).ok())
        .map(|target| MountOp::Detach { target })
        .collect();
    if !ops.is_empty() {
        if let Err(e) = in_mount_ns(monitor, &ops) {
            tracing::warn!("unmount binds under {}: {e}", mount_dir.display());
        }
    }
}

/// What of a member's share directory is mounted in the namespace of `pid`: its binds and
/// its bundle.
fn mounted_in(pid: &str, host_dir: &Path, mount_dir: &Path) -> Vec<PathBuf> {
    // Listed through the files' path (the share may not be mounted in our namespace), checked
    // and unmounted through the share's.
    let binds = std::fs::read_dir(host_dir.join("binds"))
        .map(|d| {
            d.flatten()
                .map(|e| mount_dir.join("binds").join(e.file_name()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    binds
        .into_iter()
        .chain([mount_dir.join(BUNDLE)])
        .filter(|p| is_mount_point_of(pid, p))
        .collect()
}

/// Unmounts a member's binds from the pod's share (it stopped: the sources are free again).
pub fn release_binds(store: &Store, record: &ContainerRecord) {
    let Some(infra) = infra_of(record) else {
        return;
    };
    // No monitor: the pod's mount namespace, and the binds in it, went with it.
    if let Some(monitor) = pod_monitor(store, infra) {
        let name = guest_name(&record.id);
        release_in(
            monitor,
            &files_dir(store, infra).join(name),
            &share_dir(store, infra).join(name),
        );
    }
}

/// A hard link: the same file, so the image's pages stay shared in the host's cache (the
/// state root is one filesystem).
fn link(from: &Path, to: &Path) -> Result<(), PodError> {
    if let (Ok(a), Ok(b)) = (std::fs::metadata(from), std::fs::metadata(to)) {
        use std::os::unix::fs::MetadataExt;
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Ok(());
        }
        let _ = std::fs::remove_file(to);
    }
    // Never a copy when the link cannot be made: the files are sparse images of gigabytes.
    std::fs::hard_link(from, to).map_err(io("link into the pod's files", from))
}

/// Removes a member's directory from the pod's share (when the member is deleted); kept if
/// one of its binds is still mounted, rather than walking into a host directory.
pub fn detach_disks(store: &Store, record: &ContainerRecord) {
    release_binds(store, record);
    if let Some(infra) = infra_of(record) {
        let name = guest_name(&record.id);
        let dir = files_dir(store, infra).join(name);
        let mount_dir = share_dir(store, infra).join(name);
        let pid = pod_monitor(store, infra).map_or("self".to_string(), |p| p.to_string());
        let mounted = !mounted_in(&pid, &dir, &mount_dir).is_empty()
            || !mounted_in("self", &dir, &mount_dir).is_empty();
        if !mounted {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A pod: its infra container and its members, as they were when looked up.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The infra container (its id is the pod's).
    pub infra: Container,
    /// Its members, oldest first.
    pub members: Vec<Container>,
}

impl Pod {
    /// The pod's name.
    pub fn name(&self) -> &str {
        infra_name(self.infra.record()).unwrap_or_default()
    }

    /// The pod's id (its infra container's).
    pub fn id(&self) -> &str {
        self.infra.id()
    }

    /// The pod's status: its infra container's (its VM's).
    pub fn status(&self) -> Status {
        self.infra.status()
    }

    /// The pod as `pod inspect` shows it (podman's keys), plus its VM and network.
    pub fn inspect(&self) -> serde_json::Value {
        let r = self.infra.record();
        let containers: Vec<serde_json::Value> = self
            .members
            .iter()
            .map(|c| {
                serde_json::json!({
                    "Id": c.id(),
                    "Name": c.name(),
                    "State": c.status().to_string(),
                })
            })
            .collect();
        serde_json::json!({
            "Id": self.id(),
            "Name": self.name(),
            "Created": r.created,
            "State": self.status().to_string(),
            "Hostname": r.config.hostname,
            "Labels": r.config.labels,
            "InfraContainerID": self.infra.id(),
            "InfraContainerName": self.infra.name(),
            "NumContainers": self.members.len(),
            "Containers": containers,
            "VM": {
                "Cpus": r.config.vm.cpus,
                "MemoryMib": r.config.vm.memory_mib,
                "Pid": r.vm_pid,
            },
            "Networks": r.networks,
            "Ports": r.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        })
    }

    /// Starts the pod's VM (its infra container) and then every member that does not run.
    pub async fn start(&self) -> Result<(), ContainerError> {
        let store = self.infra.runtime().store();
        // A VM that just died may still be recorded as running while its monitor winds down:
        // its socket no longer answers. Wait for it to be down, then start it again.
        if self.infra.status().is_up()
            && std::os::unix::net::UnixStream::connect(socket(store, self.id())).is_err()
        {
            let _ = crate::client::wait_stopped(store, self.id(), Duration::from_secs(30)).await;
        }
        self.infra.start_unless_running().await?;
        let mut first_error = None;
        for m in &self.members {
            if let Err(e) = m.start_unless_running().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every member (at once, each with its own stop signal and timeout unless
    /// `opts` says), then the pod's VM.
    pub async fn stop(&mut self, opts: StopOptions) -> Result<(), ContainerError> {
        let mut tasks = tokio::task::JoinSet::new();
        for m in self.members.clone() {
            let mut m = m;
            tasks.spawn(async move { m.stop(opts).await.map(|_| ()) });
        }
        let mut first_error = None;
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.infra.stop(opts).await.map(|_| ())
    }

    /// Deletes the members and the pod; a running pod only with `force` (killed first).
    pub async fn delete(self, force: bool) -> Result<(), ContainerError> {
        if !force {
            for c in self.members.iter().chain([&self.infra]) {
                if c.status().is_up() {
                    return Err(PodError::Running(self.name().to_string()).into());
                }
            }
        }
        for m in self.members {
            m.delete(force).await?;
        }
        self.infra.delete(force).await
    }
}

impl Runtime {
    /// Creates a pod named `name` (its infra container, status `created`): `opts` gives its
    /// network, published ports, VM size (`resources`, `kernel`, `accel`), hostname, DNS
    /// and labels; its image, command and mounts are the pod's own.
    pub async fn pod_create(
        &self,
        name: &str,
        opts: ContainerOptions,
    ) -> Result<Pod, ContainerError> {
        check_name(name)?;
        if !opts.mounts.is_empty() || !opts.volumes_from.is_empty() {
            return Err(PodError::Member(
                "a pod takes no volumes or bind mounts (give --tmpfs mounts to its containers)"
                    .into(),
            )
            .into());
        }
        if opts.pod.is_some() {
            return Err(PodError::Member("a pod cannot be in a pod".into()).into());
        }
        let store = self.store();
        if resolve(store, name).is_ok() {
            return Err(PodError::NameInUse(name.to_string()).into());
        }
        let root = self.root();
        let rootfs = pause_rootfs(root)?;
        let opts = ContainerOptions {
            name: Some(infra_container_name(name)),
            image: PAUSE_IMAGE.into(),
            // A directory that exists, so that no image is resolved; the rootfs is set below.
            rootfs_dir: Some(root.join("pods")),
            process: crate::spec::ProcessOptions {
                args: vec![PAUSE_IMAGE.into()],
                ..Default::default()
            },
            ..opts
        };
        let mut req = crate::container::prepare(root, opts, &Default::default()).await?;
        req.rootfs_dir = None;
        req.rootfs = rootfs;
        req.vm.overlay = true;
        // Templates serve VMs without virtiofs only; the pod's share needs one.
        req.vm.no_template = true;
        req.pod = Some(PodRole::Infra {
            name: name.to_string(),
        });
        let record = match crate::container::create_record(store, req) {
            Ok(r) => r,
            Err(ContainerError::State(crate::state::StateError::NameInUse { .. })) => {
                return Err(PodError::NameInUse(name.to_string()).into())
            }
            Err(e) => return Err(e),
        };
        // vminitd's pause: its init with no command.
        let record = store.update(&record.id, |r| {
            r.config.process.args.clear();
            r.config.process.init = true;
            r.config.entrypoint = Some(Vec::new());
        })?;
        crate::events::Journal::new(root)
            .record(&crate::events::Event::container("create", &record));
        self.pod(&record.id)
    }

    /// The pod with this name, id or unique id prefix.
    pub fn pod(&self, key: &str) -> Result<Pod, ContainerError> {
        let infra = resolve(self.store(), key)?;
        let members = members(self.store(), &infra.id)?
            .iter()
            .map(|r| self.container(&r.id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pod {
            infra: self.container(&infra.id)?,
            members,
        })
    }

    /// Every pod, oldest first.
    pub fn pods(&self) -> Result<Vec<Pod>, ContainerError> {
        infras(self.store())?
            .iter()
            .map(|r| self.pod(&r.id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_names_are_short_ids() {
        assert_eq!(guest_name("0123456789abcdef"), "0123456789ab");
        assert_eq!(guest_name("abc"), "abc");
        assert_eq!(infra_container_name("web"), "web-infra");
    }

    #[test]
    fn the_pause_rootfs_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = pause_rootfs(dir.path()).unwrap();
        let modified = std::fs::metadata(&a).unwrap().modified().unwrap();
        let b = pause_rootfs(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::metadata(&b).unwrap().modified().unwrap(), modified);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("pods"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pause.ext4"]);
    }
}
