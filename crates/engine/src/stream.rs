//! Streams of a container's stdio: `logs`, `attach` and the session of an attached exec.
//!
//! Without a terminal, docker multiplexes stdout and stderr on one connection: every chunk is
//! preceded by an 8-byte header (Engine API, "Attach to a container", stream format):
//!
//! ```text
//!  0        1  2  3  4                      8
//! +--------+--+--+--+----------------------+----------------------+
//! | stream | 0  0  0| size (u32 big endian)| size bytes of output |
//! +--------+--------+----------------------+----------------------+
//!   1 = stdout, 2 = stderr (0 = stdin, never sent by a server)
//! ```
//!
//! With a terminal (`Tty`), the bytes go as they are. `attach` and `exec start` take over the
//! HTTP connection (`Upgrade: tcp`, answered `101`): from then on the client's bytes are the
//! process's stdin and ours its output, until the process ends and we close.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use runtime::client::{self, ClientError};
use runtime::protocol::{ExitInfo, Request as MonitorRequest};
use runtime::state::Status;
use runtime::Verb;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use crate::error::ApiError;
use crate::http::{self, Answer, Body, Req};
use crate::Engine;

/// docker's media type of attach, exec and logs streams in API v1.41.
const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

/// Stream ids of the multiplexing header.
const STDOUT: u8 = 1;
const STDERR: u8 = 2;

/// One chunk with its multiplexing header.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(stream);
    b.put_bytes(0, 3);
    // A chunk is at most what one read gave (32 KiB): it fits the header's u32.
    b.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    b.put_slice(data);
    b.freeze()
}

/// Chunks (of up to 64 KiB) queued for a session's client.
const OUTPUT_QUEUE: usize = 16;

/// One output stream of a session as an `AsyncWrite`: each write becomes one chunk (framed
/// unless the process has a terminal) on the channel a writer task drains to the client.
/// A stream the client did not ask for is dropped here.
struct Mux {
    /// A short queue to the connection's writer: a client that reads slowly holds the
    /// session back (as docker's attach does) instead of the server holding its output.
    tx: PollSender<Bytes>,
    stream: u8,
    tty: bool,
    wanted: bool,
}

impl AsyncWrite for Mux {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.wanted && !buf.is_empty() {
            let broken = |_| io::Error::from(io::ErrorKind::BrokenPipe);
            std::task::ready!(self.tx.poll_reserve(cx)).map_err(broken)?;
            let chunk = if self.tty {
                Bytes::copy_from_slice(buf)
            } else {
                frame(self.stream, buf)
            };
            self.tx.send_item(chunk).map_err(broken)?;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a session's client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// Relay the client's bytes to the process's stdin.
    pub stdin: bool,
    /// Send stdout.
    pub stdout: bool,
    /// Send stderr.
    pub stderr: bool,
    /// The process has a terminal: raw bytes, no headers.
    pub tty: bool,
}

/// The answer that takes over the connection (`101 UPGRADED`), or, for a client that did not
/// ask to upgrade, a `200` whose body carries the output (no stdin then); and the connection
/// the session talks to once the answer is sent.
pub fn take_over(req: Req) -> (Response<Body>, Client) {
    if req.wants_upgrade() {
        let mut r = http::empty(StatusCode::SWITCHING_PROTOCOLS);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(RAW_STREAM));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("tcp"));
        (
            r,
            Client::Upgrade(Box::new(Request::from_parts(req.parts, ()))),
        )
    } else {
        let (r, tx) = http::channel(StatusCode::OK, RAW_STREAM);
        (r, Client::Body(tx))
    }
}

/// The client side of a session.
pub enum Client {
    /// The connection, once hyper has sent the 101.
    Upgrade(Box<Request<()>>),
    /// The body of a 200 answer.
    Body(mpsc::Sender<Bytes>),
}

/// Runs an attach or exec session between `client` and the monitor connection `monitor`:
/// sends `req`, relays stdin and output, and returns how the process ended. `on_end` runs
/// after the process ended and before the connection is closed (an exec records its exit
/// code there, so the client's `GET /exec/{id}/json` after the stream sees it).
pub async fn session(
    client: Client,
    monitor: UnixStream,
    id: &str,
    req: MonitorRequest,
    want: Want,
    control: mpsc::UnboundedReceiver<runtime::protocol::Frame>,
    on_end: impl FnOnce(&Result<ExitInfo, ClientError>),
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let mut input = None;
    let writer = match client {
        Client::Upgrade(req) => {
            let upgraded = match hyper::upgrade::on(*req).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("upgrade for {id}: {e}");
                    return;
                }
            };
            let (rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
            if want.stdin {
                input = Some(rd);
            }
            tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        let _ = gone_tx.send(());
                        return;
                    }
                }
                let _ = wr.shutdown().await;
            })
        }
        Client::Body(body) => tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if body.send(b).await.is_err() {
                    let _ = gone_tx.send(());
                    return;
                }
            }
        }),
    };
    let out = Mux {
        tx: PollSender::new(tx.clone()),
        stream: STDOUT,
        tty: want.tty,
        wanted: want.stdout,
    };
    let err = Mux {
        tx: PollSender::new(tx.clone()),
        stream: STDERR,
        tty: want.tty,
        wanted: want.stderr,
    };
    let relay = client::relay(monitor, id, req, input, out, err, control, || {});
    let result = tokio::select! {
        r = relay => r,
        // The client went away: stop relaying; the process runs on (as with docker, whose
        // attach ends without touching the container).
        _ = gone_rx => return,
    };
    // A process that could not run says why on its stderr, as docker's CLI prints the
    // daemon's reason.
    let reason = match &result {
        Ok(info) => info.reason.clone(),
        Err(ClientError::Failed(info)) => info.reason.clone(),
        Err(e) => Some(runtime::error_line(e)),
    };
    if let Some(reason) = reason {
        let text = format!("Error: {reason}\n");
        let chunk = if want.tty {
            Bytes::from(text)
        } else {
            frame(STDERR, text.as_bytes())
        };
        let _ = tx.send(chunk).await;
    }
    on_end(&result);
    drop(tx);
    let _ = writer.await;
}

/// The exit code of a session's result.
pub fn exit_code(result: &Result<ExitInfo, ClientError>) -> i32 {
    match result {
        Ok(info) | Err(ClientError::Failed(info)) => info.code,
        Err(e) => runtime::outcome::exit_code_of(e),
    }
}

/// `POST /containers/{id}/attach?stream=1&stdin=&stdout=&stderr=`. A running container is
/// attached at once; a created or exited one (docker's `run` and `start -a` attach before
/// they start) waits for its start, which hands this attach the monitor's connection before
/// the process runs, so no output is missed.
pub async fn attach(engine: Arc<Engine>, id: &str, req: Req) -> Answer {
    let mut c = engine.runtime().container(id)?;
    if !req.flag("stream") {
        // `logs=1` without `stream`: the log replay of old clients.
        return Err(ApiError::not_implemented(
            "POST",
            "/containers/{id}/attach without stream=1",
        ));
    }
    let process = &c.record().config.process;
    let want = Want {
        stdin: req.flag("stdin") && process.open_stdin,
        stdout: req.flag("stdout"),
        stderr: req.flag("stderr"),
        tty: process.terminal,
    };
    let id = c.id().to_string();
    enum Source {
        Now(UnixStream),
        AtStart(oneshot::Receiver<UnixStream>),
    }
    let source = match c.status() {
        Status::Running => Source::Now(c.connect(Verb::Attach).await?),
        Status::Created | Status::Exited if c.record().monitor_pid.is_none() => {
            let (tx, rx) = oneshot::channel();
            engine.wait_for_start(&id, tx);
            Source::AtStart(rx)
        }
        // Restarting, or a monitor still starting or tearing down: the runtime's refusal.
        _ => Source::Now(c.connect(Verb::Attach).await?),
    };
    let (response, client) = take_over(req);
    // Registered now: a client resizes right after its start, before the monitor answers.
    let control = engine.control(&id);
    tokio::spawn(async move {
        let monitor = match source {
            Source::Now(s) => s,
            Source::AtStart(rx) => match rx.await {
                Ok(s) => s,
                // The container was deleted, or the server stops.
                Err(_) => return,
            },
        };
        let req = MonitorRequest::Attach {
            stdin: want.stdin,
            early_exit: false,
        };
        session(client, monitor, &id, req, want, control, |_| {}).await;
    });
    Ok(response)
}

/// `POST /containers/{id}/resize?h=&w=` and `POST /exec/{id}/resize?h=&w=`: the new window
/// size of the terminal of the session `key` (a container's attach, an exec).
pub fn resize(engine: &Engine, key: &str, what: &str, req: &Req) -> Answer {
    let size = |k: &str| -> Result<u16, ApiError> {
        req.int(k)?
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid {k}: a terminal size is 0–65535"))
            })
    };
    let (rows, cols) = (size("h")?, size("w")?);
    if engine.resize(key, rows, cols) {
        Ok(http::empty(StatusCode::OK))
    } else {
        Err(ApiError::conflict(format!(
            "{what} has no attached terminal session to resize"
        )))
    }
}

/// `GET /containers/{id}/logs?stdout=&stderr=&follow=&timestamps=&tail=&since=&until=`:
/// the container's log (kept by its monitor in docker's json-file layout), framed as attach
/// output; with `follow`, new lines as they come until the container stops.
pub fn logs(engine: &Engine, id: &str, req: &Req) -> Answer {
    let mut c = engine.runtime().container(id)?;
    let (stdout, stderr) = (req.flag("stdout"), req.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    if !c.record().config.log.keeps_logs() {
        return Err(ApiError::new(
            hyper::StatusCode::NOT_IMPLEMENTED,
            runtime::logs::NOT_READABLE,
        ));
    }
    let tail = match req.q("tail") {
        None | Some("" | "all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("invalid tail {n:?}: a number or \"all\""))
        })?),
    };
    let since = time_param(req, "since")?;
    let until = time_param(req, "until")?;
    let follow = req.flag("follow");
    let timestamps = req.flag("timestamps");
    let tty = c.record().config.process.terminal;
    let path = c.log_path();
    let (response, tx) = http::channel(StatusCode::OK, RAW_STREAM);
    tokio::spawn(async move {
        let select = |recs: Vec<runtime::logs::Record>| -> Vec<runtime::logs::Record> {
            recs.into_iter()
                .filter(|r| match r.stream {
                    runtime::logs::Stream::Stdout => stdout,
                    runtime::logs::Stream::Stderr => stderr,
                })
                .filter(|r| {
                    since.map_or(true, |s| r.time >= s) && until.map_or(true, |u| r.time <= u)
                })
                .collect()
        };
        let send = |rec: runtime::logs::Record| {
            let mut text = String::new();
            if timestamps {
                text.push_str(&runtime::docker::rfc3339_nano(&rec.time));
                text.push(' ');
            }
            text.push_str(&rec.log);
            let kind = match rec.stream {
                runtime::logs::Stream::Stdout => STDOUT,
                runtime::logs::Stream::Stderr => STDERR,
            };
            if tty {
                Bytes::from(text)
            } else {
                frame(kind, text.as_bytes())
            }
        };
        // One open descriptor throughout: an `--rm` container's log leaves with it, and a
        // client may read the stream only after that (the Docker SDK's `run` does).
        let mut log = runtime::logs::LogFollower::new(&path);
        let Ok(recs) = log.read() else {
            return;
        };
        for rec in runtime::logs::tail(select(recs), tail) {
            if tx.send(send(rec)).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            // Read once more after the container stopped: its last lines are in by then.
            let up =
                c.refresh().is_ok() && (c.status().is_up() || c.record().monitor_pid.is_some());
            let Ok(recs) = log.read() else {
                return;
            };
            for rec in select(recs) {
                if tx.send(send(rec)).await.is_err() {
                    return;
                }
            }
            if !up || tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok(response)
}

/// `since`/`until`: Unix seconds, with an optional fraction (docker's `timetypes`).
fn time_param(req: &Req, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    let Some(v) = req.q(key).filter(|v| !v.is_empty() && *v != "0") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request(format!("invalid {key} {v:?}: Unix seconds expected"));
    let (secs, frac) = v.split_once('.').unwrap_or((v, "0"));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = format!("{frac:0<9}")
        .get(..9)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok(chrono::DateTime::from_timestamp(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_has_dockers_eight_byte_header() {
        assert_eq!(
            &frame(STDOUT, b"hi\n")[..],
            b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
        );
        let big = vec![b'x'; 70_000];
        let f = frame(STDERR, &big);
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(f.len(), 70_008);
    }

    #[tokio::test]
    async fn output_is_framed_per_write_unless_a_terminal() {
        let (tx, mut rx) = mpsc::channel(OUTPUT_QUEUE);
        let mut out = Mux {
            tx: PollSender::new(tx.clone()),
            stream: STDERR,
            tty: false,
            wanted: true,
        };
        out.write_all(b"err").await.unwrap();
        assert_eq!(
            &rx.recv().await.unwrap()[..],
            b"\x02\x00\x00\x00\x00\x00\x00\x03err"
        );
        let mut raw = Mux {
            tx: PollSender::new(tx.clone()),
            stream: STDOUT,
            tty: true,
            wanted: true,
        };
        raw.write_all(b"tty").await.unwrap();
        assert_eq!(&rx.recv().await.unwrap()[..], b"tty");
        let mut unwanted = Mux {
            tx: PollSender::new(tx),
            stream: STDOUT,
            tty: false,
            wanted: false,
        };
        unwanted.write_all(b"dropped").await.unwrap();
        drop(unwanted);
        drop(out);
        drop(raw);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_holds_the_writer_back() {
        let (tx, mut rx) = mpsc::channel(OUTPUT_QUEUE);
        let mut out = Mux {
            tx: PollSender::new(tx),
            stream: STDOUT,
            tty: false,
            wanted: true,
        };
        for _ in 0..OUTPUT_QUEUE {
            out.write_all(b"x").await.unwrap();
        }
        // The queue is full: the next write waits for the client, not for memory.
        let blocked = tokio::time::timeout(Duration::from_millis(100), out.write_all(b"y")).await;
        assert!(blocked.is_err(), "a write went past a full queue");
        rx.recv().await.unwrap();
        out.write_all(b"y").await.unwrap();
    }
}
