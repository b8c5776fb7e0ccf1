//! `start`, `stop`, `kill` and `delete`.

use std::time::Duration;

use clap::Args;
use runtime::protocol::Request;

use super::{attach, run};
use crate::global::GlobalOptions;

/// `container start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output and exit with its code.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin too.
    #[arg(short, long)]
    pub interactive: bool,
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (name like KILL/SIGTERM, or number).
    #[arg(short, long, default_value = "KILL", value_parser = parse_signal)]
    pub signal: i32,
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The new limits; a running container's VM must already be big enough for them.
    #[command(flatten)]
    pub resources: super::ResourceFlags,
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill and delete running containers.
    #[arg(short, long)]
    pub force: bool,
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Parses `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("invalid signal number {n}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

/// Runs `f` for each container, printing each name on success; fails after all if any failed.
async fn each<F, Fut>(names: &[String], mut f: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = 0;
    for name in names {
        match f(name.clone()).await {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::chain(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(crate::exit::ExitCode(crate::exit::RUNTIME_FAULT).into());
    }
    Ok(())
}

/// `container start`.
pub async fn start(global: &GlobalOptions, a: StartArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            anyhow::bail!("start -a attaches to exactly one container");
        }
        let container = rt.container(&a.containers[0])?;
        let stream = container.start(true).await?;
        let process = &container.record().config.process;
        let tty = process.terminal;
        let stdin = a.interactive && process.open_stdin;
        return run::finish(
            attach::session(
                stream,
                container.id(),
                Request::Attach { stdin },
                stdin,
                tty,
            )
            .await,
        );
    }
    each(&a.containers, |name| {
        let rt = rt.clone();
        async move { Ok(rt.container(&name)?.start_detached().await?) }
    })
    .await
}

/// `container stop`.
pub async fn stop(global: &GlobalOptions, a: StopArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let timeout = Duration::from_secs(a.time);
    each(&a.containers, |name| {
        let rt = rt.clone();
        async move {
            rt.container(&name)?.stop(timeout).await?;
            Ok(())
        }
    })
    .await
}

/// `container kill`.
pub async fn kill(global: &GlobalOptions, a: KillArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    each(&a.containers, |name| {
        let rt = rt.clone();
        async move { Ok(rt.container(&name)?.kill(a.signal).await?) }
    })
    .await
}

/// `container update`: prints each container whose limits changed (as docker does).
pub async fn update(global: &GlobalOptions, a: UpdateArgs) -> anyhow::Result<()> {
    let r = &a.resources;
    if r.cpus.is_none() && r.memory.is_none() && r.pids_limit.is_none() {
        anyhow::bail!("nothing to update: give --cpus, --memory or --pids-limit");
    }
    let rt = global.runtime()?;
    let change = r.flags();
    each(&a.containers, |name| {
        let rt = rt.clone();
        async move {
            rt.container(&name)?.update(change).await?;
            Ok(())
        }
    })
    .await
}

/// `container delete`.
pub async fn delete(global: &GlobalOptions, a: DeleteArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    each(&a.containers, |name| {
        let rt = rt.clone();
        async move { Ok(rt.container(&name)?.delete(a.force).await?) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("sigterm"), Ok(15));
        assert_eq!(parse_signal("HUP"), Ok(1));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("BOGUS").is_err());
    }
}
