//! `run`, `create` and `exec`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use runtime::client::{self, ClientError};
use runtime::container::{CreateRequest, MonitorCommand};
use runtime::protocol::{ExitInfo, Request};
use runtime::spec::{exec_spec, read_env_file, ProcessOptions};
use runtime::state::{ContainerRecord, Status, Store, VmOptions};

use super::{attach, CreateFlags};
use crate::exit::ExitCode;
use crate::global::GlobalOptions;

/// How long a monitor may take to open its socket.
const MONITOR_START: Duration = Duration::from_secs(30);

/// `container run`. (`-h` is `--hostname`, as in docker; help is `--help`.)
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// `container create`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// `container exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User inside the container.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give the process every capability.
    #[arg(long)]
    pub privileged: bool,
    /// Container name or id.
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The monitor command line for this invocation.
pub fn monitor_command(global: &GlobalOptions) -> anyhow::Result<MonitorCommand> {
    Ok(MonitorCommand {
        program: std::env::current_exe().context("find the container executable")?,
        root: global.root_dir(),
    })
}

async fn create_record(
    global: &GlobalOptions,
    f: &CreateFlags,
) -> anyhow::Result<(Store, ContainerRecord)> {
    // Flags that cannot work are refused before an image is pulled or a rootfs built.
    runtime::spec::capabilities(&ProcessOptions {
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        ..Default::default()
    })?;
    if let Some(h) = &f.hostname {
        runtime::netconf::check_hostname(h)?;
    }
    if let Some(k) = &f.kernel {
        if !k.is_file() {
            anyhow::bail!("kernel {}: no such file", k.display());
        }
    }
    let mut env_files = Vec::new();
    for path in &f.env_file {
        env_files.extend(read_env_file(path)?);
    }
    let networks = match net::NetworkMode::from_flags(&f.network)? {
        net::NetworkMode::None if !f.publish.is_empty() => {
            anyhow::bail!("cannot publish ports of a container without a network (--network none)")
        }
        net::NetworkMode::None => Vec::new(),
        net::NetworkMode::Networks(names) => names,
    };
    let nets = net::Networks::open(&global.root_dir())?;
    for name in networks.iter().filter(|n| *n != net::DEFAULT_NETWORK) {
        nets.inspect(name)?;
    }
    let resources = runtime::resources::ResourceLimits::from_flags(
        f.resources.cpus,
        f.resources.memory,
        f.resources.pids_limit,
    )?;
    let pull = oci::PullOptions {
        progress: crate::progress::Bars::for_terminal(false, "pulling"),
        ..Default::default()
    };
    let image = runtime::image::resolve(&global.root_dir(), f.image(), &pull).await?;
    let store = super::store(global)?;
    let req = CreateRequest {
        name: f.name.clone(),
        image: image.reference,
        image_digest: image.digest,
        image_config: image.config,
        rootfs: image.rootfs,
        process: ProcessOptions {
            args: f.command().to_vec(),
            entrypoint: f.entrypoint.clone(),
            env: f.env.clone(),
            env_files,
            workdir: f.workdir.clone(),
            user: f.user.clone(),
            terminal: f.tty,
            open_stdin: f.interactive,
            console_size: attach::window_size().map(|w| (w.rows, w.cols)),
            cap_add: f.cap_add.clone(),
            cap_drop: f.cap_drop.clone(),
            privileged: f.privileged,
        },
        vm: VmOptions {
            kernel: f.kernel.clone(),
            cpus: resources.vm_cpus(),
            memory_mib: resources.vm_memory_mib(),
            accel: f.accel.clone(),
        },
        auto_remove: f.rm,
        networks,
        publish: publish(f, &image.exposed_ports),
        mounts: f.mounts.resolve(global, &image.volumes)?,
        read_only: f.mounts.read_only,
        resources,
        hostname: f.hostname.clone(),
        dns: runtime::netconf::DnsConfig {
            servers: f.dns.clone(),
            search: f.dns_search.clone(),
            options: f.dns_option.clone(),
        },
        extra_hosts: f.add_host.clone(),
    };
    let record = runtime::container::create(&store, req)?;
    Ok((store, record))
}

/// Turns a session's result into this process's exit: the container's code, with the
/// runtime's reason printed when it has one.
pub fn finish(result: Result<ExitInfo, ClientError>) -> anyhow::Result<()> {
    let info = match result {
        Ok(info) => info,
        Err(ClientError::Failed(info)) => info,
        Err(e) => return Err(e.into()),
    };
    if let Some(reason) = &info.reason {
        eprintln!("Error: {reason}");
    }
    if info.code == 0 {
        Ok(())
    } else {
        Err(ExitCode(info.code).into())
    }
}

/// Starts a container's monitor and returns the connected socket.
pub async fn start_monitor(
    global: &GlobalOptions,
    store: &Store,
    id: &str,
    wait_attach: bool,
) -> anyhow::Result<tokio::net::UnixStream> {
    let pid = runtime::container::start(store, id, &monitor_command(global)?, wait_attach)?;
    Ok(client::connect_starting(store, id, pid, MONITOR_START).await?)
}

/// `container run`.
pub async fn run(global: &GlobalOptions, a: RunArgs) -> anyhow::Result<()> {
    let f = &a.flags;
    let (store, record) = create_record(global, f).await?;
    let stream = start_monitor(global, &store, &record.id, !a.detach).await;
    let stream = match stream {
        Ok(s) => s,
        Err(e) => return fail_start(e),
    };
    if a.detach {
        match client::request(stream, &record.id, Request::WaitStarted).await {
            Ok(_) => {
                println!("{}", record.id);
                Ok(())
            }
            Err(e) => finish(Err(e)),
        }
    } else {
        let req = Request::Attach {
            stdin: f.interactive,
        };
        finish(attach::session(stream, &record.id, req, f.interactive, f.tty).await)
    }
}

fn fail_start(e: anyhow::Error) -> anyhow::Result<()> {
    match e.downcast::<ClientError>() {
        Ok(c) => finish(Err(c)),
        Err(e) => Err(e),
    }
}

/// `container create`.
pub async fn create(global: &GlobalOptions, a: CreateArgs) -> anyhow::Result<()> {
    let (_, record) = create_record(global, &a.flags).await?;
    println!("{}", record.id);
    Ok(())
}

/// `container exec`.
pub async fn exec(global: &GlobalOptions, a: ExecArgs) -> anyhow::Result<()> {
    let store = super::store(global)?;
    let record = store.reconcile(store.resolve(&a.container)?)?;
    if record.status != Status::Running {
        anyhow::bail!(
            "cannot exec in container {}: it is not running ({})",
            record.name,
            record.status
        );
    }
    let opts = ProcessOptions {
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        terminal: a.tty,
        open_stdin: a.interactive,
        console_size: attach::window_size().map(|w| (w.rows, w.cols)),
        privileged: a.privileged,
        ..Default::default()
    };
    let lookup = |k: &str| std::env::var(k).ok();
    let spec = exec_spec(&record.config.process, a.command.clone(), &opts, &lookup)?;
    let stream = client::connect(&store, &record.id).await?;
    if a.detach {
        return match client::request(stream, &record.id, Request::Exec { spec, detach: true }).await
        {
            Ok(_) => Ok(()),
            Err(e) => finish(Err(e)),
        };
    }
    let req = Request::Exec {
        spec,
        detach: false,
    };
    finish(attach::session(stream, &record.id, req, a.interactive, a.tty).await)
}

/// `-p` values, then with `-P` the image's exposed ports no `-p` covers, each on a free host
/// port of 127.0.0.1 (docker binds 0.0.0.0; our `-p` default is loopback, and `-P` follows it).
fn publish(f: &CreateFlags, exposed: &[(u16, net::ports::Protocol)]) -> Vec<net::ports::PortSpec> {
    let mut out = f.publish.clone();
    if f.publish_all {
        for &(port, protocol) in exposed {
            if !out
                .iter()
                .any(|p| p.container_port == port && p.protocol == protocol)
            {
                out.push(net::ports::PortSpec {
                    host_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                    host_port: 0,
                    container_port: port,
                    protocol,
                });
            }
        }
    }
    out
}
