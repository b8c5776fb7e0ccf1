//! Sharing one guest connection between processes: the pod's monitor holds the only agent
//! session of the pod's VM (vminitd serves exactly one), and each member container's monitor
//! process reaches the guest through it with an ordinary [`Client`] over a unix socket
//! ([`Client::share`]).
//!
//! The multiplexer works on frames, not calls: a member's request goes to the guest with a
//! fresh id from the sharing client's id space and its reply comes back with the member's id,
//! bytes otherwise unchanged. A process created by a member's call (`Created`, `CopyStarted`)
//! belongs to that member: the guest's `Data` and `Window` frames of its streams go to that
//! member alone, and only that member may send `Data`/`Window` for them. Frames of every other
//! process go to the sharing client's own routing, as without sharing.
//!
//! Limits, so that no member can hurt the guest session or the other members:
//! - each member has a queue towards it of at most [`MEMBER_QUEUE_LIMIT`] bytes; a member that
//!   falls further behind is disconnected instead of blocking the one reader of the guest.
//!   A well-behaved member never comes near it: the guest sends output only against the credit
//!   the member's `OutputStream`s granted ([`crate::client::OUTPUT_WINDOW`] each, topped up as
//!   they are read), and replies are at most [`crate::frame::MAX_PAYLOAD`] each;
//! - a member has at most [`MEMBER_MAX_PENDING`] calls in flight; more are refused;
//! - a member's stdin bytes must stay within the credit the guest granted for that stream (what
//!   its `StdinWriter` does anyway); one that overruns it is disconnected, so the queue to the
//!   guest, which the pod monitor's own calls share, stays bounded by the guest's credit;
//! - the VM-wide calls `Shutdown`, `Configure`, `SetupInterface` and `Resume` belong to the
//!   pod: a member's are refused (`InvalidArgument`) without reaching the guest.
//!
//! A member that goes away without deleting its processes (its monitor was killed, or it was
//! cut off) does not leave them running: the share kills (`SIGKILL`, the whole container) and
//! deletes each, as a VM's processes end with the VM when a container's monitor dies.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{lock, Client, Inner};
use crate::error::{ErrorCode, WireError};
use crate::frame::{Frame, FrameError, FrameReader, Kind, FLAG_ERROR, HEADER_LEN};
use crate::schema::{
    split_stream_id, stream_id, CopyStarted, Created, Hello, HelloAck, ProcessHandle, Request,
    Response, StdioStream,
};
use crate::server::{answer_hello, Outbox};

/// Bytes that may wait in the queue towards one member before it is disconnected as too slow:
/// room for 64 output streams with a full [`crate::client::OUTPUT_WINDOW`] of credit each, or
/// 16 replies of the largest size.
pub const MEMBER_QUEUE_LIMIT: usize = 16 << 20;

/// Calls one member may have in flight; further ones are answered with
/// [`ErrorCode::WrongState`] until some complete.
pub const MEMBER_MAX_PENDING: usize = 1024;

/// How long members may take to read what was queued for them once the guest connection
/// closed, before their connections are cut anyway.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// `Window` frames the guest sent for not yet known handles while members' creating calls
/// are in flight (see [`Mux::route_from_guest`]); one per concurrent creation, so the limit
/// only matters against a misbehaving guest.
const HELD_LIMIT: usize = 4096;

/// How long a departed member's killed process may take to end before it is deleted anyway.
const ORPHAN_EXIT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

impl Client {
    /// Serves other processes' agent clients, accepted on `listener`, through this connection:
    /// each connects with [`Client::connect`] and then uses the guest as if it had the
    /// connection to itself, while this client keeps working as before.
    ///
    /// A member's handshake is answered here, not by the guest: its `HelloAck` is this
    /// client's ([`Client::hello`]: version and kernel) with the member's nonce, and an empty
    /// `processes` list, since a member owns no process when it connects (the guest's list
    /// would name processes whose output is not routed to it).
    ///
    /// The returned task keeps the connection open while it runs, even if every other clone of
    /// this client is dropped. It ends when the guest connection closes, after the members'
    /// connections were closed (each member's [`Client::closed`] resolves). Aborting it stops
    /// the sharing and disconnects the members. Calling `share` again (another listener) adds
    /// to the same set of members. Spawns on the current tokio runtime, like
    /// [`Client::connect`]. See the [module documentation](crate::share) for the routing rules
    /// and the limits.
    pub fn share(&self, listener: UnixListener) -> JoinHandle<()> {
        let client = self.clone();
        let mux = Arc::clone(self.inner.share.get_or_init(Arc::default));
        tokio::spawn(async move {
            let mut members = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            members.spawn(serve_member(
                                Arc::clone(&mux),
                                client.clone(),
                                Arc::clone(&client.hello),
                                stream,
                            ));
                        }
                        Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
                    },
                    Some(_) = members.join_next(), if !members.is_empty() => {}
                    () = client.closed() => break,
                }
            }
            // The read loop closed the routes already; this covers a share that started
            // after the connection had closed.
            mux.close();
            let drained = async { while members.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(DRAIN_GRACE, drained).await;
            // Dropping the set aborts the members that did not read their queue in time.
        })
    }
}

type MemberId = u64;

/// The members of one shared connection and what belongs to whom.
#[derive(Default)]
pub(crate) struct Mux {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The guest connection closed: no new members.
    closed: bool,
    next_member: MemberId,
    members: HashMap<MemberId, Member>,
    /// Guest-side request id → the member's call.
    pending: HashMap<u32, Pending>,
    /// Entries of `pending` whose reply may carry a new handle.
    creating: usize,
    /// Processes created by a connected member.
    handles: HashMap<ProcessHandle, MemberId>,
    /// The processes each departed member left in the guest, until its connection's task
    /// ends them ([`Mux::take_orphans`]).
    orphans: HashMap<MemberId, Vec<ProcessHandle>>,
    /// Processes of members that disconnected: their frames are dropped, not given to the
    /// sharing client, which never asked for them. Grows by one entry per process a member
    /// left behind undeleted.
    dropped: HashSet<ProcessHandle>,
    /// Guest `Window` frames of unknown handles, kept while members' creating calls are in
    /// flight: vminitd grants a new process's first stdin credit before it sends the reply
    /// that names the handle.
    held: HashMap<ProcessHandle, Vec<Frame>>,
    held_frames: usize,
}

struct Member {
    tx: mpsc::UnboundedSender<Frame>,
    /// Bytes in `tx` and in the member's current write (see [`MEMBER_QUEUE_LIMIT`]).
    queued: Arc<AtomicUsize>,
    /// Cuts the connection at once, queued frames or not.
    kill: Arc<Notify>,
    pending: usize,
    /// stdin credit the guest granted per stream and the member has not used yet.
    stdin_credit: HashMap<u32, u64>,
}

struct Pending {
    member: MemberId,
    /// The member's own request id.
    id: u32,
    effect: Effect,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    /// The reply names a new process of the member.
    Creates,
    /// A successful reply frees this process of the member.
    Deletes(ProcessHandle),
}

struct Registration {
    id: MemberId,
    rx: mpsc::UnboundedReceiver<Frame>,
    queued: Arc<AtomicUsize>,
    kill: Arc<Notify>,
}

impl State {
    /// Queues `frame` for `member`, disconnecting it if it fell too far behind.
    fn push(&mut self, member: MemberId, frame: Frame) {
        let Some(m) = self.members.get_mut(&member) else {
            return;
        };
        if frame.kind == Kind::Window {
            if let (Some((_, StdioStream::Stdin)), Ok(credit)) =
                (split_stream_id(frame.id), frame.credit())
            {
                *m.stdin_credit.entry(frame.id).or_default() += u64::from(credit);
            }
        }
        let size = HEADER_LEN + frame.payload.len();
        // Counted before it is queued: the writer subtracts once written.
        let before = m.queued.fetch_add(size, Ordering::Relaxed);
        if before + size > MEMBER_QUEUE_LIMIT || m.tx.send(frame).is_err() {
            self.remove(member, true);
        }
    }

    /// Forgets a member: its processes' frames are dropped from now on, its calls' replies
    /// too (the pending entries stay until the guest answers, so that a process one of them
    /// creates is known as dropped as well).
    fn remove(&mut self, member: MemberId, kill: bool) {
        let Some(m) = self.members.remove(&member) else {
            return;
        };
        let dropped = &mut self.dropped;
        let mut orphans = Vec::new();
        self.handles.retain(|h, owner| {
            if *owner == member {
                dropped.insert(*h);
                orphans.push(*h);
                false
            } else {
                true
            }
        });
        self.orphans.insert(member, orphans);
        if kill {
            m.kill.notify_one();
        }
    }

    fn unhold(&mut self, handle: ProcessHandle) -> Vec<Frame> {
        let frames = self.held.remove(&handle).unwrap_or_default();
        self.held_frames -= frames.len();
        frames
    }
}

impl Mux {
    fn register(&self) -> Option<Registration> {
        let mut st = lock(&self.state);
        if st.closed {
            return None;
        }
        let id = st.next_member;
        st.next_member += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let kill = Arc::new(Notify::new());
        st.members.insert(
            id,
            Member {
                tx,
                queued: Arc::clone(&queued),
                kill: Arc::clone(&kill),
                pending: 0,
                stdin_credit: HashMap::new(),
            },
        );
        Some(Registration {
            id,
            rx,
            queued,
            kill,
        })
    }

    fn remove(&self, member: MemberId, kill: bool) {
        lock(&self.state).remove(member, kill);
    }

    /// The processes a departed member left behind.
    fn take_orphans(&self, member: MemberId) -> Vec<ProcessHandle> {
        let mut st = lock(&self.state);
        st.remove(member, false);
        st.orphans.remove(&member).unwrap_or_default()
    }

    fn push(&self, member: MemberId, frame: Frame) {
        lock(&self.state).push(member, frame);
    }

    /// The guest connection closed: every member's queue ends (its writer drains it and
    /// closes the member's connection), nothing is routed any more.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.members.clear();
        st.pending.clear();
        st.creating = 0;
        st.handles.clear();
        st.held.clear();
        st.held_frames = 0;
    }

    /// The sharing client's own call created `handle`: it is not a member's.
    pub(crate) fn owner_created(&self, handle: ProcessHandle) {
        lock(&self.state).unhold(handle);
    }

    /// Routes a frame from the guest: `None` when it went to a member (or was dropped),
    /// otherwise the frame for the sharing client's own routing.
    pub(crate) fn route_from_guest(&self, frame: Frame) -> Option<Frame> {
        let mut st = lock(&self.state);
        match frame.kind {
            Kind::Response => {
                let Some(p) = st.pending.remove(&frame.id) else {
                    return Some(frame);
                };
                if p.effect == Effect::Creates {
                    st.creating -= 1;
                }
                let alive = st.members.contains_key(&p.member);
                let ok = frame.flags & FLAG_ERROR == 0;
                let mut first = Vec::new();
                match p.effect {
                    Effect::Creates if ok => {
                        if let Some(handle) = created_handle(&frame) {
                            let held = st.unhold(handle);
                            if alive {
                                st.handles.insert(handle, p.member);
                                first = held;
                            } else {
                                st.dropped.insert(handle);
                            }
                        }
                    }
                    Effect::Deletes(handle) if ok => {
                        if st.handles.get(&handle) == Some(&p.member) {
                            st.handles.remove(&handle);
                        }
                        if let Some(m) = st.members.get_mut(&p.member) {
                            m.stdin_credit
                                .remove(&stream_id(handle, StdioStream::Stdin));
                        }
                    }
                    _ => {}
                }
                if st.creating == 0 {
                    st.held.clear();
                    st.held_frames = 0;
                }
                if let Some(m) = st.members.get_mut(&p.member) {
                    m.pending -= 1;
                }
                for f in first {
                    st.push(p.member, f);
                }
                st.push(p.member, Frame { id: p.id, ..frame });
                None
            }
            Kind::Data | Kind::Window => {
                let Some((handle, _)) = split_stream_id(frame.id) else {
                    return Some(frame);
                };
                if let Some(&member) = st.handles.get(&handle) {
                    st.push(member, frame);
                    return None;
                }
                if st.dropped.contains(&handle) {
                    return None;
                }
                if frame.kind == Kind::Window && st.creating > 0 && st.held_frames < HELD_LIMIT {
                    // Also given to the sharing client, as without sharing: it may be its
                    // process. Credit it never uses costs nothing.
                    st.held.entry(handle).or_default().push(frame.clone());
                    st.held_frames += 1;
                }
                Some(frame)
            }
            Kind::Hello | Kind::HelloAck | Kind::Request => Some(frame),
        }
    }

    /// A member's request: refused here, or forwarded with a fresh id. `false` when the
    /// member is gone or the guest connection is closing.
    fn request(&self, inner: &Inner, member: MemberId, frame: Frame) -> bool {
        let request = frame.parse::<Request>();
        let refusal = match &request {
            // The guest would refuse it too; here nothing that did not decode the same way
            // on both sides can slip past the checks below.
            Err(e) => Some(WireError::new(
                ErrorCode::InvalidArgument,
                format!("malformed request: {}", json_cause(e)),
            )),
            Ok(Request::Shutdown(_)) => Some(WireError::new(
                ErrorCode::InvalidArgument,
                "a pod member cannot shut the pod's VM down",
            )),
            Ok(r @ (Request::Configure(_) | Request::SetupInterface(_) | Request::Resume(_))) => {
                Some(WireError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "a pod member cannot call {}: VM-wide settings belong to the pod",
                        r.name()
                    ),
                ))
            }
            Ok(_) => None,
        };
        let mut st = lock(&self.state);
        let Some(m) = st.members.get_mut(&member) else {
            return false;
        };
        let refusal = refusal.or_else(|| {
            (m.pending >= MEMBER_MAX_PENDING).then(|| {
                WireError::new(
                    ErrorCode::WrongState,
                    format!("a pod member may have at most {MEMBER_MAX_PENDING} calls in flight"),
                )
            })
        });
        if let Some(e) = refusal {
            st.push(
                member,
                Frame::json(Kind::Response, FLAG_ERROR, frame.id, &e),
            );
            return true;
        }
        let effect = match request {
            Ok(Request::CreateProcess(_))
            | Ok(Request::CopyOut(_))
            | Ok(Request::CopyIn(_))
            | Ok(Request::LayerOut(_))
            | Ok(Request::LayerIn(_))
            // A relayed connection is a copy helper of the member's (a pod member's socket
            // binds and published sockets).
            | Ok(Request::SocketAccept(_))
            | Ok(Request::SocketConnect(_)) => Effect::Creates,
            Ok(Request::Delete(r)) => Effect::Deletes(r.handle),
            _ => Effect::None,
        };
        m.pending += 1;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        st.pending.insert(
            id,
            Pending {
                member,
                id: frame.id,
                effect,
            },
        );
        if effect == Effect::Creates {
            st.creating += 1;
        }
        // Queued under the lock: the reply cannot be routed before its entry exists.
        if inner.tx.send(Frame { id, ..frame }).is_err() {
            st.pending.remove(&id);
            if effect == Effect::Creates {
                st.creating -= 1;
            }
            return false;
        }
        true
    }

    /// A member's stdin bytes or output credit: forwarded unchanged for its own processes,
    /// dropped for any other. `false` when the member is gone, overran its stdin credit, or
    /// the guest connection is closing.
    fn stream(&self, inner: &Inner, member: MemberId, frame: Frame) -> bool {
        let Some((handle, stream)) = split_stream_id(frame.id) else {
            return true;
        };
        let mut st = lock(&self.state);
        if !st.members.contains_key(&member) {
            return false;
        }
        if st.handles.get(&handle) != Some(&member) {
            return true;
        }
        if frame.kind == Kind::Data {
            if stream != StdioStream::Stdin {
                return true;
            }
            let Some(m) = st.members.get_mut(&member) else {
                return false;
            };
            let credit = m.stdin_credit.entry(frame.id).or_default();
            let n = frame.payload.len() as u64;
            if n > *credit {
                st.remove(member, true);
                return false;
            }
            *credit -= n;
        }
        inner.tx.send(frame).is_ok()
    }
}

/// The handle a successful reply to a creating call names.
fn created_handle(frame: &Frame) -> Option<ProcessHandle> {
    match frame.parse::<Response>() {
        Ok(Response::Created(Created { handle })) => Some(handle),
        Ok(Response::CopyStarted(CopyStarted { handle, .. })) => Some(handle),
        _ => None,
    }
}

fn json_cause(e: &FrameError) -> String {
    match e {
        FrameError::Json(j) => j.to_string(),
        other => other.to_string(),
    }
}

/// Unregisters a member however its task ends, aborted included.
struct Unregister {
    mux: Arc<Mux>,
    id: MemberId,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.mux.remove(self.id, false);
    }
}

async fn serve_member(mux: Arc<Mux>, owner: Client, hello: Arc<HelloAck>, stream: UnixStream) {
    let inner = Arc::clone(&owner.inner);
    let Some(reg) = mux.register() else {
        return;
    };
    let id = reg.id;
    let _unregister = Unregister {
        mux: Arc::clone(&mux),
        id,
    };
    let (rd, wr) = stream.into_split();
    let reader = async {
        read_member(&mux, &inner, &hello, id, rd).await;
        // Ends the queue: the writer sends what is left, then closes the connection.
        mux.remove(id, false);
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = reader => {}
        () = write_member(reg.rx, wr, reg.queued) => {}
        () = reg.kill.notified() => {}
    }
    // A member that is gone cannot stop what it started: its monitor died, or it was cut
    // off. Its processes are ended as a VM's are when its monitor dies, so that a container
    // started again does not find the old one still running on its files.
    let orphans = mux.take_orphans(id);
    if !orphans.is_empty() {
        tokio::spawn(async move {
            for &h in &orphans {
                let _ = owner.kill(h, libc::SIGKILL, true).await;
            }
            // Deleted once ended: the guest frees a container with its first process's entry,
            // and refuses to delete a process that still runs.
            for h in orphans {
                let _ = tokio::time::timeout(ORPHAN_EXIT, owner.wait(h)).await;
                let _ = owner.delete(h).await;
            }
        });
    }
}

async fn read_member(
    mux: &Mux,
    inner: &Inner,
    hello: &HelloAck,
    member: MemberId,
    rd: OwnedReadHalf,
) {
    let mut reader = FrameReader::new(rd);
    let mut greeted = false;
    let mut skipped = 0;
    while let Ok(Some(frame)) = reader.next(&mut skipped).await {
        match frame.kind {
            Kind::Hello => {
                let Ok(h) = frame.parse::<Hello>() else {
                    continue;
                };
                let mut ack = hello.clone();
                ack.processes = Vec::new();
                // The guest's own answer, version check included, built by the same code.
                let (outbox, mut rx) = Outbox::new();
                let agreed = answer_hello(&outbox, &h, ack).is_ok();
                while let Ok(f) = rx.try_recv() {
                    mux.push(member, f);
                }
                if !agreed {
                    return;
                }
                greeted = true;
            }
            // Like the guest: nothing before the handshake.
            _ if !greeted => {}
            Kind::Request => {
                if !mux.request(inner, member, frame) {
                    return;
                }
            }
            Kind::Data | Kind::Window => {
                if !mux.stream(inner, member, frame) {
                    return;
                }
            }
            Kind::HelloAck | Kind::Response => {}
        }
    }
}

async fn write_member(
    mut rx: mpsc::UnboundedReceiver<Frame>,
    mut wr: OwnedWriteHalf,
    queued: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    while let Some(frame) = rx.recv().await {
        crate::frame::encode_batch(frame, &mut rx, &mut buf);
        let written = wr.write_all(&buf).await;
        queued.fetch_sub(buf.len(), Ordering::Relaxed);
        if written.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
