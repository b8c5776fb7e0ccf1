//! The monitor driven end to end over its real socket, with a fake VM and a fake guest whose
//! processes behave by their argv[0]:
//! `echo ARGS…`, `exit N` (writes "bye" to stderr), `missing` (127), `noexec` (126),
//! `cat` (stdin to stdout), `sleep` (until signalled), `stubborn` (ignores SIGTERM), `yes`
//! (output until signalled), `sink` (exit 0 if stdin was `good tar`, else 1 and a reason),
//! `oom` (counted as an OOM kill, then killed by SIGKILL), `exists PATH` (0 if the host has
//! PATH, else 1 and "no PATH").
//! Its copies run as such processes: copy-out of `/endless` is `yes`, of `/fail` is
//! `exit 1`, of anything else `echo tar-of PATH`; a copy-in is `sink`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch, Notify};

use super::*;
use crate::backend::{BootError, GuestError, GuestMount, GuestNetwork, ProcessOutput, Vm, VmExit};
use crate::client;
use crate::container::{create_record, CreateRequest};
use crate::protocol::Request;
use crate::resources::ResourceLimits;
use crate::spec::{ImageConfig, ProcessOptions, ProcessSpec};
use crate::state::VmOptions;
use crate::stats::Sample;

mod health;
mod restart;

struct Proc {
    stdin: Option<mpsc::UnboundedSender<Option<Bytes>>>,
    signals: mpsc::UnboundedSender<i32>,
    exit: watch::Receiver<Option<ProcessExit>>,
}

#[derive(Default)]
struct FakeGuest {
    procs: Mutex<HashMap<String, Proc>>,
    shut_down: Arc<Notify>,
    /// Ids of processes released (deleted in the guest), in order.
    released: Arc<Mutex<Vec<String>>>,
    /// The limits the container was created with.
    resources: Arc<Mutex<Option<ResourceLimits>>>,
    /// Processes killed by the "OOM killer".
    oom_kills: Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait]
impl Guest for FakeGuest {
    async fn configure(&self, _hostname: &str, _network: &GuestNetwork) -> Result<(), GuestError> {
        Ok(())
    }
    async fn mount_rootfs(&self, device: &str, _fstype: &str) -> Result<(), GuestError> {
        assert_eq!(device, "/dev/vda");
        Ok(())
    }
    async fn mount(&self, _mount: &GuestMount) -> Result<(), GuestError> {
        Ok(())
    }
    fn set_container_mounts(&self, _: Vec<GuestMount>, _readonly_rootfs: bool, _privileged: bool) {}
    fn set_container_resources(&self, limits: ResourceLimits) {
        *self.resources.lock().unwrap() = Some(limits);
    }
    async fn stats(&self) -> Result<Sample, GuestError> {
        Ok(Sample {
            cpu_usage_usec: 42,
            pids: self.procs.lock().unwrap().len() as u64,
            memory_limit: self.resources.lock().unwrap().and_then(|r| r.memory_bytes),
            oom_kills: self.oom_kills.load(std::sync::atomic::Ordering::SeqCst),
            ..Default::default()
        })
    }
    async fn spawn(&self, id: &str, spec: &ProcessSpec) -> Result<ProcessOutput, GuestError> {
        let args = spec.args.clone();
        match args[0].as_str() {
            "missing" => {
                return Err(GuestError::remote(
                    "create_process",
                    agent::ErrorCode::ExecutableNotFound,
                    "executable file not found: missing",
                ))
            }
            "noexec" => {
                return Err(GuestError::remote(
                    "create_process",
                    agent::ErrorCode::NotExecutable,
                    "permission denied: noexec",
                ))
            }
            _ => {}
        }
        let (out_tx, stdout) = mpsc::channel(16);
        let (err_tx, stderr) = mpsc::channel(16);
        let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Option<Bytes>>();
        let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<i32>();
        let (exit_tx, exit) = watch::channel(None);
        let oom_kills = self.oom_kills.clone();
        tokio::spawn(async move {
            let status = match args[0].as_str() {
                "echo" => {
                    let _ = out_tx
                        .send(Bytes::from(format!("{}\n", args[1..].join(" "))))
                        .await;
                    ProcessExit::Code(0)
                }
                "exit" => {
                    let _ = err_tx.send(Bytes::from_static(b"bye\n")).await;
                    ProcessExit::Code(args[1].parse().unwrap())
                }
                "cat" => {
                    while let Some(Some(b)) = in_rx.recv().await {
                        let _ = out_tx.send(b).await;
                    }
                    ProcessExit::Code(0)
                }
                "sleep" => ProcessExit::Signal(sig_rx.recv().await.unwrap_or(9)),
                "yes" => loop {
                    tokio::select! {
                        s = sig_rx.recv() => break ProcessExit::Signal(s.unwrap_or(9)),
                        r = out_tx.send(Bytes::from_static(b"y\n")) => if r.is_err() {
                            break ProcessExit::Signal(13);
                        },
                    }
                },
                "sink" => {
                    let mut got = Vec::new();
                    while let Some(Some(b)) = in_rx.recv().await {
                        got.extend_from_slice(&b);
                    }
                    if got == b"good tar" {
                        ProcessExit::Code(0)
                    } else {
                        let _ = err_tx.send(Bytes::from_static(b"bad stream\n")).await;
                        ProcessExit::Code(1)
                    }
                }
                "exists" => {
                    if Path::new(&args[1]).exists() {
                        ProcessExit::Code(0)
                    } else {
                        let _ = err_tx.send(Bytes::from(format!("no {}\n", args[1]))).await;
                        ProcessExit::Code(1)
                    }
                }
                "oom" => {
                    oom_kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ProcessExit::Signal(libc::SIGKILL)
                }
                "stubborn" => loop {
                    match sig_rx.recv().await {
                        Some(libc::SIGTERM) => continue,
                        Some(s) => break ProcessExit::Signal(s),
                        None => break ProcessExit::Signal(9),
                    }
                },
                other => panic!("fake guest cannot run {other}"),
            };
            drop((out_tx, err_tx));
            let _ = exit_tx.send(Some(status));
        });
        let stdin = spec.open_stdin.then_some(in_tx);
        self.procs.lock().unwrap().insert(
            id.to_string(),
            Proc {
                stdin,
                signals: sig_tx,
                exit,
            },
        );
        Ok(ProcessOutput { stdout, stderr })
    }
    async fn wait(&self, id: &str) -> Result<ProcessExit, GuestError> {
        let mut rx = self
            .procs
            .lock()
            .unwrap()
            .get(id)
            .ok_or_else(|| GuestError::NoProcess(id.into()))?
            .exit
            .clone();
        let status = *rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|e| GuestError::remote("wait", agent::ErrorCode::Internal, e.to_string()))?;
        Ok(status.unwrap_or(ProcessExit::Code(255)))
    }
    async fn signal(&self, id: &str, signal: i32) -> Result<(), GuestError> {
        let procs = self.procs.lock().unwrap();
        let p = procs
            .get(id)
            .ok_or_else(|| GuestError::NoProcess(id.into()))?;
        let _ = p.signals.send(signal);
        Ok(())
    }
    async fn write_stdin(&self, id: &str, data: Bytes) -> Result<(), GuestError> {
        if let Some(tx) = self
            .procs
            .lock()
            .unwrap()
            .get(id)
            .and_then(|p| p.stdin.clone())
        {
            let _ = tx.send(Some(data));
        }
        Ok(())
    }
    async fn close_stdin(&self, id: &str) -> Result<(), GuestError> {
        if let Some(tx) = self
            .procs
            .lock()
            .unwrap()
            .get(id)
            .and_then(|p| p.stdin.clone())
        {
            let _ = tx.send(None);
        }
        Ok(())
    }
    async fn resize(&self, _id: &str, _rows: u16, _cols: u16) -> Result<(), GuestError> {
        Ok(())
    }
    async fn shutdown(&self) -> Result<(), GuestError> {
        self.shut_down.notify_one();
        Ok(())
    }
    async fn prepare(&self, _id: &str, _spec: &ProcessSpec) -> Result<(), GuestError> {
        Ok(())
    }
    async fn copy_out(
        &self,
        id: &str,
        path: &str,
        _follow_link: bool,
    ) -> Result<(agent::PathStat, ProcessOutput), GuestError> {
        let args: Vec<String> = match path {
            "/missing" => {
                return Err(GuestError::remote(
                    "copy_out",
                    agent::ErrorCode::NotFound,
                    "no such file",
                ))
            }
            "/endless" => vec!["yes".into()],
            "/fail" => vec!["exit".into(), "1".into()],
            other => vec!["echo".into(), "tar-of".into(), other.into()],
        };
        let spec = ProcessSpec {
            args,
            ..Default::default()
        };
        let stat = agent::PathStat {
            name: path.trim_start_matches('/').into(),
            mode: 0o100644,
            ..Default::default()
        };
        Ok((stat, self.spawn(id, &spec).await?))
    }
    async fn copy_in(
        &self,
        id: &str,
        path: &str,
        _source: Option<agent::CopySource>,
        _preserve_owner: bool,
    ) -> Result<ProcessOutput, GuestError> {
        if path == "/ro" {
            return Err(GuestError::remote(
                "copy_in",
                agent::ErrorCode::Io,
                "cannot copy to /ro: Read-only file system",
            ));
        }
        let spec = ProcessSpec {
            args: vec!["sink".into()],
            open_stdin: true,
            ..Default::default()
        };
        self.spawn(id, &spec).await
    }
    async fn release(&self, id: &str) -> Result<(), GuestError> {
        self.procs
            .lock()
            .unwrap()
            .remove(id)
            .ok_or_else(|| GuestError::NoProcess(id.into()))?;
        self.released.lock().unwrap().push(id.to_string());
        Ok(())
    }
}

struct FakeVm {
    crash: Arc<Notify>,
    shut_down: Arc<Notify>,
    killed: Arc<Mutex<bool>>,
}

#[async_trait]
impl Vm for FakeVm {
    fn pid(&self) -> Option<u32> {
        None
    }
    async fn wait(&mut self) -> VmExit {
        tokio::select! {
            _ = self.crash.notified() => VmExit("killed by signal 9".into()),
            _ = self.shut_down.notified() => VmExit("powered off".into()),
        }
    }
    async fn kill(&mut self) {
        *self.killed.lock().unwrap() = true;
    }
}

#[derive(Default)]
struct FakeBackend {
    fail_boot: bool,
    crash: Arc<Notify>,
    /// VMs booted so far.
    boots: Arc<std::sync::atomic::AtomicUsize>,
    released: Arc<Mutex<Vec<String>>>,
    resources: Arc<Mutex<Option<ResourceLimits>>>,
}

#[async_trait]
impl VmBackend for FakeBackend {
    async fn create_overlay(&self, base: &Path, overlay: &Path) -> Result<(), BootError> {
        assert!(base.exists());
        std::fs::write(overlay, b"qcow2").map_err(|e| BootError::Boot {
            message: e.to_string(),
            source: None,
        })
    }
    async fn boot(&self, req: &VmRequest) -> Result<Booted, BootError> {
        match &req.rootfs {
            crate::backend::VmRootfs::Disk(disk) => assert!(disk.exists()),
            crate::backend::VmRootfs::Share(share) => assert!(share.dir.is_dir()),
            crate::backend::VmRootfs::Pod(member) => assert!(!member.guest_dir.is_empty()),
        }
        self.boots.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_boot {
            return Err(BootError::Boot {
                message: "kernel /nope not found".into(),
                source: None,
            });
        }
        let guest = FakeGuest {
            released: self.released.clone(),
            resources: self.resources.clone(),
            ..Default::default()
        };
        let vm = FakeVm {
            crash: self.crash.clone(),
            shut_down: guest.shut_down.clone(),
            killed: Default::default(),
        };
        Ok(Booted {
            prebooted: false,
            vm: Box::new(vm),
            guest: Arc::new(guest),
            template: None,
        })
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    std::fs::write(tmp.path().join("base.ext4"), b"ext4").unwrap();
    Fixture { store, _tmp: tmp }
}

impl Fixture {
    fn create(&self, args: &[&str], stdin: bool, rm: bool) -> String {
        self.create_limited(args, stdin, rm, ResourceLimits::default())
    }

    fn create_limited(
        &self,
        args: &[&str],
        stdin: bool,
        rm: bool,
        resources: ResourceLimits,
    ) -> String {
        self.create_full(args, stdin, rm, resources, Default::default())
    }

    fn create_full(
        &self,
        args: &[&str],
        stdin: bool,
        rm: bool,
        resources: ResourceLimits,
        restart: crate::restart::RestartPolicy,
    ) -> String {
        let req = CreateRequest {
            name: None,
            image: "test:latest".into(),
            image_digest: "sha256:00".into(),
            image_config: ImageConfig::default(),
            rootfs: self._tmp.path().join("base.ext4"),
            rootfs_dir: None,
            process: ProcessOptions {
                args: args.iter().map(|s| s.to_string()).collect(),
                open_stdin: stdin,
                ..Default::default()
            },
            vm: VmOptions {
                cpus: 1,
                memory_mib: 256,
                ..Default::default()
            },
            auto_remove: rm,
            networks: Vec::new(),
            endpoints: Default::default(),
            publish: Vec::new(),
            publish_sockets: Vec::new(),
            mounts: Vec::new(),
            read_only: false,
            resources,
            hostname: None,
            dns: Default::default(),
            extra_hosts: Vec::new(),
            labels: Default::default(),
            stop_signal: None,
            stop_timeout: None,
            restart,
            healthcheck: None,
            sysctls: Default::default(),
            shm_size: None,
            cgroupns_host: false,
            devices: Vec::new(),
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            volumes_from: Vec::new(),
            log: Default::default(),
            pod: None,
            netns: None,
        };
        create_record(&self.store, req).unwrap().id
    }

    fn spawn(
        &self,
        id: &str,
        backend: FakeBackend,
        wait_attach: bool,
    ) -> tokio::task::JoinHandle<i32> {
        let (store, id) = (self.store.clone(), id.to_string());
        tokio::spawn(async move {
            run(
                &store,
                &id,
                &backend,
                MonitorOptions {
                    wait_attach,
                    hold: false,
                },
            )
            .await
            .unwrap()
        })
    }

    async fn connect(&self, id: &str) -> UnixStream {
        for _ in 0..200 {
            if let Ok(mut s) =
                UnixStream::connect(self.store.socket_dir(id).join("monitor.sock")).await
            {
                client::handshake(&mut s, id).await.unwrap();
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("monitor socket never appeared");
    }

    async fn attach(
        &self,
        id: &str,
        input: Option<&'static [u8]>,
    ) -> (Result<ExitInfo, client::ClientError>, Vec<u8>, Vec<u8>) {
        let s = self.connect(id).await;
        let (_ctl_tx, ctl) = mpsc::unbounded_channel();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = client::relay(
            s,
            id,
            Request::Attach {
                stdin: input.is_some(),
                early_exit: false,
            },
            input,
            &mut out,
            &mut err,
            ctl,
            || {},
        )
        .await;
        (r, out, err)
    }

    async fn exec(
        &self,
        id: &str,
        args: &[&str],
    ) -> (Result<ExitInfo, client::ClientError>, Vec<u8>) {
        let s = self.connect(id).await;
        let spec = ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let (_ctl_tx, ctl) = mpsc::unbounded_channel();
        let mut out = Vec::new();
        let r = client::relay(
            s,
            id,
            Request::Exec {
                spec,
                detach: false,
            },
            None::<&[u8]>,
            &mut out,
            Vec::new(),
            ctl,
            || {},
        )
        .await;
        (r, out)
    }
}

#[tokio::test]
async fn run_echo_records_output_and_exit() {
    let f = fixture();
    let id = f.create(&["echo", "hello", "world"], false, false);
    let mon = f.spawn(&id, FakeBackend::default(), true);
    let (r, out, _) = f.attach(&id, None).await;
    assert_eq!(
        r.unwrap(),
        ExitInfo {
            code: 0,
            reason: None,
            error: None,
        }
    );
    assert_eq!(out, b"hello world\n");
    assert_eq!(mon.await.unwrap(), 0);
    let rec = f.store.load(&id).unwrap();
    assert_eq!(
        (rec.status, rec.exit_code, rec.monitor_pid),
        (Status::Exited, Some(0), None)
    );
    assert!(rec.started.is_some() && rec.finished.is_some());
    let dir = f.store.dir_of(&id);
    assert!(!dir.join("monitor.sock").exists());
    assert!(dir.join("rootfs.qcow2").exists());
    let (logs, _) = crate::logs::read_from(&dir.join("container.log"), 0).unwrap();
    assert_eq!(logs[0].log, "hello world\n");
}

#[tokio::test]
async fn exit_code_and_stderr_are_relayed() {
    let f = fixture();
    let id = f.create(&["exit", "7"], false, false);
    let mon = f.spawn(&id, FakeBackend::default(), true);
    let (r, out, err) = f.attach(&id, None).await;
    assert_eq!(r.unwrap().code, 7);
    assert!(out.is_empty());
    assert_eq!(err, b"bye\n");
    assert_eq!(mon.await.unwrap(), 7);
}

#[tokio::test]
async fn missing_and_unexecutable_commands_map_to_127_and_126() {
    for (cmd, code, error) in [
        ("missing", 127, agent::ErrorCode::ExecutableNotFound),
        ("noexec", 126, agent::ErrorCode::NotExecutable),
    ] {
        let f = fixture();
        let id = f.create(&[cmd], false, false);
        let mon = f.spawn(&id, FakeBackend::default(), true);
        let (r, _, _) = f.attach(&id, None).await;
        match r {
            Err(client::ClientError::Failed(info)) => {
                assert_eq!((info.code, info.error), (code, Some(error)));
                assert!(info.reason.unwrap().contains(cmd));
            }
            other => panic!("{cmd}: {other:?}"),
        }
        assert_eq!(mon.await.unwrap(), code);
        let rec = f.store.load(&id).unwrap();
        assert_eq!((rec.status, rec.exit_code), (Status::Created, Some(code)));
    }
}

#[tokio::test]
async fn boot_failure_is_a_runtime_fault_with_reason() {
    let f = fixture();
    let id = f.create(&["echo"], false, false);
    let mon = f.spawn(
        &id,
        FakeBackend {
            fail_boot: true,
            ..Default::default()
        },
        false,
    );
    assert_eq!(mon.await.unwrap(), crate::EXIT_RUNTIME_FAULT);
    let rec = f.store.load(&id).unwrap();
    assert_eq!(rec.exit_code, Some(125));
    assert!(rec.exit_reason.unwrap().contains("kernel /nope"));
    assert!(!f.store.dir_of(&id).join("monitor.sock").exists());
}

#[tokio::test]
async fn stdin_is_forwarded_until_eof() {
    let f = fixture();
    let id = f.create(&["cat"], true, false);
    let mon = f.spawn(&id, FakeBackend::default(), true);
    let (r, out, _) = f.attach(&id, Some(b"piped input\n")).await;
    assert_eq!(r.unwrap().code, 0);
    assert_eq!(out, b"piped input\n");
    mon.await.unwrap();
}

#[tokio::test]
async fn exec_kill_and_wrong_state() {
    let f = fixture();
    let id = f.create(&["sleep"], false, false);
    let mon = f.spawn(&id, FakeBackend::default(), false);
    let s = f.connect(&id).await;
    assert!(matches!(
        client::request(s, &id, Request::WaitStarted).await,
        Ok(Frame::Started(_))
    ));
    assert_eq!(f.store.load(&id).unwrap().status, Status::Running);
    let (r, out) = f.exec(&id, &["echo", "from", "exec"]).await;
    assert_eq!(r.unwrap().code, 0);
    assert_eq!(out, b"from exec\n");
    let (r, _) = f.exec(&id, &["missing"]).await;
    assert!(matches!(
        r,
        Err(client::ClientError::Failed(ExitInfo {
            code: 127,
            error: Some(agent::ErrorCode::ExecutableNotFound),
            ..
        }))
    ));
    let s = f.connect(&id).await;
    assert_eq!(
        client::request(s, &id, Request::Kill { signal: 9 })
            .await
            .unwrap(),
        Frame::Ok
    );
    assert_eq!(mon.await.unwrap(), 137);
    assert_eq!(f.store.load(&id).unwrap().exit_code, Some(137));
}

#[tokio::test]
async fn execs_are_released_in_the_guest_once_their_status_is_collected() {
    let f = fixture();
    let id = f.create(&["sleep"], false, false);
    let backend = FakeBackend::default();
    let released = backend.released.clone();
    let mon = f.spawn(&id, backend, false);
    let s = f.connect(&id).await;
    assert!(matches!(
        client::request(s, &id, Request::WaitStarted).await,
        Ok(Frame::Started(_))
    ));
    for i in 0..5 {
        let (r, out) = f.exec(&id, &["exit", &i.to_string()]).await;
        assert_eq!(r.unwrap().code, i);
        assert_eq!(out, b"");
    }
    // A failed spawn leaves nothing to release.
    let (r, _) = f.exec(&id, &["missing"]).await;
    assert!(r.is_err());
    let want: Vec<String> = (1..=5).map(|n| format!("exec-{n}")).collect();
    assert_eq!(*released.lock().unwrap(), want);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::Kill { signal: 9 })
        .await
        .unwrap();
    assert_eq!(mon.await.unwrap(), 137);
    // The main process is never released: deleting it would tear the container down.
    assert_eq!(released.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_timeout() {
    let f = fixture();
    let id = f.create(&["stubborn"], false, false);
    let mon = f.spawn(&id, FakeBackend::default(), false);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::WaitStarted).await.unwrap();
    let t = std::time::Instant::now();
    let s = f.connect(&id).await;
    let stop = Request::Stop {
        timeout_secs: 1,
        signal: None,
        restart: false,
    };
    let r = client::request(s, &id, stop).await.unwrap();
    assert_eq!(
        r,
        Frame::Exit(ExitInfo {
            code: 137,
            reason: None,
            error: None,
        })
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(mon.await.unwrap(), 137);
}

#[tokio::test]
async fn stop_sends_the_signal_asked_for_and_a_restart_keeps_an_rm_container() {
    let f = fixture();
    let id = f.create(&["sleep"], false, true);
    let mon = f.spawn(&id, FakeBackend::default(), false);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::WaitStarted).await.unwrap();
    let s = f.connect(&id).await;
    let stop = Request::Stop {
        timeout_secs: 10,
        signal: Some(libc::SIGINT),
        restart: true,
    };
    let t = std::time::Instant::now();
    let r = client::request(s, &id, stop).await.unwrap();
    assert_eq!(
        r,
        Frame::Exit(ExitInfo {
            code: 128 + libc::SIGINT,
            reason: None,
            error: None,
        })
    );
    assert!(t.elapsed() < Duration::from_secs(5), "no wait for SIGKILL");
    assert_eq!(mon.await.unwrap(), 130);
    let rec = f
        .store
        .load(&id)
        .expect("an --rm container outlives a restart's stop");
    assert_eq!(rec.status, Status::Exited);
}

#[tokio::test]
async fn vm_crash_marks_exited_with_reason() {
    let f = fixture();
    let id = f.create(&["sleep"], false, false);
    let backend = FakeBackend::default();
    let crash = backend.crash.clone();
    let mon = f.spawn(&id, backend, false);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::WaitStarted).await.unwrap();
    crash.notify_one();
    assert_eq!(mon.await.unwrap(), 125);
    let rec = f.store.load(&id).unwrap();
    assert_eq!(rec.status, Status::Exited);
    assert!(rec.exit_reason.unwrap().contains("VM exited unexpectedly"));
    assert!(!f.store.dir_of(&id).join("monitor.sock").exists());
}

#[tokio::test]
async fn auto_remove_deletes_the_container() {
    let f = fixture();
    let id = f.create(&["echo", "x"], false, true);
    let mon = f.spawn(&id, FakeBackend::default(), true);
    let (r, out, _) = f.attach(&id, None).await;
    assert_eq!((r.unwrap().code, out.as_slice()), (0, &b"x\n"[..]));
    mon.await.unwrap();
    assert!(!f.store.dir_of(&id).exists());
}

/// Waits until `id` shows up in the released list.
async fn released_soon(released: &Arc<Mutex<Vec<String>>>, id: &str) {
    for _ in 0..300 {
        if released.lock().unwrap().iter().any(|r| r == id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} was never released: {:?}", released.lock().unwrap());
}

#[tokio::test]
async fn copies_are_relayed_and_their_helpers_always_released() {
    let f = fixture();
    let id = f.create(&["sleep"], false, false);
    let name = f.store.load(&id).unwrap().name;
    let backend = FakeBackend::default();
    let released = backend.released.clone();
    let mon = f.spawn(&id, backend, false);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::WaitStarted).await.unwrap();

    // Out: the stat, then the stream, then the end.
    let (stat, mut session) = client::copy_out(f.connect(&id).await, &id, "/etc/x", false)
        .await
        .unwrap();
    assert_eq!(stat.name, "etc/x");
    let mut got = Vec::new();
    while let Some(b) = session.next_chunk().await.unwrap() {
        got.extend_from_slice(&b);
    }
    assert_eq!(got, b"tar-of /etc/x\n");
    released_soon(&released, "cp-1").await;
    // A missing path names the path and the container; a failure carries the helper's words.
    let e = client::copy_out(f.connect(&id).await, &id, "/missing", false)
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!("Could not find the file /missing in container {name}")
    );
    let (_, mut session) = client::copy_out(f.connect(&id).await, &id, "/fail", false)
        .await
        .unwrap();
    let e = loop {
        match session.next_chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a failed copy ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.to_string(), "bye");
    // A client that leaves mid-stream: the helper is killed and released.
    let (_, mut session) = client::copy_out(f.connect(&id).await, &id, "/endless", false)
        .await
        .unwrap();
    assert!(session.next_chunk().await.unwrap().is_some());
    drop(session);
    released_soon(&released, "cp-4").await;

    // In: accepted, streamed, checked by the helper.
    let mut session = client::copy_in(f.connect(&id).await, &id, "/dst", None, false)
        .await
        .unwrap();
    session.send(Bytes::from_static(b"good ")).await.unwrap();
    session.send(Bytes::from_static(b"tar")).await.unwrap();
    session.finish().await.unwrap();
    let mut session = client::copy_in(f.connect(&id).await, &id, "/dst", None, false)
        .await
        .unwrap();
    session.send(Bytes::from_static(b"garbage")).await.unwrap();
    let e = session.finish().await.unwrap_err();
    assert_eq!(e.to_string(), "bad stream");
    // Refused before any byte is sent.
    let e = client::copy_in(f.connect(&id).await, &id, "/ro", None, false)
        .await
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "cannot copy to /ro: Read-only file system");
    // A client that leaves: the helper sees the stream end (and fails), and is released.
    let mut session = client::copy_in(f.connect(&id).await, &id, "/dst", None, false)
        .await
        .unwrap();
    session.send(Bytes::from_static(b"good")).await.unwrap();
    drop(session);
    released_soon(&released, "cp-8").await;

    let s = f.connect(&id).await;
    client::request(s, &id, Request::Kill { signal: 9 })
        .await
        .unwrap();
    assert_eq!(mon.await.unwrap(), 137);
}

#[tokio::test]
async fn stats_come_from_the_guest_while_running_only() {
    let f = fixture();
    let limits = ResourceLimits::from_flags(Some(0.5), Some(128 << 20), Some(10)).unwrap();
    let id = f.create_limited(&["sleep"], false, false, limits);
    let backend = FakeBackend::default();
    let applied = backend.resources.clone();
    let mon = f.spawn(&id, backend, false);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::WaitStarted).await.unwrap();
    // The container was created with the record's limits.
    assert_eq!(*applied.lock().unwrap(), Some(limits));
    let sample = client::stats(&f.store, &id).await.unwrap();
    assert_eq!(sample.cpu_usage_usec, 42);
    assert_eq!(sample.memory_limit, Some(128 << 20));
    assert_eq!(sample.pids, 1);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::Kill { signal: 9 })
        .await
        .unwrap();
    assert_eq!(mon.await.unwrap(), 137);
    let rec = f.store.load(&id).unwrap();
    assert!(!rec.oom_killed, "a plain SIGKILL is not an OOM kill");
    assert_eq!(rec.exit_reason, None);
    assert!(matches!(
        client::stats(&f.store, &id).await,
        Err(client::ClientError::NotRunning(_))
    ));
}

#[tokio::test]
async fn an_oom_killed_main_process_is_recorded_with_a_reason() {
    let f = fixture();
    let limits = ResourceLimits::from_flags(None, Some(128 << 20), None).unwrap();
    let id = f.create_limited(&["oom"], false, false, limits);
    let mon = f.spawn(&id, FakeBackend::default(), true);
    let (r, _, _) = f.attach(&id, None).await;
    let info = r.unwrap();
    assert_eq!(info.code, 137);
    let reason = info.reason.unwrap();
    assert!(
        reason.contains("out of memory") && reason.contains("128 MiB"),
        "{reason}"
    );
    assert_eq!(mon.await.unwrap(), 137);
    let rec = f.store.load(&id).unwrap();
    assert!(rec.oom_killed);
    assert_eq!(rec.exit_code, Some(137));
}

#[tokio::test]
async fn hold_mode_serves_one_copy_and_leaves_the_record_alone() {
    let f = fixture();
    let id = f.create(&["missing"], false, false);
    f.store
        .update(&id, |r| {
            r.status = Status::Exited;
            r.exit_code = Some(3);
        })
        .unwrap();
    let backend = FakeBackend::default();
    let released = backend.released.clone();
    let (store, id2) = (f.store.clone(), id.clone());
    let mon = tokio::spawn(async move {
        let opts = MonitorOptions {
            wait_attach: false,
            hold: true,
        };
        run(&store, &id2, &backend, opts).await.unwrap()
    });
    // Exec and attach are refused: nothing runs.
    let (r, _) = f.exec(&id, &["echo", "x"]).await;
    assert!(r.is_err(), "{r:?}");
    let (_, mut session) = client::copy_out(f.connect(&id).await, &id, "/x", false)
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(b) = session.next_chunk().await.unwrap() {
        got.extend_from_slice(&b);
    }
    assert_eq!(got, b"tar-of /x\n");
    // One copy, then the monitor ends on its own.
    assert_eq!(mon.await.unwrap(), 0);
    let rec = f.store.load(&id).unwrap();
    assert_eq!(
        (rec.status, rec.exit_code, rec.monitor_pid, rec.started),
        (Status::Exited, Some(3), None, None)
    );
    assert!(released
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.starts_with("cp-")));
}

#[tokio::test]
async fn a_monitor_that_cannot_start_records_why_unless_another_owns_the_container() {
    let f = fixture();
    let id = f.create(&["echo"], false, false);
    let opts = MonitorOptions {
        wait_attach: false,
        hold: false,
    };
    // Something that is not a socket where the socket goes: bind fails.
    let sock = f.store.socket_dir(&id).join("monitor.sock");
    std::fs::create_dir_all(sock.join("busy")).unwrap();
    let err = run(&f.store, &id, &FakeBackend::default(), opts.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, MonitorError::Listen { .. }), "{err}");
    let rec = f.store.load(&id).unwrap();
    assert_eq!((rec.exit_code, rec.monitor_pid), (Some(125), None));
    assert!(
        rec.exit_reason.as_deref().unwrap().contains("listen on"),
        "{:?}",
        rec.exit_reason
    );
    std::fs::remove_dir_all(&sock).unwrap();

    f.store
        .update(&id, |r| {
            r.status = Status::Running;
            r.exit_code = Some(3);
            r.exit_reason = None;
            r.monitor_pid = Some(1);
        })
        .unwrap();
    let err = run(&f.store, &id, &FakeBackend::default(), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, MonitorError::AlreadyRunning(_)), "{err}");
    let rec = f.store.load(&id).unwrap();
    assert_eq!(
        (rec.exit_code, rec.exit_reason, rec.monitor_pid),
        (Some(3), None, Some(1))
    );
}

#[tokio::test]
async fn a_client_from_before_the_handshake_is_told_both_versions() {
    let f = fixture();
    let id = f.create(&["sleep"], false, false);
    let mon = f.spawn(&id, FakeBackend::default(), false);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::WaitStarted).await.unwrap();
    // What a version-1 client does: its request first, no Hello.
    let sock = f.store.socket_dir(&id).join("monitor.sock");
    let mut old = UnixStream::connect(&sock).await.unwrap();
    crate::protocol::write_frame(&mut old, &Frame::Request(Request::Kill { signal: 9 }))
        .await
        .unwrap();
    match crate::protocol::read_frame(&mut old).await.unwrap() {
        Some(Frame::Error(info)) => {
            assert_eq!(info.error, Some(agent::ErrorCode::ProtocolVersion));
            assert_eq!(info.code, 125);
            let reason = info.reason.unwrap();
            assert!(
                reason.contains("protocol version 2, this client version 1"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The request was not carried out: the container still runs.
    assert_eq!(f.store.load(&id).unwrap().status, Status::Running);
    let s = f.connect(&id).await;
    client::request(s, &id, Request::Kill { signal: 9 })
        .await
        .unwrap();
    assert_eq!(mon.await.unwrap(), 137);
}

#[tokio::test]
async fn a_stop_while_waiting_for_the_first_attach_ends_the_monitor_at_once() {
    let f = fixture();
    let id = f.create(&["sleep"], false, false);
    let backend = FakeBackend::default();
    let boots = backend.boots.clone();
    let mon = f.spawn(&id, backend, true);
    let t = std::time::Instant::now();
    let s = f.connect(&id).await;
    let stop = Request::Stop {
        timeout_secs: 0,
        signal: Some(libc::SIGKILL),
        restart: false,
    };
    let r = client::request(s, &id, stop).await.unwrap();
    assert_eq!(
        r,
        Frame::Exit(ExitInfo {
            code: 137,
            reason: Some("stopped before its process started".into()),
            error: None,
        })
    );
    assert_eq!(mon.await.unwrap(), 137);
    // Not the attach wait's 30 s, and no VM booted for nothing.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(boots.load(std::sync::atomic::Ordering::SeqCst), 0);
    let rec = f.store.load(&id).unwrap();
    assert_eq!(rec.status, Status::Created);
    assert_eq!(rec.monitor_pid, None);
}
