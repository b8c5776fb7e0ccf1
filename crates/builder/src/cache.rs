//! The build cache: `<root>/build-cache/<key>.json`, one record per step that made (or could
//! have made) a layer, pointing at the layer blob in the content store.
//!
//! A key is a SHA-256 chain: the base (image manifest digest, `scratch`, or a stage's own key),
//! then for each step its instruction as expanded and what else decides its result (the
//! RUN's environment, the digests of the files COPY/ADD read). Config-only steps extend the
//! chain without a record. The records are roots of the content store's garbage collection
//! ([`BuildCache::layer_digests`]), so `image prune` keeps cached layers until
//! `build prune` drops the records.

use std::fs;
use std::path::{Path, PathBuf};

use oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

/// The cache directory under a state root.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("build-cache")
}

/// The next link of a key chain: `parent` and the parts, separated so that no two
/// different part lists hash alike.
pub fn chain(parent: &Digest, parts: &[&str]) -> Digest {
    let mut h = oci::digest::Hasher::new();
    h.update(parent.as_str().as_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finish().0
}

/// The first link of a chain: what a stage starts from.
pub fn root_key(base: &str) -> Digest {
    Digest::of(format!("container-build-v1\0{base}").as_bytes())
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedStep {
    /// The layer blob (gzip) as the manifest lists it; `None`: the step changed no file.
    pub layer: Option<Descriptor>,
    /// The uncompressed digest of the layer.
    pub diff_id: Option<Digest>,
    /// When the step ran (its history entry's time).
    pub created: String,
}

/// The build cache of a state root.
#[derive(Debug, Clone)]
pub struct BuildCache {
    dir: PathBuf,
}

/// A cache record could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("build cache {path}")]
pub struct CacheError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl BuildCache {
    /// The cache of state root `root` (created on first write).
    pub fn new(root: &Path) -> BuildCache {
        BuildCache {
            dir: cache_dir(root),
        }
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The record of `key`, if any and if its layer is still in `store`.
    pub fn get(&self, key: &Digest, store: &oci::Store) -> Option<CachedStep> {
        let bytes = fs::read(self.path(key)).ok()?;
        let step: CachedStep = serde_json::from_slice(&bytes).ok()?;
        match &step.layer {
            Some(l) if !store.has_blob(&l.digest) => None,
            _ => Some(step),
        }
    }

    /// Records `step` under `key` (atomically: a reader sees the old record or the new).
    pub fn put(&self, key: &Digest, step: &CachedStep) -> Result<(), CacheError> {
        let path = self.path(key);
        let err = |source| CacheError {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let bytes = serde_json::to_vec(step).map_err(|e| err(std::io::Error::other(e)))?;
        atomic_file::write_atomic(&path, &bytes).map_err(err)
    }

    /// Every layer blob the records point at: roots for the store's garbage collection.
    pub fn layer_digests(&self) -> Vec<Digest> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<CachedStep>(&b).ok())
            .filter_map(|s| s.layer.map(|l| l.digest))
            .collect()
    }

    /// Drops every record; returns how many there were. The layers go with the next
    /// `image prune` unless an image uses them.
    pub fn prune(&self) -> Result<usize, CacheError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(CacheError {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut n = 0;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                fs::remove_file(&p).map_err(|source| CacheError {
                    path: p.clone(),
                    source,
                })?;
                n += 1;
            } else {
                // Temp files of interrupted writes.
                let _ = fs::remove_file(&p);
            }
        }
        Ok(n)
    }
}

impl BuildCache {
    /// Removes the cache mounts (`RUN --mount=type=cache` disks) no build holds; returns
    /// how many went.
    pub fn prune_mounts(&self) -> Result<usize, CacheError> {
        let dir = self.dir.join("mounts");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "ext4") {
                continue;
            }
            // A build using it holds its lock: leave it.
            let lock = p.with_extension("lock");
            let Ok(_held) = runtime::state::Lock::try_exclusive(&lock) else {
                continue;
            };
            fs::remove_file(&p).map_err(|source| CacheError {
                path: p.clone(),
                source,
            })?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_differ_by_every_part() {
        let r = root_key("scratch");
        let a = chain(&r, &["RUN a", "b"]);
        assert_ne!(a, chain(&r, &["RUN ab"]));
        assert_ne!(a, chain(&r, &["RUN a", "b", ""]));
        assert_eq!(a, chain(&r, &["RUN a", "b"]));
        assert_ne!(a, chain(&root_key("busybox"), &["RUN a", "b"]));
    }

    #[test]
    fn records_round_trip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = oci::Store::open(dir.path()).unwrap();
        let cache = BuildCache::new(dir.path());
        let blob = store.write_blob(b"layer").unwrap();
        let step = CachedStep {
            layer: Some(Descriptor::new(
                oci::media_type::OCI_LAYER_GZIP,
                blob.clone(),
                5,
            )),
            diff_id: Some(Digest::of(b"tar")),
            created: "2026-01-01T00:00:00Z".into(),
        };
        let key = root_key("k");
        assert_eq!(cache.get(&key, &store), None);
        cache.put(&key, &step).unwrap();
        assert_eq!(cache.get(&key, &store), Some(step));
        assert_eq!(cache.layer_digests(), [blob]);
        assert_eq!(cache.prune().unwrap(), 1);
        assert_eq!(cache.get(&key, &store), None);
    }
}
