//! `container volume …`: create, list, inspect, delete and prune named volumes. The store is
//! `runtime::volume`; this module parses arguments, checks which containers use a volume, and
//! prints.

use clap::Subcommand;
use runtime::filter::{FilterKind, Filters};
use runtime::volumes::VolumeInfo;

use crate::global::GlobalOptions;
use crate::labels::LabelFlags;
use crate::output::{self, InspectArgs, ListArgs, Listing, NamesArgs};

/// Subcommands of `container volume`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume: an empty ext4 filesystem image.
    Create {
        /// Volume name.
        name: String,
        /// Size with an optional K/M/G/T suffix (default 1G; the image file is sparse).
        #[arg(short, long, value_name = "SIZE", value_parser = crate::output::parse_size)]
        size: Option<u64>,
        /// A driver option (repeatable): journal=ordered|writeback|journal[:SIZE] sets the
        /// data mode the guest mounts it with and the journal's size; size=SIZE as --size.
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE", value_parser = parse_opt)]
        opts: Vec<(String, String)>,
        #[command(flatten)]
        labels: LabelFlags,
    },
    /// List volumes.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show volumes as a JSON array, or through a Go template (-f).
    Inspect(InspectArgs),
    /// Delete volumes (refused while a container uses them).
    #[command(alias = "rm")]
    Delete(NamesArgs),
    /// Delete every volume no container uses.
    Prune,
}

/// Splits `--opt KEY=VALUE`.
fn parse_opt(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Runs one `container volume` subcommand.
pub fn run(global: &GlobalOptions, cmd: VolumeCommand) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            opts,
            labels,
        } => {
            let mut options = std::collections::BTreeMap::new();
            for (key, value) in opts {
                if options.insert(key.clone(), value).is_some() {
                    anyhow::bail!("volume option {key} is given twice");
                }
            }
            rt.volume_create_with(&name, size, labels.labels()?, options)?;
            println!("{name}");
        }
        VolumeCommand::List(ListArgs {
            format,
            quiet,
            filter,
        }) => {
            let filters = Filters::parse(FilterKind::Volumes, &filter)?;
            let listing = Listing {
                header: format!(
                    "{:<24} {:<8} {:>10} {:>10} CONTAINERS",
                    "NAME", "DRIVER", "SIZE", "USED"
                ),
                name: &|i: &VolumeInfo| i.volume.name.as_str(),
                row: &|i: &VolumeInfo| {
                    format!(
                        "{:<24} {:<8} {:>10} {:>10} {}",
                        i.volume.name,
                        i.volume.driver,
                        crate::output::human_size(i.volume.size_bytes),
                        crate::output::human_size(i.allocated_bytes),
                        i.containers.len()
                    )
                },
            };
            let mut volumes = rt.volumes()?;
            volumes.retain(|v| filters.matches_volume(v));
            listing.print(&volumes, format, quiet)?;
        }
        VolumeCommand::Inspect(a) => {
            let infos = a
                .names
                .iter()
                .map(|n| rt.volume(n))
                .collect::<Result<Vec<_>, _>>()?;
            a.print(&infos)?;
        }
        VolumeCommand::Delete(NamesArgs { names }) => {
            output::each_name(&names, |name| Ok(rt.volume_delete(name)?))?;
        }
        VolumeCommand::Prune => {
            let mut freed = 0;
            for (name, bytes) in rt.volume_prune(&Filters::new(FilterKind::Volumes))? {
                println!("{name}");
                freed += bytes;
            }
            eprintln!(
                "Total reclaimed space: {}",
                crate::output::human_size(freed)
            );
        }
    }
    Ok(())
}
