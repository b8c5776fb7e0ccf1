//! `container pod …`: several containers in one VM (podman's pods). The runtime owns pods
//! (`runtime::pod`); this module parses arguments and prints.

use clap::{Args, Subcommand};
use runtime::container::{ContainerOptions, StopOptions};
use runtime::netconf::DnsConfig;
use runtime::pod::Pod;

use crate::container::ResourceFlags;
use crate::global::GlobalOptions;
use crate::output::{InspectArgs, ListArgs, Listing, NamesArgs};

/// Subcommands of `container pod`.
#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Create a pod: one VM, with the network, published ports and size its containers
    /// share (`run --pod NAME` puts a container in it).
    Create(Box<CreateArgs>),
    /// Start pods: their VM, then every container in them.
    Start(NamesArgs),
    /// Stop pods: their containers (at once), then their VM.
    Stop(StopArgs),
    /// Delete pods and their containers.
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// List pods.
    #[command(alias = "ls", alias = "ps")]
    List(ListArgs),
    /// Show pods as a JSON array, or through a Go template (-f).
    Inspect(InspectArgs),
}

/// `pod create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The pod's name (or give it with --name).
    #[arg(value_name = "NAME")]
    pub pod: Option<String>,
    /// The pod's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Publish a port of the pod on the host ([HOST_IP:]HOST_PORT:PORT[/tcp|/udp]; HOST_IP
    /// defaults to 127.0.0.1). Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<runtime::container::PortSpecs>,
    /// Connect the pod to this network (repeatable; `none`: loopback only; default: the
    /// default network).
    #[arg(long = "network", value_name = "NAME")]
    pub network: Vec<String>,
    /// Host name of the pod's containers (default: the first 12 digits of its id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// DNS server for the pod, instead of its network's (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// A guest kernel for the pod's VM instead of the configured one.
    #[arg(short = 'k', long, value_name = "PATH")]
    pub kernel: Option<std::path::PathBuf>,
    /// Accelerator: kvm or tcg (default: kvm when it can boot the kernel, else tcg).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// The VM's size: --cpus gives it ceil(N) vCPUs, -m its containers' memory (plus the
    /// guest's own); each container may be limited within it.
    #[command(flatten)]
    pub resources: ResourceFlags,
    #[command(flatten)]
    pub labels: crate::labels::LabelFlags,
}

/// `pod stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds each container gets after its stop signal before SIGKILL.
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Pods.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `pod rm`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Remove running pods too (their containers are killed).
    #[arg(short, long)]
    pub force: bool,
    /// Pods.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Runs one `container pod` subcommand.
pub fn run(global: &GlobalOptions, cmd: PodCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let runtime = global.runtime()?;
        match cmd {
            PodCommand::Create(a) => {
                let name = match (&a.pod, &a.name) {
                    (Some(p), Some(n)) if p != n => {
                        anyhow::bail!("two names for one pod: {p} and --name {n}")
                    }
                    (Some(n), _) | (None, Some(n)) => n.clone(),
                    (None, None) => anyhow::bail!("a pod needs a name: container pod create NAME"),
                };
                let opts = ContainerOptions {
                    kernel: a.kernel.clone(),
                    accel: a.accel.clone(),
                    resources: a.resources.flags(),
                    networks: a.network.clone(),
                    publish: a.publish.iter().flat_map(|p| p.0.clone()).collect(),
                    hostname: a.hostname.clone(),
                    dns: DnsConfig {
                        servers: a.dns.clone(),
                        ..Default::default()
                    },
                    labels: a.labels.labels()?,
                    ..Default::default()
                };
                let pod = runtime.pod_create(&name, opts).await?;
                println!("{}", pod.id());
            }
            PodCommand::Start(a) => {
                each(&a.names, |n| {
                    let runtime = runtime.clone();
                    async move { Ok(runtime.pod(&n)?.start().await?) }
                })
                .await?
            }
            PodCommand::Stop(a) => {
                let opts = StopOptions {
                    signal: None,
                    timeout: a.time.map(std::time::Duration::from_secs),
                };
                each(&a.names, |n| {
                    let runtime = runtime.clone();
                    async move { Ok(runtime.pod(&n)?.stop(opts).await?) }
                })
                .await?
            }
            PodCommand::Delete(a) => {
                let force = a.force;
                each(&a.names, |n| {
                    let runtime = runtime.clone();
                    async move { Ok(runtime.pod(&n)?.delete(force).await?) }
                })
                .await?
            }
            PodCommand::List(a) => {
                let pods: Vec<serde_json::Value> =
                    runtime.pods()?.iter().map(Pod::inspect).collect();
                let listing = Listing {
                    header: format!(
                        "{:<14} {:<20} {:<10} {:>10}  {}",
                        "POD ID", "NAME", "STATUS", "CONTAINERS", "PORTS"
                    ),
                    name: &|p: &serde_json::Value| p["Name"].as_str().unwrap_or_default(),
                    row: &|p: &serde_json::Value| {
                        let id = p["Id"].as_str().unwrap_or_default();
                        let ports: Vec<&str> = p["Ports"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                            .unwrap_or_default();
                        format!(
                            "{:<14} {:<20} {:<10} {:>10}  {}",
                            &id[..id.len().min(12)],
                            p["Name"].as_str().unwrap_or_default(),
                            p["State"].as_str().unwrap_or_default(),
                            p["NumContainers"],
                            ports.join(", ")
                        )
                    },
                };
                listing.print(&pods, a.format, a.quiet)?;
            }
            PodCommand::Inspect(a) => {
                let docs = a
                    .names
                    .iter()
                    .map(|n| runtime.pod(n).map(|p| p.inspect()))
                    .collect::<Result<Vec<_>, _>>()?;
                a.print(&docs)?;
            }
        }
        Ok(())
    })
}

/// Applies `verb` to every pod in turn, printing the names it succeeded on; failures are
/// reported together at the end, as [`crate::output::each_name`] does.
async fn each<F, Fut>(names: &[String], verb: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = Vec::new();
    for name in names {
        match verb(name.clone()).await {
            Ok(()) => println!("{name}"),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}
