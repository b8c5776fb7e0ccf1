//! The networking of one container run, in the order its monitor needs it:
//!
//! 1. [`ContainerNetwork::prepare`] (before QEMU starts, synchronous): binds the published host
//!    ports first — a conflict fails here, before anything else is created — then attaches the
//!    container to its networks (addresses, taps). The returned attachments give QEMU its
//!    `-netdev tap,ifname=…` / `mac=…` and the guest agent its interface settings.
//! 2. [`PreparedNetwork::start`] (once the guest is configured, on a tokio runtime): starts the
//!    port relays towards the container's first address and a DNS responder per network.
//! 3. [`RunningNetwork::stop`] (after the VM exited): stops relays and responders and removes
//!    the taps; addresses stay reserved for the next start. `Networks::release` at container
//!    deletion frees them.
//!
//! A failure in `prepare` or `start` undoes what that step did.

use std::collections::BTreeMap;
use std::path::Path;

use crate::dns::DnsResponder;
use crate::ports::{self, BoundPorts, Forwarder, PortError, PortSpec};
use crate::{Attachment, EndpointConfig, NetworkError, NetworkMode, Networks};

/// A failure setting up a container's networking.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A published port could not be bound.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// Attaching or detaching failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// `-p` with `--network none`.
    #[error("cannot publish ports of a container without a network (--network none)")]
    PortsWithoutNetwork,
    /// The DNS responder or port relays could not be registered with the runtime.
    #[error("cannot start the network services of container {0}")]
    Start(String, #[source] std::io::Error),
}

/// Entry point; see the module documentation.
pub struct ContainerNetwork;

impl ContainerNetwork {
    /// Binds `ports` and attaches `container_id` (named `name`, for DNS and hosts files) to the
    /// networks of `mode`, with what `endpoints` asks for on each (aliases, a fixed address),
    /// in state root `root`.
    pub fn prepare(
        root: &Path,
        container_id: &str,
        name: Option<&str>,
        mode: &NetworkMode,
        endpoints: &BTreeMap<String, EndpointConfig>,
        ports: &[PortSpec],
    ) -> Result<PreparedNetwork, SessionError> {
        let networks = Networks::open(root)?;
        let names = match mode {
            NetworkMode::None if !ports.is_empty() => {
                return Err(SessionError::PortsWithoutNetwork)
            }
            NetworkMode::None => Vec::new(),
            NetworkMode::Networks(names) => names.clone(),
        };
        let bound = ports::bind(ports)?;
        let attachments = networks.attach_all(container_id, name, &names, endpoints)?;
        Ok(PreparedNetwork {
            networks,
            container_id: container_id.to_string(),
            attachments,
            ports: bound,
        })
    }
}

/// Ports bound and taps made; the VM may boot.
#[derive(Debug)]
pub struct PreparedNetwork {
    networks: Networks,
    container_id: String,
    attachments: Vec<Attachment>,
    ports: BoundPorts,
}

impl PreparedNetwork {
    /// The container's interfaces in `eth0`, `eth1`, … order.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Starts the port relays (to the first interface's address) and one DNS responder per
    /// network. Must run inside a tokio runtime.
    pub fn start(self) -> Result<RunningNetwork, SessionError> {
        let mut running = RunningNetwork {
            ports: self.ports.specs(),
            networks: self.networks,
            container_id: self.container_id,
            attachments: self.attachments,
            forwarder: None,
            dns: Vec::new(),
        };
        if let Some(first) = running.attachments.first() {
            let target = first.address.addr().into();
            running.forwarder = Some(self.ports.spawn(target)?);
        }
        for attachment in running.attachments.clone() {
            let responder: DnsResponder = running.networks.dns_responder(&attachment.network)?;
            let task = responder
                .spawn()
                .map_err(|e| SessionError::Start(running.container_id.clone(), e))?;
            running.dns.push(task);
        }
        Ok(running)
    }

    /// The published ports, with the host ports actually bound.
    pub fn ports(&self) -> Vec<PortSpec> {
        self.ports.specs()
    }

    /// Gives up before starting: removes the taps (addresses kept) and closes the ports.
    pub fn abort(self) -> Result<(), SessionError> {
        self.networks.detach(&self.container_id)?;
        Ok(())
    }
}

/// The container's network services while it runs. Dropping it stops the relays and DNS
/// responders but leaves the taps; call [`RunningNetwork::stop`] to remove those too.
#[derive(Debug)]
pub struct RunningNetwork {
    ports: Vec<PortSpec>,
    networks: Networks,
    container_id: String,
    attachments: Vec<Attachment>,
    forwarder: Option<Forwarder>,
    dns: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNetwork {
    /// The container's interfaces in `eth0`, `eth1`, … order.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The published ports, with the host ports actually bound.
    pub fn ports(&self) -> Vec<PortSpec> {
        self.ports.clone()
    }

    /// Stops relays and responders and removes the container's taps (addresses kept).
    pub fn stop(mut self) -> Result<(), SessionError> {
        self.forwarder.take();
        for task in self.dns.drain(..) {
            task.abort();
        }
        self.networks.detach(&self.container_id)?;
        Ok(())
    }
}

impl Drop for RunningNetwork {
    fn drop(&mut self) {
        for task in &self.dns {
            task.abort();
        }
    }
}
