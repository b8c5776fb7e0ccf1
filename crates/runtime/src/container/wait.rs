//! `wait`: block until a container stops and give its exit code, with the Engine API's
//! conditions (`POST /containers/{id}/wait?condition=`).
//!
//! A running container is waited for through its monitor ([`Request::Wait`]), which answers
//! with the exit it records, so even an `--rm` container, whose record goes with it, has its
//! code. Otherwise the record is polled: cheap (one small file) and it sees a start by any
//! other process.

use std::str::FromStr;
use std::time::Duration;

use super::{Container, ContainerError};
use crate::client;
use crate::protocol::{Frame, Request};
use crate::state::{StateError, Status};

/// How often the record is read while waiting for a change.
const POLL: Duration = Duration::from_millis(100);

/// What `wait` waits for (the Engine API's `condition`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WaitCondition {
    /// Until it does not run (at once for a created or exited container).
    #[default]
    NotRunning,
    /// Until its next exit (a stopped container must first be started by someone).
    NextExit,
    /// Until it is deleted.
    Removed,
}

impl FromStr for WaitCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            // docker's wording (moby api/server/router/container).
            _ => Err(format!(
                "invalid condition: \"{s}\" (use not-running, next-exit or removed)"
            )),
        }
    }
}

impl Container {
    /// Waits for `condition` and returns the exit code of the container's last run (0 for
    /// one that never ran, as docker).
    pub async fn wait(&mut self, condition: WaitCondition) -> Result<i32, ContainerError> {
        self.refresh()?;
        let mut code = self.record.exit_code.unwrap_or(0);
        let running = self.status() == Status::Running || self.record.monitor_pid.is_some();
        if condition == WaitCondition::NextExit && !running {
            self.until_started().await?;
        }
        if running || condition == WaitCondition::NextExit {
            code = self.until_ended().await?;
        }
        if condition == WaitCondition::Removed {
            // Whether the exit of the run in progress was already taken from its monitor.
            let mut ended = running;
            loop {
                let store = self.rt.store();
                match store.load(self.id()) {
                    Err(StateError::NotFound(_)) => break,
                    Err(e) => return Err(e.into()),
                    Ok(r) => {
                        let r = store.reconcile(r)?;
                        if !ended && (r.status == Status::Running || r.monitor_pid.is_some()) {
                            // Started after this wait began (docker's `run --rm` waits before
                            // it starts): the monitor has the exit code, which an `--rm`
                            // record takes with it when the monitor removes it.
                            self.record = r;
                            code = self.until_ended().await?;
                            ended = true;
                            continue;
                        }
                        if !r.status.is_up() && r.monitor_pid.is_none() {
                            ended = false;
                            code = r.exit_code.unwrap_or(code);
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(code)
    }

    /// Polls until a monitor owns the container (someone started it).
    async fn until_started(&mut self) -> Result<(), ContainerError> {
        loop {
            self.refresh()?;
            if self.status() == Status::Running || self.record.monitor_pid.is_some() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Until the running container's main process has ended: the monitor's answer, or the
    /// record's once the monitor is gone.
    async fn until_ended(&mut self) -> Result<i32, ContainerError> {
        let store = self.rt.store();
        loop {
            if let Ok(stream) = client::connect(store, self.id()).await {
                if let Ok(Frame::Exit(info)) =
                    client::request(stream, self.id(), Request::Wait).await
                {
                    return Ok(info.code);
                }
            }
            // No monitor (yet, or any more): the record says how it ended, unless a monitor
            // is still starting or tearing down.
            match store.load(self.id()) {
                Ok(r) => {
                    let r = store.reconcile(r)?;
                    if r.status != Status::Running && r.monitor_pid.is_none() {
                        return Ok(r.exit_code.unwrap_or(0));
                    }
                }
                // Removed (`--rm`) before its exit was seen: docker answers with the code it
                // had; here it is lost with the record.
                Err(StateError::NotFound(_)) => return Ok(self.record.exit_code.unwrap_or(0)),
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
