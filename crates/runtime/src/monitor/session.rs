//! One client connection to the monitor: attach, wait-started, exec, kill, stop, stats or a
//! copy (`copy.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::{fault, Fault, Phase, Shared, MAIN};
use crate::backend::Guest;
use crate::protocol::{
    read_frame, write_frame, ExitInfo, Frame, Hello, ProtocolError, Request, PROTOCOL_VERSION,
    PROTOCOL_VERSION_NO_HANDSHAKE,
};
use crate::spec::ProcessSpec;

/// Serves one connection until its request is done or the client hangs up.
pub(crate) async fn serve(shared: Arc<Shared>, stream: UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    match handshake(&mut rd, &mut wr).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!("monitor client: {e}");
            return;
        }
    }
    let request = match read_frame(&mut rd).await {
        Ok(Some(Frame::Request(r))) => r,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!("monitor client: {e}");
            return;
        }
    };
    let result = match request {
        Request::Attach { stdin, early_exit } => {
            attach(&shared, &mut rd, &mut wr, stdin, early_exit).await
        }
        Request::WaitStarted => match started(&shared).await {
            Ok(()) => write_frame(&mut wr, &Frame::Started(MAIN.into())).await,
            Err(info) => write_frame(&mut wr, &Frame::Error(info)).await,
        },
        Request::Exec { spec, detach } => exec(&shared, &mut rd, &mut wr, spec, detach).await,
        Request::Kill { signal } => {
            shared.event("kill", &[("signal", signal.to_string())]);
            let ends_restarts = shared.control.kill(signal);
            if matches!(*shared.phase.borrow(), Phase::Restarting(_)) {
                // Nothing runs between two runs: the kill only decides whether the next
                // comes (docker's kill of a restarting container).
                if ends_restarts {
                    let _ = shared.stop.send(super::StopOrder {
                        signal,
                        grace: std::time::Duration::ZERO,
                    });
                }
                write_frame(&mut wr, &Frame::Ok).await
            } else {
                // A paused container's kill is held or thaws it first (`kill`).
                write_frame(&mut wr, &kill(&shared, signal).await).await
            }
        }
        Request::Pause => {
            let reply = match running_guest(&shared, "pause") {
                Ok(g) => match shared.freezer.pause(&*g).await {
                    Ok(()) => {
                        shared.event("pause", &[]);
                        Frame::Ok
                    }
                    Err(f) => Frame::Error(fault(f)),
                },
                Err(info) => Frame::Error(info),
            };
            write_frame(&mut wr, &reply).await
        }
        Request::Unpause => {
            let reply = match running_guest(&shared, "unpause") {
                Ok(g) => match shared.freezer.unpause(&*g).await {
                    Ok(()) => {
                        shared.event("unpause", &[]);
                        Frame::Ok
                    }
                    Err(f) => Frame::Error(fault(f)),
                },
                Err(info) => Frame::Error(info),
            };
            write_frame(&mut wr, &reply).await
        }
        Request::Wait => write_frame(&mut wr, &Frame::Exit(ended(&shared).await)).await,
        Request::Top => {
            let reply = on_guest(&shared, "list processes", Fault::Top, |g| async move {
                g.processes().await.map(|p| Frame::Processes(Box::new(p)))
            });
            write_frame(&mut wr, &reply.await).await
        }
        Request::CopyOut {
            path,
            follow_link,
            export,
        } => {
            let what = match export {
                true => super::copy::Source::Rootfs,
                false => super::copy::Source::Path(&path, follow_link),
            };
            super::copy::copy_out(&shared, &mut rd, &mut wr, what).await
        }
        Request::CopyIn {
            path,
            source,
            preserve_owner,
        } => super::copy::copy_in(&shared, &mut rd, &mut wr, &path, source, preserve_owner).await,
        Request::Stats if shared.freezer.is_paused() => {
            // A frozen guest cannot answer: the reading from just before the freeze (its
            // CPU use since is nil, as docker shows a paused container).
            let reply = match shared.freezer.frozen_sample().await {
                Some(s) => Frame::Stats(Box::new(s)),
                None => Frame::Error(fault(shared.freezer.refusal("reading statistics"))),
            };
            write_frame(&mut wr, &reply).await
        }
        Request::Stats => {
            let reply = on_guest(&shared, "get statistics", Fault::Stats, |g| async move {
                g.stats().await.map(|s| Frame::Stats(Box::new(s)))
            });
            write_frame(&mut wr, &reply.await).await
        }
        Request::Update { limits } => {
            let reply = on_guest(&shared, "update", Fault::Update, |g| async move {
                g.update_resources(limits).await.map(|()| Frame::Ok)
            });
            write_frame(&mut wr, &reply.await).await
        }
        Request::Stop {
            timeout_secs,
            signal,
            restart,
        } => {
            if restart {
                shared.keep.store(true, Ordering::SeqCst);
            }
            shared.control.stop();
            let signal = signal.unwrap_or(libc::SIGTERM);
            shared.event("kill", &[("signal", signal.to_string())]);
            let _ = shared.stop.send(super::StopOrder {
                signal,
                grace: std::time::Duration::from_secs(timeout_secs),
            });
            let info = ended(&shared).await;
            // After its `die` (docker's order: kill, die, stop).
            shared.event("stop", &[]);
            write_frame(&mut wr, &Frame::Exit(info)).await
        }
    };
    if let Err(e) = result {
        tracing::debug!("monitor client went away: {e}");
    }
}

/// The monitor's half of the version handshake (see [`crate::protocol`]): whether the
/// session goes on. A client of another version gets our version (and decides what to say);
/// a client from before the handshake, whose first frame is its request, is answered with an
/// error naming both versions, which it prints.
async fn handshake<R, W>(rd: &mut R, wr: &mut W) -> Result<bool, ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = Hello {
        version: PROTOCOL_VERSION,
    };
    match read_frame(rd).await? {
        Some(Frame::Hello(hello)) => {
            write_frame(wr, &Frame::HelloAck(ours)).await?;
            if hello.version != PROTOCOL_VERSION {
                tracing::warn!(
                    "monitor client speaks protocol version {}, this monitor {PROTOCOL_VERSION}",
                    hello.version
                );
                return Ok(false);
            }
            Ok(true)
        }
        Some(Frame::Request(_)) => {
            let reason = format!(
                "this container's monitor speaks protocol version {PROTOCOL_VERSION}, this \
                 client version {PROTOCOL_VERSION_NO_HANDSHAKE}: it was started by another \
                 `container` binary; use that binary"
            );
            let info = ExitInfo::failed(agent::ErrorCode::ProtocolVersion, reason);
            write_frame(wr, &Frame::Error(info)).await?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Runs `call` on the running guest: its answer, or an `Error` frame (the guest's error as
/// the fault `failed` makes of it) when it fails or the container does not run.
async fn on_guest<F, Fut>(
    shared: &Shared,
    op: &'static str,
    failed: fn(crate::backend::GuestError) -> Fault,
    call: F,
) -> Frame
where
    F: FnOnce(Arc<dyn Guest>) -> Fut,
    Fut: std::future::Future<Output = Result<Frame, crate::backend::GuestError>>,
{
    match awake_guest(shared, op) {
        Ok(g) => call(g)
            .await
            .unwrap_or_else(|e| Frame::Error(fault(failed(e)))),
        Err(info) => Frame::Error(info),
    }
}

fn not_running(op: &'static str) -> ExitInfo {
    fault(Fault::NotRunning { op })
}

fn running_guest(shared: &Shared, op: &'static str) -> Result<Arc<dyn Guest>, ExitInfo> {
    if *shared.phase.borrow() != Phase::Running {
        return Err(not_running(op));
    }
    shared.guest().ok_or_else(|| not_running(op))
}

/// [`running_guest`], refused while the VM is frozen (its agent could not answer).
fn awake_guest(shared: &Shared, op: &'static str) -> Result<Arc<dyn Guest>, ExitInfo> {
    let guest = running_guest(shared, op)?;
    if shared.freezer.is_paused() {
        return Err(fault(shared.freezer.refusal(op)));
    }
    Ok(guest)
}

/// `kill`: the signal now, or held until `unpause` when docker would leave the container
/// paused ([`super::pause`]).
async fn kill(shared: &Shared, signal: i32) -> Frame {
    let g = match running_guest(shared, "kill") {
        Ok(g) => g,
        Err(info) => return Frame::Error(info),
    };
    match shared.freezer.hold_signal(&*g, signal).await {
        Ok(true) => Frame::Ok,
        Ok(false) => match g.signal(MAIN, signal).await {
            Ok(()) => Frame::Ok,
            Err(e) => Frame::Error(fault(Fault::Kill(e))),
        },
        Err(f) => Frame::Error(fault(f)),
    }
}

/// Waits until the main process runs; Err with the reason if it never will.
async fn started(shared: &Shared) -> Result<(), ExitInfo> {
    let mut rx = shared.phase.subscribe();
    let phase = rx
        .wait_for(|p| *p != Phase::Starting)
        .await
        .map(|p| p.clone());
    match phase {
        // Between two runs under a restart policy, or already ended (a process that exits at
        // once, seen only after its end when the phase moved on twice): it did start, as
        // docker's `start` of such a container succeeds. A start that failed is `Failed`.
        Ok(Phase::Running | Phase::Restarting(_) | Phase::Exited(_)) => Ok(()),
        Ok(Phase::Failed(info)) => Err(info),
        _ => Err(not_running("attach")),
    }
}

/// Waits until the current run of the main process has ended and its VM is down (a restart
/// policy may start another).
async fn run_ended(shared: &Shared) -> ExitInfo {
    let mut rx = shared.phase.subscribe();
    let phase = rx
        .wait_for(|p| {
            matches!(
                p,
                Phase::Exited(_) | Phase::Failed(_) | Phase::Restarting(_)
            )
        })
        .await
        .map(|p| p.clone());
    match phase {
        Ok(Phase::Exited(i) | Phase::Failed(i) | Phase::Restarting(i)) => i,
        _ => fault(Fault::MonitorEnded),
    }
}

/// Waits until the main process has ended for good (no restart follows) and the VM is down.
async fn ended(shared: &Shared) -> ExitInfo {
    let mut rx = shared.phase.subscribe();
    let phase = rx
        .wait_for(|p| matches!(p, Phase::Exited(_) | Phase::Failed(_)))
        .await
        .map(|p| p.clone());
    match phase {
        Ok(Phase::Exited(i) | Phase::Failed(i)) => i,
        _ => fault(Fault::MonitorEnded),
    }
}

/// Client → process frames of one session, handled by a task of their own: a process that
/// does not read its stdin holds back the client's stdin (the session reads the client only
/// while this short queue has room), never the output the session delivers meanwhile.
struct ToProcess {
    tx: mpsc::Sender<Frame>,
    task: tokio::task::JoinHandle<()>,
}

impl ToProcess {
    fn new(guest: Arc<dyn Guest>, id: String) -> ToProcess {
        let (tx, mut rx) = mpsc::channel::<Frame>(4);
        let task = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                client_frame(&guest, &id, frame).await;
            }
        });
        ToProcess { tx, task }
    }

    /// Whether another client frame can be taken now.
    fn has_room(&self) -> bool {
        self.tx.capacity() > 0
    }

    /// Queues a frame; only called after [`ToProcess::has_room`], by the one session loop.
    fn push(&self, frame: Frame) {
        let _ = self.tx.try_send(frame);
    }
}

impl Drop for ToProcess {
    fn drop(&mut self) {
        // The session is over: a write still waiting for a process that never read is moot.
        self.task.abort();
    }
}

/// Handles the client → monitor frames of a session bound to process `id`.
async fn client_frame(guest: &Arc<dyn Guest>, id: &str, frame: Frame) {
    let r = match frame {
        Frame::Stdin(b) => guest.write_stdin(id, b).await,
        Frame::StdinEof => guest.close_stdin(id).await,
        Frame::Resize(w) => guest.resize(id, w.rows, w.cols).await,
        Frame::Signal(s) => guest.signal(id, s).await,
        _ => Ok(()),
    };
    if let Err(e) = r {
        tracing::debug!("forward to process {id}: {e}");
    }
}

async fn attach<R, W>(
    shared: &Arc<Shared>,
    rd: &mut R,
    wr: &mut W,
    stdin: bool,
    early_exit: bool,
) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel(256);
    if let Ok(mut c) = shared.clients.lock() {
        c.push(tx.clone());
    }
    shared.attached.notify_one();
    let result = async {
        if let Err(info) = started(shared).await {
            return write_frame(wr, &Frame::Error(info)).await;
        }
        write_frame(wr, &Frame::Started(MAIN.into())).await?;
        let to_process = shared.guest().map(|g| ToProcess::new(g, MAIN.to_string()));
        let room = |t: &Option<ToProcess>| t.as_ref().is_none_or(ToProcess::has_room);
        let mut phase = shared.phase.subscribe();
        let mut process_ended = shared.process_ended.subscribe();
        let mut client_open = true;
        let mut early = None;
        loop {
            tokio::select! {
                Some(frame) = rx.recv() => write_frame(wr, &frame).await?,
                Ok(info) = async { process_ended.wait_for(Option::is_some).await.map(|e| e.clone()) }, if early_exit => {
                    early = info;
                    break;
                }
                f = read_frame(rd), if client_open && room(&to_process) => match f {
                    Ok(Some(frame)) => {
                        let allowed = stdin || !matches!(frame, Frame::Stdin(_) | Frame::StdinEof);
                        if let (Some(t), true) = (&to_process, allowed) {
                            t.push(frame);
                        }
                    }
                    // The client stopped sending (or left); keep delivering output until exit.
                    _ => client_open = false,
                },
                _ = async { let _ = phase.wait_for(|p| matches!(p, Phase::Exited(_) | Phase::Failed(_) | Phase::Restarting(_))).await; } => break,
            }
        }
        while let Ok(frame) = rx.try_recv() {
            write_frame(wr, &frame).await?;
        }
        // An attached client sees one run, as docker's `run` returns at the first exit
        // while the policy restarts the container.
        let info = match early {
            Some(info) => info,
            None => run_ended(shared).await,
        };
        write_frame(wr, &Frame::Exit(info)).await
    }
    .await;
    if let Ok(mut c) = shared.clients.lock() {
        c.retain(|c| !c.same_channel(&tx));
    }
    result
}

async fn exec<R, W>(
    shared: &Arc<Shared>,
    rd: &mut R,
    wr: &mut W,
    spec: ProcessSpec,
    detach: bool,
) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let guest = match awake_guest(shared, "exec") {
        Ok(g) => g,
        Err(info) => return write_frame(wr, &Frame::Error(info)).await,
    };
    let id = format!(
        "exec-{}",
        shared.exec_seq.fetch_add(1, Ordering::Relaxed) + 1
    );
    let mut out = match guest.spawn(&id, &spec).await {
        Ok(o) => o,
        Err(e) => return write_frame(wr, &Frame::Error(fault(Fault::Exec(e)))).await,
    };
    tracing::debug!("exec {id}: started {:?}", spec.args);
    write_frame(wr, &Frame::Started(id.clone())).await?;
    if detach {
        let g = guest.clone();
        tokio::spawn(async move {
            // Nobody reads a detached exec's output; drain it so the guest never blocks.
            let drain = async {
                let (mut o, mut e) = (true, true);
                while o || e {
                    tokio::select! {
                        x = out.stdout.recv(), if o => o = x.is_some(),
                        x = out.stderr.recv(), if e => e = x.is_some(),
                    }
                }
            };
            drain.await;
            if g.wait(&id).await.is_ok() {
                release(g.as_ref(), &id).await;
            }
        });
        return write_frame(wr, &Frame::Ok).await;
    }
    let to_process = ToProcess::new(guest.clone(), id.clone());
    let (mut o_open, mut e_open, mut client_open) = (true, true, true);
    while o_open || e_open {
        tokio::select! {
            x = out.stdout.recv(), if o_open => match x {
                Some(b) => write_frame(wr, &Frame::Stdout(b)).await?,
                None => o_open = false,
            },
            x = out.stderr.recv(), if e_open => match x {
                Some(b) => write_frame(wr, &Frame::Stderr(b)).await?,
                None => e_open = false,
            },
            f = read_frame(rd), if client_open && to_process.has_room() => match f {
                Ok(Some(frame)) => to_process.push(frame),
                _ => client_open = false,
            },
        }
    }
    drop(to_process);
    tracing::debug!("exec {id}: output streams ended");
    let info = match guest.wait(&id).await {
        Ok(how) => {
            release(guest.as_ref(), &id).await;
            ExitInfo::exited(how)
        }
        Err(e) => fault(Fault::WaitExec(e)),
    };
    write_frame(wr, &Frame::Exit(info)).await
}

/// Frees an exec's entry in the guest after its exit status was collected; a failure only
/// costs guest memory, so it is logged, not reported to the client.
async fn release(guest: &dyn crate::backend::Guest, id: &str) {
    if let Err(e) = guest.release(id).await {
        tracing::warn!("exec {id}: cannot release it in the guest: {e}");
    }
}
