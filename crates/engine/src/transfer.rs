//! Images in and out of the store whole: `docker save` (`GET /images/{name}/get`,
//! `GET /images/get?names=`), `docker load` (`POST /images/load`) and `docker push`
//! (`POST /images/{name}/push`), each what `container image save|load|push` does (`oci::save_descriptors`,
//! `oci::load`, `oci::push`).
//!
//! Saved archives are OCI image layouts as tars, which `load` (ours, or docker 25's) reads
//! back; `load` also takes docker's own archive format. Archives are spooled to a
//! temporary file under the state root first (the readers and the writer of `oci::archive`
//! are synchronous and want a file), and `oci::archive` refuses hostile ones (paths out of
//! the archive, members that do not hash to their names).

use std::path::Path;

use base64::Engine as _;
use hyper::StatusCode;
use oci::{Descriptor, Reference, Store};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::images::{self, familiar, line_of, LayerProgress, PUSH_WORDS};
use crate::Engine;

/// A temporary directory under the state root (same file system as the store: a large
/// archive does not fill `/tmp`), removed on drop.
fn scratch(root: &Path) -> Result<tempfile::TempDir, ApiError> {
    tempfile::Builder::new()
        .prefix(".engine-")
        .tempdir_in(root)
        .map_err(|e| ApiError::internal(format!("create a temporary directory: {e}")))
}

/// The names `name` stands for in a save: itself when it is one of the image's names, else
/// (an id) all of the image's names, as docker saves them.
fn names_of(store: &Store, name: &str) -> Result<Vec<(Descriptor, Option<Reference>)>, ApiError> {
    let found = images::find(store, name)?;
    let by_name = Reference::parse(name)
        .ok()
        .filter(|r| found.names.contains(r));
    let names = match by_name {
        Some(r) => vec![r],
        None => found.names,
    };
    names
        .into_iter()
        .map(|r| Ok((store.resolve(&r)?, Some(r))))
        .collect()
}

/// `GET /images/{name}/get` and `GET /images/get?names=…`: a tar of the images.
pub async fn save(engine: &Engine, names: Vec<String>) -> Answer {
    if names.is_empty() {
        return Err(ApiError::bad_request("names is required"));
    }
    let root = engine.runtime().root().to_path_buf();
    let store = images::open_store(engine)?;
    let mut images = Vec::new();
    for n in &names {
        for entry in names_of(&store, n)? {
            if !images.contains(&entry) {
                images.push(entry);
            }
        }
    }
    let dir = scratch(&root)?;
    let path = dir.path().join("images.tar");
    let file = tokio::task::spawn_blocking(move || {
        oci::archive::save_descriptors(&store, &images, &path)
            .map_err(|e| ApiError::internal(line(&e)))?;
        // Open, then let the directory go: the open file stays readable until streamed.
        std::fs::File::open(&path).map_err(|e| ApiError::internal(format!("read the archive: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    drop(dir);
    let (response, mut out) = http::writer(StatusCode::OK, "application/x-tar");
    tokio::spawn(async move {
        let mut file = tokio::fs::File::from_std(file);
        if tokio::io::copy(&mut file, &mut out).await.is_ok() {
            let _ = out.shutdown().await;
        }
    });
    Ok(response)
}

/// `POST /images/load?quiet=`: the body, an image archive, into the store; one
/// `Loaded image: NAME` line for each name it adds (the same whether quiet or not: there is
/// no progress bar to leave out).
pub async fn load(engine: &Engine, mut req: Req) -> Answer {
    let root = engine.runtime().root().to_path_buf();
    let dir = scratch(&root)?;
    let path = dir.path().join("load.tar");
    let mut body = req.body_reader();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::internal(format!("spool the archive: {e}")))?;
    tokio::io::copy(&mut body, &mut file)
        .await
        .map_err(|e| ApiError::bad_request(format!("read the archive: {e}")))?;
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("spool the archive: {e}")))?;
    drop(file);
    let store = images::open_store(engine)?;
    let loaded = tokio::task::spawn_blocking(move || oci::load(&store, &path))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    drop(dir);
    let names = loaded.map_err(|e| match &e {
        oci::archive::ArchiveError::Store(_) | oci::archive::ArchiveError::Write { .. } => {
            ApiError::internal(line(&e))
        }
        // The spool was just written: what cannot be read of it is a cut or not a tar.
        oci::archive::ArchiveError::Read { source, .. } => {
            ApiError::bad_request(format!("invalid image archive: {source}"))
        }
        // The archive's fault: malformed, hostile, incomplete.
        _ => ApiError::bad_request(line(&e)),
    })?;
    let mut body = Vec::new();
    for r in names {
        runtime::events::image_event(
            engine.runtime().root(),
            "load",
            &r.to_string(),
            &r.to_string(),
        );
        body.extend_from_slice(&line_of(
            &json!({"stream": format!("Loaded image: {}\n", familiar(&r))}),
        ));
    }
    let mut response = hyper::Response::new(http::full(body));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// docker's `X-Registry-Auth`: base64url of `{"username", "password", …}`; credentials
/// when it names a user (an empty `{}` means: look them up, as `container image push`).
fn registry_auth(req: &Req) -> Result<Option<oci::Credentials>, ApiError> {
    let Some(text) = req.header("x-registry-auth").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let trimmed = text.trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth: {e}")))?;
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Auth {
        username: String,
        password: String,
        identitytoken: String,
    }
    let auth: Auth = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth: {e}")))?;
    if auth.username.is_empty() {
        return Ok(None);
    }
    // An identity token stands in for the password (docker's `<token>` user).
    let password = if auth.password.is_empty() {
        auth.identitytoken
    } else {
        auth.password
    };
    Ok(Some(oci::Credentials {
        username: auth.username,
        password,
    }))
}

/// `POST /images/{name}/push?tag=`: the image to the registry its name says, progress as
/// docker's JSON lines, then `TAG: digest: D size: N` and the `aux` docker's CLI reads.
/// Without `tag`, every tag of the repository goes (`docker push --all-tags`).
pub async fn push(engine: &Engine, name: &str, req: &Req) -> Answer {
    let credentials = registry_auth(req)?;
    let store = images::open_store(engine)?;
    let root = engine.runtime().root().to_path_buf();
    let refs: Vec<Reference> = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => vec![images::with_tag(name, Some(t))?],
        None => {
            let repo = Reference::parse(name).map_err(|e| ApiError::bad_request(line(&e)))?;
            let refs: Vec<Reference> = store
                .list()?
                .into_iter()
                .map(|e| e.reference)
                .filter(|r| {
                    r.registry() == repo.registry()
                        && r.repository() == repo.repository()
                        && r.tag().is_some()
                })
                .collect();
            if refs.is_empty() {
                return Err(ApiError::no_such_image(name));
            }
            refs
        }
    };
    for r in &refs {
        match store.resolve(r) {
            Ok(_) => {}
            Err(oci::StoreError::NotFound(_)) => return Err(ApiError::no_such_image(&familiar(r))),
            Err(e) => return Err(e.into()),
        }
    }
    let (response, tx) = http::channel(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let repository = format!("{}/{}", refs[0].registry(), refs[0].repository());
        let shown = Reference::parse(&repository).map_or(repository.clone(), |r| {
            let f = familiar(&r);
            f.strip_suffix(":latest").map_or(f.clone(), str::to_string)
        });
        let _ = tx
            .send(line_of(
                &json!({"status": format!("The push refers to repository [{shown}]")}),
            ))
            .await;
        for r in refs {
            let opts = oci::PushOptions {
                credentials: credentials.clone(),
                progress: Some(LayerProgress::new(tx.clone(), &PUSH_WORDS)),
                ..Default::default()
            };
            let pushed = tokio::select! {
                p = oci::push(&store, &r, &opts) => p,
                // The client hung up: dropping the push cancels its uploads.
                () = tx.closed() => return,
            };
            let tag = r.tag().unwrap_or("latest").to_string();
            let lines = match pushed {
                Ok(digest) => {
                    runtime::events::image_event(&root, "push", &r.to_string(), &r.to_string());
                    let size = store.resolve(&r).map_or(0, |d| d.size);
                    vec![
                        json!({"status": format!("{tag}: digest: {digest} size: {size}")}),
                        json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size}}),
                    ]
                }
                Err(e) => {
                    let message = format!("cannot push {}: {}", familiar(&r), line(&e));
                    vec![json!({"errorDetail": {"message": message}, "error": message})]
                }
            };
            let failed = lines[0].get("error").is_some();
            for l in lines {
                let _ = tx.send(line_of(&l)).await;
            }
            if failed {
                return;
            }
        }
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with_auth(value: &str) -> Req {
        let parts = hyper::Request::builder()
            .uri("/images/x/push")
            .header("X-Registry-Auth", value)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        Req {
            method: hyper::Method::POST,
            path: "/images/x/push".into(),
            query: Default::default(),
            parts,
            body: None,
        }
    }

    #[test]
    fn registry_auth_is_base64url_json() {
        assert!(registry_auth(&req_with_auth("e30=")).unwrap().is_none());
        let b64 = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"username":"u","password":"p?>","serveraddress":"r"}"#);
        let c = registry_auth(&req_with_auth(&b64)).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        assert!(registry_auth(&req_with_auth("!!")).is_err());
    }
}
