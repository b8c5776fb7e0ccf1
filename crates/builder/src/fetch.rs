//! `ADD <http(s) URL>`: the download, with the same HTTP stack as the registry client
//! (reqwest, rustls). Docker's rules: the file is named after the last segment of the
//! URL's path (`__unnamed__` when there is none), gets mode 0600 and, when the server sends
//! `Last-Modified`, that mtime; `--checksum=sha256:…` is verified. Redirects are followed,
//! proxies come from the environment, nothing is sent but a GET.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci::digest::Hasher;
use oci::Digest;

/// A downloaded URL.
#[derive(Debug)]
pub struct Download {
    /// The URL as written.
    pub url: String,
    /// The file name Docker gives it.
    pub name: String,
    /// `Last-Modified`, seconds since the epoch.
    pub mtime: Option<i64>,
    /// The content's digest.
    pub digest: Digest,
    /// The content's length.
    pub size: u64,
    file: tempfile::NamedTempFile,
}

impl Download {
    /// Where the content is (a temporary file, removed with the `Download`).
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// A download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL does not parse.
    #[error("ADD {url}: invalid URL")]
    Url {
        /// The URL.
        url: String,
    },
    /// The request failed (connection, TLS, timeout).
    #[error("ADD {url}: request failed")]
    Request {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("ADD {url}: the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The temporary file could not be written.
    #[error("ADD {url}: cannot store the download in {}", dir.display())]
    Store {
        /// The URL.
        url: String,
        /// Where.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--checksum` is not `sha256:<64 hex>`.
    #[error("ADD --checksum={0}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    /// The content does not match `--checksum`.
    #[error("ADD {url}: checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// `--checksum`.
        expected: String,
        /// What was downloaded.
        actual: Digest,
    },
}

/// The file name Docker gives a download: Go's `path.Base` of the URL's (decoded) path,
/// `__unnamed__` when that is empty or `/`.
pub fn file_name(url: &reqwest::Url) -> String {
    let path = percent_decode(url.path());
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into a temporary file in `dir`.
pub async fn download(
    url: &str,
    dir: &Path,
    checksum: Option<&str>,
) -> Result<Download, FetchError> {
    let expected = match checksum {
        Some(c) => Some(Digest::parse(c).map_err(|_| FetchError::BadChecksum(c.into()))?),
        None => None,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::Url { url: url.into() })?;
    let request_err = |source| FetchError::Request {
        url: url.into(),
        source,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("container/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(request_err)?;
    let mut response = client
        .get(parsed.clone())
        .send()
        .await
        .map_err(request_err)?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            status: response.status(),
        });
    }
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let store_err = |source| FetchError::Store {
        url: url.into(),
        dir: dir.into(),
        source,
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(store_err)?;
    let mut hasher = Hasher::new();
    while let Some(chunk) = response.chunk().await.map_err(request_err)? {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(store_err)?;
    }
    file.flush().map_err(store_err)?;
    let (digest, size) = hasher.finish();
    if let Some(expected) = expected {
        if expected != digest {
            return Err(FetchError::ChecksumMismatch {
                url: url.into(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
    }
    Ok(Download {
        url: url.into(),
        // Named after the URL as written, not where a redirect led (BuildKit names it
        // when it converts the Dockerfile).
        name: file_name(&parsed),
        mtime,
        digest,
        size,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_docker() {
        let name = |u: &str| file_name(&reqwest::Url::parse(u).unwrap());
        assert_eq!(name("http://h/a/b.tar.gz"), "b.tar.gz");
        assert_eq!(name("http://h/a/dir/"), "dir");
        assert_eq!(name("http://h/"), "__unnamed__");
        assert_eq!(name("http://h"), "__unnamed__");
        assert_eq!(name("http://h/my%20file?x=1"), "my file");
    }
}
