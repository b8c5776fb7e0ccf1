//! Images: list, inspect, pull (`POST /images/create`, with docker's progress JSON lines),
//! tag and delete, over the content store (`oci::Store`, an OCI layout under the runtime's
//! state root).
//!
//! An image's `Id` is its config digest, as docker's; the names are the store's references,
//! shown in docker's familiar form (`busybox:latest` for `docker.io/library/busybox:latest`).
//! Deleting a name untags it only: its content stays until `container image prune`, so
//! containers made from it keep their rootfs (which is cached apart anyway).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::StatusCode;
use oci::{Reference, Store};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::Engine;

/// docker's short form of a reference: without `docker.io/` and `library/`.
pub fn familiar(r: &Reference) -> String {
    let s = r.to_string();
    if let Some(rest) = s.strip_prefix("docker.io/library/") {
        return rest.to_string();
    }
    s.strip_prefix("docker.io/")
        .map_or(s.clone(), str::to_string)
}

pub(crate) fn open_store(engine: &Engine) -> Result<Store, ApiError> {
    Ok(Store::open(engine.runtime().root())?)
}

/// One image of the store with the names that point at it.
pub(crate) struct Found {
    pub(crate) names: Vec<Reference>,
    pub(crate) image: oci::Image,
}

impl Found {
    pub(crate) fn id(&self) -> String {
        self.image.manifest.config.digest.to_string()
    }

    pub(crate) fn repo_tags(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|r| r.tag().is_some())
            .map(familiar)
            .collect()
    }

    fn repo_digests(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .names
            .iter()
            .map(|r| {
                let bare = Reference::parse(&format!("{}/{}", r.registry(), r.repository()))
                    .map(|b| familiar(&b))
                    .unwrap_or_default();
                format!("{bare}@{}", self.image.target.digest)
            })
            .collect();
        v.dedup();
        v
    }

    fn created(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(self.image.config.created.as_deref()?).ok()
    }
}

/// Every image of the store, names grouped by image id, in the store's order.
fn all(store: &Store) -> Result<Vec<Found>, ApiError> {
    let mut out: Vec<Found> = Vec::new();
    for e in store.list()? {
        // A multi-platform name pulled for another platform has no image here.
        let Ok(image) = store.image(&e.reference) else {
            continue;
        };
        let id = image.manifest.config.digest.clone();
        match out
            .iter_mut()
            .find(|f| f.image.manifest.config.digest == id)
        {
            Some(f) => f.names.push(e.reference),
            None => out.push(Found {
                names: vec![e.reference],
                image,
            }),
        }
    }
    Ok(out)
}

/// The image `name` means: a reference, or an id (`sha256:…` or a prefix of its hex, at
/// least as docker's short ids).
pub(crate) fn find(store: &Store, name: &str) -> Result<Found, ApiError> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let looks_like_id = hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if looks_like_id {
        let matches: Vec<Found> = all(store)?
            .into_iter()
            .filter(|f| f.image.manifest.config.digest.hex().starts_with(hex))
            .collect();
        if matches.len() > 1 {
            return Err(ApiError::bad_request(format!(
                "image id prefix {name} is ambiguous"
            )));
        }
        if let Some(f) = matches.into_iter().next() {
            return Ok(f);
        }
    }
    let reference = Reference::parse(name).map_err(|_| ApiError::no_such_image(name))?;
    let image = match store.image(&reference) {
        Ok(i) => i,
        Err(oci::StoreError::NotFound(_)) => return Err(ApiError::no_such_image(name)),
        Err(e) => return Err(e.into()),
    };
    let id = image.manifest.config.digest.clone();
    let names = all(store)?
        .into_iter()
        .find(|f| f.image.manifest.config.digest == id)
        .map_or_else(|| vec![reference], |f| f.names);
    Ok(Found { names, image })
}

/// `GET /images/json`.
pub fn list(engine: &Engine, _req: &Req) -> Answer {
    let store = open_store(engine)?;
    let rows: Vec<Value> = all(&store)?
        .iter()
        .map(|f| {
            let size = f.image.size();
            json!({
                "Id": f.id(),
                "ParentId": "",
                "RepoTags": f.repo_tags(),
                "RepoDigests": f.repo_digests(),
                "Created": f.created().map_or(0, |t| t.timestamp()),
                "Size": size,
                "VirtualSize": size,
                "SharedSize": -1,
                "Labels": f.image.config.config.labels,
                "Containers": -1,
            })
        })
        .collect();
    Ok(http::json(StatusCode::OK, &rows))
}

/// `GET /images/{name}/json`.
pub fn inspect(engine: &Engine, name: &str) -> Answer {
    let store = open_store(engine)?;
    let f = find(&store, name)?;
    let c = &f.image.config;
    let size = f.image.size();
    let ports: BTreeMap<&String, Value> = c
        .config
        .exposed_ports
        .keys()
        .map(|k| (k, json!({})))
        .collect();
    let doc = json!({
        "Id": f.id(),
        "RepoTags": f.repo_tags(),
        "RepoDigests": f.repo_digests(),
        "Parent": "",
        "Comment": "",
        "Created": c.created.clone().unwrap_or_default(),
        "Container": "",
        "DockerVersion": "",
        "Author": c.author.clone().unwrap_or_default(),
        "Config": {
            "Hostname": "",
            "Domainname": "",
            "User": c.config.user.clone().unwrap_or_default(),
            "ExposedPorts": ports,
            "Env": c.config.env,
            "Cmd": c.config.cmd,
            "Entrypoint": c.config.entrypoint,
            "WorkingDir": c.config.working_dir.clone().unwrap_or_default(),
            "Labels": c.config.labels,
            "Volumes": c.config.volumes,
            "StopSignal": c.config.stop_signal,
            "OnBuild": c.config.on_build,
        },
        "Architecture": c.architecture,
        "Os": c.os,
        "Variant": c.variant,
        "Size": size,
        "VirtualSize": size,
        "GraphDriver": {"Name": "ext4-qcow2", "Data": {}},
        "RootFS": {
            "Type": "layers",
            "Layers": c.rootfs.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    });
    Ok(http::json(StatusCode::OK, &doc))
}

/// `NAME` with `tag` (a tag or a digest) as docker's pull and tag endpoints combine them.
pub(crate) fn with_tag(name: &str, tag: Option<&str>) -> Result<Reference, ApiError> {
    let full = match tag.filter(|t| !t.is_empty()) {
        Some(t) if t.contains(':') => format!("{name}@{t}"),
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    Reference::parse(&full).map_err(|e| ApiError::bad_request(line(&e)))
}

/// `POST /images/create?fromImage=&tag=`: a pull, its progress streamed as docker's JSON
/// lines. Once the stream has begun, a failure is its last line (`error`, `errorDetail`),
/// as dockerd sends it. A client that goes away cancels the pull (its partial downloads are
/// dropped, nothing is named).
pub fn create(engine: &Engine, req: &Req) -> Answer {
    if req.q("fromSrc").is_some() {
        return Err(ApiError::not_implemented(
            "POST",
            "/images/create?fromSrc (import)",
        ));
    }
    let from = req
        .q("fromImage")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage or fromSrc is required"))?;
    let reference = with_tag(from, req.q("tag"))?;
    let store = open_store(engine)?;
    let root = engine.runtime().root().to_path_buf();
    let (response, tx) = http::channel(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let progress = LayerProgress::new(tx.clone(), &PULL_WORDS);
        let shown = familiar(&reference);
        let what = reference
            .digest()
            .map(ToString::to_string)
            .or_else(|| reference.tag().map(str::to_string))
            .unwrap_or_default();
        let _ = tx
            .send(line_of(
                &json!({"status": format!("Pulling from {}", reference.repository()), "id": what}),
            ))
            .await;
        let opts = oci::PullOptions {
            progress: Some(progress.clone()),
            ..Default::default()
        };
        let pulled = tokio::select! {
            r = oci::pull(&store, &reference, &opts) => r,
            // The client hung up: dropping the pull cancels its downloads.
            () = tx.closed() => return,
        };
        let lines = match pulled {
            Ok(image) => {
                let name = reference.to_string();
                runtime::events::image_event(&root, "pull", &name, &name);
                let status = if progress.transferred.load(Ordering::Relaxed) {
                    format!("Status: Downloaded newer image for {shown}")
                } else {
                    format!("Status: Image is up to date for {shown}")
                };
                vec![
                    json!({"status": format!("Digest: {}", image.target.digest)}),
                    json!({ "status": status }),
                ]
            }
            Err(e) => {
                let message = format!("cannot pull {shown}: {}", line(&e));
                vec![json!({"errorDetail": {"message": message}, "error": message})]
            }
        };
        for l in lines {
            let _ = tx.send(line_of(&l)).await;
        }
    });
    Ok(response)
}

/// One JSON line of a progress stream.
pub(crate) fn line_of(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push_str("\r\n");
    Bytes::from(s)
}

/// What docker's progress lines say about a layer at each stage of a transfer.
pub(crate) struct Words {
    start: &'static str,
    moving: &'static str,
    done: &'static str,
    skipped: &'static str,
}

/// A pull's words.
const PULL_WORDS: Words = Words {
    start: "Pulling fs layer",
    moving: "Downloading",
    done: "Pull complete",
    skipped: "Already exists",
};

/// A push's words.
pub(crate) const PUSH_WORDS: Words = Words {
    start: "Preparing",
    moving: "Pushing",
    done: "Pushed",
    skipped: "Layer already exists",
};

/// Transfer progress as docker's per-layer lines (`Pulling fs layer`, `Downloading` with
/// `progressDetail`, `Pull complete` / `Already exists`, or a push's). Lines are dropped
/// rather than waited for when the client reads slowly: the next one says as much.
pub(crate) struct LayerProgress {
    tx: mpsc::Sender<Bytes>,
    words: &'static Words,
    /// Per blob: bytes so far, total, bytes when last reported.
    seen: Mutex<HashMap<String, (u64, u64, u64)>>,
    /// Some blob was transferred (else the image was up to date).
    pub(crate) transferred: AtomicBool,
}

impl LayerProgress {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>, words: &'static Words) -> Arc<LayerProgress> {
        Arc::new(LayerProgress {
            tx,
            words,
            seen: Mutex::new(HashMap::new()),
            transferred: AtomicBool::new(false),
        })
    }
}

/// Bytes between two `Downloading` lines of one blob.
const REPORT_EVERY: u64 = 512 * 1024;

impl oci::Progress for LayerProgress {
    fn start(&self, digest: &oci::Digest, size: u64) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(digest.to_string(), (0, size, 0));
        }
        let _ = self.tx.try_send(line_of(
            &json!({"status": self.words.start, "progressDetail": {}, "id": digest.short()}),
        ));
    }

    fn advance(&self, digest: &oci::Digest, bytes: u64) {
        let report = match self.seen.lock() {
            Ok(mut seen) => {
                let e = seen.entry(digest.to_string()).or_insert((0, 0, 0));
                e.0 += bytes;
                if e.0 - e.2 >= REPORT_EVERY || e.0 == e.1 {
                    e.2 = e.0;
                    Some((e.0, e.1))
                } else {
                    None
                }
            }
            Err(_) => None,
        };
        if let Some((current, total)) = report {
            let _ = self.tx.try_send(line_of(&json!({
                "status": self.words.moving,
                "progressDetail": {"current": current, "total": total},
                "id": digest.short(),
            })));
        }
    }

    fn finish(&self, digest: &oci::Digest, outcome: oci::BlobOutcome) {
        let status = match outcome {
            oci::BlobOutcome::Transferred => {
                self.transferred.store(true, Ordering::Relaxed);
                self.words.done
            }
            oci::BlobOutcome::Skipped => self.words.skipped,
        };
        let _ = self.tx.try_send(line_of(
            &json!({"status": status, "progressDetail": {}, "id": digest.short()}),
        ));
    }
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub fn tag(engine: &Engine, name: &str, req: &Req) -> Answer {
    let repo = req
        .q("repo")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("repo is required"))?;
    let target = with_tag(
        repo,
        Some(req.q("tag").unwrap_or("latest")).filter(|t| !t.is_empty()),
    )?;
    if target.digest().is_some() {
        return Err(ApiError::bad_request(
            "refusing to create a tag with a digest reference",
        ));
    }
    let store = open_store(engine)?;
    let found = find(&store, name)?;
    store.set_ref(&target, &found.image.target)?;
    let id = found.image.manifest.config.digest.to_string();
    runtime::events::image_event(engine.runtime().root(), "tag", &id, &target.to_string());
    Ok(http::empty(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=`: untags `name`, or every name of an image given by id
/// (several only with `force`, as docker).
pub fn delete(engine: &Engine, name: &str, req: &Req) -> Answer {
    let store = open_store(engine)?;
    let found = find(&store, name)?;
    let by_name = Reference::parse(name)
        .ok()
        .filter(|r| found.names.contains(r));
    let names = match by_name {
        Some(r) => vec![r],
        None if found.names.len() > 1 && !req.flag("force") => {
            return Err(ApiError::conflict(format!(
                "conflict: unable to delete {name} (must be forced) - image is referenced in \
                 multiple repositories"
            )))
        }
        None => found.names.clone(),
    };
    let mut out = Vec::new();
    for r in names {
        store.remove_ref(&r)?;
        let id = found.image.manifest.config.digest.to_string();
        runtime::events::image_event(engine.runtime().root(), "untag", &id, &r.to_string());
        out.push(json!({"Untagged": familiar(&r)}));
    }
    Ok(http::json(StatusCode::OK, &out))
}

/// `GET /images/{name}/history`: the image config's history, newest first, each step with
/// the size of the layer it made (`container image history`'s).
pub fn history(engine: &Engine, name: &str) -> Answer {
    let store = open_store(engine)?;
    let f = find(&store, name)?;
    let mut items = runtime::image_history::history(&store, &f.image)
        .map_err(|e| ApiError::internal(line(&e)))?;
    // docker lists the image's names on its newest step, in their familiar form.
    if let Some(newest) = items.first_mut() {
        newest.tags = f.repo_tags();
    }
    Ok(http::json(StatusCode::OK, &items))
}

/// `POST /images/prune?filters=`: without filters (or `dangling=true`), what no name
/// reaches: the store's blob GC (an image that loses its last name is no longer listed, so
/// there are no dangling images to list, only their bytes to reclaim). With
/// `dangling=false`, every image no container was made from is untagged first, then
/// collected. The build cache's layers are kept, as `container image prune` keeps them.
pub async fn prune(engine: &Engine, req: &Req) -> Answer {
    let mut dangling_only = true;
    if let Some(json) = req.q("filters").filter(|f| !f.is_empty()) {
        for (k, v) in runtime::filter::json_pairs(json)? {
            match (k.as_str(), v.to_ascii_lowercase().as_str()) {
                ("dangling", "true" | "1") => dangling_only = true,
                ("dangling", "false" | "0") => dangling_only = false,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter '{k}={v}': images are pruned by dangling= only"
                    )))
                }
            }
        }
    }
    let rt = engine.runtime().clone();
    let used: Vec<String> = rt
        .containers()?
        .iter()
        .map(|c| c.record().image_digest.clone())
        .collect();
    let root = rt.root().to_path_buf();
    let (deleted, report) = tokio::task::spawn_blocking(move || {
        let store = Store::open(&root)?;
        let mut deleted = Vec::new();
        if !dangling_only {
            for f in all(&store)? {
                let digests = [
                    f.image.target.digest.to_string(),
                    f.image.manifest_digest().to_string(),
                ];
                if used.iter().any(|u| digests.contains(u)) {
                    continue;
                }
                for r in &f.names {
                    store.remove_ref(r)?;
                    deleted.push(json!({"Untagged": familiar(r)}));
                }
                deleted.push(json!({"Deleted": f.id()}));
            }
        }
        let cache = builder::cache::BuildCache::new(&root);
        let report = store.prune_keeping(|| cache.layer_digests())?;
        Ok::<_, ApiError>((deleted, report))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "ImagesDeleted": if deleted.is_empty() { Value::Null } else { Value::from(deleted) },
            "SpaceReclaimed": report.bytes_freed,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_in_dockers_familiar_form() {
        let f = |s: &str| familiar(&Reference::parse(s).unwrap());
        assert_eq!(f("busybox"), "busybox:latest");
        assert_eq!(f("user/app:1"), "user/app:1");
        assert_eq!(f("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(
            with_tag("busybox", Some("1")).unwrap().to_string(),
            "docker.io/library/busybox:1"
        );
        assert!(with_tag("busybox", Some("sha256:00")).is_err());
    }
}
