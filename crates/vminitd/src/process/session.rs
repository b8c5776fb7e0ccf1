//! The process table's side of the host session: session generations, output credit and
//! stdin credit, and the stdio pumps of each process (`stdio.rs`) wired to the current host.

use std::sync::Arc;

use agent::server::Outbox;
use agent::{stream_id, ProcessHandle, StdioStream};
use tokio::sync::mpsc;

use super::{lock, Processes, STDIN_WINDOW};
use crate::fdio::FdStream;
use crate::stdio::{pump_output, pump_stdin, send_eof, Credit, HostSession, StdinMsg};

impl Processes {
    /// The host went away: credit is void (output pumps wait instead of trying to send into a
    /// closed session) until the next host attaches.
    pub fn end_session(&self) {
        let mut inner = lock(&self.inner);
        inner.gen += 1;
        let gen = inner.gen;
        for c in inner.credits.values() {
            c.reset(gen);
        }
        inner.outbox = None;
    }

    /// A host (re)connected: output credit resets (the host grants it again when it attaches)
    /// and the new host gets fresh stdin credit for every open stdin.
    pub fn new_session(&self, outbox: Outbox) {
        let mut inner = lock(&self.inner);
        inner.gen += 1;
        let gen = inner.gen;
        for c in inner.credits.values() {
            c.reset(gen);
        }
        for (h, p) in &inner.procs {
            if p.stdin.is_some() {
                outbox.window(stream_id(*h, StdioStream::Stdin), STDIN_WINDOW);
            }
        }
        inner.outbox = Some(outbox);
    }

    /// The host granted output credit.
    pub fn window(&self, stream: u32, credit: u32) {
        let inner = lock(&self.inner);
        let gen = inner.gen;
        if let Some(c) = inner.credits.get(&stream) {
            c.grant(gen, credit);
        }
    }

    /// stdin bytes from the host.
    pub fn stdin_data(&self, stream: u32, bytes: Vec<u8>, eof: bool) {
        let Some((handle, StdioStream::Stdin)) = agent::split_stream_id(stream) else {
            return;
        };
        let inner = lock(&self.inner);
        let Some(tx) = inner.procs.get(&handle).and_then(|p| p.stdin.as_ref()) else {
            return;
        };
        if !bytes.is_empty() {
            let _ = tx.send(StdinMsg::Data(bytes));
        }
        if eof {
            let _ = tx.send(StdinMsg::Eof);
        }
    }

    /// Registers the output credit of stream `sid` for the current host connection.
    fn new_credit(&self, sid: u32) -> Arc<Credit> {
        let mut inner = lock(&self.inner);
        let c = Arc::new(Credit::default());
        c.reset(inner.gen);
        inner.credits.insert(sid, Arc::clone(&c));
        c
    }

    /// Starts the stdio pumps of a newly registered process: stdin (with its first credit for
    /// the host) when there is one, and each output stream; a missing output stream (a
    /// terminal's stderr) is ended at once, as soon as a host attaches.
    pub(super) fn attach_stdio(
        self: &Arc<Self>,
        handle: ProcessHandle,
        stdin: Option<(FdStream, mpsc::UnboundedReceiver<StdinMsg>)>,
        tty: bool,
        stdout: Option<FdStream>,
        stderr: Option<FdStream>,
    ) {
        if let Some((w, rx)) = stdin {
            tokio::spawn(pump_stdin(Arc::clone(self), handle, w, rx, tty));
            self.grant_stdin(handle, STDIN_WINDOW as usize);
        }
        for (stream, fd) in [(StdioStream::Stdout, stdout), (StdioStream::Stderr, stderr)] {
            let sid = stream_id(handle, stream);
            let credit = self.new_credit(sid);
            match fd {
                Some(fd) => {
                    tokio::spawn(pump_output(Arc::clone(self), sid, fd, credit));
                }
                None => {
                    let me = Arc::clone(self);
                    tokio::spawn(async move { send_eof(&*me, sid, &credit).await });
                }
            }
        }
    }
}

impl HostSession for Processes {
    fn send(&self, gen: Option<u64>, stream: u32, bytes: Vec<u8>, eof: bool) -> bool {
        let inner = lock(&self.inner);
        if gen.is_some_and(|g| g != inner.gen) {
            return false;
        }
        inner
            .outbox
            .as_ref()
            .is_some_and(|o| o.data(stream, bytes, eof))
    }

    fn grant_stdin(&self, handle: ProcessHandle, n: usize) {
        let inner = lock(&self.inner);
        if let Some(o) = &inner.outbox {
            o.window(stream_id(handle, StdioStream::Stdin), n as u32);
        }
    }
}
