//! The attached side of `run`, `start -a`, `exec` and `attach`: puts the terminal in raw mode
//! for `-t`, sends window sizes on SIGWINCH, forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the
//! container process (unless `--sig-proxy=false`), relays stdio through the monitor, and
//! detaches on the detach keys (`run -it`, `start -a -i`, `attach`; docker's ctrl-p,ctrl-q).

use std::os::fd::AsRawFd;

use nix::sys::termios::{self, SetArg, Termios};
use runtime::client::{self, ClientError};
use runtime::protocol::{ExitInfo, Frame, Request, WinSize};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Restores the terminal's settings when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// The caller's terminal size, if stdout or stdin is a terminal.
pub fn window_size() -> Option<WinSize> {
    for fd in [std::io::stdout().as_raw_fd(), std::io::stdin().as_raw_fd()] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we own; fd is one of ours.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some(WinSize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            });
        }
    }
    None
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDOUT_FILENO) == 1 }
}

/// How a session treats the caller's signals and keys.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Keep the caller's SIGINT/SIGTERM/SIGHUP/SIGQUIT instead of forwarding them
    /// (`--sig-proxy=false`).
    pub no_sig_proxy: bool,
    /// Bytes that detach the session when typed on stdin (empty: none).
    pub detach_keys: Vec<u8>,
}

/// How a session ended.
pub enum Ended {
    /// The process ended (or the session failed).
    Done(Result<ExitInfo, ClientError>),
    /// The detach keys were typed: the process runs on.
    Detached,
}

/// Runs a session (attach or exec) on `stream` and returns the process's final status.
pub async fn session(
    stream: UnixStream,
    id: &str,
    req: Request,
    stdin: bool,
    tty: bool,
) -> Result<ExitInfo, ClientError> {
    match session_with(stream, id, req, stdin, tty, &SessionOptions::default()).await {
        Ended::Done(r) => r,
        // Without detach keys there is no detaching.
        Ended::Detached => Err(ClientError::Closed(id.to_string())),
    }
}

/// [`session`] with `opts`.
pub async fn session_with(
    stream: UnixStream,
    id: &str,
    req: Request,
    stdin: bool,
    tty: bool,
    opts: &SessionOptions,
) -> Ended {
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let mut raw = None;
    let mut forwarders = Vec::new();
    let proxied: &[SignalKind] = if opts.no_sig_proxy {
        &[]
    } else {
        &[
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ]
    };
    for &kind in proxied.iter().chain(&[SignalKind::window_change()]) {
        let Ok(mut sig) = signal(kind) else { continue };
        let ctl = ctl_tx.clone();
        forwarders.push(tokio::spawn(async move {
            while sig.recv().await.is_some() {
                let frame = if kind == SignalKind::window_change() {
                    match window_size() {
                        Some(ws) if tty => Frame::Resize(ws),
                        _ => continue,
                    }
                } else {
                    Frame::Signal(kind.as_raw_value())
                };
                if ctl.send(frame).is_err() {
                    break;
                }
            }
        }));
    }
    let detached = std::sync::Arc::new(tokio::sync::Notify::new());
    let input = stdin.then(|| Escape {
        inner: tokio::io::stdin(),
        keys: opts.detach_keys.clone(),
        matched: 0,
        pending: Vec::new(),
        done: false,
        detached: detached.clone(),
    });
    let on_started = || {
        if tty {
            if let Some(ws) = window_size() {
                let _ = ctl_tx.send(Frame::Resize(ws));
            }
            if stdin && stdin_is_tty() {
                raw = RawMode::enter();
            }
        }
    };
    let relay = client::relay(
        stream,
        id,
        req,
        input,
        tokio::io::stdout(),
        tokio::io::stderr(),
        ctl_rx,
        on_started,
    );
    // Detaching drops the relay, closing the connection: the monitor keeps the process and
    // its stdin open for the next attach.
    let mut relay = Box::pin(relay);
    let result = tokio::select! {
        r = &mut relay => Ended::Done(r),
        _ = detached.notified() => {
            // The relay's writer task sends what was typed before the keys a moment after
            // the keys were read: let it run briefly before the connection goes.
            let grace = tokio::time::sleep(std::time::Duration::from_millis(100));
            tokio::select! {
                r = &mut relay => Ended::Done(r),
                _ = grace => Ended::Detached,
            }
        }
    };
    drop(relay);
    drop(raw);
    for f in forwarders {
        f.abort();
    }
    result
}

/// docker's detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// The detach keys of a session on a process with a terminal (`tty`) whose stdin is relayed
/// (`stdin`): `given` (`--detach-keys`), else docker's. docker reads them only on a
/// terminal's input; without one there are none.
pub fn detach_keys(tty: bool, stdin: bool, given: Option<DetachKeys>) -> Vec<u8> {
    match (tty && stdin, given) {
        (false, _) => Vec::new(),
        (true, Some(k)) => k.0,
        (true, None) => DEFAULT_DETACH_KEYS.to_vec(),
    }
}

/// The end of an attached `run`, `start` or `attach`: the process's exit code, or docker's
/// note when the detach keys left it running (exit 0).
pub fn finish(ended: Ended) -> anyhow::Result<()> {
    match ended {
        Ended::Done(r) => super::run::finish(r),
        Ended::Detached => {
            eprintln!("read escape sequence");
            Ok(())
        }
    }
}

/// A `--detach-keys` value as the bytes typed. (A newtype: clap's derive would read an
/// `Option<Vec<u8>>` as a list of byte values.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(pub Vec<u8>);

/// Parses docker's `--detach-keys`: comma-separated keys, each a single character or
/// `ctrl-X` with X one of `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_` (docker's `term.ToBytes`).
pub fn parse_detach_keys(s: &str) -> Result<DetachKeys, String> {
    let bad = |k: &str| format!("invalid detach keys {s:?}: unknown key {k:?}");
    let mut out = Vec::new();
    for key in s.split(',').map(str::trim) {
        let lower = key.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad(key)),
            };
            out.push(b);
        } else if key.len() == 1 {
            out.extend_from_slice(key.as_bytes());
        } else {
            return Err(bad(key));
        }
    }
    Ok(DetachKeys(out))
}

/// stdin with the detach keys taken out: a prefix of them is held back until the next byte
/// shows whether the whole sequence follows (then the session detaches and nothing more is
/// read) or not (then the held bytes go on), as docker's escape proxy does.
struct Escape<R> {
    inner: R,
    keys: Vec<u8>,
    matched: usize,
    pending: Vec<u8>,
    done: bool,
    detached: std::sync::Arc<tokio::sync::Notify>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Escape<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending[..n]);
                this.pending.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.done {
                // Only now, with the bytes typed before the keys handed on, does the session
                // end. Never EOF: that would close the process's stdin; the session is dropped.
                this.detached.notify_one();
                return Poll::Pending;
            }
            let mut tmp = [0u8; 4096];
            let mut read = tokio::io::ReadBuf::new(&mut tmp);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
            }
            if this.keys.is_empty() {
                this.pending.extend_from_slice(read.filled());
                continue;
            }
            for &b in read.filled() {
                if b == this.keys[this.matched] {
                    this.matched += 1;
                    if this.matched == this.keys.len() {
                        this.done = true;
                        break;
                    }
                    continue;
                }
                let held = this.matched;
                this.pending.extend_from_slice(&this.keys[..held]);
                this.matched = usize::from(b == this.keys[0]);
                if this.matched == 0 {
                    this.pending.push(b);
                }
            }
        }
    }
}

/// `container attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long)]
    pub no_stdin: bool,
    /// Forward the signals this command receives to the process (with a terminal, ctrl-c
    /// reaches it through the terminal anyway).
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Keys that detach from the container and leave it running, e.g. ctrl-a,q
    /// (default: ctrl-p,ctrl-q; only on a terminal, as docker).
    #[arg(long, value_name = "KEYS", value_parser = parse_detach_keys)]
    pub detach_keys: Option<DetachKeys>,
    /// The container (name or id).
    pub container: String,
}

/// `container attach`: the container's main process's stdio here until it ends (exit with
/// its code) or the detach keys are typed (exit 0, the container runs on).
pub async fn attach(global: &crate::global::GlobalOptions, a: AttachArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let mut container = rt.container(&a.container)?;
    let stream = container.connect(runtime::Verb::Attach).await?;
    let process = &container.record().config.process;
    let tty = process.terminal;
    let stdin = !a.no_stdin && process.open_stdin;
    let opts = SessionOptions {
        no_sig_proxy: !a.sig_proxy,
        detach_keys: detach_keys(tty, stdin, a.detach_keys),
    };
    let req = Request::Attach {
        stdin,
        early_exit: false,
    };
    finish(session_with(stream, container.id(), req, stdin, tty, &opts).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// What `input` yields through the escape filter for `keys`, and whether it detached.
    async fn filtered(input: &'static [u8], keys: &[u8]) -> (Vec<u8>, bool) {
        let detached = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut escape = Escape {
            inner: input,
            keys: keys.to_vec(),
            matched: 0,
            pending: Vec::new(),
            done: false,
            detached: detached.clone(),
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        let timeout = std::time::Duration::from_millis(200);
        while let Ok(Ok(n)) = tokio::time::timeout(timeout, escape.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let notified = tokio::time::timeout(timeout, detached.notified()).await;
        (out, notified.is_ok())
    }

    #[tokio::test]
    async fn bytes_before_the_keys_pass_and_the_keys_detach() {
        let keys = DEFAULT_DETACH_KEYS;
        let (out, detached) = filtered(b"ab\x10c\x10\x11zz", &keys).await;
        assert_eq!(out, b"ab\x10c");
        assert!(detached);
        let (out, detached) = filtered(b"plain\x10", &keys).await;
        assert_eq!(out, b"plain", "a held prefix waits for the next byte");
        assert!(!detached);
        let (out, detached) = filtered(b"x\x10\x11", &[]).await;
        assert_eq!(out, b"x\x10\x11", "no keys: nothing is taken out");
        assert!(!detached);
    }
}
