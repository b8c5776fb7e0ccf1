//! The monitor's side of restart policies: after each run (the main process ended, or its VM
//! died), whether to start the container again in a new VM, and the wait before it.
//!
//! A monitor lives for one start by a user, as moby's restart manager lives from one
//! `containerStart` with a reset to the next (`daemon/start.go`), so what decides lives here:
//!
//! - [`RunControl`]: what users asked of the container while this monitor owned it. A `stop`
//!   ends the restarts and marks the container stopped by its user; a `kill` marks it so and
//!   ends the restarts when its signal is SIGKILL or the container's stop signal (any signal
//!   when the container has none), as moby's `killWithSignal` (`daemon/kill.go`) calls
//!   `ExitOnNext` and sets `HasBeenManuallyStopped`. A SIGTERM to the monitor (the host
//!   shutting down, as moby's `daemonShutdown`) ends the restarts without counting as a
//!   user's stop.
//! - [`next_run`]: moby's `handleContainerExit` (`daemon/monitor.go`): the policy read again
//!   from state.json (so `update --restart` applies to a running container), the decision
//!   and the delay of [`crate::restart`], the record `restarting` with its count raised while
//!   the delay runs, and a `stop` or `kill` in that time ending it for good.
//!
//! A run that could not start (boot failure, missing command) is never restarted: moby's
//! restart that fails to start leaves the container stopped, and a first start that fails
//! never ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use super::{Phase, Shared, StopOrder};
use crate::protocol::ExitInfo;
use crate::restart::Backoff;
use crate::state::{Status, Store};

/// What users asked of the container during this monitor's life (see the module's text).
#[derive(Debug, Default)]
pub(crate) struct RunControl {
    /// The container's own stop signal, when it has one (docker's `Config.StopSignal`).
    stop_signal: Option<i32>,
    /// No more restarts (moby: the restart manager is cancelled).
    cancelled: AtomicBool,
    /// A user stopped or killed it (moby's `HasBeenManuallyStopped`).
    stopped_by_user: AtomicBool,
}

impl RunControl {
    /// For a container whose configured stop signal is `stop_signal`.
    pub(crate) fn new(stop_signal: Option<i32>) -> RunControl {
        RunControl {
            stop_signal,
            ..Default::default()
        }
    }

    /// A user's `stop` (or `restart`, `rm -f`): no more restarts.
    pub(crate) fn stop(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.stopped_by_user.store(true, Ordering::SeqCst);
    }

    /// A user's `kill` with `signal`; returns whether it ended the restarts.
    pub(crate) fn kill(&self, signal: i32) -> bool {
        self.stopped_by_user.store(true, Ordering::SeqCst);
        let ends = signal == libc::SIGKILL || self.stop_signal.is_none_or(|s| s == signal);
        if ends {
            self.cancelled.store(true, Ordering::SeqCst);
        }
        ends
    }

    /// The monitor was told to stop (SIGTERM: the host shuts down): no more restarts, and no
    /// user's stop either, so that `start --all-restartable` brings `unless-stopped`
    /// containers back after the reboot.
    pub(crate) fn shut_down(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether a user stopped or killed the container.
    pub(crate) fn stopped_by_user(&self) -> bool {
        self.stopped_by_user.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Listens for the monitor's SIGTERM for as long as the monitor runs (ended on drop), so
/// that a host shutdown ends the restarts whatever the monitor is doing when it comes: a
/// run's relay loop, which also stops the process then, or a teardown, when no other
/// listener would see it.
pub(super) struct ShutdownWatch(Option<tokio::task::JoinHandle<()>>);

impl ShutdownWatch {
    /// Starts listening; marks `shared`'s runs as ended by a shutdown at the first SIGTERM.
    pub(super) fn start(shared: std::sync::Arc<Shared>) -> ShutdownWatch {
        let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match sigterm {
            Ok(mut s) => ShutdownWatch(Some(tokio::spawn(async move {
                if s.recv().await.is_some() {
                    shared.control.shut_down();
                }
            }))),
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                ShutdownWatch(None)
            }
        }
    }
}

impl Drop for ShutdownWatch {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// How one run ended, its VM and networking torn down.
#[derive(Debug, Clone)]
pub(super) struct Ended {
    /// Its exit.
    pub(super) exit: ExitInfo,
    /// Whether its main process ever ran.
    pub(super) started: bool,
    /// Whether the guest's OOM killer killed a process of the container.
    pub(super) oom_killed: bool,
}

/// After a run of container `id` ended: whether the monitor starts it again. When it does,
/// the record says `restarting` (the run's exit, one more restart) and the delay has passed;
/// when a `stop` or `kill` (or the monitor's SIGTERM) came during the delay, it does not.
pub(super) async fn next_run(
    store: &Store,
    id: &str,
    shared: &Shared,
    stop_rx: &mut mpsc::UnboundedReceiver<StopOrder>,
    ended: &Ended,
    backoff: &mut Backoff,
) -> bool {
    if !ended.started || shared.control.cancelled() {
        return false;
    }
    let record = match store.load(id) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("read the restart policy: {e}");
            return false;
        }
    };
    let ran_for = record
        .started
        .and_then(|t| (Utc::now() - t).to_std().ok())
        .unwrap_or_default();
    let delay = backoff.next(ran_for);
    let policy = record.config.restart;
    if !policy.should_restart(
        ended.exit.code,
        shared.control.stopped_by_user(),
        record.restart_count,
    ) {
        return false;
    }
    let saved = store.update(id, |r| {
        r.status = Status::Restarting;
        r.exit_code = Some(ended.exit.code);
        r.exit_reason = ended.exit.reason.clone();
        r.oom_killed = ended.oom_killed;
        r.finished = Some(Utc::now());
        r.restart_count += 1;
        r.vm_pid = None;
        r.ports.clear();
    });
    if let Err(e) = saved {
        tracing::error!("record the restart: {e}");
        return false;
    }
    tracing::info!(
        "restarting container {id} ({policy}, exit {}) in {delay:?}",
        ended.exit.code
    );
    shared
        .phase
        .send_replace(Phase::Restarting(ended.exit.clone()));
    wait(shared, stop_rx, delay).await
}

/// The delay before a restart: true once it passed, false when a stop, a kill that ends the
/// restarts or the monitor's SIGTERM came first.
async fn wait(
    shared: &Shared,
    stop_rx: &mut mpsc::UnboundedReceiver<StopOrder>,
    delay: Duration,
) -> bool {
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::time::sleep(delay) => !shared.control.cancelled(),
        // Every order sent while restarting comes from a stop or a kill that ended them.
        Some(_) = stop_rx.recv() => false,
        Some(_) = async { match sigterm.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
            shared.control.shut_down();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunControl;

    #[test]
    fn kills_end_the_restarts_as_docker_kills_do() {
        // No stop signal of its own: any kill ends them.
        let c = RunControl::new(None);
        assert!(c.kill(libc::SIGHUP));
        assert!(c.cancelled() && c.stopped_by_user());
        // With one: SIGKILL and that signal do, others only mark the container.
        let c = RunControl::new(Some(libc::SIGINT));
        assert!(!c.kill(libc::SIGUSR1));
        assert!(!c.cancelled() && c.stopped_by_user());
        assert!(c.kill(libc::SIGINT));
        let c = RunControl::new(Some(libc::SIGINT));
        assert!(c.kill(libc::SIGKILL) && c.cancelled());
        // A host shutdown ends them without being a user's stop.
        let c = RunControl::new(None);
        c.shut_down();
        assert!(c.cancelled() && !c.stopped_by_user());
        c.stop();
        assert!(c.stopped_by_user());
    }
}
