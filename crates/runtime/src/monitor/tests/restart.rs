//! Restart policies in the monitor, with the fake VM and guest of `tests.rs`: the process's
//! exit and the VM's death start a new VM under the same record, `on-failure:N` stops after N
//! restarts, the delays grow, and a user's stop or kill ends the restarts.

use std::sync::atomic::Ordering;

use super::*;
use crate::restart::RestartPolicy;

impl Fixture {
    fn create_with(&self, args: &[&str], policy: RestartPolicy) -> String {
        self.create_full(args, false, false, ResourceLimits::default(), policy)
    }

    /// Waits until the record satisfies `ok`.
    async fn record_until(
        &self,
        id: &str,
        ok: impl Fn(&crate::state::ContainerRecord) -> bool,
    ) -> crate::state::ContainerRecord {
        for _ in 0..500 {
            let r = self.store.load(id).unwrap();
            if ok(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id} never got there: {:?}", self.store.load(id).unwrap());
    }

    async fn request(&self, id: &str, req: Request) -> Frame {
        client::request(self.connect(id).await, id, req)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn on_failure_restarts_n_times_then_stays_exited() {
    let f = fixture();
    let id = f.create_with(&["exit", "3"], RestartPolicy::OnFailure { max_retries: 2 });
    let backend = FakeBackend::default();
    let boots = backend.boots.clone();
    let t = std::time::Instant::now();
    let mon = f.spawn(&id, backend, false);
    assert_eq!(mon.await.unwrap(), 3);
    // Three runs: the first and two restarts, after 100 ms and 200 ms.
    assert_eq!(boots.load(Ordering::SeqCst), 3);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let rec = f.store.load(&id).unwrap();
    assert_eq!(
        (
            rec.status,
            rec.exit_code,
            rec.restart_count,
            rec.monitor_pid
        ),
        (Status::Exited, Some(3), 2, None)
    );
    assert!(!rec.stopped_by_user);
    assert!(!f.store.dir_of(&id).join("monitor.sock").exists());
}

#[tokio::test]
async fn a_clean_exit_is_no_failure_and_always_restarts_anyway() {
    let f = fixture();
    let id = f.create_with(&["exit", "0"], RestartPolicy::OnFailure { max_retries: 0 });
    let backend = FakeBackend::default();
    let boots = backend.boots.clone();
    assert_eq!(f.spawn(&id, backend, false).await.unwrap(), 0);
    assert_eq!(boots.load(Ordering::SeqCst), 1);
    assert_eq!(f.store.load(&id).unwrap().restart_count, 0);

    // `always` restarts a clean exit too; the delays double (100, 200, 400 ms …).
    let id = f.create_with(&["exit", "0"], RestartPolicy::Always);
    let backend = FakeBackend::default();
    let boots = backend.boots.clone();
    let mon = f.spawn(&id, backend, false);
    let t = std::time::Instant::now();
    let rec = f.record_until(&id, |r| r.restart_count >= 4).await;
    assert!(
        t.elapsed() >= Duration::from_millis(100 + 200 + 400),
        "{:?}",
        t.elapsed()
    );
    assert!(rec.status.is_up());
    let rec = f
        .record_until(&id, |r| r.status == Status::Restarting)
        .await;
    assert_eq!(rec.exit_code, Some(0));
    // kill of a restarting container ends the restarts (docker's ExitOnNext).
    assert_eq!(f.request(&id, Request::Kill { signal: 9 }).await, Frame::Ok);
    assert_eq!(mon.await.unwrap(), 0);
    let rec = f.store.load(&id).unwrap();
    assert_eq!(rec.status, Status::Exited);
    assert!(rec.stopped_by_user);
    // The restart the kill cancelled was counted, as docker counts it when it decides.
    let n = boots.load(Ordering::SeqCst);
    assert_eq!(n as u32, rec.restart_count, "{rec:?}");
}

#[tokio::test]
async fn a_dead_vm_is_booted_again_and_a_stop_ends_it_for_good() {
    let f = fixture();
    let id = f.create_with(&["sleep"], RestartPolicy::UnlessStopped);
    let backend = FakeBackend::default();
    let (crash, boots) = (backend.crash.clone(), backend.boots.clone());
    let mon = f.spawn(&id, backend, false);
    f.request(&id, Request::WaitStarted).await;
    let first = f.store.load(&id).unwrap();
    crash.notify_one();
    let rec = f
        .record_until(&id, |r| r.status == Status::Running && r.restart_count == 1)
        .await;
    assert_eq!(boots.load(Ordering::SeqCst), 2);
    assert_ne!(rec.started, first.started, "a new run");
    assert_eq!((rec.exit_code, rec.exit_reason), (None, None));
    // The same monitor serves the new run.
    assert_eq!(rec.monitor_pid, first.monitor_pid);
    let (r, out) = f.exec(&id, &["echo", "again"]).await;
    assert_eq!((r.unwrap().code, out.as_slice()), (0, &b"again\n"[..]));

    let stop = Request::Stop {
        timeout_secs: 5,
        signal: None,
        restart: false,
    };
    match f.request(&id, stop).await {
        Frame::Exit(info) => assert_eq!(info.code, 143),
        other => panic!("{other:?}"),
    }
    assert_eq!(mon.await.unwrap(), 143);
    assert_eq!(boots.load(Ordering::SeqCst), 2, "no restart after a stop");
    let rec = f.store.load(&id).unwrap();
    assert_eq!(
        (rec.status, rec.exit_code, rec.restart_count),
        (Status::Exited, Some(143), 1)
    );
    assert!(rec.stopped_by_user);
    // unless-stopped: a user's stop keeps it down after a reboot too.
    assert!(!crate::restart::restartable(&rec));
}

#[tokio::test]
async fn a_kill_ends_the_restarts_and_a_policy_set_while_running_applies() {
    let f = fixture();
    // Created without a policy; `update --restart always` while it runs.
    let id = f.create_with(&["sleep"], RestartPolicy::No);
    let backend = FakeBackend::default();
    let (crash, boots) = (backend.crash.clone(), backend.boots.clone());
    let mon = f.spawn(&id, backend, false);
    f.request(&id, Request::WaitStarted).await;
    f.store
        .update(&id, |r| r.config.restart = RestartPolicy::Always)
        .unwrap();
    crash.notify_one();
    f.record_until(&id, |r| r.status == Status::Running && r.restart_count == 1)
        .await;
    // A SIGKILL from `kill` is a user's: no restart (docker's kill cancels the policy).
    assert_eq!(f.request(&id, Request::Kill { signal: 9 }).await, Frame::Ok);
    assert_eq!(mon.await.unwrap(), 137);
    assert_eq!(boots.load(Ordering::SeqCst), 2);
    let rec = f.store.load(&id).unwrap();
    assert_eq!((rec.status, rec.restart_count), (Status::Exited, 1));
    // `always` comes back after a reboot even when stopped by its user, as docker's.
    assert!(crate::restart::restartable(&rec));
}

#[tokio::test]
async fn an_attached_client_sees_the_first_run_end() {
    let f = fixture();
    let id = f.create_with(&["exit", "5"], RestartPolicy::OnFailure { max_retries: 1 });
    let mon = f.spawn(&id, FakeBackend::default(), true);
    let (r, _, err) = f.attach(&id, None).await;
    assert_eq!(r.unwrap().code, 5);
    assert_eq!(err, b"bye\n");
    assert_eq!(mon.await.unwrap(), 5);
    let rec = f.store.load(&id).unwrap();
    assert_eq!((rec.restart_count, rec.exit_code), (1, Some(5)));
    // on-failure:1 has made its restart: nothing to bring back after a reboot.
    assert!(!crate::restart::restartable(&rec));
}

#[tokio::test]
async fn a_run_that_cannot_start_is_not_restarted() {
    let f = fixture();
    let id = f.create_with(&["missing"], RestartPolicy::Always);
    let backend = FakeBackend::default();
    let boots = backend.boots.clone();
    assert_eq!(f.spawn(&id, backend, false).await.unwrap(), 127);
    assert_eq!(boots.load(Ordering::SeqCst), 1);
    let rec = f.store.load(&id).unwrap();
    assert_eq!((rec.status, rec.restart_count), (Status::Created, 0));
    // Never started: nothing for a reboot to bring back either.
    assert!(!crate::restart::restartable(&rec));
}
