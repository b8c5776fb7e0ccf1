//! `list` and `inspect`.

use clap::Args;
use runtime::state::Status;

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

/// `container list`.
pub fn list(global: &GlobalOptions, a: ListArgs) -> anyhow::Result<()> {
    let containers: Vec<_> = global
        .runtime()?
        .containers()?
        .into_iter()
        .filter(|c| a.all || c.status() == Status::Running)
        .collect();
    if a.quiet {
        for c in &containers {
            println!("{}", c.id());
        }
    } else if is_json(a.format) {
        let items: Vec<_> = containers.iter().map(|c| c.summary()).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        println!(
            "{:<14} {:<24} {:<30} {:<10} {:<16} COMMAND",
            "ID", "NAME", "IMAGE", "STATUS", "IP"
        );
        for c in &containers {
            let s = c.summary();
            let status = match (s.status, s.exit_code) {
                (Status::Exited, Some(c)) => format!("exited({c})"),
                (s, _) => s.to_string(),
            };
            println!(
                "{:<14} {:<24} {:<30} {:<10} {:<16} {}",
                &s.id[..12],
                s.name,
                s.image,
                status,
                s.ip.as_deref().unwrap_or("-"),
                s.command.join(" ")
            );
        }
    }
    Ok(())
}

/// `container inspect`.
pub fn inspect(global: &GlobalOptions, a: InspectArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let mut out = Vec::new();
    for name in &a.containers {
        out.push(rt.container(name)?.inspect());
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `container port`: `CTR_PORT/PROTO -> HOST_IP:HOST_PORT` for each published port of a
/// running container (nothing for one that does not run), as docker prints them.
pub fn port(global: &GlobalOptions, a: PortArgs) -> anyhow::Result<()> {
    let container = global.runtime()?.container(&a.container)?;
    let r = container.record();
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
