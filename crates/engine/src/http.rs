//! HTTP plumbing: one hyper HTTP/1.1 connection per client (upgrades on, for the hijacked
//! attach and exec streams), the request as handlers see it ([`Req`]: path after the version
//! prefix, query, body), and the answers they give (JSON, empty, streamed through a channel).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::Engine;

/// Every answer's body.
pub type Body = BoxBody<Bytes, Infallible>;

/// What a handler returns.
pub type Answer = Result<Response<Body>, ApiError>;

/// Bytes buffered between a streamed body and its reader or writer.
const STREAM_BUFFER: usize = 64 * 1024;

/// Largest request body read into memory (create and exec bodies are a few KiB; docker's
/// own limit for JSON bodies is far above what a real client sends).
const MAX_BODY: usize = 4 << 20;

/// Serves one client connection until it closes.
pub async fn serve_connection(engine: Arc<Engine>, stream: tokio::net::UnixStream) {
    let service = hyper::service::service_fn(move |req| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(crate::routes::handle(engine, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("connection: {e}");
    }
}

/// A request as the handlers see it.
pub struct Req {
    /// The method.
    pub method: hyper::Method,
    /// The path with the `/vX.Y` prefix removed.
    pub path: String,
    /// Query parameters (the last value of a repeated key wins, as Go's `Form.Get` gives the
    /// first; docker clients never repeat one).
    pub query: HashMap<String, String>,
    /// Headers, and the extensions hyper keeps the connection's upgrade in.
    pub parts: hyper::http::request::Parts,
    /// The body, until read.
    pub body: Option<Incoming>,
}

impl Req {
    /// A query parameter.
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// A boolean query parameter, read as docker's `httputils.BoolValue` does: anything but
    /// empty, `0`, `no`, `false` or `none` is true.
    pub fn flag(&self, key: &str) -> bool {
        match self.q(key) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    /// An integer query parameter; absent or empty is `None`, anything else that is not an
    /// integer is a 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.q(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid {key} {v:?}: not an integer"))),
        }
    }

    /// Every value of a repeated query parameter, in order (`t=a&t=b` of `/build`).
    pub fn q_all(&self, key: &str) -> Vec<String> {
        form_urlencoded::parse(self.parts.uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// A header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a byte stream (a tar upload: a build context, an archive, an image),
    /// relayed by a task so that the reader needs no knowledge of HTTP frames. A body that
    /// fails midway ends the stream early: the tar readers behind it refuse a cut archive.
    pub fn body_reader(&mut self) -> tokio::io::DuplexStream {
        let (mut w, r) = tokio::io::duplex(STREAM_BUFFER);
        if let Some(mut body) = self.body.take() {
            tokio::spawn(async move {
                while let Some(frame) = body.frame().await {
                    let data = match frame {
                        Ok(f) => match f.into_data() {
                            Ok(d) => d,
                            Err(_) => continue,
                        },
                        Err(e) => {
                            tracing::debug!("request body: {e}");
                            return;
                        }
                    };
                    if w.write_all(&data).await.is_err() {
                        return;
                    }
                }
                let _ = w.shutdown().await;
            });
        }
        r
    }

    /// Whether the client asked to take over the connection (`Upgrade: tcp`).
    pub fn wants_upgrade(&self) -> bool {
        self.parts.headers.contains_key(hyper::header::UPGRADE)
    }

    /// The body parsed as JSON of type `T`; an empty body is `T::default()`.
    pub async fn json<T: serde::de::DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(T::default());
        };
        let bytes = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| ApiError::bad_request(format!("read request body: {e}")))?
            .to_bytes();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Splits the query string into decoded pairs.
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An answer without a body (204, 304, …).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Vec::new()));
    *r.status_mut() = status;
    r
}

/// A fixed body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// docker's error answer.
pub fn error(e: &ApiError) -> Response<Body> {
    let mut r = Response::new(full(e.body()));
    *r.status_mut() = e.status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A body fed by a channel: handlers that stream (pull progress, logs, wait) send chunks
/// from a task; when the client goes away the receiver is dropped and their sends fail,
/// which is how they learn to stop.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed answer with `content_type`, and the sender that feeds it.
pub fn channel(
    status: StatusCode,
    content_type: &'static str,
) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(64);
    let body = ChannelBody { rx };
    debug_assert!(!body.is_end_stream());
    let mut r = Response::new(body.boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (r, tx)
}

/// A streamed answer written through an `AsyncWrite` (a tar the runtime writes): what is
/// written goes to the client as it comes; once the client has gone, writes fail, which
/// stops the writer.
pub fn writer(
    status: StatusCode,
    content_type: &'static str,
) -> (Response<Body>, tokio::io::DuplexStream) {
    let (response, tx) = channel(status, content_type);
    let (w, mut r) = tokio::io::duplex(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut buf = vec![0u8; STREAM_BUFFER];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    (response, w)
}
