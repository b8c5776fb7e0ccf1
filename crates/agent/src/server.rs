//! The guest side of the agent protocol, as helpers that keep the transport and the
//! dispatch logic apart: [`handshake`] waits for a host's `Hello` and answers it,
//! [`Incoming::from_frame`] turns frames into typed events, and [`Outbox`] queues replies,
//! stdio data and credit for a single writer task ([`write_loop`]). vminitd owns the state
//! (processes, streams) and decides what each request does.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::{ErrorCode, WireError};
use crate::frame::{write_queued, Frame, FrameError, FrameReader, Kind, FLAG_EOF, FLAG_ERROR};
use crate::schema::{Hello, HelloAck, Request, Response, PROTOCOL_VERSION};

/// Errors of the guest side of a session.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Reading or writing the channel failed.
    #[error("agent channel failed")]
    Channel(#[source] FrameError),
    /// The host disconnected.
    #[error("host disconnected")]
    Disconnected,
    /// The host speaks another protocol version (it has been told so).
    #[error("host speaks protocol version {0}, guest speaks {PROTOCOL_VERSION}")]
    Version(u32),
}

/// One event from the host.
// One value per call, moved not copied: boxing the big variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Incoming {
    /// A call; `request` is `Err` when the payload did not decode (answer it with the error).
    Request {
        /// Request id to answer with.
        id: u32,
        /// The decoded call.
        request: Result<Request, WireError>,
    },
    /// stdin bytes for stream `stream`; `eof` closes it after them.
    Data {
        /// Stream id.
        stream: u32,
        /// Bytes.
        bytes: Vec<u8>,
        /// End of stream.
        eof: bool,
    },
    /// More output credit for stream `stream`.
    Window {
        /// Stream id.
        stream: u32,
        /// Additional bytes allowed.
        credit: u32,
    },
    /// The host (re)started a session on the same channel without a disconnect being seen.
    Hello(Hello),
    /// A frame the guest never expects; ignore.
    Ignored,
}

impl Incoming {
    /// Classifies a frame from the host.
    pub fn from_frame(frame: Frame) -> Incoming {
        match frame.kind {
            Kind::Request => Incoming::Request {
                id: frame.id,
                request: frame.parse::<Request>().map_err(|e| {
                    WireError::new(
                        ErrorCode::InvalidArgument,
                        format!("malformed request: {}", json_cause(&e)),
                    )
                }),
            },
            Kind::Data => Incoming::Data {
                stream: frame.id,
                eof: frame.flags & FLAG_EOF != 0,
                bytes: frame.payload,
            },
            Kind::Window => match frame.credit() {
                Ok(credit) => Incoming::Window {
                    stream: frame.id,
                    credit,
                },
                Err(_) => Incoming::Ignored,
            },
            Kind::Hello => match frame.parse::<Hello>() {
                Ok(h) => Incoming::Hello(h),
                Err(_) => Incoming::Ignored,
            },
            Kind::HelloAck | Kind::Response => Incoming::Ignored,
        }
    }
}

fn json_cause(e: &FrameError) -> String {
    match e {
        FrameError::Json(j) => j.to_string(),
        other => other.to_string(),
    }
}

/// Reads frames until the host's `Hello`, checks its version and answers it with the
/// `HelloAck` that `ack` builds (`version` and `nonce` are filled in here).
pub async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    outbox: &Outbox,
    ack: HelloAck,
) -> Result<Hello, ServerError> {
    loop {
        let mut skipped = 0;
        let frame = reader
            .next(&mut skipped)
            .await
            .map_err(ServerError::Channel)?
            .ok_or(ServerError::Disconnected)?;
        if let Incoming::Hello(hello) = Incoming::from_frame(frame) {
            answer_hello(outbox, &hello, ack)?;
            return Ok(hello);
        }
    }
}

/// Answers a `Hello` (also one that arrives mid-session). Errors if the versions differ, after
/// telling the host.
pub fn answer_hello(outbox: &Outbox, hello: &Hello, mut ack: HelloAck) -> Result<(), ServerError> {
    if hello.version != PROTOCOL_VERSION {
        let e = WireError::new(
            ErrorCode::ProtocolVersion,
            format!(
                "guest speaks protocol version {PROTOCOL_VERSION}, host sent {}",
                hello.version
            ),
        );
        outbox.send(Frame::json(Kind::HelloAck, FLAG_ERROR, 0, &e));
        return Err(ServerError::Version(hello.version));
    }
    ack.version = PROTOCOL_VERSION;
    ack.nonce = hello.nonce;
    outbox.send(Frame::json(Kind::HelloAck, 0, 0, &ack));
    Ok(())
}

/// Queue of frames to the host, shared by every task of the session.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Frame>,
}

impl Outbox {
    /// A new outbox and the receiver to give to [`write_loop`].
    pub fn new() -> (Outbox, mpsc::UnboundedReceiver<Frame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx }, rx)
    }

    /// Queues a frame; `false` when the session's writer is gone.
    pub fn send(&self, frame: Frame) -> bool {
        self.tx.send(frame).is_ok()
    }

    /// Answers request `id`.
    pub fn reply(&self, id: u32, result: Result<Response, WireError>) -> bool {
        match result {
            Ok(r) => self.send(Frame::json(Kind::Response, 0, id, &r)),
            Err(e) => self.send(Frame::json(Kind::Response, FLAG_ERROR, id, &e)),
        }
    }

    /// Sends output bytes of `stream` (the caller respects the credit).
    pub fn data(&self, stream: u32, bytes: Vec<u8>, eof: bool) -> bool {
        self.send(Frame {
            kind: Kind::Data,
            flags: if eof { FLAG_EOF } else { 0 },
            id: stream,
            payload: bytes,
        })
    }

    /// Grants the host `credit` more stdin bytes on `stream`.
    pub fn window(&self, stream: u32, credit: u32) -> bool {
        self.send(Frame::window(stream, credit))
    }

    /// Whether the writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Writes queued frames to the transport until the queue closes or a write fails.
/// Frames queued together are coalesced into one write.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Frame>,
    mut wr: W,
) -> Result<(), ServerError> {
    write_queued(&mut rx, &mut wr, std::future::pending())
        .await
        .map_err(ServerError::Channel)
}
