//! `delete`: remove a container and everything it owns on disk.

use std::time::Duration;

use super::ContainerError;
use crate::state::{ContainerRecord, Status, Store};

/// Deletes a container; a running one only with `force` (it is killed first).
pub async fn delete(
    store: &Store,
    record: ContainerRecord,
    force: bool,
) -> Result<(), ContainerError> {
    let record = store.reconcile(record)?;
    if record.status == Status::Running || record.monitor_pid.is_some() {
        if !force {
            return Err(ContainerError::WrongState {
                op: "delete",
                name: record.name,
                status: Status::Running,
                hint: "; stop it first or use --force",
            });
        }
        super::stop(store, record.clone(), Duration::ZERO).await?;
        crate::client::wait_stopped(store, &record.id, Duration::from_secs(30)).await?;
    }
    crate::monitor::network::release(store, &record);
    store.remove(&record.id)?;
    crate::volume::remove_anonymous(store.root(), &record.config.mounts);
    Ok(())
}
