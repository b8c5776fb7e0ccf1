//! Docker-shaped views of our containers: the document `docker inspect` prints (docker 20.10,
//! Engine API v1.41 `ContainerInspect`), filled from what a container record really holds.
//!
//! `container inspect` adds these keys to its own (see [`crate::Container::inspect_document`]),
//! so that `-f '{{.State.Status}}'` works as with docker; the Engine API server answers with them
//! alone. A field we have no value for carries docker's zero value (`""`, `0`, `false`, `null`),
//! never a guess. Fields docker has and we do not model (`ResolvConfPath`, `GraphDriver`, …)
//! are left out rather than faked. Where our model differs:
//!
//! - `Image` is the image's manifest digest (docker: its config digest, the image id).
//! - `State.Pid` is the pid of the container's VM (QEMU) while it runs: the host process that
//!   is the container.
//! - `State.Error` is why the container last ended when not by its own exit (a failed start,
//!   the OOM killer).
//! - `Config.WorkingDir` is the directory the process runs in, `/` when neither the image nor
//!   `-w` set one (docker: `""`).
//! - `HostConfig.Binds` lists every named volume and bind mount, `-v` and `--mount` alike
//!   (docker lists `--mount` ones in `HostConfig.Mounts` instead); `CapAdd`/`CapDrop` are the
//!   difference between the container's capabilities and docker's default set, in `CAP_` form.
//! - `NetworkSettings` top-level addresses come from the `default` network, as docker's come
//!   from its default `bridge`; addresses are shown only while the container runs, as docker
//!   clears them at stop.
//! - A record written before the entrypoint was kept shows its whole command as `Config.Cmd`.
//! - Fields docker leaves out when empty (`Config.ExposedPorts`, `HostConfig.Tmpfs`, a mount's
//!   `Name` and `Driver`) are kept: a template then prints `map[]` or `""` for them, as docker's
//!   (which render its Go structs) do, rather than `<no value>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{ContainerRecord, MountSpec, Status};

/// What `docker inspect CONTAINER` prints for one container (the fields we model).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerJson {
    /// Full id.
    pub id: String,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// The main process's executable (its first argument).
    pub path: String,
    /// Its further arguments.
    pub args: Vec<String>,
    /// Lifecycle state.
    pub state: ContainerState,
    /// Image digest.
    pub image: String,
    /// The container's output in docker's json-file format.
    pub log_path: String,
    /// `/` and the name.
    pub name: String,
    /// Restarts its restart policy made since a user last started it.
    pub restart_count: u32,
    /// Always `linux`.
    pub platform: String,
    /// How the container is run.
    pub host_config: HostConfig,
    /// Volumes, binds and tmpfs mounts.
    pub mounts: Vec<MountPoint>,
    /// What the container is made of.
    pub config: Config,
    /// Its networks and ports.
    pub network_settings: NetworkSettings,
}

/// `State`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting` or `exited`.
    pub status: String,
    /// Whether it runs (paused too), or is restarting between two runs (as docker's).
    pub running: bool,
    /// Whether its VM is frozen (`container pause`).
    pub paused: bool,
    /// Whether its monitor waits to start it again under its restart policy.
    pub restarting: bool,
    /// Whether the OOM killer killed a process of its last run.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Always false.
    pub dead: bool,
    /// Pid of its VM while it runs, else 0.
    pub pid: u32,
    /// Exit code of the last run (0 before one ended).
    pub exit_code: i32,
    /// Why the last run ended, when not by the process's own exit.
    pub error: String,
    /// When the last run started ([`ZERO_TIME`] if never).
    pub started_at: String,
    /// When the last run ended ([`ZERO_TIME`] if never).
    pub finished_at: String,
    /// Its health checks' state; left out for a container that never ran one (docker's
    /// `omitempty`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// `Config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    /// Host name in the container.
    pub hostname: String,
    /// User the process runs as (`""`: root).
    pub user: String,
    /// Ports the image exposes and ports published with `-p`, as `PORT/PROTO` keys.
    pub exposed_ports: BTreeMap<String, Empty>,
    /// Runs on a terminal (`-t`).
    pub tty: bool,
    /// Keeps stdin open (`-i`).
    pub open_stdin: bool,
    /// Environment as `KEY=VALUE`.
    pub env: Vec<String>,
    /// The command (after the entrypoint); null when empty.
    pub cmd: Option<Vec<String>>,
    /// The image reference as given, normalised.
    pub image: String,
    /// Anonymous volumes' paths; null when none.
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// Directory the process starts in.
    pub working_dir: String,
    /// The entrypoint; null when none.
    pub entrypoint: Option<Vec<String>>,
    /// Labels: the image's, with the container's own (`--label`) over them.
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends first, as written (`--stop-signal`, else the image's); `""`
    /// when neither set one (SIGTERM).
    pub stop_signal: String,
    /// `--stop-timeout` in seconds; null when not set (10).
    pub stop_timeout: Option<u64>,
    /// The health check (`--health-*` over the image's); left out when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<oci::spec::HealthConfig>,
}

/// The `{}` docker uses as a set member (`ExposedPorts`, `Volumes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Empty {}

/// `HostConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// Named volumes and bind mounts as `SOURCE:TARGET[:ro]`; null when none.
    pub binds: Option<Vec<String>>,
    /// The first network, `none`, or `default`.
    pub network_mode: String,
    /// Published ports (`-p`) by `PORT/PROTO`.
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `--rm`.
    pub auto_remove: bool,
    /// Capabilities beyond docker's default set; null when none.
    pub cap_add: Option<Vec<String>>,
    /// Capabilities of docker's default set the container lacks; null when none.
    pub cap_drop: Option<Vec<String>>,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--add-host` as `NAME:ADDRESS`; null when none.
    pub extra_hosts: Option<Vec<String>>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--read-only`.
    pub readonly_rootfs: bool,
    /// `--tmpfs` mounts: path to mount options.
    pub tmpfs: BTreeMap<String, String>,
    /// Memory limit in bytes (0: none).
    pub memory: u64,
    /// CPU limit in billionths of a CPU (0: none).
    pub nano_cpus: u64,
    /// Most processes (null: no limit).
    pub pids_limit: Option<u64>,
    /// `--init`: true, else null (docker's unset `*bool`).
    pub init: Option<bool>,
    /// `--restart` as `{Name, MaximumRetryCount}` (`no` when not given).
    pub restart_policy: crate::restart::RestartPolicy,
    /// `--ulimit` values; null when none.
    pub ulimits: Option<Vec<DockerUlimit>>,
    /// `--sysctl` settings; left out when none, as docker leaves them out.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Size of `/dev/shm` in bytes (`--shm-size`, else docker's 64 MiB).
    pub shm_size: u64,
    /// `private` (the container's own cgroup namespace) or `host` (`--cgroupns`).
    pub cgroupns_mode: String,
    /// `--device` mappings (docker's `[]` when none).
    pub devices: Vec<DockerDevice>,
    /// `--volumes-from` values as given; null when none.
    pub volumes_from: Option<Vec<String>>,
    /// How its output is kept: `--log-driver` (json-file, local: docker's json-file layout,
    /// written by the monitor; none) and `--log-opt` as given (clients such as the Docker SDK
    /// for Python read it to know whether `logs` works).
    pub log_config: LogConfig,
}

/// One of `HostConfig.Devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerDevice {
    /// As given (`/dev/fuse`).
    pub path_on_host: String,
    /// In the container.
    pub path_in_container: String,
    /// `rwm` or a part of it.
    pub cgroup_permissions: String,
}

/// One of `HostConfig.Ulimits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerUlimit {
    /// docker's name (`nofile`).
    pub name: String,
    /// Hard limit; -1: unlimited.
    pub hard: i64,
    /// Soft limit; -1: unlimited.
    pub soft: i64,
}

/// `HostConfig.LogConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    /// The log driver: `json-file`, `local` or `none`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Its options (`max-size`, `max-file`).
    pub config: BTreeMap<String, String>,
}

/// A host address and port a container port is published on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// Host address.
    pub host_ip: String,
    /// Host port (`""`: chosen when the container starts).
    pub host_port: String,
}

/// One of `Mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name.
    pub name: String,
    /// Host path: the volume's disk image, the bound directory or file, `""` for tmpfs.
    pub source: String,
    /// Path in the container.
    pub destination: String,
    /// `local` for volumes.
    pub driver: String,
    /// Mount mode flags (none kept).
    pub mode: String,
    /// Writable.
    #[serde(rename = "RW")]
    pub rw: bool,
    /// `rprivate` for binds.
    pub propagation: String,
}

/// `NetworkSettings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// Address on the default network while running.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// Its gateway.
    pub gateway: String,
    /// Its MAC address.
    pub mac_address: String,
    /// While running: each exposed or published port with its host bindings (null when not
    /// published); empty otherwise.
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// Each network by name.
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// One of `NetworkSettings.Networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// The fixed address asked for (`{"IPv4Address": …}`), null when none.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<BTreeMap<String, String>>,
    /// Legacy links: never any.
    pub links: Option<Vec<String>>,
    /// The names peers resolve it by besides its name: its aliases on the network and its
    /// short id (docker adds that one on user-defined networks; every network of ours
    /// answers it). Null for `none`.
    pub aliases: Option<Vec<String>>,
    /// The network's id, once the container has a place on it.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// docker's endpoint id: ours is the network id and the container id (one endpoint
    /// per pair), empty while the container has no place on it.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Gateway.
    pub gateway: String,
    /// Address while running.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// IPv6 gateway (empty without IPv6).
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    /// IPv6 address (empty without IPv6).
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    /// Its prefix length (0 without IPv6).
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    /// MAC address.
    pub mac_address: String,
    /// Driver options: never any.
    pub driver_opts: Option<BTreeMap<String, String>>,
}

/// A network lease as `inspect` lists them in `networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// Network name (`default (user-mode)` for the rootless fallback).
    pub network: String,
    /// Address with prefix, e.g. `192.168.64.2/24`.
    pub address: String,
    /// Gateway.
    pub gateway: String,
    /// MAC address.
    pub mac: String,
    /// The network's id (empty for the rootless fallback).
    pub network_id: String,
    /// IPv6 address with prefix, on an IPv6 network (else empty).
    pub address6: String,
    /// IPv6 gateway, on an IPv6 network (else empty).
    pub gateway6: String,
}

impl Lease {
    /// Reads one `{network, networkId, address, gateway, mac}` object.
    pub fn from_json(v: &serde_json::Value) -> Lease {
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        Lease {
            network: field("network"),
            address: field("address"),
            gateway: field("gateway"),
            mac: field("mac"),
            network_id: field("networkId"),
            address6: field("ipv6Address"),
            gateway6: field("ipv6Gateway"),
        }
    }

    fn endpoint(&self) -> EndpointSettings {
        let (ip, prefix) = self.address.split_once('/').unwrap_or((&self.address, ""));
        let (ip6, prefix6) = self
            .address6
            .split_once('/')
            .unwrap_or((&self.address6, ""));
        EndpointSettings {
            ip_address: ip.to_string(),
            ip_prefix_len: prefix.parse().unwrap_or(0),
            gateway: self.gateway.clone(),
            global_ipv6_address: ip6.to_string(),
            global_ipv6_prefix_len: prefix6.parse().unwrap_or(0),
            ipv6_gateway: self.gateway6.clone(),
            mac_address: self.mac.clone(),
            ..Default::default()
        }
    }

    /// Whether it is the lease of network `name` (the rootless fallback names its interface
    /// after the network it stands in for).
    fn is_of(&self, name: &str) -> bool {
        self.network == name
            || self
                .network
                .strip_suffix(" (user-mode)")
                .is_some_and(|n| n == name)
    }
}

/// docker's time for "never": Go's zero `time.Time`.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 with nanoseconds and no trailing zeros, as Go's `time.RFC3339Nano`.
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match s.rsplit_once('.') {
        Some((secs, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{digits}Z")
            }
        }
        None => s,
    }
}

fn time_or_zero(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(|| ZERO_TIME.to_string(), rfc3339_nano)
}

/// `PORT/PROTO` as docker writes it (a bare port is tcp).
fn port_key(key: &str) -> String {
    if key.contains('/') {
        key.to_string()
    } else {
        format!("{key}/tcp")
    }
}

impl ContainerJson {
    /// The docker document of `r`, with its network `leases` (as [`crate::Container::networks`]
    /// lists them), its log file, and where each named volume's disk lives.
    pub fn new(
        r: &ContainerRecord,
        leases: &[Lease],
        log_path: &Path,
        volume_source: &dyn Fn(&str) -> PathBuf,
    ) -> ContainerJson {
        let c = &r.config;
        let args = &c.process.args;
        let running = r.status == Status::Running;
        let (path, rest) = args.split_first().map_or(("", &[][..]), |(p, a)| (p, a));
        ContainerJson {
            id: r.id.clone(),
            created: rfc3339_nano(&r.created),
            path: path.to_string(),
            args: rest.to_vec(),
            state: ContainerState {
                status: if r.paused {
                    "paused".to_string()
                } else {
                    r.status.to_string()
                },
                running: running || r.status.is_up(),
                paused: r.paused,
                restarting: r.status == Status::Restarting,
                oom_killed: r.oom_killed,
                dead: false,
                pid: if running { r.vm_pid.unwrap_or(0) } else { 0 },
                exit_code: r.exit_code.unwrap_or(0),
                error: r.exit_reason.clone().unwrap_or_default(),
                started_at: time_or_zero(r.started.as_ref()),
                finished_at: time_or_zero(r.finished.as_ref()),
                health: r.health.clone(),
            },
            image: r.image_digest.clone(),
            log_path: log_path.display().to_string(),
            name: format!("/{}", r.name),
            restart_count: r.restart_count,
            platform: "linux".into(),
            host_config: host_config(r),
            mounts: c
                .mounts
                .iter()
                .map(|m| mount_point(m, volume_source))
                .collect(),
            config: config(r),
            network_settings: network_settings(r, leases),
        }
    }
}

fn config(r: &ContainerRecord) -> Config {
    let c = &r.config;
    let args = &c.process.args;
    let (entrypoint, cmd) = match &c.entrypoint {
        Some(ep) if args.starts_with(ep) => (ep.clone(), args[ep.len()..].to_vec()),
        _ => (Vec::new(), args.clone()),
    };
    let volumes: BTreeMap<String, Empty> = c
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Volume {
                target,
                anonymous: true,
                ..
            } => Some((target.clone(), Empty {})),
            _ => None,
        })
        .collect();
    Config {
        hostname: c.hostname.clone(),
        user: c.process.user.clone(),
        exposed_ports: exposed_ports(r)
            .into_iter()
            .map(|k| (k, Empty {}))
            .collect(),
        tty: c.process.terminal,
        open_stdin: c.process.open_stdin,
        env: c.process.env.clone(),
        cmd: Some(cmd).filter(|v| !v.is_empty()),
        image: r.image.clone(),
        volumes: Some(volumes).filter(|v| !v.is_empty()),
        working_dir: c.process.cwd.clone(),
        entrypoint: Some(entrypoint).filter(|v| !v.is_empty()),
        labels: c.labels.clone(),
        stop_signal: c.stop_signal.clone().unwrap_or_default(),
        stop_timeout: c.stop_timeout,
        healthcheck: c.healthcheck.clone(),
    }
}

/// The image's exposed ports and the published ones, as `PORT/PROTO`, sorted.
fn exposed_ports(r: &ContainerRecord) -> Vec<String> {
    let c = &r.config;
    let mut keys: Vec<String> = c.exposed_ports.iter().map(|k| port_key(k)).collect();
    keys.extend(
        c.publish
            .iter()
            .map(|p| format!("{}/{}", p.container_port, p.protocol)),
    );
    keys.sort();
    keys.dedup();
    keys
}

fn host_config(r: &ContainerRecord) -> HostConfig {
    let c = &r.config;
    let ro = |readonly: bool| if readonly { ":ro" } else { "" };
    let binds: Vec<String> = c
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Volume {
                source,
                target,
                readonly,
                anonymous: false,
                ..
            } => Some(format!("{source}:{target}{}", ro(*readonly))),
            MountSpec::Bind {
                source,
                target,
                readonly,
                file,
            } => Some(format!(
                "{}:{target}{}",
                bind_source(source, file.as_deref()).display(),
                ro(*readonly)
            )),
            _ => None,
        })
        .collect();
    let tmpfs = c
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Tmpfs { target, options } => Some((target.clone(), options.join(","))),
            _ => None,
        })
        .collect();
    let mut port_bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for p in &c.publish {
        port_bindings
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_default()
            .push(PortBinding {
                host_ip: p.host_ip.to_string(),
                host_port: if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                },
            });
    }
    let (cap_add, cap_drop) = match (&c.process.capabilities, c.privileged) {
        (Some(caps), false) => {
            let default = agent::caps::DEFAULT;
            let add: Vec<String> = caps
                .iter()
                .filter(|x| !default.contains(&x.as_str()))
                .cloned()
                .collect();
            let drop: Vec<String> = default
                .iter()
                .filter(|d| !caps.iter().any(|x| x == *d))
                .map(|d| d.to_string())
                .collect();
            (add, drop)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let some = |v: Vec<String>| Some(v).filter(|v| !v.is_empty());
    HostConfig {
        binds: some(binds),
        network_mode: c.networks.first().cloned().unwrap_or_else(|| "none".into()),
        port_bindings,
        auto_remove: c.auto_remove,
        cap_add: some(cap_add),
        cap_drop: some(cap_drop),
        dns: c.dns.servers.iter().map(|s| s.to_string()).collect(),
        dns_options: c.dns.options.clone(),
        dns_search: c.dns.search.clone(),
        extra_hosts: some(
            c.extra_hosts
                .iter()
                .map(|h| format!("{}:{}", h.name, h.address))
                .collect(),
        ),
        privileged: c.privileged,
        readonly_rootfs: c.read_only,
        tmpfs,
        memory: c.resources.memory_bytes.unwrap_or(0),
        nano_cpus: c.resources.nano_cpus.unwrap_or(0),
        pids_limit: c.resources.pids_limit,
        init: c.process.init.then_some(true),
        restart_policy: c.restart,
        ulimits: Some(
            c.process
                .rlimits
                .iter()
                .map(|u| DockerUlimit {
                    name: u.name.clone(),
                    hard: u.hard,
                    soft: u.soft,
                })
                .collect::<Vec<_>>(),
        )
        .filter(|v| !v.is_empty()),
        sysctls: c.sysctls.clone(),
        shm_size: c.shm_size.unwrap_or(crate::state::DEFAULT_SHM_SIZE),
        cgroupns_mode: if c.cgroupns_host { "host" } else { "private" }.into(),
        devices: c
            .devices
            .iter()
            .map(|d| DockerDevice {
                path_on_host: d.host_path.clone(),
                path_in_container: d.container_path.clone(),
                cgroup_permissions: d.permissions.clone(),
            })
            .collect(),
        volumes_from: some(c.volumes_from.clone()),
        log_config: LogConfig {
            kind: c.log.driver.clone(),
            config: c.log.opts.clone(),
        },
    }
}

/// A bind mount's host path: the directory, or the file in it for a single-file bind.
fn bind_source(dir: &Path, file: Option<&str>) -> PathBuf {
    match file {
        Some(f) => dir.join(f),
        None => dir.to_path_buf(),
    }
}

fn mount_point(m: &MountSpec, volume_source: &dyn Fn(&str) -> PathBuf) -> MountPoint {
    match m {
        MountSpec::Volume {
            source,
            target,
            readonly,
            ..
        } => MountPoint {
            kind: "volume".into(),
            name: source.clone(),
            source: volume_source(source).display().to_string(),
            destination: target.clone(),
            driver: "local".into(),
            mode: String::new(),
            rw: !readonly,
            propagation: String::new(),
        },
        MountSpec::Bind {
            source,
            target,
            readonly,
            file,
        } => MountPoint {
            kind: "bind".into(),
            name: String::new(),
            source: bind_source(source, file.as_deref()).display().to_string(),
            destination: target.clone(),
            driver: String::new(),
            mode: String::new(),
            rw: !readonly,
            propagation: "rprivate".into(),
        },
        MountSpec::Socket { source, target } => MountPoint {
            kind: "bind".into(),
            name: String::new(),
            source: source.display().to_string(),
            destination: target.clone(),
            driver: String::new(),
            mode: String::new(),
            rw: true,
            propagation: "rprivate".into(),
        },
        MountSpec::Tmpfs { target, options } => MountPoint {
            kind: "tmpfs".into(),
            name: String::new(),
            source: String::new(),
            destination: target.clone(),
            driver: String::new(),
            mode: String::new(),
            rw: !options.iter().any(|o| o == "ro"),
            propagation: String::new(),
        },
    }
}

/// docker's `EndpointID` of container `id` on network `network_id`: 64 hex digits, stable.
pub fn endpoint_id(network_id: &str, id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        format!("{network_id}\0{id}").as_bytes(),
    ))
}

fn network_settings(r: &ContainerRecord, leases: &[Lease]) -> NetworkSettings {
    let running = r.status == Status::Running;
    let mut networks: BTreeMap<String, EndpointSettings> = r
        .config
        .networks
        .iter()
        .map(|name| {
            let lease = leases.iter().find(|l| l.is_of(name));
            let mut e = lease
                .filter(|_| running)
                .map(Lease::endpoint)
                .unwrap_or_default();
            let configured = r.config.endpoints.get(name);
            let mut aliases = configured.map(|c| c.aliases.clone()).unwrap_or_default();
            aliases.push(r.id.get(..12).unwrap_or(&r.id).to_string());
            e.aliases = Some(aliases);
            let pinned: BTreeMap<String, String> = configured
                .map(|c| {
                    let v4 = c
                        .ipv4_address
                        .map(|a| ("IPv4Address".to_string(), a.to_string()));
                    let v6 = c
                        .ipv6_address
                        .map(|a| ("IPv6Address".to_string(), a.to_string()));
                    v4.into_iter().chain(v6).collect()
                })
                .unwrap_or_default();
            e.ipam_config = (!pinned.is_empty()).then_some(pinned);
            if let Some(l) = lease.filter(|l| !l.network_id.is_empty()) {
                e.network_id.clone_from(&l.network_id);
                e.endpoint_id = endpoint_id(&l.network_id, &r.id);
            }
            (name.clone(), e)
        })
        .collect();
    if networks.is_empty() {
        // docker lists `--network none` as a network without addresses.
        networks.insert("none".into(), EndpointSettings::default());
    }
    let main = networks
        .get(net::DEFAULT_NETWORK)
        .cloned()
        .unwrap_or_default();
    let mut ports = BTreeMap::new();
    if running {
        for key in exposed_ports(r) {
            let bound: Vec<PortBinding> = r
                .ports
                .iter()
                .filter(|p| format!("{}/{}", p.container_port, p.protocol) == key)
                .map(|p| PortBinding {
                    host_ip: p.host_ip.to_string(),
                    host_port: p.host_port.to_string(),
                })
                .collect();
            ports.insert(key, Some(bound).filter(|b| !b.is_empty()));
        }
    }
    NetworkSettings {
        ip_address: main.ip_address,
        ip_prefix_len: main.ip_prefix_len,
        gateway: main.gateway,
        mac_address: main.mac_address,
        ports,
        networks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessSpec;
    use crate::state::{ContainerConfig, VmOptions};
    use serde_json::json;

    fn record() -> ContainerRecord {
        ContainerRecord {
            id: "ab".repeat(32),
            name: "web".into(),
            image: "localhost/app:1".into(),
            image_digest: "sha256:0123".into(),
            status: Status::Running,
            exit_code: None,
            exit_reason: None,
            oom_killed: false,
            paused: false,
            monitor_pid: Some(10),
            vm_pid: Some(11),
            vm_template: None,
            vm_prebooted: false,
            created: "2024-05-01T10:00:00.120Z".parse().unwrap(),
            started: Some("2024-05-01T10:00:01Z".parse().unwrap()),
            finished: None,
            config: ContainerConfig {
                process: ProcessSpec {
                    args: ["/entry", "serve", "-v"].map(String::from).to_vec(),
                    env: vec!["PATH=/bin".into(), "A=1".into()],
                    cwd: "/srv".into(),
                    user: "1000".into(),
                    terminal: true,
                    open_stdin: false,
                    console_size: None,
                    capabilities: Some(
                        agent::caps::DEFAULT
                            .iter()
                            .filter(|c| **c != "CAP_NET_RAW")
                            .map(|c| c.to_string())
                            .chain(["CAP_NET_ADMIN".to_string()])
                            .collect(),
                    ),
                    init: true,
                    rlimits: vec![crate::ulimit::Ulimit::parse("nofile=512:1024").unwrap()],
                },
                vm: VmOptions::default(),
                rootfs: "/x".into(),
                rootfs_dir: None,
                auto_remove: true,
                hostname: "web-host".into(),
                networks: vec!["default".into(), "back".into()],
                endpoints: [(
                    "back".to_string(),
                    net::EndpointConfig {
                        aliases: vec!["api".into()],
                        ..Default::default()
                    },
                )]
                .into(),
                publish_sockets: Vec::new(),
                publish: vec![
                    "127.0.0.1:8080:80".parse().unwrap(),
                    "53/udp".parse().unwrap(),
                ],
                mounts: vec![
                    MountSpec::Volume {
                        source: "data".into(),
                        target: "/data".into(),
                        readonly: false,
                        anonymous: false,
                        nocopy: false,
                    },
                    MountSpec::Volume {
                        source: "f00d".into(),
                        target: "/cache".into(),
                        readonly: false,
                        anonymous: true,
                        nocopy: false,
                    },
                    MountSpec::Bind {
                        source: "/etc".into(),
                        target: "/host/hosts".into(),
                        readonly: true,
                        file: Some("hosts".into()),
                    },
                    MountSpec::Tmpfs {
                        target: "/run".into(),
                        options: vec!["size=64m".into()],
                    },
                ],
                read_only: true,
                resources: crate::resources::ResourceLimits::from_flags(
                    Some(1.5),
                    Some(256 << 20),
                    None,
                )
                .unwrap(),
                privileged: false,
                dns: crate::netconf::DnsConfig {
                    servers: vec!["1.1.1.1".parse().unwrap()],
                    search: vec!["example.com".into()],
                    options: vec![],
                    none: false,
                },
                extra_hosts: vec![crate::netconf::ExtraHost::parse("db:10.0.0.5").unwrap()],
                entrypoint: Some(vec!["/entry".into()]),
                labels: [("k".to_string(), "v".to_string())].into(),
                exposed_ports: vec!["80/tcp".into(), "9000".into()],
                stop_signal: Some("SIGQUIT".into()),
                stop_timeout: Some(30),
                restart: Default::default(),
                healthcheck: None,
                sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
                shm_size: None,
                cgroupns_host: false,
                devices: Vec::new(),
                masked_paths: Vec::new(),
                readonly_paths: Vec::new(),
                volumes_from: vec!["data:ro".into()],
                log: crate::logs::LogConfig::new(
                    None,
                    [("max-size".to_string(), "10m".to_string())].into(),
                )
                .unwrap(),
                pod: None,
                netns: None,
            },
            networks: vec![],
            ports: vec![
                "127.0.0.1:8080:80".parse().unwrap(),
                "127.0.0.1:40001:53/udp".parse().unwrap(),
            ],
            restart_count: 0,
            stopped_by_user: false,
            health: None,
        }
    }

    fn leases() -> Vec<Lease> {
        vec![
            Lease {
                network: "default".into(),
                address: "192.168.64.2/24".into(),
                gateway: "192.168.64.1".into(),
                mac: "02:00:00:00:00:01".into(),
                network_id: "n1".into(),
                ..Default::default()
            },
            Lease {
                network: "back".into(),
                address: "10.61.0.3/16".into(),
                gateway: "10.61.0.1".into(),
                mac: "02:00:00:00:00:02".into(),
                network_id: "n2".into(),
                address6: "fd00:61::3/64".into(),
                gateway6: "fd00:61::1".into(),
            },
        ]
    }

    fn doc(r: &ContainerRecord) -> serde_json::Value {
        let vols = |name: &str| PathBuf::from(format!("/root/volumes/{name}/disk.ext4"));
        let d = ContainerJson::new(r, &leases(), Path::new("/root/c/container.log"), &vols);
        serde_json::to_value(d).unwrap()
    }

    #[test]
    fn a_running_container_as_docker_shows_it() {
        let d = doc(&record());
        assert_eq!(d["Id"], "ab".repeat(32));
        assert_eq!(d["Name"], "/web");
        assert_eq!(d["Created"], "2024-05-01T10:00:00.12Z");
        assert_eq!(
            (&d["Path"], &d["Args"]),
            (&json!("/entry"), &json!(["serve", "-v"]))
        );
        assert_eq!(
            d["State"],
            json!({"Status": "running", "Running": true, "Paused": false, "Restarting": false,
                   "OOMKilled": false, "Dead": false, "Pid": 11, "ExitCode": 0, "Error": "",
                   "StartedAt": "2024-05-01T10:00:01Z", "FinishedAt": ZERO_TIME})
        );
        assert_eq!(d["Image"], "sha256:0123");
        assert_eq!(d["LogPath"], "/root/c/container.log");
        let c = &d["Config"];
        assert_eq!(
            (&c["Entrypoint"], &c["Cmd"]),
            (&json!(["/entry"]), &json!(["serve", "-v"]))
        );
        assert_eq!(c["Image"], "localhost/app:1");
        assert_eq!(c["Labels"], json!({"k": "v"}));
        assert_eq!(c["Volumes"], json!({"/cache": {}}));
        assert_eq!(
            c["ExposedPorts"],
            json!({"53/udp": {}, "80/tcp": {}, "9000/tcp": {}})
        );
        assert_eq!(
            (&c["WorkingDir"], &c["User"]),
            (&json!("/srv"), &json!("1000"))
        );
        assert_eq!((&c["Tty"], &c["OpenStdin"]), (&json!(true), &json!(false)));
        assert_eq!(
            (&c["StopSignal"], &c["StopTimeout"]),
            (&json!("SIGQUIT"), &json!(30))
        );
        let h = &d["HostConfig"];
        assert_eq!(h["Init"], json!(true));
        assert_eq!(
            h["LogConfig"],
            json!({"Type": "json-file", "Config": {"max-size": "10m"}})
        );
        assert_eq!(h["Sysctls"], json!({"net.core.somaxconn": "1024"}));
        assert_eq!(h["ShmSize"], 67108864);
        assert_eq!(h["CgroupnsMode"], "private");
        assert_eq!(h["VolumesFrom"], json!(["data:ro"]));
        assert_eq!(
            h["Ulimits"],
            json!([{"Name": "nofile", "Hard": 1024, "Soft": 512}])
        );
        assert_eq!(
            h["RestartPolicy"],
            json!({"Name": "no", "MaximumRetryCount": 0})
        );
        assert_eq!(d["RestartCount"], 0);
        assert_eq!(
            h["Binds"],
            json!(["data:/data", "/etc/hosts:/host/hosts:ro"])
        );
        assert_eq!(h["Tmpfs"], json!({"/run": "size=64m"}));
        assert_eq!(h["NetworkMode"], "default");
        assert_eq!(
            h["PortBindings"],
            json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                   "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
        );
        assert_eq!(
            (&h["CapAdd"], &h["CapDrop"]),
            (&json!(["CAP_NET_ADMIN"]), &json!(["CAP_NET_RAW"]))
        );
        assert_eq!(
            (&h["Memory"], &h["NanoCpus"], &h["PidsLimit"]),
            (&json!(256 << 20), &json!(1_500_000_000u64), &json!(null))
        );
        assert_eq!(
            (&h["Dns"], &h["DnsSearch"], &h["DnsOptions"]),
            (&json!(["1.1.1.1"]), &json!(["example.com"]), &json!([]))
        );
        assert_eq!(h["ExtraHosts"], json!(["db:10.0.0.5"]));
        assert_eq!(
            (&h["AutoRemove"], &h["ReadonlyRootfs"], &h["Privileged"]),
            (&json!(true), &json!(true), &json!(false))
        );
        assert_eq!(
            d["Mounts"],
            json!([
                {"Type": "volume", "Name": "data", "Source": "/root/volumes/data/disk.ext4",
                 "Destination": "/data", "Driver": "local", "Mode": "", "RW": true, "Propagation": ""},
                {"Type": "volume", "Name": "f00d", "Source": "/root/volumes/f00d/disk.ext4",
                 "Destination": "/cache", "Driver": "local", "Mode": "", "RW": true, "Propagation": ""},
                {"Type": "bind", "Name": "", "Source": "/etc/hosts", "Destination": "/host/hosts",
                 "Driver": "", "Mode": "", "RW": false, "Propagation": "rprivate"},
                {"Type": "tmpfs", "Name": "", "Source": "", "Destination": "/run", "Driver": "",
                 "Mode": "", "RW": true, "Propagation": ""},
            ])
        );
        let n = &d["NetworkSettings"];
        assert_eq!(
            (
                &n["IPAddress"],
                &n["IPPrefixLen"],
                &n["Gateway"],
                &n["MacAddress"]
            ),
            (
                &json!("192.168.64.2"),
                &json!(24),
                &json!("192.168.64.1"),
                &json!("02:00:00:00:00:01")
            )
        );
        let back = &n["Networks"]["back"];
        assert_eq!(
            (
                &back["IPAddress"],
                &back["IPPrefixLen"],
                &back["Gateway"],
                &back["MacAddress"]
            ),
            (
                &json!("10.61.0.3"),
                &json!(16),
                &json!("10.61.0.1"),
                &json!("02:00:00:00:00:02")
            )
        );
        assert_eq!(
            (
                &back["GlobalIPv6Address"],
                &back["GlobalIPv6PrefixLen"],
                &back["IPv6Gateway"]
            ),
            (&json!("fd00:61::3"), &json!(64), &json!("fd00:61::1"))
        );
        assert_eq!(n["Networks"]["default"]["GlobalIPv6Address"], "");
        // Its aliases there, then its short id; the network's id and a stable endpoint id.
        let id = "ab".repeat(32);
        assert_eq!(back["Aliases"], json!(["api", &id[..12]]));
        assert_eq!(back["NetworkID"], "n2");
        assert_eq!(back["EndpointID"], endpoint_id("n2", &id));
        assert_eq!(back["EndpointID"].as_str().unwrap().len(), 64);
        assert_eq!(back["IPAMConfig"], json!(null));
        assert_eq!(n["Networks"]["default"]["Aliases"], json!([&id[..12]]));
        assert_eq!(
            n["Ports"],
            json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                   "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}],
                   "9000/tcp": null})
        );
    }

    #[test]
    fn a_stopped_or_plain_container_has_docker_zero_values() {
        let mut r = record();
        r.status = Status::Exited;
        r.exit_code = Some(137);
        r.oom_killed = true;
        r.exit_reason = Some("out of memory".into());
        r.finished = Some("2024-05-01T10:00:02.000000001Z".parse().unwrap());
        r.vm_pid = None;
        r.ports = vec![];
        r.config.entrypoint = None;
        r.config.process.capabilities = None;
        r.config.mounts.clear();
        r.config.networks.clear();
        r.config.publish.clear();
        r.config.exposed_ports.clear();
        r.config.extra_hosts.clear();
        r.config.dns = Default::default();
        r.config.resources = Default::default();
        r.config.process.init = false;
        r.config.stop_signal = None;
        r.config.stop_timeout = None;
        let d = doc(&r);
        let s = &d["State"];
        assert_eq!(
            (&s["Status"], &s["Running"], &s["Pid"]),
            (&json!("exited"), &json!(false), &json!(0))
        );
        assert_eq!(
            (&s["ExitCode"], &s["OOMKilled"], &s["Error"]),
            (&json!(137), &json!(true), &json!("out of memory"))
        );
        assert_eq!(s["FinishedAt"], "2024-05-01T10:00:02.000000001Z");
        // Without the kept entrypoint the whole command is Cmd.
        assert_eq!(
            (&d["Config"]["Entrypoint"], &d["Config"]["Cmd"]),
            (&json!(null), &json!(["/entry", "serve", "-v"]))
        );
        assert_eq!(d["Config"]["ExposedPorts"], json!({}));
        assert_eq!(d["Config"]["Volumes"], json!(null));
        assert_eq!(
            (&d["Config"]["StopSignal"], &d["Config"]["StopTimeout"]),
            (&json!(""), &json!(null))
        );
        let h = &d["HostConfig"];
        for k in [
            "Binds",
            "CapAdd",
            "CapDrop",
            "ExtraHosts",
            "PidsLimit",
            "Init",
        ] {
            assert_eq!(h[k], json!(null), "{k}");
        }
        assert_eq!(
            (&h["Memory"], &h["NanoCpus"], &h["NetworkMode"]),
            (&json!(0), &json!(0), &json!("none"))
        );
        assert_eq!(h["PortBindings"], json!({}));
        assert_eq!(h["Tmpfs"], json!({}));
        assert_eq!(d["Mounts"], json!([]));
        let n = &d["NetworkSettings"];
        assert_eq!((&n["IPAddress"], &n["Ports"]), (&json!(""), &json!({})));
        let none = &n["Networks"]["none"];
        assert_eq!(n["Networks"].as_object().unwrap().len(), 1);
        assert_eq!(
            (&none["IPAddress"], &none["NetworkID"], &none["Aliases"]),
            (&json!(""), &json!(""), &json!(null))
        );
        // A stopped container keeps its networks, without addresses, as docker shows them.
        let mut r = record();
        r.status = Status::Exited;
        let d = doc(&r);
        assert_eq!(d["NetworkSettings"]["Networks"]["back"]["IPAddress"], "");
        assert_eq!(d["NetworkSettings"]["Ports"], json!({}));
    }

    #[test]
    fn a_container_between_two_runs_is_restarting_as_docker_shows_it() {
        let mut r = record();
        r.status = Status::Restarting;
        r.exit_code = Some(3);
        r.vm_pid = None;
        r.restart_count = 2;
        r.config.restart = crate::restart::RestartPolicy::OnFailure { max_retries: 5 };
        let d = doc(&r);
        let s = &d["State"];
        assert_eq!(
            (&s["Status"], &s["Running"], &s["Restarting"], &s["Pid"]),
            (&json!("restarting"), &json!(true), &json!(true), &json!(0))
        );
        assert_eq!(s["ExitCode"], 3);
        assert_eq!(d["RestartCount"], 2);
        assert_eq!(
            d["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 5})
        );
        // No addresses between two runs: the network went with the last VM.
        assert_eq!(d["NetworkSettings"]["IPAddress"], "");
    }

    #[test]
    fn the_rootless_interface_stands_for_its_network() {
        let r = record();
        let user = vec![Lease {
            network: "default (user-mode)".into(),
            address: "10.0.2.15/24".into(),
            gateway: "10.0.2.2".into(),
            mac: "52:54:00:12:34:56".into(),
            network_id: String::new(),
            ..Default::default()
        }];
        let d = ContainerJson::new(&r, &user, Path::new("/l"), &|_| PathBuf::new());
        assert_eq!(d.network_settings.ip_address, "10.0.2.15");
        assert_eq!(d.network_settings.networks["back"].ip_address, "");
    }

    #[test]
    fn times_are_rfc3339_nano() {
        let t = |s: &str| rfc3339_nano(&s.parse().unwrap());
        assert_eq!(t("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00Z");
        assert_eq!(t("2024-05-01T10:00:00.5Z"), "2024-05-01T10:00:00.5Z");
        assert_eq!(
            t("2024-05-01T10:00:00.000123Z"),
            "2024-05-01T10:00:00.000123Z"
        );
    }
}
