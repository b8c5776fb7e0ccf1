//! The client side of the monitor socket: what `run`, `start -a`, `exec`, `kill`, `stop` and
//! `cp` and `stats` use.
//!
//! [`relay`] is generic over the caller's stdin/stdout/stderr so the CLI can pass its terminal
//! and tests can pass buffers.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::protocol::{
    read_frame, write_frame, ExitInfo, Frame, Hello, ProtocolError, Request, PROTOCOL_VERSION,
    PROTOCOL_VERSION_NO_HANDSHAKE,
};
use crate::state::{ContainerRecord, Store};

/// Errors talking to a monitor.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The container has no running monitor.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The monitor did not come up.
    #[error("monitor of container {id} did not start: {reason}")]
    MonitorFailed {
        /// Container id.
        id: String,
        /// What is known.
        reason: String,
    },
    /// Protocol or socket error.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The monitor closed the connection without a final status.
    #[error("monitor of container {0} closed the connection unexpectedly")]
    Closed(String),
    /// State store error.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The monitor speaks another protocol version (it was started by another build of the
    /// binary and still runs the container).
    #[error(
        "the monitor of container {id} speaks protocol version {monitor}, this client version \
         {client}: it was started by another `container` binary; use that binary, or stop the \
         monitor (pid in state.json) and start the container again"
    )]
    Version {
        /// Container id.
        id: String,
        /// The monitor's version.
        monitor: u32,
        /// Ours ([`PROTOCOL_VERSION`]).
        client: u32,
    },
    /// The request failed; carries the exit code to use.
    #[error("{}", .0.reason.clone().unwrap_or_else(|| format!("failed with exit code {}", .0.code)))]
    Failed(ExitInfo),
}

/// Connects to a running container's monitor and checks that it speaks our protocol.
pub async fn connect(store: &Store, id: &str) -> Result<UnixStream, ClientError> {
    let mut stream = UnixStream::connect(store.socket_dir(id).join("monitor.sock"))
        .await
        .map_err(|_| ClientError::NotRunning(id.to_string()))?;
    handshake(&mut stream, id).await?;
    Ok(stream)
}

/// The version handshake on a fresh connection to the monitor of container `id` (see
/// [`crate::protocol`]); [`connect`] and [`connect_starting`] do it already.
pub async fn handshake<S>(stream: &mut S, id: &str) -> Result<(), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = Hello {
        version: PROTOCOL_VERSION,
    };
    write_frame(stream, &Frame::Hello(hello)).await?;
    let version = match read_frame(stream).await? {
        Some(Frame::HelloAck(ack)) => ack.version,
        // Monitors from before the handshake drop a connection whose first frame they do
        // not know; ours always answer a Hello.
        None => PROTOCOL_VERSION_NO_HANDSHAKE,
        Some(Frame::Error(info)) => return Err(ClientError::Failed(info)),
        Some(_) => return Err(ClientError::Closed(id.to_string())),
    };
    if version != PROTOCOL_VERSION {
        return Err(ClientError::Version {
            id: id.to_string(),
            monitor: version,
            client: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// Connects to a monitor that is starting: retries until its socket answers, the monitor dies
/// (then its recorded reason is returned), or `timeout` passes.
pub async fn connect_starting(
    store: &Store,
    id: &str,
    monitor_pid: u32,
    timeout: Duration,
) -> Result<UnixStream, ClientError> {
    let deadline = Instant::now() + timeout;
    let sock = store.socket_dir(id).join("monitor.sock");
    // The monitor binds its socket a few milliseconds after it starts, and a `--wait-attach`
    // monitor boots nothing until we are connected: poll finely at first, then back off.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Ok(mut s) = UnixStream::connect(&sock).await {
            handshake(&mut s, id).await?;
            return Ok(s);
        }
        if !crate::state::process_is(monitor_pid, crate::MONITOR_SUBCOMMAND)
            || Instant::now() > deadline
        {
            let reason = match store.load(id) {
                Ok(ContainerRecord {
                    exit_reason: Some(r),
                    exit_code,
                    ..
                }) => {
                    return Err(ClientError::Failed(ExitInfo {
                        code: exit_code.unwrap_or(crate::EXIT_RUNTIME_FAULT),
                        reason: Some(r),
                        // state.json keeps the exit code the category was mapped to, not
                        // the category itself.
                        error: None,
                    }));
                }
                _ => format!("see {}", store.dir_of(id).join("monitor.log").display()),
            };
            return Err(ClientError::MonitorFailed {
                id: id.to_string(),
                reason,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Sends a request that answers with one frame (kill, wait-started, stop) and returns it.
pub async fn request(mut stream: UnixStream, id: &str, req: Request) -> Result<Frame, ClientError> {
    write_frame(&mut stream, &Frame::Request(req)).await?;
    match read_frame(&mut stream).await? {
        Some(Frame::Error(info)) => Err(ClientError::Failed(info)),
        Some(f) => Ok(f),
        None => Err(ClientError::Closed(id.to_string())),
    }
}

/// One reading of a running container's resource counters.
pub async fn stats(store: &Store, id: &str) -> Result<crate::stats::Sample, ClientError> {
    let stream = connect(store, id).await?;
    match request(stream, id, Request::Stats).await? {
        Frame::Stats(s) => Ok(*s),
        _ => Err(ClientError::Closed(id.to_string())),
    }
}

/// Runs an attach or exec session: sends `req`, copies `input` (if any) as stdin, forwards
/// `control` frames (resize, signal), writes output to `out`/`err`, and returns the final
/// status. `on_started` is called once the process runs.
#[allow(clippy::too_many_arguments)]
pub async fn relay<I, O, E>(
    stream: UnixStream,
    id: &str,
    req: Request,
    input: Option<I>,
    mut out: O,
    mut err: E,
    mut control: mpsc::UnboundedReceiver<Frame>,
    on_started: impl FnOnce(),
) -> Result<ExitInfo, ClientError>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = stream.into_split();
    write_frame(&mut wr, &Frame::Request(req)).await?;
    match read_frame(&mut rd).await? {
        Some(Frame::Started(_)) => {}
        Some(Frame::Error(info)) => return Err(ClientError::Failed(info)),
        Some(Frame::Exit(info)) => return Ok(info),
        _ => return Err(ClientError::Closed(id.to_string())),
    }
    on_started();
    // Writer task: stdin and control frames go to the monitor. Stdin through a short queue:
    // when the process does not read, the monitor stops reading us, the socket fills, and
    // so does this queue; then stdin is no longer read, and the writer feeding it waits
    // (rather than this process holding everything the writer has, in memory).
    let (to_monitor, mut frames) = mpsc::channel::<Frame>(4);
    if let Some(mut input) = input {
        let tx = to_monitor.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Frame::StdinEof).await;
                        break;
                    }
                    Ok(n) => {
                        let frame = Frame::Stdin(bytes::Bytes::copy_from_slice(&buf[..n]));
                        if tx.send(frame).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                Some(f) = frames.recv() => f,
                Some(f) = control.recv() => f,
                else => break,
            };
            if write_frame(&mut wr, &frame).await.is_err() {
                break;
            }
        }
    });
    drop(to_monitor);
    let result = loop {
        match read_frame(&mut rd).await? {
            Some(Frame::Stdout(b)) => {
                let _ = out.write_all(&b).await;
                let _ = out.flush().await;
            }
            Some(Frame::Stderr(b)) => {
                let _ = err.write_all(&b).await;
                let _ = err.flush().await;
            }
            Some(Frame::Exit(info)) => break Ok(info),
            Some(Frame::Error(info)) => break Err(ClientError::Failed(info)),
            Some(_) => {}
            None => break Err(ClientError::Closed(id.to_string())),
        }
    };
    writer.abort();
    result
}

/// A copy-out in progress: the stat of the source, then its tar stream chunk by chunk.
pub struct CopyOutSession {
    stream: UnixStream,
    id: String,
}

/// Starts exporting the container's root filesystem (`export`): the session yields its tar
/// stream.
pub async fn export(mut stream: UnixStream, id: &str) -> Result<CopyOutSession, ClientError> {
    let req = Request::CopyOut {
        path: "/".to_string(),
        follow_link: false,
        export: true,
    };
    write_frame(&mut stream, &Frame::Request(req)).await?;
    match read_frame(&mut stream).await? {
        Some(Frame::Stat(_)) => Ok(CopyOutSession {
            stream,
            id: id.to_string(),
        }),
        Some(Frame::Error(info)) => Err(ClientError::Failed(info)),
        _ => Err(ClientError::Closed(id.to_string())),
    }
}

/// Starts copying `path` out of the container: returns what the path is and the session
/// that yields its tar stream.
pub async fn copy_out(
    mut stream: UnixStream,
    id: &str,
    path: &str,
    follow_link: bool,
) -> Result<(agent::PathStat, CopyOutSession), ClientError> {
    let req = Request::CopyOut {
        path: path.to_string(),
        follow_link,
        export: false,
    };
    write_frame(&mut stream, &Frame::Request(req)).await?;
    match read_frame(&mut stream).await? {
        Some(Frame::Stat(stat)) => Ok((
            stat,
            CopyOutSession {
                stream,
                id: id.to_string(),
            },
        )),
        Some(Frame::Error(info)) => Err(ClientError::Failed(info)),
        _ => Err(ClientError::Closed(id.to_string())),
    }
}

impl CopyOutSession {
    /// The next chunk of the tar stream; `None` once it is complete. An error means the
    /// stream is incomplete.
    pub async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, ClientError> {
        match read_frame(&mut self.stream).await? {
            Some(Frame::Stdout(b)) => Ok(Some(b)),
            Some(Frame::Exit(info)) if info.code == 0 => Ok(None),
            Some(Frame::Exit(info)) | Some(Frame::Error(info)) => Err(ClientError::Failed(info)),
            _ => Err(ClientError::Closed(self.id.clone())),
        }
    }
}

/// A copy-in in progress: send the tar stream, then [`CopyInSession::finish`].
pub struct CopyInSession {
    stream: UnixStream,
    id: String,
}

/// Starts copying a tar stream into the container at `path`; fails at once when the
/// destination is refused (missing directory, read-only).
pub async fn copy_in(
    mut stream: UnixStream,
    id: &str,
    path: &str,
    source: Option<agent::CopySource>,
    preserve_owner: bool,
) -> Result<CopyInSession, ClientError> {
    let req = Request::CopyIn {
        path: path.to_string(),
        source,
        preserve_owner,
    };
    write_frame(&mut stream, &Frame::Request(req)).await?;
    match read_frame(&mut stream).await? {
        Some(Frame::Started(_)) => Ok(CopyInSession {
            stream,
            id: id.to_string(),
        }),
        Some(Frame::Error(info)) => Err(ClientError::Failed(info)),
        _ => Err(ClientError::Closed(id.to_string())),
    }
}

impl CopyInSession {
    /// Sends a chunk of the stream. When the monitor has already given up (the copy failed
    /// in the guest), the error carries its reason.
    pub async fn send(&mut self, bytes: bytes::Bytes) -> Result<(), ClientError> {
        if let Err(e) = write_frame(&mut self.stream, &Frame::Stdin(bytes)).await {
            return Err(self.final_error().await.unwrap_or(e.into()));
        }
        Ok(())
    }

    /// Ends the stream and waits until the guest has unpacked it.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        if let Err(e) = write_frame(&mut self.stream, &Frame::StdinEof).await {
            return Err(self.final_error().await.unwrap_or(e.into()));
        }
        match read_frame(&mut self.stream).await? {
            Some(Frame::Exit(info)) if info.code == 0 => Ok(()),
            Some(Frame::Exit(info)) | Some(Frame::Error(info)) => Err(ClientError::Failed(info)),
            _ => Err(ClientError::Closed(self.id.clone())),
        }
    }

    async fn final_error(&mut self) -> Option<ClientError> {
        match read_frame(&mut self.stream).await {
            Ok(Some(Frame::Error(info))) | Ok(Some(Frame::Exit(info))) => {
                Some(ClientError::Failed(info))
            }
            _ => None,
        }
    }
}

/// Waits (polling state.json) until a container is no longer running; returns its record, or
/// None when it was removed (`--rm`).
pub async fn wait_stopped(
    store: &Store,
    id: &str,
    timeout: Duration,
) -> Result<Option<ContainerRecord>, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let rec = match store.load(id) {
            Ok(r) => store.reconcile(r)?,
            Err(crate::state::StateError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !rec.status.is_up() && rec.monitor_pid.is_none() {
            return Ok(Some(rec));
        }
        if Instant::now() > deadline {
            return Err(ClientError::MonitorFailed {
                id: id.to_string(),
                reason: "it did not stop in time".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A monitor that reads the client's first frame and answers with `answer` (nothing, and
    /// a closed connection, for `None`: what a monitor from before the handshake does).
    async fn monitor(answer: Option<Frame>) -> Result<(), ClientError> {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let fake = tokio::spawn(async move {
            // Raw bytes: an old monitor cannot decode the Hello, it only reads it.
            let mut len = [0u8; 4];
            server.read_exact(&mut len).await.unwrap();
            let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
            server.read_exact(&mut rest).await.unwrap();
            if let Some(f) = answer {
                write_frame(&mut server, &f).await.unwrap();
            }
        });
        let r = handshake(&mut client, "c1").await;
        fake.await.unwrap();
        r
    }

    #[tokio::test]
    async fn the_handshake_names_both_versions_when_they_differ() {
        let ours = Frame::HelloAck(Hello {
            version: PROTOCOL_VERSION,
        });
        monitor(Some(ours)).await.unwrap();

        let e = monitor(None).await.unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Version {
                    monitor: 1,
                    client: PROTOCOL_VERSION,
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("container c1 speaks protocol version 1, this client version 2"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");

        let newer = Frame::HelloAck(Hello {
            version: PROTOCOL_VERSION + 1,
        });
        let e = monitor(Some(newer)).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("speaks protocol version 3, this client version 2"),
            "{e}"
        );
        assert_eq!(crate::outcome::exit_code_of(&e), crate::exit::RUNTIME_FAULT);
    }
}
