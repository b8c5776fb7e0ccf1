//! `pause`, `unpause`, `wait`, `rename`, `top`, `export` and `prune`: docker's flags, output
//! and exit codes over the runtime's verbs.

use clap::Args;
use runtime::container::WaitCondition;
use tokio::io::AsyncWriteExt;

use super::lifecycle::each;
use crate::global::GlobalOptions;

/// `container pause` / `container unpause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// What to wait for: not-running (the default), next-exit or removed.
    #[arg(long, value_name = "CONDITION", default_value = "not-running")]
    pub condition: WaitCondition,
    /// Containers (name or id).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `container rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container (name or id).
    pub container: String,
    /// Its new name.
    pub new_name: String,
}

/// `container top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container (name or id).
    pub container: String,
    /// `ps` options: -ef (the default), aux, or -o COLUMNS (e.g. -o pid,user,comm,args).
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    pub ps_options: Vec<String>,
}

/// `container export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write the tar to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// The container (name or id).
    pub container: String,
}

/// `container prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// until=TIMESTAMP|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE] (repeatable).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `container pause`: prints each name once its VM is frozen.
pub async fn pause(global: &GlobalOptions, a: PauseArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let verb_rt = rt.clone();
    each(&rt, &a.containers, move |name| {
        let rt = verb_rt.clone();
        async move { Ok(rt.container(&name)?.pause().await?) }
    })
    .await
}

/// `container unpause`.
pub async fn unpause(global: &GlobalOptions, a: PauseArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let verb_rt = rt.clone();
    each(&rt, &a.containers, move |name| {
        let rt = verb_rt.clone();
        async move { Ok(rt.container(&name)?.unpause().await?) }
    })
    .await
}

/// `container wait`: each exit code on its own line, in the order given (docker waits for
/// all at once and prints as they end; with one line per name in order, scripts can pair
/// them). A name that fails prints its error and the command exits 125 at the end.
pub async fn wait(global: &GlobalOptions, a: WaitArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let waits: Vec<_> = a
        .containers
        .iter()
        .map(|name| {
            let rt = rt.clone();
            let name = name.clone();
            let condition = a.condition;
            tokio::spawn(async move { rt.container(&name)?.wait(condition).await })
        })
        .collect();
    let mut failed = false;
    for w in waits {
        match w.await? {
            Ok(code) => println!("{code}"),
            Err(e) => {
                eprintln!("Error: {}", crate::exit::chain(&e.into()));
                failed = true;
            }
        }
    }
    if failed {
        return Err(crate::exit::ExitCode(crate::exit::RUNTIME_FAULT).into());
    }
    Ok(())
}

/// `container rename`: silent on success, as docker.
pub async fn rename(global: &GlobalOptions, a: RenameArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    rt.container(&a.container)?.rename(&a.new_name).await?;
    Ok(())
}

/// `container top`: `ps`'s columns, aligned as docker's tab writer aligns them.
pub async fn top(global: &GlobalOptions, a: TopArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let table = rt.container(&a.container)?.top(&a.ps_options).await?;
    let mut rows = vec![table.titles];
    rows.extend(table.processes);
    print!("{}", crate::output::tab_aligned(&rows, 20, 3));
    Ok(())
}

/// `container export`: the root filesystem as a tar, to `-o FILE` or stdout (refused on a
/// terminal, as docker refuses it).
pub async fn export(global: &GlobalOptions, a: ExportArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let mut container = rt.container(&a.container)?;
    match &a.output {
        Some(path) => {
            // Written beside the destination and renamed into place only when complete.
            let tmp = atomic_tmp(path);
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| anyhow::anyhow!("create {}: {e}", tmp.display()))?;
            let mut out = tokio::io::BufWriter::new(file);
            let written = container.export(&mut out).await;
            let flushed = async {
                out.flush().await?;
                out.get_ref().sync_all().await
            }
            .await;
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            if let Err(e) = flushed.and_then(|()| std::fs::rename(&tmp, path)) {
                let _ = std::fs::remove_file(&tmp);
                anyhow::bail!("write {}: {e}", path.display());
            }
            Ok(())
        }
        None => {
            if super::attach::stdout_is_tty() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                );
            }
            container.export(tokio::io::stdout()).await?;
            Ok(())
        }
    }
}

/// A temporary name beside `path`.
fn atomic_tmp(path: &std::path::Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// `container prune`: docker's confirmation, list and total.
pub async fn prune(global: &GlobalOptions, a: PruneArgs) -> anyhow::Result<()> {
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            return Ok(());
        }
    }
    let rt = global.runtime()?;
    let report = rt.prune_containers(&a.filter).await?;
    if !report.deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &report.deleted {
            println!("{id}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::output::go_human_size(report.reclaimed, 4)
    );
    Ok(())
}
