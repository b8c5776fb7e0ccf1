//! `list` and `inspect`.

use chrono::Utc;
use clap::Args;
use runtime::filter::{FilterKind, Filters};
use runtime::state::Status;
use runtime::Container;
use serde_json::{json, Value};

use crate::format::{self, ellipsis, human_duration, ListFormat};
use crate::global::GlobalOptions;

/// `container list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show all containers (default: running only).
    #[arg(short, long)]
    pub all: bool,
    /// Print ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table, json, a Go template over docker's `ps` fields (`{{.ID}}`,
    /// `{{.Names}}`, `{{.Image}}`, `{{.Command}}`, `{{.Status}}`, `{{.State}}`, `{{.Ports}}`,
    /// `{{.CreatedAt}}`, `{{.RunningFor}}`, `{{.Labels}}`, `{{.Mounts}}`, `{{.Networks}}`), or
    /// `table TEMPLATE` for aligned columns with a header.
    #[arg(long, default_value = "table", value_name = "FORMAT")]
    pub format: ListFormat,
    /// Only list containers that match KEY=VALUE (repeatable; same keys ORed, others ANDed):
    /// label=KEY[=VALUE], name=REGEXP, status=created|running|exited, id=PREFIX,
    /// ancestor=IMAGE, network=NAME, volume=NAME|PATH, exited=CODE,
    /// health=starting|healthy|unhealthy|none. A status filter lists stopped containers
    /// without -a.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// `container inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Go template rendered over each container's document (docker's keys such as
    /// `{{.State.Status}}` and ours), one line each; `json` (the default) prints the JSON array.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
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
    let filters = Filters::parse(FilterKind::Containers, &a.filter)?;
    let containers = global.runtime()?.list_containers(a.all, &filters)?;
    if a.quiet {
        for c in &containers {
            println!("{}", c.id());
        }
    } else if let ListFormat::Template { text, table } = &a.format {
        let rows: Vec<Value> = containers.iter().map(ps_fields).collect();
        format::print_rows(text, &rows, table.then(ps_headers).as_ref())?;
    } else if a.format == ListFormat::Json {
        let items: Vec<_> = containers.iter().map(|c| c.summary()).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        println!(
            "{:<14} {:<24} {:<30} {:<10} {:<16} COMMAND",
            "ID", "NAME", "IMAGE", "STATUS", "IP"
        );
        for c in &containers {
            let s = c.summary();
            let status = match (s.status, s.exit_code, s.health) {
                (Status::Exited, Some(c), _) => format!("exited({c})"),
                (Status::Running, _, Some(h)) if !s.paused => format!("running ({h})"),
                _ => s.state(),
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

/// The fields `docker ps --format` offers for a container, as they read there.
fn ps_fields(c: &Container) -> Value {
    let r = c.record();
    let now = Utc::now();
    let since = |t: Option<chrono::DateTime<Utc>>| human_duration(now - t.unwrap_or(now));
    let status = match r.status {
        Status::Created => "Created".to_string(),
        Status::Running if r.paused => format!("Up {} (Paused)", since(r.started)),
        // docker's `State.String`: the health after the uptime (`Up 5 seconds (healthy)`).
        Status::Running => match &r.health {
            Some(h) => format!("Up {} ({})", since(r.started), h.status.ps_text()),
            None => format!("Up {}", since(r.started)),
        },
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            r.exit_code.unwrap_or(0),
            since(r.finished)
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.exit_code.unwrap_or(0),
            since(r.finished)
        ),
    };
    let ports: Vec<String> = r.ports.iter().map(|p| p.to_string()).collect();
    let labels: Vec<String> = r
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mounts: Vec<String> = r
        .config
        .mounts
        .iter()
        .map(|m| match m {
            runtime::state::MountSpec::Volume { source, .. } => ellipsis(source, 15),
            runtime::state::MountSpec::Bind { source, .. }
            | runtime::state::MountSpec::Socket { source, .. } => {
                ellipsis(&source.display().to_string(), 15)
            }
            runtime::state::MountSpec::Tmpfs { target, .. } => ellipsis(target, 15),
        })
        .collect();
    json!({
        "ID": &r.id[..12.min(r.id.len())],
        "Names": r.name,
        "Image": r.image,
        "Command": serde_json::to_string(&ellipsis(&r.config.process.args.join(" "), 20))
            .unwrap_or_default(),
        "CreatedAt": r.created.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        "RunningFor": format!("{} ago", human_duration(now - r.created)),
        "Ports": ports.join(", "),
        "State": if r.paused { "paused".to_string() } else { r.status.to_string() },
        "Status": status,
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": r.config.networks.join(","),
    })
}

/// The header row of `table TEMPLATE`: each field's column title, as docker names them.
fn ps_headers() -> Value {
    json!({
        "ID": "CONTAINER ID",
        "Names": "NAMES",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "Networks": "NETWORKS",
    })
}

/// `container inspect`.
pub fn inspect(global: &GlobalOptions, a: InspectArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    // A bad template fails before any container is looked up.
    if let Some(f) = a.format.as_deref().filter(|f| !matches!(*f, "" | "json")) {
        format::template(f)?;
    }
    let mut out = Vec::new();
    for name in &a.containers {
        out.push(rt.container(name)?.inspect_document());
    }
    format::print_inspect(&out, a.format.as_deref())
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
