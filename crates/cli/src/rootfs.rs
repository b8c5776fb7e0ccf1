//! `container rootfs …` commands.

use clap::Subcommand;

use crate::global::GlobalOptions;

/// Subcommands of `container rootfs`.
#[derive(Debug, Subcommand)]
pub enum RootfsCommand {}

/// Runs one `container rootfs` subcommand.
pub fn run(_global: &GlobalOptions, cmd: RootfsCommand) -> anyhow::Result<()> {
    match cmd {}
}
