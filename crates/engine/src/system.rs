//! `/_ping`, `/version` and `/info`: what a client asks first, to learn the API version it
//! may use (the `Api-Version` header of every answer) and what it talks to.

use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::http::{self, Answer, Body};
use crate::Engine;

/// This server's version, as `Server:` in `docker version`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The headers dockerd puts on every answer; clients negotiate their version from
/// `Api-Version` (docker 28 goes down to ours).
pub fn add_version_headers(h: &mut HeaderMap) {
    h.insert("Api-Version", HeaderValue::from_static(crate::API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!(
            "Containerization-for-Linux/",
            env!("CARGO_PKG_VERSION"),
            " (linux)"
        )),
    );
}

/// `GET|HEAD /_ping`: `OK`, and the builder docker may use (the classic one: BuildKit's
/// session protocol is not served).
pub fn ping(method: &Method) -> Response<Body> {
    let body = if method == Method::HEAD { "" } else { "OK" };
    let mut r = Response::new(http::full(body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    r
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `GET /version`.
pub fn version() -> Response<Body> {
    let kernel = kernel_release();
    let details = json!({
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": crate::MIN_API_VERSION,
        "Arch": "amd64",
        "Os": "linux",
        "KernelVersion": kernel,
        "GitCommit": "",
        "GoVersion": "",
        "BuildTime": "",
        "Experimental": "false",
    });
    http::json(
        StatusCode::OK,
        &json!({
            "Platform": {"Name": "Containerization for Linux"},
            "Components": [{"Name": "Engine", "Version": VERSION, "Details": details}],
            "Version": VERSION,
            "ApiVersion": crate::API_VERSION,
            "MinAPIVersion": crate::MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": kernel,
            "BuildTime": "",
        }),
    )
}

/// One `KEY=VALUE` of /etc/os-release, unquoted.
fn os_release(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_string())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// `GET /info`: counts from the runtime and the image store, and the host's facts. The
/// storage driver is named after what a container's filesystem is: an ext4 image per image,
/// with a qcow2 overlay per container.
pub async fn info(engine: &Engine) -> Answer {
    let rt = engine.runtime().clone();
    let root = rt.root().to_path_buf();
    let (containers, images) = tokio::task::spawn_blocking(move || {
        let containers = rt.containers().unwrap_or_default();
        let images = oci::Store::open(rt.root())
            .and_then(|s| s.list())
            .map(|l| l.len())
            .unwrap_or(0);
        (containers, images)
    })
    .await
    .map_err(|e| crate::ApiError::internal(e.to_string()))?;
    let running = containers.iter().filter(|c| c.status().is_up()).count();
    let paused = containers.iter().filter(|c| c.record().paused).count();
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running - paused,
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running,
            "Images": images,
            "Driver": "ext4-qcow2",
            "DriverStatus": [],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "none"], "Authorization": null, "Log": ["json-file"]},
            "MemoryLimit": true,
            "SwapLimit": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "LoggingDriver": "json-file",
            "CgroupDriver": "none",
            "CgroupVersion": "2",
            "NEventsListener": 0,
            "KernelVersion": kernel_release(),
            "OperatingSystem": os_release("PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
            "OSVersion": os_release("VERSION_ID").unwrap_or_default(),
            "OSType": "linux",
            "Architecture": "x86_64",
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [], "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
            "NCPU": ncpu,
            "MemTotal": mem_total(),
            "DockerRootDir": root,
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": VERSION,
            // Every container is its own VM: that is the runtime and the isolation.
            "Runtimes": {"container-vm": {"path": "container"}},
            "DefaultRuntime": "container-vm",
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": "", "RemoteManagers": null, "Error": ""},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "vminitd",
            "SecurityOptions": [],
            "Warnings": [],
        }),
    ))
}
