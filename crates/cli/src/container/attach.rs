//! The attached side of `run`, `start -a` and `exec`: puts the terminal in raw mode for `-t`,
//! sends window sizes on SIGWINCH, forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the container
//! process, and relays stdio through the monitor.

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

/// Runs a session (attach or exec) on `stream` and returns the process's final status.
pub async fn session(
    stream: UnixStream,
    id: &str,
    req: Request,
    stdin: bool,
    tty: bool,
) -> Result<ExitInfo, ClientError> {
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let mut raw = None;
    let mut forwarders = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::window_change(),
    ] {
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
    let input = stdin.then(tokio::io::stdin);
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
    let result = client::relay(
        stream,
        id,
        req,
        input,
        tokio::io::stdout(),
        tokio::io::stderr(),
        ctl_rx,
        on_started,
    )
    .await;
    drop(raw);
    for f in forwarders {
        f.abort();
    }
    result
}
