//! `container network …` commands: create, list, inspect and delete networks. All logic lives
//! in the `net` crate; this module parses arguments and prints.

use std::net::IpAddr;

use anyhow::{bail, Context};
use clap::Subcommand;
use runtime::filter::{FilterKind, Filters};
use runtime::network::{NetworkInfo, NetworkSpec};

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
        /// Subnet in CIDR form, IPv4 (default: a free 192.168.x.0/24) or IPv6 (implies
        /// --ipv6). Give it twice for both.
        #[arg(long, value_name = "CIDR")]
        subnet: Vec<runtime::network::IpNet>,
        /// Gateway address on the host (default: the subnet's first address), one per family.
        #[arg(long, value_name = "IP")]
        gateway: Vec<IpAddr>,
        /// IPv6 as well: an IPv6 subnet (--subnet, else a random unique local /64) and an
        /// IPv6 address for every container.
        #[arg(long)]
        ipv6: bool,
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
    /// Delete every network no container uses (the default network stays).
    Prune {
        /// Do not prompt (there is no prompt; accepted as docker's flag).
        #[arg(short, long)]
        force: bool,
        /// Only networks matching KEY=VALUE (label, label!, name, id, driver, type).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Connect a stopped container to a network (its next start attaches it).
    Connect {
        /// Another name the container answers to on the network. Repeatable.
        #[arg(long = "alias", value_name = "ALIAS")]
        aliases: Vec<String>,
        /// Its IPv4 address on the network.
        #[arg(long, value_name = "IP")]
        ip: Option<std::net::Ipv4Addr>,
        /// Its IPv6 address on an IPv6 network.
        #[arg(long, value_name = "IP")]
        ip6: Option<std::net::Ipv6Addr>,
        /// Network name or id.
        network: String,
        /// Container name or id.
        container: String,
    },
    /// Disconnect a stopped container from a network (its address there is freed).
    Disconnect {
        /// Network name or id.
        network: String,
        /// Container name or id.
        container: String,
    },
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
            ipv6,
            internal,
            labels,
        } => {
            let mut spec = NetworkSpec {
                name: name.clone(),
                ipv6,
                internal,
                labels: labels.labels()?,
                ..Default::default()
            };
            for s in subnet {
                let taken = match s {
                    runtime::network::IpNet::V4(v4) => spec.subnet.replace(v4).is_some(),
                    runtime::network::IpNet::V6(v6) => spec.subnet6.replace(v6).is_some(),
                };
                if taken {
                    bail!("--subnet {s}: one subnet per address family");
                }
            }
            for g in gateway {
                let taken = match g {
                    IpAddr::V4(v4) => spec.gateway.replace(v4).is_some(),
                    IpAddr::V6(v6) => spec.gateway6.replace(v6).is_some(),
                };
                if taken {
                    bail!("--gateway {g}: one gateway per address family");
                }
            }
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
                    "{:<16} {:<18} {:<15} {:<15} {:<8} {:<10} IPV6 SUBNET",
                    "NAME", "SUBNET", "GATEWAY", "BRIDGE", "INTERNAL", "CONTAINERS"
                ),
                name: &|n: &NetworkInfo| n.config.name.as_str(),
                row: &|n: &NetworkInfo| {
                    let c = &n.config;
                    let subnet6 = c.subnet6.map(|s| s.to_string());
                    format!(
                        "{:<16} {:<18} {:<15} {:<15} {:<8} {:<10} {}",
                        c.name,
                        c.subnet.to_string(),
                        c.gateway.to_string(),
                        c.bridge,
                        c.internal,
                        n.containers.len(),
                        subnet6.as_deref().unwrap_or("-")
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
        NetworkCommand::Prune { force: _, filter } => {
            let filters = Filters::parse(FilterKind::Networks, &filter)?;
            for name in rt.network_prune(&filters)? {
                println!("{name}");
            }
        }
        NetworkCommand::Connect {
            aliases,
            ip,
            ip6,
            network,
            container,
        } => {
            let endpoint = runtime::network::EndpointConfig {
                aliases,
                ipv4_address: ip,
                ipv6_address: ip6,
                mac_address: None,
                mtu: None,
            };
            rt.container(&container)?
                .connect_network(&network, endpoint)?;
        }
        NetworkCommand::Disconnect { network, container } => {
            rt.container(&container)?.disconnect_network(&network)?;
        }
    }
    Ok(())
}
