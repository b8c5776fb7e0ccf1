//! `update`: change a container's resource limits (`--cpus`, `-m`, `--pids-limit`). A running
//! container gets them at once in its guest cgroup, as long as they fit the VM it was booted
//! with (vCPUs and memory cannot grow under a running guest); a stopped one keeps them, and its
//! next start sizes the VM for them.

use super::ContainerError;
use crate::client;
use crate::protocol::{Frame, Request};
use crate::resources::ResourceLimits;
use crate::state::{ContainerRecord, Status, Store};

/// The flags given to `update`; `None` leaves a limit as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitsChange {
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `-m`, in bytes.
    pub memory_bytes: Option<u64>,
    /// `--pids-limit` (0 or negative: unlimited).
    pub pids_limit: Option<i64>,
}

impl LimitsChange {
    /// `current` with the given flags applied.
    fn apply(&self, current: ResourceLimits) -> Result<ResourceLimits, ContainerError> {
        let given = ResourceLimits::from_flags(self.cpus, self.memory_bytes, self.pids_limit)?;
        Ok(ResourceLimits {
            nano_cpus: if self.cpus.is_some() {
                given.nano_cpus
            } else {
                current.nano_cpus
            },
            memory_bytes: if self.memory_bytes.is_some() {
                given.memory_bytes
            } else {
                current.memory_bytes
            },
            pids_limit: if self.pids_limit.is_some() {
                given.pids_limit
            } else {
                current.pids_limit
            },
        })
    }
}

/// Applies `change` to the container; returns the limits it has now.
pub async fn update(
    store: &Store,
    record: ContainerRecord,
    change: LimitsChange,
) -> Result<ResourceLimits, ContainerError> {
    let record = store.reconcile(record)?;
    let limits = change.apply(record.config.resources)?;
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
        let new = change.apply(current).unwrap();
        assert_eq!(new.nano_cpus, Some(500_000_000));
        assert_eq!(new.memory_bytes, Some(256 << 20));
        assert_eq!(new.pids_limit, None);
        assert!(LimitsChange {
            cpus: Some(0.0),
            ..Default::default()
        }
        .apply(current)
        .is_err());
    }
}
