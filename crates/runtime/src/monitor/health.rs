//! The monitor's health checks: while the main process runs, a task runs the container's
//! probe as an exec in the guest on docker's schedule and writes each result into the
//! record (`health`), where `list`, `inspect` and filters read it. What the results mean is
//! [`crate::health`]'s; this is moby's `daemon/health.go` `monitor` and `cmdProbe.run`:
//!
//! - the probe runs with the container's environment, user and working directory, without a
//!   terminal or stdin and without extra privileges; stdout and stderr are kept together;
//! - a probe still running at its timeout is killed and counts as a failure (exit -1,
//!   "Health check exceeded timeout (…)" with what it printed); one that cannot start counts
//!   as a failure with the error as its output;
//! - the checks stop while the VM is paused and when the process ends, and the status is then
//!   `unhealthy` (moby's `CloseMonitorChannel`); at `unpause` they go on, at a restart they
//!   start over from `starting` (set by the monitor's start).
//!
//! Only this task writes `health` while the container runs; the monitor's start and
//! [`Checker::stop`] write it around it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use super::Shared;
use crate::backend::{Booted, Guest};
use crate::health::{
    go_duration_string, limit_output, probe_command, Health, HealthResult, HealthStatus, Schedule,
    MAX_OUTPUT_LEN,
};
use crate::spec::{exec_spec, ProcessOptions, ProcessSpec};
use crate::state::{ContainerRecord, Store};

/// How long the kill of a probe past its timeout, and the wait for its end, may take.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The health checks of one run of a container; they stop on [`Checker::stop`] (or drop).
pub(super) struct Checker {
    task: Option<JoinHandle<()>>,
}

impl Checker {
    /// Starts the checks of the run of `record` in `booted`, if it has a probe to run.
    pub(super) fn start(
        store: &Store,
        shared: &Arc<Shared>,
        record: &ContainerRecord,
        booted: &Booted,
    ) -> Checker {
        let Some(config) = record.config.healthcheck.as_ref() else {
            return Checker { task: None };
        };
        let Some(argv) = probe_command(config) else {
            return Checker { task: None };
        };
        // docker's probe exec: the container's env, user and cwd; no tty, no stdin, and not
        // privileged (exec_spec keeps the container's own capabilities).
        let spec = match exec_spec(
            &record.config.process,
            argv,
            &ProcessOptions::default(),
            &|_| None,
        ) {
            Ok(s) => ProcessSpec {
                terminal: false,
                open_stdin: false,
                console_size: None,
                ..s
            },
            Err(e) => {
                tracing::warn!("health check of {} cannot run: {e}", record.name);
                return Checker { task: None };
            }
        };
        let task = tokio::spawn(run_checks(
            store.clone(),
            record.id.clone(),
            shared.clone(),
            booted.guest.clone(),
            spec,
            Schedule::of(config),
        ));
        Checker { task: Some(task) }
    }

    /// Stops the checks (a probe under way is abandoned: its VM goes down) and records the
    /// status docker gives a container whose checks stopped: `unhealthy`.
    pub(super) async fn stop(mut self, store: &Store, id: &str) {
        let Some(task) = self.task.take() else {
            return;
        };
        task.abort();
        let _ = task.await;
        let saved = store.update(id, |r| {
            if let Some(h) = &mut r.health {
                h.stopped();
            }
        });
        if let Err(e) = saved {
            tracing::warn!("record the end of the health checks: {e}");
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The checks' loop, for as long as the run lasts.
async fn run_checks(
    store: Store,
    id: String,
    shared: Arc<Shared>,
    guest: Arc<dyn Guest>,
    spec: ProcessSpec,
    schedule: Schedule,
) {
    let record = match store.load(&id) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("health checks: {e}");
            return;
        }
    };
    let started: DateTime<Utc> = record.started.unwrap_or_else(Utc::now);
    let Some(mut health) = record.health else {
        return;
    };
    let since_start = |t: DateTime<Utc>| (t - started).to_std().unwrap_or_default();
    let mut seq = 0u64;
    loop {
        let delay = schedule.next_delay(since_start(Utc::now()), health.status);
        tokio::time::sleep(delay).await;
        if shared.freezer.is_paused() {
            // A frozen guest runs nothing: docker stops the checks of a paused container
            // and calls it unhealthy until a probe passes again after `unpause`.
            if health.status != HealthStatus::Unhealthy {
                health.stopped();
                save(&store, &id, &health);
            }
            continue;
        }
        seq += 1;
        let start = Utc::now();
        let (exit_code, output) =
            probe(&*guest, &format!("health-{seq}"), &spec, schedule.timeout).await;
        if shared.freezer.is_paused() {
            // The freeze cut this probe short: its result says nothing of the container.
            continue;
        }
        let result = HealthResult {
            start,
            end: Utc::now(),
            exit_code,
            output,
        };
        tracing::debug!("health check of {id}: exit {exit_code}");
        let before = health.status;
        health.record(result, since_start(start), &schedule);
        save(&store, &id, &health);
        if health.status != before {
            shared.event(&format!("health_status: {}", health.status), &[]);
        }
    }
}

fn save(store: &Store, id: &str, health: &Health) {
    if let Err(e) = store.update(id, |r| r.health = Some(health.clone())) {
        tracing::warn!("record a health check: {e}");
    }
}

/// Runs one probe as exec `id`: its exit code and output, or -1 and why when it could not
/// run or ran past `timeout` (then it is killed), as moby's `cmdProbe.run`.
async fn probe(
    guest: &dyn Guest,
    id: &str,
    spec: &ProcessSpec,
    timeout: Duration,
) -> (i32, String) {
    let mut out = match guest.spawn(id, spec).await {
        Ok(o) => o,
        Err(e) => return (-1, crate::error_line(&e)),
    };
    let mut buf: Vec<u8> = Vec::new();
    // One byte past the limit is enough to know the output was cut.
    let mut keep = |chunk: &[u8]| {
        let room = (MAX_OUTPUT_LEN + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..room.min(chunk.len())]);
    };
    let ran = tokio::time::timeout(timeout, async {
        let (mut o, mut e) = (true, true);
        while o || e {
            tokio::select! {
                x = out.stdout.recv(), if o => match x {
                    Some(b) => keep(&b),
                    None => o = false,
                },
                x = out.stderr.recv(), if e => match x {
                    Some(b) => keep(&b),
                    None => e = false,
                },
            }
        }
        guest.wait(id).await
    })
    .await;
    let result = match ran {
        Ok(Ok(exit)) => (exit.code(), limit_output(&buf)),
        Ok(Err(e)) => (-1, crate::error_line(&e)),
        Err(_) => {
            let _ = tokio::time::timeout(KILL_WAIT, guest.signal(id, libc::SIGKILL)).await;
            let _ = tokio::time::timeout(KILL_WAIT, guest.wait(id)).await;
            let printed = limit_output(&buf);
            let limit = go_duration_string(timeout);
            let message = if printed.is_empty() {
                format!("Health check exceeded timeout ({limit})")
            } else {
                format!("Health check exceeded timeout ({limit}): {printed}")
            };
            (-1, message)
        }
    };
    if let Err(e) = guest.release(id).await {
        tracing::debug!("release health check {id}: {e}");
    }
    result
}
