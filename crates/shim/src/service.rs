//! The shim v2 task service: containerd's calls on one task (its main process and execs),
//! each mapped onto [`runtime::Container`] verbs; events go back through the publisher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::api::{self, Empty};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::{Message, MessageDyn, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, r#async::TtrpcContext};
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, TtrpcResult};
use runtime::client::ClientError;
use runtime::protocol::{Frame, Request, WinSize};
use runtime::{Container, ContainerError, Runtime};
use tokio::sync::{mpsc, oneshot};

use crate::process::{Process, Status};
use crate::stdio::{open_input, open_output, Stdio};

/// The task this shim serves (one per shim: containerd groups by task id).
struct TaskState {
    id: String,
    bundle: PathBuf,
    /// Our container's id.
    container: String,
    /// We mounted the rootfs (CreateTaskRequest.rootfs) and unmount it at delete.
    mounted_rootfs: bool,
    main: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
}

/// The task service.
pub struct Service {
    rt: Runtime,
    namespace: String,
    publisher: Arc<RemotePublisher>,
    exit: Arc<ExitSignal>,
    task: Mutex<Option<Arc<TaskState>>>,
    /// The removal of a deleted task's container whose VM was still going down: the shim
    /// ends after it.
    teardown: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Service {
    /// A service for containers of `rt`, publishing to containerd's `namespace`.
    pub fn new(
        rt: Runtime,
        namespace: String,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service {
            rt,
            namespace,
            publisher: Arc::new(publisher),
            exit,
            task: Mutex::new(None),
            teardown: Mutex::new(None),
        }
    }

    fn task(&self, id: &str) -> TtrpcResult<Arc<TaskState>> {
        let t = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match t {
            Some(t) if t.id == id => Ok(t),
            _ => Err(not_found(format!("task {id}"))),
        }
    }

    fn container(&self, task: &TaskState) -> TtrpcResult<Container> {
        self.rt.container(&task.container).map_err(internal)
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            log::warn!("publish {topic}: {e}");
        }
    }
}

/// The process of `task` that `exec_id` names (empty: the main one).
fn process(task: &TaskState, exec_id: &str) -> TtrpcResult<Arc<Process>> {
    if exec_id.is_empty() {
        return Ok(task.main.clone());
    }
    task.execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(exec_id)
        .cloned()
        .ok_or_else(|| not_found(format!("exec {exec_id}")))
}

fn status_of(p: &Process, paused: bool) -> TaskStatus {
    match p.status() {
        Status::Created => TaskStatus::CREATED,
        Status::Running if paused => TaskStatus::PAUSED,
        Status::Running => TaskStatus::RUNNING,
        Status::Stopped => TaskStatus::STOPPED,
    }
}

fn rpc_error(code: ttrpc::Code, message: String) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

fn not_found(what: String) -> ttrpc::Error {
    rpc_error(ttrpc::Code::NOT_FOUND, format!("{what}: not found"))
}

fn internal<E: std::error::Error + 'static>(e: E) -> ttrpc::Error {
    rpc_error(ttrpc::Code::INTERNAL, runtime::error_line(&e))
}

/// A container error as containerd's error kinds: a verb refused by the state machine is a
/// failed precondition (containerd's "process already finished" and such), the rest internal.
fn container_error(e: ContainerError) -> ttrpc::Error {
    match e {
        ContainerError::WrongState { .. }
        | ContainerError::Paused { .. }
        | ContainerError::Client(ClientError::NotRunning(_)) => {
            rpc_error(ttrpc::Code::FAILED_PRECONDITION, runtime::error_line(&e))
        }
        e => internal(e),
    }
}

/// The exit status of a session that ended (the process's, or the runtime's fault code).
fn exit_code(r: &Result<runtime::protocol::ExitInfo, ClientError>) -> u32 {
    match r {
        Ok(info) | Err(ClientError::Failed(info)) => u32::try_from(info.code).unwrap_or(255),
        Err(_) => u32::try_from(runtime::EXIT_RUNTIME_FAULT).unwrap_or(255),
    }
}

/// Runs the relay of one process's session in the background: its stdio to and from
/// containerd's FIFOs, then its exit recorded and `TaskExit` published. Returns once the
/// process runs, or the reason it could not start.
async fn run_session(
    svc: &Service,
    task: &Arc<TaskState>,
    exec_id: &str,
    proc_: &Arc<Process>,
    stream: tokio::net::UnixStream,
    req: Request,
    pid: impl FnOnce() -> u32 + Send + 'static,
) -> TtrpcResult<u32> {
    let stdio = &proc_.stdio;
    let out = open_output(&stdio.stdout).map_err(internal)?;
    let err = if stdio.terminal {
        Box::pin(tokio::io::sink())
    } else {
        open_output(&stdio.stderr).map_err(internal)?
    };
    let input = (!stdio.stdin.is_empty()).then(|| open_input(&stdio.stdin));
    let pump = input.as_ref().map(|i| i.pump.abort_handle());
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (started_tx, started_rx) = oneshot::channel::<Result<u32, String>>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let on_started = {
        let started_tx = started_tx.clone();
        move || {
            if let Some(tx) = started_tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(Ok(pid()));
            }
        }
    };
    let publisher = svc.publisher.clone();
    let namespace = svc.namespace.clone();
    let (container_id, exec) = (task.id.clone(), exec_id.to_string());
    let our_id = task.container.clone();
    let root = svc.rt.root().to_path_buf();
    let p = proc_.clone();
    tokio::spawn(async move {
        let reader = input.map(|i| i.reader);
        let r = runtime::client::relay(
            stream, &our_id, req, reader, out, err, control_rx, on_started,
        )
        .await;
        let code = exit_code(&r);
        let unstarted = started_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = unstarted {
            let why = match &r {
                Ok(info) | Err(ClientError::Failed(info)) => info
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("the process ended with {}", info.code)),
                Err(e) => runtime::error_line(e),
            };
            let _ = tx.send(Err(why));
        }
        // The monitor recorded an OOM kill of the container before it ended the session.
        let oom = exec.is_empty()
            && runtime::state::Store::open(&root)
                .and_then(|s| s.load(&our_id))
                .is_ok_and(|r| r.oom_killed);
        if oom {
            let event = TaskOOM {
                container_id: container_id.clone(),
                ..Default::default()
            };
            if let Err(e) = publisher
                .publish(
                    Context::default(),
                    topics::TASK_OOM_EVENT_TOPIC,
                    &namespace,
                    Box::new(event),
                )
                .await
            {
                log::warn!("publish oom: {e}");
            }
        }
        let exit = p.set_exited(code);
        log::info!("process {container_id}/{exec} exited with {code}");
        let event = TaskExit {
            container_id: container_id.clone(),
            id: if exec.is_empty() {
                container_id.clone()
            } else {
                exec
            },
            pid: p.pid(),
            exit_status: code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        };
        if let Err(e) = publisher
            .publish(
                Context::default(),
                topics::TASK_EXIT_EVENT_TOPIC,
                &namespace,
                Box::new(event),
            )
            .await
        {
            log::warn!("publish exit: {e}");
        }
    });
    match started_rx.await {
        Ok(Ok(pid)) => {
            proc_.set_running(pid, control_tx, pump);
            Ok(pid)
        }
        Ok(Err(why)) => Err(rpc_error(ttrpc::Code::UNKNOWN, why)),
        Err(_) => Err(rpc_error(
            ttrpc::Code::INTERNAL,
            "the session ended without a status".into(),
        )),
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if self
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Err(rpc_error(
                ttrpc::Code::ALREADY_EXISTS,
                "this shim runs one task".into(),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        let spec = crate::spec::load(&bundle).map_err(internal)?;
        let role = crate::spec::cri_role(&spec);
        if matches!(role, crate::spec::CriRole::Sandbox { .. }) && crate::spec::host_network(&spec)
        {
            return Err(rpc_error(
                ttrpc::Code::INVALID_ARGUMENT,
                "hostNetwork pods cannot run in a VM: the host's network namespace cannot be \
                 given to a guest (run them with runc's RuntimeClass)"
                    .into(),
            ));
        }
        // A task of its own gets its snapshot as a disk, which lets its VM start from a
        // template; a pod's containers share the pod's running VM, which takes no new disk.
        let layers = match role {
            crate::spec::CriRole::None if crate::snapshot::disks_wanted() => {
                crate::snapshot::layers(&req.rootfs)
            }
            _ => None,
        };
        let disk = match layers {
            Some(layers) => {
                let root = self.rt.root().to_path_buf();
                let built = tokio::task::spawn_blocking(move || {
                    runtime::snapshot::prune(&root);
                    runtime::snapshot::image(&root, &layers)
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
                Some(built)
            }
            None => None,
        };
        let mounted_rootfs = match disk {
            Some(_) => false,
            None => crate::bundle::mount_rootfs(&req.rootfs, &rootfs).map_err(internal)?,
        };
        let created = async {
            let origin = crate::spec::TaskOrigin {
                namespace: &self.namespace,
                id: &req.id,
                bundle: &bundle,
                rootfs: &rootfs,
                stdin: !req.stdin.is_empty(),
                terminal: req.terminal,
            };
            let (mut opts, ignored) = crate::spec::container_options(&spec, &origin);
            if let Some(image) = &disk {
                opts.rootfs_dir = None;
                opts.rootfs_image = Some(image.clone());
                // Its writes go with the task (see crate::snapshot): once the process has
                // ended nothing of the VM is kept, so the monitor kills it instead of powering
                // it off, and removes the record itself, as for `run --rm`. The task's state
                // after its exit is the shim's own.
                opts.auto_remove = true;
            }
            if opts.process.args.is_empty() {
                return Err(internal(crate::spec::SpecError::NoProcess));
            }
            for what in ignored {
                log::warn!("{}: not honoured: {what}", req.id);
            }
            // A record left by a shim that died before its delete ran has the same name.
            crate::bundle::remove_stale(
                &self.rt,
                &crate::spec::container_name(&self.namespace, &req.id),
            )
            .await;
            match role {
                crate::spec::CriRole::Sandbox { id } => {
                    // A pod left by a shim that died before its delete ran.
                    if let Ok(stale) = self.rt.pod(&id) {
                        let _ = stale.delete(true).await;
                    }
                    self.rt
                        .pod_create(&id, opts)
                        .await
                        .map(|pod| pod.infra)
                        .map_err(container_error)
                }
                _ => self
                    .rt
                    .create(opts, &Default::default())
                    .await
                    .map_err(container_error),
            }
        }
        .await;
        let container = match created {
            Ok(c) => c,
            Err(e) => {
                if mounted_rootfs {
                    crate::bundle::unmount_rootfs(&rootfs);
                }
                return Err(e);
            }
        };
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let task = Arc::new(TaskState {
            id: req.id.clone(),
            bundle,
            container: container.id().to_string(),
            mounted_rootfs,
            main: Arc::new(Process::new(stdio, None)),
            execs: Mutex::new(HashMap::new()),
        });
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        log::info!("task {} is container {}", req.id, container.id());
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid: 0,
                ..Default::default()
            }),
        )
        .await;
        Ok(api::CreateTaskResponse {
            pid: 0,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        if proc_.status() != Status::Created {
            return Err(rpc_error(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("process {} was started already", req.exec_id),
            ));
        }
        let mut container = self.container(&task)?;
        let pid = if let Some(spec) = proc_.exec.clone() {
            let stream = container
                .connect(runtime::Verb::Exec)
                .await
                .map_err(container_error)?;
            let vm_pid = container.record().vm_pid.unwrap_or(0);
            let req_ = Request::Exec {
                spec,
                detach: false,
            };
            run_session(self, &task, &req.exec_id, &proc_, stream, req_, move || {
                vm_pid
            })
            .await?
        } else {
            // The monitor holds the process until this session attaches: no output is lost.
            let stream = container.start(true).await.map_err(container_error)?;
            let store_root = self.rt.root().to_path_buf();
            let our_id = task.container.clone();
            // TaskExit as soon as the process has ended: containerd's Delete follows and
            // waits for the VM itself where it must (see `delete`).
            let req_ = Request::Attach {
                stdin: !proc_.stdio.stdin.is_empty(),
                early_exit: true,
            };
            run_session(self, &task, "", &proc_, stream, req_, move || {
                vm_pid_of(&store_root, &our_id)
            })
            .await?
        };
        if req.exec_id.is_empty() {
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                }),
            )
            .await;
        } else {
            self.publish(
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                Box::new(TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid,
                    ..Default::default()
                }),
            )
            .await;
        }
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        if proc_.status() == Status::Running {
            return Err(rpc_error(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("cannot delete process {}: it is running", req.id),
            ));
        }
        let exit = proc_.exit().unwrap_or(crate::process::Exit {
            code: 0,
            at: crate::process::now(),
        });
        if !req.exec_id.is_empty() {
            task.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.exec_id);
            return Ok(api::DeleteResponse {
                pid: proc_.pid(),
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            });
        }
        if task.mounted_rootfs {
            // The session ended at the process's exit; the VM may still be going down, and
            // the rootfs mount it serves must outlive it.
            let _ = runtime::client::wait_stopped(
                self.rt.store(),
                &task.container,
                Duration::from_secs(30),
            )
            .await;
            match self.rt.container(&task.container) {
                Ok(c) => c.delete(true).await.map_err(container_error)?,
                Err(e) => log::warn!("container {}: {e}", task.container),
            }
            crate::bundle::unmount_rootfs(&task.bundle.join("rootfs"));
        } else {
            // Nothing of the host waits for this VM (its disk is ours, not the snapshot):
            // it is removed once down while containerd goes on.
            let rt = self.rt.clone();
            let id = task.container.clone();
            let handle = tokio::spawn(async move { remove_when_down(&rt, &id).await });
            *self.teardown.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: req.id.clone(),
                pid: proc_.pid(),
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at.clone()),
                ..Default::default()
            }),
        )
        .await;
        Ok(api::DeleteResponse {
            pid: proc_.pid(),
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        // containerd sends the runtime spec's LinuxResources as JSON (CRI's
        // UpdateContainerResources, kubelet's in-place resize).
        let json = req
            .resources
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or(&[]);
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(json).map_err(|e| {
                rpc_error(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("update {}: resources: {e}", req.id),
                )
            })?;
        let mut ignored = Vec::new();
        let change = crate::spec::resource_flags(&resources, &mut ignored);
        for what in ignored {
            log::warn!("{}: update: not honoured: {what}", req.id);
        }
        let mut c = self
            .rt
            .container(&task.container)
            .map_err(container_error)?;
        c.update(change).await.map_err(container_error)?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        if task.main.status() != Status::Running {
            return Err(rpc_error(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("task {} is not running", req.id),
            ));
        }
        let json = req.spec.as_ref().map(|a| a.value.as_slice()).unwrap_or(&[]);
        let spec = crate::spec::exec_process(json, !req.stdin.is_empty(), req.terminal)
            .map_err(|e| rpc_error(ttrpc::Code::INVALID_ARGUMENT, e.to_string()))?;
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        {
            let mut execs = task.execs.lock().unwrap_or_else(|e| e.into_inner());
            if execs.contains_key(&req.exec_id) {
                return Err(rpc_error(
                    ttrpc::Code::ALREADY_EXISTS,
                    format!("exec {} exists", req.exec_id),
                ));
            }
            execs.insert(
                req.exec_id.clone(),
                Arc::new(Process::new(stdio, Some(spec))),
            );
        }
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }),
        )
        .await;
        Ok(Empty::new())
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        let paused = self
            .rt
            .container(&task.container)
            .map(|c| c.record().paused)
            .unwrap_or(false);
        let exit = proc_.exit();
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.to_string_lossy().into_owned(),
            pid: proc_.pid(),
            status: status_of(&proc_, paused).into(),
            stdin: proc_.stdio.stdin.clone(),
            stdout: proc_.stdio.stdout.clone(),
            stderr: proc_.stdio.stderr.clone(),
            terminal: proc_.stdio.terminal,
            exit_status: exit.as_ref().map_or(0, |e| e.code),
            exited_at: exit.map(|e| e.at).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        let signal = i32::try_from(req.signal)
            .map_err(|_| rpc_error(ttrpc::Code::INVALID_ARGUMENT, "bad signal".into()))?;
        if proc_.status() != Status::Running {
            return Err(not_found(format!("process {}: already finished", req.id)));
        }
        if req.exec_id.is_empty() {
            let mut c = self.container(&task)?;
            c.kill(signal).await.map_err(container_error)?;
        } else if !proc_.control(Frame::Signal(signal)) {
            return Err(not_found(format!("exec {}: already finished", req.exec_id)));
        }
        Ok(Empty::new())
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let task = self.task(&req.id)?;
        let mut c = self.container(&task)?;
        let table = c.top(&[]).await.map_err(container_error)?;
        let col = table
            .titles
            .iter()
            .position(|t| t == "PID")
            .ok_or_else(|| rpc_error(ttrpc::Code::INTERNAL, "ps has no PID column".into()))?;
        let processes = table
            .processes
            .iter()
            .filter_map(|row| row.get(col)?.parse::<u32>().ok())
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        let mut c = self.container(&task)?;
        c.pause().await.map_err(container_error)?;
        self.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            Box::new(TaskPaused {
                container_id: req.id.clone(),
                ..Default::default()
            }),
        )
        .await;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        let mut c = self.container(&task)?;
        c.unpause().await.map_err(container_error)?;
        self.publish(
            topics::TASK_RESUMED_EVENT_TOPIC,
            Box::new(TaskResumed {
                container_id: req.id.clone(),
                ..Default::default()
            }),
        )
        .await;
        Ok(Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        let size = WinSize {
            rows: u16::try_from(req.height).unwrap_or(u16::MAX),
            cols: u16::try_from(req.width).unwrap_or(u16::MAX),
        };
        // Before the start (ctr resizes early) there is no session yet: nothing to resize.
        proc_.control(Frame::Resize(size));
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        if req.stdin {
            proc_.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let task = self.task(&req.id)?;
        let proc_ = process(&task, &req.exec_id)?;
        let exit = proc_.wait().await;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let task = self.task(&req.id)?;
        let mut c = self.container(&task)?;
        let sample = c.stats().await.map_err(container_error)?;
        let metrics = crate::bundle::metrics(&sample);
        let any = containerd_shim::protos::protobuf::well_known_types::any::Any {
            type_url: "io.containerd.cgroups.v2.Metrics".into(),
            value: metrics.write_to_bytes().map_err(internal)?,
            ..Default::default()
        };
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.task(&req.id).map(|t| t.main.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<Empty> {
        // containerd asks after each delete; the shim ends once its task is gone.
        if self
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            // A VM still going down is removed first; containerd does not wait for that.
            let teardown = self
                .teardown
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let exit = self.exit.clone();
            tokio::spawn(async move {
                if let Some(t) = teardown {
                    let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
                }
                exit.signal();
            });
        }
        Ok(Empty::new())
    }
}

/// Removes container `id` once its VM is down, unless its monitor removed it itself (a
/// disk task is `auto_remove` from its create).
async fn remove_when_down(rt: &Runtime, id: &str) {
    let _ = runtime::client::wait_stopped(rt.store(), id, Duration::from_secs(30)).await;
    if let Ok(c) = rt.container(id) {
        if let Err(e) = c.delete(true).await {
            log::warn!("remove {id}: {}", runtime::error_line(&e));
        }
    }
}

/// The pid containerd gets for the task: the QEMU process of its VM, the host process the
/// container lives in.
fn vm_pid_of(root: &Path, id: &str) -> u32 {
    runtime::state::Store::open(root)
        .and_then(|s| s.load(id))
        .ok()
        .and_then(|r| r.vm_pid)
        .unwrap_or(0)
}
