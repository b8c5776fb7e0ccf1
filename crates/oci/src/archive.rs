//! Image archives: `save` (OCI-layout tar), `load` (OCI-layout or docker-archive tar), and
//! `import` (a root filesystem tarball becomes a one-layer image).
//!
//! `save` writes the layout format `skopeo copy … oci-archive:FILE` reads. `load` reads tar
//! entries in one pass whatever their order: every blob-like file is streamed straight into the
//! store (verified against its `blobs/sha256/<hex>` name where it has one), small JSON documents
//! are kept in memory, and the names are added only once everything they reach is present.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{Digest, Hasher};
use crate::reference::{Reference, ReferenceError};
use crate::spec::{
    media_type, ContainerConfig, Descriptor, ManifestDoc, Platform, ANNOTATION_REF_NAME,
};
use crate::store::{Image, Store, StoreError, MAX_DOCUMENT_SIZE};

/// containerd's (and docker's) annotation for the full image name in an OCI layout.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The content store refused an operation.
    #[error("content store")]
    Store(#[from] StoreError),
    /// The archive file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// The OS or tar error.
        #[source]
        source: io::Error,
    },
    /// The archive could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The archive is neither an OCI layout nor a docker archive.
    #[error("{path} is not an image archive (no index.json or manifest.json)")]
    UnknownFormat {
        /// The archive.
        path: PathBuf,
    },
    /// A document inside the archive is malformed.
    #[error("{path}: malformed {what}")]
    BadDocument {
        /// The archive.
        path: PathBuf,
        /// Which document.
        what: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// An image in the archive has no usable name.
    #[error("{path}: image {digest} has no name (annotation {ANNOTATION_REF_NAME} or RepoTags)")]
    Unnamed {
        /// The archive.
        path: PathBuf,
        /// The image.
        digest: String,
    },
    /// An image name in the archive does not parse.
    #[error("{path}: bad image name")]
    BadName {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReferenceError,
    },
    /// A file the archive's manifest names is not in it.
    #[error("{path}: {member} is referenced but missing")]
    MissingMember {
        /// The archive.
        path: PathBuf,
        /// The missing entry or blob.
        member: String,
    },
    /// A member's name (or link target) is absolute or climbs out with `..`: no image tool
    /// writes such archives, so it is refused rather than quietly confined.
    #[error("{path}: member {member:?} {why}: refusing a hostile archive")]
    Hostile {
        /// The archive.
        path: PathBuf,
        /// The member's name as written.
        member: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Content read from the archive could not be stored (a full disk): told apart from a
    /// failed read, which names the archive alone.
    #[error("cannot store {what} in the content store")]
    Ingest {
        /// The member and its archive, or the file being imported.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A tar member does not hash to the digest its name claims.
    #[error("{path}: member {member} is corrupt")]
    CorruptMember {
        /// The archive.
        path: PathBuf,
        /// The member.
        member: String,
        /// The mismatch.
        #[source]
        source: Box<StoreError>,
    },
    /// `import` was given something that is not a tar archive.
    #[error("{path} is not a tar archive")]
    NotTar {
        /// The file.
        path: PathBuf,
        /// The tar reader's complaint.
        #[source]
        source: io::Error,
    },
    /// `import` was given an empty tar archive.
    #[error("{path} is an empty tar archive")]
    EmptyTar {
        /// The file.
        path: PathBuf,
    },
}

/// Writes the named images as an OCI-layout tar to `output` (atomically: temp file + rename).
pub fn save(store: &Store, references: &[Reference], output: &Path) -> Result<(), ArchiveError> {
    let mut named = Vec::new();
    for r in references {
        named.push((store.resolve(r)?, Some(r.clone())));
    }
    save_descriptors(store, &named, output)
}

/// [`save`] of one platform's manifest of each image (`image save --platform`): a
/// multi-platform name is saved as that platform's manifest alone, under the same name. An
/// image without content for `platform` is an error naming what it has.
pub fn save_platform(
    store: &Store,
    references: &[Reference],
    platform: &Platform,
    output: &Path,
) -> Result<(), ArchiveError> {
    let mut named = Vec::new();
    for r in references {
        let image = store.image_for(r, platform)?;
        if !platform.matches(&image.platform) {
            return Err(StoreError::NoPlatform {
                reference: r.to_string(),
                wanted: platform.to_string(),
                available: image.platform.to_string(),
            }
            .into());
        }
        named.push((image.manifest_descriptor, Some(r.clone())));
    }
    save_descriptors(store, &named, output)
}

/// [`save`] of manifests (or indexes) given by descriptor, each named in the archive's index
/// when a name is given: an image that has no name in the store (a build's `-o type=oci`).
pub fn save_descriptors(
    store: &Store,
    images: &[(Descriptor, Option<Reference>)],
    output: &Path,
) -> Result<(), ArchiveError> {
    let mut entries = Vec::new();
    let mut blobs: Vec<Digest> = Vec::new();
    let mut seen = HashSet::new();
    for (target, name) in images {
        collect_blobs(store, &target.digest, &mut blobs, &mut seen, true)?;
        let mut d = target.clone();
        d.annotations = match name {
            Some(r) => BTreeMap::from([
                (ANNOTATION_REF_NAME.to_string(), r.to_string()),
                (ANNOTATION_CONTAINERD_NAME.to_string(), r.to_string()),
            ]),
            None => BTreeMap::new(),
        };
        entries.push(d);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
    });
    let werr = |source| ArchiveError::Write {
        path: output.to_path_buf(),
        source,
    };
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        output
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("image.tar"),
        std::process::id()
    ));
    let result = (|| -> io::Result<()> {
        let file = File::create(&tmp)?;
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file));
        tar.mode(tar::HeaderMode::Deterministic);
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(
            &mut tar,
            "index.json",
            &serde_json::to_vec(&index).map_err(io::Error::other)?,
        )?;
        append_dir(&mut tar, "blobs/")?;
        append_dir(&mut tar, "blobs/sha256/")?;
        for d in &blobs {
            let mut f = store.open_blob(d).map_err(io::Error::other)?;
            let size = f.metadata()?.len();
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), &mut f)?;
        }
        let mut out = tar.into_inner()?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, output)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(werr(e));
    }
    Ok(())
}

/// Adds `digest` and everything it reaches to `out` (skipping index children that are absent:
/// a multi-arch image pulled for one platform is saved with what it has).
fn collect_blobs(
    store: &Store,
    digest: &Digest,
    out: &mut Vec<Digest>,
    seen: &mut HashSet<Digest>,
    required: bool,
) -> Result<(), StoreError> {
    if !seen.insert(digest.clone()) {
        return Ok(());
    }
    if !store.has_blob(digest) {
        if required {
            return Err(StoreError::MissingBlob(digest.clone()));
        }
        return Ok(());
    }
    out.push(digest.clone());
    match store.read_manifest(digest)?.0 {
        ManifestDoc::Index(index) => {
            for m in &index.manifests {
                collect_blobs(store, &m.digest, out, seen, false)?;
            }
        }
        ManifestDoc::Manifest(m) => {
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                if seen.insert(d.digest.clone()) {
                    if !store.has_blob(&d.digest) {
                        return Err(StoreError::MissingBlob(d.digest.clone()));
                    }
                    out.push(d.digest.clone());
                }
            }
            // An image whose config does not parse cannot be run or inspected: it is not
            // whole (a load gives it no name, a save refuses it).
            store.read_config(&m.config.digest)?;
        }
    }
    Ok(())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    tar.append_data(&mut h, path, data)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mtime(0);
    tar.append_data(&mut h, path, io::empty())
}

/// Opens a possibly gzip-compressed file as a plain byte stream.
fn open_maybe_gzip(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    file.rewind()?;
    let reader = BufReader::with_capacity(1 << 20, file);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ArchiveIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Loads an OCI-layout tar or a docker-archive tar; returns the names added.
pub fn load(store: &Store, input: &Path) -> Result<Vec<Reference>, ArchiveError> {
    load_with(store, input, false).map(|l| l.references)
}

/// What [`load_with`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The names added.
    pub references: Vec<Reference>,
    /// Members skipped as hostile (absolute, climbing out with `..`), with `force` only.
    pub rejected: Vec<String>,
}

/// [`load`]; with `force` (Apple's `image load --force`: "load images even if the archive
/// contains invalid files") a hostile member is skipped and listed instead of refusing the
/// archive. The images are still loaded only when everything they reach is present.
pub fn load_with(store: &Store, input: &Path, force: bool) -> Result<Loaded, ArchiveError> {
    let _gc = store.lock_gc(false)?;
    let rerr = |source| ArchiveError::Read {
        path: input.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(open_maybe_gzip(input).map_err(rerr)?);
    // Small JSON documents by member path; blobs by member path → (digest, size).
    let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut blobs: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    // Blobs this load wrote: those the store did not have before are removed again if the
    // archive turns out bad.
    let before: HashSet<String> = fs::read_dir(store.layout_dir().join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut added: Vec<Digest> = Vec::new();
    let mut rejected = force.then(Vec::new);
    let read = read_members(
        store,
        input,
        &mut archive,
        &mut docs,
        &mut blobs,
        &mut links,
        &mut added,
        &mut rejected,
    );
    let named = read.and_then(|()| finish_load(store, input, docs, blobs, links, &mut added));
    let named = match named {
        Ok(named) => named,
        Err(e) => {
            // A refused archive (unreadable, or no whole image in it) leaves the store as
            // it was: only what was not in the store before this load goes.
            for d in added.iter().filter(|d| !before.contains(d.hex())) {
                let _ = fs::remove_file(store.blob_path(d));
            }
            return Err(e);
        }
    };
    // Names last, once every image is whole: a failure here leaves the names already set
    // whole, and blobs nothing names to `image prune`.
    let mut references = Vec::new();
    for (r, d) in named {
        store.set_ref(&r, &d)?;
        references.push(r);
    }
    Ok(Loaded {
        references,
        rejected: rejected.unwrap_or_default(),
    })
}

/// Reads every member of an image archive: documents kept, blobs ingested into `store`
/// (those it did not have listed in `added`), links noted; a hostile member fails the read,
/// or is skipped and listed in `rejected` when that is `Some`.
#[allow(clippy::too_many_arguments)]
fn read_members<R: Read>(
    store: &Store,
    input: &Path,
    archive: &mut tar::Archive<R>,
    docs: &mut HashMap<String, Vec<u8>>,
    blobs: &mut HashMap<String, (Digest, u64)>,
    links: &mut HashMap<String, String>,
    added: &mut Vec<Digest>,
    rejected: &mut Option<Vec<String>>,
) -> Result<(), ArchiveError> {
    let rerr = |source| ArchiveError::Read {
        path: input.to_path_buf(),
        source,
    };
    for entry in archive.entries().map_err(rerr)? {
        let mut entry = entry.map_err(rerr)?;
        match (check_member(input, &entry, false), rejected.as_mut()) {
            (Ok(()), _) => {}
            (Err(ArchiveError::Hostile { member, .. }), Some(list)) => {
                list.push(member);
                continue;
            }
            (Err(e), _) => return Err(e),
        }
        let path = clean_member(&entry.path().map_err(rerr)?.to_string_lossy());
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name().map_err(rerr)? {
                    let target = target.to_string_lossy().to_string();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let base = Path::new(&path).parent().unwrap_or(Path::new(""));
                        normalize(&base.join(&target))
                    } else {
                        clean_member(&target)
                    };
                    links.insert(path, resolved);
                }
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => continue,
        }
        let size = entry.size();
        let named_blob = path
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
        let is_doc = named_blob.is_none()
            && (path.ends_with(".json") || path == "oci-layout" || path == "repositories")
            && size <= MAX_DOCUMENT_SIZE;
        if is_doc {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(rerr)?;
            docs.insert(path, buf);
            continue;
        }
        if let Some(d) = &named_blob {
            if store.blob_size(d) == Some(size) {
                blobs.insert(path, (d.clone(), size));
                continue;
            }
        }
        let what = || format!("{path} of {}", input.display());
        let mut w = store.ingest()?;
        ingest_from(&mut entry, &mut w, rerr, what)?;
        let committed =
            w.commit(named_blob.as_ref(), Some(size))
                .map_err(|source| match source {
                    StoreError::Ingest(source) | StoreError::WriteFile { source, .. } => {
                        ArchiveError::Ingest {
                            what: what(),
                            source,
                        }
                    }
                    source => ArchiveError::CorruptMember {
                        path: input.to_path_buf(),
                        member: path.clone(),
                        source: Box::new(source),
                    },
                })?;
        added.push(committed.0.clone());
        blobs.insert(path, committed);
    }
    Ok(())
}

/// Copies `from` into a blob being written, a failed read becoming `rerr`'s error and a failed
/// write an [`ArchiveError::Ingest`] of `what` (io::copy would not tell a full disk from an
/// unreadable archive).
fn ingest_from(
    from: &mut impl Read,
    w: &mut crate::store::BlobWriter,
    rerr: impl Fn(io::Error) -> ArchiveError,
    what: impl Fn() -> String,
) -> Result<(), ArchiveError> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(rerr(e)),
        };
        w.write_all(&buf[..n])
            .map_err(|source| ArchiveError::Ingest {
                what: what(),
                source,
            })?;
    }
}

/// Names what an archive's index (or docker manifest) lists, once every blob is in.
fn finish_load(
    store: &Store,
    input: &Path,
    docs: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
    added: &mut Vec<Digest>,
) -> Result<Vec<(Reference, Descriptor)>, ArchiveError> {
    let resolve = |member: &str| -> Option<String> {
        let mut m = clean_member(member);
        for _ in 0..16 {
            match links.get(&m) {
                Some(t) => m = t.clone(),
                None => break,
            }
        }
        Some(m)
    };

    if let Some(index) = docs.get("index.json") {
        let index: ArchiveIndex =
            serde_json::from_slice(index).map_err(|source| ArchiveError::BadDocument {
                path: input.to_path_buf(),
                what: "index.json".into(),
                source,
            })?;
        let mut named = Vec::new();
        for d in &index.manifests {
            let name = d
                .annotations
                .get(ANNOTATION_CONTAINERD_NAME)
                .or_else(|| d.annotations.get(ANNOTATION_REF_NAME))
                .ok_or_else(|| ArchiveError::Unnamed {
                    path: input.to_path_buf(),
                    digest: d.digest.to_string(),
                })?;
            let r = Reference::parse(name).map_err(|source| ArchiveError::BadName {
                path: input.to_path_buf(),
                source,
            })?;
            // Everything the image reaches must be here before it gets a name.
            let mut all = Vec::new();
            collect_blobs(store, &d.digest, &mut all, &mut HashSet::new(), true).map_err(|e| {
                match e {
                    StoreError::MissingBlob(m) => ArchiveError::MissingMember {
                        path: input.to_path_buf(),
                        member: format!("blobs/sha256/{}", m.hex()),
                    },
                    e => ArchiveError::Store(e),
                }
            })?;
            let mut d = d.clone();
            d.annotations.clear();
            named.push((r, d));
        }
        return Ok(named);
    }

    let Some(manifest) = docs.get("manifest.json") else {
        return Err(ArchiveError::UnknownFormat {
            path: input.to_path_buf(),
        });
    };
    let entries: Vec<DockerArchiveEntry> =
        serde_json::from_slice(manifest).map_err(|source| ArchiveError::BadDocument {
            path: input.to_path_buf(),
            what: "manifest.json".into(),
            source,
        })?;
    let missing = |m: &str| ArchiveError::MissingMember {
        path: input.to_path_buf(),
        member: m.to_string(),
    };
    let mut named = Vec::new();
    for e in &entries {
        let config_member = resolve(&e.config).unwrap_or_default();
        let config_bytes = match (docs.get(&config_member), blobs.get(&config_member)) {
            (Some(b), _) => b.clone(),
            (None, Some((d, _))) => store.read_blob(d)?,
            _ => return Err(missing(&e.config)),
        };
        crate::store::parse_config(&config_bytes, &Digest::of(&config_bytes))?;
        let config_digest = write_new_blob(store, &config_bytes, added)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let member = resolve(l).unwrap_or_default();
            let (digest, size) = blobs.get(&member).cloned().ok_or_else(|| missing(l))?;
            let mut magic = [0u8; 2];
            let gz = store
                .open_blob(&digest)?
                .read(&mut magic)
                .map(|n| n == 2 && magic == [0x1f, 0x8b])
                .unwrap_or(false);
            let mt = if gz {
                media_type::OCI_LAYER_GZIP
            } else {
                media_type::OCI_LAYER_TAR
            };
            layers.push(Descriptor::new(mt, digest, size));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": Descriptor::new(media_type::OCI_CONFIG, config_digest, config_bytes.len() as u64),
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|source| ArchiveError::BadDocument {
            path: input.to_path_buf(),
            what: "generated manifest".into(),
            source,
        })?;
        let digest = write_new_blob(store, &bytes, added)?;
        let desc = Descriptor::new(media_type::OCI_MANIFEST, digest.clone(), bytes.len() as u64);
        let tags = e.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            return Err(ArchiveError::Unnamed {
                path: input.to_path_buf(),
                digest: digest.to_string(),
            });
        }
        for t in tags {
            let r = Reference::parse(&t).map_err(|source| ArchiveError::BadName {
                path: input.to_path_buf(),
                source,
            })?;
            named.push((r, desc.clone()));
        }
    }
    Ok(named)
}

/// [`Store::write_blob`], noting the digest in `added` (for removal if the load fails).
fn write_new_blob(
    store: &Store,
    bytes: &[u8],
    added: &mut Vec<Digest>,
) -> Result<Digest, ArchiveError> {
    let digest = store.write_blob(bytes)?;
    added.push(digest.clone());
    Ok(digest)
}

/// What makes a member name (or hard link target) hostile: an absolute path or a `..`.
fn hostile_name(p: &str) -> Option<&'static str> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Some("has an absolute path");
    }
    path.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
        .then_some("has a .. component")
}

/// What makes a symlink member hostile: an absolute target, or one that climbs above the
/// archive's root from the link's directory.
fn hostile_link(member: &str, target: &str) -> Option<&'static str> {
    if Path::new(target).is_absolute() {
        return Some("links to an absolute path");
    }
    let mut depth: i64 = Path::new(member)
        .parent()
        .map_or(0, |p| p.components().count() as i64);
    for c in Path::new(target).components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Some("links outside the archive");
        }
    }
    None
}

/// Refuses a hostile member: its name, and its link target for links. In a root
/// filesystem (`rootfs`: `import`) symlinks are the image's data, read inside the container,
/// so any target is fine; in an image archive they link members to each other.
fn check_member<R: Read>(
    input: &Path,
    entry: &tar::Entry<'_, R>,
    rootfs: bool,
) -> Result<(), ArchiveError> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let hostile = |why| ArchiveError::Hostile {
        path: input.to_path_buf(),
        member: raw.clone(),
        why,
    };
    if let Some(why) = hostile_name(&raw) {
        return Err(hostile(why));
    }
    if let Some(target) = entry.link_name_bytes() {
        let target = String::from_utf8_lossy(&target).into_owned();
        let why = match entry.header().entry_type() {
            tar::EntryType::Link => hostile_name(&target),
            tar::EntryType::Symlink if !rootfs => hostile_link(&raw, &target),
            _ => None,
        };
        if let Some(why) = why {
            return Err(hostile(why));
        }
    }
    Ok(())
}

fn clean_member(p: &str) -> String {
    normalize(Path::new(p))
}

fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().to_string()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// Counts bytes and hashes them as they are read.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Makes a one-layer image named `reference` from a root filesystem tarball (plain or gzip),
/// like `docker import`. The layer is stored as the file is; the config records the host
/// platform and the tar's uncompressed digest.
pub fn import(store: &Store, input: &Path, reference: &Reference) -> Result<Image, ArchiveError> {
    import_with(store, input, reference, &ContainerConfig::default(), None)
}

/// [`import`] with the image's process defaults (`import --change`) and a history comment
/// (`import --message`).
pub fn import_with(
    store: &Store,
    input: &Path,
    reference: &Reference,
    process: &ContainerConfig,
    message: Option<&str>,
) -> Result<Image, ArchiveError> {
    let _gc = store.lock_gc(false)?;
    let rerr = |source| ArchiveError::Read {
        path: input.to_path_buf(),
        source,
    };
    // Pass 1: is it a tar at all, and what is its uncompressed digest (the diff_id)?
    let mut reader = HashingReader {
        inner: open_maybe_gzip(input).map_err(rerr)?,
        hasher: Hasher::new(),
    };
    let mut count = 0usize;
    {
        let mut archive = tar::Archive::new(&mut reader);
        let not_tar = |source| ArchiveError::NotTar {
            path: input.to_path_buf(),
            source,
        };
        for entry in archive.entries().map_err(not_tar)? {
            check_member(input, &entry.map_err(not_tar)?, true)?;
            count += 1;
        }
    }
    if count == 0 {
        return Err(ArchiveError::EmptyTar {
            path: input.to_path_buf(),
        });
    }
    // The tar reader stops at the end-of-archive marker; the diff_id covers the padding after it.
    io::copy(&mut reader, &mut io::sink()).map_err(rerr)?;
    let (diff_id, _) = reader.hasher.finish();

    // Pass 2: the file itself becomes the layer blob.
    let mut file = File::open(input).map_err(rerr)?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map_err(rerr)? == 2 && magic == [0x1f, 0x8b];
    file.rewind().map_err(rerr)?;
    let mut w = store.ingest()?;
    ingest_from(&mut file, &mut w, rerr, || input.display().to_string())?;
    let (layer_digest, layer_size) = w.commit(None, None)?;

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let host = Platform::host();
    let mut history = serde_json::json!({
        "created": now,
        "created_by": format!("container image import {}", input.display()),
    });
    if let Some(m) = message {
        history["comment"] = m.into();
    }
    let config = serde_json::json!({
        "created": now,
        "architecture": host.architecture,
        "os": host.os,
        "config": process,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [history],
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|source| ArchiveError::BadDocument {
        path: input.to_path_buf(),
        what: "generated config".into(),
        source,
    })?;
    let config_digest = store.write_blob(&config_bytes)?;
    let layer_type = if gz {
        media_type::OCI_LAYER_GZIP
    } else {
        media_type::OCI_LAYER_TAR
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        "layers": [Descriptor::new(layer_type, layer_digest, layer_size)],
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|source| ArchiveError::BadDocument {
        path: input.to_path_buf(),
        what: "generated manifest".into(),
        source,
    })?;
    let digest = store.write_blob(&bytes)?;
    store.set_ref(
        reference,
        &Descriptor::new(media_type::OCI_MANIFEST, digest, bytes.len() as u64),
    )?;
    Ok(store.image(reference)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        Digest::of(data).hex().to_string()
    }

    fn tar_of(members: &[(String, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn blob_names(store: &Store) -> Vec<String> {
        fs::read_dir(store.layout_dir().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_refused_archive_leaves_no_blob_it_wrote_and_keeps_those_it_found() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("state")).unwrap();
        let kept = store.write_blob(b"there before").unwrap();
        let input = tmp.path().join("in.tar");
        // Blobs but no index: not an image archive.
        let blob: &[u8] = b"layer bytes";
        fs::write(
            &input,
            tar_of(&[
                (format!("blobs/sha256/{}", sha(blob)), blob),
                (format!("blobs/sha256/{}", kept.hex()), b"there before"),
            ]),
        )
        .unwrap();
        assert!(matches!(
            load(&store, &input),
            Err(ArchiveError::UnknownFormat { .. })
        ));
        assert_eq!(blob_names(&store), vec![kept.hex().to_string()]);

        // A docker archive whose config is there and whose layer is not: the config blob
        // the load stored goes again.
        let config: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": "config.json",
            "RepoTags": ["x:1"],
            "Layers": ["missing/layer.tar"],
        }]))
        .unwrap();
        fs::write(
            &input,
            tar_of(&[
                ("config.json".into(), config),
                ("manifest.json".into(), &manifest),
            ]),
        )
        .unwrap();
        assert!(matches!(
            load(&store, &input),
            Err(ArchiveError::MissingMember { .. })
        ));
        assert_eq!(blob_names(&store), vec![kept.hex().to_string()]);
        assert!(store.list().unwrap().is_empty());
    }
}
