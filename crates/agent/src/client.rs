//! The host side of the agent protocol: a [`Client`] over any `AsyncRead + AsyncWrite`
//! transport (the QEMU chardev unix socket, or an in-memory duplex in tests).
//!
//! One background task writes frames, one reads them and routes responses to the waiting call
//! and stdio bytes to the attached [`OutputStream`]. Calls can run concurrently (a `wait` on one
//! process does not block an `exec` of another). stdio is flow-controlled per stream: the guest
//! sends output only against credit that an attached `OutputStream` grants as its reader
//! consumes, and the host sends stdin only against credit the guest grants as the process
//! drains its pipe, so one slow stream never blocks the channel.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::error::{ErrorCode, WireError};
use crate::frame::{
    write_frame, write_queued, Frame, FrameError, FrameReader, Kind, FLAG_EOF, FLAG_ERROR,
    MAX_DATA_CHUNK,
};
use crate::schema::*;
use crate::share::Mux;

/// Credit an attached output stream grants up front (and keeps topped up as it is read).
pub const OUTPUT_WINDOW: u32 = 256 * 1024;

/// Errors of agent calls on the host side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The guest answered with an error.
    #[error("guest {call} failed: {message}")]
    Remote {
        /// The call that failed.
        call: &'static str,
        /// Stable category.
        code: ErrorCode,
        /// The guest's message.
        message: String,
        /// errno, when a system call failed.
        errno: Option<i32>,
    },
    /// The channel failed.
    #[error("agent channel failed")]
    Channel(#[source] FrameError),
    /// The connection closed before the answer came.
    #[error("agent connection closed during {0}")]
    Disconnected(&'static str),
    /// The guest speaks another protocol version.
    #[error("guest agent speaks protocol version {guest}, host speaks {host}")]
    Version {
        /// The guest's version.
        guest: u32,
        /// Ours.
        host: u32,
    },
    /// The guest answered a call with a reply of the wrong kind.
    #[error("guest answered {call} with an unexpected reply")]
    UnexpectedReply {
        /// The call.
        call: &'static str,
    },
}

impl ClientError {
    /// Maps an error from the wire to a client error. The one place where guest codes become
    /// host errors.
    pub fn from_wire(call: &'static str, e: WireError) -> ClientError {
        ClientError::Remote {
            call,
            code: e.code,
            message: e.message,
            errno: e.errno,
        }
    }

    /// The stable code of a remote error, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }
}

type Reply = Result<Response, WireError>;

enum Chunk {
    Bytes(Vec<u8>),
    Eof,
}

#[derive(Default)]
struct Credit {
    avail: Mutex<u64>,
    notify: Notify,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u32, oneshot::Sender<Reply>>,
    outputs: HashMap<u32, mpsc::UnboundedSender<Chunk>>,
    /// Output bytes that arrived before their stream was attached (only possible if a stream
    /// is attached, dropped and attached again; credit bounds it).
    early: HashMap<u32, Vec<Chunk>>,
    stdin_credit: HashMap<u32, Arc<Credit>>,
    closed: bool,
}

pub(crate) struct Inner {
    pub(crate) tx: mpsc::UnboundedSender<Frame>,
    pub(crate) next_id: AtomicU32,
    routes: Mutex<Routes>,
    closed: Notify,
    /// The members' routes once [`Client::share`] was called; the read loop asks it first.
    pub(crate) share: OnceLock<Arc<Mux>>,
}

/// A connection to one guest's agent. Cheap to clone; all clones share the connection,
/// which closes when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) hello: Arc<HelloAck>,
    _guard: Arc<Guard>,
}

/// Closes the connection when the last `Client` clone goes away (the background tasks would
/// otherwise keep it open forever).
struct Guard(watch::Sender<bool>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

impl Client {
    /// Performs the hello handshake over `io` and starts the connection's background tasks
    /// (on the current tokio runtime). Bytes of an earlier session still queued in the channel
    /// are skipped. Wrap in `tokio::time::timeout` to bound the wait for a guest that has not
    /// booted yet.
    pub async fn connect<T>(io: T) -> Result<Client, ClientError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(io);
        let nonce = nonce();
        let hello = Hello {
            version: PROTOCOL_VERSION,
            nonce,
        };
        write_frame(&mut wr, &Frame::json(Kind::Hello, 0, 0, &hello))
            .await
            .map_err(ClientError::Channel)?;
        let mut reader = FrameReader::new(rd);
        let ack: HelloAck = loop {
            reader.sync_to(Kind::HelloAck);
            let mut skipped = 0;
            let frame = reader
                .next(&mut skipped)
                .await
                .map_err(ClientError::Channel)?
                .ok_or(ClientError::Disconnected("hello"))?;
            if frame.kind != Kind::HelloAck {
                continue;
            }
            if frame.flags & FLAG_ERROR != 0 {
                let e: WireError = frame.parse().map_err(ClientError::Channel)?;
                return Err(ClientError::from_wire("hello", e));
            }
            match frame.parse::<HelloAck>() {
                Ok(ack) if ack.nonce == nonce => break ack,
                _ => continue,
            }
        };
        if ack.version != PROTOCOL_VERSION {
            return Err(ClientError::Version {
                guest: ack.version,
                host: PROTOCOL_VERSION,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            tx,
            next_id: AtomicU32::new(1),
            routes: Mutex::new(Routes::default()),
            closed: Notify::new(),
            share: OnceLock::new(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(write_loop(rx, wr, stop_rx.clone()));
        tokio::spawn(read_loop(reader, Arc::clone(&inner), stop_rx));
        Ok(Client {
            inner,
            hello: Arc::new(ack),
            _guard: Arc::new(Guard(stop_tx)),
        })
    }

    /// What the guest said in the handshake (kernel release, live process handles).
    pub fn hello(&self) -> &HelloAck {
        &self.hello
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&self, req: Request) -> Result<Response, ClientError> {
        let name = req.name();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = lock(&self.inner.routes);
            if routes.closed {
                return Err(ClientError::Disconnected(name));
            }
            routes.pending.insert(id, tx);
        }
        if self
            .inner
            .tx
            .send(Frame::json(Kind::Request, 0, id, &req))
            .is_err()
        {
            lock(&self.inner.routes).pending.remove(&id);
            return Err(ClientError::Disconnected(name));
        }
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(ClientError::from_wire(name, e)),
            Err(_) => Err(ClientError::Disconnected(name)),
        }
    }

    async fn call_ok(&self, req: Request) -> Result<(), ClientError> {
        let name = req.name();
        match self.call(req).await? {
            Response::Ok => Ok(()),
            _ => Err(ClientError::UnexpectedReply { call: name }),
        }
    }

    /// No-op round trip.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call_ok(Request::Ping).await
    }

    /// Guest-wide configuration (hostname, DNS, hosts, sysctl, time).
    pub async fn configure(&self, c: Configure) -> Result<(), ClientError> {
        self.call_ok(Request::Configure(c)).await
    }

    /// Renews a VM restored from a template (see [`Resume`]); the first call to such a VM.
    pub async fn resume(&self, r: Resume) -> Result<(), ClientError> {
        self.call_ok(Request::Resume(r)).await
    }

    /// Mounts a filesystem in the guest.
    pub async fn mount(&self, m: Mount) -> Result<(), ClientError> {
        self.call_ok(Request::Mount(m)).await
    }

    /// Unmounts a path in the guest.
    pub async fn umount(&self, target: &str, lazy: bool) -> Result<(), ClientError> {
        self.call_ok(Request::Umount(Umount {
            target: target.into(),
            lazy,
        }))
        .await
    }

    /// Configures a network interface.
    pub async fn setup_interface(&self, i: Interface) -> Result<(), ClientError> {
        self.call_ok(Request::SetupInterface(i)).await
    }

    /// Creates a process (and its container when it is the container's first process).
    /// Attach stdio with [`Client::stdout`]/[`Client::stderr`]/[`Client::stdin`] before
    /// [`Client::start`] so no output is missed (the guest holds output until attached).
    pub async fn create_process(&self, c: CreateProcess) -> Result<ProcessHandle, ClientError> {
        match self.call(Request::CreateProcess(c)).await? {
            Response::Created(c) => Ok(c.handle),
            _ => Err(ClientError::UnexpectedReply {
                call: "create_process",
            }),
        }
    }

    /// Starts a created process; returns its PID in the guest.
    pub async fn start(&self, handle: ProcessHandle) -> Result<i32, ClientError> {
        match self.call(Request::Start(ProcessRef { handle })).await? {
            Response::Started(s) => Ok(s.pid),
            _ => Err(ClientError::UnexpectedReply { call: "start" }),
        }
    }

    /// Waits for a started process to exit.
    pub async fn wait(&self, handle: ProcessHandle) -> Result<ExitStatus, ClientError> {
        match self.call(Request::Wait(ProcessRef { handle })).await? {
            Response::Exited(s) => Ok(s),
            _ => Err(ClientError::UnexpectedReply { call: "wait" }),
        }
    }

    /// Sends `signal` to the process (or, with `all`, to its whole container).
    pub async fn kill(
        &self,
        handle: ProcessHandle,
        signal: i32,
        all: bool,
    ) -> Result<(), ClientError> {
        self.call_ok(Request::Kill(Kill {
            handle,
            signal,
            all,
        }))
        .await
    }

    /// Resizes the process's pty.
    pub async fn resize_pty(
        &self,
        handle: ProcessHandle,
        rows: u16,
        cols: u16,
    ) -> Result<(), ClientError> {
        self.call_ok(Request::ResizePty(ResizePty { handle, rows, cols }))
            .await
    }

    /// Closes the process's stdin (it reads EOF once buffered input is consumed).
    pub async fn close_stdin(&self, handle: ProcessHandle) -> Result<(), ClientError> {
        self.call_ok(Request::CloseStdin(ProcessRef { handle }))
            .await
    }

    /// Frees an exited process's resources in the guest.
    pub async fn delete(&self, handle: ProcessHandle) -> Result<(), ClientError> {
        self.call_ok(Request::Delete(ProcessRef { handle })).await
    }

    /// The processes of a container.
    pub async fn processes(&self, container: String) -> Result<ProcessList, ClientError> {
        match self
            .call(Request::Processes(ProcessesRequest { container }))
            .await?
        {
            Response::Processes(p) => Ok(p),
            _ => Err(ClientError::UnexpectedReply { call: "processes" }),
        }
    }

    /// Resource usage of a container (or the guest with `None`).
    pub async fn stats(&self, container: Option<String>) -> Result<Stats, ClientError> {
        match self
            .call(Request::Stats(StatsRequest { container }))
            .await?
        {
            Response::Stats(s) => Ok(s),
            _ => Err(ClientError::UnexpectedReply { call: "stats" }),
        }
    }

    /// Sets cgroup limits of a container.
    pub async fn update_resources(&self, r: Resources) -> Result<(), ClientError> {
        self.call_ok(Request::UpdateResources(r)).await
    }

    /// Asks the guest to sync, unmount and power off (or reboot). The VM goes away shortly
    /// after the reply; wait for the QEMU process to exit.
    pub async fn shutdown(&self, reboot: bool) -> Result<(), ClientError> {
        self.call_ok(Request::Shutdown(Shutdown { reboot })).await
    }

    /// Starts packing `req.path` of a container as a tar stream: read it from
    /// [`Client::stdout`] of the returned handle, then [`Client::wait`] (a non-zero exit
    /// means the stream is incomplete; [`Client::stderr`] says why) and [`Client::delete`].
    pub async fn copy_out(&self, req: CopyOut) -> Result<CopyStarted, ClientError> {
        match self.call(Request::CopyOut(req)).await? {
            Response::CopyStarted(c) if c.stat.is_some() => Ok(c),
            _ => Err(ClientError::UnexpectedReply { call: "copy_out" }),
        }
    }

    /// Starts unpacking a tar stream into a container: write it to [`Client::stdin`] of the
    /// returned handle and close it, then [`Client::wait`] and [`Client::delete`].
    pub async fn copy_in(&self, req: CopyIn) -> Result<CopyStarted, ClientError> {
        match self.call(Request::CopyIn(req)).await? {
            Response::CopyStarted(c) => Ok(c),
            _ => Err(ClientError::UnexpectedReply { call: "copy_in" }),
        }
    }

    /// Starts packing the guest directory `req.path` as an OCI layer tar (see [`LayerOut`]):
    /// read it from [`Client::stdout`] of the returned handle, then [`Client::wait`] (a
    /// non-zero exit means the stream is incomplete; [`Client::stderr`] says why) and
    /// [`Client::delete`].
    pub async fn layer_out(&self, req: LayerOut) -> Result<CopyStarted, ClientError> {
        match self.call(Request::LayerOut(req)).await? {
            Response::CopyStarted(c) => Ok(c),
            _ => Err(ClientError::UnexpectedReply { call: "layer_out" }),
        }
    }

    /// Starts unpacking an OCI layer tar into the new guest directory `req.path` (see
    /// [`LayerIn`]): write it to [`Client::stdin`] of the returned handle and close it, then
    /// [`Client::wait`] (non-zero: nothing was created, [`Client::stderr`] says why) and
    /// [`Client::delete`].
    pub async fn layer_in(&self, req: LayerIn) -> Result<CopyStarted, ClientError> {
        match self.call(Request::LayerIn(req)).await? {
            Response::CopyStarted(c) => Ok(c),
            _ => Err(ClientError::UnexpectedReply { call: "layer_in" }),
        }
    }

    /// Listens on the guest socket of listener `req.id` ([`crate::contract::guest_socket`]).
    pub async fn socket_listen(&self, req: SocketListen) -> Result<(), ClientError> {
        self.call_ok(Request::SocketListen(req)).await
    }

    /// Waits for the next connection on listener `id`: relay it through [`Client::stdin`]
    /// and [`Client::stdout`] of the returned handle, then [`Client::wait`] and
    /// [`Client::delete`].
    pub async fn socket_accept(&self, id: &str) -> Result<ProcessHandle, ClientError> {
        match self
            .call(Request::SocketAccept(SocketRef { id: id.into() }))
            .await?
        {
            Response::CopyStarted(c) => Ok(c.handle),
            _ => Err(ClientError::UnexpectedReply {
                call: "socket_accept",
            }),
        }
    }

    /// Closes listener `id` (its pending accepts fail).
    pub async fn socket_close(&self, id: &str) -> Result<(), ClientError> {
        self.call_ok(Request::SocketClose(SocketRef { id: id.into() }))
            .await
    }

    /// Connects to the unix socket at `path` in `container`; relay as for
    /// [`Client::socket_accept`].
    pub async fn socket_connect(
        &self,
        container: &str,
        path: &str,
    ) -> Result<ProcessHandle, ClientError> {
        let req = Request::SocketConnect(SocketConnect {
            container: container.into(),
            path: path.into(),
        });
        match self.call(req).await? {
            Response::CopyStarted(c) => Ok(c.handle),
            _ => Err(ClientError::UnexpectedReply {
                call: "socket_connect",
            }),
        }
    }

    /// Attaches the process's stdout (the pty output for a terminal process).
    pub fn stdout(&self, handle: ProcessHandle) -> OutputStream {
        self.attach(stream_id(handle, StdioStream::Stdout))
    }

    /// Attaches the process's stderr.
    pub fn stderr(&self, handle: ProcessHandle) -> OutputStream {
        self.attach(stream_id(handle, StdioStream::Stderr))
    }

    /// A writer for the process's stdin (the process must be created with `stdin: true`).
    pub fn stdin(&self, handle: ProcessHandle) -> StdinWriter {
        let id = stream_id(handle, StdioStream::Stdin);
        let credit = Arc::clone(lock(&self.inner.routes).stdin_credit.entry(id).or_default());
        StdinWriter {
            inner: Arc::clone(&self.inner),
            id,
            credit,
            closed: false,
        }
    }

    /// Resolves when the connection has closed (guest gone or channel broken).
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.closed.notified();
            if lock(&self.inner.routes).closed {
                return;
            }
            notified.await;
        }
    }

    fn attach(&self, id: u32) -> OutputStream {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut routes = lock(&self.inner.routes);
            for chunk in routes.early.remove(&id).unwrap_or_default() {
                let _ = tx.send(chunk);
            }
            if routes.closed {
                let _ = tx.send(Chunk::Eof);
            }
            routes.outputs.insert(id, tx);
        }
        let _ = self.inner.tx.send(Frame::window(id, OUTPUT_WINDOW));
        OutputStream {
            inner: Arc::clone(&self.inner),
            id,
            rx,
            current: Vec::new(),
            pos: 0,
            eof: false,
        }
    }
}

/// One output stream of a process. Implements [`AsyncRead`]; reading returns 0 at the end
/// of the stream (the process closed it) or when the connection closed.
pub struct OutputStream {
    inner: Arc<Inner>,
    id: u32,
    rx: mpsc::UnboundedReceiver<Chunk>,
    current: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl OutputStream {
    /// The next chunk of output; `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        if self.pos < self.current.len() {
            let rest = self.current.split_off(self.pos);
            self.current.clear();
            self.pos = 0;
            self.grant(rest.len());
            return Some(rest);
        }
        if self.eof {
            return None;
        }
        match self.rx.recv().await {
            Some(Chunk::Bytes(b)) => {
                self.grant(b.len());
                Some(b)
            }
            Some(Chunk::Eof) | None => {
                self.eof = true;
                None
            }
        }
    }

    /// Reads the stream to its end.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = self.recv().await {
            all.extend_from_slice(&b);
        }
        all
    }

    fn grant(&self, n: usize) {
        if n > 0 {
            let _ = self.inner.tx.send(Frame::window(self.id, n as u32));
        }
    }
}

impl AsyncRead for OutputStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.current.len() {
                let n = buf.remaining().min(this.current.len() - this.pos);
                buf.put_slice(&this.current[this.pos..this.pos + n]);
                this.pos += n;
                this.grant(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Chunk::Bytes(b))) => {
                    this.current = b;
                    this.pos = 0;
                }
                Poll::Ready(Some(Chunk::Eof)) | Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for OutputStream {
    fn drop(&mut self) {
        let mut routes = lock(&self.inner.routes);
        routes.outputs.remove(&self.id);
    }
}

/// Writes a process's stdin, waiting for guest credit so a process that does not read its
/// input cannot make the host flood the channel.
pub struct StdinWriter {
    inner: Arc<Inner>,
    id: u32,
    credit: Arc<Credit>,
    closed: bool,
}

impl StdinWriter {
    /// Sends all of `data`, waiting for credit as needed.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), ClientError> {
        while !data.is_empty() {
            let n = self.take_credit(data.len().min(MAX_DATA_CHUNK)).await?;
            let frame = Frame {
                kind: Kind::Data,
                flags: 0,
                id: self.id,
                payload: data[..n].to_vec(),
            };
            self.inner
                .tx
                .send(frame)
                .map_err(|_| ClientError::Disconnected("stdin"))?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends the stream: the process reads EOF after the bytes already sent.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.closed = true;
        let frame = Frame {
            kind: Kind::Data,
            flags: FLAG_EOF,
            id: self.id,
            payload: Vec::new(),
        };
        self.inner
            .tx
            .send(frame)
            .map_err(|_| ClientError::Disconnected("stdin"))
    }

    async fn take_credit(&self, want: usize) -> Result<usize, ClientError> {
        loop {
            let notified = self.credit.notify.notified();
            {
                let mut avail = lock(&self.credit.avail);
                if *avail > 0 {
                    let n = (*avail).min(want as u64) as usize;
                    *avail -= n as u64;
                    return Ok(n);
                }
            }
            if lock(&self.inner.routes).closed {
                return Err(ClientError::Disconnected("stdin"));
            }
            notified.await;
        }
    }
}

impl Drop for StdinWriter {
    fn drop(&mut self) {
        if !self.closed {
            let frame = Frame {
                kind: Kind::Data,
                flags: FLAG_EOF,
                id: self.id,
                payload: Vec::new(),
            };
            let _ = self.inner.tx.send(frame);
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Frame>,
    mut wr: W,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    // A failed write ends the writer like a stop does; either way the transport is shut down.
    let _ = write_queued(&mut rx, &mut wr, stopped).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    inner: Arc<Inner>,
    mut stop: watch::Receiver<bool>,
) {
    let mut skipped = 0;
    loop {
        let next = tokio::select! {
            n = reader.next(&mut skipped) => n,
            _ = stop.wait_for(|s| *s) => break,
        };
        let frame = match next {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        // Routed here, in the order the guest wrote them, so a member's handle is known
        // before the first output frame of its process arrives.
        let frame = match inner.share.get() {
            Some(mux) => match mux.route_from_guest(frame) {
                Some(f) => f,
                None => continue,
            },
            None => frame,
        };
        match frame.kind {
            Kind::Response => {
                let reply = if frame.flags & FLAG_ERROR != 0 {
                    match frame.parse::<WireError>() {
                        Ok(e) => Err(e),
                        Err(e) => Err(WireError::new(
                            ErrorCode::Internal,
                            format!("undecodable error reply: {e}"),
                        )),
                    }
                } else {
                    frame.parse::<Response>().map_err(|e| {
                        WireError::new(ErrorCode::Internal, format!("undecodable reply: {e}"))
                    })
                };
                if let (Some(mux), Ok(Response::Created(Created { handle })))
                | (Some(mux), Ok(Response::CopyStarted(CopyStarted { handle, .. }))) =
                    (inner.share.get(), &reply)
                {
                    mux.owner_created(*handle);
                }
                if let Some(tx) = lock(&inner.routes).pending.remove(&frame.id) {
                    let _ = tx.send(reply);
                }
            }
            Kind::Data => {
                let mut routes = lock(&inner.routes);
                let mut chunks = Vec::new();
                if !frame.payload.is_empty() {
                    chunks.push(Chunk::Bytes(frame.payload));
                }
                if frame.flags & FLAG_EOF != 0 {
                    chunks.push(Chunk::Eof);
                }
                match routes.outputs.get(&frame.id) {
                    Some(tx) => {
                        for c in chunks {
                            let _ = tx.send(c);
                        }
                    }
                    None => routes.early.entry(frame.id).or_default().extend(chunks),
                }
            }
            Kind::Window => {
                let Ok(n) = frame.credit() else { continue };
                let credit = Arc::clone(
                    lock(&inner.routes)
                        .stdin_credit
                        .entry(frame.id)
                        .or_default(),
                );
                *lock(&credit.avail) += u64::from(n);
                credit.notify.notify_waiters();
            }
            // A late HelloAck (duplicate) or frames the host never expects: ignore.
            Kind::Hello | Kind::HelloAck | Kind::Request => {}
        }
    }
    let mut routes = lock(&inner.routes);
    routes.closed = true;
    routes.pending.clear();
    for (_, tx) in routes.outputs.drain() {
        let _ = tx.send(Chunk::Eof);
    }
    for c in routes.stdin_credit.values() {
        c.notify.notify_waiters();
    }
    drop(routes);
    if let Some(mux) = inner.share.get() {
        mux.close();
    }
    inner.closed.notify_waiters();
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps inconsistent (every
    // critical section is a single insert/remove), so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}
