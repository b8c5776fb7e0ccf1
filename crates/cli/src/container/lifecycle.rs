//! `start`, `stop`, `restart`, `kill`, `delete` and `update`, and the flags of `run`/`create`
//! that decide how a container stops (`--init`, `--stop-signal`, `--stop-timeout`).
//!
//! Every verb here takes several containers and works on them at once (docker's
//! `parallelOperation`): stopping five containers that ignore SIGTERM takes one timeout, not
//! five. See [`each`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use runtime::container::StopOptions;
use runtime::protocol::Request;
use runtime::state::Status;
use runtime::Runtime;

use super::attach;
use crate::global::GlobalOptions;

/// `run`/`create` flags for the container's PID 1 and how `stop` ends it.
#[derive(Debug, Args)]
pub struct StopFlags {
    /// Run an init inside the container that forwards signals to the command and reaps
    /// orphaned processes (so a `sleep` or `sh` stops on SIGTERM at once).
    #[arg(long)]
    pub init: bool,
    /// Signal that `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long, value_name = "SIGNAL", value_parser = check_signal)]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits after the stop signal before SIGKILL (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
}

/// `container start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output and exit with its code.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin too.
    #[arg(short, long)]
    pub interactive: bool,
    /// Keys that detach from a container with a terminal and leave it running, e.g.
    /// ctrl-a,q (default: ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS", value_parser = attach::parse_detach_keys)]
    pub detach_keys: Option<attach::DetachKeys>,
    /// Start every stopped container its restart policy would bring back (always;
    /// unless-stopped not stopped by a user; on-failure with retries left): for boot.
    #[arg(long, conflicts_with_all = ["containers", "attach", "interactive"])]
    pub all_restartable: bool,
    /// Containers (name or id).
    #[arg(required_unless_present = "all_restartable")]
    pub containers: Vec<String>,
}

/// `container stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's
    /// --stop-timeout, else 10).
    #[arg(short, long, value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Signal to send first (default: the container's stop signal, else SIGTERM).
    #[arg(short, long, value_parser = parse_signal)]
    pub signal: Option<i32>,
    /// Stop every running container.
    #[arg(short, long, conflicts_with = "containers")]
    pub all: bool,
    /// Containers (name or id).
    #[arg(required_unless_present = "all")]
    pub containers: Vec<String>,
}

/// `container restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's
    /// --stop-timeout, else 10).
    #[arg(short, long, value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Signal to send first (default: the container's stop signal, else SIGTERM).
    #[arg(short, long, value_parser = parse_signal)]
    pub signal: Option<i32>,
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
    /// Signal every running container.
    #[arg(short, long, conflicts_with = "containers")]
    pub all: bool,
    /// Containers (name or id).
    #[arg(required_unless_present = "all")]
    pub containers: Vec<String>,
}

/// `container update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The new limits; a running container's VM must already be big enough for them.
    #[command(flatten)]
    pub resources: super::ResourceFlags,
    /// The new restart policy (a running container's applies when its process ends).
    #[arg(long, value_name = "POLICY", value_parser = super::restart::parse_policy)]
    pub restart: Option<runtime::restart::RestartPolicy>,
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
    /// Delete every container (running ones only with --force; they are skipped otherwise).
    #[arg(short, long, conflicts_with = "containers")]
    pub all: bool,
    /// Delete the containers' anonymous volumes too (without it they stay for `volume
    /// prune`, as docker keeps them).
    #[arg(short, long)]
    pub volumes: bool,
    /// Containers (name or id).
    #[arg(required_unless_present = "all")]
    pub containers: Vec<String>,
}

/// Parses `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    runtime::spec::parse_signal(s).map_err(|e| e.to_string())
}

/// Checks a signal and keeps it as written (docker shows `--stop-signal` as given).
fn check_signal(s: &str) -> Result<String, String> {
    parse_signal(s).map(|_| s.to_string())
}

/// The containers `--all` means: the names of those `keep` accepts, oldest first.
fn all_names(rt: &Runtime, keep: impl Fn(Status) -> bool) -> anyhow::Result<Vec<String>> {
    Ok(rt
        .containers()?
        .iter()
        .filter(|c| keep(c.status()))
        .map(|c| c.name().to_string())
        .collect())
}

/// Runs `f` on every named container at once, printing each name as given once `f` succeeded
/// for it, or its error, in the order of `names`; fails after all if any failed.
///
/// Names of the same container (twice the name, or a name and an id prefix) run one after the
/// other in their order, so that `rm X X` removes X once and then finds no such container,
/// as with docker, instead of two removals racing.
pub(super) async fn each<F, Fut>(rt: &Runtime, names: &[String], f: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    type Slot = tokio::sync::oneshot::Sender<anyhow::Result<()>>;
    let mut groups: Vec<(String, Vec<(String, Slot)>)> = Vec::new();
    let mut results = Vec::new();
    for name in names {
        // A name that does not resolve fails on its own when `f` runs; it is its own group.
        let key = rt
            .container(name)
            .map_or_else(|_| name.clone(), |c| c.id().to_string());
        let (tx, rx) = tokio::sync::oneshot::channel();
        results.push((name.clone(), rx));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push((name.clone(), tx)),
            None => groups.push((key, vec![(name.clone(), tx)])),
        }
    }
    let f = Arc::new(f);
    for (_, group) in groups {
        let f = Arc::clone(&f);
        tokio::spawn(async move {
            for (name, slot) in group {
                let _ = slot.send(f(name).await);
            }
        });
    }
    let mut failed = 0;
    for (name, rx) in results {
        let result = rx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("{name}: the operation was abandoned")));
        match result {
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

/// `container start`: a container that already runs is fine (docker's `start`).
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
        let opts = attach::SessionOptions {
            no_sig_proxy: false,
            detach_keys: attach::detach_keys(tty, stdin, a.detach_keys),
        };
        let req = Request::Attach {
            stdin,
            early_exit: false,
        };
        return attach::finish(
            attach::session_with(stream, container.id(), req, stdin, tty, &opts).await,
        );
    }
    let names = if a.all_restartable {
        rt.restartable_containers()?
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    } else {
        a.containers
    };
    let verb_rt = rt.clone();
    each(&rt, &names, move |name| {
        let rt = verb_rt.clone();
        async move {
            rt.container(&name)?.start_unless_running().await?;
            Ok(())
        }
    })
    .await
}

/// The runtime's form of `-t` and `-s`.
fn stop_options(time: Option<u64>, signal: Option<i32>) -> StopOptions {
    StopOptions {
        signal,
        timeout: time.map(Duration::from_secs),
    }
}

/// `container stop`.
pub async fn stop(global: &GlobalOptions, a: StopArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let names = if a.all {
        all_names(&rt, Status::is_up)?
    } else {
        a.containers
    };
    let opts = stop_options(a.time, a.signal);
    let verb_rt = rt.clone();
    each(&rt, &names, move |name| {
        let rt = verb_rt.clone();
        async move {
            rt.container(&name)?.stop(opts).await?;
            Ok(())
        }
    })
    .await
}

/// `container restart`: stop (if running), then start, each container at once.
pub async fn restart(global: &GlobalOptions, a: RestartArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let opts = stop_options(a.time, a.signal);
    let verb_rt = rt.clone();
    each(&rt, &a.containers, move |name| {
        let rt = verb_rt.clone();
        async move {
            rt.container(&name)?.restart(opts).await?;
            Ok(())
        }
    })
    .await
}

/// `container kill`.
pub async fn kill(global: &GlobalOptions, a: KillArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let names = if a.all {
        all_names(&rt, Status::is_up)?
    } else {
        a.containers
    };
    let signal = a.signal;
    let verb_rt = rt.clone();
    each(&rt, &names, move |name| {
        let rt = verb_rt.clone();
        async move { Ok(rt.container(&name)?.kill(signal).await?) }
    })
    .await
}

/// `container update`: prints each container whose limits changed (as docker does).
pub async fn update(global: &GlobalOptions, a: UpdateArgs) -> anyhow::Result<()> {
    let r = &a.resources;
    let limits = r.cpus.is_some() || r.memory.is_some() || r.pids_limit.is_some();
    if !limits && a.restart.is_none() {
        anyhow::bail!("nothing to update: give --cpus, --memory, --pids-limit or --restart");
    }
    let rt = global.runtime()?;
    let change = r.flags();
    let restart = a.restart;
    let verb_rt = rt.clone();
    each(&rt, &a.containers, move |name| {
        let rt = verb_rt.clone();
        async move {
            let mut container = rt.container(&name)?;
            if let Some(policy) = restart {
                container.update_restart_policy(policy)?;
            }
            if limits {
                container.update(change).await?;
            }
            Ok(())
        }
    })
    .await
}

/// `container delete`.
pub async fn delete(global: &GlobalOptions, a: DeleteArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let (force, volumes) = (a.force, a.volumes);
    let names = if a.all {
        all_names(&rt, |s| force || !s.is_up())?
    } else {
        a.containers
    };
    let verb_rt = rt.clone();
    each(&rt, &names, move |name| {
        let rt = verb_rt.clone();
        async move { Ok(rt.container(&name)?.delete_with(force, volumes).await?) }
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
