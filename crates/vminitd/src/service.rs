//! The agent server: one session per host connection. Decodes frames, runs each request as
//! its own task (so a `wait` never blocks an `exec`), routes stdio and credit to the process
//! table, and maps results to the wire with `error::to_wire`.

use std::path::Path;
use std::sync::Arc;

use agent::frame::FrameReader;
use agent::server::{self, Incoming, Outbox, ServerError};
use agent::{Created, ErrorCode, HelloAck, Request, Response, Started, WireError};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{to_wire, GuestError};
use crate::process::Processes;
use crate::template::Template;
use crate::{mounts, netlink, system};

/// How vminitd runs: as the VM's PID 1, or as an ordinary process (tests, development).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// PID 1 of a VM: shutdown powers off.
    Init,
    /// A normal process: shutdown exits the process.
    Host,
}

/// The server state shared by all sessions.
pub struct Agent {
    /// Process table.
    pub procs: Arc<Processes>,
    /// Mode.
    pub mode: Mode,
    /// Whether this VM is a template (or a clone of one) still waiting for `Resume`.
    pub template: Template,
    /// Socket listeners standing in for host sockets.
    pub sockets: crate::socket::Listeners,
}

impl Agent {
    fn hello_ack(&self) -> HelloAck {
        HelloAck {
            version: 0,
            nonce: 0,
            kernel: crate::sys::kernel_release(),
            processes: self.procs.handles(),
        }
    }

    /// Executes one request.
    pub async fn handle(&self, req: Request) -> Result<Response, GuestError> {
        let procs = &self.procs;
        match req {
            Request::Ping => Ok(Response::Ok),
            Request::Resume(r) => self.template.resume(&r).await.map(|_| Response::Ok),
            Request::Configure(c) => system::configure(procs, &c).map(|_| Response::Ok),
            Request::Mount(m) => {
                if !m.target.starts_with('/') {
                    return Err(GuestError::InvalidArgument(format!(
                        "mount target {} is not absolute",
                        m.target
                    )));
                }
                mounts::mount(&m.source, Path::new(&m.target), &m.fstype, &m.options)
                    .map(|_| Response::Ok)
                    .map_err(|e| {
                        GuestError::sys(
                            format!("mount {} ({}) on {}", m.source, m.fstype, m.target),
                            e,
                        )
                    })
            }
            Request::Umount(u) => system::umount(&u.target, u.lazy).map(|_| Response::Ok),
            Request::SetupInterface(i) => netlink::setup(&i).map(|_| Response::Ok),
            Request::CreateProcess(c) => procs
                .create(c)
                .await
                .map(|handle| Response::Created(Created { handle })),
            Request::Start(p) => procs
                .start(p.handle)
                .await
                .map(|pid| Response::Started(Started { pid })),
            Request::Wait(p) => procs.wait(p.handle).await.map(Response::Exited),
            Request::Kill(k) => procs.kill(k.handle, k.signal, k.all).map(|_| Response::Ok),
            Request::ResizePty(r) => procs.resize(r.handle, r.rows, r.cols).map(|_| Response::Ok),
            Request::CloseStdin(p) => procs.close_stdin(p.handle).map(|_| Response::Ok),
            Request::Delete(p) => procs.delete(p.handle).map(|_| Response::Ok),
            Request::Stats(s) => system::stats(procs, s.container.as_deref()).map(Response::Stats),
            Request::Processes(p) => crate::ps::list(procs, &p.container).map(Response::Processes),
            Request::UpdateResources(r) => {
                system::update_resources(procs, &r).map(|_| Response::Ok)
            }
            Request::CopyOut(c) => crate::copy::copy_out(procs, c)
                .await
                .map(Response::CopyStarted),
            Request::CopyIn(c) => crate::copy::copy_in(procs, c)
                .await
                .map(Response::CopyStarted),
            Request::LayerOut(l) => crate::copy::layer_out(procs, l)
                .await
                .map(Response::CopyStarted),
            Request::LayerIn(l) => crate::copy::layer_in(procs, l)
                .await
                .map(Response::CopyStarted),
            Request::SocketListen(l) => self.sockets.listen(&l).map(|_| Response::Ok),
            Request::SocketAccept(r) => self
                .sockets
                .accept(procs, &r.id)
                .await
                .map(Response::CopyStarted),
            Request::SocketClose(r) => self.sockets.close(&r.id).map(|_| Response::Ok),
            Request::SocketConnect(c) => crate::copy::socket_connect(procs, &c.container, &c.path)
                .await
                .map(Response::CopyStarted),
            // Answered by the session loop, which acts after the reply is written.
            Request::Shutdown(_) => Ok(Response::Ok),
        }
    }

    /// Serves one connection until the host disconnects. Returns the shutdown request, if
    /// the host made one.
    pub async fn serve<R, W>(self: &Arc<Self>, rd: R, wr: W) -> Result<(), ServerError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(rd);
        reader.watch_for(agent::frame::Kind::Hello);
        let (outbox, rx) = Outbox::new();
        let writer = tokio::spawn(server::write_loop(rx, wr));
        let result = self.session(&mut reader, &outbox).await;
        self.procs.end_session();
        // Stop this session's writer: the next session may share the same channel.
        drop(outbox);
        writer.abort();
        result
    }

    async fn session<R: AsyncRead + Unpin>(
        self: &Arc<Self>,
        reader: &mut FrameReader<R>,
        outbox: &Outbox,
    ) -> Result<(), ServerError> {
        server::handshake(reader, outbox, self.hello_ack()).await?;
        self.procs.new_session(outbox.clone());
        crate::log!("host connected");
        loop {
            let mut skipped = 0;
            let frame = match reader.next(&mut skipped).await {
                Ok(Some(f)) => f,
                Ok(None) => return Err(ServerError::Disconnected),
                Err(e) => return Err(ServerError::Channel(e)),
            };
            if skipped > 0 {
                crate::log!("skipped {skipped} bytes of garbage on the agent channel");
            }
            match Incoming::from_frame(frame) {
                Incoming::Request {
                    id,
                    request: Err(e),
                } => {
                    outbox.reply(id, Err(e));
                }
                Incoming::Request {
                    id,
                    request: Ok(req),
                } => {
                    let me = Arc::clone(self);
                    let out = outbox.clone();
                    tokio::spawn(async move {
                        let shutdown = match &req {
                            Request::Shutdown(s) => Some(s.reboot),
                            _ => None,
                        };
                        // Run the call in its own task so a bug that panics still gets an
                        // answer (tokio catches the panic and reports it on the handle).
                        let name = req.name();
                        let inner = Arc::clone(&me);
                        let result =
                            match tokio::spawn(async move { inner.handle(req).await }).await {
                                Ok(r) => r.map_err(|e| to_wire(&e)),
                                Err(_) => Err(WireError::new(
                                    ErrorCode::Internal,
                                    format!("{name} failed: internal error in vminitd"),
                                )),
                            };
                        out.reply(id, result);
                        if let Some(reboot) = shutdown {
                            me.shutdown(reboot).await;
                        }
                    });
                }
                Incoming::Data { stream, bytes, eof } => self.procs.stdin_data(stream, bytes, eof),
                Incoming::Window { stream, credit } => self.procs.window(stream, credit),
                Incoming::Hello(h) => {
                    server::answer_hello(outbox, &h, self.hello_ack())?;
                    self.procs.new_session(outbox.clone());
                }
                Incoming::Ignored => {}
            }
        }
    }

    async fn shutdown(&self, reboot: bool) {
        // Let the writer put the reply on the wire first.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        match self.mode {
            Mode::Init => {
                crate::log!(
                    "shutting down ({})",
                    if reboot { "reboot" } else { "power off" }
                );
                // Kill and wait for the reaper to collect the processes (a container's init
                // goes last, after the kernel has killed its namespace), so that the root
                // filesystems are no longer busy and unmount cleanly.
                for pid in self.procs.live_pids() {
                    let _ = crate::sys::kill(pid, libc::SIGKILL);
                }
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
                while !self.procs.live_pids().is_empty() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                let e = system::shutdown(&self.procs, reboot);
                crate::log!("shutdown failed: {e}");
            }
            Mode::Host => {
                for pid in self.procs.live_pids() {
                    let _ = crate::sys::kill(pid, libc::SIGKILL);
                }
                std::process::exit(0);
            }
        }
    }
}
