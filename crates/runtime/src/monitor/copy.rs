//! Copy sessions of the monitor (`container cp`): relay a tar stream between a client of
//! `monitor.sock` and a copy helper in the guest, whose stdio carries it with the agent's
//! flow control. Whatever way a session ends, the helper is finished and released: a
//! copy-out whose client went away is killed; a copy-in whose client went away gets EOF, so
//! the helper fails on the cut stream and removes what it had staged.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use agent::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::{fault, Fault, Phase, Shared};
use crate::backend::{Guest, GuestError, ProcessExit};
use crate::protocol::{read_frame, write_frame, ExitInfo, Frame, ProtocolError};

/// The guest, once the container is running or held for copies, and an id for the helper.
async fn copy_guest(shared: &Shared) -> Result<(Arc<dyn Guest>, String), ExitInfo> {
    let not_running = || fault(Fault::NotRunning { op: "copy" });
    let mut rx = shared.phase.subscribe();
    let phase = rx
        .wait_for(|p| *p != Phase::Starting)
        .await
        .map(|p| p.clone());
    if shared.freezer.is_paused() {
        return Err(fault(shared.freezer.refusal("copying files")));
    }
    match phase {
        Ok(Phase::Running | Phase::Holding) => shared
            .guest()
            .map(|g| (g, next_id(shared)))
            .ok_or_else(not_running),
        // A copy is a runtime operation: it fails with 125 whatever kept the process from
        // starting (a missing command is the container's 127, not the copy's).
        Ok(Phase::Failed(ExitInfo {
            reason: Some(reason),
            ..
        })) => Err(fault(Fault::NotStarted(reason))),
        _ => Err(not_running()),
    }
}

/// A copy the guest would not start: its own message is what the user reads ("cannot copy
/// to /ro: Read-only file system"); a failed connection keeps its chain.
fn refused(e: GuestError) -> Fault {
    match e {
        GuestError::Remote { code, message, .. } => Fault::CopyRefused { code, message },
        other => Fault::Copy(other),
    }
}

/// Lets a monitor in hold mode end once the session is over, however it ended.
struct Done<'a>(&'a Shared);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.copy_done.notify_one();
    }
}

fn next_id(shared: &Shared) -> String {
    format!("cp-{}", shared.exec_seq.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Collects a helper's error text.
fn collect(mut rx: mpsc::Receiver<bytes::Bytes>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(b) = rx.recv().await {
            all.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&all).trim().to_string()
    })
}

/// Waits for the helper and releases it; the final frame for the client.
async fn finish(guest: &dyn Guest, id: &str, errors: String) -> Frame {
    let exit = guest.wait(id).await;
    if let Err(e) = guest.release(id).await {
        tracing::warn!("{id}: cannot release it in the guest: {e}");
    }
    match exit {
        Ok(ProcessExit::Code(0)) => Frame::Exit(ExitInfo::exited(ProcessExit::Code(0))),
        Ok(how) if errors.is_empty() => Frame::Error(fault(Fault::CopyStatus(how.code()))),
        Ok(_) => Frame::Error(fault(Fault::CopyFailed(errors))),
        Err(e) => Frame::Error(fault(Fault::Copy(e))),
    }
}

/// What a copy-out packs.
pub(crate) enum Source<'a> {
    /// A path of the container, and whether to follow it when it is a symlink.
    Path(&'a str, bool),
    /// The whole root filesystem (`export`).
    Rootfs,
}

/// `CopyOut`: `Stat`, the tar stream as `Stdout` frames, then `Exit` or `Error`.
pub(crate) async fn copy_out<R, W>(
    shared: &Arc<Shared>,
    rd: &mut R,
    wr: &mut W,
    source: Source<'_>,
) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _done = Done(shared);
    let (guest, id) = match copy_guest(shared).await {
        Ok(g) => g,
        Err(info) => return write_frame(wr, &Frame::Error(info)).await,
    };
    let started = match source {
        Source::Path(path, follow_link) => guest.copy_out(&id, path, follow_link).await,
        Source::Rootfs => guest.export(&id).await.map(|out| {
            let root = agent::PathStat {
                mode: libc::S_IFDIR | 0o755,
                ..Default::default()
            };
            (root, out)
        }),
    };
    let path = match source {
        Source::Path(path, _) => path,
        Source::Rootfs => "/",
    };
    let (stat, mut out) = match started {
        Ok(x) => x,
        Err(e) if e.code() == ErrorCode::NotFound => {
            let f = Fault::CopySourceMissing {
                path: path.to_string(),
                container: shared.name.clone(),
            };
            return write_frame(wr, &Frame::Error(fault(f))).await;
        }
        Err(e) => return write_frame(wr, &Frame::Error(fault(refused(e)))).await,
    };
    let errors = collect(out.stderr);
    let relayed = async {
        write_frame(wr, &Frame::Stat(stat)).await?;
        loop {
            tokio::select! {
                chunk = out.stdout.recv() => match chunk {
                    Some(b) => write_frame(wr, &Frame::Stdout(b)).await?,
                    None => return Ok(()),
                },
                // The client sends nothing during a copy-out: anything is a hang-up.
                _ = read_frame(rd) => {
                    return Err(ProtocolError::Malformed("client left during copy".into()))
                }
            }
        }
    }
    .await;
    if relayed.is_err() {
        let _ = guest.signal(&id, libc::SIGKILL).await;
        // Drain what is in flight so the guest's stream ends cleanly.
        while out.stdout.recv().await.is_some() {}
    }
    let errors = errors.await.unwrap_or_default();
    let last = finish(guest.as_ref(), &id, errors).await;
    relayed?;
    write_frame(wr, &last).await
}

/// `CopyIn`: `Started` when the helper is ready, the tar stream from the client, then
/// `Exit` or `Error`.
pub(crate) async fn copy_in<R, W>(
    shared: &Arc<Shared>,
    rd: &mut R,
    wr: &mut W,
    path: &str,
    source: Option<agent::CopySource>,
    preserve_owner: bool,
) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _done = Done(shared);
    let (guest, id) = match copy_guest(shared).await {
        Ok(g) => g,
        Err(info) => return write_frame(wr, &Frame::Error(info)).await,
    };
    let out = match guest.copy_in(&id, path, source, preserve_owner).await {
        Ok(o) => o,
        Err(e) => return write_frame(wr, &Frame::Error(fault(refused(e)))).await,
    };
    let errors = collect(out.stderr);
    let mut stdout = out.stdout;
    tokio::spawn(async move { while stdout.recv().await.is_some() {} });
    let started = write_frame(wr, &Frame::Started(id.clone())).await;
    if started.is_ok() {
        // Stdin is written against the guest's credit, so a slow disk slows the client.
        loop {
            match read_frame(rd).await {
                Ok(Some(Frame::Stdin(b))) => {
                    if let Err(e) = guest.write_stdin(&id, b).await {
                        tracing::debug!("{id}: {e}");
                        break;
                    }
                }
                Ok(Some(Frame::StdinEof)) => break,
                Ok(Some(_)) => {}
                // A client that left cuts the stream: the helper fails and cleans up.
                Ok(None) | Err(_) => break,
            }
        }
    }
    let _ = guest.close_stdin(&id).await;
    let errors = errors.await.unwrap_or_default();
    let last = finish(guest.as_ref(), &id, errors).await;
    started?;
    write_frame(wr, &last).await
}
