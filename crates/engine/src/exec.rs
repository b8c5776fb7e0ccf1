//! Exec instances: `POST /containers/{id}/exec` makes one (the process is checked and fixed
//! then, through the runtime's `exec_spec`, as `container exec` does), `POST /exec/{id}/start`
//! runs it attached (the hijacked stream) or detached, `GET /exec/{id}/json` tells how it
//! ended. Instances live in the server's memory, as in dockerd's.

use std::sync::Arc;

use hyper::StatusCode;
use runtime::protocol::Request as MonitorRequest;
use runtime::spec::{ProcessOptions, ProcessSpec};
use runtime::state::Status;
use runtime::Verb;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, Answer, Req};
use crate::stream::{self, Want};
use crate::Engine;

/// One exec instance.
#[derive(Debug, Clone)]
pub struct ExecInstance {
    /// The container's full id.
    container: String,
    /// The process, resolved against the container's config at create.
    spec: ProcessSpec,
    /// The command as asked.
    cmd: Vec<String>,
    /// What the client attaches.
    want: Want,
    /// `Privileged` as asked.
    privileged: bool,
    /// `User` as asked.
    user: String,
    /// It has been started.
    started: bool,
    /// It runs (attached: until its session ends).
    running: bool,
    /// Its exit code, once known.
    exit_code: Option<i32>,
}

/// docker's `ExecConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    tty: Option<bool>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    privileged: Option<bool>,
    console_size: Option<[u16; 2]>,
}

/// `ExecStartConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: Option<bool>,
}

/// `POST /containers/{id}/exec`.
pub async fn create(engine: &Engine, id: &str, mut req: Req) -> Answer {
    let body: ExecBody = req.json().await?;
    let c = engine.runtime().container(id)?;
    if c.status() != Status::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id()
        )));
    }
    // Refused here, as dockerd does, rather than at the start, whose hijacked answer the
    // docker CLI reports without the message.
    if c.record().paused {
        return Err(ApiError::conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.id()
        )));
    }
    let cmd = body.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let tty = body.tty.unwrap_or(false);
    let stdin = body.attach_stdin.unwrap_or(false);
    let user = body.user.unwrap_or_default();
    let privileged = body.privileged.unwrap_or(false);
    let opts = ProcessOptions {
        env: crate::create::daemon_env(body.env.unwrap_or_default()),
        workdir: body.working_dir.filter(|w| !w.is_empty()),
        user: Some(user.clone()).filter(|u| !u.is_empty()),
        terminal: tty,
        open_stdin: stdin,
        console_size: body
            .console_size
            .map(|[r, c]| (r, c))
            .filter(|&(r, c)| r > 0 && c > 0),
        privileged,
        ..Default::default()
    };
    let spec = c.exec_spec(cmd.clone(), &opts)?;
    let exec_id = runtime::state::new_id();
    let instance = ExecInstance {
        container: c.id().to_string(),
        spec,
        cmd,
        want: Want {
            stdin,
            stdout: body.attach_stdout.unwrap_or(false),
            stderr: body.attach_stderr.unwrap_or(false),
            tty,
        },
        privileged,
        user,
        started: false,
        running: false,
        exit_code: None,
    };
    forget_gone(engine);
    if let Ok(mut m) = engine.execs.lock() {
        m.insert(exec_id.clone(), instance);
    }
    Ok(http::json(StatusCode::CREATED, &json!({ "Id": exec_id })))
}

fn lookup(engine: &Engine, id: &str) -> Result<ExecInstance, ApiError> {
    engine
        .execs
        .lock()
        .ok()
        .and_then(|m| m.get(id).cloned())
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

/// Drops the exec instances (and their resize channels) of containers that no longer exist,
/// as dockerd drops a container's execs with it; the rest stay inspectable.
fn forget_gone(engine: &Engine) {
    let store = engine.runtime().store();
    let gone: Vec<String> = match engine.execs.lock() {
        Ok(m) => m
            .iter()
            .filter(|(_, i)| {
                matches!(
                    store.load(&i.container),
                    Err(runtime::state::StateError::NotFound(_))
                )
            })
            .map(|(id, _)| id.clone())
            .collect(),
        Err(_) => return,
    };
    if let Ok(mut m) = engine.execs.lock() {
        for id in &gone {
            m.remove(id);
        }
    }
    if let Ok(mut m) = engine.controls.lock() {
        for id in &gone {
            m.remove(id);
        }
    }
}

/// 404 unless exec instance `id` exists.
pub fn check_exists(engine: &Engine, id: &str) -> Result<(), ApiError> {
    lookup(engine, id).map(|_| ())
}

fn update(engine: &Engine, id: &str, f: impl FnOnce(&mut ExecInstance)) {
    if let Ok(mut m) = engine.execs.lock() {
        if let Some(i) = m.get_mut(id) {
            f(i);
        }
    }
}

/// `POST /exec/{id}/start`: detached, returns once the process runs; attached, takes over
/// the connection and records the exit code before closing it.
pub async fn start(engine: Arc<Engine>, id: &str, mut req: Req) -> Answer {
    let body: StartBody = req.json().await?;
    let instance = lookup(&engine, id)?;
    if instance.started {
        return Err(ApiError::conflict(format!(
            "Exec command {id} has already run"
        )));
    }
    let mut c = engine.runtime().container(&instance.container)?;
    if body.detach.unwrap_or(false) {
        update(&engine, id, |i| i.started = true);
        c.exec_detached(instance.spec.clone()).await?;
        return Ok(http::empty(StatusCode::OK));
    }
    let monitor = c.connect(Verb::Exec).await?;
    update(&engine, id, |i| {
        i.started = true;
        i.running = true;
    });
    let (response, client) = stream::take_over(req);
    let control = engine.control(id);
    let exec_id = id.to_string();
    let container = instance.container.clone();
    tokio::spawn(async move {
        let req = MonitorRequest::Exec {
            spec: instance.spec,
            detach: false,
        };
        let record = |r: &Result<_, _>| {
            let code = stream::exit_code(r);
            update(&engine, &exec_id, |i| {
                i.running = false;
                i.exit_code = Some(code);
            });
        };
        stream::session(
            client,
            monitor,
            &container,
            req,
            instance.want,
            control,
            record,
        )
        .await;
        // A session cut short by the client: no exit code is known; it no longer runs here.
        update(&engine, &exec_id, |i| i.running = false);
    });
    Ok(response)
}

/// `GET /exec/{id}/json`.
pub fn inspect(engine: &Engine, id: &str) -> Answer {
    let i = lookup(engine, id)?;
    let (entrypoint, arguments) = match i.cmd.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "ID": id,
            "Running": i.running,
            "ExitCode": i.exit_code,
            "ProcessConfig": {
                "tty": i.want.tty,
                "entrypoint": entrypoint,
                "arguments": arguments,
                "privileged": i.privileged,
                "user": i.user,
            },
            "OpenStdin": i.want.stdin,
            "OpenStderr": i.want.stderr,
            "OpenStdout": i.want.stdout,
            "CanRemove": false,
            "ContainerID": i.container,
            "DetachKeys": "",
            "Pid": 0,
        }),
    ))
}
