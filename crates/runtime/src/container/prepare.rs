//! `prepare`: from what a user asked for (flags of `run`/`create`, an Engine API
//! `ContainerCreate` body, a build step) to a [`CreateRequest`]. Every check that can fail runs
//! here, before an image is pulled or a rootfs built where it can, so a bad flag costs nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ContainerError, CreateRequest};
use crate::netconf::{DnsConfig, ExtraHost};
use crate::resources::{ResourceFlags, ResourceLimits};
use crate::spec::{read_env_file, ProcessOptions};
use crate::state::VmOptions;
use crate::volume::{MountSpec, VolumeStore};

pub use net::ports::{PortSpec, PortSpecs, Protocol};

/// Everything a front end can ask of a new container. Defaults are docker's: the default
/// network, no limits, the image's command.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// Container name (default: generated).
    pub name: Option<String>,
    /// Image reference as the user wrote it; pulled when missing. With `rootfs_dir` it only
    /// names the container's origin (nothing is pulled or read).
    pub image: String,
    /// A host directory that is the root filesystem, instead of the image's: no image is
    /// resolved, the process is made from `process` alone (an empty image config), and the
    /// guest mounts the directory through virtiofs as its `/`, writing into it. The
    /// containerd shim's rootfs (the bundle's `rootfs`, from containerd's snapshotter).
    pub rootfs_dir: Option<PathBuf>,
    /// A read-only ext4 image that is the root filesystem instead of the image's: no image is
    /// resolved (as with `rootfs_dir`), and the container writes to its own overlay of the
    /// file, as over an image's rootfs; the file itself is never written. The containerd
    /// shim's rootfs built from a snapshot's layers.
    pub rootfs_image: Option<PathBuf>,
    /// The process: command (`args`, empty: the image's), entrypoint, env, user, tty, ….
    pub process: ProcessOptions,
    /// Files of `KEY=VALUE` lines added to the environment (`--env-file`).
    pub env_files: Vec<PathBuf>,
    /// A guest kernel for this container instead of the configured one.
    pub kernel: Option<PathBuf>,
    /// `--init-image`: a static vminitd for this container's VM instead of the installed one.
    pub init: Option<PathBuf>,
    /// `kvm` or `tcg` (default: chosen by probing).
    pub accel: Option<String>,
    /// Boot cold even where a VM template could serve.
    pub no_template: bool,
    /// `--cpus`, `-m`, `--pids-limit`.
    pub resources: ResourceFlags,
    /// Delete the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// `--network` values: empty for the default network, `none` alone for none.
    pub networks: Vec<String>,
    /// Aliases and fixed addresses on the container's networks, by network name (the
    /// default network is [`net::DEFAULT_NETWORK`]); each must be one of `networks`.
    pub endpoints: std::collections::BTreeMap<String, net::EndpointConfig>,
    /// Published ports (`-p`).
    pub publish: Vec<PortSpec>,
    /// Also publish every port the image exposes, each on a free loopback port (`-P`).
    pub publish_all: bool,
    /// Volumes, binds and tmpfs mounts (see [`super::parse_volume`] and its siblings).
    pub mounts: Vec<MountSpec>,
    /// The container's unix sockets to publish on the host (`--publish-socket`, see
    /// [`crate::sockets::parse_publish`]).
    pub publish_sockets: Vec<crate::sockets::PublishSocket>,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    /// Host name (default: the id's first 12 digits).
    pub hostname: Option<String>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: DnsConfig,
    /// `--add-host`.
    pub extra_hosts: Vec<ExtraHost>,
    /// The container's own labels (`--label`, `--label-file`); the image's are added under
    /// them.
    pub labels: crate::labels::Labels,
    /// When to pull the image (`--pull`; default: when missing).
    pub pull: crate::image::PullPolicy,
    /// The platform the image must be for (`--platform`; only linux/amd64 runs).
    pub platform: Option<oci::Platform>,

    /// `--stop-signal` (default: the image's `StopSignal`, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (default: [`crate::state::DEFAULT_STOP_TIMEOUT`]).
    pub stop_timeout: Option<u64>,
    /// `--restart` (default: no); not with `auto_remove`.
    pub restart: crate::restart::RestartPolicy,
    /// The container's own health check: the `--health-*` flags through
    /// [`crate::health::HealthOptions::to_config`], or an Engine API body's `Healthcheck`
    /// (checked here with [`crate::health::validate`]); the image's `HEALTHCHECK` fills in
    /// what it leaves out. None: the image's alone.
    pub healthcheck: Option<oci::spec::HealthConfig>,
    /// `--sysctl` (`KEY` → `VALUE`), only the namespaced ones docker allows
    /// ([`crate::sysctl`]).
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// `--shm-size` in bytes; None (or 0, as docker reads it): 64 MiB.
    pub shm_size: Option<u64>,
    /// `--cgroupns host`: the guest's cgroup namespace (and whole `/sys/fs/cgroup` tree)
    /// instead of the container's own (docker's default on cgroup v2, `private`).
    pub cgroupns_host: bool,
    /// `--device` (parsed: [`crate::devices::parse`]).
    pub devices: Vec<crate::devices::DeviceMapping>,
    /// `--masked-path`: absolute paths hidden in the container.
    pub masked_paths: Vec<String>,
    /// `--read-only-path`: absolute paths made read-only in the container.
    pub readonly_paths: Vec<String>,
    /// `--volumes-from` values as written (`CONTAINER[:ro|rw]`): those containers' volumes and
    /// binds at the same paths, under `mounts` ([`super::VolumesFrom`]).
    pub volumes_from: Vec<String>,
    /// `--log-driver` and `--log-opt` (checked here; see [`crate::logs::LogConfig`]).
    pub log: crate::logs::LogConfig,
    /// `--pod`: the pod (name or id) whose VM runs the container ([`crate::pod`]). Its
    /// network, published ports and VM are the pod's, so those flags are refused.
    pub pod: Option<String>,
    /// A network namespace made by someone else (CNI: a CRI sandbox's) whose interface the
    /// VM takes over, address, MAC and routes, instead of joining our networks; with no
    /// `networks` and no `publish` (the namespace's owner publishes).
    pub netns: Option<PathBuf>,
}

/// Checks `opts`, resolves its image (pulling it with `pull` when missing, building its
/// rootfs once) and its networks and volumes (creating missing named volumes, as docker
/// does), and returns what [`super::Runtime::create`] writes.
pub async fn prepare(
    root: &std::path::Path,
    opts: ContainerOptions,
    pull: &oci::PullOptions,
) -> Result<CreateRequest, ContainerError> {
    // Flags that cannot work are refused before an image is pulled or a rootfs built.
    if let Some(p) = &opts.platform {
        crate::image::check_platform(p)?;
    }
    opts.restart
        .check_auto_remove(opts.auto_remove)
        .map_err(ContainerError::RestartPolicy)?;
    crate::spec::capabilities(&opts.process)?;
    if let Some(h) = &opts.healthcheck {
        crate::health::validate(h)?;
    }
    crate::sysctl::check_all(&opts.sysctls)?;
    opts.log.check()?;
    if let Some(s) = &opts.stop_signal {
        crate::spec::parse_signal(s)?;
    }
    if let Some(h) = &opts.hostname {
        crate::netconf::check_hostname(h)?;
    }
    if let Some(k) = &opts.kernel {
        if !k.is_file() {
            return Err(ContainerError::Kernel(k.clone()));
        }
    }
    let resources = opts.resources.limits()?;
    let pod = match &opts.pod {
        Some(key) => Some(join_pod(root, key, &opts, &resources)?),
        None => None,
    };
    let mut process = opts.process;
    for path in &opts.env_files {
        process.env_files.extend(read_env_file(path)?);
    }
    let networks = match net::NetworkMode::from_flags(&opts.networks)? {
        net::NetworkMode::None if !opts.publish.is_empty() => {
            return Err(ContainerError::PublishWithoutNetwork)
        }
        net::NetworkMode::None => Vec::new(),
        net::NetworkMode::Networks(names) => names,
    };
    let nets = net::Networks::open(root)?;
    // A network may be named by its id too: the record keeps names.
    let networks = networks
        .into_iter()
        .map(|n| match n.as_str() {
            net::DEFAULT_NETWORK => Ok(n),
            _ => nets.resolve(&n).map(|c| c.name),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let endpoints = check_endpoints(&nets, &networks, opts.endpoints)?;
    let netns = match opts.netns {
        Some(path) if !path.exists() => {
            return Err(ContainerError::Pod(crate::pod::PodError::Member(format!(
                "network namespace {} does not exist",
                path.display()
            ))))
        }
        Some(_)
            if opts.networks.iter().any(|n| n != "none")
                || !opts.publish.is_empty()
                || !endpoints.is_empty() =>
        {
            return Err(ContainerError::Pod(crate::pod::PodError::Member(
                "a container in a network namespace of its own takes no --network or -p".into(),
            )))
        }
        other => other,
    };
    // The namespace is the container's whole network: none of ours besides.
    let networks = if netns.is_some() {
        Vec::new()
    } else {
        networks
    };
    let (networks, endpoints, vm) = match &pod {
        Some((_, pod_vm)) => (Vec::new(), Default::default(), pod_vm.clone()),
        None => (
            networks,
            endpoints,
            VmOptions {
                kernel: opts.kernel.clone(),
                cpus: resources.vm_cpus(),
                memory_mib: resources.vm_memory_mib(),
                accel: opts.accel.clone(),
                no_template: opts.no_template,
                overlay: false,
                modules: device_modules(&opts.devices),
                init: init_binary(opts.init.as_deref())?,
            },
        ),
    };
    for p in &opts.publish_sockets {
        let parent = p.host.parent().unwrap_or(std::path::Path::new("/"));
        if !parent.is_dir() {
            return Err(ContainerError::PublishSocket(format!(
                "--publish-socket {}: directory {} does not exist",
                p.host.display(),
                parent.display()
            )));
        }
    }
    let inherited = volumes_from(root, &opts.volumes_from)?;
    let rootfs_dir = match &opts.rootfs_dir {
        Some(dir) => Some(
            dir.canonicalize()
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| ContainerError::RootfsDir(dir.clone()))?,
        ),
        None => None,
    };
    let rootfs_image = match (&rootfs_dir, &opts.rootfs_image) {
        (None, Some(file)) => Some(
            file.canonicalize()
                .ok()
                .filter(|f| f.is_file())
                .ok_or_else(|| ContainerError::RootfsImage(file.clone()))?,
        ),
        _ => None,
    };
    let image = if rootfs_dir.is_some() || rootfs_image.is_some() {
        // Nothing to pull or build: the directory or the image file is the whole filesystem.
        crate::image::ResolvedImage {
            reference: opts.image.clone(),
            digest: String::new(),
            config: Default::default(),
            rootfs: rootfs_image.unwrap_or_default(),
            volumes: Vec::new(),
            exposed_ports: Vec::new(),
        }
    } else {
        crate::image::resolve(root, &opts.image, pull, opts.pull, opts.platform.as_ref()).await?
    };
    let publish = publish(opts.publish, opts.publish_all, &image.exposed_ports);
    let mounts = super::mounts::with_inherited(opts.mounts, inherited);
    let mounts = super::mounts::resolve(&VolumeStore::open(root)?, mounts, &image.volumes)?;
    Ok(CreateRequest {
        name: opts.name,
        image: image.reference,
        image_digest: image.digest,
        image_config: image.config,
        rootfs: image.rootfs,
        rootfs_dir,
        process,
        vm,
        auto_remove: opts.auto_remove,
        networks,
        endpoints,
        publish,
        mounts,
        publish_sockets: opts.publish_sockets,
        read_only: opts.read_only,
        resources,
        hostname: opts.hostname,
        dns: opts.dns,
        extra_hosts: opts.extra_hosts,
        labels: opts.labels,
        stop_signal: opts.stop_signal,
        stop_timeout: opts.stop_timeout,
        restart: opts.restart,
        healthcheck: opts.healthcheck,
        sysctls: opts.sysctls,
        shm_size: opts.shm_size.filter(|&s| s > 0),
        cgroupns_host: opts.cgroupns_host,
        devices: opts.devices,
        masked_paths: opts.masked_paths,
        readonly_paths: opts.readonly_paths,
        volumes_from: opts.volumes_from,
        log: opts.log,
        pod: pod.map(|(infra, _)| crate::state::PodRole::Member { infra }),
        netns,
    })
}

/// `--init-image PATH` made absolute, once it is known to be a regular file: the VM boots it
/// as its PID 1, so a missing one is refused at create rather than at every start.
fn init_binary(path: Option<&std::path::Path>) -> Result<Option<PathBuf>, ContainerError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bad = |why: String| ContainerError::InitImage(path.display().to_string(), why);
    let abs = std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))?;
    let meta = std::fs::metadata(&abs).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a file (a static vminitd build)".into()));
    }
    Ok(Some(abs))
}

/// The guest drivers `devices` need, each once.
fn device_modules(devices: &[crate::devices::DeviceMapping]) -> Vec<String> {
    let mut modules: Vec<String> = devices
        .iter()
        .filter_map(|d| d.module())
        .map(String::from)
        .collect();
    modules.sort();
    modules.dedup();
    modules
}

/// The pod a `--pod` container joins (its infra container's id and VM), after checking that
/// none of its flags belongs to the pod: the network, the ports, the VM and bind mounts
/// (a member's files come through the pod's share; binds need a virtiofs device of their own,
/// and a running VM takes no new device).
fn join_pod(
    root: &std::path::Path,
    key: &str,
    opts: &ContainerOptions,
    resources: &ResourceLimits,
) -> Result<(String, VmOptions), ContainerError> {
    let refuse = |what: &str| {
        Err(ContainerError::from(crate::pod::PodError::Member(format!(
            "{what} belongs to the pod, not to a container in it: give it to `container pod create`"
        ))))
    };
    if !opts.networks.is_empty() || !opts.endpoints.is_empty() {
        return refuse("--network (and --ip, --network-alias)");
    }
    if !opts.publish.is_empty() || opts.publish_all {
        return refuse("-p/--publish");
    }
    if opts.kernel.is_some() || opts.accel.is_some() || opts.init.is_some() {
        return refuse("the VM (--kernel, --accel, --init-image)");
    }
    if opts.hostname.is_some() {
        return refuse("--hostname");
    }
    if !opts.devices.is_empty() {
        // The pod's VM booted without their drivers.
        return refuse("--device");
    }
    if opts.dns != DnsConfig::default() || !opts.extra_hosts.is_empty() {
        return refuse("--dns and --add-host");
    }
    if opts
        .mounts
        .iter()
        .any(|m| matches!(m, MountSpec::Volume { .. }))
        || !opts.volumes_from.is_empty()
    {
        return Err(ContainerError::Pod(crate::pod::PodError::Member(
            "a container in a pod takes bind and tmpfs mounts, not volumes: a volume is a disk \
             of its own, which the pod's running VM cannot take"
                .into(),
        )));
    }
    let store = crate::state::Store::open(root)?;
    let infra = crate::pod::resolve(&store, key)?;
    let vm = infra.config.vm.clone();
    if let Some(bytes) = resources.memory_bytes {
        if bytes > vm.memory_mib << 20 {
            return Err(ContainerError::from(crate::pod::PodError::Member(format!(
                "-m {} MiB does not fit pod {key}'s VM ({} MiB): size the pod with `pod create -m`",
                bytes >> 20,
                vm.memory_mib
            ))));
        }
    }
    if resources.vm_cpus() > vm.cpus {
        return Err(ContainerError::from(crate::pod::PodError::Member(format!(
            "--cpus does not fit pod {key}'s VM ({} vCPUs): size the pod with `pod create --cpus`",
            vm.cpus
        ))));
    }
    Ok((infra.id, vm))
}

/// The mounts `--volumes-from` values give, in their order (docker's).
fn volumes_from(
    root: &std::path::Path,
    values: &[String],
) -> Result<Vec<crate::volume::MountSpec>, ContainerError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let store = crate::state::Store::open(root)?;
    let mut out = Vec::new();
    for v in values {
        let from = super::VolumesFrom::parse(v)?;
        let source = store.resolve(&from.container)?;
        out = super::mounts::with_inherited(out, from.mounts_of(&source.config.mounts));
    }
    Ok(out)
}

/// A container's `--network` flags and what they ask of each network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFlags {
    /// `--network` values: `NAME` or `NAME,alias=A,ip=IP,ip6=IP,mac=MAC` (Apple's and
    /// docker's long form; `none` alone for no network). Repeatable.
    pub networks: Vec<String>,
    /// `--network-alias`: names on every network of the flags (none given: the default one).
    pub aliases: Vec<String>,
    /// `--ip`: the IPv4 address on the first network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--ip6`: the IPv6 address on the first network (an IPv6 network).
    pub ip6: Option<std::net::Ipv6Addr>,
    /// `--mac-address`: the MAC on the first network.
    pub mac: Option<String>,
}

impl NetworkFlags {
    /// The network names in order and the endpoint settings per network: `--network-alias`
    /// on each network, `--ip`/`--ip6`/`--mac-address` on the first, then each value's own
    /// `key=value` options. Unknown keys and malformed values are refused, naming them.
    pub fn resolve(
        &self,
    ) -> Result<(Vec<String>, BTreeMap<String, net::EndpointConfig>), ContainerError> {
        let bad = |v: &str, why: String| {
            ContainerError::Endpoint(format!("invalid --network {v:?}: {why}"))
        };
        let mut names = Vec::new();
        let mut endpoints: BTreeMap<String, net::EndpointConfig> = BTreeMap::new();
        for value in &self.networks {
            let mut parts = value.split(',');
            let name = parts.next().unwrap_or_default().to_string();
            let endpoint = endpoints.entry(name.clone()).or_default();
            for option in parts {
                let (key, val) = option
                    .split_once('=')
                    .ok_or_else(|| bad(value, format!("{option:?} is not KEY=VALUE")))?;
                let unparsable = || bad(value, format!("invalid {key} {val:?}"));
                match key {
                    "alias" => endpoint.aliases.push(val.to_string()),
                    "ip" => endpoint.ipv4_address = Some(val.parse().map_err(|_| unparsable())?),
                    "ip6" => endpoint.ipv6_address = Some(val.parse().map_err(|_| unparsable())?),
                    "mac" => endpoint.mac_address = Some(val.to_string()),
                    "mtu" => endpoint.mtu = Some(val.parse().map_err(|_| unparsable())?),
                    _ => {
                        return Err(bad(
                            value,
                            format!("unknown option {key:?} (alias, ip, ip6, mac, mtu)"),
                        ))
                    }
                }
            }
            names.push(name);
        }
        let first = names
            .first()
            .cloned()
            .unwrap_or_else(|| net::DEFAULT_NETWORK.to_string());
        let on_first = endpoints.entry(first.clone()).or_default();
        if let Some(ip) = self.ip {
            on_first.ipv4_address.get_or_insert(ip);
        }
        if let Some(ip6) = self.ip6 {
            on_first.ipv6_address.get_or_insert(ip6);
        }
        if let Some(mac) = &self.mac {
            on_first.mac_address.get_or_insert_with(|| mac.clone());
        }
        if !self.aliases.is_empty() {
            let all = if names.is_empty() {
                vec![first]
            } else {
                names.clone()
            };
            for n in all {
                let endpoint = endpoints.entry(n).or_default();
                let given = std::mem::take(&mut endpoint.aliases);
                endpoint.aliases = self.aliases.iter().cloned().chain(given).collect();
            }
        }
        endpoints.retain(|_, e| *e != net::EndpointConfig::default());
        Ok((names, endpoints))
    }
}

/// `endpoints` if each is for one of `networks`, its aliases are DNS names and its fixed
/// address is a host address of its network's subnet (whether another container has it is
/// known at start). Empty endpoints are dropped.
pub(crate) fn check_endpoints(
    nets: &net::Networks,
    networks: &[String],
    endpoints: std::collections::BTreeMap<String, net::EndpointConfig>,
) -> Result<std::collections::BTreeMap<String, net::EndpointConfig>, ContainerError> {
    let mut out = std::collections::BTreeMap::new();
    for (key, mut endpoint) in endpoints {
        let (network, mut config) = match key.as_str() {
            net::DEFAULT_NETWORK | "none" => (key, None),
            _ => {
                let config = nets.resolve(&key)?;
                (config.name.clone(), Some(config))
            }
        };
        if network == "none" {
            return Err(ContainerError::Endpoint(
                "a container without a network (--network none) cannot have network aliases \
                 or addresses"
                    .into(),
            ));
        }
        if !networks.contains(&network) {
            return Err(ContainerError::Endpoint(format!(
                "network {network} has settings (aliases, address) but the container is not \
                 connected to it"
            )));
        }
        for alias in &endpoint.aliases {
            net::validate_alias(alias).map_err(net::NetworkError::from)?;
        }
        endpoint.aliases.dedup();
        if let Some(mac) = &endpoint.mac_address {
            endpoint.mac_address = Some(net::validate_mac(mac).map_err(net::NetworkError::from)?);
        }
        let pinned = [
            endpoint.ipv4_address.map(std::net::IpAddr::from),
            endpoint.ipv6_address.map(std::net::IpAddr::from),
        ];
        // The default network's definition is read (and written on first use) only when a
        // setting needs it.
        let needs_config = endpoint.mtu.is_some() || pinned.iter().any(Option::is_some);
        if config.is_none() && needs_config {
            config = Some(nets.resolve(&network)?);
        }
        if let Some(config) = &config {
            if let Some(mtu) = endpoint.mtu {
                // 1280: what IPv6 needs, and far above IPv4's floor.
                if !(1280..=config.mtu).contains(&mtu) {
                    return Err(ContainerError::Endpoint(format!(
                        "mtu {mtu} on network {network}: between 1280 and the network's {}",
                        config.mtu
                    )));
                }
            }
            for address in pinned.into_iter().flatten() {
                check_pinned(config, address)?;
            }
        }
        if endpoint != net::EndpointConfig::default() {
            out.insert(network, endpoint);
        }
    }
    Ok(out)
}

/// Refuses an address asked for on `config`'s network that cannot be a container's there
/// (whether another container has it is known only at start).
fn check_pinned(
    config: &net::NetworkConfig,
    address: std::net::IpAddr,
) -> Result<(), ContainerError> {
    let network = &config.name;
    let (subnet, gateway) = match address {
        std::net::IpAddr::V4(_) => (Some(config.subnet.to_string()), config.gateway.to_string()),
        std::net::IpAddr::V6(_) => (
            config.subnet6.map(|s| s.to_string()),
            config.gateway6.map(|g| g.to_string()).unwrap_or_default(),
        ),
    };
    let Some(subnet) = subnet else {
        return Err(ContainerError::Endpoint(format!(
            "network {network} has no IPv6 (create it with --ipv6) for address {address}"
        )));
    };
    if !config.is_host_address(address) || config.is_gateway(address) {
        return Err(ContainerError::Endpoint(format!(
            "address {address} is not a free host address of network {network} \
             ({subnet}, gateway {gateway})"
        )));
    }
    Ok(())
}

/// `given`, then with `all` the image's exposed ports none of them covers, each on a free host
/// port of the loopback, 127.0.0.1 and [::1] (docker binds 0.0.0.0 and [::]; our `-p` default
/// is the loopback, and `-P` follows it).
fn publish(mut given: Vec<PortSpec>, all: bool, exposed: &[(u16, Protocol)]) -> Vec<PortSpec> {
    if all {
        for &(port, protocol) in exposed {
            if !given
                .iter()
                .any(|p| p.container_port == port && p.protocol == protocol)
            {
                given.push(PortSpec {
                    host_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                    host_port: 0,
                    container_port: port,
                    protocol,
                    loopback6: true,
                    host_port_end: 0,
                });
            }
        }
    }
    given
}

impl ResourceFlags {
    /// The limits these flags ask for (an unset flag: no limit).
    pub fn limits(&self) -> Result<ResourceLimits, crate::resources::ResourceError> {
        ResourceLimits::from_flags(self.cpus, self.memory_bytes, self.pids_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_flags_give_names_and_endpoints() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let flags = |networks: &[&str], aliases: &[&str]| NetworkFlags {
            networks: v(networks),
            aliases: v(aliases),
            ..Default::default()
        };
        let (names, e) = flags(&["a"], &[]).resolve().unwrap();
        assert_eq!((names, e.is_empty()), (v(&["a"]), true));
        let (names, on_default) = flags(&[], &["x"]).resolve().unwrap();
        assert!(names.is_empty());
        assert_eq!(on_default[net::DEFAULT_NETWORK].aliases, ["x"]);
        let (_, two) = flags(&["a", "b"], &["x", "y"]).resolve().unwrap();
        assert_eq!(two.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(two["b"].aliases, ["x", "y"]);
        // The long form, and --ip/--ip6/--mac-address on the first network.
        let mut f = flags(
            &[
                "lab,ip=10.1.0.9,alias=db,mac=02:00:00:00:00:09",
                "v6,ip6=fd00::9",
            ],
            &["x"],
        );
        f.ip6 = Some("fd00:1::5".parse().unwrap());
        let (names, e) = f.resolve().unwrap();
        assert_eq!(names, v(&["lab", "v6"]));
        assert_eq!(e["lab"].aliases, ["x", "db"]);
        assert_eq!(e["lab"].ipv4_address, Some("10.1.0.9".parse().unwrap()));
        assert_eq!(e["lab"].ipv6_address, Some("fd00:1::5".parse().unwrap()));
        assert_eq!(e["lab"].mac_address.as_deref(), Some("02:00:00:00:00:09"));
        assert_eq!(e["v6"].ipv6_address, Some("fd00::9".parse().unwrap()));
        let mut ip_only = flags(&[], &[]);
        ip_only.ip = Some("192.168.64.77".parse().unwrap());
        let (_, e) = ip_only.resolve().unwrap();
        assert!(e[net::DEFAULT_NETWORK].ipv4_address.is_some());
        for (value, needle) in [
            ("a,mtu=x", "invalid mtu"),
            ("a,speed=1", "unknown option \"speed\""),
            ("a,ip=x", "invalid ip \"x\""),
            ("a,ip6=10.0.0.1", "invalid ip6"),
            ("a,alias", "not KEY=VALUE"),
        ] {
            let err = flags(&[value], &[]).resolve().unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
        }
    }

    #[test]
    fn publish_all_adds_only_uncovered_exposed_ports() {
        let given: Vec<PortSpec> = vec!["8080:80".parse().unwrap()];
        let exposed = [(80, Protocol::Tcp), (53, Protocol::Udp)];
        let out = publish(given.clone(), true, &exposed);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], given[0]);
        assert_eq!(
            (out[1].container_port, out[1].protocol, out[1].host_port),
            (53, Protocol::Udp, 0)
        );
        assert!(out[1].host_ip.is_loopback());
        assert_eq!(publish(given.clone(), false, &exposed), given);
    }
}
