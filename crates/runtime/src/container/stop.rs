//! `stop` and `kill`: ask the monitor to signal the main process.

use std::time::Duration;

use super::ContainerError;
use crate::client::{self, ClientError};
use crate::protocol::{ExitInfo, Frame, Request};
use crate::state::{ContainerRecord, Status, Store};

fn running(
    store: &Store,
    record: ContainerRecord,
    op: &'static str,
) -> Result<ContainerRecord, ContainerError> {
    let record = store.reconcile(record)?;
    if record.status != Status::Running {
        return Err(ContainerError::WrongState {
            op,
            name: record.name,
            status: record.status,
            hint: "",
        });
    }
    Ok(record)
}

/// SIGTERM, then SIGKILL after `timeout`, then VM shutdown; returns once the container is
/// down. Stopping a container that is not running is not an error (docker's behaviour).
pub async fn stop(
    store: &Store,
    record: ContainerRecord,
    timeout: Duration,
) -> Result<Option<ExitInfo>, ContainerError> {
    let record = store.reconcile(record)?;
    if record.status != Status::Running {
        return Ok(None);
    }
    let stream = client::connect(store, &record.id).await?;
    let frame = client::request(
        stream,
        &record.id,
        Request::Stop {
            timeout_secs: timeout.as_secs(),
        },
    )
    .await;
    // Wait for the monitor to finish its teardown (state written, sockets gone).
    let _ = client::wait_stopped(store, &record.id, timeout + Duration::from_secs(30)).await;
    match frame {
        Ok(Frame::Exit(info)) => Ok(Some(info)),
        // The monitor closing on us while stopping is the expected end too.
        Ok(_) | Err(ClientError::Closed(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to the main process.
pub async fn kill(
    store: &Store,
    record: ContainerRecord,
    signal: i32,
) -> Result<(), ContainerError> {
    let record = running(store, record, "kill")?;
    let stream = client::connect(store, &record.id).await?;
    client::request(stream, &record.id, Request::Kill { signal }).await?;
    Ok(())
}
