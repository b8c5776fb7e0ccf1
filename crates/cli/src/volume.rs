//! `container volume …`: create, list, inspect, delete and prune named volumes. The store is
//! `runtime::volume`; this module parses arguments, checks which containers use a volume, and
//! prints.

use anyhow::bail;
use clap::Subcommand;
use runtime::state::Store;
use runtime::volume::{MountSpec, Volume, VolumeStore, DEFAULT_SIZE};
use serde::Serialize;

use crate::global::GlobalOptions;
use crate::output::{self, ListArgs, Listing, NamesArgs};

/// Subcommands of `container volume`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume: an empty ext4 filesystem image.
    Create {
        /// Volume name.
        name: String,
        /// Size with an optional K/M/G/T suffix (default 1G; the image file is sparse).
        #[arg(long, value_name = "SIZE", value_parser = crate::rootfs::parse_size)]
        size: Option<u64>,
    },
    /// List volumes.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show volumes as a JSON array.
    Inspect(NamesArgs),
    /// Delete volumes (refused while a container uses them).
    #[command(alias = "rm")]
    Delete(NamesArgs),
    /// Delete every volume no container uses.
    Prune,
}

/// A volume with the containers that reference it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeInfo {
    #[serde(flatten)]
    volume: Volume,
    /// Bytes the image takes on the host (it is sparse).
    allocated_bytes: u64,
    /// Names of the containers (any state) that mount it.
    containers: Vec<String>,
}

/// Names of the containers whose configuration mounts volume `name`.
fn users(containers: &[runtime::state::ContainerRecord], name: &str) -> Vec<String> {
    containers
        .iter()
        .filter(|c| {
            c.config
                .mounts
                .iter()
                .any(|m| matches!(m, MountSpec::Volume { source, .. } if source == name))
        })
        .map(|c| c.name.clone())
        .collect()
}

fn info(
    vols: &VolumeStore,
    v: Volume,
    containers: &[runtime::state::ContainerRecord],
) -> VolumeInfo {
    use std::os::unix::fs::MetadataExt;
    let allocated_bytes = std::fs::metadata(vols.disk(&v.name))
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    let containers = users(containers, &v.name);
    VolumeInfo {
        volume: v,
        allocated_bytes,
        containers,
    }
}

/// Deletes one volume unless a container references it.
fn delete_one(
    vols: &VolumeStore,
    containers: &[runtime::state::ContainerRecord],
    name: &str,
) -> anyhow::Result<()> {
    vols.get(name)?;
    let used = users(containers, name);
    if !used.is_empty() {
        bail!(
            "volume {name} is in use by container(s) {}",
            used.join(", ")
        );
    }
    vols.remove(name)?;
    Ok(())
}

/// Runs one `container volume` subcommand.
pub fn run(global: &GlobalOptions, cmd: VolumeCommand) -> anyhow::Result<()> {
    let root = global.root_dir();
    let vols = VolumeStore::open(&root)?;
    let containers = || -> anyhow::Result<_> { Ok(Store::open(&root)?.list()?) };
    match cmd {
        VolumeCommand::Create { name, size } => {
            vols.create(&name, size.unwrap_or(DEFAULT_SIZE))?;
            println!("{name}");
        }
        VolumeCommand::List(ListArgs { format, quiet }) => {
            let cs = containers()?;
            let infos: Vec<VolumeInfo> = vols
                .list()?
                .into_iter()
                .map(|v| info(&vols, v, &cs))
                .collect();
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
                        crate::image::human_size(i.volume.size_bytes),
                        crate::image::human_size(i.allocated_bytes),
                        i.containers.len()
                    )
                },
            };
            listing.print(&infos, format, quiet)?;
        }
        VolumeCommand::Inspect(NamesArgs { names }) => {
            let cs = containers()?;
            let infos = names
                .iter()
                .map(|n| vols.get(n).map(|v| info(&vols, v, &cs)))
                .collect::<Result<Vec<_>, _>>()?;
            output::json(&infos)?;
        }
        VolumeCommand::Delete(NamesArgs { names }) => {
            let cs = containers()?;
            output::each_name(&names, |name| delete_one(&vols, &cs, name))?;
        }
        VolumeCommand::Prune => {
            vols.remove_leftovers()?;
            let cs = containers()?;
            let mut freed = 0;
            for v in vols.list()? {
                if users(&cs, &v.name).is_empty() {
                    let size = info(&vols, v.clone(), &cs).allocated_bytes;
                    // A volume claimed by a container created since the listing stays.
                    if vols.remove(&v.name).is_ok() {
                        println!("{}", v.name);
                        freed += size;
                    }
                }
            }
            eprintln!("Total reclaimed space: {}", crate::image::human_size(freed));
        }
    }
    Ok(())
}
