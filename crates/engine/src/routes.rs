//! The route table: the `/vX.Y` prefix (optional, as with dockerd), then method and path to
//! a handler. Whatever is not in the table answers 501 with docker's JSON error, so a client
//! reaching for an endpoint that is not done yet gets a clear line, never a dropped connection.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Answer, Body, Req};
use crate::{
    archive, build, containers, events, exec, images, networks, stats, system, transfer, volumes,
    Engine,
};

/// Answers one request.
pub async fn handle(engine: Arc<Engine>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    // What a failure is logged with: the query too, which says what a client was after.
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| raw_path.clone(), |p| p.to_string());
    let answer = match strip_version(&raw_path) {
        Ok(path) => {
            let query = http::parse_query(req.uri().query());
            let (parts, body) = req.into_parts();
            let req = Req {
                method: method.clone(),
                path: path.to_string(),
                query,
                parts,
                body: Some(body),
            };
            route(engine, req).await
        }
        Err(e) => Err(e),
    };
    let mut response = match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{method} {target}: {} {}", e.status, e.message);
            http::error(&e)
        }
    };
    system::add_version_headers(response.headers_mut());
    response
}

/// The path without its `/vX.Y` prefix; a version newer than ours is docker's 400.
fn strip_version(path: &str) -> Result<&str, ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let Some(parsed) = parse_version(version) else {
        // Not a version (e.g. `/volumes`): the path as it is.
        return Ok(path);
    };
    if parsed > parse_version(crate::API_VERSION).unwrap_or((1, 41)) {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {}",
            crate::API_VERSION
        )));
    }
    if parsed < parse_version(crate::MIN_API_VERSION).unwrap_or((1, 24)) {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {}, \
             please upgrade your client to a newer version",
            crate::MIN_API_VERSION
        )));
    }
    Ok(tail)
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

async fn route(engine: Arc<Engine>, req: Req) -> Answer {
    let path = req.path.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = req.method.clone();
    match (&m, segs.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => Ok(system::ping(&m)),
        (&Method::GET, ["version"]) => Ok(system::version()),
        (&Method::GET, ["info"]) => system::info(&engine).await,
        (&Method::GET, ["events"]) => events::events(&engine, &req),

        // Build, archives, stats, prune, image transfer (engine-build).
        (&Method::POST, ["build"]) => build::build(&engine, req).await,
        (&Method::GET | &Method::HEAD, ["containers", id, "archive"]) => {
            archive::get(&engine, id, &req).await
        }
        (&Method::PUT, ["containers", id, "archive"]) => {
            let id = id.to_string();
            archive::put(&engine, &id, req).await
        }
        (&Method::GET, ["containers", id, "export"]) => archive::export(&engine, id),
        (&Method::GET, ["containers", id, "stats"]) => stats::stats(&engine, id, &req).await,
        (&Method::POST, ["containers", "prune"]) => stats::prune(&engine, &req).await,
        (&Method::POST, ["images", "prune"]) => images::prune(&engine, &req).await,
        (&Method::GET, ["images", "get"]) => transfer::save(&engine, req.q_all("names")).await,
        (&Method::POST, ["images", "load"]) => transfer::load(&engine, req).await,
        (&Method::GET, ["images", .., "history"]) if segs.len() > 2 => {
            images::history(&engine, &segs[1..segs.len() - 1].join("/"))
        }
        (&Method::GET, ["images", .., "get"]) if segs.len() > 2 => {
            transfer::save(&engine, vec![segs[1..segs.len() - 1].join("/")]).await
        }
        (&Method::POST, ["images", .., "push"]) if segs.len() > 2 => {
            transfer::push(&engine, &segs[1..segs.len() - 1].join("/"), &req).await
        }

        (&Method::GET, ["images", "json"]) => images::list(&engine, &req),
        (&Method::POST, ["images", "create"]) => images::create(&engine, &req),
        (&Method::GET, ["images", .., "json"]) if segs.len() > 2 => {
            images::inspect(&engine, &segs[1..segs.len() - 1].join("/"))
        }
        (&Method::POST, ["images", .., "tag"]) if segs.len() > 2 => {
            images::tag(&engine, &segs[1..segs.len() - 1].join("/"), &req)
        }
        (&Method::DELETE, ["images", ..]) if segs.len() > 1 => {
            images::delete(&engine, &segs[1..].join("/"), &req)
        }

        (&Method::GET, ["containers", "json"]) => containers::list(&engine, &req),
        (&Method::POST, ["containers", "create"]) => containers::create(&engine, req).await,
        (&Method::GET, ["containers", id, "json"]) => containers::inspect(&engine, id),
        (&Method::POST, ["containers", id, "start"]) => containers::start(&engine, id).await,
        (&Method::POST, ["containers", id, "stop"]) => containers::stop(&engine, id, &req).await,
        (&Method::POST, ["containers", id, "restart"]) => {
            containers::restart(&engine, id, &req).await
        }
        (&Method::POST, ["containers", id, "kill"]) => containers::kill(&engine, id, &req).await,
        (&Method::POST, ["containers", id, "wait"]) => containers::wait(&engine, id, &req),
        (&Method::POST, ["containers", id, "pause"]) => containers::pause(&engine, id).await,
        (&Method::POST, ["containers", id, "unpause"]) => containers::unpause(&engine, id).await,
        (&Method::POST, ["containers", id, "rename"]) => {
            containers::rename(&engine, id, &req).await
        }
        (&Method::GET, ["containers", id, "top"]) => containers::top(&engine, id, &req).await,
        (&Method::DELETE, ["containers", id]) => containers::delete(&engine, id, &req).await,
        (&Method::GET, ["containers", id, "logs"]) => crate::stream::logs(&engine, id, &req),
        (&Method::POST, ["containers", id, "resize"]) => {
            let c = engine.runtime().container(id)?;
            let what = format!("container {}", c.name());
            crate::stream::resize(&engine, c.id(), &what, &req)
        }
        (&Method::POST, ["exec", id, "resize"]) => {
            exec::check_exists(&engine, id)?;
            crate::stream::resize(&engine, id, &format!("exec {id}"), &req)
        }
        (&Method::POST, ["containers", id, "attach"]) => {
            let id = id.to_string();
            crate::stream::attach(engine, &id, req).await
        }

        (&Method::POST, ["containers", id, "exec"]) => {
            let id = id.to_string();
            exec::create(&engine, &id, req).await
        }
        (&Method::POST, ["exec", id, "start"]) => {
            let id = id.to_string();
            exec::start(engine, &id, req).await
        }
        (&Method::GET, ["exec", id, "json"]) => exec::inspect(&engine, id),

        (&Method::GET, ["networks"]) => networks::list(&engine, &req),
        (&Method::POST, ["networks", "create"]) => networks::create(&engine, req).await,
        (&Method::POST, ["networks", "prune"]) => networks::prune(&engine, &req),
        (&Method::GET, ["networks", id]) => networks::inspect(&engine, id),
        (&Method::DELETE, ["networks", id]) => networks::delete(&engine, id),
        (&Method::POST, ["networks", id, "connect"]) => {
            let id = id.to_string();
            networks::connect(&engine, &id, req).await
        }
        (&Method::POST, ["networks", id, "disconnect"]) => {
            let id = id.to_string();
            networks::disconnect(&engine, &id, req).await
        }

        (&Method::GET, ["volumes"]) => volumes::list(&engine, &req),
        (&Method::POST, ["volumes", "create"]) => volumes::create(&engine, req).await,
        (&Method::POST, ["volumes", "prune"]) => volumes::prune(&engine, &req),
        (&Method::GET, ["volumes", name]) => volumes::inspect(&engine, name),
        (&Method::DELETE, ["volumes", name]) => volumes::delete(&engine, name, &req),

        _ => Err(ApiError::not_implemented(m.as_str(), &path)),
    }
}

/// 204: done, nothing to say.
pub fn no_content() -> Answer {
    Ok(http::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_prefix_is_optional_and_bounded() {
        assert_eq!(
            strip_version("/v1.41/containers/json").unwrap(),
            "/containers/json"
        );
        assert_eq!(strip_version("/v1.24/_ping").unwrap(), "/_ping");
        assert_eq!(
            strip_version("/containers/json").unwrap(),
            "/containers/json"
        );
        assert_eq!(strip_version("/volumes").unwrap(), "/volumes");
        let e = strip_version("/v1.50/version").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("too new"), "{e}");
        assert!(strip_version("/v1.12/version").is_err());
    }
}
