//! `pause` and `unpause` in the monitor: the whole VM is frozen (QMP `stop`) and thawed
//! (`cont`), which freezes every process of the container, as docker's cgroup freezer does,
//! and the guest agent with them.
//!
//! What docker does with a paused container, and how it maps onto a frozen VM:
//! - `kill` (moby `daemon/kill.go`, `killWithSignal`): SIGKILL, the container's stop signal,
//!   or any signal of a container without an explicit stop signal, unpauses it after the
//!   signal was sent; another signal stays pending in the frozen cgroup and arrives at
//!   `unpause`. A frozen guest cannot take a signal, so here the VM is thawed first and the
//!   signal sent then, and a pending signal is kept by the monitor and sent at `unpause`.
//! - `stop` ends with SIGKILL: it thaws first (also for the monitor's own SIGTERM).
//! - `exec` is refused ("Container NAME is paused, unpause the container before exec"), as
//!   is every other request that needs the agent (copies, `update`, `top`); `stats` answers
//!   with the reading taken just before the freeze (no CPU used since, as docker shows).
//! - The record says `paused` while frozen (docker's `State.Paused`, status `paused`); the
//!   monitor clears it when the container ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Fault, MAIN};
use crate::backend::{Guest, VmControl};
use crate::state::{ContainerRecord, Store};
use crate::stats::Sample;

/// How long the freeze waits for the last statistics reading before it freezes without.
const SAMPLE_WAIT: Duration = Duration::from_secs(2);

/// The pause state of one container's VM.
pub(crate) struct Freezer {
    vm: Mutex<Option<Arc<dyn VmControl>>>,
    /// Serialises pause, unpause and the signals that depend on them.
    state: tokio::sync::Mutex<Frozen>,
    /// Read by sessions that must not reach a frozen guest.
    paused: AtomicBool,
    store: Store,
    id: String,
    name: String,
    /// The container's stop signal, when it has one of its own (docker's `Config.StopSignal`).
    stop_signal: Option<i32>,
}

#[derive(Default)]
struct Frozen {
    /// Signals `kill` sent while frozen that do not unpause: sent at `unpause`.
    pending: Vec<i32>,
    /// The statistics reading taken just before the freeze.
    sample: Option<Sample>,
}

impl Freezer {
    /// The freezer of the container of `record`; it has no VM until [`Freezer::set_vm`].
    pub(crate) fn new(store: &Store, record: &ContainerRecord) -> Freezer {
        let stop_signal = record
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| crate::spec::parse_signal(s).ok());
        Freezer {
            vm: Mutex::new(None),
            state: tokio::sync::Mutex::new(Frozen::default()),
            paused: AtomicBool::new(false),
            store: store.clone(),
            id: record.id.clone(),
            name: record.name.clone(),
            stop_signal,
        }
    }

    /// The running VM's control (None: it cannot be paused).
    pub(crate) fn set_vm(&self, vm: Option<Arc<dyn VmControl>>) {
        if let Ok(mut v) = self.vm.lock() {
            *v = vm;
        }
    }

    /// Whether the VM is frozen.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// The reading taken before the freeze, while frozen.
    pub(crate) async fn frozen_sample(&self) -> Option<Sample> {
        let state = self.state.lock().await;
        self.is_paused().then(|| state.sample.clone()).flatten()
    }

    /// The refusal of `op` while frozen.
    pub(crate) fn refusal(&self, op: &'static str) -> Fault {
        Fault::Paused {
            name: self.name.clone(),
            op,
        }
    }

    fn control(&self) -> Result<Arc<dyn VmControl>, Fault> {
        self.vm
            .lock()
            .ok()
            .and_then(|v| v.clone())
            .ok_or(Fault::NotRunning { op: "pause" })
    }

    fn record(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        if let Err(e) = self.store.update(&self.id, |r| r.paused = paused) {
            tracing::warn!("record paused={paused}: {e}");
        }
    }

    /// Freezes the VM of the running container.
    pub(crate) async fn pause(&self, guest: &dyn Guest) -> Result<(), Fault> {
        let mut state = self.state.lock().await;
        if self.is_paused() {
            return Err(Fault::AlreadyPaused(self.name.clone()));
        }
        let vm = self.control()?;
        state.sample = match tokio::time::timeout(SAMPLE_WAIT, guest.stats()).await {
            Ok(Ok(s)) => Some(s),
            _ => None,
        };
        vm.pause().await.map_err(Fault::Freeze)?;
        self.record(true);
        Ok(())
    }

    /// Thaws the VM, then sends the signals that waited for it.
    pub(crate) async fn unpause(&self, guest: &dyn Guest) -> Result<(), Fault> {
        let mut state = self.state.lock().await;
        if !self.is_paused() {
            return Err(Fault::NotPaused(self.name.clone()));
        }
        self.thaw_locked(&mut state, guest).await
    }

    async fn thaw_locked(&self, state: &mut Frozen, guest: &dyn Guest) -> Result<(), Fault> {
        self.control()?.resume().await.map_err(Fault::Freeze)?;
        self.record(false);
        state.sample = None;
        for signal in std::mem::take(&mut state.pending) {
            if let Err(e) = guest.signal(MAIN, signal).await {
                tracing::warn!("send signal {signal} held while paused: {e}");
            }
        }
        Ok(())
    }

    /// Thaws the VM if it is frozen, for a stop (which must reach the guest). A failure is
    /// logged: the stop goes on and ends with SIGKILL and the VM's power-off or kill.
    pub(crate) async fn thaw(&self, guest: &dyn Guest) {
        let mut state = self.state.lock().await;
        if self.is_paused() {
            if let Err(e) = self.thaw_locked(&mut state, guest).await {
                tracing::warn!("thaw the VM for a stop: {}", crate::error_line(&e));
            }
        }
    }

    /// Before `kill` sends `signal`: whether it is held for `unpause` (true: do not send it
    /// now). A signal that unpauses in docker thaws the VM here first.
    pub(crate) async fn hold_signal(&self, guest: &dyn Guest, signal: i32) -> Result<bool, Fault> {
        let mut state = self.state.lock().await;
        if !self.is_paused() {
            return Ok(false);
        }
        if unpauses(self.stop_signal, signal) {
            self.thaw_locked(&mut state, guest).await?;
            return Ok(false);
        }
        state.pending.push(signal);
        Ok(true)
    }
}

/// Whether docker unpauses a paused container that is sent `signal` (moby
/// `daemon/kill.go`): with an explicit stop signal, only that one and SIGKILL; without, any.
fn unpauses(stop_signal: Option<i32>, signal: i32) -> bool {
    match stop_signal {
        Some(s) => signal == s || signal == libc::SIGKILL,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::unpauses;

    #[test]
    fn signals_that_unpause_follow_docker() {
        assert!(unpauses(None, libc::SIGUSR1));
        assert!(unpauses(Some(libc::SIGINT), libc::SIGINT));
        assert!(unpauses(Some(libc::SIGINT), libc::SIGKILL));
        assert!(!unpauses(Some(libc::SIGINT), libc::SIGUSR1));
    }
}
