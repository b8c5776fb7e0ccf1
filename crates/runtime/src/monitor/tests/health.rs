//! Health checks in the monitor, with the fake VM and guest of `tests.rs`: probes run as
//! execs on the schedule, their results move the status and fill the log (five kept), a probe
//! past its timeout is killed, a stop leaves the container unhealthy, and an unhealthy
//! container is not restarted.

use std::sync::atomic::Ordering;

use oci::spec::HealthConfig;

use super::*;
use crate::health::HealthStatus;
use crate::restart::RestartPolicy;

const MS: i64 = 1_000_000;

impl Fixture {
    /// A container running `args` whose health check runs `test` (a `CMD` of the fake guest).
    fn create_checked(&self, args: &[&str], check: HealthConfig, policy: RestartPolicy) -> String {
        let id = self.create_full(args, false, false, ResourceLimits::default(), policy);
        self.store
            .update(&id, |r| r.config.healthcheck = Some(check))
            .unwrap();
        id
    }

    /// Waits until the container's health satisfies `ok`.
    async fn health_until(
        &self,
        id: &str,
        ok: impl Fn(&crate::health::Health) -> bool,
    ) -> crate::health::Health {
        for _ in 0..500 {
            if let Some(h) = self.store.load(id).unwrap().health {
                if ok(&h) {
                    return h;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{id}: health never got there: {:?}",
            self.store.load(id).unwrap().health
        );
    }

    async fn stop(&self, id: &str) {
        let stop = Request::Stop {
            timeout_secs: 5,
            signal: None,
            restart: false,
        };
        let _ = client::request(self.connect(id).await, id, stop).await;
    }
}

fn cmd(args: &[&str], interval_ms: i64, retries: i64) -> HealthConfig {
    HealthConfig {
        test: std::iter::once("CMD")
            .chain(args.iter().copied())
            .map(String::from)
            .collect(),
        interval: interval_ms * MS,
        retries,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_check_flips_from_unhealthy_to_healthy_and_keeps_five_results() {
    let f = fixture();
    let flag = f._tmp.path().join("ok");
    let flag_s = flag.to_str().unwrap();
    let id = f.create_checked(
        &["sleep"],
        cmd(&["exists", flag_s], 20, 2),
        RestartPolicy::No,
    );
    let mon = f.spawn(&id, FakeBackend::default(), false);

    // Two failures in a row (retries 2): unhealthy, with the probe's output kept.
    let h = f
        .health_until(&id, |h| h.status == HealthStatus::Unhealthy)
        .await;
    assert!(h.failing_streak >= 2, "{h:?}");
    assert_eq!(h.log[0].exit_code, 1);
    assert_eq!(h.log[0].output, format!("no {flag_s}\n"));
    assert!(h.log[0].start <= h.log[0].end);

    // The file appears: the next probe passes.
    std::fs::write(&flag, b"").unwrap();
    let h = f
        .health_until(&id, |h| h.status == HealthStatus::Healthy)
        .await;
    assert_eq!(h.failing_streak, 0);
    assert_eq!(h.log.last().unwrap().exit_code, 0);
    // More probes: the last five are kept.
    let h = f
        .health_until(&id, |h| {
            h.log.len() == 5 && h.log.iter().all(|r| r.exit_code == 0)
        })
        .await;
    assert_eq!(h.status, HealthStatus::Healthy);

    // What `list` filters on and `inspect` shows, docker-shaped.
    let rec = f.store.load(&id).unwrap();
    let doc = crate::docker::ContainerJson::new(&rec, &[], Path::new("/log"), &|_| {
        std::path::PathBuf::new()
    });
    let v = serde_json::to_value(doc).unwrap();
    assert_eq!(v["State"]["Health"]["Status"], "healthy");
    assert_eq!(v["State"]["Health"]["Log"].as_array().unwrap().len(), 5);
    assert_eq!(v["Config"]["Healthcheck"]["Test"][1], "exists");
    assert_eq!(v["Config"]["Healthcheck"]["Retries"], 2);

    // A stop ends the checks: docker then says unhealthy, and keeps the log.
    f.stop(&id).await;
    assert_eq!(mon.await.unwrap(), 143);
    let h = f.store.load(&id).unwrap().health.unwrap();
    assert_eq!((h.status, h.log.len()), (HealthStatus::Unhealthy, 5));
}

#[tokio::test]
async fn a_probe_past_its_timeout_is_killed_and_counts_as_failed() {
    let f = fixture();
    let check = HealthConfig {
        timeout: 50 * MS,
        ..cmd(&["sleep"], 20, 1)
    };
    let id = f.create_checked(&["sleep"], check, RestartPolicy::No);
    let backend = FakeBackend::default();
    let released = backend.released.clone();
    let mon = f.spawn(&id, backend, false);
    let h = f
        .health_until(&id, |h| h.status == HealthStatus::Unhealthy)
        .await;
    assert_eq!(h.log[0].exit_code, -1);
    assert_eq!(h.log[0].output, "Health check exceeded timeout (50ms)");
    // The killed probe was collected and released in the guest.
    assert!(released.lock().unwrap().contains(&"health-1".to_string()));
    f.stop(&id).await;
    mon.await.unwrap();
}

#[tokio::test]
async fn an_unhealthy_container_is_not_restarted_and_a_restart_starts_over() {
    let f = fixture();
    let id = f.create_checked(
        &["sleep"],
        cmd(&["exit", "1"], 20, 1),
        RestartPolicy::Always,
    );
    let backend = FakeBackend::default();
    let (boots, crash) = (backend.boots.clone(), backend.crash.clone());
    let mon = f.spawn(&id, backend, false);
    f.health_until(&id, |h| {
        h.status == HealthStatus::Unhealthy && h.log.len() >= 3
    })
    .await;
    // docker's restart policies look at exits only.
    assert_eq!(boots.load(Ordering::SeqCst), 1);
    assert_eq!(f.store.load(&id).unwrap().status, Status::Running);

    // The VM dies: the policy restarts it, and the checks start over from `starting`.
    crash.notify_one();
    let mut rec = f.store.load(&id).unwrap();
    for _ in 0..500 {
        if rec.restart_count == 1 && rec.status == Status::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        rec = f.store.load(&id).unwrap();
    }
    assert_eq!((rec.restart_count, rec.status), (1, Status::Running));
    let h = rec.health.unwrap();
    assert!(
        h.status == HealthStatus::Starting || h.failing_streak <= 1,
        "{h:?}"
    );
    assert!(h.log.len() >= 3, "the log is kept across runs: {h:?}");
    f.stop(&id).await;
    mon.await.unwrap();
}

#[tokio::test]
async fn no_check_and_none_leave_no_health() {
    let f = fixture();
    let id = f.create_checked(
        &["exit", "0"],
        HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        },
        RestartPolicy::No,
    );
    assert_eq!(
        f.spawn(&id, FakeBackend::default(), false).await.unwrap(),
        0
    );
    assert_eq!(f.store.load(&id).unwrap().health, None);
}
