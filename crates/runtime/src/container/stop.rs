//! `stop` and `kill`: ask the monitor to signal the main process.

use std::time::Duration;

use super::{Container, ContainerError, Verb};
use crate::client::{self, ClientError};
use crate::protocol::{ExitInfo, Frame, Request};

/// What `stop` (and `restart`) may override of the container's own way to stop: its stop
/// signal (`--stop-signal`, the image's, else SIGTERM) and its timeout (`--stop-timeout`,
/// else 10 s). Default: the container's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopOptions {
    /// The signal to send first (`stop -s`).
    pub signal: Option<i32>,
    /// How long to wait for the process after it before SIGKILL (`stop -t`).
    pub timeout: Option<Duration>,
}

/// How long a stop waits for a starting monitor to open its socket.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

impl Container {
    /// The stop signal, then SIGKILL after the timeout, then VM shutdown; returns once the
    /// container is down. Stopping a container that is not running is not an error (docker's
    /// behaviour).
    pub async fn stop(&mut self, opts: StopOptions) -> Result<Option<ExitInfo>, ContainerError> {
        self.stop_for(opts, false).await
    }

    /// [`Container::stop`]; with `restart`, an `--rm` container is kept for the start that
    /// follows.
    pub(super) async fn stop_for(
        &mut self,
        opts: StopOptions,
        restart: bool,
    ) -> Result<Option<ExitInfo>, ContainerError> {
        self.refresh()?;
        // A live monitor whose record still says created is starting the container (a `run
        // -d` or a shim's start killed half-way leaves one): it takes the stop too, at once
        // while it waits for its first attach, else as soon as the process is up. Taking
        // the record's word alone would leave that container running after a `stop`.
        let starting = self.record.monitor_pid;
        if !self.status().is_up() && starting.is_none() {
            return Ok(None);
        }
        let config = &self.record.config;
        let signal = opts.signal.unwrap_or_else(|| config.signal_to_stop());
        let timeout = opts.timeout.unwrap_or_else(|| config.grace_to_stop());
        let store = self.rt.store();
        let stream = match starting.filter(|_| !self.status().is_up()) {
            Some(pid) => client::connect_starting(store, self.id(), pid, CONNECT_WAIT).await?,
            None => client::connect(store, self.id()).await?,
        };
        let req = Request::Stop {
            timeout_secs: timeout.as_secs(),
            signal: Some(signal),
            restart,
        };
        let frame = client::request(stream, self.id(), req).await;
        // Wait for the monitor to finish its teardown (state written, sockets gone).
        let _ = client::wait_stopped(store, self.id(), timeout + Duration::from_secs(30)).await;
        match frame {
            Ok(Frame::Exit(info)) => Ok(Some(info)),
            // The monitor closing on us while stopping is the expected end too.
            Ok(_) | Err(ClientError::Closed(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `signal` to the main process.
    pub async fn kill(&mut self, signal: i32) -> Result<(), ContainerError> {
        let stream = self.connect(Verb::Kill).await?;
        client::request(stream, self.id(), Request::Kill { signal }).await?;
        Ok(())
    }

    /// Connects to the monitor of a running container for `verb` (refused in other states).
    pub async fn connect(&mut self, verb: Verb) -> Result<tokio::net::UnixStream, ContainerError> {
        self.refresh()?;
        self.check(verb)?;
        Ok(client::connect(self.rt.store(), self.id()).await?)
    }

    /// One reading of the running container's resource counters.
    pub async fn stats(&mut self) -> Result<crate::stats::Sample, ContainerError> {
        let stream = self.connect(Verb::Stats).await?;
        match client::request(stream, self.id(), Request::Stats).await? {
            Frame::Stats(s) => Ok(*s),
            _ => Err(ClientError::Closed(self.id().to_string()).into()),
        }
    }
}
