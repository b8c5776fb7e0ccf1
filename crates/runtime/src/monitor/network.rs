//! The container's networking as its monitor drives it: published ports bound and taps made
//! before the VM boots (a conflict fails the start before anything boots), the guest's
//! interfaces, resolv.conf and hosts derived from the attachments, relays and DNS started once
//! the guest is configured, and everything but the address leases undone when the VM is gone.
//!
//! Without the right to make bridges and taps (a user without `CAP_NET_ADMIN`), the default
//! network falls back to QEMU's user-mode networking: the guest is 10.0.2.15 behind QEMU's own
//! NAT, with outbound access and the published ports forwarded by QEMU (`hostfwd`), but no
//! address reachable from the host and no name resolution of other containers.

use std::net::IpAddr;

use crate::backend::{GuestNetwork, NetDevice};
use crate::state::{ContainerRecord, Store};

/// Where a container's networking is in the monitor's run.
pub(crate) enum NetSession {
    /// Ports bound and taps made; services not started.
    Prepared(net::PreparedNetwork),
    /// Relays and DNS responders running.
    Running(net::RunningNetwork),
    /// QEMU user-mode networking (rootless fallback): the guest's one interface and the
    /// published ports with their host ports chosen.
    User(net::Attachment, Vec<net::ports::PortSpec>),
}

/// The guest's address, gateway and DNS on QEMU's user-mode network (QEMU's defaults).
const USER_GUEST: [u8; 4] = [10, 0, 2, 15];
const USER_GATEWAY: [u8; 4] = [10, 0, 2, 2];
const USER_DNS: [u8; 4] = [10, 0, 2, 3];

/// Whether this process may make bridges, taps and firewall rules.
fn can_admin_network() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// The user-mode session: each published port checked (and a free one chosen for port 0) by
/// binding it here first, then released for QEMU to bind. QEMU's `hostfwd` takes IPv4 host
/// addresses only, so the loopback default is 127.0.0.1 alone here.
fn user_mode(record: &ContainerRecord) -> Result<NetSession, net::SessionError> {
    let ipv4: Vec<net::ports::PortSpec> = record
        .config
        .publish
        .iter()
        .map(|p| net::ports::PortSpec {
            loopback6: false,
            ..*p
        })
        .collect();
    let bound = net::ports::bind(&ipv4)?;
    let ports = bound.specs();
    drop(bound);
    Ok(NetSession::User(user_attachment(), ports))
}

/// The guest's one interface on QEMU's user-mode network (also a builder VM's network).
pub(crate) fn user_attachment() -> net::Attachment {
    net::Attachment {
        network: format!("{} (user-mode)", net::DEFAULT_NETWORK),
        network_id: String::new(),
        tap: String::new(),
        mac: "52:54:00:12:34:56".into(),
        address: net::Ipv4Net::new_assert(USER_GUEST.into(), 24),
        gateway: USER_GATEWAY.into(),
        address6: None,
        gateway6: None,
        mtu: 1500,
        dns: vec![USER_DNS.into()],
    }
}

impl NetSession {
    /// Binds ports and attaches the container to its networks; `None` for a container with
    /// neither networks nor published ports.
    pub(crate) fn prepare(
        store: &Store,
        record: &ContainerRecord,
    ) -> Result<Option<Self>, net::SessionError> {
        let config = &record.config;
        if config.networks.is_empty() && config.publish.is_empty() {
            return Ok(None);
        }
        if config.networks == [net::DEFAULT_NETWORK] && !can_admin_network() {
            return user_mode(record).map(Some);
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
            &config.endpoints,
            &config.publish,
        )
        .map(|p| Some(NetSession::Prepared(p)))
    }

    fn attachments(&self) -> &[net::Attachment] {
        match self {
            NetSession::Prepared(p) => p.attachments(),
            NetSession::Running(r) => r.attachments(),
            NetSession::User(a, _) => std::slice::from_ref(a),
        }
    }

    /// The user-mode interface, when this is the rootless fallback (for `inspect`).
    pub(crate) fn user_attachment(&self) -> Option<&net::Attachment> {
        match self {
            NetSession::User(a, _) => Some(a),
            _ => None,
        }
    }

    /// The published ports as bound.
    pub(crate) fn ports(&self) -> Vec<net::ports::PortSpec> {
        match self {
            NetSession::Prepared(p) => p.ports(),
            NetSession::Running(r) => r.ports(),
            NetSession::User(_, ports) => ports.clone(),
        }
    }

    /// The VM's network devices.
    pub(crate) fn devices(&self) -> Vec<NetDevice> {
        let user = match self {
            NetSession::User(_, ports) => Some(ports.clone()),
            _ => None,
        };
        self.attachments()
            .iter()
            .map(|a| NetDevice {
                tap: a.tap.clone(),
                mac: a.mac.clone(),
                user: user.clone(),
            })
            .collect()
    }

    /// Starts the port relays and DNS responders (inside the monitor's runtime).
    pub(crate) fn start(self, store: &Store, id: &str) -> Result<Self, net::SessionError> {
        match self {
            NetSession::Prepared(p) => p.start().map(NetSession::Running).inspect_err(|_| {
                // A failed start has dropped its half-started services; the taps remain.
                if let Err(e) = net::Networks::open(store.root()).and_then(|n| n.detach(id)) {
                    tracing::warn!("remove taps: {}", crate::error_line(&e));
                }
            }),
            running => Ok(running),
        }
    }

    /// Stops the services and removes the taps; the addresses stay for the next start.
    pub(crate) fn finish(self) {
        let r = match self {
            NetSession::Prepared(p) => p.abort(),
            NetSession::Running(r) => r.stop(),
            // QEMU's own network went with QEMU.
            NetSession::User(..) => Ok(()),
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
        hosts.push((first.address.addr().into(), names.clone()));
        if let Some(a6) = interfaces.iter().find_map(|a| a.address6) {
            hosts.push((a6.addr().into(), names));
        }
    }
    if !record.config.networks.is_empty() {
        let peers = net::Networks::open(store.root()).and_then(|n| n.hosts(&record.id));
        match peers {
            Ok(peers) => {
                for p in peers.into_iter().filter(|p| p.name != record.name) {
                    let mut names = vec![p.name];
                    names.extend(p.aliases);
                    if let Some(a6) = p.address6 {
                        hosts.push((a6.into(), names.clone()));
                    }
                    hosts.push((p.address.into(), names));
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
