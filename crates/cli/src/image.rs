//! `container image …` commands.

use clap::Subcommand;

use crate::global::GlobalOptions;

/// Subcommands of `container image`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {}

/// Runs one `container image` subcommand.
pub fn run(_global: &GlobalOptions, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {}
}
