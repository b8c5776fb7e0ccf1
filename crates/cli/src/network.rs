//! `container network …` commands: create, list, inspect and delete networks. All logic lives
//! in the `net` crate; this module parses arguments and prints.

use std::net::Ipv4Addr;

use anyhow::Context;
use clap::Subcommand;
use runtime::filter::{FilterKind, Filters};
use runtime::network::{Ipv4Net, NetworkInfo, NetworkSpec};

use crate::global::GlobalOptions;
use crate::labels::LabelFlags;
use crate::output::{self, InspectArgs, ListArgs, Listing, NamesArgs};

/// Subcommands of `container network`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network: a bridge with the gateway address, NAT to the outside unless internal.
    Create {
        /// Network name.
        name: String,
        /// IPv4 subnet in CIDR form (default: a free 192.168.x.0/24).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<Ipv4Net>,
        /// Gateway address on the host (default: the subnet's first address).
        #[arg(long, value_name = "IP")]
        gateway: Option<Ipv4Addr>,
        /// No access to the outside (no NAT, no forwarding).
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        labels: LabelFlags,
    },
    /// List networks.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show networks as a JSON array, or through a Go template (-f).
    Inspect(InspectArgs),
    /// Delete networks (refused while containers use them).
    #[command(alias = "rm")]
    Delete(NamesArgs),
}

/// Runs one `container network` subcommand.
pub fn run(global: &GlobalOptions, cmd: NetworkCommand) -> anyhow::Result<()> {
    let root = global.root_dir();
    let rt = global.runtime()?;
    let networks = rt
        .networks()
        .with_context(|| format!("cannot open networks in {}", root.display()))?;
    match cmd {
        NetworkCommand::Create {
            name,
            subnet,
            gateway,
            internal,
            labels,
        } => {
            let spec = NetworkSpec {
                name: name.clone(),
                subnet,
                gateway,
                internal,
                labels: labels.labels()?,
            };
            let config = rt
                .network_create(&spec)
                .with_context(|| format!("cannot create network {name}"))?;
            println!("{}", config.name);
        }
        NetworkCommand::List(ListArgs {
            format,
            quiet,
            filter,
        }) => {
            let filters = Filters::parse(FilterKind::Networks, &filter)?;
            let listing = Listing {
                header: format!(
                    "{:<16} {:<18} {:<15} {:<15} {:<8} CONTAINERS",
                    "NAME", "SUBNET", "GATEWAY", "BRIDGE", "INTERNAL"
                ),
                name: &|n: &NetworkInfo| n.config.name.as_str(),
                row: &|n: &NetworkInfo| {
                    let c = &n.config;
                    format!(
                        "{:<16} {:<18} {:<15} {:<15} {:<8} {}",
                        c.name,
                        c.subnet.to_string(),
                        c.gateway.to_string(),
                        c.bridge,
                        c.internal,
                        n.containers.len()
                    )
                },
            };
            let mut list = networks.list()?;
            list.retain(|n| filters.matches_network(n));
            listing.print(&list, format, quiet)?;
        }
        NetworkCommand::Inspect(a) => {
            let infos = a
                .names
                .iter()
                .map(|name| networks.inspect(name))
                .collect::<Result<Vec<_>, _>>()?;
            a.print(&infos)?;
        }
        NetworkCommand::Delete(NamesArgs { names }) => {
            output::each_name(&names, |name| {
                rt.network_delete(name)?;
                Ok(())
            })?;
        }
    }
    Ok(())
}
