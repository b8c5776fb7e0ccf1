//! Volume endpoints: create, list, inspect, delete and prune, each a call of the runtime's
//! volume verbs ([`runtime::volumes`]), in docker's JSON shapes.
//!
//! A volume here is an ext4 image attached to the VMs that mount it (driver `local`, scope
//! `local`); its `Mountpoint` is that image's path on the host. docker's local driver options
//! (`type`, `o`, `device`: a mount made by the daemon) have no meaning for it and are refused.

use std::collections::BTreeMap;

use hyper::StatusCode;
use runtime::filter::{FilterKind, Filters};
use runtime::volume::VolumeError;
use runtime::volumes::{VolumeInfo, VolumesError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::create::nullable;
use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::routes::no_content;
use crate::Engine;

impl From<VolumesError> for ApiError {
    fn from(e: VolumesError) -> ApiError {
        let message = line(&e);
        match e {
            VolumesError::Volume(v) => match v {
                VolumeError::NotFound(_) => ApiError::not_found(message),
                VolumeError::Exists(_) | VolumeError::InUse(_) => ApiError::conflict(message),
                VolumeError::InvalidName(_) | VolumeError::TooSmall(_) => {
                    ApiError::bad_request(message)
                }
                _ => ApiError::internal(message),
            },
            VolumesError::InUse { .. } => ApiError::conflict(message),
            VolumesError::Containers(c) => c.into(),
        }
    }
}

/// `POST /volumes/create` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    /// The name (empty: a generated one, as an anonymous volume's).
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// `local` (or empty) only.
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    /// Refused when given (see the module's documentation).
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
}

/// docker's document of a volume.
fn document(v: &VolumeInfo) -> Value {
    let vol = &v.volume;
    json!({
        "CreatedAt": vol.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Driver": vol.driver,
        "Labels": vol.labels,
        "Mountpoint": vol.mountpoint,
        "Name": vol.name,
        "Options": {},
        "Scope": "local",
        // docker fills these for `system df` only; here they cost nothing.
        "UsageData": {
            "Size": v.allocated_bytes,
            "RefCount": v.containers.len(),
        },
    })
}

/// `POST /volumes/create`: a new volume, or the existing one of that name (docker's create is
/// idempotent for the same driver).
pub async fn create(engine: &Engine, mut req: Req) -> Answer {
    let body: CreateBody = req.json().await?;
    if !matches!(body.driver.as_str(), "" | "local") {
        return Err(ApiError::bad_request(format!(
            "volume driver {:?} is not supported: volumes here are local ext4 images",
            body.driver
        )));
    }
    if body.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad_request(
            "volume driver options are not supported: volumes here are ext4 images attached \
             to the VMs (`container volume create --size` sets their size)",
        ));
    }
    let rt = engine.runtime();
    let name = if body.name.is_empty() {
        runtime::volume::anonymous_name()
    } else {
        body.name
    };
    match rt.volume_create(&name, None, body.labels.unwrap_or_default()) {
        Ok(_) | Err(VolumesError::Volume(VolumeError::Exists(_))) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(http::json(
        StatusCode::CREATED,
        &document(&rt.volume(&name)?),
    ))
}

fn filters(req: &Req) -> Result<Filters, ApiError> {
    Ok(match req.q("filters").filter(|f| !f.is_empty()) {
        Some(json) => Filters::from_json(FilterKind::Volumes, json)?,
        None => Filters::new(FilterKind::Volumes),
    })
}

/// `GET /volumes?filters=`.
pub fn list(engine: &Engine, req: &Req) -> Answer {
    let filters = filters(req)?;
    let volumes: Vec<Value> = engine
        .runtime()
        .volumes()?
        .iter()
        .filter(|v| filters.matches_volume(v))
        .map(document)
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"Volumes": volumes, "Warnings": []}),
    ))
}

/// `GET /volumes/{name}`.
pub fn inspect(engine: &Engine, name: &str) -> Answer {
    Ok(http::json(
        StatusCode::OK,
        &document(&engine.runtime().volume(name)?),
    ))
}

/// `DELETE /volumes/{name}?force=`: 409 while a container (in any state) mounts it; with
/// `force`, a volume that does not exist is no error (docker's `volume rm -f`).
pub fn delete(engine: &Engine, name: &str, req: &Req) -> Answer {
    match engine.runtime().volume_delete(name) {
        Ok(()) => no_content(),
        Err(VolumesError::Volume(VolumeError::NotFound(_))) if req.flag("force") => no_content(),
        Err(e) => Err(e.into()),
    }
}

/// `POST /volumes/prune?filters=`: every volume no container mounts (named and anonymous,
/// as docker 20.10) that the filters select.
pub fn prune(engine: &Engine, req: &Req) -> Answer {
    let filters = filters(req)?;
    let pruned = engine.runtime().volume_prune(&filters)?;
    let space: u64 = pruned.iter().map(|(_, bytes)| bytes).sum();
    let names: Vec<String> = pruned.into_iter().map(|(name, _)| name).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"VolumesDeleted": names, "SpaceReclaimed": space}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_errors_get_dockers_status_codes() {
        let e: ApiError = VolumesError::Volume(VolumeError::NotFound("v".into())).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = VolumesError::InUse {
            name: "v".into(),
            users: vec!["web".into()],
        }
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(e.message.contains("web"), "{e}");
        let e: ApiError = VolumesError::Volume(VolumeError::InvalidName("../x".into())).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_create_body_with_nulls_reads() {
        let b: CreateBody = serde_json::from_str(
            r#"{"Name":null,"Driver":null,"DriverOpts":null,"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert!(b.name.is_empty() && b.driver.is_empty());
        assert_eq!(b.labels.unwrap()["a"], "b");
    }
}
