//! `container completion SHELL` (docker's): the shell completion script, generated from the
//! same clap definitions that parse the command line, so it never lags behind a flag; and the
//! hidden `__man DIR` for packagers: one man page per command (`container.1`,
//! `container-run.1`, `container-image-pull.1`, …).

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `__man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory the pages are written to (made if missing).
    pub dir: PathBuf,
}

/// Prints the completion script for `shell`.
pub fn completion(args: CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "container", &mut script);
    // Written here, not by the generator, which panics when stdout closes early (`| head`).
    use std::io::Write;
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes the man pages into `dir`.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| anyhow::anyhow!("create {}: {e}", args.dir.display()))?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let n = write_pages(&cmd, "container", &args.dir)?;
    eprintln!("{n} man pages in {}", args.dir.display());
    Ok(())
}

/// The page of `cmd` (named `name`) and of each visible subcommand below it; how many.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<usize> {
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .render(&mut out)?;
    std::fs::write(&path, out).map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        n += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(n)
}
