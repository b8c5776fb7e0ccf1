//! Container commands, flattened to the top level of `container`: `run create start stop restart
//! kill delete(rm) list(ls, ps) exec logs inspect cp stats port pause unpause wait rename top
//! attach export prune`, plus the hidden monitor subcommand.
//! One file per group of verbs; the logic lives in the `runtime` crate.

mod attach;
mod cidfile;
mod cp;
mod health;
mod inspect;
mod lifecycle;
mod logs;
mod manage;
mod monitor;
mod mounts;
mod restart;
mod run;
mod stats;

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use runtime::image::PullPolicy;

use crate::global::{Format, GlobalOptions};

/// Container verbs.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container from an image, attached unless -d.
    Run(Box<run::RunArgs>),
    /// Create a container without starting it; prints its id.
    Create(Box<run::CreateArgs>),
    /// Start created or exited containers.
    Start(lifecycle::StartArgs),
    /// Stop running containers: their stop signal (SIGTERM), then SIGKILL after the timeout.
    Stop(lifecycle::StopArgs),
    /// Stop (if running) and start containers again.
    Restart(lifecycle::RestartArgs),
    /// Send a signal to the main process of running containers.
    Kill(lifecycle::KillArgs),
    /// Delete containers and their disks.
    #[command(alias = "rm")]
    Delete(lifecycle::DeleteArgs),
    /// List containers.
    #[command(aliases = ["ls", "ps"])]
    List(inspect::ListArgs),
    /// Run another process in a running container.
    Exec(run::ExecArgs),
    /// Show a container's output (or its VM's boot console with --boot).
    Logs(logs::LogsArgs),
    /// Show containers' details as JSON, or through a Go template (-f).
    Inspect(inspect::InspectArgs),
    /// Copy files/directories between a container and the host (`-`: a tar stream).
    Cp(cp::CpArgs),
    /// Change containers' resource limits (live for running ones, within their VM's size).
    Update(lifecycle::UpdateArgs),
    /// Show containers' live resource usage (CPU, memory, network, block I/O, processes).
    Stats(stats::StatsArgs),
    /// List a running container's published ports (or the host address of one).
    Port(inspect::PortArgs),
    /// Freeze all processes of containers (their whole VM).
    Pause(manage::PauseArgs),
    /// Let paused containers run again.
    Unpause(manage::PauseArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(manage::WaitArgs),
    /// Rename a container.
    Rename(manage::RenameArgs),
    /// Show a container's processes (`ps -ef` or `ps aux` columns).
    Top(manage::TopArgs),
    /// Attach to a running container's main process (stdin, stdout, stderr).
    Attach(attach::AttachArgs),
    /// Write a container's root filesystem as a tar archive.
    Export(manage::ExportArgs),
    /// Delete every stopped container.
    Prune(manage::PruneArgs),
    /// Internal: the per-container monitor process.
    #[command(name = "__monitor", hide = true)]
    Monitor(monitor::MonitorArgs),
    /// Internal: a pre-booted VM waiting to become a container's monitor.
    #[command(name = "__monitor-pool", hide = true)]
    Pool(monitor::PoolArgs),
}

/// Resource limits, for `run`/`create` and `update`.
#[derive(Debug, Args)]
pub struct ResourceFlags {
    /// CPU limit, fractions allowed (e.g. 1.5): the VM gets ceil(N) vCPUs and the container
    /// N CPUs' worth of time (default: 1 vCPU, no quota).
    // A negative value is the value (refused by the parser with the flag's name), not a flag.
    #[arg(long, value_name = "N", value_parser = parse_cpus, allow_negative_numbers = true)]
    pub cpus: Option<f64>,
    /// Memory limit (e.g. 256m, 1g): the container's processes are OOM-killed beyond it; the
    /// VM gets this plus the guest's own overhead (default: no limit, a 512 MiB VM).
    #[arg(
        short,
        long,
        value_name = "SIZE",
        value_parser = parse_memory,
        allow_negative_numbers = true
    )]
    pub memory: Option<u64>,
    /// Most processes the container may have (0 or -1: unlimited).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    /// The runtime's form of these flags.
    pub fn flags(&self) -> runtime::resources::ResourceFlags {
        runtime::resources::ResourceFlags {
            cpus: self.cpus,
            memory_bytes: self.memory,
            pids_limit: self.pids_limit,
        }
    }
}

/// Flags shared by `run` and `create`.
#[derive(Debug, Args)]
pub struct CreateFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Delete the container when it exits.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub mounts: mounts::MountFlags,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from here).
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]) inside the container.
    #[arg(short, long, conflicts_with = "uid")]
    pub user: Option<String>,
    /// User id inside the container (Apple's flag; -u UID[:GID] in docker's words).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Group id inside the container, with --uid.
    #[arg(long, value_name = "GID", requires = "uid")]
    pub gid: Option<u32>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Add a Linux capability to docker's default set (e.g. NET_ADMIN; ALL for every one).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability from the set (ALL for every one).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability, and /proc and /sys unmasked and writable. The VM stays the boundary.
    #[arg(long)]
    pub privileged: bool,
    /// Guest kernel for this container (vmlinux or bzImage).
    #[arg(short = 'k', long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The VM's init for this container: a static vminitd build instead of the installed one
    /// (Apple's flag, whose init image is ours as a binary).
    #[arg(long = "init-image", value_name = "PATH")]
    pub init_image: Option<PathBuf>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Resource limit of the container's processes, NAME=SOFT[:HARD] with docker's names
    /// (nofile, nproc, core, memlock, stack, …); -1 or unlimited: no limit. Repeatable.
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimit: Vec<runtime::ulimit::Ulimit>,
    /// Kernel setting of the container, KEY=VALUE: the namespaced ones docker allows (net.*,
    /// kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*). Repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_sysctl)]
    pub sysctl: Vec<(String, String)>,
    /// Size of /dev/shm (e.g. 256m; default 64m).
    #[arg(long, value_name = "SIZE", value_parser = parse_shm_size)]
    pub shm_size: Option<u64>,
    /// Cgroup namespace: private (default; /sys/fs/cgroup is the container's own cgroup) or
    /// host (the VM's whole cgroup tree).
    #[arg(long, value_name = "host|private", value_parser = ["host", "private"])]
    pub cgroupns: Option<String>,
    /// Make a device of the VM's kernel in the container, HOST[:CONTAINER[:PERMISSIONS]]:
    /// /dev/fuse or /dev/net/tun (a container's VM has no host devices). Repeatable.
    #[arg(long = "device", value_name = "DEVICE", value_parser = parse_device)]
    pub devices: Vec<runtime::devices::DeviceMapping>,
    /// Hide PATH in the container (an empty read-only directory, or /dev/null over a file),
    /// as /proc/kcore is hidden (Apple's flag). Repeatable.
    #[arg(long = "masked-path", value_name = "PATH", value_parser = parse_plain_path)]
    pub masked_paths: Vec<String>,
    /// Make PATH read-only in the container (Apple's flag). Repeatable.
    #[arg(long = "read-only-path", value_name = "PATH", value_parser = parse_plain_path)]
    pub readonly_paths: Vec<String>,
    /// Mount the volumes and binds of another container at the same paths, CONTAINER[:ro|rw]
    /// (default: each as that container has it). Repeatable.
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    pub volumes_from: Vec<String>,
    /// Where the container's output goes: json-file (the default) or local, both kept by its
    /// monitor for `logs`, or none (nothing kept).
    #[arg(long, value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// A log option, KEY=VALUE: max-size (e.g. 10m; rotate past it), max-file (files kept).
    /// Default without options: 20m in 5 files. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Accelerator: kvm or tcg (default: kvm when it can boot the kernel, else tcg).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Boot the VM cold instead of restoring it from a pre-booted VM template.
    #[arg(long)]
    pub no_template: bool,
    /// Connect to this network (repeatable: eth0, eth1, ...; `none`: loopback only;
    /// default: the default network). NAME,alias=A,ip=IP,ip6=IP,mac=MAC sets the container's
    /// names and addresses there.
    #[arg(long = "network", value_name = "NAME[,KEY=VALUE…]")]
    pub network: Vec<String>,
    /// The container's IPv4 address on its first network.
    #[arg(long, value_name = "IP")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The container's IPv6 address on its first network (created with --ipv6).
    #[arg(long, value_name = "IP")]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// The container's MAC address on its first network.
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Run in this pod's VM (`container pod create`), sharing its network and ports.
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    /// Another name the container answers to on its networks (those of --network, else the
    /// default network): peers resolve it through DNS and /etc/hosts. Repeatable.
    #[arg(long = "network-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Publish a container port on the host ([HOST_IP:]HOST_PORT:CTR_PORT[/tcp|/udp];
    /// HOST_IP defaults to 127.0.0.1). Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<runtime::container::PortSpecs>,
    /// Publish every port the image EXPOSEs on a free host port of 127.0.0.1.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Publish a unix socket the container listens on at a host path
    /// (HOST_PATH:CONTAINER_PATH, both absolute; the host socket is made at start and removed
    /// at stop). Repeatable.
    #[arg(long = "publish-socket", value_name = "HOST_PATH:CONTAINER_PATH", value_parser = runtime::sockets::parse_publish)]
    pub publish_socket: Vec<runtime::sockets::PublishSocket>,
    /// Forward the host's SSH agent ($SSH_AUTH_SOCK) into the container at
    /// /run/host-services/ssh-auth.sock, and set SSH_AUTH_SOCK there.
    #[arg(long)]
    pub ssh: bool,
    /// Container host name (default: the first 12 digits of its id).
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// DNS server for the container, instead of its network's (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// DNS search domain (repeatable).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// resolv.conf option, e.g. ndots:2 (repeatable).
    #[arg(long = "dns-option", value_name = "OPT")]
    pub dns_option: Vec<String>,
    /// The default DNS domain: first in resolv.conf's search list (Apple's flag).
    #[arg(long = "dns-domain", value_name = "DOMAIN")]
    pub dns_domain: Option<String>,
    /// Configure no DNS: the image's own /etc/resolv.conf stays (Apple's flag).
    #[arg(long = "no-dns", conflicts_with_all = ["dns", "dns_search", "dns_option", "dns_domain"])]
    pub no_dns: bool,
    /// Add a line to /etc/hosts: NAME:IP, or NAME:host-gateway for the host (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = parse_add_host)]
    pub add_host: Vec<runtime::netconf::ExtraHost>,
    #[command(flatten)]
    pub labels: crate::labels::LabelFlags,
    /// Write the container's id to FILE (which must not exist).
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// When to pull the image: always (first, every time), missing (when not in the store),
    /// never (a missing image is an error).
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "missing",
        value_parser = PossibleValuesParser::new(["always", "missing", "never"])
            .map(|s| s.parse::<PullPolicy>().unwrap_or_default())
    )]
    pub pull: PullPolicy,
    /// The platform the image must be for; only linux/amd64 runs (as OS/ARCH).
    #[arg(long, value_name = "OS/ARCH", value_parser = parse_platform)]
    pub platform: Option<oci::Platform>,
    /// Progress of an image pull on stderr: auto (bars on a terminal), plain (a line per
    /// layer), none.
    #[arg(long, value_enum, default_value_t, value_name = "TYPE")]
    pub progress: crate::progress::ProgressMode,
    /// The image's OS (Apple's flag; with --arch, as --platform OS/ARCH; default linux).
    #[arg(long, value_name = "OS", conflicts_with = "platform")]
    pub os: Option<String>,
    /// The image's architecture (Apple's flag; amd64, or x86_64 as Apple names it).
    #[arg(long, value_name = "ARCH", conflicts_with = "platform")]
    pub arch: Option<String>,
    #[command(flatten)]
    pub stopping: lifecycle::StopFlags,
    #[command(flatten)]
    pub restart: restart::RestartFlags,
    #[command(flatten)]
    pub health: health::HealthFlags,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Image reference, then the command and its arguments (default: the image's). Everything
    /// after the image belongs to the command, flags included (as in docker).
    // One positional, not two: clap stops reading flags only once a trailing var arg has its
    // first value, so with the image apart `run IMG --rm` would set `--rm`. No hyphen values:
    // an unknown flag before the image is an error, never taken for the image.
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub image_and_command: Vec<String>,
}

impl CreateFlags {
    /// `--platform`, or the platform `--os`/`--arch` name (the host's for the one not given).
    pub fn platform(&self) -> anyhow::Result<Option<oci::Platform>> {
        if self.os.is_none() && self.arch.is_none() {
            return Ok(self.platform.clone());
        }
        os_arch_platform(self.os.as_deref(), self.arch.as_deref()).map(Some)
    }

    /// `-u`, or `--uid[:--gid]`.
    pub fn user(&self) -> Option<String> {
        match (self.uid, self.gid) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            _ => self.user.clone(),
        }
    }

    /// The image reference.
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }

    /// The command after the image.
    pub fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or(&[])
    }
}

/// The platform Apple's `--os`/`--arch` name, the host's for the one not given.
pub fn os_arch_platform(os: Option<&str>, arch: Option<&str>) -> anyhow::Result<oci::Platform> {
    let host = oci::Platform::host();
    let os = os.map_or(host.os, str::to_string);
    let arch = match arch {
        // Apple's CLI names architectures as uname does.
        Some("x86_64") => "amd64".to_string(),
        Some("aarch64") => "arm64".to_string(),
        Some(a) => a.to_string(),
        None => host.architecture,
    };
    parse_platform(&format!("{os}/{arch}")).map_err(anyhow::Error::msg)
}

fn parse_platform(s: &str) -> Result<oci::Platform, String> {
    oci::Platform::parse(s).map_err(|e| e.to_string())
}

/// An absolute path without `.` or `..` components.
fn parse_plain_path(s: &str) -> Result<String, String> {
    let plain = s.starts_with('/') && s.split('/').all(|c| c != "." && c != "..");
    if plain {
        Ok(s.to_string())
    } else {
        Err("want an absolute path without . or .. components".into())
    }
}

fn parse_ulimit(s: &str) -> Result<runtime::ulimit::Ulimit, String> {
    runtime::ulimit::Ulimit::parse(s).map_err(|e| e.to_string())
}

fn parse_sysctl(s: &str) -> Result<(String, String), String> {
    runtime::sysctl::parse(s).map_err(|e| e.to_string())
}

/// `--device`: parsed and checked against the devices a VM has ([`runtime::devices`]).
fn parse_device(s: &str) -> Result<runtime::devices::DeviceMapping, String> {
    runtime::devices::parse(s).map_err(|e| e.to_string())
}

/// Parses `--shm-size` as docker's sizes (0: the default).
fn parse_shm_size(s: &str) -> Result<u64, String> {
    crate::output::parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}

fn parse_add_host(s: &str) -> Result<runtime::netconf::ExtraHost, String> {
    runtime::netconf::ExtraHost::parse(s).map_err(|e| e.to_string())
}

/// Parses `--cpus`: a positive decimal number of CPUs, at most the VM maximum.
pub fn parse_cpus(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid number of CPUs {s:?} (use e.g. 1 or 1.5)"))?;
    runtime::resources::ResourceLimits::from_flags(Some(n), None, None)
        .map_err(|e| e.to_string())?;
    Ok(n)
}

/// Parses docker-style memory sizes into bytes: a number with an optional b/k/m/g suffix
/// (plain numbers are bytes, as in docker).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let bytes = crate::output::parse_size(s)
        .map_err(|_| format!("invalid memory size {s:?} (use e.g. 512m or 1g)"))?;
    if bytes < runtime::resources::MIN_MEMORY_BYTES {
        return Err(format!("memory size {s:?} is too small: the minimum is 6m"));
    }
    if bytes > 1 << 40 {
        return Err(format!("memory size {s:?} is too large"));
    }
    Ok(bytes)
}

/// Runs one container command.
pub fn run(global: &GlobalOptions, cmd: ContainerCommand) -> anyhow::Result<()> {
    match cmd {
        ContainerCommand::Monitor(args) => return monitor::run(global, args),
        ContainerCommand::Pool(args) => return monitor::pool(global, args),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        match cmd {
            ContainerCommand::Run(a) => run::run(global, *a).await,
            ContainerCommand::Create(a) => run::create(global, *a).await,
            ContainerCommand::Start(a) => lifecycle::start(global, a).await,
            ContainerCommand::Stop(a) => lifecycle::stop(global, a).await,
            ContainerCommand::Restart(a) => lifecycle::restart(global, a).await,
            ContainerCommand::Kill(a) => lifecycle::kill(global, a).await,
            ContainerCommand::Delete(a) => lifecycle::delete(global, a).await,
            ContainerCommand::List(a) => inspect::list(global, a),
            ContainerCommand::Exec(a) => run::exec(global, a).await,
            ContainerCommand::Logs(a) => logs::logs(global, a).await,
            ContainerCommand::Inspect(a) => inspect::inspect(global, a),
            ContainerCommand::Cp(a) => cp::cp(global, a).await,
            ContainerCommand::Stats(a) => stats::stats(global, a).await,
            ContainerCommand::Port(a) => inspect::port(global, a),
            ContainerCommand::Update(a) => lifecycle::update(global, a).await,
            ContainerCommand::Pause(a) => manage::pause(global, a).await,
            ContainerCommand::Unpause(a) => manage::unpause(global, a).await,
            ContainerCommand::Wait(a) => manage::wait(global, a).await,
            ContainerCommand::Rename(a) => manage::rename(global, a).await,
            ContainerCommand::Top(a) => manage::top(global, a).await,
            ContainerCommand::Attach(a) => attach::attach(global, a).await,
            ContainerCommand::Export(a) => manage::export(global, a).await,
            ContainerCommand::Prune(a) => manage::prune(global, a).await,
            ContainerCommand::Monitor(_) | ContainerCommand::Pool(_) => {
                unreachable!("handled above")
            }
        }
    });
    // Do not wait for the blocking thread reading our stdin: on a terminal it never sees EOF.
    rt.shutdown_background();
    result
}

/// `--format json` of `stats`.
fn is_json(f: Format) -> bool {
    f == Format::Json
}

#[cfg(test)]
mod tests {
    use super::{attach, parse_memory, ContainerCommand};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        c: ContainerCommand,
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let t = T::try_parse_from(["c", "run", "--rm", "-e", "A=1", "img", "sh", "-c", "--rm"])
            .unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        assert!(r.flags.rm);
        assert_eq!(r.flags.command(), ["sh", "-c", "--rm"]);
        let t = T::try_parse_from(["c", "run", "img", "--rm"]).unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        assert!(!r.flags.rm);
        assert_eq!(r.flags.command(), ["--rm"]);
        let t = T::try_parse_from(["c", "exec", "-i", "box", "ls", "-l"]).unwrap();
        let ContainerCommand::Exec(e) = t.c else {
            panic!()
        };
        assert_eq!(
            (e.interactive, e.command()),
            (true, &["ls".to_string(), "-l".to_string()][..])
        );
        assert!(T::try_parse_from(["c", "run", "--cpus", "0", "img"]).is_err());
        assert!(T::try_parse_from(["c", "run", "--cpus", "-1", "img"]).is_err());
        assert!(T::try_parse_from(["c", "run", "--cpus", "many", "img"]).is_err());
        let t =
            T::try_parse_from(["c", "run", "--cpus", "1.5", "--pids-limit", "-1", "img"]).unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        assert_eq!(
            (r.flags.resources.cpus, r.flags.resources.pids_limit),
            (Some(1.5), Some(-1))
        );
        assert!(T::try_parse_from(["c", "run", "--accel", "hvf", "img"]).is_err());
    }

    #[test]
    fn detach_keys_parse_on_run_start_and_attach() {
        let keys = |args: &[&str]| match T::try_parse_from(args).unwrap().c {
            ContainerCommand::Run(r) => r.detach_keys,
            ContainerCommand::Start(s) => s.detach_keys,
            ContainerCommand::Attach(a) => a.detach_keys,
            _ => None,
        };
        let want = Some(attach::DetachKeys(vec![1, b'x']));
        assert_eq!(
            keys(&["c", "run", "--detach-keys", "ctrl-a,x", "img"]),
            want
        );
        assert_eq!(
            keys(&["c", "start", "-a", "--detach-keys", "ctrl-a,x", "n"]),
            want
        );
        assert_eq!(
            keys(&["c", "attach", "--detach-keys", "ctrl-a,x", "n"]),
            want
        );
        assert!(T::try_parse_from(["c", "run", "--detach-keys", "ctrl-1", "img"]).is_err());
    }

    #[test]
    fn unknown_flags_before_the_image_are_errors_not_images() {
        use clap::error::ErrorKind;
        for args in [
            &["c", "run", "--gpus", "all", "img"][..],
            &["c", "run", "--bogus", "img", "true"],
            &["c", "create", "--bogus", "img"],
            &["c", "exec", "--bogus", "box", "ls"],
        ] {
            let e = T::try_parse_from(args).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnknownArgument, "{args:?}: {e}");
        }
        let e = T::try_parse_from(["c", "run", "--privilegd", "img"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("similar argument exists: '--privileged'"),
            "{e}"
        );
        // What follows the image is the command's, known flags and `--` included.
        let t = T::try_parse_from(["c", "run", "img", "sh", "-c", "echo --x"]).unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        assert_eq!(r.flags.image(), "img");
        assert_eq!(r.flags.command(), ["sh", "-c", "echo --x"]);
        let t = T::try_parse_from(["c", "create", "--", "img", "-d", "--", "-t"]).unwrap();
        let ContainerCommand::Create(c) = t.c else {
            panic!()
        };
        assert!(!c.flags.tty);
        assert_eq!(c.flags.command(), ["-d", "--", "-t"]);
        assert!(T::try_parse_from(["c", "run", "--rm"]).is_err());
        // exec: flags after the container are the command's, as in docker.
        let t = T::try_parse_from(["c", "exec", "box", "-i", "ls"]).unwrap();
        let ContainerCommand::Exec(e) = t.c else {
            panic!()
        };
        assert!(!e.interactive);
        assert_eq!(
            (e.container(), e.command()),
            ("box", &["-i".to_string(), "ls".to_string()][..])
        );
        assert!(T::try_parse_from(["c", "exec", "box"]).is_err());
    }

    #[test]
    fn stop_flags_and_all() {
        let t = T::try_parse_from([
            "c",
            "run",
            "--init",
            "--stop-signal",
            "sigint",
            "--stop-timeout",
            "3",
            "img",
        ])
        .unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        let s = &r.flags.stopping;
        assert!(s.init);
        assert_eq!(
            (s.stop_signal.as_deref(), s.stop_timeout),
            (Some("sigint"), Some(3))
        );
        assert!(T::try_parse_from(["c", "create", "--stop-signal", "NOPE", "img"]).is_err());
        let t = T::try_parse_from(["c", "stop", "-s", "INT", "-t", "2", "a", "b"]).unwrap();
        let ContainerCommand::Stop(s) = t.c else {
            panic!()
        };
        assert_eq!(
            (s.signal, s.time, s.containers.len()),
            (Some(2), Some(2), 2)
        );
        for args in [
            &["c", "stop", "-a"][..],
            &["c", "kill", "--all"],
            &["c", "rm", "-af"],
            &["c", "restart", "-t", "0", "a"],
        ] {
            assert!(T::try_parse_from(args).is_ok(), "{args:?}");
        }
        for args in [
            &["c", "stop"][..],
            &["c", "stop", "-a", "x"],
            &["c", "kill", "-a", "x"],
            &["c", "rm"],
            &["c", "restart"],
        ] {
            assert!(T::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn memory_sizes() {
        const M: u64 = 1 << 20;
        assert_eq!(parse_memory("512m"), Ok(512 * M));
        assert_eq!(parse_memory("1g"), Ok(1024 * M));
        assert_eq!(parse_memory("1G"), Ok(1024 * M));
        assert_eq!(parse_memory("262144k"), Ok(256 * M));
        assert_eq!(parse_memory("128mb"), Ok(128 * M));
        assert_eq!(parse_memory("134217728"), Ok(128 * M));
        assert_eq!(parse_memory("6m"), Ok(6 * M));
        assert!(parse_memory("5m").is_err());
        assert!(parse_memory("2t").is_err());
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("").is_err());
        assert!(parse_memory("-5m").is_err());
    }
}
