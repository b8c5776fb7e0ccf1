//! Files of a container as tar streams: `GET|HEAD|PUT /containers/{id}/archive` (what
//! `docker cp` does both ways) and `GET /containers/{id}/export`, each one copy of the
//! runtime's (`Container::copy_out_archive`, `copy_in`, `export`). As with `container cp`,
//! a stopped container works too: the runtime boots its VM in hold mode for the copy.
//!
//! The stat of a path travels in docker's `X-Docker-Container-Path-Stat` header: base64 of
//! `{"name","size","mode","mtime","linkTarget"}`, where `mode` is Go's `os.FileMode` (type
//! bits of its own above the permission bits, not `st_mode`) and `mtime` RFC 3339 text; the
//! docker CLI decides from it how to name what it unpacks.

use base64::Engine as _;
use hyper::header::HeaderValue;
use hyper::StatusCode;
use runtime::client::ClientError;
use runtime::container::{CopyOptions, HostPath};
use runtime::exit::ErrorCode;
use runtime::ContainerError;
use serde_json::json;
use tokio::sync::oneshot;

use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::Engine;

/// The header docker's CLI reads the stat from.
const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// `GET|HEAD /containers/{id}/archive?path=`: the path as a tar stream with its stat in the
/// header (`HEAD`: the header only).
pub async fn get(engine: &Engine, id: &str, req: &Req) -> Answer {
    let path = path_param(req)?;
    let mut c = engine.runtime().container(id)?;
    let (stat_tx, stat_rx) = oneshot::channel();
    let (mut response, out) = http::writer(StatusCode::OK, "application/x-tar");
    let (done_tx, done_rx) = oneshot::channel();
    let task_path = path.clone();
    tokio::spawn(async move {
        let r = c.copy_out_archive(&task_path, false, stat_tx, out).await;
        let _ = done_tx.send(r);
    });
    // The stat comes before the first byte; a copy that fails before it has no stream.
    let stat = match stat_rx.await {
        Ok(stat) => stat,
        Err(_) => {
            return Err(match done_rx.await {
                Ok(Err(e)) => copy_error(e),
                _ => ApiError::internal(format!("copy of {path} ended without a stat")),
            })
        }
    };
    let header = HeaderValue::from_str(&stat_header(&stat))
        .map_err(|e| ApiError::internal(format!("stat header: {e}")))?;
    response.headers_mut().insert(STAT_HEADER, header);
    if req.method == hyper::Method::HEAD {
        // Dropping the body ends the copy: the guest's packer is killed.
        let mut head = http::empty(StatusCode::OK);
        *head.headers_mut() = response.headers().clone();
        return Ok(head);
    }
    Ok(response)
}

/// `PUT /containers/{id}/archive?path=&copyUIDGID=`: the body, a tar, unpacked into the
/// directory `path` (which must exist: docker's CLI names the entries for it).
/// `noOverwriteDirNonDir` is what the guest's unpacker does anyway: an entry never replaces
/// a directory by a non-directory or the reverse.
pub async fn put(engine: &Engine, id: &str, mut req: Req) -> Answer {
    let path = path_param(&req)?;
    let mut c = engine.runtime().container(id)?;
    let opts = CopyOptions {
        archive: req.flag("copyUIDGID"),
        follow_link: false,
    };
    let body = req.body_reader();
    c.copy_in(HostPath::Tar(body), &path, opts)
        .await
        .map_err(copy_error)?;
    Ok(http::empty(StatusCode::OK))
}

/// `GET /containers/{id}/export`: the root filesystem as a tar stream.
pub fn export(engine: &Engine, id: &str) -> Answer {
    let mut c = engine.runtime().container(id)?;
    let (response, out) = http::writer(StatusCode::OK, "application/x-tar");
    tokio::spawn(async move {
        // Once streaming, a failure can only cut the stream (the client's tar sees that).
        if let Err(e) = c.export(out).await {
            tracing::warn!("export of {}: {}", c.id(), line(&e));
        }
    });
    Ok(response)
}

fn path_param(req: &Req) -> Result<String, ApiError> {
    req.q("path")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

/// A failed copy as docker answers it: a path that is not there is a 404, a destination
/// that is not a directory a 400.
fn copy_error(e: ContainerError) -> ApiError {
    if let ContainerError::Client(ClientError::Failed(info)) = &e {
        let message = info.reason.clone().unwrap_or_else(|| line(&e));
        match info.error {
            Some(ErrorCode::NotFound) => return ApiError::not_found(message),
            Some(ErrorCode::InvalidArgument) => return ApiError::bad_request(message),
            _ => {}
        }
    }
    e.into()
}

/// Go's `os.FileMode` bits for the file type (`io/fs`), above the permission bits.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// `st_mode` as Go's `os.FileMode` (what `os.Lstat` gives dockerd).
fn file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => go_mode::DIR,
        libc::S_IFLNK => go_mode::SYMLINK,
        libc::S_IFBLK => go_mode::DEVICE,
        libc::S_IFCHR => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        libc::S_IFIFO => go_mode::NAMED_PIPE,
        libc::S_IFSOCK => go_mode::SOCKET,
        _ => 0,
    };
    for (bit, go) in [
        (libc::S_ISUID, go_mode::SETUID),
        (libc::S_ISGID, go_mode::SETGID),
        (libc::S_ISVTX, go_mode::STICKY),
    ] {
        if st_mode & bit != 0 {
            m |= go;
        }
    }
    m
}

/// The header's value: base64 (standard, padded: Go's `base64.StdEncoding`) of the JSON.
fn stat_header(stat: &runtime::container::PathStat) -> String {
    let mtime = chrono::DateTime::from_timestamp(stat.mtime, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let doc = json!({
        "name": stat.name,
        "size": stat.size,
        "mode": file_mode(stat.mode),
        "mtime": mtime,
        "linkTarget": stat.link_target,
    });
    base64::engine::general_purpose::STANDARD.encode(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_gos_file_modes() {
        assert_eq!(file_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(file_mode(0o100644), 0o644);
        assert_eq!(file_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(file_mode(0o020620), (1 << 26) | (1 << 21) | 0o620);
        assert_eq!(file_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(file_mode(0o041777), (1 << 31) | (1 << 20) | 0o777);
    }

    #[test]
    fn the_stat_header_is_base64_json() {
        let stat = runtime::container::PathStat {
            name: "hosts".into(),
            size: 12,
            mode: 0o100644,
            mtime: 0,
            link_target: String::new(),
        };
        assert_eq!(
            stat_header(&stat),
            base64::engine::general_purpose::STANDARD.encode(
                r#"{"linkTarget":"","mode":420,"mtime":"1970-01-01T00:00:00Z","name":"hosts","size":12}"#
            )
        );
    }
}
