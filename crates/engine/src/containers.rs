//! Container endpoints: create, start, stop, kill, restart, wait, delete, list and inspect,
//! each one call of [`runtime::Container`] or [`runtime::Runtime`], with docker's status
//! codes (`304` for a start of a running or a stop of a stopped container, `409` for a verb
//! the container's state refuses).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::StatusCode;
use runtime::container::{StopOptions, WaitCondition};
use runtime::filter::{FilterKind, Filters};
use runtime::state::Status;
use runtime::{Container, ContainerError};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::{self, Answer, Req};
use crate::routes::no_content;
use crate::Engine;

/// `POST /containers/create?name=`.
pub async fn create(engine: &Engine, mut req: Req) -> Answer {
    let name = req.q("name").filter(|n| !n.is_empty()).map(str::to_string);
    let body: crate::create::CreateBody = req.json().await?;
    let opts = crate::create::options(name, body)?;
    let c = engine
        .runtime()
        .create(opts, &oci::PullOptions::default())
        .await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": c.id(), "Warnings": []}),
    ))
}

/// `POST /containers/{id}/start`. An attach waiting for this start gets the monitor's
/// connection, and the process runs once it is attached.
pub async fn start(engine: &Engine, id: &str) -> Answer {
    let c = engine.runtime().container(id)?;
    let already = |e: &ContainerError| {
        matches!(
            e,
            ContainerError::WrongState {
                status: Status::Running | Status::Restarting,
                ..
            }
        )
    };
    if let Some(waiting) = engine.take_attach(c.id()) {
        match c.start(true).await {
            Ok(monitor) => {
                // A client that left meanwhile: the monitor's own bounded wait lets the
                // process run without it.
                let _ = waiting.send(monitor);
            }
            Err(e) if already(&e) => return Ok(http::empty(StatusCode::NOT_MODIFIED)),
            Err(e) => return Err(e.into()),
        }
        return no_content();
    }
    match c.start_unless_running().await {
        Ok(true) => no_content(),
        Ok(false) => Ok(http::empty(StatusCode::NOT_MODIFIED)),
        Err(e) => Err(e.into()),
    }
}

/// `?t=` seconds: `None` for the container's own timeout (and for docker's `-1`, "wait
/// forever", which becomes the container's own too).
fn timeout(req: &Req) -> Result<Option<Duration>, ApiError> {
    Ok(req
        .int("t")?
        .and_then(|t| u64::try_from(t).ok())
        .map(Duration::from_secs))
}

/// `POST /containers/{id}/stop?t=`.
pub async fn stop(engine: &Engine, id: &str, req: &Req) -> Answer {
    let mut c = engine.runtime().container(id)?;
    if !c.status().is_up() {
        return Ok(http::empty(StatusCode::NOT_MODIFIED));
    }
    let opts = StopOptions {
        signal: None,
        timeout: timeout(req)?,
    };
    c.stop(opts).await?;
    no_content()
}

/// `POST /containers/{id}/restart?t=`.
pub async fn restart(engine: &Engine, id: &str, req: &Req) -> Answer {
    let mut c = engine.runtime().container(id)?;
    let opts = StopOptions {
        signal: None,
        timeout: timeout(req)?,
    };
    c.restart(opts).await?;
    no_content()
}

/// `POST /containers/{id}/kill?signal=` (default SIGKILL).
pub async fn kill(engine: &Engine, id: &str, req: &Req) -> Answer {
    let mut c = engine.runtime().container(id)?;
    let signal = match req.q("signal").filter(|s| !s.is_empty()) {
        None => libc::SIGKILL,
        Some(s) => runtime::spec::parse_signal(s)
            .map_err(|e| ApiError::bad_request(crate::error::line(&e)))?,
    };
    if !c.status().is_up() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id()
        )));
    }
    c.kill(signal).await?;
    no_content()
}

/// `POST /containers/{id}/wait?condition=`: the headers go at once (a client starts a
/// container only after its wait is in place), the exit code when the condition is met.
pub fn wait(engine: &Engine, id: &str, req: &Req) -> Answer {
    let condition: WaitCondition = req
        .q("condition")
        .filter(|c| !c.is_empty())
        .map(str::parse)
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let mut c = engine.runtime().container(id)?;
    let (response, tx) = http::channel(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let body = tokio::select! {
            r = c.wait(condition) => match r {
                Ok(code) => json!({"StatusCode": code, "Error": null}),
                Err(e) => json!({"StatusCode": -1, "Error": {"Message": runtime::error_line(&e)}}),
            },
            // The client gave up waiting.
            () = tx.closed() => return,
        };
        let _ = tx.send(bytes::Bytes::from(format!("{body}\n"))).await;
    });
    Ok(response)
}

/// `POST /containers/{id}/pause`: freezes the container's VM.
pub async fn pause(engine: &Engine, id: &str) -> Answer {
    engine.runtime().container(id)?.pause().await?;
    no_content()
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(engine: &Engine, id: &str) -> Answer {
    engine.runtime().container(id)?.unpause().await?;
    no_content()
}

/// `POST /containers/{id}/rename?name=`.
pub async fn rename(engine: &Engine, id: &str, req: &Req) -> Answer {
    let name = req.q("name").unwrap_or("");
    engine.runtime().container(id)?.rename(name).await?;
    no_content()
}

/// `GET /containers/{id}/top?ps_args=`: the guest's processes as `ps` would list them.
pub async fn top(engine: &Engine, id: &str, req: &Req) -> Answer {
    let args: Vec<String> = req
        .q("ps_args")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let table = engine.runtime().container(id)?.top(&args).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"Titles": table.titles, "Processes": table.processes}),
    ))
}

/// `DELETE /containers/{id}?force=&v=`. Anonymous volumes go with the container with `v`
/// (or an auto-remove container's), as docker's; named ones always stay.
pub async fn delete(engine: &Engine, id: &str, req: &Req) -> Answer {
    let c = engine.runtime().container(id)?;
    let full_id = c.id().to_string();
    c.delete_with(req.flag("force"), req.flag("v")).await?;
    // An attach still waiting for this container's start ends with it.
    drop(engine.take_attach(&full_id));
    if let Ok(mut m) = engine.controls.lock() {
        m.remove(&full_id);
    }
    no_content()
}

/// `GET /containers/{id}/json`: the runtime's docker-shaped document.
pub fn inspect(engine: &Engine, id: &str) -> Answer {
    let c = engine.runtime().container(id)?;
    Ok(http::json(StatusCode::OK, &c.docker_inspect()))
}

/// `GET /containers/json?all=&filters=`: newest first, as docker lists them.
pub fn list(engine: &Engine, req: &Req) -> Answer {
    let filters = match req.q("filters").filter(|f| !f.is_empty()) {
        Some(json) => Filters::from_json(FilterKind::Containers, json)?,
        None => Filters::new(FilterKind::Containers),
    };
    // Network ids by name, for each row's `NetworkSettings` (none when the networks cannot
    // be read: the rows still list).
    let ids: BTreeMap<String, String> = engine
        .runtime()
        .networks()
        .and_then(|n| n.list())
        .map(|l| {
            l.into_iter()
                .map(|n| (n.config.name, n.config.id))
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<Value> = engine
        .runtime()
        .list_containers(req.flag("all"), &filters)?
        .iter()
        .map(|c| row(c, &ids))
        .collect();
    rows.reverse();
    if let Some(n) = req
        .int("limit")?
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
    {
        rows.truncate(n);
    }
    Ok(http::json(StatusCode::OK, &rows))
}

/// One container of `GET /containers/json`; `ids` gives each network's id by name.
fn row(c: &Container, ids: &BTreeMap<String, String>) -> Value {
    let s = c.summary();
    let r = c.record();
    let image = oci::Reference::parse(&s.image)
        .map(|i| crate::images::familiar(&i))
        .unwrap_or_else(|_| s.image.clone());
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            json!({
                "IP": p.host_ip.to_string(),
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.protocol.to_string(),
            })
        })
        .collect();
    let networks: serde_json::Map<String, Value> = s
        .networks
        .iter()
        .map(|n| {
            let id = ids.get(n).cloned().unwrap_or_default();
            (n.clone(), json!({"NetworkID": id}))
        })
        .collect();
    json!({
        "Id": s.id,
        "Names": [format!("/{}", s.name)],
        "Image": image,
        "ImageID": s.image_digest,
        "Command": s.command.join(" "),
        "Created": s.created.timestamp(),
        "Ports": ports,
        "Labels": s.labels,
        "State": s.state(),
        "Status": status_line(r.status, s.paused, r.exit_code, r.started, r.finished, Utc::now()),
        "HostConfig": {"NetworkMode": s.networks.first().map_or("none", String::as_str)},
        "NetworkSettings": {"Networks": networks},
        "Mounts": [],
    })
}

/// docker's `Status` column: `Up 5 minutes`, `Up 2 hours (Paused)`, `Exited (0) 3 seconds
/// ago`, `Created`, `Restarting (1) 2 seconds ago`.
fn status_line(
    status: Status,
    paused: bool,
    code: Option<i32>,
    started: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let since = |t: Option<DateTime<Utc>>| {
        human_duration((now - t.unwrap_or(now)).to_std().unwrap_or_default())
    };
    match status {
        Status::Created => "Created".to_string(),
        Status::Running if paused => format!("Up {} (Paused)", since(started)),
        Status::Running => format!("Up {}", since(started)),
        Status::Restarting => format!("Restarting ({}) {} ago", code.unwrap_or(0), since(finished)),
        Status::Exited => format!("Exited ({}) {} ago", code.unwrap_or(0), since(finished)),
    }
}

/// go-units' `HumanDuration`, which docker's `ps` uses.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours) = (secs / 60, secs / 3600);
    match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        _ if mins == 1 => "About a minute".to_string(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_column_reads_as_dockers() {
        let now = Utc::now();
        let ago = |s: i64| Some(now - chrono::Duration::seconds(s));
        assert_eq!(
            status_line(Status::Created, false, None, None, None, now),
            "Created"
        );
        assert_eq!(
            status_line(Status::Running, false, None, ago(5), None, now),
            "Up 5 seconds"
        );
        assert_eq!(
            status_line(Status::Running, true, None, ago(7200), None, now),
            "Up 2 hours (Paused)"
        );
        assert_eq!(
            status_line(Status::Exited, false, Some(3), ago(100), ago(90), now),
            "Exited (3) About a minute ago"
        );
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }
}
