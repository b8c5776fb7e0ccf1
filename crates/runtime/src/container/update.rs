//! `update`: change a container's resource limits (`--cpus`, `-m`, `--pids-limit`). A running
//! container gets them at once in its guest cgroup, as long as they fit the VM it was booted
//! with (vCPUs and memory cannot grow under a running guest); a stopped one keeps them, and its
//! next start sizes the VM for them.

use super::{Container, ContainerError};
use crate::client;
use crate::protocol::{Frame, Request};
use crate::resources::{ResourceFlags, ResourceLimits};
use crate::state::Status;

/// The flags given to `update`; `None` leaves a limit as it is.
pub type LimitsChange = ResourceFlags;

/// `current` with the given flags applied.
fn apply(change: &LimitsChange, current: ResourceLimits) -> Result<ResourceLimits, ContainerError> {
    let given = change.limits()?;
    Ok(ResourceLimits {
        nano_cpus: if change.cpus.is_some() {
            given.nano_cpus
        } else {
            current.nano_cpus
        },
        memory_bytes: if change.memory_bytes.is_some() {
            given.memory_bytes
        } else {
            current.memory_bytes
        },
        pids_limit: if change.pids_limit.is_some() {
            given.pids_limit
        } else {
            current.pids_limit
        },
    })
}

impl Container {
    /// Applies `change` to the container; returns the limits it has now.
    pub async fn update(&mut self, change: LimitsChange) -> Result<ResourceLimits, ContainerError> {
        self.refresh()?;
        let store = self.rt.store();
        let record = &self.record;
        let limits = apply(&change, record.config.resources)?;
        if record.status != Status::Running {
            store.update(&record.id, |r| {
                r.config.resources = limits;
                r.config.vm.cpus = limits.vm_cpus();
                r.config.vm.memory_mib = limits.vm_memory_mib();
            })?;
            return Ok(limits);
        }
        let vm = &record.config.vm;
        let too_small = |what: String| ContainerError::VmTooSmall {
            name: record.name.clone(),
            what,
            have: format!("{} vCPUs, {} MiB", vm.cpus, vm.memory_mib),
        };
        if limits.vm_cpus() > vm.cpus {
            return Err(too_small(format!(
                "--cpus {}",
                limits.nano_cpus.unwrap_or(0) as f64 / 1e9
            )));
        }
        if limits.memory_bytes.is_some() && limits.vm_memory_mib() > vm.memory_mib {
            return Err(too_small(format!(
                "a memory limit of {} MiB",
                limits.memory_bytes.unwrap_or(0).div_ceil(1 << 20)
            )));
        }
        let stream = client::connect(store, &record.id).await?;
        match client::request(stream, &record.id, Request::Update { limits }).await? {
            Frame::Ok => {}
            _ => return Err(client::ClientError::Closed(record.id.clone()).into()),
        }
        store.update(&record.id, |r| r.config.resources = limits)?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_flags_replace_only_their_limit() {
        let current = ResourceLimits::from_flags(Some(2.0), Some(256 << 20), Some(50)).unwrap();
        let change = LimitsChange {
            cpus: Some(0.5),
            pids_limit: Some(-1),
            ..Default::default()
        };
        let new = apply(&change, current).unwrap();
        assert_eq!(new.nano_cpus, Some(500_000_000));
        assert_eq!(new.memory_bytes, Some(256 << 20));
        assert_eq!(new.pids_limit, None);
        let zero = LimitsChange {
            cpus: Some(0.0),
            ..Default::default()
        };
        assert!(apply(&zero, current).is_err());
    }
}
