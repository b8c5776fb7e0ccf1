//! `container registry …` commands.

use clap::Subcommand;

use crate::global::GlobalOptions;

/// Subcommands of `container registry`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {}

/// Runs one `container registry` subcommand.
pub fn run(_global: &GlobalOptions, cmd: RegistryCommand) -> anyhow::Result<()> {
    match cmd {}
}
