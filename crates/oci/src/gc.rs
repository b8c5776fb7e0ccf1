//! Garbage collection of the content store: `image prune`.
//!
//! Mark: every blob reachable from a name in `index.json` (index → manifests → config and
//! layers). Sweep: every other blob, and leftover temp files of interrupted writes. Runs under the
//! exclusive GC lock, so no pull, load or import is between writing blobs and naming them.

use std::collections::HashSet;
use std::fs;

use crate::digest::Digest;
use crate::spec::ManifestDoc;
use crate::store::{Store, StoreError};

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Bytes freed (blobs and temp files).
    pub bytes_freed: u64,
    /// Temp files of interrupted writes deleted.
    pub temp_files_removed: usize,
}

impl Store {
    /// Deletes every blob no name reaches, and stale temp files.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        self.prune_keeping(Vec::new)
    }

    /// [`Store::prune`], also keeping the blobs `keep` names (and what they reach): roots
    /// outside the index, such as the build cache's layers. `keep` is read under the
    /// exclusive lock, so no writer adds a root between it and the sweep.
    pub fn prune_keeping(
        &self,
        keep: impl FnOnce() -> Vec<Digest>,
    ) -> Result<PruneReport, StoreError> {
        let _gc = self.lock_gc(true)?;
        let mut live: HashSet<Digest> = HashSet::new();
        let mut todo: Vec<Digest> = self
            .list()?
            .into_iter()
            .map(|e| e.descriptor.digest)
            .collect();
        todo.extend(keep());
        while let Some(d) = todo.pop() {
            if !live.insert(d.clone()) || !self.has_blob(&d) {
                continue;
            }
            // Layers are not manifests; only parse what is small enough to be one.
            if self.blob_size(&d).unwrap_or(u64::MAX) > crate::store::MAX_DOCUMENT_SIZE {
                continue;
            }
            let Ok(bytes) = self.read_blob(&d) else {
                continue;
            };
            match ManifestDoc::parse(&bytes, None) {
                Ok((ManifestDoc::Index(index), _)) => {
                    todo.extend(index.manifests.into_iter().map(|m| m.digest))
                }
                Ok((ManifestDoc::Manifest(m), _)) => {
                    todo.push(m.config.digest);
                    todo.extend(m.layers.into_iter().map(|l| l.digest));
                }
                Err(_) => {}
            }
        }
        let mut report = PruneReport::default();
        let blobs = self.layout_dir().join("blobs/sha256");
        let read = fs::read_dir(&blobs).map_err(|source| StoreError::ReadIndex {
            path: blobs.clone(),
            source,
        })?;
        for entry in read.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let keep = Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| live.contains(&d));
            if !keep {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(entry.path()).is_ok() {
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
            }
        }
        let ingest = self.temp_path();
        if let Some(dir) = ingest.parent() {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(entry.path()).is_ok() {
                    report.temp_files_removed += 1;
                    report.bytes_freed += size;
                }
            }
        }
        Ok(report)
    }
}
