//! A tiny fake registry: canned HTTP answers per path, so tests can serve what a real registry
//! never would (tampered blobs, wrong sizes, truncated bodies, malformed manifests, unknown
//! media types) and exercise the bearer-token flow with a token endpoint of its own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::images::TestImage;

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Route {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length is its full length).
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close the connection.
    pub truncate_to: Option<usize>,
    /// Pause after every chunk of body (a slow download).
    pub delay: Option<Duration>,
    /// Body chunk size (default 64 KiB): with `delay`, a trickle.
    pub chunk: Option<usize>,
    /// Wait this long before answering at all (silent after the request).
    pub stall: Option<Duration>,
    /// No Content-Length, and `body` repeated until the client goes away.
    pub endless: bool,
}

impl Route {
    /// 200 with a body and Content-Type.
    pub fn ok(content_type: &str, body: Vec<u8>) -> Route {
        Route {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            truncate_to: None,
            delay: None,
            chunk: None,
            stall: None,
            endless: false,
        }
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    bearer: Option<(String, String)>,
}

/// A running fake registry on 127.0.0.1; stopped when dropped.
pub struct FakeRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    state: Arc<Mutex<State>>,
    /// How many times the token endpoint was asked.
    pub token_requests: Arc<AtomicUsize>,
    /// Request lines seen (`GET /v2/...`).
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const TOKEN: &str = "fake-token-0123456789";

impl FakeRegistry {
    /// Starts serving (only `/v2/` answers until routes are added).
    pub fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake registry");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let token_requests = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, tokens, requests, stop, addr) = (
                state.clone(),
                token_requests.clone(),
                requests.clone(),
                stop.clone(),
                addr.clone(),
            );
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, tokens, requests, addr) = (
                        state.clone(),
                        tokens.clone(),
                        requests.clone(),
                        addr.clone(),
                    );
                    std::thread::spawn(move || {
                        let _ = handle(conn, &state, &tokens, &requests, &addr);
                    });
                }
            })
        };
        FakeRegistry {
            addr,
            state,
            token_requests,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Requires a bearer token for `/v2/…`, given by `/token` to `user`/`password` only.
    pub fn require_bearer(&self, user: &str, password: &str) {
        self.state.lock().expect("state").bearer = Some((user.into(), password.into()));
    }

    /// Adds or replaces the answer for a path.
    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .expect("state")
            .routes
            .insert(path.into(), route);
    }

    /// The current answer for a path (to modify and re-add).
    pub fn get_route(&self, path: &str) -> Route {
        self.state
            .lock()
            .expect("state")
            .routes
            .get(path)
            .cloned()
            .expect("route")
    }

    /// Serves a test image as `repo:tag`: top manifest by tag and digest, every blob by digest.
    pub fn serve_image(&self, repo: &str, tag: &str, image: &TestImage) {
        for entry in std::fs::read_dir(image.layout.join("blobs/sha256"))
            .expect("layout")
            .flatten()
        {
            let data = std::fs::read(entry.path()).expect("blob");
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            let media_type = serde_json::from_slice::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                .unwrap_or_else(|| "application/octet-stream".into());
            self.route(
                &format!("/v2/{repo}/blobs/{digest}"),
                Route::ok("application/octet-stream", data.clone()),
            );
            self.route(
                &format!("/v2/{repo}/manifests/{digest}"),
                Route::ok(&media_type, data.clone()),
            );
            if digest == image.digest {
                self.route(
                    &format!("/v2/{repo}/manifests/{tag}"),
                    Route::ok(&media_type, data),
                );
            }
        }
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{}", self.addr, name)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(
    conn: TcpStream,
    state: &Mutex<State>,
    tokens: &AtomicUsize,
    requests: &Mutex<Vec<String>>,
    addr: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    requests
        .lock()
        .expect("requests")
        .push(format!("{method} {target}"));
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut out = conn;
    let (route, bearer) = {
        let s = state.lock().expect("state");
        (s.routes.get(&path).cloned(), s.bearer.clone())
    };
    if path == "/token" && route.is_none() {
        tokens.fetch_add(1, Ordering::SeqCst);
        let expected = bearer.as_ref().map(|(u, p)| basic(u, p));
        if expected.is_some() && headers.get("authorization") == expected.as_ref() {
            let body = format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#);
            return respond(
                &mut out,
                &method,
                200,
                &[("Content-Type".into(), "application/json".into())],
                body.as_bytes(),
                None,
                None,
            );
        }
        return respond(
            &mut out,
            &method,
            401,
            &[],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            None,
            None,
        );
    }
    if bearer.is_some()
        && path != "/token"
        && headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {TOKEN}"))
    {
        let repo = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split("/manifests/").next())
            .and_then(|p| p.split("/blobs/").next())
            .unwrap_or("");
        let mut challenge =
            format!(r#"Bearer realm="http://{addr}/token",service="fake-registry""#);
        if !repo.is_empty() {
            challenge.push_str(&format!(r#",scope="repository:{repo}:pull""#));
        }
        return respond(
            &mut out,
            &method,
            401,
            &[("WWW-Authenticate".into(), challenge)],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            None,
            None,
        );
    }
    if path == "/v2/" {
        return respond(&mut out, &method, 200, &[], b"{}", None, None);
    }
    match route {
        Some(r) if r.stall.is_some() || r.endless || r.chunk.is_some() => hostile(&mut out, &r),
        Some(r) => respond(
            &mut out,
            &method,
            r.status,
            &r.headers,
            &r.body,
            r.truncate_to,
            r.delay,
        ),
        None => respond(
            &mut out,
            &method,
            404,
            &[("Content-Type".into(), "application/json".into())],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}"#,
            None,
            None,
        ),
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64_lite::encode;
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

fn respond(
    out: &mut TcpStream,
    method: &str,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    truncate_to: Option<usize>,
    delay: Option<Duration>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let body = &body[..truncate_to.unwrap_or(body.len()).min(body.len())];
    for chunk in body.chunks(64 * 1024) {
        out.write_all(chunk)?;
        if let Some(d) = delay {
            out.flush()?;
            std::thread::sleep(d);
        }
    }
    out.flush()?;
    // Closing the socket with fewer bytes than announced is the truncation.
    let _ = out.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// The answers no real registry gives: silent for a while, a trickle, a body without end.
/// Ends when the client goes away.
fn hostile(out: &mut TcpStream, r: &Route) -> std::io::Result<()> {
    if let Some(d) = r.stall {
        std::thread::sleep(d);
    }
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
    if !r.endless {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let chunk = r.chunk.unwrap_or(64 * 1024).max(1);
    loop {
        for c in r.body.chunks(chunk) {
            out.write_all(c)?;
            out.flush()?;
            if let Some(d) = r.delay {
                std::thread::sleep(d);
            }
        }
        if !r.endless || r.body.is_empty() {
            return Ok(());
        }
    }
}

/// Just enough base64 for a Basic header (keeps the test crate's dependencies small).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
