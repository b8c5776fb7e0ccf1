//! A client for the OCI distribution API (distribution-spec v1.1, docker registry v2):
//! ping, manifests, blobs, uploads, and authentication.
//!
//! Authentication follows docker's token flow: a request answered `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` makes us fetch a token from the realm
//! (with basic credentials if we have some), cache it per scope, and retry once. A `Basic`
//! challenge makes us retry with basic credentials. Redirects (blob storage) are followed by
//! reqwest, which drops the Authorization header when the host changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::auth::Credentials;
use crate::digest::Digest;
use crate::spec::media_type;
use crate::store::MAX_DOCUMENT_SIZE;

/// Which protocol to speak to a registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP for loopback hosts (`localhost`, `127.0.0.0/8`, `::1`), HTTPS otherwise.
    #[default]
    Auto,
    /// Always plain HTTP.
    Http,
    /// Always HTTPS.
    Https,
}

impl Scheme {
    /// The URL scheme to use for `registry` (`host[:port]`).
    pub fn for_registry(self, registry: &str) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Auto if is_loopback(registry) => "http",
            Scheme::Auto => "https",
        }
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Setup(#[source] reqwest::Error),
    /// No connection to the registry.
    #[error("cannot reach registry {registry}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The request failed in transit.
    #[error("request to {url} failed")]
    Request {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused our (lack of) credentials.
    #[error("unauthorized: {registry} refused access to {scope} ({detail})")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What we asked for.
        scope: String,
        /// Why, as far as we know.
        detail: String,
    },
    /// The registry does not have what we asked for.
    #[error("not found: {what} on {registry}")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// Any other unexpected status.
    #[error("{what}: registry answered {status}{message}")]
    Status {
        /// The operation.
        what: String,
        /// The HTTP status.
        status: StatusCode,
        /// The registry's error message, if it sent one (with a leading ": ").
        message: String,
    },
    /// The token server failed.
    #[error("cannot get a token from {realm}: {detail}")]
    Token {
        /// The token endpoint.
        realm: String,
        /// What went wrong.
        detail: String,
    },
    /// A response body could not be read.
    #[error("cannot read {what}")]
    Body {
        /// What was being read.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry sends so slowly that the transfer would not end in a reasonable time
    /// (a slow-loris answer): less than [`MIN_RATE`] bytes a second over a whole window.
    #[error("{what}: the registry sent {bytes} bytes in {secs} s, too slow (less than {MIN_RATE} bytes/s); CONTAINER_REGISTRY_TIMEOUT sets the window")]
    TooSlow {
        /// What was being read.
        what: String,
        /// Bytes received in the window.
        bytes: u64,
        /// The window's length in seconds.
        secs: u64,
    },
    /// A manifest larger than we accept.
    #[error("{what} is larger than {MAX_DOCUMENT_SIZE} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
    },
    /// The registry sent a malformed answer (bad Location, bad challenge).
    #[error("bad response from {registry}: {detail}")]
    Protocol {
        /// The registry.
        registry: String,
        /// What was wrong.
        detail: String,
    },
}

/// The slowest transfer rate accepted, in bytes a second, averaged over a window of the
/// registry timeout: a registry trickling bytes would otherwise hold a pull forever, since
/// each byte resets the read timeout.
pub const MIN_RATE: u64 = 1024;

/// How long a registry may stay silent (and the window [`MIN_RATE`] is measured over) unless
/// `CONTAINER_REGISTRY_TIMEOUT` (seconds) says otherwise.
const DEFAULT_SILENCE: Duration = Duration::from_secs(60);

/// The registry timeout: `CONTAINER_REGISTRY_TIMEOUT` seconds, else [`DEFAULT_SILENCE`].
fn silence() -> Duration {
    std::env::var("CONTAINER_REGISTRY_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_SILENCE, Duration::from_secs_f64)
}

/// Watches a transfer's pace: [`Pace::advance`] fails once a whole window passed with fewer
/// bytes than [`MIN_RATE`] asks for. A complete stall is the read timeout's to catch.
#[derive(Debug)]
pub struct Pace {
    window: Duration,
    start: std::time::Instant,
    bytes: u64,
}

impl Pace {
    fn new(window: Duration) -> Pace {
        Pace {
            window,
            start: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` more bytes of `what`.
    pub fn advance(&mut self, n: usize, what: &str) -> Result<(), ClientError> {
        self.bytes += n as u64;
        let elapsed = self.start.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        if (self.bytes as f64) < MIN_RATE as f64 * elapsed.as_secs_f64() {
            return Err(ClientError::TooSlow {
                what: what.to_string(),
                bytes: self.bytes,
                secs: elapsed.as_secs(),
            });
        }
        self.start = std::time::Instant::now();
        self.bytes = 0;
        Ok(())
    }
}

/// Access a request needs, as a token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `repository:<name>:pull`.
    Pull,
    /// `repository:<name>:pull,push`.
    Push,
}

#[derive(Debug, Default)]
struct AuthState {
    /// Bearer tokens by scope string.
    tokens: HashMap<String, String>,
    /// The registry asked for basic auth.
    basic: bool,
}

/// A client for one registry.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    /// The registry timeout (see [`silence`]).
    silence: Duration,
    base: Url,
    registry: String,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
}

/// A manifest or index as fetched.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their digest is the manifest digest).
    pub bytes: Vec<u8>,
    /// The Content-Type the registry sent.
    pub content_type: Option<String>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl RegistryClient {
    /// A client for `registry` (`host[:port]` as in a reference; docker.io maps to its API host).
    pub fn new(
        registry: &str,
        scheme: Scheme,
        credentials: Option<Credentials>,
    ) -> Result<Self, ClientError> {
        let api_host = if registry == crate::reference::DOCKER_HUB {
            crate::reference::DOCKER_HUB_API
        } else {
            registry
        };
        let base = Url::parse(&format!(
            "{}://{}/",
            scheme.for_registry(api_host),
            api_host
        ))
        .map_err(|e| ClientError::Protocol {
            registry: registry.to_string(),
            detail: format!("bad registry address: {e}"),
        })?;
        let silence = silence();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(silence)
            .user_agent(concat!("container/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Setup)?;
        Ok(RegistryClient {
            http,
            silence,
            base,
            registry: registry.to_string(),
            credentials,
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// A pace watch for a body this client reads (see [`Pace`]).
    pub fn pace(&self) -> Pace {
        Pace::new(self.silence)
    }

    /// The registry this client talks to.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, path: &str) -> Url {
        // `path` is built from validated repository names and digests, so it always joins.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn scope(repository: &str, access: Access) -> String {
        match access {
            Access::Pull => format!("repository:{repository}:pull"),
            Access::Push => format!("repository:{repository}:pull,push"),
        }
    }

    fn authorize(&self, req: RequestBuilder, scope: &str) -> RequestBuilder {
        let state = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = state.tokens.get(scope) {
            req.bearer_auth(token)
        } else if state.basic {
            match &self.credentials {
                Some(c) => req.basic_auth(&c.username, Some(&c.password)),
                None => req,
            }
        } else {
            req
        }
    }

    /// Sends a request built by `make`, answering one auth challenge if the registry sends it.
    async fn send(
        &self,
        scope: &str,
        make: &(dyn Fn() -> RequestBuilder + Sync),
    ) -> Result<Response, ClientError> {
        let resp = self.send_once(self.authorize(make(), scope)).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(Challenge::parse)
            .unwrap_or(Challenge::None);
        match challenge {
            Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            } => {
                let token = self
                    .fetch_token(
                        &realm,
                        service.as_deref(),
                        challenge_scope.as_deref().or(Some(scope)),
                    )
                    .await?;
                self.auth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .tokens
                    .insert(scope.to_string(), token);
            }
            Challenge::Basic if self.credentials.is_some() => {
                self.auth.lock().unwrap_or_else(|e| e.into_inner()).basic = true;
            }
            _ => {
                return Err(
                    self.unauthorized(scope, "no credentials; use `container registry login`")
                )
            }
        }
        let resp = self.send_once(self.authorize(make(), scope)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let detail = if self.credentials.is_some() {
                "credentials rejected"
            } else {
                "no credentials; use `container registry login`"
            };
            return Err(self.unauthorized(scope, detail));
        }
        Ok(resp)
    }

    fn unauthorized(&self, scope: &str, detail: &str) -> ClientError {
        ClientError::Unauthorized {
            registry: self.registry.clone(),
            scope: scope.to_string(),
            detail: detail.to_string(),
        }
    }

    async fn send_once(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        req.send().await.map_err(|source| {
            if source.is_connect() || source.is_timeout() {
                ClientError::Unreachable {
                    registry: self.registry.clone(),
                    source,
                }
            } else {
                ClientError::Request {
                    url: source.url().map(|u| u.to_string()).unwrap_or_default(),
                    source,
                }
            }
        })
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, ClientError> {
        let token_err = |detail: String| ClientError::Token {
            realm: realm.to_string(),
            detail,
        };
        let mut url = Url::parse(realm).map_err(|e| token_err(format!("bad realm: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if let Some(s) = scope {
                for one in s.split(' ').filter(|one| !one.is_empty()) {
                    q.append_pair("scope", one);
                }
            }
        }
        let mut req = self.http.get(url);
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(|e| token_err(e.to_string()))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.unauthorized(
                    scope.unwrap_or(""),
                    if self.credentials.is_some() {
                        "credentials rejected by the token server"
                    } else {
                        "token server requires credentials; use `container registry login`"
                    },
                ))
            }
            s => return Err(token_err(format!("answered {s}"))),
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = read_limited(resp, "the token", self.pace())
            .await
            .map_err(|e| {
                let source = std::error::Error::source(&e).map(|s| format!(": {s}"));
                token_err(format!("{e}{}", source.unwrap_or_default()))
            })?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| token_err(format!("bad JSON: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("no token in the answer".to_string()))
    }

    /// Checks the registry speaks the v2 API and that our credentials (if any) are accepted.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let url = self.url("v2/");
        let resp = self.send("", &|| self.http.get(url.clone())).await?;
        check(resp, "ping", &self.registry).await.map(|_| ())
    }

    /// Fetches a manifest or index by tag or digest.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, ClientError> {
        let url = self.url(&format!("v2/{repository}/manifests/{reference}"));
        let what = format!("manifest {repository}:{reference}");
        let resp = self
            .send(&Self::scope(repository, Access::Pull), &|| {
                self.http
                    .get(url.clone())
                    .header(ACCEPT, media_type::MANIFEST_ACCEPT)
            })
            .await?;
        let resp = check(resp, &what, &self.registry).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(resp, &what, self.pace()).await?;
        let digest = Digest::of(&bytes);
        Ok(FetchedManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// Starts downloading a blob; the caller streams the body.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Response, ClientError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"));
        let resp = self
            .send(&Self::scope(repository, Access::Pull), &|| {
                self.http.get(url.clone())
            })
            .await?;
        check(resp, &format!("blob {digest}"), &self.registry).await
    }

    /// Does the repository have this blob? Returns its size if so.
    pub async fn head_blob(
        &self,
        repository: &str,
        digest: &Digest,
        access: Access,
    ) -> Result<Option<u64>, ClientError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"));
        let resp = self
            .send(&Self::scope(repository, access), &|| {
                self.http.head(url.clone())
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check(resp, &format!("blob {digest}"), &self.registry).await?;
        Ok(resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// Uploads a blob whose content is produced by `chunks` (in order). One chunk is a monolithic
    /// `PUT`; several are `PATCH`ed one by one and closed by a `PUT` (distribution-spec
    /// "Pushing a blob in chunks").
    pub async fn upload_blob<I>(
        &self,
        repository: &str,
        digest: &Digest,
        mut chunks: I,
    ) -> Result<(), ClientError>
    where
        I: Iterator<Item = std::io::Result<Vec<u8>>>,
    {
        let scope = Self::scope(repository, Access::Push);
        let what = format!("upload of blob {digest}");
        let start = self.url(&format!("v2/{repository}/blobs/uploads/"));
        let resp = self
            .send(&scope, &|| {
                self.http.post(start.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let resp = check(resp, &what, &self.registry).await?;
        let mut location = self.location(resp.headers())?;
        let read_err = |e: std::io::Error| ClientError::Protocol {
            registry: self.registry.clone(),
            detail: format!("cannot read blob {digest} to upload it: {e}"),
        };
        let first = chunks
            .next()
            .transpose()
            .map_err(read_err)?
            .unwrap_or_default();
        let second = chunks.next().transpose().map_err(read_err)?;
        let Some(second) = second else {
            // Monolithic: the whole blob in the closing PUT.
            let url = with_digest(&location, digest);
            let body = bytes_of(first);
            let resp = self
                .send(&scope, &|| {
                    self.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(body.clone())
                })
                .await?;
            check(resp, &what, &self.registry).await?;
            return Ok(());
        };
        let mut offset = 0u64;
        let mut pending = Some(first);
        let mut next = Some(second);
        while let Some(chunk) = pending.take() {
            let len = chunk.len() as u64;
            let range = format!("{}-{}", offset, offset + len - 1);
            let body = bytes_of(chunk);
            let url = location.clone();
            let resp = self
                .send(&scope, &|| {
                    self.http
                        .request(Method::PATCH, url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", range.clone())
                        .body(body.clone())
                })
                .await?;
            let resp = check(resp, &what, &self.registry).await?;
            location = self.location(resp.headers())?;
            offset += len;
            pending = next.take();
            if pending.is_some() {
                next = chunks.next().transpose().map_err(read_err)?;
            }
        }
        let url = with_digest(&location, digest);
        let resp = self
            .send(&scope, &|| {
                self.http.put(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        check(resp, &what, &self.registry).await?;
        Ok(())
    }

    /// Uploads a manifest or index under a tag or digest.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("v2/{repository}/manifests/{reference}"));
        let body = bytes_of(bytes);
        let resp = self
            .send(&Self::scope(repository, Access::Push), &|| {
                self.http
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        check(
            resp,
            &format!("push of manifest {repository}:{reference}"),
            &self.registry,
        )
        .await?;
        Ok(())
    }

    /// Does the repository have this manifest?
    pub async fn has_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, ClientError> {
        let url = self.url(&format!("v2/{repository}/manifests/{digest}"));
        let resp = self
            .send(&Self::scope(repository, Access::Push), &|| {
                self.http
                    .head(url.clone())
                    .header(ACCEPT, media_type::MANIFEST_ACCEPT)
            })
            .await?;
        Ok(resp.status().is_success())
    }

    fn location(&self, headers: &HeaderMap) -> Result<Url, ClientError> {
        let loc = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Protocol {
                registry: self.registry.clone(),
                detail: "upload answer without Location".to_string(),
            })?;
        self.base.join(loc).map_err(|e| ClientError::Protocol {
            registry: self.registry.clone(),
            detail: format!("bad upload Location {loc:?}: {e}"),
        })
    }
}

fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
    // Bytes clones cheaply, so the same body can be sent again after an auth challenge.
    bytes::Bytes::from(v)
}

fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

/// Turns a non-success status into an error carrying the registry's message.
async fn check(resp: Response, what: &str, registry: &str) -> Result<Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    // Only the start of an error body matters, and a hostile one may never end.
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await
    {
        body.extend_from_slice(&chunk);
        if body.len() > 64 << 10 {
            break;
        }
    }
    let message = registry_message(&body);
    if status == StatusCode::NOT_FOUND {
        return Err(ClientError::NotFound {
            registry: registry.to_string(),
            what: what.to_string(),
        });
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(ClientError::Unauthorized {
            registry: registry.to_string(),
            scope: what.to_string(),
            detail: if message.is_empty() {
                status.to_string()
            } else {
                message.trim_start_matches(": ").to_string()
            },
        });
    }
    Err(ClientError::Status {
        what: what.to_string(),
        status,
        message,
    })
}

fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let parts: Vec<String> = e
                .errors
                .iter()
                .map(|i| format!("{} {}", i.code, i.message).trim().to_string())
                .collect();
            format!(": {}", parts.join("; "))
        }
        _ => String::new(),
    }
}

/// Reads a document's body: at most [`MAX_DOCUMENT_SIZE`] bytes, at least at [`MIN_RATE`].
async fn read_limited(
    mut resp: Response,
    what: &str,
    mut pace: Pace,
) -> Result<Vec<u8>, ClientError> {
    if resp.content_length().is_some_and(|n| n > MAX_DOCUMENT_SIZE) {
        return Err(ClientError::TooLarge {
            what: what.to_string(),
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| ClientError::Body {
        what: what.to_string(),
        source,
    })? {
        pace.advance(chunk.len(), what)?;
        out.extend_from_slice(&chunk);
        if out.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(ClientError::TooLarge {
                what: what.to_string(),
            });
        }
    }
    Ok(out)
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
    None,
}

impl Challenge {
    /// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"` (RFC 7235).
    fn parse(header: &str) -> Challenge {
        let header = header.trim();
        let (kind, rest) = header.split_once(' ').unwrap_or((header, ""));
        if kind.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if !kind.eq_ignore_ascii_case("bearer") {
            return Challenge::None;
        }
        let params = parse_params(rest);
        match params.get("realm") {
            Some(realm) => Challenge::Bearer {
                realm: realm.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            },
            None => Challenge::None,
        }
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(Challenge::parse("Negotiate"), Challenge::None);
    }

    #[test]
    fn schemes() {
        assert_eq!(Scheme::Auto.for_registry("localhost:5000"), "http");
        assert_eq!(Scheme::Auto.for_registry("127.0.0.5:80"), "http");
        assert_eq!(Scheme::Auto.for_registry("[::1]:5000"), "http");
        assert_eq!(Scheme::Auto.for_registry("registry.example"), "https");
        assert_eq!(Scheme::Auto.for_registry("10.0.0.1:5000"), "https");
        assert_eq!(Scheme::Http.for_registry("registry.example"), "http");
        assert_eq!(Scheme::Https.for_registry("localhost"), "https");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            registry_message(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            ": MANIFEST_UNKNOWN manifest unknown"
        );
        assert_eq!(registry_message(b"<html>"), "");
    }
}
