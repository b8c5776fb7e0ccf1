//! The bundle's OCI runtime spec (`config.json`) as the runtime's [`ContainerOptions`]: what a
//! VM of ours can honour of it, and the list of what it cannot (logged at create). docs/shim.md
//! has the table.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Process, Spec};
use runtime::container::ContainerOptions;
use runtime::spec::{ProcessOptions, ProcessSpec};
use runtime::state::MountSpec;

/// Labels the shim puts on its containers, to find them again by bundle (the `delete`
/// action of a later shim) and to show where they came from.
pub const LABEL_BUNDLE: &str = "io.containerd.container.v2.bundle";
/// The containerd namespace of the task.
pub const LABEL_NAMESPACE: &str = "io.containerd.container.v2.namespace";
/// The containerd id of the task.
pub const LABEL_ID: &str = "io.containerd.container.v2.id";

/// Mount points every container of ours gets from vminitd itself (proc, sysfs, a fresh /dev
/// with devpts, shm and mqueue); the spec's entries for them are satisfied, not mapped.
const GUEST_OWN_MOUNTS: &[&str] = &[
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
];

/// tmpfs options that vminitd's mount passes on and tmpfs accepts; others (`strictatime`,
/// ...) are dropped.
const TMPFS_OPTIONS: &[&str] = &["ro", "rw", "nosuid", "nodev", "noexec", "exec"];
const TMPFS_DATA: &[&str] = &["size=", "mode=", "uid=", "gid=", "nr_inodes="];

/// Errors reading a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// config.json is missing or not a runtime spec.
    #[error("read {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The spec has no process or no args.
    #[error("the spec has no process to run (process.args is empty)")]
    NoProcess,
    /// An exec's process is not a runtime-spec process.
    #[error("exec process spec: {0}")]
    ExecProcess(String),
}

/// Where the task comes from: names and the files containerd handed over.
#[derive(Debug, Clone)]
pub struct TaskOrigin<'a> {
    /// containerd namespace.
    pub namespace: &'a str,
    /// containerd task id.
    pub id: &'a str,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// The root filesystem directory (mounted already).
    pub rootfs: &'a Path,
    /// Whether containerd gave a stdin.
    pub stdin: bool,
    /// Whether the process runs on a terminal.
    pub terminal: bool,
}

/// Reads `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| SpecError::Load {
        path,
        message: e.to_string(),
    })
}

/// The container name for a task: unique per namespace and id, and a valid name of ours.
pub fn container_name(namespace: &str, id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("ctrd-{}-{}", clean(namespace), clean(id))
}

/// CRI's annotation naming what a container is in its pod: `sandbox` or `container`.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI's annotation naming the pod (its sandbox's id) a container belongs to.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// What containerd's CRI plugin made a task: a pod's sandbox, a container of a pod, or
/// neither (`ctr run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriRole {
    /// A plain task: a VM of its own.
    None,
    /// The sandbox of pod `id`: it becomes the pod (our infra container and its VM).
    Sandbox {
        /// The sandbox id (the pod's name with us).
        id: String,
    },
    /// A container of pod `sandbox`: it runs in the pod's VM.
    Container {
        /// The sandbox id.
        sandbox: String,
    },
}

/// The spec's network namespace entry, if it has one.
fn network_entry(spec: &Spec) -> Option<&oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
}

/// The path of the network namespace the spec asks to join, if any.
fn network_namespace(spec: &Spec) -> Option<PathBuf> {
    network_entry(spec)?.path().clone()
}

/// Whether the spec keeps the host's network: no network namespace at all, which is how CRI
/// asks for a `hostNetwork` pod (every other pod's sandbox names the namespace CNI set up).
pub fn host_network(spec: &Spec) -> bool {
    network_entry(spec).is_none()
}

/// The task's part in a CRI pod, from the annotations CRI puts on every spec.
pub fn cri_role(spec: &Spec) -> CriRole {
    let Some(a) = spec.annotations() else {
        return CriRole::None;
    };
    let sandbox = a.get(CRI_SANDBOX_ID).filter(|s| !s.is_empty());
    match (a.get(CRI_CONTAINER_TYPE).map(String::as_str), sandbox) {
        (Some("sandbox"), Some(id)) => CriRole::Sandbox { id: id.clone() },
        (Some("container"), Some(sandbox)) => CriRole::Container {
            sandbox: sandbox.clone(),
        },
        _ => CriRole::None,
    }
}

/// The runtime's options for the task's container, and the spec fields that were not honoured
/// (one line each, for the log).
pub fn container_options(spec: &Spec, origin: &TaskOrigin<'_>) -> (ContainerOptions, Vec<String>) {
    let mut ignored = Vec::new();
    let mut opts = ContainerOptions {
        name: Some(container_name(origin.namespace, origin.id)),
        image: format!("containerd:{}/{}", origin.namespace, origin.id),
        rootfs_dir: Some(origin.rootfs.to_path_buf()),
        // A new network namespace from containerd has only loopback (CNI, for CRI, is not
        // supported yet); a VM without a network device is the same.
        networks: vec!["none".into()],
        ..Default::default()
    };
    if let Some(process) = spec.process() {
        opts.process = process_options(process, origin.stdin, origin.terminal, &mut ignored);
    }
    opts.hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if let Some(root) = spec.root() {
        opts.read_only = root.readonly().unwrap_or(false);
    }
    for m in spec.mounts().iter().flatten() {
        match mount(m) {
            Ok(Some(spec)) => opts.mounts.push(spec),
            Ok(None) => {}
            Err(why) => ignored.push(why),
        }
    }
    if let Some(linux) = spec.linux() {
        if let Some(r) = linux.resources() {
            opts.resources = resource_flags(r, &mut ignored);
            if r.devices().as_ref().is_some_and(|d| d.len() > 1) {
                ignored.push("linux.resources.devices (the guest's /dev is our own)".into());
            }
        }
        if linux.seccomp().is_some() {
            ignored.push("linux.seccomp (the VM is the boundary)".into());
        }
        if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
            ignored.push("linux.sysctl".into());
        }
        if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) {
            ignored.push("linux.uidMappings/gidMappings (user namespaces)".into());
        }
    }
    if spec.hooks().is_some() {
        ignored.push("hooks".into());
    }
    match cri_role(spec) {
        CriRole::None => {}
        CriRole::Sandbox { .. } => {
            // The pod is our infra container: vminitd's pause in the pod's VM, whatever the
            // sandbox image's process; the pod's files are its containers' own.
            ignored.push(
                "the sandbox's process, root filesystem and mounts (the pod's VM runs our pause)"
                    .into(),
            );
            opts.mounts.clear();
            pod_resources(spec, &mut opts);
            // CNI networked the pod's namespace: the pod's VM takes its interface over.
            opts.netns = network_namespace(spec);
            if opts.netns.is_some() {
                opts.networks.clear();
            }
        }
        CriRole::Container { sandbox } => {
            // The pod's VM has the network and the name; CRI's namespace paths point into
            // the sandbox's task, which our runtime joins by the pod instead.
            opts.pod = Some(sandbox);
            opts.networks.clear();
            if opts.hostname.take().is_some() {
                ignored.push("hostname (the pod's)".into());
            }
        }
    }
    opts.labels.insert(
        LABEL_BUNDLE.into(),
        origin.bundle.to_string_lossy().into_owned(),
    );
    opts.labels
        .insert(LABEL_NAMESPACE.into(), origin.namespace.into());
    opts.labels.insert(LABEL_ID.into(), origin.id.into());
    (opts, ignored)
}

/// The limits of `r` we apply (the container cgroup's memory, CPU quota and pids in the guest,
/// which also size a task's VM at create); what is left out goes to `ignored`.
pub fn resource_flags(
    r: &oci_spec::runtime::LinuxResources,
    ignored: &mut Vec<String>,
) -> runtime::resources::ResourceFlags {
    let mut flags = runtime::resources::ResourceFlags::default();
    if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()) {
        flags.memory_bytes = u64::try_from(limit).ok().filter(|l| *l > 0);
    }
    if let Some(cpu) = r.cpu() {
        if let (Some(quota), Some(period)) = (cpu.quota(), cpu.period()) {
            flags.cpus = quota_cpus(u64::try_from(quota).unwrap_or(0), period);
        }
        if cpu.shares().is_some() || cpu.cpus().is_some() {
            ignored.push("linux.resources.cpu.shares/cpus (one VM per task)".into());
        }
    }
    if let Some(pids) = r.pids() {
        flags.pids_limit = Some(pids.limit()).filter(|l| *l > 0);
    }
    flags
}

/// CRI's annotations on a sandbox with the pod's resources: kubelet (1.23 and later) sums its
/// containers' limits and the RuntimeClass's overhead into the sandbox's config, and
/// containerd (1.6.7 and later) passes them on in these.
pub const CRI_SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
/// See [`CRI_SANDBOX_MEMORY`]: the pod's CPU quota, in microseconds per period.
pub const CRI_SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
/// See [`CRI_SANDBOX_MEMORY`]: the period of the pod's CPU quota, in microseconds.
pub const CRI_SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";

/// Sizes the pod's VM from the pod's resources, as the sandbox's annotations give them: its
/// memory is the pod's limit plus the guest's own overhead, its vCPUs the quota rounded up.
/// Without them (a pod with a container without limits) the VM has the default size.
fn pod_resources(spec: &Spec, opts: &mut ContainerOptions) {
    let Some(a) = spec.annotations() else {
        return;
    };
    let num = |key: &str| {
        a.get(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v > 0)
    };
    if let Some(memory) = num(CRI_SANDBOX_MEMORY) {
        opts.resources.memory_bytes = Some(memory);
    }
    if let (Some(quota), Some(period)) = (num(CRI_SANDBOX_CPU_QUOTA), num(CRI_SANDBOX_CPU_PERIOD)) {
        opts.resources.cpus = quota_cpus(quota, period);
    }
}

/// CPUs of a CFS quota per period (both in microseconds); None unless both are positive.
fn quota_cpus(quota: u64, period: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)] // microseconds, far below 2^52
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// The process fields we run: args, env, cwd, uid:gid, terminal, capabilities (the bounding
/// set, which runc's effective/permitted sets are part of).
fn process_options(
    p: &Process,
    stdin: bool,
    terminal: bool,
    ignored: &mut Vec<String>,
) -> ProcessOptions {
    let user = p.user();
    let mut opts = ProcessOptions {
        args: p.args().clone().unwrap_or_default(),
        // An empty image config and no entrypoint: the args are the whole command.
        entrypoint: None,
        env: p.env().clone().unwrap_or_default(),
        workdir: Some(p.cwd().to_string_lossy().into_owned()),
        user: Some(format!("{}:{}", user.uid(), user.gid())),
        terminal,
        open_stdin: stdin,
        console_size: p.console_size().map(|b| {
            (
                u16::try_from(b.height()).unwrap_or(u16::MAX),
                u16::try_from(b.width()).unwrap_or(u16::MAX),
            )
        }),
        ..Default::default()
    };
    if user
        .additional_gids()
        .as_ref()
        .is_some_and(|g| !g.is_empty())
    {
        ignored.push("process.user.additionalGids".into());
    }
    if let Some(caps) = p.capabilities().as_ref().and_then(|c| c.bounding().clone()) {
        opts.cap_drop = vec!["ALL".into()];
        opts.cap_add = caps
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        opts.cap_add.sort();
    }
    match rlimits(p) {
        Ok(limits) => opts.ulimits = limits,
        Err(e) => ignored.push(format!("process.rlimits ({e})")),
    }
    if p.apparmor_profile().is_some() || p.selinux_label().is_some() {
        ignored.push("process.apparmorProfile/selinuxLabel".into());
    }
    if p.no_new_privileges().unwrap_or(false) {
        ignored.push("process.noNewPrivileges".into());
    }
    opts
}

/// The spec's `process.rlimits` as ours (applied by the guest before exec, as runc does).
fn rlimits(p: &Process) -> Result<Vec<runtime::ulimit::Ulimit>, runtime::ulimit::UlimitError> {
    p.rlimits()
        .iter()
        .flatten()
        .map(|r| {
            let kind = serde_json::to_value(r.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            runtime::ulimit::Ulimit::from_oci(&kind, r.soft(), r.hard())
        })
        .collect()
}

/// An exec's process (the `spec` of `ExecProcessRequest`, a runtime-spec `Process` in JSON)
/// as the process to start in the running container.
pub fn exec_process(json: &[u8], stdin: bool, terminal: bool) -> Result<ProcessSpec, SpecError> {
    let p: Process =
        serde_json::from_slice(json).map_err(|e| SpecError::ExecProcess(e.to_string()))?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(SpecError::NoProcess);
    }
    let user = p.user();
    let capabilities = p
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .map(|caps| {
            let mut v: Vec<String> = caps
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            v.sort();
            v
        });
    Ok(ProcessSpec {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().to_string_lossy().into_owned(),
        user: format!("{}:{}", user.uid(), user.gid()),
        terminal,
        open_stdin: stdin,
        console_size: None,
        capabilities,
        init: false,
        rlimits: rlimits(&p).map_err(|e| SpecError::ExecProcess(e.to_string()))?,
    })
}

/// One spec mount as ours: `Ok(None)` for what the guest provides itself, `Err` (the reason)
/// for what cannot be mapped.
fn mount(m: &Mount) -> Result<Option<MountSpec>, String> {
    let target = m.destination().to_string_lossy().into_owned();
    let options = m.options().clone().unwrap_or_default();
    let kind = m.typ().clone().unwrap_or_default();
    let is_bind = kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    if is_bind {
        let Some(source) = m.source() else {
            return Err(format!("mount {target}: a bind mount without a source"));
        };
        let readonly = options.iter().any(|o| o == "ro");
        let meta = std::fs::metadata(source)
            .map_err(|e| format!("mount {target}: source {}: {e}", source.display()))?;
        let source = source
            .canonicalize()
            .map_err(|e| format!("mount {target}: source {}: {e}", source.display()))?;
        if meta.is_dir() {
            return Ok(Some(MountSpec::Bind {
                source,
                target,
                readonly,
                file: None,
            }));
        }
        // A file is reached through its directory, shared as a whole (as `-v FILE:PATH`).
        let (Some(dir), Some(name)) = (source.parent(), source.file_name()) else {
            return Err(format!("mount {target}: cannot share {}", source.display()));
        };
        return Ok(Some(MountSpec::Bind {
            source: dir.to_path_buf(),
            target,
            readonly,
            file: Some(name.to_string_lossy().into_owned()),
        }));
    }
    if GUEST_OWN_MOUNTS.contains(&target.as_str()) {
        return Ok(None);
    }
    if kind == "tmpfs" {
        let options = options
            .into_iter()
            .filter(|o| {
                TMPFS_OPTIONS.contains(&o.as_str()) || TMPFS_DATA.iter().any(|p| o.starts_with(p))
            })
            .collect();
        return Ok(Some(MountSpec::Tmpfs { target, options }));
    }
    Err(format!("mount {target} of type {kind:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("a valid spec")
    }

    #[test]
    fn cri_annotations_make_the_pod_and_its_containers() {
        let bundle = Path::new("/b");
        let rootfs = Path::new("/b/rootfs");
        let with = |annotations: serde_json::Value| {
            spec(serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                "hostname": "web",
                "annotations": annotations,
                "linux": {"namespaces": [
                    {"type": "pid"},
                    {"type": "network", "path": "/var/run/netns/cni-1"},
                ]},
            }))
        };
        let sandbox = with(serde_json::json!({
            CRI_CONTAINER_TYPE: "sandbox", CRI_SANDBOX_ID: "s1",
        }));
        assert_eq!(cri_role(&sandbox), CriRole::Sandbox { id: "s1".into() });
        assert!(!host_network(&sandbox));
        let host = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}]},
        }));
        assert!(host_network(&host));
        let (o, _) = container_options(&sandbox, &origin(bundle, rootfs));
        assert_eq!(o.netns.as_deref(), Some(Path::new("/var/run/netns/cni-1")));
        assert!(o.networks.is_empty() && o.pod.is_none());
        // Without the pod's resources the VM has the default size; with them, theirs.
        assert_eq!((o.resources.memory_bytes, o.resources.cpus), (None, None));
        let sized = with(serde_json::json!({
            CRI_CONTAINER_TYPE: "sandbox", CRI_SANDBOX_ID: "s1",
            CRI_SANDBOX_MEMORY: "805306368", CRI_SANDBOX_CPU_QUOTA: "150000",
            CRI_SANDBOX_CPU_PERIOD: "100000",
        }));
        let (o, _) = container_options(&sized, &origin(bundle, rootfs));
        assert_eq!(o.resources.memory_bytes, Some(768 << 20));
        assert_eq!(o.resources.cpus, Some(1.5));
        let member = with(serde_json::json!({
            CRI_CONTAINER_TYPE: "container", CRI_SANDBOX_ID: "s1",
        }));
        assert_eq!(
            cri_role(&member),
            CriRole::Container {
                sandbox: "s1".into()
            }
        );
        let (o, ignored) = container_options(&member, &origin(bundle, rootfs));
        assert_eq!(o.pod.as_deref(), Some("s1"));
        assert!(o.netns.is_none() && o.networks.is_empty() && o.hostname.is_none());
        assert!(
            ignored.iter().any(|i| i.contains("hostname")),
            "{ignored:?}"
        );
        // ctr's tasks (no annotations): a VM of their own, no network.
        let plain = with(serde_json::json!({}));
        assert_eq!(cri_role(&plain), CriRole::None);
        let (o, _) = container_options(&plain, &origin(bundle, rootfs));
        assert_eq!(o.networks, ["none"]);
        assert!(o.netns.is_none() && o.pod.is_none());
    }

    fn origin<'a>(bundle: &'a Path, rootfs: &'a Path) -> TaskOrigin<'a> {
        TaskOrigin {
            namespace: "default",
            id: "t1",
            bundle,
            rootfs,
            stdin: false,
            terminal: false,
        }
    }

    #[test]
    fn the_process_user_env_and_limits_are_mapped() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": 1000, "gid": 100},
                "args": ["sh", "-c", "exit 3"],
                "env": ["PATH=/bin", "A=b"],
                "cwd": "/tmp",
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "box",
            "linux": {"resources": {
                "memory": {"limit": 268435456},
                "cpu": {"quota": 150000, "period": 100000},
                "pids": {"limit": 64}
            }}
        }));
        let b = Path::new("/b");
        let (o, ignored) = container_options(&s, &origin(b, Path::new("/b/rootfs")));
        assert_eq!(o.process.args, ["sh", "-c", "exit 3"]);
        assert_eq!(o.process.env, ["PATH=/bin", "A=b"]);
        assert_eq!(o.process.workdir.as_deref(), Some("/tmp"));
        assert_eq!(o.process.user.as_deref(), Some("1000:100"));
        assert_eq!(o.process.cap_add, ["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(o.process.cap_drop, ["ALL"]);
        assert!(o.read_only);
        assert_eq!(o.hostname.as_deref(), Some("box"));
        assert_eq!(o.resources.memory_bytes, Some(256 << 20));
        assert_eq!(o.resources.cpus, Some(1.5));
        assert_eq!(o.resources.pids_limit, Some(64));
        assert_eq!(o.rootfs_dir.as_deref(), Some(Path::new("/b/rootfs")));
        assert_eq!(o.networks, ["none"]);
        assert_eq!(o.labels[LABEL_BUNDLE], "/b");
        assert!(ignored.is_empty(), "{ignored:?}");
        let nofile = &o.process.ulimits[0];
        assert_eq!(
            (nofile.name.as_str(), nofile.soft, nofile.hard),
            ("nofile", 1024, 1024)
        );
    }

    #[test]
    fn guest_mounts_are_skipped_tmpfs_kept_and_others_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = dir.path().to_string_lossy().into_owned();
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]},
                {"destination": "/x", "type": "nfs", "source": "srv:/x"}
            ]
        }));
        let b = Path::new("/b");
        let (o, ignored) = container_options(&s, &origin(b, Path::new("/b/rootfs")));
        assert_eq!(o.mounts.len(), 2, "{:?}", o.mounts);
        assert_eq!(
            o.mounts[0],
            MountSpec::Tmpfs {
                target: "/run".into(),
                options: vec!["nosuid".into(), "mode=755".into(), "size=65536k".into()],
            }
        );
        match &o.mounts[1] {
            MountSpec::Bind {
                target, readonly, ..
            } => assert!(target == "/data" && *readonly),
            other => panic!("not a bind: {other:?}"),
        }
        assert_eq!(ignored.len(), 1);
        assert!(ignored[0].contains("/x"), "{ignored:?}");
    }

    #[test]
    fn names_are_valid_container_names() {
        assert_eq!(container_name("default", "web-1"), "ctrd-default-web-1");
        assert_eq!(container_name("k8s.io", "a/b"), "ctrd-k8s.io-a_b");
    }

    #[test]
    fn an_exec_process_keeps_its_own_user_and_cwd() {
        let json =
            br#"{"user":{"uid":5,"gid":6},"args":["ps"],"env":["X=1"],"cwd":"/w","terminal":true}"#;
        let p = exec_process(json, true, true).expect("a process");
        assert_eq!(p.args, ["ps"]);
        assert_eq!(p.user, "5:6");
        assert_eq!(p.cwd, "/w");
        assert!(p.terminal && p.open_stdin);
        assert!(exec_process(br#"{"user":{"uid":0,"gid":0},"cwd":"/"}"#, false, false).is_err());
    }
}
