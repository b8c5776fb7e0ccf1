//! `push`: upload an image from the content store to a registry.
//!
//! Blobs the repository lacks are uploaded first (monolithic `PUT` up to `chunk_size`, chunked
//! `PATCH`es above it), then child manifests of an index by digest, then the top manifest under
//! the reference's tag. Manifest bytes are sent exactly as stored, so a pushed image pulls back
//! with the same digests.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::auth::{AuthError, Credentials};
use crate::client::{Access, ClientError, RegistryClient, Scheme};
use crate::digest::Digest;
use crate::pull::{BlobOutcome, Progress};
use crate::reference::Reference;
use crate::spec::{Descriptor, ManifestDoc, Platform};
use crate::store::{select_platform, Store, StoreError};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Credentials could not be looked up.
    #[error("cannot look up credentials")]
    Credentials(#[source] AuthError),
    /// The registry client could not be set up.
    #[error("cannot connect")]
    Connect(#[source] ClientError),
    /// The local image is unusable.
    #[error("local image")]
    Store(#[from] StoreError),
    /// A blob upload failed.
    #[error("cannot upload blob {digest}")]
    UploadBlob {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// A manifest upload failed.
    #[error("cannot upload manifest {digest}")]
    UploadManifest {
        /// The manifest.
        digest: Digest,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// An upload task panicked.
    #[error("upload task failed: {0}")]
    Task(String),
}

/// How to push.
#[derive(Clone)]
pub struct PushOptions {
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// Blobs larger than this go up in chunks of this size; smaller ones in one request.
    pub chunk_size: u64,
    /// Blobs uploaded at once.
    pub concurrency: usize,
    /// Credentials to use; `None` looks them up.
    pub credentials: Option<Credentials>,
    /// Progress sink.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            scheme: Scheme::Auto,
            chunk_size: 16 << 20,
            concurrency: 3,
            credentials: None,
            progress: None,
        }
    }
}

/// Pushes the image named `reference` to the registry and repository the reference names.
/// Returns the digest of the pushed top-level manifest or index.
pub async fn push(
    store: &Store,
    reference: &Reference,
    opts: &PushOptions,
) -> Result<Digest, PushError> {
    let target = store.resolve(reference)?;
    let credentials = match &opts.credentials {
        Some(c) => Some(c.clone()),
        None => store
            .credentials()
            .get(reference.registry())
            .map_err(PushError::Credentials)?,
    };
    let client = Arc::new(
        RegistryClient::new(reference.registry(), opts.scheme, credentials)
            .map_err(PushError::Connect)?,
    );
    let repo = reference.repository().to_string();

    // Work out which manifests go up: an index whose children are all here goes up whole;
    // otherwise (a multi-arch image pulled for one platform) only the host's manifest.
    let (doc, top_type) = store.read_manifest(&target.digest)?;
    let (top, children) = match doc {
        ManifestDoc::Manifest(m) => (
            (target.digest.clone(), top_type),
            vec![(target.digest.clone(), m)],
        ),
        ManifestDoc::Index(index) => {
            let present: Vec<&Descriptor> = index
                .manifests
                .iter()
                .filter(|d| store.has_blob(&d.digest))
                .collect();
            if present.len() == index.manifests.len() {
                let mut children = Vec::new();
                for d in &index.manifests {
                    if let (ManifestDoc::Manifest(m), _) = store.read_manifest(&d.digest)? {
                        children.push((d.digest.clone(), m));
                    }
                }
                ((target.digest.clone(), top_type), children)
            } else {
                let d = select_platform(&reference.to_string(), &index, &Platform::host())?;
                tracing::warn!(
                    "{reference}: only the {} manifest is stored; pushing it alone",
                    Platform::host()
                );
                match store.read_manifest(&d.digest)? {
                    (ManifestDoc::Manifest(m), mt) => {
                        ((d.digest.clone(), mt), vec![(d.digest.clone(), m)])
                    }
                    (ManifestDoc::Index(_), _) => {
                        return Err(StoreError::MissingBlob(d.digest.clone()).into())
                    }
                }
            }
        }
    };

    let mut seen = std::collections::HashSet::new();
    let blobs: Vec<Descriptor> = children
        .iter()
        .flat_map(|(_, m)| std::iter::once(m.config.clone()).chain(m.layers.iter().cloned()))
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    for b in &blobs {
        if !store.has_blob(&b.digest) {
            return Err(StoreError::MissingBlob(b.digest.clone()).into());
        }
    }

    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for desc in blobs {
        let (limit, client, store, repo) =
            (limit.clone(), client.clone(), store.clone(), repo.clone());
        let progress = opts.progress.clone();
        let chunk_size = opts.chunk_size.max(1);
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .map_err(|e| PushError::Task(e.to_string()))?;
            if let Some(p) = &progress {
                p.start(&desc.digest, desc.size);
            }
            let upload_err = |source| PushError::UploadBlob {
                digest: desc.digest.clone(),
                source,
            };
            let exists = client
                .head_blob(&repo, &desc.digest, Access::Push)
                .await
                .map_err(upload_err)?;
            if exists.is_some() {
                if let Some(p) = &progress {
                    p.finish(&desc.digest, BlobOutcome::Skipped);
                }
                return Ok(());
            }
            let file = store.open_blob(&desc.digest)?;
            let chunks = Chunks {
                file,
                chunk_size: chunk_size as usize,
                digest: desc.digest.clone(),
                progress: progress.clone(),
            };
            client
                .upload_blob(&repo, &desc.digest, chunks)
                .await
                .map_err(upload_err)?;
            if let Some(p) = &progress {
                p.finish(&desc.digest, BlobOutcome::Transferred);
            }
            Ok::<(), PushError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| PushError::Task(e.to_string()))??;
    }

    let (top_digest, top_type) = top;
    for (digest, m) in &children {
        if digest == &top_digest {
            continue;
        }
        // A child manifest the repository already has (HEAD answers 200) is not sent again.
        if client.has_manifest(&repo, digest).await.unwrap_or(false) {
            continue;
        }
        let media_type = m
            .media_type
            .clone()
            .unwrap_or_else(|| crate::spec::media_type::OCI_MANIFEST.to_string());
        let bytes = store.read_blob(digest)?;
        client
            .put_manifest(&repo, digest.as_str(), &media_type, bytes)
            .await
            .map_err(|source| PushError::UploadManifest {
                digest: digest.clone(),
                source,
            })?;
    }
    let bytes = store.read_blob(&top_digest)?;
    let tag = reference
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| top_digest.to_string());
    client
        .put_manifest(&repo, &tag, &top_type, bytes)
        .await
        .map_err(|source| PushError::UploadManifest {
            digest: top_digest.clone(),
            source,
        })?;
    Ok(top_digest)
}

/// Reads a blob file in pieces for upload.
struct Chunks {
    file: File,
    chunk_size: usize,
    digest: Digest,
    progress: Option<Arc<dyn Progress>>,
}

impl Iterator for Chunks {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::with_capacity(self.chunk_size.min(64 << 20));
        match (&mut self.file)
            .take(self.chunk_size as u64)
            .read_to_end(&mut buf)
        {
            Ok(0) => None,
            Ok(n) => {
                if let Some(p) = &self.progress {
                    p.advance(&self.digest, n as u64);
                }
                Some(Ok(buf))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
