//! The container's networking as its monitor drives it: published ports bound and taps made
//! before the VM boots (a conflict fails the start before anything boots), the guest's
//! interfaces, resolv.conf and hosts derived from the attachments, relays and DNS started once
//! the guest is configured, and everything but the address leases undone when the VM is gone.

use std::net::IpAddr;

use crate::backend::{GuestNetwork, NetDevice};
use crate::state::{ContainerRecord, Store};

/// Where a container's networking is in the monitor's run.
pub(crate) enum NetSession {
    /// Ports bound and taps made; services not started.
    Prepared(net::PreparedNetwork),
    /// Relays and DNS responders running.
    Running(net::RunningNetwork),
}

impl NetSession {
    /// Binds ports and attaches the container to its networks; `None` for a container with
    /// neither networks nor published ports.
    pub(crate) fn prepare(store: &Store, record: &ContainerRecord) -> Result<Option<Self>, String> {
        let config = &record.config;
        if config.networks.is_empty() && config.publish.is_empty() {
            return Ok(None);
        }
        let mode = if config.networks.is_empty() {
            net::NetworkMode::None
        } else {
            net::NetworkMode::Networks(config.networks.clone())
        };
        net::ContainerNetwork::prepare(
            store.root(),
            &record.id,
            Some(&record.name),
            &mode,
            &config.publish,
        )
        .map(|p| Some(NetSession::Prepared(p)))
        .map_err(|e| format!("network: {}", crate::error_line(&e)))
    }

    fn attachments(&self) -> &[net::Attachment] {
        match self {
            NetSession::Prepared(p) => p.attachments(),
            NetSession::Running(r) => r.attachments(),
        }
    }

    /// The published ports as bound.
    pub(crate) fn ports(&self) -> Vec<net::ports::PortSpec> {
        match self {
            NetSession::Prepared(p) => p.ports(),
            NetSession::Running(r) => r.ports(),
        }
    }

    /// The VM's network devices.
    pub(crate) fn devices(&self) -> Vec<NetDevice> {
        self.attachments()
            .iter()
            .map(|a| NetDevice {
                tap: a.tap.clone(),
                mac: a.mac.clone(),
            })
            .collect()
    }

    /// Starts the port relays and DNS responders (inside the monitor's runtime).
    pub(crate) fn start(self, store: &Store, id: &str) -> Result<Self, String> {
        match self {
            NetSession::Prepared(p) => p.start().map(NetSession::Running).map_err(|e| {
                // A failed start has dropped its half-started services; the taps remain.
                if let Err(e) = net::Networks::open(store.root()).and_then(|n| n.detach(id)) {
                    tracing::warn!("remove taps: {}", crate::error_line(&e));
                }
                format!("network: {}", crate::error_line(&e))
            }),
            running => Ok(running),
        }
    }

    /// Stops the services and removes the taps; the addresses stay for the next start.
    pub(crate) fn finish(self) {
        let r = match self {
            NetSession::Prepared(p) => p.abort(),
            NetSession::Running(r) => r.stop(),
        };
        if let Err(e) = r {
            tracing::warn!("tear down networking: {}", crate::error_line(&e));
        }
    }
}

/// What the guest is configured with: its interfaces (none without a session), hosts lines
/// naming itself, the named containers on its networks at this moment (later ones resolve
/// through DNS) and `--add-host` entries, and its own resolver settings.
pub(crate) fn guest(
    session: Option<&NetSession>,
    store: &Store,
    record: &ContainerRecord,
) -> GuestNetwork {
    let interfaces = session
        .map(|s| s.attachments().to_vec())
        .unwrap_or_default();
    let mut hosts: Vec<(IpAddr, Vec<String>)> = Vec::new();
    if let Some(first) = interfaces.first() {
        let mut names = vec![record.config.hostname.clone()];
        if record.name != record.config.hostname {
            names.push(record.name.clone());
        }
        hosts.push((first.address.addr().into(), names));
    }
    if !record.config.networks.is_empty() {
        let peers = net::Networks::open(store.root()).and_then(|n| n.hosts(&record.id));
        match peers {
            Ok(peers) => {
                for p in peers.into_iter().filter(|p| p.name != record.name) {
                    hosts.push((p.address.into(), vec![p.name]));
                }
            }
            Err(e) => tracing::warn!("peers for /etc/hosts: {}", crate::error_line(&e)),
        }
    }
    let gateway = interfaces.first().map(|a| IpAddr::from(a.gateway));
    for h in &record.config.extra_hosts {
        match h.resolve(gateway) {
            Some(ip) => hosts.push((ip, vec![h.name.clone()])),
            None => tracing::warn!("--add-host {}: the container has no network", h.name),
        }
    }
    GuestNetwork {
        interfaces,
        hosts,
        dns: record.config.dns.clone(),
    }
}

/// Frees the addresses of a deleted container.
pub(crate) fn release(store: &Store, record: &ContainerRecord) {
    if record.config.networks.is_empty() {
        return;
    }
    if let Err(e) = net::Networks::open(store.root()).and_then(|n| n.release(&record.id)) {
        tracing::warn!(
            "release the addresses of {}: {}",
            record.id,
            crate::error_line(&e)
        );
    }
}
