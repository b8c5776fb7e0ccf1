//! The content store: an OCI image layout on disk, plus the locks and scratch space around it.
//!
//! ```text
//! <state>/
//! ├── content/                 an OCI image layout (image-spec "image-layout.md")
//! │   ├── oci-layout           {"imageLayoutVersion":"1.0.0"}
//! │   ├── index.json           one descriptor per name, annotated with
//! │   │                        org.opencontainers.image.ref.name = the normalised reference
//! │   └── blobs/sha256/<hex>   manifests, indexes, configs, layers
//! ├── content-ingest/          temp files of blobs being written (same filesystem: rename is atomic)
//! ├── content-gc.lock          shared by writers, exclusive by prune
//! └── content-index.lock       exclusive around read-modify-write of index.json
//! ```
//!
//! Blobs are written to a temp file, fsynced, verified against the expected digest and size, and
//! only then renamed into `blobs/`; `index.json` is replaced the same way. So a crash or `kill -9`
//! leaves either the old state or the new one, plus at worst a temp file that `prune` removes.
//! `skopeo inspect oci:<state>/content:<reference>` and umoci read the layout directly.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::reference::Reference;
use crate::spec::{
    media_type, Descriptor, ImageConfig, Index, Manifest, ManifestDoc, Platform, SpecError,
    ANNOTATION_REF_NAME,
};

/// Largest manifest/index/config we read into memory.
pub const MAX_DOCUMENT_SIZE: u64 = 8 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A directory of the store could not be created.
    #[error("cannot create {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A lock file could not be opened or locked.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `index.json` could not be read.
    #[error("cannot read {path}")]
    ReadIndex {
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `index.json` is not a valid index.
    #[error("corrupt {path}")]
    ParseIndex {
        /// Its path.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A file of the store could not be written.
    #[error("cannot write {path}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A blob that should be present is not.
    #[error("blob {0} is missing from the content store")]
    MissingBlob(Digest),
    /// A blob could not be read.
    #[error("cannot read blob {digest}")]
    ReadBlob {
        /// The blob.
        digest: Digest,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A blob is larger than we are willing to read into memory.
    #[error("blob {digest} is {size} bytes, more than the {MAX_DOCUMENT_SIZE} allowed for a manifest or config")]
    DocumentTooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the descriptor said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content did not have the size it was announced with.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// What the descriptor said.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// A temp file could not be written while ingesting.
    #[error("cannot write to the content store")]
    Ingest(#[source] io::Error),
    /// No image by that name is in the store.
    #[error("image {0} not found in the content store")]
    NotFound(String),
    /// A stored document does not parse.
    #[error("stored {what} {digest} is unusable")]
    Document {
        /// Which document.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// The index has no manifest for the wanted platform.
    #[error("{reference} has no image for platform {wanted} (available: {available})")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms it has, comma-separated.
        available: String,
    },
    /// The index's manifest for the wanted platform was not pulled.
    #[error("{reference}: the {platform} manifest {digest} is not in the store (pull it with --platform {platform})")]
    PlatformNotPulled {
        /// The image.
        reference: String,
        /// The platform.
        platform: String,
        /// The missing manifest.
        digest: Digest,
    },
}

/// The OCI layout plus its locks; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    state: PathBuf,
    layout: PathBuf,
    ingest: PathBuf,
    gc_lock: PathBuf,
    index_lock: PathBuf,
}

/// One name in the store: a reference and the descriptor it points to (manifest or index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The normalised reference.
    pub reference: Reference,
    /// What it points to.
    pub descriptor: Descriptor,
}

/// An image resolved to one platform: everything the runtime needs to build a rootfs and a process.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name it was looked up by.
    pub reference: Reference,
    /// What the name points to (an index or a manifest).
    pub target: Descriptor,
    /// The platform manifest's descriptor (equal to `target` for single-platform images).
    pub manifest_descriptor: Descriptor,
    /// The parsed platform manifest.
    pub manifest: Manifest,
    /// The parsed image config.
    pub config: ImageConfig,
    /// The platform the image is for.
    pub platform: Platform,
}

impl Image {
    /// Digest of the platform manifest.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_descriptor.digest
    }

    /// The layers, base first, each with media type, digest and size.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }

    /// Total compressed size of the layers and config.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

impl Store {
    /// The directories the store keeps on disk (the OCI layout and the ingest area), for
    /// disk-usage reports.
    pub fn dirs(&self) -> [&Path; 2] {
        [&self.layout, &self.ingest]
    }

    /// Opens (creating if needed) the content store under the state directory `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let store = Store {
            state: state_dir.to_path_buf(),
            layout: state_dir.join("content"),
            ingest: state_dir.join("content-ingest"),
            gc_lock: state_dir.join("content-gc.lock"),
            index_lock: state_dir.join("content-index.lock"),
        };
        for dir in [&store.layout.join("blobs/sha256"), &store.ingest] {
            fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        // Images are their owner's alone (a private image may hold secrets), as docker's
        // are under its 0710 root, whatever the mode of the state directory.
        for dir in [&store.layout, &store.ingest] {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                StoreError::CreateDir {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        let layout_file = store.layout.join("oci-layout");
        if !layout_file.exists() {
            write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.layout.join("index.json");
        if !index.exists() {
            let _lock = store.lock_index()?;
            if !index.exists() {
                store.write_index(&LayoutIndex {
                    schema_version: 2,
                    media_type: Some(media_type::OCI_INDEX.to_string()),
                    manifests: Vec::new(),
                    annotations: BTreeMap::new(),
                })?;
            }
        }
        store.sweep_ingest();
        Ok(store)
    }

    /// Removes temp files whose writer died (killed half-way through a pull, a load or an
    /// index update): ingest files are named `PID-RANDOM`, the index's temp files are
    /// [`atomic_file::temp_sibling`]s.
    fn sweep_ingest(&self) {
        atomic_file::remove_dead_writers(&self.ingest, |n| n.split_once('-')?.0.parse().ok());
        atomic_file::remove_dead_writers(&self.layout, atomic_file::temp_sibling_pid);
    }

    /// Registry credentials kept beside the store (`<state>/auth.json`, then docker's file).
    pub fn credentials(&self) -> crate::auth::CredentialStore {
        crate::auth::CredentialStore::new(&self.state)
    }

    /// The OCI layout directory (`<state>/content`).
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Is the blob present?
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a present blob.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }

    /// Opens a present blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        File::open(self.blob_path(digest)).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(digest.clone())
            } else {
                StoreError::ReadBlob {
                    digest: digest.clone(),
                    source,
                }
            }
        })
    }

    /// Reads a small blob (manifest, index, config) into memory.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let file = self.open_blob(digest)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > MAX_DOCUMENT_SIZE {
            return Err(StoreError::DocumentTooLarge {
                digest: digest.clone(),
                size,
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        file.take(MAX_DOCUMENT_SIZE)
            .read_to_end(&mut buf)
            .map_err(|source| StoreError::ReadBlob {
                digest: digest.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// Stores bytes held in memory; returns their digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(data);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.ingest()?;
        w.write_all(data).map_err(StoreError::Ingest)?;
        w.commit(Some(&digest), Some(data.len() as u64))?;
        Ok(digest)
    }

    /// Starts writing a blob of not-yet-known digest; see [`BlobWriter`].
    pub fn ingest(&self) -> Result<BlobWriter, StoreError> {
        let path = self.temp_path();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::Ingest)?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Hasher::new(),
        })
    }

    /// A fresh path in the ingest directory for a temp file.
    pub fn temp_path(&self) -> PathBuf {
        self.ingest.join(format!(
            "{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    /// Moves an already-fsynced and verified temp file into place as blob `digest`.
    ///
    /// The directory is not fsynced here, once per blob: [`Store::set_ref`] fsyncs it once before
    /// any name can point at the blob, which is when the rename must be durable. Every fsync of
    /// a directory is a journal commit, and on a busy disk each costs tens of milliseconds.
    pub fn commit_temp(&self, temp: &Path, digest: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        fs::rename(temp, &dest).map_err(|source| StoreError::WriteFile {
            path: dest.clone(),
            source,
        })
    }

    /// Takes the lock that keeps `prune` away while content is being added (shared) or that
    /// `prune` itself holds (exclusive). Released when the returned file is dropped.
    pub fn lock_gc(&self, exclusive: bool) -> Result<File, StoreError> {
        lock_file(&self.gc_lock, exclusive)
    }

    fn lock_index(&self) -> Result<File, StoreError> {
        lock_file(&self.index_lock, true)
    }

    fn read_index(&self) -> Result<LayoutIndex, StoreError> {
        let path = self.layout.join("index.json");
        let bytes = fs::read(&path).map_err(|source| StoreError::ReadIndex {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::ParseIndex { path, source })
    }

    fn write_index(&self, index: &LayoutIndex) -> Result<(), StoreError> {
        let path = self.layout.join("index.json");
        let bytes = serde_json::to_vec(index).map_err(|source| StoreError::ParseIndex {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Reads and parses the image config in blob `digest`.
    pub(crate) fn read_config(&self, digest: &Digest) -> Result<ImageConfig, StoreError> {
        parse_config(&self.read_blob(digest)?, digest)
    }

    /// Every name in the store, in `index.json` order.
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotations.get(ANNOTATION_REF_NAME)?;
                let reference = Reference::parse(name).ok()?;
                Some(Entry {
                    reference,
                    descriptor: d,
                })
            })
            .collect())
    }

    /// What a name points to.
    pub fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        let entries = self.list()?;
        if let Some(e) = entries.iter().find(|e| &e.reference == reference) {
            return Ok(e.descriptor.clone());
        }
        // `name@digest` also finds an image stored under a tag whose target has that digest.
        if let (Some(d), None) = (reference.digest(), reference.tag()) {
            if let Some(e) = entries.iter().find(|e| {
                &e.descriptor.digest == d
                    && e.reference.registry() == reference.registry()
                    && e.reference.repository() == reference.repository()
            }) {
                return Ok(e.descriptor.clone());
            }
        }
        Err(StoreError::NotFound(reference.to_string()))
    }

    /// Points a name at a descriptor (replacing what it pointed to). The content must be present.
    pub fn set_ref(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(), StoreError> {
        if !self.has_blob(&descriptor.digest) {
            return Err(StoreError::MissingBlob(descriptor.digest.clone()));
        }
        // Make the renames of the blobs the name reaches durable before the name is.
        sync_dir(
            &self
                .layout
                .join("blobs")
                .join(descriptor.digest.algorithm()),
        )?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let name = reference.to_string();
        index
            .manifests
            .retain(|d| d.annotations.get(ANNOTATION_REF_NAME) != Some(&name));
        let mut d = descriptor.clone();
        d.annotations = BTreeMap::from([(ANNOTATION_REF_NAME.to_string(), name)]);
        index.manifests.push(d);
        self.write_index(&index)
    }

    /// Removes a name; returns what it pointed to. Blobs stay until [`Store::prune`].
    pub fn remove_ref(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let target = self.resolve(reference)?;
        let found: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|e| {
                &e.reference == reference
                    || (reference.tag().is_none()
                        && reference.digest() == Some(&e.descriptor.digest)
                        && e.reference.repository() == reference.repository()
                        && e.reference.registry() == reference.registry())
            })
            .map(|e| e.reference.to_string())
            .collect();
        index.manifests.retain(|d| {
            !d.annotations
                .get(ANNOTATION_REF_NAME)
                .is_some_and(|n| found.contains(n))
        });
        self.write_index(&index)?;
        Ok(target)
    }

    /// Reads and parses a stored manifest or index.
    pub fn read_manifest(&self, digest: &Digest) -> Result<(ManifestDoc, String), StoreError> {
        let bytes = self.read_blob(digest)?;
        ManifestDoc::parse(&bytes, None).map_err(|source| StoreError::Document {
            what: "manifest",
            digest: digest.clone(),
            source,
        })
    }

    /// The image a name points to, for the host platform.
    pub fn image(&self, reference: &Reference) -> Result<Image, StoreError> {
        self.image_for(reference, &Platform::host())
    }

    /// The image a name points to, for a given platform (used when the name is an index).
    pub fn image_for(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Image, StoreError> {
        let target = self.resolve(reference)?;
        let (doc, mt) = self.read_manifest(&target.digest)?;
        let (manifest_descriptor, manifest) = match doc {
            ManifestDoc::Manifest(m) => {
                let mut d = target.clone();
                d.media_type = mt;
                d.annotations.clear();
                (d, m)
            }
            ManifestDoc::Index(index) => {
                let d = select_platform(&reference.to_string(), &index, platform)?;
                if !self.has_blob(&d.digest) {
                    return Err(StoreError::PlatformNotPulled {
                        reference: reference.to_string(),
                        platform: platform.to_string(),
                        digest: d.digest.clone(),
                    });
                }
                match self.read_manifest(&d.digest)? {
                    (ManifestDoc::Manifest(m), _) => (d.clone(), m),
                    (ManifestDoc::Index(_), mt) => {
                        return Err(StoreError::Document {
                            what: "manifest",
                            digest: d.digest.clone(),
                            source: SpecError::MediaType {
                                what: "platform manifest (nested index)".into(),
                                media_type: mt,
                            },
                        })
                    }
                }
            }
        };
        let config = self.read_config(&manifest.config.digest)?;
        let platform = manifest_descriptor
            .platform
            .clone()
            .unwrap_or_else(|| config.platform());
        Ok(Image {
            reference: reference.clone(),
            target,
            manifest_descriptor,
            manifest,
            config,
            platform,
        })
    }
}

/// Parses `bytes`, the image config in blob `digest`.
pub(crate) fn parse_config(bytes: &[u8], digest: &Digest) -> Result<ImageConfig, StoreError> {
    ImageConfig::parse(bytes).map_err(|source| StoreError::Document {
        what: "config",
        digest: digest.clone(),
        source,
    })
}

/// Picks the index entry for `wanted`; the error lists what the index offers.
pub fn select_platform<'a>(
    reference: &str,
    index: &'a Index,
    wanted: &Platform,
) -> Result<&'a Descriptor, StoreError> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| media_type::is_manifest(&d.media_type))
        .collect();
    // Prefer an exact variant match, then any match.
    candidates
        .iter()
        .find(|d| d.platform.as_ref() == Some(wanted))
        .or_else(|| {
            candidates
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
        })
        .copied()
        .ok_or_else(|| StoreError::NoPlatform {
            reference: reference.to_string(),
            wanted: wanted.to_string(),
            available: {
                let list: Vec<String> = candidates
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    // Attestation manifests (buildkit) say unknown/unknown: not a platform.
                    .filter(|p| p.os != "unknown")
                    .map(|p| p.to_string())
                    .collect();
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            },
        })
}

/// A blob being written: hashes as it goes; [`BlobWriter::commit`] verifies and moves it into
/// place. Dropping it uncommitted removes the temp file.
pub struct BlobWriter {
    store: Store,
    file: Option<BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.hasher.size()
    }

    /// Fsyncs, checks digest and size against what was expected (if anything), and moves the
    /// blob into the store. Returns its digest and size.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Ingest(io::Error::other("blob writer already committed")))?;
        let file = file
            .into_inner()
            .map_err(|e| StoreError::Ingest(e.into_error()))?;
        file.sync_all().map_err(StoreError::Ingest)?;
        drop(file);
        let (digest, size) = std::mem::take(&mut self.hasher).finish();
        if let Some(want) = expected_size {
            if want != size {
                return Err(StoreError::SizeMismatch {
                    digest: expected.cloned().unwrap_or(digest),
                    expected: want,
                    actual: size,
                });
            }
        }
        if let Some(want) = expected {
            if want != &digest {
                return Err(StoreError::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        self.store.commit_temp(&self.path, &digest)?;
        self.path = PathBuf::new();
        Ok((digest, size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn lock_file(path: &Path, exclusive: bool) -> Result<File, StoreError> {
    let err = |source| StoreError::Lock {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    if exclusive {
        fs4::fs_std::FileExt::lock_exclusive(&file).map_err(err)?;
    } else {
        fs4::fs_std::FileExt::lock_shared(&file).map_err(err)?;
    }
    Ok(file)
}

/// Writes a file atomically (see [`atomic_file`]), reporting the path on failure.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    atomic_file::write_atomic(path, data).map_err(|source| StoreError::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_refs() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert!(tmp.path().join("content/oci-layout").is_file());
        let config = store
            .write_blob(br#"{"architecture":"amd64","os":"linux"}"#)
            .unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":37}},"layers":[]}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG
        );
        let md = store.write_blob(manifest.as_bytes()).unwrap();
        let r = Reference::parse("localhost:5000/a:1").unwrap();
        let desc = Descriptor::new(media_type::OCI_MANIFEST, md.clone(), manifest.len() as u64);
        store.set_ref(&r, &desc).unwrap();
        store.set_ref(&r, &desc).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        let image = store.image(&r).unwrap();
        assert_eq!(image.manifest_digest(), &md);
        assert_eq!(image.platform.architecture, "amd64");
        let by_digest = r.with_digest(md.clone());
        assert_eq!(store.resolve(&by_digest).unwrap().digest, md);
        store.remove_ref(&r).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.image(&r), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn writer_verifies_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut w = store.ingest().unwrap();
        w.write_all(b"abc").unwrap();
        let err = w.commit(Some(&Digest::of(b"xyz")), None).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        let mut w = store.ingest().unwrap();
        w.write_all(b"abc").unwrap();
        assert!(matches!(
            w.commit(None, Some(4)),
            Err(StoreError::SizeMismatch { .. })
        ));
        assert_eq!(
            fs::read_dir(tmp.path().join("content-ingest"))
                .unwrap()
                .count(),
            0
        );
        assert!(!store.has_blob(&Digest::of(b"abc")));
    }

    #[test]
    fn temp_files_of_dead_writers_are_swept_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let ingest = tmp.path().join("content-ingest");
        // A writer of ours, alive, and one of a child that has exited.
        let mut live = store.ingest().unwrap();
        live.write_all(b"half").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(ingest.join(format!("{dead}-00000000000000aa")), b"half").unwrap();
        fs::write(ingest.join("not-a-pid"), b"").unwrap();
        Store::open(tmp.path()).unwrap();
        let mut left: Vec<String> = fs::read_dir(&ingest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().any(|n| n == "not-a-pid"));
        assert!(left
            .iter()
            .any(|n| n.starts_with(&format!("{}-", std::process::id()))));
    }
}
