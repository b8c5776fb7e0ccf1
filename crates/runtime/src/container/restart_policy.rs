//! Restart policies on containers: `update --restart` and the containers that
//! `start --all-restartable` brings back (the rules are [`crate::restart`]'s; the monitor
//! applies them while it runs).

use super::{Container, ContainerError};
use crate::restart::{RestartPolicy, RestartPolicyError};
use crate::Runtime;

impl Container {
    /// Gives the container a new restart policy (`update --restart`). A running container's
    /// monitor reads it when the current run ends; an `--rm` container keeps `no`, as
    /// docker's.
    pub fn update_restart_policy(&mut self, policy: RestartPolicy) -> Result<(), ContainerError> {
        self.refresh()?;
        if self.record.config.auto_remove && !policy.is_no() {
            return Err(RestartPolicyError::UpdateAutoRemove.into());
        }
        self.record = self
            .rt
            .store()
            .update(self.id(), |r| r.config.restart = policy)?;
        Ok(())
    }
}

impl Runtime {
    /// The containers that their restart policy would have started again had a monitor been
    /// there (after a host reboot, or monitors that were killed), oldest first: see
    /// [`crate::restart::restartable`].
    pub fn restartable_containers(&self) -> Result<Vec<Container>, ContainerError> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| crate::restart::restartable(c.record()))
            .collect())
    }
}
