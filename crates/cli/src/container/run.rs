//! `run`, `create` and `exec`.

use clap::Args;
use runtime::client::ClientError;
use runtime::netconf::DnsConfig;
use runtime::protocol::{ExitInfo, Request};
use runtime::spec::ProcessOptions;
use runtime::{Container, ContainerError, ContainerOptions, Verb};

use super::cidfile::CidFile;
use super::{attach, CreateFlags};
use crate::exit::ExitCode;
use crate::global::GlobalOptions;

/// `container run`. (`-h` is `--hostname`, as in docker; help is `--help`.)
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Keys that detach from an `-it` container and leave it running, e.g. ctrl-a,q
    /// (default: ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS", value_parser = attach::parse_detach_keys)]
    pub detach_keys: Option<attach::DetachKeys>,
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
    /// Container name or id, then the command and its arguments. Everything after the
    /// container belongs to the command, flags included (as in docker).
    // One positional for the reason given at `CreateFlags::image_and_command`.
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        required = true,
        num_args = 2..,
        trailing_var_arg = true
    )]
    pub container_and_command: Vec<String>,
}

impl ExecArgs {
    /// The container's name or id.
    pub fn container(&self) -> &str {
        self.container_and_command
            .first()
            .map_or("", String::as_str)
    }

    /// The command after the container.
    pub fn command(&self) -> &[String] {
        self.container_and_command.get(1..).unwrap_or(&[])
    }
}

/// The runtime's options for `run`/`create` from their flags.
fn options(f: &CreateFlags) -> anyhow::Result<ContainerOptions> {
    let mut mounts = f.mounts.specs()?;
    let mut env = f.env.clone();
    if f.ssh {
        let (mount, var) = runtime::sockets::ssh_agent(std::env::var_os("SSH_AUTH_SOCK"))
            .map_err(anyhow::Error::msg)?;
        mounts.push(mount);
        // First, so that an -e SSH_AUTH_SOCK of the user's wins.
        env.insert(0, var);
    }
    let (networks, endpoints) = runtime::container::NetworkFlags {
        networks: f.network.clone(),
        aliases: f.network_alias.clone(),
        ip: f.ip,
        ip6: f.ip6,
        mac: f.mac_address.clone(),
    }
    .resolve()?;
    Ok(ContainerOptions {
        name: f.name.clone(),
        image: f.image().to_string(),
        rootfs_dir: None,
        rootfs_image: None,
        process: ProcessOptions {
            args: f.command().to_vec(),
            entrypoint: f.entrypoint.clone(),
            env,
            env_files: Vec::new(),
            workdir: f.workdir.clone(),
            user: f.user(),
            terminal: f.tty,
            open_stdin: f.interactive,
            console_size: attach::window_size().map(|w| (w.rows, w.cols)),
            cap_add: f.cap_add.clone(),
            cap_drop: f.cap_drop.clone(),
            privileged: f.privileged,
            init: f.stopping.init,
            ulimits: f.ulimit.clone(),
        },
        env_files: f.env_file.clone(),
        kernel: f.kernel.clone(),
        init: f.init_image.clone(),
        accel: f.accel.clone(),
        no_template: f.no_template,
        resources: f.resources.flags(),
        auto_remove: f.rm,
        networks,
        endpoints,
        publish: f.publish.iter().flat_map(|p| p.0.clone()).collect(),
        publish_all: f.publish_all,
        mounts,
        publish_sockets: f.publish_socket.clone(),
        read_only: f.mounts.read_only,
        hostname: f.hostname.clone(),
        dns: DnsConfig {
            servers: f.dns.clone(),
            search: f.dns_domain.iter().chain(&f.dns_search).cloned().collect(),
            options: f.dns_option.clone(),
            none: f.no_dns,
        },
        extra_hosts: f.add_host.clone(),
        labels: f.labels.labels()?,
        pull: f.pull,
        platform: f.platform()?,
        stop_signal: f.stopping.stop_signal.clone(),
        stop_timeout: f.stopping.stop_timeout,
        restart: f.restart.restart.unwrap_or_default(),
        healthcheck: f.health.options().to_config()?,
        sysctls: f.sysctl.iter().cloned().collect(),
        shm_size: f.shm_size,
        cgroupns_host: f.cgroupns.as_deref() == Some("host"),
        devices: f.devices.clone(),
        masked_paths: f.masked_paths.clone(),
        readonly_paths: f.readonly_paths.clone(),
        volumes_from: f.volumes_from.clone(),
        pod: f.pod.clone(),
        netns: None,
        log: runtime::logs::LogConfig::new(
            f.log_driver.as_deref(),
            runtime::logs::LogConfig::parse_opts(&f.log_opt)?,
        )?,
    })
}

async fn create_container(global: &GlobalOptions, f: &CreateFlags) -> anyhow::Result<Container> {
    let opts = options(f)?;
    // Made before the container, as docker does, so that a second `run` with the same file
    // fails before it creates anything; removed again if the create fails.
    let cidfile = f.cidfile.as_deref().map(CidFile::create).transpose()?;
    let pull = oci::PullOptions {
        progress: f.progress.sink(false, "pulling"),
        ..Default::default()
    };
    let container = global.runtime()?.create(opts, &pull).await?;
    if let Some(file) = cidfile {
        file.write(container.id())?;
    }
    Ok(container)
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

/// [`finish`] for a runtime call that failed: a process that could not start exits with
/// its code (126, 127, …); any other failure is the runtime's.
pub fn finish_err(e: ContainerError) -> anyhow::Result<()> {
    match e {
        ContainerError::Client(c) => finish(Err(c)),
        e => Err(e.into()),
    }
}

/// `container run`.
pub async fn run(global: &GlobalOptions, a: RunArgs) -> anyhow::Result<()> {
    let f = &a.flags;
    let container = create_container(global, f).await?;
    if a.detach {
        return match container.start_detached().await {
            Ok(()) => {
                println!("{}", container.id());
                Ok(())
            }
            Err(e) => finish_err(e),
        };
    }
    let stream = match container.start(true).await {
        Ok(s) => s,
        Err(e) => return finish_err(e),
    };
    let req = Request::Attach {
        stdin: f.interactive,
        early_exit: false,
    };
    let opts = attach::SessionOptions {
        no_sig_proxy: false,
        detach_keys: attach::detach_keys(f.tty, f.interactive, a.detach_keys.clone()),
    };
    let (stdin, tty) = (f.interactive, f.tty);
    attach::finish(attach::session_with(stream, container.id(), req, stdin, tty, &opts).await)
}

/// `container create`.
pub async fn create(global: &GlobalOptions, a: CreateArgs) -> anyhow::Result<()> {
    let container = create_container(global, &a.flags).await?;
    println!("{}", container.id());
    Ok(())
}

/// `container exec`.
pub async fn exec(global: &GlobalOptions, a: ExecArgs) -> anyhow::Result<()> {
    let mut container = global.runtime()?.container(a.container())?;
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
    let spec = container.exec_spec(a.command().to_vec(), &opts)?;
    if a.detach {
        container.exec_detached(spec).await.or_else(finish_err)?;
        // Apple's `exec -d` names what it started in: the container (execs have no ids here).
        println!("{}", container.id());
        return Ok(());
    }
    let stream = container.connect(Verb::Exec).await?;
    let req = Request::Exec {
        spec,
        detach: false,
    };
    finish(attach::session(stream, container.id(), req, a.interactive, a.tty).await)
}
