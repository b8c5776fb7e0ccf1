//! `connect` and `disconnect`: a stopped container joins or leaves a network (docker's
//! `network connect`/`disconnect`). Its next start attaches it as configured. A running
//! container is refused: a QEMU microvm has no hot-plug, so its interfaces are those it booted
//! with.

use super::{Container, ContainerError};

impl Container {
    /// Adds network `key` (name, id or unique id prefix) to the container's networks, with
    /// `endpoint`'s aliases and address; returns the network's name.
    pub fn connect_network(
        &mut self,
        key: &str,
        endpoint: net::EndpointConfig,
    ) -> Result<String, ContainerError> {
        let nets = net::Networks::open(self.rt.root())?;
        let resolved = nets.resolve(key)?;
        let network = resolved.name.clone();
        self.refresh()?;
        self.check_stopped("connect", &network)?;
        let config = &self.record.config;
        if config.networks.is_empty() {
            return Err(ContainerError::Endpoint(format!(
                "container {} has no network (--network none) and cannot be connected to one",
                self.name()
            )));
        }
        if config.networks.contains(&network) {
            return Err(ContainerError::Endpoint(format!(
                "container {} is already connected to network {network}",
                self.name()
            )));
        }
        let mut networks = config.networks.clone();
        networks.push(network.clone());
        let checked = super::prepare::check_endpoints(
            &nets,
            &networks,
            [(network.clone(), endpoint)].into(),
        )?;
        self.record = self.rt.store().update(self.id(), |r| {
            r.config.networks.push(network.clone());
            r.config.endpoints.extend(checked);
        })?;
        crate::network::network_event(self.rt.root(), "connect", &resolved, Some(self.id()));
        Ok(network)
    }

    /// Removes network `key` from the container's networks and frees its address there;
    /// returns the network's name.
    pub fn disconnect_network(&mut self, key: &str) -> Result<String, ContainerError> {
        let nets = net::Networks::open(self.rt.root())?;
        let resolved = nets.resolve(key)?;
        let network = resolved.name.clone();
        self.refresh()?;
        self.check_stopped("disconnect", &network)?;
        if !self.record.config.networks.contains(&network) {
            return Err(ContainerError::Endpoint(format!(
                "container {} is not connected to network {network}",
                self.name()
            )));
        }
        self.record = self.rt.store().update(self.id(), |r| {
            r.config.networks.retain(|n| *n != network);
            r.config.endpoints.remove(&network);
        })?;
        nets.leave(self.id(), &network)?;
        crate::network::network_event(self.rt.root(), "disconnect", &resolved, Some(self.id()));
        Ok(network)
    }

    /// Refuses a network change while a VM (or its monitor) is up.
    fn check_stopped(&self, verb: &'static str, network: &str) -> Result<(), ContainerError> {
        let r = &self.record;
        if r.status.is_up() || r.monitor_pid.is_some() {
            return Err(ContainerError::NetworkWhileRunning {
                verb,
                name: r.name.clone(),
                network: network.to_string(),
            });
        }
        Ok(())
    }
}
