//! The `container` binary: parses the command line and dispatches into the library crates.
//!
//! It holds no logic of its own beyond argument parsing, output formatting and mapping errors
//! to exit codes (125 for faults of the runtime, as docker does).

#![warn(clippy::unwrap_used)]

mod build;
mod completion;
mod container;
mod events;
mod exit;
mod format;
mod global;
mod image;
mod image_history;
mod labels;
mod network;
mod output;
mod pod;
mod progress;
mod registry;
mod rootfs;
mod service;
mod system;
mod system_info;
mod system_logs;
mod version;
mod volume;

use clap::{Parser, Subcommand};

use crate::global::GlobalOptions;

/// Linux containers, each in its own lightweight virtual machine.
#[derive(Debug, Parser)]
#[command(name = "container", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile; each RUN runs in a VM of ours.
    Build(build::BuildArgs),
    /// Make an image of a container's changes (and its settings, with --change).
    Commit(build::CommitArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Manage images in the local content store.
    #[command(subcommand, alias = "i")]
    Image(image::ImageCommand),
    /// Manage container networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage pods: several containers in one VM.
    #[command(subcommand)]
    Pod(pod::PodCommand),
    /// Log in to and out of registries.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Build ext4 root filesystems from image layers.
    #[command(subcommand)]
    Rootfs(rootfs::RootfsCommand),
    #[command(flatten)]
    Container(container::ContainerCommand),
    /// System-wide settings: the guest kernel.
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Manage named volumes (ext4 images attached to containers).
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Show the version of this binary and of the guest kernel.
    Version(version::VersionArgs),
    /// Show what happens to containers, images, networks and volumes, as it happens.
    Events(events::EventsArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
    /// Write the man pages into a directory (for packagers).
    #[command(name = "__man", hide = true)]
    Man(completion::ManArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Usage errors exit with 125 as docker's do, on one line like every other error;
            // --help and --version exit 0.
            if !err.use_stderr() {
                let _ = err.print();
                std::process::exit(0);
            }
            eprintln!("Error: {}", exit::usage_line(&err.to_string()));
            std::process::exit(exit::RUNTIME_FAULT);
        }
    };
    cli.global.init_logging();
    let result = match cli.command {
        Command::Build(a) => build::run(&cli.global, a),
        Command::Builder(cmd) => build::builder(&cli.global, cmd),
        Command::Commit(a) => build::commit(&cli.global, a),
        Command::Image(cmd) => image::run(&cli.global, cmd),
        Command::Network(cmd) => network::run(&cli.global, cmd),
        Command::Pod(cmd) => pod::run(&cli.global, cmd),
        Command::Registry(cmd) => registry::run(&cli.global, cmd),
        Command::Rootfs(cmd) => rootfs::run(&cli.global, cmd),
        Command::Container(cmd) => container::run(&cli.global, cmd),
        Command::System(cmd) => system::run(&cli.global, cmd),
        Command::Volume(cmd) => volume::run(&cli.global, cmd),
        Command::Version(a) => version::version(&cli.global, a),
        Command::Events(a) => events::events(&cli.global, a),
        Command::Completion(a) => completion::completion(a),
        Command::Man(a) => completion::man(a),
    };
    std::process::exit(exit::report(result));
}
