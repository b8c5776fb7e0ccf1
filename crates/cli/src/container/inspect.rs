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

fn summary(r: &ContainerRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "name": r.name,
        "image": r.image,
        "status": r.status,
        "command": r.config.process.args,
        "created": r.created,
        "exitCode": r.exit_code,
    })
}

/// `container list`.
pub fn list(global: &GlobalOptions, a: ListArgs) -> anyhow::Result<()> {
    let store = super::store(global)?;
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
        let items: Vec<_> = records.iter().map(summary).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        println!(
            "{:<14} {:<24} {:<30} {:<10} COMMAND",
            "ID", "NAME", "IMAGE", "STATUS"
        );
        for r in &records {
            let status = match (r.status, r.exit_code) {
                (Status::Exited, Some(c)) => format!("exited({c})"),
                (s, _) => s.to_string(),
            };
            println!(
                "{:<14} {:<24} {:<30} {:<10} {}",
                &r.id[..12],
                r.name,
                r.image,
                status,
                r.config.process.args.join(" ")
            );
        }
    }
    Ok(())
}

/// `container inspect`.
pub fn inspect(global: &GlobalOptions, a: InspectArgs) -> anyhow::Result<()> {
    let store = super::store(global)?;
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
            "monitorPid": r.monitor_pid,
            "vmPid": r.vm_pid,
            "created": r.created,
            "started": r.started,
            "finished": r.finished,
            "config": r.config,
            "networks": r.networks,
            "logPath": dir.join("container.log"),
            "bootLogPath": dir.join("boot.log"),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
