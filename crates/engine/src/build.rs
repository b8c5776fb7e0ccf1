//! `POST /build`: docker's classic builder API over [`builder::build_on`], the build of
//! `container build`. The body is the context as a tar (gzip, bzip2, xz or zstd compressed,
//! or not: `builder::Context::from_archive` takes them all); the answer is docker's JSON
//! progress lines: `{"stream": …}` for each step and the output of RUN, then
//! `{"aux": {"ID": …}}`, `Successfully built <short id>` and `Successfully tagged <name>`.
//! A failure after the answer began is its last line (`error`, `errorDetail`, with the exit
//! code of a failed RUN, which the docker CLI exits with), as dockerd sends it.
//!
//! Not served: BuildKit's session (`/_ping` says `Builder-Version: 1`, so docker 23+ falls
//! back to this API); `remote` contexts (a URL or git repository); `cachefrom` (our cache
//! is the layer cache of earlier builds on this root, used unless `nocache`);
//! `extrahosts` (RUN's VM has no hosts file of the user's: a warning line says it was not
//! applied). `rm` and `forcerm` are what happens anyway: builder VMs never outlive their
//! build.

use std::collections::BTreeMap;
use std::path::PathBuf;

use builder::{BuildError, BuildOptions, Context, DockerfileAt};
use bytes::Bytes;
use hyper::StatusCode;
use oci::Reference;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::images::{familiar, line_of};
use crate::Engine;

/// Builder VM size when the request sets none: what `container build` defaults to.
const DEFAULT_CPUS: u32 = 2;
const DEFAULT_MEMORY_MIB: u64 = 2048;
/// The least memory a builder VM boots with.
const MIN_MEMORY_MIB: u64 = 256;

/// `POST /build?t=&dockerfile=&buildargs=&labels=&target=&nocache=&pull=&q=&networkmode=&platform=`.
pub async fn build(engine: &Engine, mut req: Req) -> Answer {
    let opts = options(&req)?;
    let quiet = req.flag("q");
    let dockerfile = match req.q("dockerfile").filter(|d| !d.is_empty()) {
        Some(d) => DockerfileAt::Path(PathBuf::from(d)),
        None => DockerfileAt::Default,
    };
    let ignored: Vec<&str> = ["extrahosts", "cachefrom"]
        .into_iter()
        .filter(|k| req.q(k).is_some_and(|v| !v.is_empty() && v != "[]"))
        .collect();
    let warnings: Vec<String> = ignored
        .iter()
        .map(|k| format!("warning: {k} is not supported by this builder and was ignored\n"))
        .collect();
    let body = req.body_reader();
    let rt = engine.runtime().clone();
    let (response, tx) = http::channel(StatusCode::OK, "application/json");
    // The build's future is not `Send` (the builder's trees are used through `&dyn`
    // references across awaits): it runs on a thread of its own, whose tasks still go
    // to the server's runtime.
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let out = tx.clone();
            tokio::select! {
                () = run(rt, body, dockerfile, opts, quiet, warnings, out) => {}
                // The client hung up: dropping the build stops its VMs, nothing is named.
                () = tx.closed() => {}
            }
        });
    });
    Ok(response)
}

/// What the query asks for; a malformed parameter is a 400 before anything is streamed.
fn options(req: &Req) -> Result<BuildOptions, ApiError> {
    if req.q("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts (URLs, git repositories) are not supported: send the \
             context as a tar body",
        ));
    }
    let mut tags = Vec::new();
    for t in req.q_all("t") {
        let r = Reference::parse(&t)
            .map_err(|e| ApiError::bad_request(format!("invalid tag {t:?}: {}", line(&e))))?;
        if r.digest().is_some() {
            return Err(ApiError::bad_request(format!(
                "invalid tag {t:?}: a tag cannot name a digest"
            )));
        }
        tags.push(t);
    }
    if let Some(p) = req.q("platform").filter(|p| !p.is_empty()) {
        let platform = oci::Platform::parse(p).map_err(|e| ApiError::bad_request(line(&e)))?;
        runtime::image::check_platform(&platform).map_err(|e| ApiError::bad_request(line(&e)))?;
    }
    let network = match req.q("networkmode").unwrap_or("") {
        "" | "default" | "bridge" | "host" => true,
        "none" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "networkmode {other:?} is not supported for builds: default or none"
            )))
        }
    };
    let memory_mib = match req.int("memory")? {
        Some(bytes) if bytes > 0 => (bytes.unsigned_abs() / (1 << 20)).max(MIN_MEMORY_MIB),
        _ => DEFAULT_MEMORY_MIB,
    };
    Ok(BuildOptions {
        tags,
        build_args: json_map(req, "buildargs")?,
        labels: json_map(req, "labels")?,
        target: req
            .q("target")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        no_cache: req.flag("nocache"),
        pull: req.flag("pull"),
        network,
        vm: runtime::state::VmOptions {
            cpus: DEFAULT_CPUS,
            memory_mib,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// A JSON object of strings (`buildargs`, `labels`); a `null` value (docker's "take it from
/// the daemon's environment") is left out, as dockerd leaves out what its environment lacks.
fn json_map(req: &Req, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(text) = req.q(key).filter(|t| !t.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, Option<String>> = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))?;
    Ok(map.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// The build's progress as docker's `stream` lines, through an unbounded queue: the builder
/// reports from synchronous callbacks, and no line of its output may be lost.
struct Lines {
    tx: mpsc::UnboundedSender<Value>,
    quiet: bool,
}

impl Lines {
    fn stream(&self, text: String) {
        if !self.quiet {
            let _ = self.tx.send(json!({ "stream": text }));
        }
    }
}

impl builder::vm::OutputSink for Lines {
    fn output(&self, bytes: &[u8]) {
        self.stream(String::from_utf8_lossy(bytes).into_owned());
    }
}

impl builder::Progress for Lines {
    fn step(&self, step: &builder::StepReport<'_>) {
        self.stream(format!("{}\n", step.docker_line()));
    }
    fn note(&self, text: &str) {
        self.stream(format!(" {text}\n"));
    }
}

/// Spools the context, builds, and reports on `out`.
async fn run(
    rt: runtime::Runtime,
    body: tokio::io::DuplexStream,
    dockerfile: DockerfileAt,
    opts: BuildOptions,
    quiet: bool,
    warnings: Vec<String>,
    out: mpsc::Sender<Bytes>,
) {
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<Value>();
    let relay_out = out.clone();
    let relay = tokio::spawn(async move {
        while let Some(v) = line_rx.recv().await {
            if relay_out.send(line_of(&v)).await.is_err() {
                return;
            }
        }
    });
    let lines = Lines { tx: line_tx, quiet };
    for w in warnings {
        lines.stream(w);
    }
    let result = match context(body, dockerfile).await {
        Ok(ctx) => builder::build_on(&rt, &ctx, opts, &lines)
            .await
            .map_err(|e| {
                let code = match &e {
                    BuildError::RunFailed { code, .. } => *code,
                    _ => e.exit_code(),
                };
                (line(&e), code)
            }),
        Err(message) => Err((message, 1)),
    };
    let finals: Vec<Value> = match result {
        Ok(r) => {
            let id = r.id.to_string();
            let mut v = vec![json!({"aux": {"ID": id}})];
            if quiet {
                v.push(json!({ "stream": format!("{id}\n") }));
            } else {
                v.push(json!({"stream": format!("Successfully built {}\n", r.id.short())}));
                for t in &r.tags {
                    let shown = Reference::parse(t).map_or_else(|_| t.clone(), |r| familiar(&r));
                    v.push(json!({ "stream": format!("Successfully tagged {shown}\n") }));
                }
            }
            v
        }
        Err((message, code)) => {
            vec![json!({"errorDetail": {"code": code, "message": message}, "error": message})]
        }
    };
    for v in finals {
        let _ = lines.tx.send(v);
    }
    drop(lines);
    let _ = relay.await;
}

/// The context from the body, spooled to a temporary file first: the archive reader is
/// synchronous and reads it once, and the body must not be held in memory.
async fn context(
    mut body: tokio::io::DuplexStream,
    dockerfile: DockerfileAt,
) -> Result<Context, String> {
    let file = tempfile::tempfile().map_err(|e| format!("spool the build context: {e}"))?;
    let mut spool = tokio::fs::File::from_std(file);
    tokio::io::copy(&mut body, &mut spool)
        .await
        .map_err(|e| format!("read the build context: {e}"))?;
    let mut file = spool.into_std().await;
    tokio::task::spawn_blocking(move || {
        use std::io::Seek;
        file.rewind()
            .map_err(|e| format!("read the build context: {e}"))?;
        Context::from_archive(std::io::BufReader::new(file), dockerfile)
            .map_err(|e| format!("read the build context: {}", line(&e)))
    })
    .await
    .map_err(|e| format!("read the build context: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_maps_leave_out_nulls() {
        let parts = hyper::Request::builder()
            .uri("/build?buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D&t=a&t=b%3A2")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let req = Req {
            method: hyper::Method::POST,
            path: "/build".into(),
            query: http::parse_query(parts.uri.query()),
            parts,
            body: None,
        };
        let args = json_map(&req, "buildargs").unwrap();
        assert_eq!(
            args.into_iter().collect::<Vec<_>>(),
            [("A".into(), "1".into())]
        );
        assert!(json_map(&req, "labels").unwrap().is_empty());
        assert_eq!(req.q_all("t"), ["a", "b:2"]);
        let opts = options(&req).unwrap();
        assert_eq!(opts.tags, ["a", "b:2"]);
        assert!(opts.network);
    }
}
