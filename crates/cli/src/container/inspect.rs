//! `list` and `inspect`.

use clap::Args;
use runtime::state::{ContainerRecord, Status};
use serde_json::json;

use super::is_json;
use crate::global::{Format, GlobalOptions};

/// `container list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show all containers (default: running only).
    #[arg(short, long)]
    pub all: bool,
    /// Print ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `container inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container name or id.
    pub container: String,
    /// Only this container port (PORT or PORT/PROTO).
    pub port: Option<String>,
}

/// The `networks` objects of a container: its leases in interface order.
fn networks_of(nets: Option<&net::Networks>, r: &ContainerRecord) -> Vec<serde_json::Value> {
    if r.config.networks.is_empty() {
        return Vec::new();
    }
    let Some(attachments) = nets.and_then(|n| n.attachments(&r.id).ok()) else {
        return r.networks.clone();
    };
    if attachments.is_empty() {
        // The rootless fallback (QEMU user-mode networking) records its interface itself.
        return r.networks.clone();
    }
    r.config
        .networks
        .iter()
        .filter_map(|name| attachments.iter().find(|a| &a.network == name))
        .map(|a| {
            json!({
                "network": a.network,
                "address": a.address.to_string(),
                "gateway": a.gateway.to_string(),
                "mac": a.mac,
            })
        })
        .collect()
}

/// The container's address on its first network, without prefix.
fn first_ip(networks: &[serde_json::Value]) -> Option<String> {
    let address = networks.first()?.get("address")?.as_str()?;
    Some(address.split('/').next().unwrap_or(address).to_string())
}

fn summary(r: &ContainerRecord, networks: &[serde_json::Value]) -> serde_json::Value {
    json!({
        "ip": first_ip(networks),
        "id": r.id,
        "name": r.name,
        "image": r.image,
        "status": r.status,
        "command": r.config.process.args,
        "created": r.created,
        "exitCode": r.exit_code,
        "ports": r.ports,
    })
}

/// `container list`.
pub fn list(global: &GlobalOptions, a: ListArgs) -> anyhow::Result<()> {
    let store = super::store(global)?;
    let nets = net::Networks::open(&global.root_dir()).ok();
    let mut records = Vec::new();
    for r in store.list()? {
        let r = store.reconcile(r)?;
        if a.all || r.status == Status::Running {
            records.push(r);
        }
    }
    if a.quiet {
        for r in &records {
            println!("{}", r.id);
        }
    } else if is_json(a.format) {
        let items: Vec<_> = records
            .iter()
            .map(|r| summary(r, &networks_of(nets.as_ref(), r)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        println!(
            "{:<14} {:<24} {:<30} {:<10} {:<16} COMMAND",
            "ID", "NAME", "IMAGE", "STATUS", "IP"
        );
        for r in &records {
            let status = match (r.status, r.exit_code) {
                (Status::Exited, Some(c)) => format!("exited({c})"),
                (s, _) => s.to_string(),
            };
            let ip = first_ip(&networks_of(nets.as_ref(), r)).unwrap_or_else(|| "-".into());
            println!(
                "{:<14} {:<24} {:<30} {:<10} {:<16} {}",
                &r.id[..12],
                r.name,
                r.image,
                status,
                ip,
                r.config.process.args.join(" ")
            );
        }
    }
    Ok(())
}

/// `container inspect`.
pub fn inspect(global: &GlobalOptions, a: InspectArgs) -> anyhow::Result<()> {
    let store = super::store(global)?;
    let nets = net::Networks::open(&global.root_dir()).ok();
    let mut out = Vec::new();
    for name in &a.containers {
        let r = store.reconcile(store.resolve(name)?)?;
        let dir = store.dir_of(&r.id);
        out.push(json!({
            "id": r.id,
            "name": r.name,
            "image": r.image,
            "imageDigest": r.image_digest,
            "status": r.status,
            "exitCode": r.exit_code,
            "exitReason": r.exit_reason,
            "oomKilled": r.oom_killed,
            "monitorPid": r.monitor_pid,
            "vmPid": r.vm_pid,
            "created": r.created,
            "started": r.started,
            "finished": r.finished,
            "config": r.config,
            "networks": networks_of(nets.as_ref(), &r),
            "ports": r.ports,
            "logPath": dir.join("container.log"),
            "bootLogPath": dir.join("boot.log"),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `container port`: `CTR_PORT/PROTO -> HOST_IP:HOST_PORT` for each published port of a
/// running container (nothing for one that does not run), as docker prints them.
pub fn port(global: &GlobalOptions, a: PortArgs) -> anyhow::Result<()> {
    let store = super::store(global)?;
    let r = store.reconcile(store.resolve(&a.container)?)?;
    let wanted = match &a.port {
        None => None,
        Some(p) => {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let port: u16 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid port {p:?}: expected PORT[/tcp|/udp]"))?;
            Some((port, proto.to_string()))
        }
    };
    let mut found = false;
    for p in &r.ports {
        if let Some((port, proto)) = &wanted {
            if p.container_port != *port || p.protocol.to_string() != *proto {
                continue;
            }
        }
        found = true;
        let host = std::net::SocketAddr::new(p.host_ip, p.host_port);
        println!("{}/{} -> {host}", p.container_port, p.protocol);
    }
    if let (Some(p), false) = (&a.port, found) {
        anyhow::bail!("no public port {p} published for container {}", r.name);
    }
    Ok(())
}
