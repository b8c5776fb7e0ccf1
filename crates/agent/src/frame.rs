//! Framing of the agent channel: a fixed 16-byte header and a payload.
//!
//! ```text
//!  0       4    5     6        8            12           16
//!  +-------+----+-----+--------+------------+------------+=========+
//!  | magic |kind|flags|reserved| id (u32 BE)| len (u32 BE)| payload |
//!  +-------+----+-----+--------+------------+------------+=========+
//!  magic = "CAG1"   id = request id (Request/Response) or stream id (Data/Window)
//! ```
//!
//! The magic lets a reader that starts in the middle of the byte stream (the host after it
//! reconnects to a channel that still held bytes of the previous session) skip forward to the
//! next frame; the hello nonce (see [`crate::schema::Hello`]) then tells it which frames belong
//! to the new session. Payloads are limited to [`MAX_PAYLOAD`] so a corrupt length cannot make
//! a reader buffer gigabytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Frame start marker.
pub const MAGIC: [u8; 4] = *b"CAG1";
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest payload a peer may send.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest stdio chunk put in one `Data` frame.
pub const MAX_DATA_CHUNK: usize = 64 * 1024;

/// `Data` flag: the stream ended after this payload.
pub const FLAG_EOF: u8 = 1;
/// `Response` flag: the payload is a [`crate::WireError`], not a [`crate::Response`].
pub const FLAG_ERROR: u8 = 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Host → guest handshake, JSON [`crate::schema::Hello`].
    Hello = 1,
    /// Guest → host handshake answer, JSON [`crate::schema::HelloAck`].
    HelloAck = 2,
    /// Host → guest call, JSON [`crate::Request`]; `id` chosen by the host.
    Request = 3,
    /// Guest → host answer with the request's `id`.
    Response = 4,
    /// stdio bytes of stream `id`.
    Data = 5,
    /// Flow-control credit for stream `id`: payload is a u32 BE byte count the receiver of
    /// the stream is ready to accept in addition to what it granted before.
    Window = 6,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::HelloAck,
            3 => Kind::Request,
            4 => Kind::Response,
            5 => Kind::Data,
            6 => Kind::Window,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kind.
    pub kind: Kind,
    /// Kind-specific flags ([`FLAG_EOF`], [`FLAG_ERROR`]).
    pub flags: u8,
    /// Request id or stream id.
    pub id: u32,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame with a JSON payload.
    pub fn json<T: serde::Serialize>(kind: Kind, flags: u8, id: u32, body: &T) -> Frame {
        // Serializing our own schema types cannot fail: no maps with non-string keys, no
        // custom Serialize impls.
        let payload = serde_json::to_vec(body).unwrap_or_default();
        Frame {
            kind,
            flags,
            id,
            payload,
        }
    }

    /// A `Window` frame granting `credit` bytes on stream `id`.
    pub fn window(id: u32, credit: u32) -> Frame {
        Frame {
            kind: Kind::Window,
            flags: 0,
            id,
            payload: credit.to_be_bytes().to_vec(),
        }
    }

    /// The credit of a `Window` frame.
    pub fn credit(&self) -> Result<u32, FrameError> {
        let b: [u8; 4] = self
            .payload
            .as_slice()
            .try_into()
            .map_err(|_| FrameError::BadWindow)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Parses the JSON payload.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, FrameError> {
        serde_json::from_slice(&self.payload).map_err(FrameError::Json)
    }

    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(self.kind as u8);
        out.push(self.flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// Errors of framing and payload decoding.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Bytes that do not start a frame were skipped.
    #[error("skipped {0} bytes that were not a frame")]
    Desync(usize),
    /// A header announced more than [`MAX_PAYLOAD`] bytes.
    #[error("frame of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A `Window` payload that is not 4 bytes.
    #[error("window frame payload is not a 4-byte credit")]
    BadWindow,
    /// A JSON payload that does not match the schema.
    #[error("malformed message payload")]
    Json(#[source] serde_json::Error),
    /// Reading or writing the transport failed.
    #[error("agent channel I/O failed")]
    Io(#[source] std::io::Error),
}

/// Incremental decoder: feed bytes with [`Decoder::extend`], take frames with
/// [`Decoder::next_frame`].
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    sync: Option<Kind>,
    watch: Option<Kind>,
    /// With `watch`: offset (from `start`) up to which the pending frame was searched.
    scanned: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Drops any partial frame (after the transport reconnected).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
    }

    /// While a frame is incomplete, looks inside its bytes for a complete frame of `kind`
    /// with a JSON object payload, and if one is found abandons the incomplete frame for it.
    /// The guest watches for `Hello`: a host that died in the middle of a frame and a new one
    /// that connected before the guest noticed must not have its `Hello` swallowed as the
    /// payload of the dead host's last frame.
    pub fn watch_for(&mut self, kind: Kind) {
        self.watch = Some(kind);
    }

    fn embedded(&mut self, kind: Kind) -> Option<usize> {
        let data = &self.buf[self.start..];
        let mut i = self.scanned.max(1);
        while i + 5 <= data.len() {
            if data[i..i + 4] == MAGIC && data[i + 4] == kind as u8 {
                let rest = &data[i..];
                if rest.len() < HEADER_LEN {
                    break;
                }
                let len = u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]) as usize;
                if len <= MAX_PAYLOAD {
                    if rest.len() < HEADER_LEN + len {
                        break;
                    }
                    let payload = &rest[HEADER_LEN..HEADER_LEN + len];
                    if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload)
                        .is_ok()
                    {
                        return Some(i);
                    }
                }
            }
            i += 1;
        }
        self.scanned = i;
        None
    }

    /// Ignores frame boundaries and skips bytes until the start of a frame of `kind`; used by
    /// the host after a reconnect, when a stale partial frame of the previous session could
    /// otherwise swallow the guest's `HelloAck`. Cleared once such a frame is decoded.
    pub fn sync_to(&mut self, kind: Kind) {
        self.sync = Some(kind);
    }

    /// Number of bytes held that do not yet form a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. An `Err` reports bytes
    /// that were skipped; decoding can continue after it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let data = &self.buf[self.start..];
        if let Some(kind) = self.sync {
            let mut marker = MAGIC.to_vec();
            marker.push(kind as u8);
            let found = (0..data.len()).find(|&i| {
                let rest = &data[i..];
                let n = rest.len().min(marker.len());
                rest[..n] == marker[..n]
            });
            let skip = found.unwrap_or(data.len());
            if skip > 0 {
                self.start += skip;
                self.scanned = 0;
                return Err(FrameError::Desync(skip));
            }
        }
        if data.len() >= 4 && data[..4] != MAGIC {
            // Skip to the next possible magic start, keeping a possible partial magic at the end.
            let skip = find_magic(data)
                .unwrap_or(data.len().saturating_sub(3))
                .max(1);
            self.start += skip;
            self.scanned = 0;
            return Err(FrameError::Desync(skip));
        }
        if data.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind_byte = data[4];
        let flags = data[5];
        let id = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let len = u32::from_be_bytes([data[12], data[13], data[14], data[15]]) as usize;
        if len > MAX_PAYLOAD {
            self.start += 1;
            self.scanned = 0;
            return Err(FrameError::TooLarge(len));
        }
        let Some(kind) = Kind::from_u8(kind_byte) else {
            self.start += 1;
            self.scanned = 0;
            return Err(FrameError::UnknownKind(kind_byte));
        };
        if data.len() < HEADER_LEN + len {
            if let Some(watch) = self.watch {
                if let Some(skip) = self.embedded(watch) {
                    self.start += skip;
                    self.scanned = 0;
                    return Err(FrameError::Desync(skip));
                }
            }
            return Ok(None);
        }
        let payload = data[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        self.scanned = 0;
        if self.sync == Some(kind) {
            self.sync = None;
        }
        Ok(Some(Frame {
            kind,
            flags,
            id,
            payload,
        }))
    }
}

fn find_magic(data: &[u8]) -> Option<usize> {
    (1..data.len()).find(|&i| {
        let rest = &data[i..];
        let n = rest.len().min(4);
        rest[..n] == MAGIC[..n]
    })
}

/// Reads frames from an async byte stream.
pub struct FrameReader<R> {
    io: R,
    decoder: Decoder,
    chunk: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a reader.
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            decoder: Decoder::new(),
            chunk: vec![0; 64 * 1024],
        }
    }

    /// The next frame; `Ok(None)` at end of stream. Desynchronised bytes are skipped silently
    /// (returned as a count through `skipped` for logging).
    pub async fn next(&mut self, skipped: &mut usize) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(FrameError::Desync(n)) => {
                    *skipped += n;
                    continue;
                }
                Err(FrameError::TooLarge(_)) | Err(FrameError::UnknownKind(_)) => {
                    *skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let n = self
                .io
                .read(&mut self.chunk)
                .await
                .map_err(FrameError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.extend(&self.chunk[..n]);
        }
    }

    /// Drops buffered partial data.
    pub fn reset(&mut self) {
        self.decoder.reset();
    }

    /// See [`Decoder::sync_to`].
    pub fn sync_to(&mut self, kind: Kind) {
        self.decoder.sync_to(kind);
    }

    /// See [`Decoder::watch_for`].
    pub fn watch_for(&mut self, kind: Kind) {
        self.decoder.watch_for(kind);
    }

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }
}

/// Writes one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    frame: &Frame,
) -> Result<(), FrameError> {
    let mut buf = Vec::with_capacity(HEADER_LEN + frame.payload.len());
    frame.encode(&mut buf);
    io.write_all(&buf).await.map_err(FrameError::Io)?;
    io.flush().await.map_err(FrameError::Io)
}

/// How many bytes of queued frames one write may carry: enough to coalesce a burst of small
/// frames into one syscall (one virtio-serial kick), small enough to keep latency low.
const BATCH_BYTES: usize = 256 * 1024;

/// Encodes `first` into `buf` (cleared first), then whatever else is already queued in `rx`,
/// up to about [`BATCH_BYTES`]: frames queued together go out in one write.
pub(crate) fn encode_batch(
    first: Frame,
    rx: &mut mpsc::UnboundedReceiver<Frame>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    first.encode(buf);
    while buf.len() < BATCH_BYTES {
        match rx.try_recv() {
            Ok(f) => f.encode(buf),
            Err(_) => break,
        }
    }
}

/// The one writer task of a connection, host side and guest side alike: writes queued frames
/// until the queue closes, `stop` completes, or a write fails. Frames queued together are
/// coalesced into one write.
pub(crate) async fn write_queued<W, S>(
    rx: &mut mpsc::UnboundedReceiver<Frame>,
    wr: &mut W,
    stop: S,
) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    S: std::future::Future<Output = ()>,
{
    tokio::pin!(stop);
    let mut buf = Vec::new();
    loop {
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => return Ok(()),
            },
            () = &mut stop => return Ok(()),
        };
        encode_batch(frame, rx, &mut buf);
        wr.write_all(&buf).await.map_err(FrameError::Io)?;
        wr.flush().await.map_err(FrameError::Io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u32, n: usize) -> Frame {
        Frame {
            kind: Kind::Data,
            flags: FLAG_EOF,
            id,
            payload: (0..n).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn byte_at_a_time_decoding() {
        let frames = [sample(1, 0), sample(7, 300), Frame::window(9, 4096)];
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &wire {
            d.extend(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(got[2].credit().unwrap(), 4096);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn garbage_and_partial_frame_are_skipped() {
        let mut wire = b"junkCA".to_vec();
        // A truncated frame from an earlier session, then a good one.
        let mut old = Vec::new();
        sample(3, 100).encode(&mut old);
        wire.extend_from_slice(&old[..40]);
        let good = sample(4, 10);
        good.encode(&mut wire);
        let mut d = Decoder::new();
        d.extend(&wire);
        let mut got = Vec::new();
        let mut errors = 0;
        for _ in 0..10_000 {
            match d.next_frame() {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 0);
        // Without sync mode the truncated frame swallows the good one as its payload.
        assert!(got.is_empty());

        let mut wire = b"junkCA".to_vec();
        wire.extend_from_slice(&old[..40]);
        let ack = Frame {
            kind: Kind::HelloAck,
            flags: 0,
            id: 0,
            payload: b"{}".to_vec(),
        };
        ack.encode(&mut wire);
        good.encode(&mut wire);
        let mut d = Decoder::new();
        d.sync_to(Kind::HelloAck);
        d.extend(&wire);
        let mut got = Vec::new();
        for _ in 0..100 {
            match d.next_frame() {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        assert_eq!(got, vec![ack, good]);
    }

    #[test]
    fn a_hello_inside_a_dead_partial_frame_is_found() {
        let mut old = Vec::new();
        sample(3, 500).encode(&mut old);
        let mut wire = old[..60].to_vec();
        let hello = Frame {
            kind: Kind::Hello,
            flags: 0,
            id: 0,
            payload: br#"{"version":1,"nonce":7}"#.to_vec(),
        };
        hello.encode(&mut wire);
        let next = Frame::window(5, 10);
        next.encode(&mut wire);
        let decode = |watch: bool, bytes: &[u8]| {
            let mut d = Decoder::new();
            if watch {
                d.watch_for(Kind::Hello);
            }
            let mut got = Vec::new();
            // Byte at a time: the embedded frame is found once it is complete.
            for b in bytes {
                d.extend(std::slice::from_ref(b));
                for _ in 0..1000 {
                    match d.next_frame() {
                        Ok(Some(f)) => got.push(f),
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
            }
            got
        };
        assert_eq!(decode(true, &wire), vec![hello.clone(), next.clone()]);
        assert!(decode(false, &wire).is_empty());
        // Stdin data that merely contains the marker bytes is not mistaken for a Hello.
        let mut data = Vec::new();
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        payload.extend_from_slice(b"xyz");
        let f = Frame {
            kind: Kind::Data,
            flags: 0,
            id: 4,
            payload,
        };
        f.encode(&mut data);
        assert_eq!(decode(true, &data), vec![f]);
    }

    #[test]
    fn oversized_length_is_rejected_not_buffered() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&MAGIC);
        wire.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 1]);
        wire.extend_from_slice(&u32::MAX.to_be_bytes());
        sample(2, 5).encode(&mut wire);
        let mut d = Decoder::new();
        d.extend(&wire);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge(_))));
        let mut found = None;
        for _ in 0..100 {
            match d.next_frame() {
                Ok(Some(f)) => {
                    found = Some(f);
                    break;
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        assert_eq!(found, Some(sample(2, 5)));
    }

    #[tokio::test]
    async fn async_reader_round_trip() {
        let (mut a, b) = tokio::io::duplex(64);
        let frames: Vec<Frame> = (0..20).map(|i| sample(i, i as usize * 97)).collect();
        let to_send = frames.clone();
        let w = tokio::spawn(async move {
            for f in &to_send {
                write_frame(&mut a, f).await.unwrap();
            }
        });
        let mut r = FrameReader::new(b);
        let mut skipped = 0;
        let mut got = Vec::new();
        while let Some(f) = r.next(&mut skipped).await.unwrap() {
            got.push(f);
        }
        w.await.unwrap();
        assert_eq!(got, frames);
        assert_eq!(skipped, 0);
    }
}
