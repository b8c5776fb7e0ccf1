//! stdio of guest processes: one pump per output stream that reads the process's pipe or pty
//! only while the host has granted credit (so a slow reader stalls only its own process), and
//! one writer per stdin that grants the host credit back as the process drains it.

use std::sync::{Arc, Mutex};

use agent::ProcessHandle;
use tokio::sync::{mpsc, Notify};

use crate::fdio::FdStream;

/// What the pumps need of the host session: the process table implements it. A trait so this
/// module needs nothing of the table, and the table imports the pumps, not the reverse.
pub(crate) trait HostSession: Send + Sync + 'static {
    /// Sends stream data (or its end) to the attached host, when `gen` (if given) is still
    /// the current session; `false` when it was not sent.
    fn send(&self, gen: Option<u64>, stream: u32, bytes: Vec<u8>, eof: bool) -> bool;
    /// Gives the host `n` more bytes of stdin credit for `handle`.
    fn grant_stdin(&self, handle: ProcessHandle, n: usize);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are single assignments; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Output credit of one stream, valid for one session generation.
#[derive(Default)]
pub struct Credit {
    state: Mutex<(u64, u64)>,
    notify: Notify,
}

impl Credit {
    /// Waits for credit; returns the generation it belongs to.
    pub(crate) async fn wait(&self) -> u64 {
        loop {
            let n = self.notify.notified();
            {
                let s = lock(&self.state);
                if s.1 > 0 {
                    return s.0;
                }
            }
            n.await;
        }
    }

    /// Takes up to `want` bytes of credit of generation `gen`.
    pub(crate) fn take(&self, gen: u64, want: usize) -> usize {
        let mut s = lock(&self.state);
        if s.0 != gen {
            return 0;
        }
        let n = (s.1 as usize).min(want);
        s.1 -= n as u64;
        n
    }

    pub(crate) fn available(&self) -> usize {
        lock(&self.state).1 as usize
    }

    pub(crate) fn grant(&self, gen: u64, n: u32) {
        let mut s = lock(&self.state);
        if s.0 == gen {
            s.1 += u64::from(n);
        }
        drop(s);
        self.notify.notify_waiters();
    }

    pub(crate) fn reset(&self, gen: u64) {
        *lock(&self.state) = (gen, 0);
        self.notify.notify_waiters();
    }
}

/// What the host sent for a process's stdin.
pub(crate) enum StdinMsg {
    Data(Vec<u8>),
    Eof,
}

/// Forwards one output stream to the host within its credit, then its end.
pub(crate) async fn pump_output<H: HostSession>(
    host: Arc<H>,
    stream: u32,
    fd: FdStream,
    credit: Arc<Credit>,
) {
    let mut buf = vec![0u8; agent::frame::MAX_DATA_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let gen = credit.wait().await;
        if pending.is_empty() {
            let want = credit.available().clamp(1, buf.len());
            match fd.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let n = credit.take(gen, pending.len());
        if n == 0 {
            continue;
        }
        let rest = pending.split_off(n);
        let chunk = std::mem::replace(&mut pending, rest);
        if !host.send(Some(gen), stream, chunk.clone(), false) {
            // Session changed under us: keep the bytes for the next host.
            let rest = std::mem::take(&mut pending);
            pending = chunk;
            pending.extend_from_slice(&rest);
        }
    }
    send_eof(&*host, stream, &credit).await;
}

/// Ends a stream, delivered to a host that is attached (one that has granted credit), however
/// many sessions come and go first.
pub(crate) async fn send_eof<H: HostSession>(host: &H, stream: u32, credit: &Credit) {
    loop {
        let gen = credit.wait().await;
        if host.send(Some(gen), stream, Vec::new(), true) {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Writes what the host sends to a process's stdin.
pub(crate) async fn pump_stdin<H: HostSession>(
    host: Arc<H>,
    handle: ProcessHandle,
    fd: FdStream,
    mut rx: mpsc::UnboundedReceiver<StdinMsg>,
    tty: bool,
) {
    let mut broken = false;
    while let Some(msg) = rx.recv().await {
        match msg {
            StdinMsg::Data(bytes) => {
                if !broken && fd.write_all(&bytes).await.is_err() {
                    // The process closed its stdin: swallow the rest, keep granting credit.
                    broken = true;
                }
                host.grant_stdin(handle, bytes.len());
            }
            StdinMsg::Eof => {
                if tty && !broken {
                    // A pty has no half-close: send the EOF character (VEOF, ^D).
                    let _ = fd.write_all(&[4]).await;
                }
                break;
            }
        }
    }
    // Dropping `fd` closes the pipe's write end: the process reads EOF.
}
