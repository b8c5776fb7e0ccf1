//! `POST /containers/create`: docker's `ContainerConfig` + `HostConfig` body read into the
//! runtime's [`ContainerOptions`], field by field, with the same parsers the CLI's flags go
//! through (`Binds` = `-v`, `PortBindings` = `-p`, `RestartPolicy` = `--restart`), so a
//! container made through the socket is the container `container run` makes with the same
//! flags.
//!
//! Unknown fields are ignored, as dockerd ignores them; a known field this server cannot honour
//! (network modes `host` and `container:`) is refused with a 400 instead of
//! being dropped silently.
//!
//! Networks: `HostConfig.NetworkMode` names the first (`default`, `bridge` and empty: our
//! default network), `NetworkingConfig.EndpointsConfig` gives aliases and a fixed address on
//! it and may name more networks (docker 20.10 takes one; ours has an interface for each).

use std::collections::BTreeMap;

use runtime::container::{parse_mount, parse_volume, PortSpecs};
use runtime::network::DEFAULT_NETWORK;
use runtime::spec::ProcessOptions;
use runtime::ContainerOptions;
use serde::{Deserialize, Deserializer};

use crate::error::{line, ApiError};

/// docker's `strslice`: a JSON string or an array of strings (or null).
fn str_slice<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some(vec![s]),
        Some(S::Many(v)) => Some(v),
    })
}

/// `null` read as the type's default, as Go's decoder leaves a field at its zero value.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The body of `POST /containers/create` (the fields this server reads).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    /// Image reference (or id).
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    /// Command (replaces the image's `Cmd`).
    #[serde(deserialize_with = "str_slice")]
    pub cmd: Option<Vec<String>>,
    /// Entrypoint (replaces the image's; `[""]` clears it).
    #[serde(deserialize_with = "str_slice")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` list.
    pub env: Option<Vec<String>>,
    /// `-w`.
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    /// `-u`.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// `-h`.
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
    /// `-t`.
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    /// `-i`.
    #[serde(deserialize_with = "nullable")]
    pub open_stdin: bool,
    /// `--label`.
    pub labels: Option<BTreeMap<String, String>>,
    /// `--stop-signal`.
    #[serde(deserialize_with = "nullable")]
    pub stop_signal: String,
    /// `--stop-timeout`.
    pub stop_timeout: Option<i64>,
    /// `--mac-address` (API < 1.44): the MAC on the first network.
    #[serde(deserialize_with = "nullable")]
    pub mac_address: String,
    /// `VOLUME`s asked for at create (anonymous volumes, as `-v /path`).
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// How the container is run.
    #[serde(deserialize_with = "nullable")]
    pub host_config: HostConfig,
    /// Its settings on its networks.
    #[serde(deserialize_with = "nullable")]
    pub networking_config: NetworkingConfig,
}

/// `NetworkingConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    /// Network name (or id) → settings.
    pub endpoints_config: Option<BTreeMap<String, Option<EndpointSettings>>>,
}

/// One network's settings at create or connect (docker's `EndpointSettings`, the fields a
/// client sets).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    /// More names for the container on the network.
    pub aliases: Option<Vec<String>>,
    /// Fixed addresses.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    /// A fixed MAC address (API ≥ 1.44 puts it here; older clients send `Config.MacAddress`).
    #[serde(deserialize_with = "nullable")]
    pub mac_address: String,
}

/// `EndpointSettings.IPAMConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointIpam {
    /// The IPv4 address.
    #[serde(rename = "IPv4Address", deserialize_with = "nullable")]
    pub ipv4_address: String,
    /// The IPv6 address, on an IPv6 network.
    #[serde(rename = "IPv6Address", deserialize_with = "nullable")]
    pub ipv6_address: String,
}

impl EndpointSettings {
    /// The runtime's endpoint for these settings.
    pub fn endpoint(self) -> Result<runtime::network::EndpointConfig, ApiError> {
        let ipam = self.ipam_config.unwrap_or_default();
        let ipv4_address = match ipam.ipv4_address.as_str() {
            "" => None,
            a => Some(
                a.parse()
                    .map_err(|_| bad(format!("invalid IPv4 address {a:?}")))?,
            ),
        };
        let ipv6_address = match ipam.ipv6_address.as_str() {
            "" => None,
            a => Some(
                a.parse()
                    .map_err(|_| bad(format!("invalid IPv6 address {a:?}")))?,
            ),
        };
        let mac_address = match self.mac_address.as_str() {
            "" => None,
            m => Some(runtime::network::validate_mac(m).map_err(|e| bad(e.to_string()))?),
        };
        Ok(runtime::network::EndpointConfig {
            aliases: self.aliases.unwrap_or_default(),
            ipv4_address,
            ipv6_address,
            mac_address,
            mtu: None,
        })
    }
}

/// `HostConfig` (the fields this server reads).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// `-v` values.
    pub binds: Option<Vec<String>>,
    /// `--mount` values as objects.
    pub mounts: Option<Vec<Mount>>,
    /// `-p`: `"80/tcp": [{"HostIp": "", "HostPort": "8080"}]`.
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    /// `-P`.
    #[serde(deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    /// `--network`.
    #[serde(deserialize_with = "nullable")]
    pub network_mode: String,
    /// `--rm`.
    #[serde(deserialize_with = "nullable")]
    pub auto_remove: bool,
    /// `--restart`.
    pub restart_policy: Option<RestartPolicy>,
    /// `-m`, bytes.
    #[serde(deserialize_with = "nullable")]
    pub memory: i64,
    /// `--cpus` × 10⁹.
    #[serde(deserialize_with = "nullable")]
    pub nano_cpus: i64,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--init`.
    pub init: Option<bool>,
    /// `--ulimit`.
    pub ulimits: Option<Vec<Ulimit>>,
    /// `--sysctl`.
    pub sysctls: Option<BTreeMap<String, String>>,
    /// `--volumes-from`.
    pub volumes_from: Option<Vec<String>>,
    /// `--log-driver`, `--log-opt`.
    pub log_config: Option<LogConfig>,
    /// `--shm-size`, bytes (0: the default).
    #[serde(deserialize_with = "nullable")]
    pub shm_size: i64,
    /// `--privileged`.
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    /// `--cgroupns`: `host` or `private` (empty: private, docker's default on cgroup v2).
    #[serde(deserialize_with = "nullable")]
    pub cgroupns_mode: String,
    /// `--device`.
    pub devices: Option<Vec<DeviceMapping>>,
    /// `--cap-add`.
    pub cap_add: Option<Vec<String>>,
    /// `--cap-drop`.
    pub cap_drop: Option<Vec<String>>,
    /// `--read-only`.
    #[serde(deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    /// The client's terminal size `[rows, cols]`.
    pub console_size: Option<[u16; 2]>,
}

/// One of `HostConfig.Devices`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    /// The device named on the client's side.
    #[serde(deserialize_with = "nullable")]
    pub path_on_host: String,
    /// Where it goes in the container (empty: the same path).
    #[serde(deserialize_with = "nullable")]
    pub path_in_container: String,
    /// `r`, `w`, `m` (empty: all three).
    #[serde(deserialize_with = "nullable")]
    pub cgroup_permissions: String,
}

/// `HostConfig.LogConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    /// The driver; empty: the default (json-file).
    #[serde(rename = "Type", deserialize_with = "nullable")]
    pub kind: String,
    /// Its options.
    pub config: Option<BTreeMap<String, String>>,
}

/// One of `HostConfig.Ulimits`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    /// docker's name (`nofile`).
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Soft limit; -1: unlimited.
    #[serde(deserialize_with = "nullable")]
    pub soft: i64,
    /// Hard limit; -1: unlimited.
    #[serde(deserialize_with = "nullable")]
    pub hard: i64,
}

/// One of `HostConfig.Mounts`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    /// Volume name (empty: anonymous) or host path.
    #[serde(deserialize_with = "nullable")]
    pub source: String,
    /// Path in the container.
    #[serde(deserialize_with = "nullable")]
    pub target: String,
    /// Read-only.
    #[serde(deserialize_with = "nullable")]
    pub read_only: bool,
    /// `NoCopy` of a volume.
    pub volume_options: Option<VolumeOptions>,
    /// `SizeBytes` and `Mode` of a tmpfs.
    pub tmpfs_options: Option<TmpfsOptions>,
}

/// `Mount.VolumeOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    /// Do not copy the image's files into a new volume.
    #[serde(deserialize_with = "nullable")]
    pub no_copy: bool,
}

/// `Mount.TmpfsOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    /// Size limit in bytes.
    #[serde(deserialize_with = "nullable")]
    pub size_bytes: i64,
    /// Permission bits.
    #[serde(deserialize_with = "nullable")]
    pub mode: u32,
}

impl Mount {
    /// The `--mount` value it stands for, read by the CLI's parser.
    fn flag(&self) -> Result<String, ApiError> {
        let mut parts = vec![format!("type={}", self.r#type)];
        for (key, value) in [("source", &self.source), ("target", &self.target)] {
            if value.contains(',') {
                return Err(bad(format!("mount {key} {value:?} cannot contain a comma")));
            }
            if !value.is_empty() {
                parts.push(format!("{key}={value}"));
            }
        }
        if self.read_only {
            parts.push("readonly".into());
        }
        if self.volume_options.as_ref().is_some_and(|v| v.no_copy) {
            parts.push("volume-nocopy".into());
        }
        if let Some(t) = &self.tmpfs_options {
            if t.size_bytes > 0 {
                parts.push(format!("tmpfs-size={}", t.size_bytes));
            }
            if t.mode != 0 {
                parts.push(format!("tmpfs-mode={:o}", t.mode));
            }
        }
        Ok(parts.join(","))
    }
}

/// One host side of a published port.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// Host address (empty: the runtime's default, loopback).
    #[serde(deserialize_with = "nullable")]
    pub host_ip: String,
    /// Host port (empty: any free one).
    #[serde(deserialize_with = "nullable")]
    pub host_port: String,
}

/// `{"Name": "on-failure", "MaximumRetryCount": 3}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure` (empty: no).
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// For `on-failure`.
    #[serde(deserialize_with = "nullable")]
    pub maximum_retry_count: i64,
}

/// `Env` as dockerd reads it: a `KEY` without `=` sets nothing. (The runtime's options take
/// it as "copy from this process's environment", which is the docker *client's* rule: here
/// that process is the server, whose environment must not reach containers.)
pub fn daemon_env(env: Vec<String>) -> Vec<String> {
    env.into_iter().filter(|e| e.contains('=')).collect()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// The runtime's options for a create with `name` (the query's) and `body`.
pub fn options(name: Option<String>, body: CreateBody) -> Result<ContainerOptions, ApiError> {
    if body.image.is_empty() {
        return Err(bad("Config.Image is required"));
    }
    let h = body.host_config;
    let mut networks = match h.network_mode.as_str() {
        // docker's `default` and `bridge` are our default network.
        "" | "default" | crate::networks::DOCKER_DEFAULT => Vec::new(),
        "host" => {
            return Err(bad(
                "network mode host is not supported: every container is its own VM",
            ))
        }
        m if m.starts_with("container:") => {
            return Err(bad(format!("network mode {m} is not supported yet")))
        }
        m => vec![m.to_string()],
    };
    let mut endpoints = BTreeMap::new();
    for (name, settings) in body.networking_config.endpoints_config.unwrap_or_default() {
        let name = match crate::networks::key(&name) {
            "default" => DEFAULT_NETWORK.to_string(),
            other => other.to_string(),
        };
        let first = networks.first().map_or(DEFAULT_NETWORK, String::as_str);
        if name != first && !networks.contains(&name) {
            if networks.is_empty() {
                // The default network stays the first interface, the others follow.
                networks.push(DEFAULT_NETWORK.to_string());
            }
            networks.push(name.clone());
        }
        endpoints.insert(name, settings.unwrap_or_default().endpoint()?);
    }
    if !body.mac_address.is_empty() {
        let mac =
            runtime::network::validate_mac(&body.mac_address).map_err(|e| bad(e.to_string()))?;
        let first = networks.first().map_or(DEFAULT_NETWORK, String::as_str);
        let endpoint: &mut runtime::network::EndpointConfig =
            endpoints.entry(first.to_string()).or_default();
        endpoint.mac_address.get_or_insert(mac);
    }
    let (entrypoint, mut args) = match body.entrypoint {
        None => (None, Vec::new()),
        Some(ep) => {
            let mut it = ep.into_iter();
            (Some(it.next().unwrap_or_default()), it.collect())
        }
    };
    args.extend(body.cmd.unwrap_or_default());
    let mut mounts = Vec::new();
    for b in h.binds.unwrap_or_default() {
        mounts.push(parse_volume(&b).map_err(|e| bad(line(&e)))?);
    }
    for m in h.mounts.unwrap_or_default() {
        mounts.push(parse_mount(&m.flag()?).map_err(|e| bad(line(&e)))?);
    }
    // `Volumes` lists every path a volume goes to, those of `Binds` and `Mounts` too (compose
    // sends both): only the others are anonymous volumes, as dockerd reads it.
    for path in body.volumes.unwrap_or_default().into_keys() {
        let path = path.trim_end_matches('/');
        if !mounts
            .iter()
            .any(|m| m.target().trim_end_matches('/') == path)
        {
            mounts.push(parse_volume(path).map_err(|e| bad(line(&e)))?);
        }
    }
    let mut publish = Vec::new();
    for (port, bindings) in h.port_bindings.unwrap_or_default() {
        let (cport, proto) = port.split_once('/').unwrap_or((&port, "tcp"));
        for b in bindings.unwrap_or_default() {
            let text = match (b.host_ip.as_str(), b.host_port.as_str()) {
                ("", "") => format!("{cport}/{proto}"),
                ("", hp) => format!("{hp}:{cport}/{proto}"),
                (ip, hp) if ip.contains(':') => format!("[{ip}]:{hp}:{cport}/{proto}"),
                (ip, hp) => format!("{ip}:{hp}:{cport}/{proto}"),
            };
            // A HostPort range (`-p 8000-8010:80`) takes the first free port of it.
            publish.extend(text.parse::<PortSpecs>().map_err(|e| bad(line(&e)))?.0);
        }
    }
    let restart = match h.restart_policy {
        None => Default::default(),
        Some(p) => runtime::restart::RestartPolicy::from_parts(&p.name, p.maximum_retry_count)
            .map_err(|e| bad(line(&e)))?,
    };
    let ulimits = h
        .ulimits
        .unwrap_or_default()
        .into_iter()
        .map(|u| runtime::ulimit::Ulimit::new(&u.name, u.soft, u.hard))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(line(&e)))?;
    let log = match h.log_config {
        None => Default::default(),
        Some(l) => runtime::logs::LogConfig::new(
            Some(l.kind.as_str()).filter(|k| !k.is_empty()),
            l.config.unwrap_or_default(),
        )
        .map_err(|e| bad(line(&e)))?,
    };
    let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(ContainerOptions {
        name,
        image: body.image,
        rootfs_dir: None,
        rootfs_image: None,
        process: ProcessOptions {
            args,
            entrypoint,
            env: daemon_env(body.env.unwrap_or_default()),
            workdir: non_empty(body.working_dir),
            user: non_empty(body.user),
            terminal: body.tty,
            open_stdin: body.open_stdin,
            console_size: h
                .console_size
                .map(|[r, c]| (r, c))
                .filter(|&(r, c)| r > 0 && c > 0),
            cap_add: h.cap_add.unwrap_or_default(),
            cap_drop: h.cap_drop.unwrap_or_default(),
            privileged: h.privileged,
            init: h.init.unwrap_or(false),
            ulimits,
            ..Default::default()
        },
        resources: runtime::resources::ResourceFlags {
            // Whole nanoseconds of CPU per second: the f64 keeps every value a client sends.
            #[allow(clippy::cast_precision_loss)]
            cpus: (h.nano_cpus > 0).then(|| h.nano_cpus as f64 / 1e9),
            memory_bytes: u64::try_from(h.memory).ok().filter(|&m| m > 0),
            pids_limit: h.pids_limit.filter(|&p| p > 0),
        },
        auto_remove: h.auto_remove,
        networks,
        endpoints,
        publish,
        publish_all: h.publish_all_ports,
        mounts,
        read_only: h.readonly_rootfs,
        hostname: non_empty(body.hostname),
        labels: body.labels.unwrap_or_default(),
        // docker's create never pulls: a missing image is a 404, and the client pulls.
        pull: runtime::image::PullPolicy::Never,
        stop_signal: non_empty(body.stop_signal),
        stop_timeout: body.stop_timeout.and_then(|t| u64::try_from(t).ok()),
        restart,
        sysctls: h.sysctls.unwrap_or_default(),
        shm_size: u64::try_from(h.shm_size).ok().filter(|&s| s > 0),
        cgroupns_host: h.cgroupns_mode == "host",
        devices: h
            .devices
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let container = Some(d.path_in_container)
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| d.path_on_host.clone());
                let perms = Some(d.cgroup_permissions)
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rwm".into());
                runtime::devices::parse(&format!("{}:{container}:{perms}", d.path_on_host))
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        volumes_from: h.volumes_from.unwrap_or_default(),
        log,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ContainerOptions, ApiError> {
        options(Some("web".into()), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn dockers_create_body_becomes_the_runtimes_options() {
        let o = parse(
            r#"{"Image":"busybox","Cmd":["echo","hi"],"Entrypoint":["/bin/sh","-c"],
                "Env":["A=1"],"WorkingDir":"/w","User":"1000","Tty":true,"OpenStdin":true,
                "Labels":{"k":"v"},"Unknown":1,
                "HostConfig":{"Binds":["/tmp:/mnt:ro"],"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
                  "NetworkMode":"none","AutoRemove":true,"RestartPolicy":{"Name":"","MaximumRetryCount":0},
                  "Memory":268435456,"NanoCpus":1500000000,"Init":true}}"#,
        )
        .unwrap();
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.process.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(o.process.args, ["-c", "echo", "hi"]);
        assert_eq!(o.process.env, ["A=1"]);
        let bare = parse(r#"{"Image":"b","Env":["HOME","PATH=/x"]}"#).unwrap();
        assert_eq!(
            bare.process.env,
            ["PATH=/x"],
            "a bare key must not copy the server's variable"
        );
        assert_eq!(o.process.workdir.as_deref(), Some("/w"));
        assert!(o.process.terminal && o.process.open_stdin && o.process.init);
        assert_eq!(o.networks, ["none"]);
        assert!(o.auto_remove);
        assert_eq!(o.resources.memory_bytes, Some(256 << 20));
        assert_eq!(o.resources.cpus, Some(1.5));
        assert_eq!(o.mounts.len(), 1);
        assert_eq!(
            (o.publish[0].host_port, o.publish[0].container_port),
            (8080, 80)
        );
        assert_eq!(o.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(o.pull, runtime::image::PullPolicy::Never);
    }

    #[test]
    fn host_config_limits_and_kernel_settings() {
        let o = parse(
            r#"{"Image":"b","HostConfig":{"Ulimits":[{"Name":"nofile","Soft":512,"Hard":1024},
                {"Name":"core","Soft":-1,"Hard":-1}]}}"#,
        )
        .unwrap();
        let u = &o.process.ulimits;
        assert_eq!(
            (u[0].name.as_str(), u[0].soft, u[0].hard, u[1].hard),
            ("nofile", 512, 1024, -1)
        );
        let e =
            parse(r#"{"Image":"b","HostConfig":{"Ulimits":[{"Name":"as","Soft":1,"Hard":1}]}}"#);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("invalid ulimit type: as"));
        let o = parse(
            r#"{"Image":"b","HostConfig":{"Sysctls":{"net.core.somaxconn":"1024"},
                "ShmSize":268435456}}"#,
        )
        .unwrap();
        assert_eq!(o.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(o.shm_size, Some(256 << 20));
        let o = parse(r#"{"Image":"b","HostConfig":{"ShmSize":0,"VolumesFrom":["data:ro"]}}"#);
        let o = o.unwrap();
        assert_eq!(
            (o.shm_size, &o.volumes_from[..]),
            (None, &["data:ro".to_string()][..])
        );
        let o = parse(
            r#"{"Image":"b","HostConfig":{"LogConfig":{"Type":"json-file",
                "Config":{"max-size":"10m","max-file":"3"}}}}"#,
        );
        assert_eq!(o.unwrap().log.opts["max-file"], "3");
        let o = parse(r#"{"Image":"b","HostConfig":{"LogConfig":{"Type":"","Config":null}}}"#);
        assert!(o.unwrap().log.is_default());
        let e = parse(r#"{"Image":"b","HostConfig":{"LogConfig":{"Type":"syslog"}}}"#);
        assert!(e.unwrap_err().message.contains("syslog"));
    }

    #[test]
    fn a_string_command_and_nulls_are_accepted() {
        let o = parse(
            r#"{"Image":"busybox","Cmd":"true","Entrypoint":null,"Env":null,"HostConfig":null}"#,
        );
        // HostConfig null is docker's "no host config": the defaults.
        let o = o.unwrap();
        assert_eq!(o.process.args, ["true"]);
        assert!(o.process.entrypoint.is_none() && o.networks.is_empty());
    }

    #[test]
    fn networks_endpoints_and_mounts_as_compose_sends_them() {
        let o = parse(
            r#"{"Image":"busybox","Volumes":{"/data":{},"/anon":{}},
                "HostConfig":{"NetworkMode":"proj_default","Binds":["proj_data:/data:rw"],
                  "Mounts":[{"Type":"volume","Source":"v2","Target":"/v2","ReadOnly":true},
                            {"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576}}]},
                "NetworkingConfig":{"EndpointsConfig":{"proj_default":{"Aliases":["web"],
                  "IPAMConfig":{"IPv4Address":"10.9.0.5"},"Links":null},"back":null}}}"#,
        )
        .unwrap();
        assert_eq!(o.networks, ["proj_default", "back"]);
        let e = &o.endpoints["proj_default"];
        assert_eq!(e.aliases, ["web"]);
        assert_eq!(e.ipv4_address.unwrap().to_string(), "10.9.0.5");
        assert_eq!(o.endpoints["back"], Default::default());
        let targets: Vec<&str> = o.mounts.iter().map(|m| m.target()).collect();
        assert_eq!(
            targets,
            ["/data", "/v2", "/t", "/anon"],
            "/data is not anonymous too"
        );
        // Aliases on docker's default network are on ours, which stays first.
        let o = parse(
            r#"{"Image":"b","HostConfig":{"NetworkMode":"bridge"},
                "NetworkingConfig":{"EndpointsConfig":{"bridge":{"Aliases":["x"]},"back":{}}}}"#,
        )
        .unwrap();
        assert_eq!(o.networks, [DEFAULT_NETWORK, "back"]);
        assert_eq!(o.endpoints[DEFAULT_NETWORK].aliases, ["x"]);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let e = parse(r#"{"Image":"busybox","HostConfig":{"NetworkMode":"host"}}"#).unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        let e =
            parse(r#"{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"bind"}]}}"#).unwrap_err();
        assert!(e.message.contains("--mount type=bind"), "{e}");
        let e = parse(
            r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv6Address":"10.0.0.1"}}}}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("IPv6 address"), "{e}");
        let e = parse(
            r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"MacAddress":"01:00:00:00:00:01"}}}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("MAC address"), "{e}");
        assert!(parse(r#"{"Cmd":["x"]}"#).is_err());
        let e = parse(r#"{"Image":"b","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#)
            .unwrap_err();
        assert!(e.message.contains("sometimes"), "{e}");
        let e = parse(r#"{"Image":"b","HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}]}}"#)
            .unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("/dev/sda"), "{e}");
    }

    #[test]
    fn devices_as_the_docker_cli_sends_them() {
        let o = parse(
            r#"{"Image":"b","HostConfig":{"Devices":[
                {"PathOnHost":"/dev/fuse","PathInContainer":"/dev/fuse","CgroupPermissions":"rwm"},
                {"PathOnHost":"/dev/net/tun","PathInContainer":"","CgroupPermissions":"r"}]}}"#,
        )
        .unwrap();
        let d: Vec<_> = o
            .devices
            .iter()
            .map(|d| (d.container_path.as_str(), d.major, d.minor, d.mode()))
            .collect();
        assert_eq!(
            d,
            [
                ("/dev/fuse", 10, 229, 0o666),
                ("/dev/net/tun", 10, 200, 0o444)
            ]
        );
    }
}
