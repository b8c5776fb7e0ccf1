//! The monitor's control protocol on `<root>/containers/<id>/monitor.sock`.
//!
//! Every message is a frame:
//!
//! ```text
//! +----------------+--------+----------------------+
//! | length u32 BE  | kind u8| payload (length-1 B) |
//! +----------------+--------+----------------------+
//! ```
//!
//! A client's first frame is a `Hello` with its [`PROTOCOL_VERSION`]; the monitor answers a
//! `HelloAck` with its own and closes if they differ. Then the client sends a [`Request`]
//! (JSON). Then, for attach and exec, the client sends stdin/resize/signal frames and the
//! monitor sends stdout/stderr frames, then one `Exit` or `Error` frame, and closes. This is
//! the interface a containerd shim would wrap.
//!
//! Monitors outlive the binary that started them: a container started before an upgrade is
//! still run by the old binary's monitor. The handshake turns a version skew into one clear
//! error naming both versions instead of misread frames:
//!
//! ```text
//!  client v2 → monitor v2   Hello{2} → HelloAck{2}, then the request
//!  client v2 → monitor v3   Hello{2} → HelloAck{3}, close     client: "speaks 3, this 2"
//!  client v2 → monitor v1   Hello{2} → (unknown frame) close  client: "speaks 1, this 2"
//!  client v1 → monitor v2   Request  → Error{ProtocolVersion: "speaks 2, this client 1"}
//! ```
//!
//! Version 1 is the protocol from before the handshake; its monitors close a connection whose
//! first frame they do not know, and its clients print the reason of an `Error` frame.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::spec::ProcessSpec;
use crate::stats::Sample;

/// Largest frame accepted (stdio chunks are far smaller).
pub const MAX_FRAME: usize = 1 << 20;

/// Version of this protocol. New optional fields (`#[serde(default)]`) and new requests keep
/// it; removing, re-typing or re-numbering anything bumps it.
pub const PROTOCOL_VERSION: u32 = 2;

/// The version the monitors from before the handshake speak.
pub const PROTOCOL_VERSION_NO_HANDSHAKE: u32 = 1;

/// Both halves of the handshake: the sender's [`PROTOCOL_VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u32,
}

/// What a client asks of the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Attach to the main process's stdio; `stdin` says whether this client sends input.
    /// The monitor answers `Started` once the process runs (or `Error` if it could not start).
    Attach {
        /// Forward this client's stdin.
        stdin: bool,
        /// Answer `Exit` as soon as the process has ended and its output is delivered, while
        /// its VM may still be going down (the containerd shim: containerd's Delete follows,
        /// and waits for what it must). Without it `Exit` comes once the VM is down, so that
        /// the container can be started again at once.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        early_exit: bool,
    },
    /// Wait until the main process has started (answer `Started` or `Error`), then close.
    WaitStarted,
    /// Start another process in the container.
    Exec {
        /// The process.
        spec: ProcessSpec,
        /// Return after it starts instead of relaying its stdio.
        detach: bool,
    },
    /// Send a signal to the main process.
    Kill {
        /// Signal number.
        signal: i32,
    },
    /// The stop signal, then SIGKILL after `timeout_secs`, then VM shutdown. Answers `Exit`.
    Stop {
        /// Grace period in seconds.
        timeout_secs: u64,
        /// The signal to send first (absent: SIGTERM; clients send the container's own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// A start follows (`restart`): an `--rm` container is kept, as docker keeps it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        restart: bool,
    },
    /// Pack a path of the container as a tar stream. Answers `Stat`, then the stream as
    /// `Stdout` frames, then `Exit` (code 0) or `Error`.
    CopyOut {
        /// Path inside the container.
        path: String,
        /// Follow the path itself when it is a symlink.
        follow_link: bool,
        /// Pack the whole root filesystem as `export` does instead (`path` is ignored).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        export: bool,
    },
    /// Unpack a tar stream into the container. Answers `Started` when ready; the client
    /// then sends the stream as `Stdin` frames and `StdinEof`; answers `Exit` (code 0) or
    /// `Error`.
    CopyIn {
        /// Destination path inside the container, as the user wrote it.
        path: String,
        /// What the stream holds (`None`: a raw tar stream for an existing directory).
        source: Option<agent::CopySource>,
        /// Keep the archive's uids/gids instead of root's.
        preserve_owner: bool,
    },
    /// One reading of the container's resource counters. Answers `Stats`.
    Stats,
    /// Replace the container's cgroup limits with these (absent: unlimited). Answers `Ok`.
    Update {
        /// The new limits, complete.
        limits: crate::resources::ResourceLimits,
    },
    /// Freeze the whole VM (`pause`). Answers `Ok`, or `Error` when it is not running or
    /// already paused.
    Pause,
    /// Let a paused VM run again, then deliver the signals `kill` queued meanwhile. Answers
    /// `Ok`, or `Error` when it is not paused.
    Unpause,
    /// Wait until the main process has ended and the VM is down (`wait`). Answers `Exit`.
    Wait,
    /// The container's processes (`top`). Answers `Processes`.
    Top,
}

/// Final status sent to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Exit code, from [`crate::exit::exit_code`].
    pub code: i32,
    /// A one-line reason when the runtime, not the process, ended it.
    pub reason: Option<String>,
    /// Why the process could not run or the runtime ended it (absent when the process ended
    /// on its own): the stable category `code` was derived from, for front ends that report
    /// more than an exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<agent::ErrorCode>,
}

impl ExitInfo {
    /// A process that ended on its own.
    pub fn exited(how: crate::backend::ProcessExit) -> Self {
        ExitInfo {
            code: how.code(),
            reason: None,
            error: None,
        }
    }

    /// A failure with this category and one-line reason.
    pub fn failed(error: agent::ErrorCode, reason: String) -> Self {
        ExitInfo {
            code: crate::exit::exit_code(crate::exit::Termination::Failed(error)),
            reason: Some(reason),
            error: Some(error),
        }
    }
}

/// Terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// One message on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → monitor: the first frame, the client's version.
    Hello(Hello),
    /// Monitor → client: the answer to `Hello`, the monitor's version.
    HelloAck(Hello),
    /// Client → monitor: the frame after the handshake.
    Request(Request),
    /// Client → monitor: input bytes.
    Stdin(Bytes),
    /// Client → monitor: end of input.
    StdinEof,
    /// Client → monitor: new terminal size.
    Resize(WinSize),
    /// Client → monitor: forward this signal to the process.
    Signal(i32),
    /// Monitor → client: the process runs (exec: its id).
    Started(String),
    /// Monitor → client: output.
    Stdout(Bytes),
    /// Monitor → client: error output.
    Stderr(Bytes),
    /// Monitor → client: the process ended.
    Exit(ExitInfo),
    /// Monitor → client: the request failed; `code` is the exit code to use.
    Error(ExitInfo),
    /// Monitor → client: request done, nothing to report.
    Ok,
    /// Monitor → client: what a copied path is (copy-out).
    Stat(agent::PathStat),
    /// Monitor → client: the answer to [`Request::Stats`].
    Stats(Box<Sample>),
    /// Monitor → client: the answer to [`Request::Top`].
    Processes(Box<agent::ProcessList>),
}

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error("monitor socket i/o")]
    Io(#[source] std::io::Error),
    /// A frame is malformed.
    #[error("malformed frame from monitor socket: {0}")]
    Malformed(String),
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn parse<T: for<'a> Deserialize<'a>>(p: &[u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(p).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

impl Frame {
    fn encode(&self) -> (u8, Vec<u8>) {
        match self {
            Frame::Request(r) => (1, json(r)),
            Frame::Stdin(b) => (2, b.to_vec()),
            Frame::StdinEof => (3, vec![]),
            Frame::Resize(w) => (4, json(w)),
            Frame::Signal(s) => (5, s.to_be_bytes().to_vec()),
            Frame::Started(id) => (10, id.as_bytes().to_vec()),
            Frame::Stdout(b) => (11, b.to_vec()),
            Frame::Stderr(b) => (12, b.to_vec()),
            Frame::Exit(e) => (13, json(e)),
            Frame::Error(e) => (14, json(e)),
            Frame::Ok => (15, vec![]),
            Frame::Stat(s) => (16, json(s)),
            Frame::Stats(st) => (17, json(st)),
            Frame::Processes(p) => (18, json(p)),
            Frame::Hello(h) => (20, json(h)),
            Frame::HelloAck(h) => (21, json(h)),
        }
    }

    fn decode(kind: u8, p: Vec<u8>) -> Result<Frame, ProtocolError> {
        Ok(match kind {
            1 => Frame::Request(parse(&p)?),
            2 => Frame::Stdin(Bytes::from(p)),
            3 => Frame::StdinEof,
            4 => Frame::Resize(parse(&p)?),
            5 => {
                let b: [u8; 4] = p
                    .as_slice()
                    .try_into()
                    .map_err(|_| ProtocolError::Malformed("signal frame size".into()))?;
                Frame::Signal(i32::from_be_bytes(b))
            }
            10 => Frame::Started(String::from_utf8_lossy(&p).into_owned()),
            11 => Frame::Stdout(Bytes::from(p)),
            12 => Frame::Stderr(Bytes::from(p)),
            13 => Frame::Exit(parse(&p)?),
            14 => Frame::Error(parse(&p)?),
            15 => Frame::Ok,
            16 => Frame::Stat(parse(&p)?),
            17 => Frame::Stats(Box::new(parse(&p)?)),
            18 => Frame::Processes(Box::new(parse(&p)?)),
            20 => Frame::Hello(parse(&p)?),
            21 => Frame::HelloAck(parse(&p)?),
            k => return Err(ProtocolError::Malformed(format!("unknown frame kind {k}"))),
        })
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
) -> Result<(), ProtocolError> {
    let (kind, payload) = frame.encode();
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(&payload);
    w.write_all(&buf).await.map_err(ProtocolError::Io)?;
    w.flush().await.map_err(ProtocolError::Io)
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, ProtocolError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ProtocolError::Io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(ProtocolError::Malformed(format!("frame length {len}")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(ProtocolError::Io)?;
    let kind = buf[0];
    buf.remove(0);
    Frame::decode(kind, buf).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_from_an_older_client_means_sigterm_and_no_restart() {
        let r: Request = serde_json::from_str(r#"{"op":"stop","timeout_secs":4}"#).unwrap();
        assert_eq!(
            r,
            Request::Stop {
                timeout_secs: 4,
                signal: None,
                restart: false
            }
        );
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
            }),
            Frame::HelloAck(Hello { version: 7 }),
            Frame::Request(Request::Attach {
                stdin: true,
                early_exit: false,
            }),
            Frame::Request(Request::Exec {
                spec: ProcessSpec::default(),
                detach: false,
            }),
            Frame::Request(Request::Stop {
                timeout_secs: 3,
                signal: Some(2),
                restart: true,
            }),
            Frame::Request(Request::Stats),
            Frame::Request(Request::Pause),
            Frame::Request(Request::Wait),
            Frame::Processes(Box::new(agent::ProcessList {
                clock_ticks: 100,
                ..Default::default()
            })),
            Frame::Stdin(Bytes::from_static(b"hi")),
            Frame::StdinEof,
            Frame::Resize(WinSize { rows: 24, cols: 80 }),
            Frame::Signal(15),
            Frame::Started("p1".into()),
            Frame::Stdout(Bytes::from_static(b"\x00\xff")),
            Frame::Stderr(Bytes::new()),
            Frame::Exit(ExitInfo {
                code: 137,
                reason: None,
                error: None,
            }),
            Frame::Error(ExitInfo {
                code: 127,
                reason: Some("nope".into()),
                error: Some(agent::ErrorCode::ExecutableNotFound),
            }),
            Frame::Ok,
            Frame::Request(Request::CopyIn {
                path: "/x/".into(),
                source: Some(agent::CopySource {
                    is_dir: true,
                    contents_only: true,
                }),
                preserve_owner: false,
            }),
            Frame::Stat(agent::PathStat {
                name: "x".into(),
                mode: 0o40755,
                ..Default::default()
            }),
            Frame::Stats(Box::new(Sample {
                cpu_usage_usec: 12,
                memory_limit: Some(1 << 27),
                pids: 3,
                ..Default::default()
            })),
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).await.unwrap();
        }
        let mut r = buf.as_slice();
        for f in &frames {
            assert_eq!(&read_frame(&mut r).await.unwrap().unwrap(), f);
        }
        assert!(read_frame(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bad_frames_are_errors() {
        let mut r: &[u8] = &[0, 0, 0, 1, 99];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0, 0, 0, 0];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut r).await.is_err());
    }
}
