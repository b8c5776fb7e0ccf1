//! The per-container monitor: the process that owns one container's VM while it runs.
//!
//! It is started detached (its own session) by `start`/`run`, re-executing the `container`
//! binary. In order it: listens on `monitor.sock`; optionally waits for the first attach (so
//! `run` sees all output); creates the copy-on-write disk; boots the VM; configures the guest,
//! mounts the rootfs and starts the main process; then relays output to the log and to attached
//! clients and serves exec/kill/stop until the process or the VM ends; finally shuts the VM
//! down, records the exit in state.json and removes its sockets (and the whole container with
//! `--rm`). No step leaves a process, socket or disk behind when a later one fails.
//!
//! In hold mode (`MonitorOptions::hold`, for `cp` on a stopped container) it boots the VM
//! with the container's disks and mounts, creates the container without starting its process
//! or network, serves one copy (`copy.rs`), shuts down, and leaves the record's state alone.

mod copy;
mod fault;
mod health;
mod mounts;
pub(crate) mod network;
pub mod owner;
mod pause;
mod restart;
pub use fault::Fault;
pub use mounts::share_tag;
mod session;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use self::network::NetSession;
use crate::backend::{Booted, Guest, ProcessExit, VmBackend, VmRequest};
use crate::events;
use crate::logs::{LogWriter, Stream};
use crate::protocol::{ExitInfo, Frame};
use crate::state::{Status, Store};

/// Id of the main process inside the guest.
pub const MAIN: &str = "main";

/// How long `run` may take to attach before the monitor starts without it.
const ATTACH_WAIT: Duration = Duration::from_secs(30);
/// Grace for the guest to power off before the VM process is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Errors that keep the monitor from doing its job at all (anything later is recorded in
/// state.json as the container's exit instead). [`run`] records these too, except
/// [`MonitorError::AlreadyRunning`], whose record belongs to the other monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The state store failed.
    #[error("container state")]
    State(#[from] crate::state::StateError),
    /// The tokio runtime of the monitor process could not be built.
    #[error("start the monitor's async runtime")]
    Runtime(#[source] std::io::Error),
    /// The VM backend could not be set up.
    #[error("set up the VM backend")]
    Backend(#[source] crate::backend::BootError),
    /// The control socket could not be created.
    #[error("listen on {path}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The container is not in a state that can be started.
    #[error("cannot start: container {0} is already running")]
    AlreadyRunning(String),
}

/// Where the main process is in its life; watched by every client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// VM booting, process not yet started.
    Starting,
    /// The main process runs.
    Running,
    /// It could not be started (the info says why and with which code).
    Failed(ExitInfo),
    /// It ended and the VM is down.
    Exited(ExitInfo),
    /// It ended, the VM is down, and the restart policy starts it again after a delay
    /// (`restart.rs`); `Starting` follows.
    Restarting(ExitInfo),
    /// Hold mode: the container exists in the VM, its process was never started; only
    /// copies are served.
    Holding,
}

/// State shared between the monitor's main flow and client sessions.
pub(crate) struct Shared {
    pub(crate) guest: Mutex<Option<Arc<dyn Guest>>>,
    pub(crate) phase: watch::Sender<Phase>,
    /// Output subscribers (attached clients).
    pub(crate) clients: Mutex<Vec<mpsc::Sender<Frame>>>,
    /// Signalled when the first client attaches.
    pub(crate) attached: Notify,
    /// Stop requests.
    pub(crate) stop: mpsc::UnboundedSender<StopOrder>,
    /// A restart asked for the stop: an `--rm` container is not deleted when it ends.
    pub(crate) keep: std::sync::atomic::AtomicBool,
    pub(crate) exec_seq: std::sync::atomic::AtomicU64,
    /// The container's name, for messages.
    pub(crate) name: String,
    /// Signalled when a copy session ends (hold mode ends then).
    pub(crate) copy_done: Notify,
    /// `pause`/`unpause` of the VM.
    pub(crate) freezer: pause::Freezer,
    /// Users' stops and kills, as the restart policy weighs them.
    pub(crate) control: restart::RunControl,
    /// The container's records, for the events its sessions record.
    pub(crate) store: Store,
    /// The container's id.
    pub(crate) id: String,
    /// How the current run's main process ended, once it has and its output is delivered
    /// (its VM may still be going down); `None` while it runs.
    pub(crate) process_ended: watch::Sender<Option<ExitInfo>>,
}

impl Shared {
    /// Records an event of this container (see [`crate::events`]).
    pub(crate) fn event(&self, action: &str, extra: &[(&str, String)]) {
        events::container_event(&self.store, &self.id, action, extra);
    }

    pub(crate) fn guest(&self) -> Option<Arc<dyn Guest>> {
        self.guest.lock().ok().and_then(|g| g.clone())
    }

    async fn broadcast(&self, frame: Frame) {
        let clients: Vec<_> = match self.clients.lock() {
            Ok(c) => c.clone(),
            Err(_) => return,
        };
        for c in clients {
            // A client that went away is dropped from the list by its session.
            let _ = c.send(frame.clone()).await;
        }
    }
}

/// How to stop the main process: `signal` now, SIGKILL after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StopOrder {
    pub(crate) signal: i32,
    pub(crate) grace: Duration,
}

/// Options of one monitor run.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Wait (bounded) for the first attach before starting the process.
    pub wait_attach: bool,
    /// Hold mode, for copies on a stopped container: boot the VM and create the container
    /// without starting its process or its network, serve one copy, shut down, and leave the
    /// container's recorded state (status, exit code, times) as it was.
    pub hold: bool,
}

impl MonitorError {
    /// The stable category, for [`crate::exit`].
    pub fn code(&self) -> agent::ErrorCode {
        match self {
            MonitorError::AlreadyRunning(_) => agent::ErrorCode::WrongState,
            MonitorError::State(crate::state::StateError::NotFound(_)) => {
                agent::ErrorCode::NotFound
            }
            MonitorError::State(_) | MonitorError::Runtime(_) | MonitorError::Listen { .. } => {
                agent::ErrorCode::Io
            }
            MonitorError::Backend(_) => agent::ErrorCode::Internal,
        }
    }
}

/// The whole monitor process of container `id` under the state directory `root`, for the
/// binary's hidden [`crate::MONITOR_SUBCOMMAND`]: its own async runtime, the QEMU backend
/// with the vminitd [`crate::vminitd::find`] finds, then [`run`]. Returns the container's
/// exit code; a failure is recorded in the container's state before it is returned.
pub fn main(root: &std::path::Path, id: &str, opts: MonitorOptions) -> Result<i32, MonitorError> {
    let store = Store::open(root)?;
    let setup = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(MonitorError::Runtime)
        .and_then(|rt| {
            crate::real::QemuBackend::new(root, crate::vminitd::find())
                .map(|backend| (rt, backend))
                .map_err(MonitorError::Backend)
        });
    let (rt, backend) = match setup {
        Ok(s) => s,
        Err(e) => return Err(record_failure(&store, id, e)),
    };
    rt.block_on(run(&store, id, &backend, opts))
}

/// Runs the monitor of container `id` to completion; returns the container's exit code.
/// When the monitor cannot do its job at all, the reason is recorded in the container's
/// state (exit code from [`crate::exit`], no monitor) where `start` and `run` look for it,
/// and returned.
pub async fn run(
    store: &Store,
    id: &str,
    backend: &dyn VmBackend,
    opts: MonitorOptions,
) -> Result<i32, MonitorError> {
    match supervise(store, id, backend, opts).await {
        Ok(code) => {
            tracing::info!("container {id} exited with {code}");
            Ok(code)
        }
        Err(e) => Err(record_failure(store, id, e)),
    }
}

/// Leaves a monitor's own failure in the container's record (not when another monitor owns
/// the container: its record is that monitor's).
fn record_failure(store: &Store, id: &str, e: MonitorError) -> MonitorError {
    if matches!(e, MonitorError::AlreadyRunning(_)) {
        return e;
    }
    let code = crate::exit::exit_code(crate::exit::Termination::Failed(e.code()));
    let reason = crate::error_line(&e);
    if let Err(se) = store.update(id, |r| {
        r.exit_code = Some(code);
        r.exit_reason = Some(reason.clone());
        r.monitor_pid = None;
    }) {
        tracing::error!("record the monitor's failure ({reason}): {se}");
    }
    e
}

async fn supervise(
    store: &Store,
    id: &str,
    backend: &dyn VmBackend,
    opts: MonitorOptions,
) -> Result<i32, MonitorError> {
    let dir = store.dir_of(id);
    let record = store.load(id)?;
    if record.status.is_up() {
        return Err(MonitorError::AlreadyRunning(id.to_string()));
    }
    store.update_unsynced(id, |r| {
        r.monitor_pid = Some(std::process::id());
        if !opts.hold {
            r.exit_code = None;
            r.exit_reason = None;
            r.oom_killed = false;
            // A start by a user starts the restart policy over (moby's containerStart with
            // resetRestartManager).
            r.restart_count = 0;
            r.stopped_by_user = false;
        }
    })?;

    let sock_dir = store.make_socket_dir(id)?;
    let sock = sock_dir.join("monitor.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|source| MonitorError::Listen {
        path: sock.clone(),
        source,
    })?;
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel();
    let (phase, _) = watch::channel(Phase::Starting);
    let shared = Arc::new(Shared {
        guest: Mutex::new(None),
        phase,
        clients: Mutex::new(Vec::new()),
        attached: Notify::new(),
        stop: stop_tx,
        keep: Default::default(),
        exec_seq: Default::default(),
        name: record.name.clone(),
        store: store.clone(),
        id: id.to_string(),
        process_ended: watch::channel(None).0,
        copy_done: Notify::new(),
        freezer: pause::Freezer::new(store, &record),
        control: restart::RunControl::new(
            record
                .config
                .stop_signal
                .as_deref()
                .and_then(|s| crate::spec::parse_signal(s).ok()),
        ),
    });
    let accept = {
        let shared = shared.clone();
        let mut phase = shared.phase.subscribe();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                tokio::select! {
                    conn = listener.accept() => match conn {
                        Ok((stream, _)) => { tasks.spawn(session::serve(shared.clone(), stream)); }
                        Err(e) => { tracing::warn!("accept on monitor socket: {e}"); break; }
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    _ = async { let _ = phase.wait_for(|p| matches!(p, Phase::Exited(_) | Phase::Failed(_))).await; } => break,
                }
            }
            drop(listener);
            // Let every session deliver the exit to its client.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        })
    };

    let _shutdown = restart::ShutdownWatch::start(shared.clone());
    let _owner = owner::OwnerWatch::start(shared.clone());
    // A stop while waiting for the first attach (a containerd shim killed between launching
    // the monitor and attaching: its `delete` stops the container) ends the monitor here,
    // at once: nothing runs yet, and waiting out ATTACH_WAIT would outlast containerd's
    // patience with `delete`.
    let stopped_early = if opts.wait_attach {
        tokio::select! {
            _ = tokio::time::timeout(ATTACH_WAIT, shared.attached.notified()) => None,
            Some(order) = stop_rx.recv() => Some(order),
        }
    } else {
        None
    };

    // The volumes' exclusive holds outlive the VM: released only once it is down.
    let mut claims = Vec::new();
    let outcome = if let Some(order) = stopped_early {
        let never = Outcome {
            exit: ExitInfo {
                code: crate::exit::exit_code(crate::exit::Termination::Signaled(order.signal)),
                reason: Some("stopped before its process started".into()),
                error: None,
            },
            booted: None,
            network: None,
            started: false,
            oom_killed: false,
        };
        tear_down(store, &record, never, &mut claims).await
    } else if opts.hold {
        let held = hold(store, id, backend, &shared, &dir, &mut claims).await;
        tear_down(store, &record, held, &mut claims).await
    } else {
        let mut backoff = crate::restart::Backoff::default();
        loop {
            let run =
                start_and_supervise(store, id, backend, &shared, &mut stop_rx, &dir, &mut claims)
                    .await;
            let ended = tear_down(store, &record, run, &mut claims).await;
            if ended.oom_killed {
                events::container_event(store, id, "oom", &[]);
            }
            if ended.started {
                events::container_event(
                    store,
                    id,
                    "die",
                    &[("exitCode", ended.exit.code.to_string())],
                );
            }
            if let Ok(mut g) = shared.guest.lock() {
                *g = None;
            }
            if !restart::next_run(store, id, &shared, &mut stop_rx, &ended, &mut backoff).await {
                break ended;
            }
            shared.phase.send_replace(Phase::Starting);
        }
    };
    let info = outcome.exit;
    store.remove_sockets(id);
    if opts.hold {
        if let Err(e) = store.update(id, |r| {
            r.monitor_pid = None;
            r.vm_pid = None;
        }) {
            tracing::error!("record the end of the hold: {e}");
        }
        // A copy still waiting for the guest learns why there is none.
        shared.phase.send_replace(Phase::Failed(info.clone()));
        let _ = accept.await;
        return Ok(info.code);
    }
    // A `--rm` container goes even when its start failed, as docker's daemon removes an
    // AutoRemove container whose start failed (Apple's keeps it; we follow docker).
    let auto_remove =
        record.config.auto_remove && !shared.keep.load(std::sync::atomic::Ordering::SeqCst);
    let status = if outcome.started {
        Status::Exited
    } else {
        Status::Created
    };
    let record_exit = |r: &mut crate::state::ContainerRecord| {
        r.status = if status == Status::Created && r.started.is_some() {
            Status::Exited
        } else {
            status
        };
        r.exit_code = Some(info.code);
        r.exit_reason = info.reason.clone();
        r.oom_killed = outcome.oom_killed;
        r.paused = false;
        r.finished = Some(Utc::now());
        r.monitor_pid = None;
        r.vm_pid = None;
        r.ports.clear();
        r.stopped_by_user = shared.control.stopped_by_user();
    };
    // A disposable container's last record is read once, for the destroy event, unless its
    // removal fails: it need not wait for the disk.
    let saved = if auto_remove {
        store.update_unsynced(id, record_exit)
    } else {
        store.update(id, record_exit)
    };
    let mut doomed = None;
    if auto_remove {
        network::release(store, &record);
        let destroyed = store.load(id).unwrap_or_else(|_| record.clone());
        doomed = store.retire(id).ok().flatten();
        events::Journal::new(store.root()).record(&events::Event::container("destroy", &destroyed));
        crate::volume::remove_anonymous(store.root(), &record.config.mounts);
    } else if let Err(e) = saved {
        tracing::error!("record exit: {e}");
    }
    let final_phase = if outcome.started {
        Phase::Exited(info.clone())
    } else {
        Phase::Failed(info.clone())
    };
    shared.phase.send_replace(final_phase);
    // The container is gone for every reader already; deleting its files (the disk overlay
    // takes a while) need not hold up the client waiting for the exit.
    if let Some(dir) = doomed {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
    let _ = accept.await;
    Ok(info.code)
}

struct Outcome {
    exit: ExitInfo,
    booted: Option<Booted>,
    /// The container's networking, torn down after the VM.
    network: Option<NetSession>,
    /// Whether the main process ever ran.
    started: bool,
    /// Whether the guest's OOM killer killed a process of the container.
    oom_killed: bool,
}

/// Ends a run: its VM down (killed for a disposable container, else powered off), its
/// networking torn down, the volumes released.
async fn tear_down(
    store: &Store,
    record: &crate::state::ContainerRecord,
    outcome: Outcome,
    claims: &mut Vec<crate::volume::Claim>,
) -> restart::Ended {
    let guest = outcome.booted.as_ref().map(|b| b.guest.clone());
    if let (Some(guest), Some(_)) = (guest, crate::pod::infra_of(record)) {
        // The pod's VM goes on: the member's socket listeners in it end with the member.
        for (listener, _) in mounts::inbound_sockets(&record.id, &record.config.mounts) {
            if let Err(e) = guest.close_socket(&listener).await {
                tracing::debug!("close socket listener {listener}: {e}");
            }
        }
    }
    if let Some(mut booted) = outcome.booted {
        if disposable(record, claims) {
            booted.vm.kill().await;
        } else {
            shutdown_vm(&mut booted).await;
        }
        tracing::debug!("VM shut down");
    }
    if let Some(net) = outcome.network {
        net.finish();
    }
    // The pod's share, or a member's binds in it: the VM (or the member) is gone from them.
    if crate::pod::infra_name(record).is_some() {
        crate::pod::unshare_mount(&crate::pod::share_dir(store, &record.id));
    }
    crate::pod::release_binds(store, record);
    if let Some(ns) = &record.config.netns {
        net::podnet::detach(ns);
    }
    claims.clear();
    restart::Ended {
        exit: outcome.exit,
        started: outcome.started,
        oom_killed: outcome.oom_killed,
    }
}

/// A fault as the monitor reports it (see [`Fault::exit_info`]).
pub(super) fn fault(f: Fault) -> ExitInfo {
    f.exit_info()
}

/// The record and the VM's disks: the container's volumes claimed (in `claims`) and its
/// rootfs overlay made on first use (or its rootfs directory, shared).
async fn disks(
    store: &Store,
    id: &str,
    backend: &dyn VmBackend,
    dir: &std::path::Path,
    claims: &mut Vec<crate::volume::Claim>,
) -> Result<
    (
        crate::state::ContainerRecord,
        Vec<(String, PathBuf)>,
        crate::backend::VmRootfs,
    ),
    Fault,
> {
    let record = store.load(id).map_err(Fault::LoadState)?;
    let volumes =
        claim_volumes(store, &record.config.mounts, claims).map_err(Fault::ClaimVolumes)?;
    if crate::pod::infra_of(&record).is_some() {
        let disks = crate::pod::attach_disks(store, &record).map_err(Fault::PodDisks)?;
        let member = crate::backend::PodMember {
            socket: crate::pod::socket(store, &disks.infra),
            guest_dir: disks.guest_dir,
            directory: disks.directory,
        };
        return Ok((record, volumes, crate::backend::VmRootfs::Pod(member)));
    }
    if let Some(rootfs) = &record.config.rootfs_dir {
        let share = crate::backend::HostShare {
            dir: rootfs.clone(),
            readonly: false,
            device_nodes: true,
        };
        return Ok((record, volumes, crate::backend::VmRootfs::Share(share)));
    }
    let overlay = dir.join("rootfs.qcow2");
    if !overlay.exists() {
        if let Err(source) = backend
            .create_overlay(&record.config.rootfs, &overlay)
            .await
        {
            let _ = std::fs::remove_file(&overlay);
            return Err(Fault::CreateOverlay {
                path: overlay,
                source,
            });
        }
    }
    Ok((record, volumes, crate::backend::VmRootfs::Disk(overlay)))
}

/// The guest side every VM of a container gets, started or held: names and network, the
/// rootfs at `/dev/vda`, its volumes, binds and tmpfs mounts for the container to be created.
async fn set_up_guest(
    guest: &dyn crate::backend::Guest,
    record: &crate::state::ContainerRecord,
    network: &crate::backend::GuestNetwork,
    volumes: &[(String, PathBuf)],
) -> Result<(), Fault> {
    // A pod's member lives in a VM its pod configured.
    if crate::pod::infra_of(record).is_none() {
        guest
            .configure(&record.config.hostname, network)
            .await
            .map_err(Fault::Configure)?;
        tracing::debug!("guest configured");
    }
    let member_dir;
    let (source, fstype, disks_before) = match (&record.config.rootfs_dir, &record.config.pod) {
        (_, Some(crate::state::PodRole::Member { .. })) => {
            member_dir = format!(
                "{}/{}",
                crate::pod::GUEST_POD_DIR,
                crate::pod::guest_name(&record.id)
            );
            (member_dir.as_str(), crate::pod::MEMBER_FSTYPE, 0)
        }
        (Some(_), _) => (crate::backend::ROOTFS_TAG, "virtiofs", 0),
        (None, _) => ("/dev/vda", "ext4", 1),
    };
    guest
        .mount_rootfs(source, fstype)
        .await
        .map_err(Fault::MountRootfs)?;
    tracing::debug!("root filesystem mounted");
    let mounts = if crate::pod::infra_of(record).is_some() {
        mounts::member_mounts(guest, &record.id, source, &record.config.mounts)
            .await
            .map_err(Fault::MountVolumes)?
    } else {
        mounts::prepare(
            guest,
            &record.id,
            disks_before,
            volumes,
            &record.config.mounts,
        )
        .await
        .map_err(Fault::MountVolumes)?
    };
    guest.set_container_mounts(mounts, record.config.read_only, record.config.privileged);
    guest.set_container_tuning(crate::backend::ContainerTuning {
        sysctls: record.config.sysctls.clone(),
        shm_size: record.config.shm_size,
        cgroupns_host: record.config.cgroupns_host,
        devices: record.config.devices.clone(),
        masked_paths: record.config.masked_paths.clone(),
        readonly_paths: record.config.readonly_paths.clone(),
    });
    Ok(())
}

/// Runs the container: [`start`] it, then [`relay_until_exit`] it until its main process ends.
async fn start_and_supervise(
    store: &Store,
    id: &str,
    backend: &dyn VmBackend,
    shared: &Arc<Shared>,
    stop_rx: &mut mpsc::UnboundedReceiver<StopOrder>,
    dir: &std::path::Path,
    claims: &mut Vec<crate::volume::Claim>,
) -> Outcome {
    match start(store, id, backend, shared, dir, claims).await {
        Ok(running) => {
            let checks = health::Checker::start(store, shared, &running.record, &running.booted);
            let outcome = relay_until_exit(shared, stop_rx, dir, running).await;
            checks.stop(store, id).await;
            outcome
        }
        Err(failed) => *failed,
    }
}

/// A container whose main process runs.
struct Running {
    record: crate::state::ContainerRecord,
    booted: Booted,
    network: Option<NetSession>,
    output: crate::backend::ProcessOutput,
    /// Relays of socket binds and published sockets, for as long as the process runs.
    sockets: crate::sockets::SocketRelays,
}

/// Disks, network, VM, guest set-up and the main process; the record says `running` after.
/// A failure is the outcome to record, with what was set up so far for the teardown.
async fn start(
    store: &Store,
    id: &str,
    backend: &dyn VmBackend,
    shared: &Arc<Shared>,
    dir: &std::path::Path,
    claims: &mut Vec<crate::volume::Claim>,
) -> Result<Running, Box<Outcome>> {
    let fail = |exit: ExitInfo, booted: Option<Booted>, network: Option<NetSession>| {
        Box::new(Outcome {
            exit,
            booted,
            network,
            started: false,
            oom_killed: false,
        })
    };
    let (record, volumes, rootfs) = match disks(store, id, backend, dir, claims).await {
        Ok(d) => d,
        Err(f) => return Err(fail(fault(f), None, None)),
    };
    let pod_share = match pod_share(store, &record) {
        Ok(s) => s,
        Err(f) => return Err(fail(fault(f), None, None)),
    };
    // A namespace someone else networked (a CRI sandbox's): the VM takes its interface over.
    let pod_net = match &record.config.netns {
        Some(ns) => match net::podnet::attach(ns) {
            Ok(i) => Some(i),
            Err(e) => {
                net::podnet::detach(ns);
                return Err(fail(fault(Fault::PodNetwork(e)), None, None));
            }
        },
        None => None,
    };
    // Ports and taps before the VM: a taken host port fails the start here.
    let network = match NetSession::prepare(store, &record) {
        Ok(n) => n,
        Err(e) => return Err(fail(fault(Fault::PrepareNetwork(e)), None, None)),
    };
    if let Some(n) = &network {
        let ports = n.ports();
        // A user-mode interface has no lease in the network store: the record tells inspect.
        let user = n.user_attachment().map(|a| {
            serde_json::json!({
                "network": a.network,
                "address": a.address.to_string(),
                "gateway": a.gateway.to_string(),
                "mac": a.mac,
            })
        });
        let _ = store.update(id, |r| {
            r.ports = ports;
            r.networks = user.into_iter().collect();
        });
    }
    let req = VmRequest {
        dir: dir.to_path_buf(),
        socket_dir: store.socket_dir(id),
        rootfs,
        console_log: dir.join("boot.log"),
        options: record.config.vm.clone(),
        nets: match &pod_net {
            Some(i) => vec![crate::backend::NetDevice {
                tap: net::podnet::POD_TAP.into(),
                mac: i.mac.clone(),
                user: None,
            }],
            None => network.as_ref().map(|n| n.devices()).unwrap_or_default(),
        },
        volume_disks: volumes.iter().map(|(_, disk)| disk.clone()).collect(),
        shares: mounts::host_shares(&record.config.mounts),
        pod_share,
        netns: record.config.netns.clone(),
    };
    let mut guest_network = network::guest(network.as_ref(), store, &record);
    if let Some(i) = &pod_net {
        guest_network.interfaces = vec![net::Attachment {
            network: "pod".into(),
            network_id: String::new(),
            tap: net::podnet::POD_TAP.into(),
            mac: i.mac.clone(),
            address: i.address,
            gateway: i.gateway,
            address6: None,
            gateway6: None,
            mtu: i.mtu,
            dns: Vec::new(),
        }];
    }
    tracing::debug!("booting the VM");
    let booted = match backend.boot(&req).await {
        Ok(b) => b,
        Err(e) => return Err(fail(fault(Fault::Boot(e)), None, network)),
    };
    let _ = store.update_unsynced(id, |r| {
        r.vm_pid = booted.vm.pid();
        r.vm_template = booted.template.clone();
        r.vm_prebooted = booted.prebooted;
    });
    let guest = booted.guest.clone();
    if let Ok(mut g) = shared.guest.lock() {
        *g = Some(guest.clone());
    }
    shared.freezer.set_vm(booted.vm.control());
    let prepared = async {
        set_up_guest(&*guest, &record, &guest_network, &volumes).await?;
        if crate::pod::infra_name(&record).is_some() {
            share_pod(store, id, &*guest).await?;
        }
        guest.set_container_resources(record.config.resources);
        // Before the process: a published socket that cannot be made fails the start.
        let sockets = guest
            .relay_sockets(
                mounts::inbound_sockets(&record.id, &record.config.mounts),
                &record.config.publish_sockets,
            )
            .map_err(Fault::Sockets)?;
        let output = guest
            .spawn(MAIN, &record.config.process)
            .await
            .map_err(Fault::StartProcess)?;
        Ok::<_, Fault>((output, sockets))
    };
    tracing::debug!("guest agent connected");
    let (output, sockets) = match prepared.await {
        Ok(o) => o,
        Err(f) => return Err(fail(fault(f), Some(booted), network)),
    };
    let network = match network.map(|n| n.start(store, id)).transpose() {
        Ok(n) => n,
        Err(e) => {
            let _ = guest.signal(MAIN, libc::SIGKILL).await;
            return Err(fail(fault(Fault::StartNetwork(e)), Some(booted), None));
        }
    };
    let _ = store.update(id, |r| {
        r.status = Status::Running;
        r.started = Some(Utc::now());
        r.finished = None;
        // A restart's new run has no exit yet (docker's setRunning).
        r.exit_code = None;
        r.exit_reason = None;
        r.oom_killed = false;
        // Every start, restarts included, starts the checks over (moby's initHealthMonitor).
        r.health = crate::health::Health::at_start(r.config.healthcheck.as_ref(), r.health.take());
    });
    shared.phase.send_replace(Phase::Running);
    events::container_event(store, id, "start", &[]);
    tracing::debug!("main process started");
    backend.started();
    Ok(Running {
        record,
        booted,
        network,
        output,
        sockets,
    })
}

/// Relays the main process's output to the log and attached clients and serves stops until
/// the process (or its VM) ends.
async fn relay_until_exit(
    shared: &Arc<Shared>,
    stop_rx: &mut mpsc::UnboundedReceiver<StopOrder>,
    dir: &std::path::Path,
    running: Running,
) -> Outcome {
    let Running {
        record,
        booted,
        network,
        output,
        sockets: _sockets,
    } = running;
    shared.process_ended.send_replace(None);
    let guest = booted.guest.clone();
    let log_path = dir.join("container.log");
    let log = match LogWriter::for_config(&log_path, &record.config.log) {
        Ok(l) => Arc::new(Mutex::new(l)),
        Err(source) => {
            let _ = guest.signal(MAIN, libc::SIGKILL).await;
            return Outcome {
                exit: fault(Fault::OpenLog {
                    path: log_path,
                    source,
                }),
                booted: Some(booted),
                network,
                started: true,
                oom_killed: false,
            };
        }
    };
    let mut pumps = JoinSet::new();
    pumps.spawn(pump(
        shared.clone(),
        log.clone(),
        Stream::Stdout,
        output.stdout,
    ));
    pumps.spawn(pump(
        shared.clone(),
        log.clone(),
        Stream::Stderr,
        output.stderr,
    ));

    let mut booted = booted;
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // A stopper whose guest does not answer asks for the VM to be killed here.
    let (vm_kill, mut vm_kill_rx) = mpsc::unbounded_channel();
    let mut killed_vm = false;
    let exit = loop {
        tokio::select! {
            Some(()) = vm_kill_rx.recv(), if !killed_vm => {
                killed_vm = true;
                booted.vm.kill().await;
            }
            r = guest.wait(MAIN) => break match r {
                Ok(how) => ExitInfo::exited(how),
                Err(_) if killed_vm => ExitInfo::exited(ProcessExit::Signal(libc::SIGKILL)),
                // A lost agent connection usually means the VM died: report that instead.
                Err(e) => match tokio::time::timeout(Duration::from_secs(2), booted.vm.wait()).await {
                    Ok(why) => fault(Fault::VmExited(why.0)),
                    Err(_) => fault(Fault::WaitProcess(e)),
                },
            },
            why = booted.vm.wait() => {
                // Killed by the stop: the process ends as SIGKILL ends it.
                if killed_vm {
                    break ExitInfo::exited(ProcessExit::Signal(libc::SIGKILL));
                }
                break fault(Fault::VmExited(why.0));
            }
            Some(order) = stop_rx.recv() => {
                // A frozen guest takes no signal: docker's stop of a paused container
                // unpauses it too.
                shared.freezer.thaw(&*guest).await;
                spawn_stopper(guest.clone(), order, vm_kill.clone());
            }
            Some(_) = async { match sigterm.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                // Stopped as `stop` would stop it (a host shutdown, `kill` of the monitor),
                // and not restarted.
                shared.control.shut_down();
                let order = StopOrder {
                    signal: record.config.signal_to_stop(),
                    grace: record.config.grace_to_stop(),
                };
                shared.freezer.thaw(&*guest).await;
                spawn_stopper(guest.clone(), order, vm_kill.clone());
            }
        }
    };
    tracing::debug!("main process ended: {exit:?}");
    let (exit, oom_killed) = if exit.reason.is_none() {
        oom_check(&*guest, exit, &record.config.resources).await
    } else {
        (exit, false)
    };
    tracing::debug!("OOM count read");
    // Output already produced is still delivered; a dead VM produces no more.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while pumps.join_next().await.is_some() {}
    })
    .await;
    // What the early attachers read after their Exit: the OOM kill, before the teardown.
    if oom_killed {
        let _ = shared.store.update(&shared.id, |r| r.oom_killed = true);
    }
    shared.process_ended.send_replace(Some(exit.clone()));
    Outcome {
        exit,
        booted: Some(booted),
        network,
        started: true,
        oom_killed,
    }
}

/// How long hold mode waits for its copy before it gives up.
const HOLD_WAIT: Duration = Duration::from_secs(60);

/// Hold mode (see [`MonitorOptions::hold`]): the VM with the container's disks and mounts,
/// no network, the container created but not started; ends after the first copy session.
async fn hold(
    store: &Store,
    id: &str,
    backend: &dyn VmBackend,
    shared: &Arc<Shared>,
    dir: &std::path::Path,
    claims: &mut Vec<crate::volume::Claim>,
) -> Outcome {
    let fail = |exit: ExitInfo, booted: Option<Booted>| Outcome {
        exit,
        booted,
        network: None,
        started: false,
        oom_killed: false,
    };
    let (record, volumes, rootfs) = match disks(store, id, backend, dir, claims).await {
        Ok(d) => d,
        Err(f) => return fail(fault(f), None),
    };
    let req = VmRequest {
        dir: dir.to_path_buf(),
        socket_dir: store.socket_dir(id),
        rootfs,
        console_log: dir.join("boot.log"),
        options: record.config.vm.clone(),
        nets: Vec::new(),
        volume_disks: volumes.iter().map(|(_, disk)| disk.clone()).collect(),
        shares: mounts::host_shares(&record.config.mounts),
        pod_share: None,
        netns: None,
    };
    let mut booted = match backend.boot(&req).await {
        Ok(b) => b,
        Err(e) => return fail(fault(Fault::Boot(e)), None),
    };
    let _ = store.update_unsynced(id, |r| {
        r.vm_pid = booted.vm.pid();
        r.vm_template = booted.template.clone();
        r.vm_prebooted = booted.prebooted;
    });
    let guest = booted.guest.clone();
    if let Ok(mut g) = shared.guest.lock() {
        *g = Some(guest.clone());
    }
    let prepared = async {
        set_up_guest(&*guest, &record, &Default::default(), &volumes).await?;
        // Not the container's own command: it never runs here, and a copy must work even
        // when that command or its user does not resolve (a broken image, a typo). Every
        // container has /proc/self/exe (the init's own binary), and root always resolves.
        let placeholder = crate::spec::ProcessSpec {
            args: vec!["/proc/self/exe".into()],
            cwd: "/".into(),
            capabilities: record.config.process.capabilities.clone(),
            ..Default::default()
        };
        guest
            .prepare(MAIN, &placeholder)
            .await
            .map_err(Fault::HoldContainer)
    };
    if let Err(f) = prepared.await {
        return fail(fault(f), Some(booted));
    }
    let done = shared.copy_done.notified();
    shared.phase.send_replace(Phase::Holding);
    tracing::debug!("holding the container for a copy");
    let exit = tokio::select! {
        _ = done => ExitInfo::exited(ProcessExit::Code(0)),
        _ = tokio::time::sleep(HOLD_WAIT) => fault(Fault::NoCopy(HOLD_WAIT.as_secs())),
        why = booted.vm.wait() => fault(Fault::VmExited(why.0)),
    };
    fail(exit, Some(booted))
}

/// The container's OOM kill count from the guest's statistics (0 when they fail).
async fn oom_count(guest: &dyn Guest) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), guest.stats()).await {
        Ok(Ok(s)) => s.oom_kills,
        Ok(Err(e)) => {
            tracing::warn!("cannot read the container's OOM count: {e}");
            0
        }
        Err(_) => {
            tracing::warn!("the guest did not report the container's OOM count in time");
            0
        }
    }
}

/// Asks the guest whether its OOM killer hit the container (the cgroup's `oom_kill` count,
/// which counts cgroup and guest-wide OOM kills alike). A main process killed that way gets
/// a reason saying so.
async fn oom_check(
    guest: &dyn Guest,
    exit: ExitInfo,
    limits: &crate::resources::ResourceLimits,
) -> (ExitInfo, bool) {
    // The guest reports the count with the exit (one round trip less, ~15 ms under TCG); a
    // guest that did not is asked.
    let reported = guest.oom_kills_at_exit(MAIN);
    let kills = match reported {
        Some(n) => n,
        None => oom_count(guest).await,
    };
    if kills == 0 {
        return (exit, false);
    }
    if exit.code != ProcessExit::Signal(libc::SIGKILL).code() {
        return (exit, true);
    }
    let limit = match limits.memory_bytes {
        Some(b) => format!("its memory limit ({} MiB)", b.div_ceil(1 << 20)),
        None => "the VM's memory (no -m limit)".to_string(),
    };
    let reason = format!("the container ran out of memory: it reached {limit} and was OOM-killed");
    (
        ExitInfo {
            reason: Some(reason),
            ..exit
        },
        true,
    )
}

/// Takes every volume the container mounts (each once, in first-use order) and returns
/// `(name, disk image)` pairs: the order the disks are attached in, `/dev/vdb` onwards.
fn claim_volumes(
    store: &Store,
    mounts: &[crate::volume::MountSpec],
    claims: &mut Vec<crate::volume::Claim>,
) -> Result<Vec<(String, PathBuf)>, crate::volume::VolumeError> {
    let vols = crate::volume::VolumeStore::open(store.root())?;
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for m in mounts {
        if let crate::volume::MountSpec::Volume { source, .. } = m {
            if out.iter().any(|(n, _)| n == source) {
                continue;
            }
            claims.push(vols.claim(source)?);
            out.push((source.clone(), vols.disk(source)));
        }
    }
    Ok(out)
}

/// How long a container's main process gets to end after its SIGKILL (answered or not)
/// before its VM is killed from the host.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The stop signal now, SIGKILL after the grace period, and the VM's end (through `vm_kill`)
/// when the process has not ended [`KILL_WAIT`] after that: a guest whose agent no longer
/// answers (hung, or hostile) must not keep its container from stopping. Once the process
/// has ended nobody reads `vm_kill`, so a late request does nothing.
fn spawn_stopper(guest: Arc<dyn Guest>, order: StopOrder, vm_kill: mpsc::UnboundedSender<()>) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + order.grace;
        let _ = tokio::time::timeout_at(deadline, guest.signal(MAIN, order.signal)).await;
        tokio::time::sleep_until(deadline).await;
        let _ = tokio::time::timeout(KILL_WAIT, guest.signal(MAIN, libc::SIGKILL)).await;
        tokio::time::sleep(KILL_WAIT).await;
        if vm_kill.send(()).is_ok() {
            tracing::warn!("the container's process did not end after SIGKILL: killing its VM");
        }
    });
}

async fn pump(
    shared: Arc<Shared>,
    log: Arc<Mutex<LogWriter>>,
    stream: Stream,
    mut rx: mpsc::Receiver<Bytes>,
) {
    // Output that cannot be logged (a full disk) is dropped, told once per spell rather than
    // once per chunk: a chatty container would otherwise flood the monitor's own log. The
    // lock is released before telling: the monitor's log may be on the same full disk.
    let mut dropped = 0u64;
    while let Some(chunk) = rx.recv().await {
        let written = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(stream, &chunk);
        match written {
            Err(e) => {
                if dropped == 0 {
                    tracing::warn!(
                        "write container log: {e}; its output is not logged until this passes"
                    );
                }
                dropped += 1;
            }
            Ok(()) if dropped > 0 => {
                tracing::warn!(
                    "container log written again ({dropped} chunks of output were not logged)"
                );
                dropped = 0;
            }
            Ok(()) => {}
        }
        let frame = match stream {
            Stream::Stdout => Frame::Stdout(chunk),
            Stream::Stderr => Frame::Stderr(chunk),
        };
        shared.broadcast(frame).await;
    }
    let _ = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .flush_stream(stream);
}

/// Whether nothing the guest could still have to write matters once the container is gone: a
/// `--rm` container whose only disk is its own root filesystem (deleted with it), with no
/// volume and no host directory. Its VM is killed instead of powered off, which under TCG
/// saves about 100 ms of guest shutdown (unmounts, syncs, the kernel's power-off path).
fn disposable(record: &crate::state::ContainerRecord, claims: &[crate::volume::Claim]) -> bool {
    record.config.auto_remove
        && claims.is_empty()
        && mounts::host_shares(&record.config.mounts).is_empty()
}

/// The share of a pod's infra container (its directory made first); None for others.
fn pod_share(
    store: &Store,
    record: &crate::state::ContainerRecord,
) -> Result<Option<crate::backend::HostShare>, Fault> {
    if crate::pod::infra_name(record).is_none() {
        return Ok(None);
    }
    let files = crate::pod::files_dir(store, &record.id);
    let share = crate::pod::share_dir(store, &record.id);
    for dir in [&files, &share] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Fault::PodShare(format!("{}: {e}", dir.display())))?;
    }
    // Without the mount (not root) the pod serves its files directly, and its containers
    // cannot have bind mounts.
    let dir = match crate::pod::share_mount(&files, &share) {
        Ok(()) => share,
        Err(e) => {
            tracing::warn!("{}", crate::error_line(&e));
            files
        }
    };
    Ok(Some(crate::backend::HostShare {
        dir,
        readonly: false,
        device_nodes: true,
    }))
}

/// An infra container's part: the pod's share mounted in the guest, and its agent connection
/// shared on the pod's socket for the members' monitors. The sharing ends with the VM.
async fn share_pod(
    store: &Store,
    id: &str,
    guest: &dyn crate::backend::Guest,
) -> Result<(), Fault> {
    let mount = crate::backend::GuestMount {
        source: crate::pod::POD_TAG.into(),
        target: crate::pod::GUEST_POD_DIR.into(),
        fstype: "virtiofs".into(),
        options: Vec::new(),
    };
    guest.mount(&mount).await.map_err(Fault::MountVolumes)?;
    let client = guest
        .agent_client()
        .ok_or_else(|| Fault::PodShare("this guest cannot be shared".into()))?;
    let path = crate::pod::socket(store, id);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Fault::PodShare(format!("listen on {}: {e}", path.display())))?;
    drop(client.share(listener));
    Ok(())
}

/// Powers the guest off, killing the VM process if it does not go in time.
async fn shutdown_vm(booted: &mut Booted) {
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, booted.guest.shutdown()).await;
    if tokio::time::timeout(SHUTDOWN_GRACE, booted.vm.wait())
        .await
        .is_err()
    {
        booted.vm.kill().await;
    }
}

#[cfg(test)]
mod tests;
