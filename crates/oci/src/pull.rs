//! `pull`: fetch an image from a registry into the content store.
//!
//! Order of work, so that an interrupted pull never leaves a name pointing at missing or partial
//! content: resolve the reference to a manifest (choosing a platform from an index), download the
//! config and layers concurrently (at most `concurrency` at a time) into temp files while hashing
//! them, verify digest and size, fsync, rename into `blobs/`; then store the manifest (and index)
//! blobs; only then point the name at it in `index.json`. Blobs already present are not fetched.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::auth::{AuthError, Credentials};
use crate::client::{ClientError, RegistryClient, Scheme};
use crate::digest::{Digest, Hasher};
use crate::reference::Reference;
use crate::spec::{Descriptor, ImageConfig, Manifest, ManifestDoc, Platform, SpecError};
use crate::store::{select_platform, Image, Store, StoreError};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Credentials could not be looked up.
    #[error("cannot look up credentials")]
    Credentials(#[source] AuthError),
    /// The registry client could not be set up.
    #[error("cannot connect")]
    Connect(#[source] ClientError),
    /// The reference could not be resolved to a manifest.
    #[error("cannot fetch manifest of {reference}")]
    FetchManifest {
        /// What was being resolved.
        reference: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// A manifest or index is malformed or of an unknown type.
    #[error("bad manifest {digest}")]
    ParseManifest {
        /// The document's digest.
        digest: Digest,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// A manifest did not hash to the digest it was asked for by.
    #[error("manifest digest mismatch: expected {expected}, registry sent {actual}")]
    ManifestDigest {
        /// What was asked for.
        expected: Digest,
        /// What arrived.
        actual: Digest,
    },
    /// An index entry points at another index.
    #[error("manifest {0} for the chosen platform is an index, not an image manifest")]
    NestedIndex(Digest),
    /// A config is malformed.
    #[error("bad image config {digest}")]
    ParseConfig {
        /// The config's digest.
        digest: Digest,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// The image is not for the requested platform.
    #[error("{reference} has no image for platform {wanted} (available: {available})")]
    WrongPlatform {
        /// The image.
        reference: String,
        /// What was asked for.
        wanted: String,
        /// What it is.
        available: String,
    },
    /// A blob download failed.
    #[error("cannot download blob {digest}")]
    DownloadBlob {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The connection broke before the whole blob arrived.
    #[error("download of blob {digest} interrupted after {received} of {expected} bytes")]
    Truncated {
        /// The blob.
        digest: Digest,
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
        /// The transport error.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The blob is larger or smaller than its descriptor says.
    #[error("blob {digest} has the wrong size: descriptor says {expected} bytes, registry sent {actual}")]
    BlobSize {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// What arrived (or was announced).
        actual: u64,
    },
    /// The blob does not hash to its digest.
    #[error("blob digest mismatch: expected {expected}, content hashes to {actual}")]
    BlobDigest {
        /// The descriptor's digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Writing a blob to disk failed.
    #[error("cannot write blob {digest} to {path}")]
    WriteBlob {
        /// The blob.
        digest: Digest,
        /// The temp file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The content store refused an operation.
    #[error("content store")]
    Store(#[source] StoreError),
    /// A download task panicked or was cancelled.
    #[error("download task failed: {0}")]
    Task(String),
}

impl From<StoreError> for PullError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoPlatform {
                reference,
                wanted,
                available,
            } => PullError::WrongPlatform {
                reference,
                wanted,
                available,
            },
            e => PullError::Store(e),
        }
    }
}

/// What happened to one blob during a pull or push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// It was transferred.
    Transferred,
    /// It was already there.
    Skipped,
}

/// Receives per-blob progress; the CLI draws bars with it. Calls come from several tasks.
pub trait Progress: Send + Sync {
    /// A blob transfer starts (or is found present).
    fn start(&self, digest: &Digest, size: u64);
    /// `bytes` more bytes of the blob moved.
    fn advance(&self, digest: &Digest, bytes: u64);
    /// The blob is done.
    fn finish(&self, digest: &Digest, outcome: BlobOutcome);
}

/// How to pull.
#[derive(Clone)]
pub struct PullOptions {
    /// Platform to choose from an index; `None` means the host's.
    pub platform: Option<Platform>,
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// Blobs downloaded at once (at least 1).
    pub concurrency: usize,
    /// Credentials to use; `None` looks them up (`registry login`, then docker's config).
    pub credentials: Option<Credentials>,
    /// Progress sink.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            scheme: Scheme::Auto,
            concurrency: 3,
            credentials: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("scheme", &self.scheme)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Pulls `reference` into `store` and returns the image (for the chosen platform).
pub async fn pull(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<Image, PullError> {
    // Keep `prune` from deleting blobs between their download and their naming.
    let gc_store = store.clone();
    let _gc = tokio::task::spawn_blocking(move || gc_store.lock_gc(false))
        .await
        .map_err(|e| PullError::Task(e.to_string()))??;

    let credentials = match &opts.credentials {
        Some(c) => Some(c.clone()),
        None => store
            .credentials()
            .get(reference.registry())
            .map_err(PullError::Credentials)?,
    };
    let client = Arc::new(
        RegistryClient::new(reference.registry(), opts.scheme, credentials)
            .map_err(PullError::Connect)?,
    );
    let repo = reference.repository().to_string();
    let wanted = opts.platform.clone().unwrap_or_else(Platform::host);

    let top = client
        .get_manifest(&repo, &reference.manifest_reference())
        .await
        .map_err(|source| PullError::FetchManifest {
            reference: reference.to_string(),
            source,
        })?;
    if let Some(expected) = reference.digest() {
        if expected != &top.digest {
            return Err(PullError::ManifestDigest {
                expected: expected.clone(),
                actual: top.digest,
            });
        }
    }
    let (doc, top_type) =
        ManifestDoc::parse(&top.bytes, top.content_type.as_deref()).map_err(|source| {
            PullError::ParseManifest {
                digest: top.digest.clone(),
                source,
            }
        })?;
    let target = Descriptor::new(&top_type, top.digest.clone(), top.bytes.len() as u64);

    let (manifest_bytes, manifest_desc, manifest): (Vec<u8>, Descriptor, Manifest) = match doc {
        ManifestDoc::Manifest(m) => (top.bytes.clone(), target.clone(), m),
        ManifestDoc::Index(index) => {
            let chosen = select_platform(&reference.to_string(), &index, &wanted)?.clone();
            let fetched = client
                .get_manifest(&repo, chosen.digest.as_str())
                .await
                .map_err(|source| PullError::FetchManifest {
                    reference: format!("{reference} ({wanted})"),
                    source,
                })?;
            if fetched.digest != chosen.digest {
                return Err(PullError::ManifestDigest {
                    expected: chosen.digest,
                    actual: fetched.digest,
                });
            }
            match ManifestDoc::parse(&fetched.bytes, Some(&chosen.media_type)) {
                Ok((ManifestDoc::Manifest(m), _)) => (fetched.bytes, chosen, m),
                Ok((ManifestDoc::Index(_), _)) => {
                    return Err(PullError::NestedIndex(chosen.digest))
                }
                Err(source) => {
                    return Err(PullError::ParseManifest {
                        digest: chosen.digest,
                        source,
                    })
                }
            }
        }
    };

    // Config first in the list so a malformed one fails early; duplicates fetched once.
    let mut seen = HashSet::new();
    let blobs: Vec<Descriptor> = std::iter::once(manifest.config.clone())
        .chain(manifest.layers.iter().cloned())
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    fetch_blobs(store, &client, &repo, blobs, opts).await?;

    let config_bytes = store.read_blob(&manifest.config.digest)?;
    let config = ImageConfig::parse(&config_bytes).map_err(|source| PullError::ParseConfig {
        digest: manifest.config.digest.clone(),
        source,
    })?;
    if opts.platform.is_some()
        && manifest_desc.platform.is_none()
        && !wanted.matches(&config.platform())
    {
        return Err(PullError::WrongPlatform {
            reference: reference.to_string(),
            wanted: wanted.to_string(),
            available: config.platform().to_string(),
        });
    }

    store.write_blob(&manifest_bytes)?;
    if target.digest != manifest_desc.digest {
        store.write_blob(&top.bytes)?;
    }
    store.set_ref(reference, &target)?;
    Ok(store.image_for(reference, &wanted)?)
}

async fn fetch_blobs(
    store: &Store,
    client: &Arc<RegistryClient>,
    repo: &str,
    blobs: Vec<Descriptor>,
    opts: &PullOptions,
) -> Result<(), PullError> {
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for desc in blobs {
        if let Some(p) = &opts.progress {
            p.start(&desc.digest, desc.size);
        }
        if store.blob_size(&desc.digest) == Some(desc.size) {
            if let Some(p) = &opts.progress {
                p.finish(&desc.digest, BlobOutcome::Skipped);
            }
            continue;
        }
        let limit = limit.clone();
        let client = client.clone();
        let store = store.clone();
        let repo = repo.to_string();
        let progress = opts.progress.clone();
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .map_err(|e| PullError::Task(e.to_string()))?;
            download_blob(&store, &client, &repo, &desc, progress.as_deref()).await?;
            if let Some(p) = &progress {
                p.finish(&desc.digest, BlobOutcome::Transferred);
            }
            Ok::<(), PullError>(())
        });
    }
    // The first failure wins.
    while let Some(joined) = tasks.join_next().await {
        let result = joined
            .map_err(|e| PullError::Task(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = result {
            // Cancel the other downloads and wait until their temp files are removed.
            tasks.shutdown().await;
            return Err(e);
        }
    }
    Ok(())
}

/// Removes a temp file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn download_blob(
    store: &Store,
    client: &RegistryClient,
    repo: &str,
    desc: &Descriptor,
    progress: Option<&dyn Progress>,
) -> Result<(), PullError> {
    let digest = &desc.digest;
    let mut resp =
        client
            .get_blob(repo, digest)
            .await
            .map_err(|source| PullError::DownloadBlob {
                digest: digest.clone(),
                source,
            })?;
    if let Some(len) = resp.content_length() {
        if len != desc.size {
            return Err(PullError::BlobSize {
                digest: digest.clone(),
                expected: desc.size,
                actual: len,
            });
        }
    }
    let path = store.temp_path();
    let write_err = |source| PullError::WriteBlob {
        digest: digest.clone(),
        path: path.clone(),
        source,
    };
    // Opened synchronously (a cheap call) so the guard exists as soon as the file does: a task
    // cancelled while an asynchronous open was in flight could otherwise leave the file behind.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(write_err)?;
    let mut guard = TempGuard(Some(path.clone()));
    let file = tokio::fs::File::from_std(file);
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Hasher::new();
    let mut pace = client.pace();
    let what = format!("blob {digest}");
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return Err(PullError::Truncated {
                    digest: digest.clone(),
                    received: hasher.size(),
                    expected: desc.size,
                    source: Some(e),
                })
            }
        };
        if hasher.size() + chunk.len() as u64 > desc.size {
            return Err(PullError::BlobSize {
                digest: digest.clone(),
                expected: desc.size,
                actual: hasher.size() + chunk.len() as u64,
            });
        }
        pace.advance(chunk.len(), &what)
            .map_err(|source| PullError::DownloadBlob {
                digest: digest.clone(),
                source,
            })?;
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(write_err)?;
        if let Some(p) = progress {
            p.advance(digest, chunk.len() as u64);
        }
    }
    if hasher.size() != desc.size {
        return Err(PullError::Truncated {
            digest: digest.clone(),
            received: hasher.size(),
            expected: desc.size,
            source: None,
        });
    }
    out.flush().await.map_err(write_err)?;
    let file = out.into_inner();
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    let (actual, _) = hasher.finish();
    if &actual != digest {
        return Err(PullError::BlobDigest {
            expected: digest.clone(),
            actual,
        });
    }
    store.commit_temp(&path, digest)?;
    guard.0 = None;
    Ok(())
}
