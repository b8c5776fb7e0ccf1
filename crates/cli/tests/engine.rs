//! `container system service`, the Docker Engine API server, driven by a client nobody here
//! wrote: Debian's docker 20.10 CLI (`/usr/bin/docker`, from the `docker.io` package; dockerd
//! is never started), with `DOCKER_HOST=unix://…` pointing at our socket.
//!
//! The server runs in the host's network namespace (so that a pull reaches the test registry
//! on the host's loopback); containers it runs use `--network none`. Every test stops the
//! server it started (on drop) before its `Env` force-deletes what is left.

mod common;

use common::retry;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{push_image, wait_output, Env, IMAGE};
use common::{Registry, Run};

/// Debian's docker 20.10 client (a newer one may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";

/// The newer client these machines carry (docker 28, API 1.50), which negotiates down to our
/// API version; not from Debian, so its checks are skipped (with a line saying so) where it is
/// missing.
const DOCKER_NEW: &str = "/usr/local/bin/docker";

/// A running `container system service` on the env's root; stopped (SIGTERM) on drop.
struct Service {
    child: Child,
    socket: PathBuf,
    config: tempfile::TempDir,
}

impl Service {
    /// The server in the host's namespace (it reaches the test registry; its containers
    /// use `--network none`).
    fn start(env: &Env) -> Service {
        Service::start_in(env, false)
    }

    /// The server in the env's network namespace, where its containers' default network
    /// and published ports live.
    fn start_in_netns(env: &Env) -> Service {
        Service::start_in(env, true)
    }

    fn start_in(env: &Env, netns: bool) -> Service {
        assert!(
            std::path::Path::new(DOCKER).exists(),
            "{DOCKER} is missing: install Debian's docker.io (scripts/setup.sh)"
        );
        let socket = env.cli.root().join("docker.sock");
        let log = std::fs::File::create(env.cli.root().join("service.log")).unwrap();
        let args = ["system", "service", "--socket", socket.to_str().unwrap()];
        let mut command = if netns {
            env.cli.command(&args)
        } else {
            env.cli.host_command(&args)
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn container system service");
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the service did not open {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Service {
            child,
            socket,
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `docker ARGS…` against this server, to its end.
    fn docker(&self, args: &[&str]) -> Run {
        self.client(DOCKER, args)
    }

    /// `docker ARGS…` under a pseudo-terminal of `rows`×`cols` (util-linux `script`), whose
    /// input stays open for 3 s (a closed one would end the session's stdin at once).
    fn docker_in_pty(&self, rows: u16, cols: u16, args: &str) -> Run {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!(
                "sleep 3 | script -qec 'stty rows {rows} cols {cols}; {DOCKER} {args}' /dev/null"
            ),
        ]);
        self.client_env(&mut c);
        wait_output(c)
    }

    fn client_env(&self, c: &mut Command) {
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            // No user config (credential helpers, contexts) leaks in.
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT");
    }

    /// `ARGS…` of the client at `program` against this server, to its end.
    fn client(&self, program: &str, args: &[&str]) -> Run {
        let mut c = Command::new(program);
        c.args(args).stdin(Stdio::null());
        self.client_env(&mut c);
        wait_output(c)
    }

    /// `docker ARGS…` left running (to be killed: a client that goes away).
    fn spawn_docker(&self, args: &[&str]) -> Child {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.client_env(&mut c);
        c.spawn().expect("spawn docker")
    }

    /// One raw HTTP/1.1 request; returns the status code and the body.
    fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        // Bodies of fixed length only here: what follows the headers is the body.
        (status, body.to_string())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: kill only signals the child we spawned (its pid is ours until we wait).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

/// A docker command that must fail with `needle` in its error.
trait Refused {
    fn refused(self, needle: &str) -> Run;
}

impl Refused for Run {
    #[track_caller]
    fn refused(self, needle: &str) -> Run {
        assert_ne!(self.code, 0, "expected a failure: {}", self.stdout);
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "error does not mention {needle:?}: {}",
            self.stderr
        );
        self
    }
}

fn assert_docker_20(s: &Service) {
    let v = s.docker(&[
        "version",
        "--format",
        "{{.Client.Version}} {{.Server.APIVersion}}",
    ]);
    let v = v.success();
    assert!(
        v.stdout.starts_with("20.10"),
        "not docker 20.10: {}",
        v.stdout
    );
    assert_eq!(
        v.stdout.split_whitespace().nth(1),
        Some("1.41"),
        "{}",
        v.stdout
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn the_docker_cli_talks_to_the_socket_images_and_errors() {
    let env = Env::tagged("engimg", true);
    let s = Service::start(&env);
    assert_docker_20(&s);
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    let info = s.docker(&[
        "info",
        "--format",
        "{{.Images}} {{.OSType}} {{.Containers}}",
    ]);
    assert_eq!(info.success().stdout.trim(), "1 linux 0");
    let images = s
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])
        .success();
    assert!(
        images.stdout.starts_with("localhost/runtime-test:1 "),
        "{}",
        images.stdout
    );
    let id = s
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Os}} {{.Config.WorkingDir}}",
            IMAGE,
        ])
        .success();
    assert!(
        id.stdout.starts_with("sha256:") && id.stdout.ends_with(" linux /data\n"),
        "{}",
        id.stdout
    );

    s.docker(&["tag", IMAGE, "other/name:2"]).success();
    let images = s
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success();
    assert!(images.stdout.contains("other/name:2"), "{}", images.stdout);
    let rmi = s.docker(&["rmi", "other/name:2"]).success();
    assert!(
        rmi.stdout.contains("Untagged: other/name:2"),
        "{}",
        rmi.stdout
    );

    // Errors: docker's JSON body and status codes, one line each.
    let r = s.docker(&["inspect", "--type", "container", "nope"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("No such container: nope"), "{}", r.stderr);
    // Without --type, the CLI tries every kind of object; ours not served yet answer 501
    // in the words it skips, so the end is docker's own.
    let r = s.docker(&["inspect", "nope"]);
    assert!(
        r.code == 1 && r.stderr.contains("No such object: nope"),
        "{r:?}"
    );
    let r = s.docker(&["logs", "nope"]);
    assert!(
        r.code != 0 && r.stderr.contains("No such container: nope"),
        "{}",
        r.stderr
    );
    assert_eq!(
        s.http("GET", "/v1.41/containers/nope/json", None),
        (404, r#"{"message":"No such container: nope"}"#.to_string())
    );
    let (code, body) = s.http("GET", "/v1.41/swarm", None);
    assert_eq!(code, 501);
    assert!(body.starts_with(r#"{"message":"#), "{body}");
    let (code, body) = s.http("GET", "/v1.99/version", None);
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.http("POST", "/containers/create", Some("{not json"));
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.http(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"nothere:1"}"#),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("No such image"), "{body}");
    let (code, body) = s.http("POST", "/containers/create", Some(r#"{"Image":7}"#));
    assert_eq!(code, 400, "{body}");
    let (code, _) = s.http("HEAD", "/_ping", None);
    assert_eq!(code, 200);
    // Fields docker does not know are ignored, as dockerd's decoder does.
    let (code, body) = s.http(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"nothere:1","NoSuchField":{"x":1}}"#),
    );
    assert_eq!(code, 404, "{body}");
    // A body far larger than any real request: refused whole, the server carries on.
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let huge = 64 << 20;
    let _ = write!(
        c,
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {huge}\r\n\r\n{{\"Image\":\""
    );
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        if c.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "{}",
        &out[..out.len().min(200)]
    );
    assert!(out.contains("body"), "{out}");
    let (code, _) = s.http("GET", "/_ping", None);
    assert_eq!(code, 200, "the server still answers");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn docker_pull_from_a_local_registry_then_run_it() {
    let env = Env::tagged("engpull", false);
    let registry = Registry::start();
    let layout = env.cli.root().join("layout");
    let reference = push_image(&registry, &layout, "runtime-test:1");
    let s = Service::start(&env);
    // `run` of an image the store lacks: the create answers 404, the client pulls
    // (`POST /images/create`, progress on its stderr) and creates again; the output and the
    // exit code come back through the hijacked attach stream and the wait.
    let r = s.docker(&["run", "--rm", "--network", "none", &reference, "echo", "hi"]);
    let r = r.success();
    assert_eq!(r.stdout, "hi\n", "stderr: {}", r.stderr);
    assert!(r.stderr.contains("Unable to find image"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("Status: Downloaded newer image for {reference}")),
        "{}",
        r.stderr
    );
    let pull = s.docker(&["pull", &reference]).success();
    assert!(
        pull.stdout
            .contains(&format!("Status: Image is up to date for {reference}")),
        "{}",
        pull.stdout
    );
    let images = s
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success();
    assert_eq!(images.stdout.trim(), reference);
    let bad = s.docker(&["pull", &registry.reference("missing:1")]);
    assert_ne!(bad.code, 0, "{}", bad.stdout);
    let r = s.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &reference,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    // A command that is not there: docker's 127, and the reason on stderr.
    let r = s.docker(&["run", "--rm", "--network", "none", &reference, "nope"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("\"nope\" not found"), "{r:?}");
    // stdin (`-i`): the client's bytes reach the process, its end closes the process's stdin.
    let mut c = Command::new(DOCKER);
    c.args([
        "run",
        "-i",
        "--rm",
        "--network",
        "none",
        &reference,
        "sh",
        "-c",
        "cat; echo end",
    ]);
    s.client_env(&mut c);
    let (code, out, err) = common::vm::wait_bytes(c, Some(b"piped in\n".to_vec()));
    assert_eq!(
        (code, &out[..]),
        (0, &b"piped in\nend\n"[..]),
        "{}",
        String::from_utf8_lossy(&err)
    );
    // A terminal (`-t`): one raw stream, no multiplexing headers.
    let r = s.docker(&[
        "run",
        "-t",
        "--rm",
        "--network",
        "none",
        &reference,
        "sh",
        "-c",
        "tty; echo x >&2",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "/dev/pts/0\r\nx\r\n"),
        "{}",
        r.stderr
    );
    // The newer client, negotiating down to API 1.41.
    if std::path::Path::new(DOCKER_NEW).exists() {
        let v = s.client(
            DOCKER_NEW,
            &["version", "--format", "{{.Server.APIVersion}}"],
        );
        assert_eq!(v.success().stdout, "1.41\n");
        let r = s.client(
            DOCKER_NEW,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                &reference,
                "sh",
                "-c",
                "echo new; exit 2",
            ],
        );
        assert_eq!((r.code, r.stdout.as_str()), (2, "new\n"), "{}", r.stderr);
    } else {
        println!("SKIPPED the newer docker client: {DOCKER_NEW} is not installed");
    }
    assert!(
        env.container_dirs().is_empty(),
        "--rm left {:?}",
        env.container_dirs()
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn a_detached_container_through_docker_ps_exec_logs_stop_rm() {
    let env = Env::tagged("engrun", true);
    let s = Service::start(&env);
    let t0 = unix_now();
    let run = s.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "--label",
        "app=web",
        IMAGE,
        "sh",
        "-c",
        "echo started; echo oops >&2; exec sleep 1000",
    ]);
    let id = run.success().stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    let ps = s
        .docker(&[
            "ps",
            "--format",
            "{{.ID}} {{.Names}} {{.Image}} {{.Status}}",
        ])
        .success();
    assert!(
        ps.stdout
            .starts_with(&format!("{} web {IMAGE} Up ", &id[..12])),
        "{}",
        ps.stdout
    );
    let ps = s
        .docker(&["ps", "-q", "--filter", "label=app=other"])
        .success();
    assert_eq!(ps.stdout, "");
    let state = s
        .docker(&["inspect", "-f", "{{.State.Status}} {{.Config.Tty}}", "web"])
        .success();
    assert_eq!(state.stdout, "running false\n");

    let exec = s.docker(&["exec", "web", "cat", "/etc/hostname"]).success();
    assert_eq!(exec.stdout, format!("{}\n", &id[..12]));
    let exec = s.docker(&[
        "exec",
        "-u",
        "0",
        "-w",
        "/",
        "web",
        "sh",
        "-c",
        "id -u; pwd; echo e >&2; exit 5",
    ]);
    assert_eq!(
        (exec.code, exec.stdout.as_str(), exec.stderr.as_str()),
        (5, "0\n/\n", "e\n")
    );
    // top, pause/unpause, rename: one runtime call each.
    let top = s.docker(&["top", "web"]).success();
    assert!(top.stdout.contains("sleep 1000"), "{}", top.stdout);
    s.docker(&["pause", "web"]).success();
    let state = s
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "web",
        ])
        .success();
    assert_eq!(state.stdout, "paused true\n");
    let r = s.docker(&["exec", "web", "true"]);
    assert!(r.code != 0 && r.stderr.contains("paused"), "{r:?}");
    s.docker(&["unpause", "web"]).success();
    s.docker(&["rename", "web", "web2"]).success();
    let r = s.docker(&["inspect", "-f", "{{.Name}}", "web2"]).success();
    assert_eq!(r.stdout, "/web2\n");
    s.docker(&["rename", "web2", "web"]).success();
    // Under a terminal: the client's window size reaches the process (`/exec/{id}/resize`).
    // API 1.41 has no initial size in the exec's config, so the client sends it just after
    // the start, as with dockerd: the process looks a moment later.
    let tty = s
        .docker_in_pty(33, 77, "exec -it web sh -c \"sleep 1; stty size\"")
        .success();
    assert!(tty.stdout.contains("33 77\r\n"), "{tty:?}");
    let exec = s.docker(&["exec", "web", "no-such-command"]);
    assert_eq!(exec.code, 127, "{exec:?}");

    // The first lines reach the log once the process runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs = s.docker(&["logs", "web"]).success();
        if logs.stdout.contains("started") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("started\n", "oops\n")
    );
    let logs = s.docker(&["logs", "-t", "--tail", "1", "web"]).success();
    let line = format!("{}{}", logs.stdout, logs.stderr);
    assert!(
        line.ends_with("Z started\n") || line.ends_with("Z oops\n"),
        "{logs:?}"
    );
    assert_eq!(line.lines().count(), 1, "{logs:?}");

    s.docker(&["stop", "-t", "1", "web"]).success();
    let state = s
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web",
        ])
        .success();
    // The process ignores SIGTERM as PID 1 (then SIGKILL after -t) or dies of it.
    assert!(
        ["exited 137\n", "exited 143\n"].contains(&state.stdout.as_str()),
        "{}",
        state.stdout
    );
    assert_eq!(s.docker(&["ps", "-q"]).success().stdout, "");
    let all = s
        .docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
        .success();
    assert!(all.stdout.starts_with("web Exited (1"), "{}", all.stdout);
    let r = s.docker(&["start", "web"]).success();
    assert_eq!(r.stdout, "web\n");
    s.docker(&["restart", "-t", "0", "web"]).success();
    let state = s
        .docker(&["inspect", "-f", "{{.State.Status}}", "web"])
        .success();
    assert_eq!(state.stdout, "running\n");
    s.docker(&["kill", "web"]).success();
    assert_eq!(s.docker(&["wait", "web"]).success().stdout, "137\n");
    let r = s.docker(&["kill", "web"]);
    assert!(r.code != 0 && r.stderr.contains("is not running"), "{r:?}");
    s.docker(&["rm", "-f", "web"]).success();
    assert_eq!(s.docker(&["ps", "-aq"]).success().stdout, "");
    assert_eq!(env.qemus(), 0);

    // docker events: the lifecycle above, replayed in order and filtered by the server.
    let events = s
        .docker(&[
            "events",
            "--since",
            &t0,
            "--until",
            &unix_now(),
            "--filter",
            "container=web",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.app}}",
        ])
        .success()
        .stdout;
    let actions: Vec<&str> = events
        .lines()
        .map(|l| {
            assert!(
                l.starts_with("container ") && l.ends_with(" web web"),
                "{l}"
            );
            l.split(' ').nth(1).unwrap()
        })
        .collect();
    let expected_in_order = [
        "create", "start", "kill", "die", "stop", "start", "restart", "die", "destroy",
    ];
    let mut at = 0;
    for want in expected_in_order {
        at += actions[at..]
            .iter()
            .position(|a| *a == want)
            .unwrap_or_else(|| panic!("no {want} after {:?} in {actions:?}", &actions[..at]));
        at += 1;
    }
    let dies = s
        .docker(&[
            "events",
            "--since",
            &t0,
            "--until",
            &unix_now(),
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.exitCode}}",
        ])
        .success()
        .stdout;
    assert!(dies.ends_with("137\n"), "{dies}");
}

/// Now as Unix seconds with nanoseconds, as docker's `--since`/`--until` take it.
fn unix_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn published_ports_and_clients_that_go_away() {
    let env = Env::tagged("engnet", false);
    let dir = env.cli.root().join("httpd-image");
    let layers = common::images::busybox_with(&["httpd", "sleep"], |l| {
        l.dir("www", 0o755, 0, 0)
            .file("www/index.html", b"served\n", 0o644, 0, 0)
    });
    let config = serde_json::json!({
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
        "ExposedPorts": {"80/tcp": {}},
    });
    let tar = common::images::archive(&dir, "localhost/httpd:1", &layers, config);
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();
    let s = Service::start_in_netns(&env);

    // The default network and `-p`: HostConfig.PortBindings through the runtime's `-p`.
    let id = s
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "18081:80",
            "localhost/httpd:1",
        ])
        .success()
        .stdout;
    assert_eq!(id.trim().len(), 64, "{id}");
    let ports = s.docker(&["ps", "--format", "{{.Ports}}"]).success();
    // docker prints each binding; ours are both loopbacks (docker's: 0.0.0.0 and ::).
    assert_eq!(ports.stdout, "127.0.0.1:18081->80/tcp, ::1:18081->80/tcp\n");
    let get = || {
        env.netns
            .exec("curl", &["-sSf", "-m", "3", "http://127.0.0.1:18081/"])
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ok, mut body) = get();
    while !ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        (ok, body) = get();
    }
    assert_eq!((ok, body.as_str()), (true, "served\n"));

    // Clients that hang up in the middle of a follow, an attach and an exec: the container
    // and the server carry on.
    for args in [
        &["logs", "-f", "web"][..],
        &["attach", "--no-stdin", "web"],
        &["exec", "web", "sleep", "30"],
    ] {
        let mut child = s.spawn_docker(args);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "docker {args:?} ended early"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let state = s
        .docker(&["inspect", "-f", "{{.State.Status}}", "web"])
        .success();
    assert_eq!(state.stdout, "running\n");
    assert_eq!(get(), (true, "served\n".to_string()));
    let logs = s.docker(&["logs", "web"]).success();
    assert!(
        logs.stderr.contains("response:200"),
        "httpd -v logs its requests: {logs:?}"
    );
    s.docker(&["rm", "-f", "web"]).success();
    assert_eq!(s.docker(&["ps", "-aq"]).success().stdout, "");
}

/// The Docker SDK for Python (Debian's `python3-docker`): its main calls, each checked in the
/// script, which prints `ok` at its end.
/// A build context: a two-stage Dockerfile whose first stage runs a step with a build
/// argument, and a second Dockerfile whose RUN fails.
fn build_context(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {IMAGE} AS base\nUSER 0\nARG MSG=default\nRUN echo \"msg=$MSG\" > /msg && echo run-output\n\
             COPY data.txt /data.txt\nCMD [\"cat\", \"/msg\", \"/data.txt\"]\n\
             FROM base AS final\nRUN exit 9\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("data.txt"), "from the context\n").unwrap();
    std::fs::write(
        dir.join("fail.Dockerfile"),
        format!("FROM {IMAGE}\nRUN echo failing-step && exit 3\n"),
    )
    .unwrap();
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn docker_build_run_history_save_load_push_prune() {
    let env = Env::tagged("engbuild", true);
    let registry = Registry::start();
    let s = Service::start(&env);
    let ctx = env.cli.root().join("ctx");
    build_context(&ctx);
    let ctx = ctx.to_str().unwrap();
    // The classic builder's API: steps and RUN's output stream back; `--target` leaves out
    // the failing last stage.
    let b = s.docker(&[
        "build",
        "-t",
        "built:1",
        "--build-arg",
        "MSG=hello",
        "--target",
        "base",
        ctx,
    ]);
    let b = b.success();
    assert!(b.stdout.contains("run-output"), "{}", b.stdout);
    // docker's classic builder's step lines, counted over the stages built.
    assert!(
        b.stdout
            .contains(&format!("Step 1/6 : FROM {IMAGE} AS base\n"))
            && b.stdout.contains("Step 4/6 : RUN echo \"msg=$MSG\""),
        "{}",
        b.stdout
    );
    assert!(
        b.stdout.contains("Successfully tagged built:1"),
        "{}",
        b.stdout
    );
    let id = b
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("{}", b.stdout))
        .to_string();
    let inspect = s
        .docker(&["image", "inspect", "-f", "{{.Id}}", "built:1"])
        .success();
    assert!(
        inspect.stdout.starts_with(&format!("sha256:{id}")),
        "{}",
        inspect.stdout
    );
    let r = s
        .docker(&["run", "--rm", "--network", "none", "built:1"])
        .success();
    assert_eq!(r.stdout, "msg=hello\nfrom the context\n");
    // A failing RUN: its output, docker's message, the step's exit code.
    let f = s.docker(&["build", "-f", &format!("{ctx}/fail.Dockerfile"), ctx]);
    assert_eq!(f.code, 3, "{f:?}");
    assert!(f.stdout.contains("failing-step"), "{f:?}");
    assert!(f.stderr.contains("exit code: 3"), "{f:?}");
    // docker 28 falls back to this API (no BuildKit advertised); all from the cache.
    if std::path::Path::new(DOCKER_NEW).exists() {
        let b = s.client(
            DOCKER_NEW,
            &[
                "build",
                "-q",
                "-t",
                "built:new",
                "--build-arg",
                "MSG=hello",
                "--target",
                "base",
                ctx,
            ],
        );
        assert_eq!(b.success().stdout, inspect.stdout);
    } else {
        println!("SKIPPED the newer docker client: {DOCKER_NEW} is not installed");
    }

    let h = s
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "built:1",
        ])
        .success();
    assert!(h.stdout.contains("msg=$MSG"), "{}", h.stdout);
    assert!(h.stdout.contains("COPY data.txt"), "{}", h.stdout);

    // save | load, through a file.
    let tar = env.cli.root().join("saved.tar");
    s.docker(&["save", "-o", tar.to_str().unwrap(), "built:1"])
        .success();
    s.docker(&["rmi", "built:1", "built:new"]);
    let l = s.docker(&["load", "-i", tar.to_str().unwrap()]).success();
    assert!(l.stdout.contains("Loaded image: built:1"), "{}", l.stdout);
    let (code, body) = s.http("POST", "/images/load", Some("not a tar"));
    assert_eq!(code, 400, "{body}");

    // push to the registry, then pull it back under its name.
    let remote = registry.reference("built:1");
    s.docker(&["tag", "built:1", &remote]).success();
    let p = s.docker(&["push", &remote]).success();
    assert!(p.stdout.contains("1: digest: sha256:"), "{}", p.stdout);
    s.docker(&["rmi", &remote]).success();
    s.docker(&["pull", &remote]).success();

    // prune: what no name reaches, then (-a) every image no container uses.
    let p = s.docker(&["image", "prune", "-f"]).success();
    assert!(p.stdout.contains("Total reclaimed space"), "{}", p.stdout);
    let p = s.docker(&["image", "prune", "-a", "-f"]).success();
    assert!(p.stdout.contains("untagged: built:1"), "{}", p.stdout);
    let images = s.docker(&["images", "-q"]).success();
    assert_eq!(images.stdout, "", "prune -a left images");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn docker_cp_export_stats_and_container_prune() {
    let env = Env::tagged("engcp", true);
    let s = Service::start(&env);
    s.docker(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "1000",
    ])
    .success();
    s.docker(&[
        "exec",
        "box",
        "sh",
        "-c",
        "mkdir -p /tmp/d/sub && echo one > /tmp/d/a && echo two > /tmp/d/sub/b",
    ])
    .success();
    let host = env.cli.root().join("host");
    std::fs::create_dir_all(host.join("src/y")).unwrap();
    std::fs::write(host.join("src/x"), "ex\n").unwrap();
    std::fs::write(host.join("src/y/z"), "zed\n").unwrap();
    let h = |p: &str| host.join(p).to_str().unwrap().to_string();
    // Out: a directory and a file.
    s.docker(&["cp", "box:/tmp/d", &h("out")]).success();
    assert_eq!(
        std::fs::read_to_string(host.join("out/a")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out/sub/b")).unwrap(),
        "two\n"
    );
    s.docker(&["cp", "box:/tmp/d/a", &h("file")]).success();
    assert_eq!(std::fs::read_to_string(host.join("file")).unwrap(), "one\n");
    // In: a directory under a new name, a file into a directory.
    s.docker(&["cp", &h("src"), "box:/tmp/in"]).success();
    s.docker(&["cp", &h("file"), "box:/tmp/d/"]).success();
    let cat = s
        .docker(&[
            "exec",
            "box",
            "cat",
            "/tmp/in/x",
            "/tmp/in/y/z",
            "/tmp/d/file",
        ])
        .success();
    assert_eq!(cat.stdout, "ex\nzed\none\n");
    let r = s.docker(&["cp", "box:/nope", &h("nope")]);
    assert!(r.code != 0 && r.stderr.contains("/nope"), "{r:?}");
    // The API's answers for what does not exist and for a file where a directory must be.
    assert_eq!(
        s.http("HEAD", "/containers/box/archive?path=/nope", None).0,
        404
    );
    assert_eq!(
        s.http("PUT", "/containers/box/archive?path=/nope", Some(""))
            .0,
        404
    );
    assert_eq!(
        s.http("PUT", "/containers/box/archive?path=/tmp/d/a", Some(""))
            .0,
        400
    );

    let tar = env.cli.root().join("export.tar");
    s.docker(&["export", "-o", tar.to_str().unwrap(), "box"])
        .success();
    let list = common::tool("tar", &["tf", tar.to_str().unwrap()]);
    assert!(list.contains("tmp/d/sub/b"), "{list}");
    assert!(list.contains("bin/busybox"), "{list}");

    let st = s
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
            "box",
        ])
        .success();
    let row: Vec<&str> = st.stdout.trim().split('|').collect();
    assert_eq!(row.len(), 4, "{}", st.stdout);
    assert_eq!(row[0], "box");
    assert!(row[1].ends_with('%'), "{}", st.stdout);
    let (used, limit) = row[2].split_once(" / ").unwrap();
    assert!(
        !used.starts_with("0B") && limit.ends_with("iB"),
        "{}",
        st.stdout
    );
    assert_ne!(row[3], "0", "{}", st.stdout);

    // A stopped container too, as `container cp`: its VM boots held for the copy.
    s.docker(&["stop", "-t", "1", "box"]).success();
    s.docker(&["cp", "box:/tmp/in/x", &h("stopped")]).success();
    assert_eq!(
        std::fs::read_to_string(host.join("stopped")).unwrap(),
        "ex\n"
    );
    let state = s
        .docker(&["inspect", "-f", "{{.State.Status}}", "box"])
        .success();
    assert_eq!(state.stdout, "exited\n");
    s.docker(&["rm", "-f", "box"]).success();
    let created = s
        .docker(&[
            "create",
            "--network",
            "none",
            "--label",
            "keep=no",
            IMAGE,
            "true",
        ])
        .success();
    let kept = s
        .docker(&[
            "create",
            "--network",
            "none",
            "--label",
            "keep=yes",
            IMAGE,
            "true",
        ])
        .success();
    let p = s
        .docker(&["container", "prune", "-f", "--filter", "label=keep=no"])
        .success();
    assert!(p.stdout.contains(created.stdout.trim()), "{}", p.stdout);
    assert!(p.stdout.contains("Total reclaimed space"), "{}", p.stdout);
    let left = s.docker(&["ps", "-aq", "--no-trunc"]).success();
    assert_eq!(left.stdout.trim(), kept.stdout.trim());
}

const SDK_SCRIPT: &str = r#"
import io, os, sys, tarfile, tempfile, docker
c = docker.DockerClient(base_url=sys.argv[1], version="auto")
image = sys.argv[2]
assert c.version()["ApiVersion"] == "1.41"
assert image in [t for i in c.images.list() for t in i.tags]
# run: create, start, logs (followed), wait, remove. stdout and stderr are two pipes (as under
# docker): lines written a moment apart keep their order; written back to back, either may
# be read first.
out = c.containers.run(image, ["sh", "-c", "echo sdk; sleep 0.2; echo err >&2"], network_mode="none",
                       remove=True, stderr=True)
assert out == b"sdk\nerr\n", out
ct = c.containers.run(image, ["sleep", "100"], network_mode="none", detach=True, name="sdk1",
                      labels={"a": "b"})
assert [x.name for x in c.containers.list(filters={"label": "a=b"})] == ["sdk1"]
r = ct.exec_run(["sh", "-c", "echo in-exec; exit 4"])
assert (r.exit_code, r.output) == (4, b"in-exec\n"), r
ct.reload()
assert ct.attrs["State"]["Status"] == "running"
# archives: a directory out (its stat in the header), a tar in, a missing path
ct.exec_run(["sh", "-c", "mkdir -p /tmp/d && echo hello > /tmp/d/f"])
bits, stat = ct.get_archive("/tmp/d")
assert stat["name"] == "d" and stat["mode"] & (1 << 31), stat
t = tarfile.open(fileobj=io.BytesIO(b"".join(bits)))
assert t.extractfile("d/f").read() == b"hello\n", t.getnames()
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"put\n"
    info = tarfile.TarInfo("new.txt")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
assert ct.put_archive("/tmp", buf.getvalue())
assert ct.exec_run(["cat", "/tmp/new.txt"]).output == b"put\n"
try:
    ct.put_archive("/nope", buf.getvalue())
    raise SystemExit("put_archive to a missing directory succeeded")
except docker.errors.NotFound:
    pass
st = ct.stats(stream=False)
assert st["name"] == "/sdk1" and st["memory_stats"]["usage"] > 0, st
assert st["cpu_stats"]["system_cpu_usage"] > st["precpu_stats"]["system_cpu_usage"], st
ct.stop(timeout=1)
ct.reload()
assert ct.status == "exited", ct.status
ct.remove(force=True)
try:
    c.containers.get("sdk1")
    raise SystemExit("sdk1 still there")
except docker.errors.NotFound:
    pass
# build: a context without RUN (no builder VM), tagged
ctx = tempfile.mkdtemp()
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write("FROM %s\nCOPY f.txt /f.txt\nLABEL built=yes\n" % image)
with open(os.path.join(ctx, "f.txt"), "w") as f:
    f.write("file\n")
built, logs = c.images.build(path=ctx, tag="sdkbuilt:1")
assert "sdkbuilt:1" in built.tags and built.labels["built"] == "yes", built.attrs
assert any("Successfully built" in l.get("stream", "") for l in logs)
print("ok")
"#;

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn the_docker_sdk_for_python() {
    let env = Env::tagged("engsdk", true);
    let s = Service::start(&env);
    let script = env.cli.root().join("sdk.py");
    std::fs::write(&script, SDK_SCRIPT).unwrap();
    // Debian's interpreter and its python3-docker, whatever else is first on PATH.
    let mut c = Command::new("/usr/bin/python3");
    c.arg(&script)
        .arg(format!("unix://{}", s.socket.display()))
        .arg(IMAGE);
    let r = wait_output(c);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ok\n"), "{}", r.stderr);
}

/// An image with busybox's httpd (with `-v`, it logs each request), `nc` and `nslookup`, loaded
/// into `env` as `localhost/nettools:1`; `/www` holds a page.
fn load_nettools(env: &Env) -> &'static str {
    const REF: &str = "localhost/nettools:1";
    let dir = env.cli.root().join("nettools-image");
    let layers = common::images::busybox_with(&["httpd", "nc", "nslookup", "sleep", "cat"], |l| {
        l.dir("www", 0o755, 0, 0)
            .file("www/index.html", b"served\n", 0o644, 0, 0)
    });
    let config = serde_json::json!({
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
        "ExposedPorts": {"80/tcp": {}},
    });
    let tar = common::images::archive(&dir, REF, &layers, config);
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();
    REF
}

/// A shell line that GETs `/` of `host` port 80 with busybox `nc` (the static busybox's
/// `wget` crashes) and prints the answer.
fn http_get(host: &str) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 80")
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn docker_networks_volumes_and_network_aliases() {
    let env = Env::tagged("engnv", false);
    let image = load_nettools(&env);
    let s = Service::start_in_netns(&env);

    // Networks: create with docker's flags, list with filters, inspect by name and id prefix.
    let id = s
        .docker(&[
            "network",
            "create",
            "--label",
            "tier=front",
            "--subnet",
            "10.77.0.0/24",
            "--gateway",
            "10.77.0.254",
            "--ipv6",
            "--subnet",
            "fd00:77::/64",
            "front",
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    assert!(id.len() >= 12, "{id}");
    s.docker(&["network", "create", "front"])
        .refused("already exists");
    s.docker(&["network", "create", "-d", "overlay", "ov"])
        .refused("overlay");
    let ls = s
        .docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ])
        .success();
    assert!(ls.stdout.contains("front bridge local\n"), "{}", ls.stdout);
    assert!(
        ls.stdout.contains("default bridge local\n"),
        "ours: {}",
        ls.stdout
    );
    let by_label = s
        .docker(&[
            "network",
            "ls",
            "-q",
            "--no-trunc",
            "--filter",
            "label=tier=front",
        ])
        .success();
    assert_eq!(by_label.stdout.trim(), id);
    let custom = s
        .docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "type=custom",
        ])
        .success();
    assert_eq!(custom.stdout, "front\n");
    let doc = s
        .docker(&[
            "network", "inspect", &id[..10], "-f",
            "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Labels.tier}}",
        ])
        .success();
    assert_eq!(
        doc.stdout,
        "front bridge 10.77.0.0/24 10.77.0.254fd00:77::/64 fd00:77::1 front\n"
    );
    let bridge = s
        .docker(&["network", "inspect", "bridge", "-f", "{{.Name}}"])
        .success();
    assert_eq!(
        bridge.stdout, "default\n",
        "docker's bridge is our default network"
    );
    s.docker(&["network", "inspect", "nothere"])
        .refused("No such network: nothere");

    // Volumes: create with labels, list with filters, inspect, a generated name.
    s.docker(&["volume", "create", "--label", "k=v", "data"])
        .success();
    let anon = s
        .docker(&["volume", "create"])
        .success()
        .stdout
        .trim()
        .to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    let ls = s
        .docker(&["volume", "ls", "-q", "--filter", "label=k=v"])
        .success();
    assert_eq!(ls.stdout, "data\n");
    let v = s
        .docker(&[
            "volume",
            "inspect",
            "data",
            "-f",
            "{{.Name}} {{.Driver}} {{.Labels.k}} {{.Scope}}",
        ])
        .success();
    assert_eq!(v.stdout, "data local v local\n");
    s.docker(&["volume", "create", "-o", "type=nfs", "remote"])
        .refused("driver options");
    s.docker(&["volume", "inspect", "nothere"])
        .refused("no such volume");

    // A server on the network under an alias, a volume mounted, a peer reaching the alias.
    s.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "-v",
        "data:/data",
        image,
    ])
    .success();
    let aliases = s
        .docker(&[
            "inspect", "-f",
            "{{json .NetworkSettings.Networks.front.Aliases}} {{.NetworkSettings.Networks.front.NetworkID}} {{.NetworkSettings.Networks.front.IPAddress}}",
            "web",
        ])
        .success();
    let v6 = s
        .docker(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.front.GlobalIPv6Address}}",
            "web",
        ])
        .success();
    assert_eq!(v6.stdout, "fd00:77::2\n");
    let web_id = s
        .docker(&["inspect", "-f", "{{.Id}}", "web"])
        .success()
        .stdout;
    let (json, rest) = aliases.stdout.trim().split_once(' ').unwrap();
    assert_eq!(json, format!("[\"www\",\"{}\"]", &web_id[..12]));
    let (net_id, ip) = rest.split_once(' ').unwrap();
    assert_eq!(net_id, id);
    assert!(ip.starts_with("10.77.0."), "{ip}");
    let got = retry(|| {
        let r = s.docker(&[
            "run",
            "--rm",
            "--network",
            "front",
            image,
            "sh",
            "-c",
            &http_get("www"),
        ]);
        r.stdout.contains("served").then_some(r.stdout)
    });
    assert!(got.is_some(), "a peer reaches the alias www");
    let containers = s
        .docker(&[
            "network",
            "inspect",
            "front",
            "-f",
            "{{range .Containers}}{{.Name}} {{.IPv4Address}} {{.IPv6Address}}{{end}}",
        ])
        .success();
    assert_eq!(containers.stdout, format!("web {ip}/24 fd00:77::2/64\n"));

    // A fixed address (docker's --ip: EndpointsConfig IPAMConfig), checked at create.
    s.docker(&[
        "run",
        "-d",
        "--name",
        "pinned",
        "--network",
        "front",
        "--ip",
        "10.77.0.50",
        image,
    ])
    .success();
    let pinned = s
        .docker(&[
            "inspect", "-f",
            "{{.NetworkSettings.Networks.front.IPAddress}} {{.NetworkSettings.Networks.front.IPAMConfig.IPv4Address}}",
            "pinned",
        ])
        .success();
    assert_eq!(pinned.stdout, "10.77.0.50 10.77.0.50\n");
    s.docker(&["rm", "-f", "pinned"]).success();
    s.docker(&["create", "--network", "front", "--ip", "10.78.0.5", image])
        .refused("not a free host address of network front");

    // In use: the network (docker's 403) and the volume (409) stay.
    s.docker(&["network", "rm", "front"]).refused("in use");
    s.docker(&["volume", "rm", "data"]).refused("in use");
    // A running container cannot change networks; a stopped one can.
    s.docker(&["network", "connect", "default", "web"])
        .refused("stop it first");
    s.docker(&["create", "--name", "idle", "--network", "none", image])
        .success();
    s.docker(&["rm", "idle"]).success();
    s.docker(&["create", "--name", "idle", image]).success();
    s.docker(&["network", "connect", "--alias", "spare", "front", "idle"])
        .success();
    let nets = s
        .docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{json $v.Aliases}} {{end}}",
            "idle",
        ])
        .success();
    let idle_id = s
        .docker(&["inspect", "-f", "{{.Id}}", "idle"])
        .success()
        .stdout;
    let short = &idle_id[..12];
    assert_eq!(
        nets.stdout.trim(),
        format!("default=[\"{short}\"] front=[\"spare\",\"{short}\"]")
    );
    s.docker(&["network", "disconnect", "front", "idle"])
        .success();
    s.docker(&["network", "disconnect", "front", "idle"])
        .refused("not connected");
    s.docker(&["rm", "idle"]).success();

    s.docker(&["rm", "-f", "web"]).success();
    s.docker(&["network", "rm", "front"]).success();
    s.docker(&["network", "inspect", "front"])
        .refused("No such network");
    // Prune: a label filter keeps what it does not select; unused volumes go, named or not.
    s.docker(&["network", "create", "--label", "keep=1", "kept"])
        .success();
    s.docker(&["network", "create", "gone"]).success();
    let pruned = s
        .docker(&["network", "prune", "-f", "--filter", "label!=keep"])
        .success();
    assert!(pruned.stdout.contains("gone"), "{}", pruned.stdout);
    let left = s
        .docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "type=custom",
        ])
        .success();
    assert_eq!(left.stdout, "kept\n");
    s.docker(&["network", "rm", "kept"]).success();
    s.docker(&["network", "rm", "default"])
        .refused("pre-defined network and cannot be removed");
    s.docker(&["volume", "rm", &anon]).success();
    s.docker(&["volume", "rm", "-f", &anon]).success();
    s.docker(&["volume", "create", "--label", "keep=1", "precious"])
        .success();
    let pruned = s
        .docker(&["volume", "prune", "-f", "--filter", "label=k=v"])
        .success();
    assert!(pruned.stdout.contains("data"), "{}", pruned.stdout);
    let left = s.docker(&["volume", "ls", "-q"]).success();
    assert_eq!(left.stdout, "precious\n");
    s.docker(&["volume", "prune", "-f"]).success();
    assert_eq!(s.docker(&["volume", "ls", "-q"]).success().stdout, "");
    assert_eq!(s.docker(&["ps", "-aq"]).success().stdout, "");
}

/// The project of [`docker_compose_up_ps_logs_exec_down`]: a web server publishing a port and
/// writing its page into a named volume, and a client on the project network.
const COMPOSE_FILE: &str = r#"version: "2.4"
services:
  web:
    image: IMAGE
    command: ["sh", "-c", "echo compose-page > /www/index.html; exec httpd -f -v -p 80 -h /www"]
    ports:
      - "18092:80"
    volumes:
      - pages:/www
  client:
    image: IMAGE
    command: ["sleep", "600"]
    depends_on:
      - web
volumes:
  pages: {}
"#;

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn docker_compose_up_ps_logs_exec_down() {
    const COMPOSE: &str = "/usr/bin/docker-compose";
    assert!(
        std::path::Path::new(COMPOSE).exists(),
        "{COMPOSE} is missing: install Debian's docker-compose (scripts/setup.sh)"
    );
    let env = Env::tagged("engcmp", false);
    let image = load_nettools(&env);
    let s = Service::start_in_netns(&env);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        COMPOSE_FILE.replace("IMAGE", image),
    )
    .unwrap();
    let compose_cmd = |args: &[&str]| {
        let mut c = Command::new(COMPOSE);
        c.args(["-p", "cmp"])
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .env("COMPOSE_INTERACTIVE_NO_CLI", "")
            // Debian's docker client first, for the commands compose hands over to it (exec).
            .env(
                "PATH",
                format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
            );
        s.client_env(&mut c);
        c
    };
    let compose = |args: &[&str]| wait_output(compose_cmd(args));

    compose(&["up", "-d"]).success();
    let ps = compose(&["ps"]).success();
    for name in ["cmp_web_1", "cmp_client_1"] {
        assert!(
            ps.stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains(" Up")),
            "{}",
            ps.stdout
        );
    }
    assert!(ps.stdout.contains("18092->80/tcp"), "{}", ps.stdout);
    // The project's network and volume, made by compose with its labels.
    let nets = s
        .docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "label=com.docker.compose.project=cmp",
        ])
        .success();
    assert_eq!(nets.stdout, "cmp_default\n");
    let vols = s
        .docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project=cmp",
        ])
        .success();
    assert_eq!(vols.stdout, "cmp_pages\n");

    // The client reaches the server by its service name on the project network; the page
    // came from the named volume the server wrote.
    let got = retry(|| {
        let r = compose(&["exec", "-T", "client", "sh", "-c", &http_get("web")]);
        r.stdout.contains("compose-page").then_some(r)
    });
    assert!(got.is_some(), "client → web by service name");
    // The published port, from the host.
    let host = retry(|| {
        let (ok, body) = env
            .netns
            .exec("curl", &["-sSf", "-m", "3", "http://127.0.0.1:18092/"]);
        ok.then_some(body)
    });
    assert_eq!(host.as_deref(), Some("compose-page\n"));
    let logs = compose(&["logs", "--no-color", "web"]).success();
    assert!(logs.stdout.contains("response:200"), "{logs:?}");
    // Again: compose finds its network, volume and containers as it left them.
    let again = compose(&["up", "-d"]).success();
    assert!(
        again.stderr.contains("cmp_web_1 is up-to-date"),
        "{}",
        again.stderr
    );

    // `logs -f` follows until the service's container dies, which compose learns from
    // `/events`; `run --rm` gives the one-off's exit code.
    let follow = {
        let cmd = compose_cmd(&["logs", "-f", "--no-color", "--tail", "0", "web"]);
        std::thread::spawn(move || wait_output(cmd))
    };
    // `--tail 0`: only lines logged after compose attached count, and attaching (a container
    // list, then the logs stream) takes a moment on a loaded machine.
    std::thread::sleep(Duration::from_secs(3));
    let fresh = retry(|| {
        let get = "printf 'GET /again HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80";
        let r = compose(&["exec", "-T", "client", "sh", "-c", get]);
        r.stdout.contains("404").then_some(r)
    });
    assert!(fresh.is_some(), "a request for a missing page");
    std::thread::sleep(Duration::from_secs(1));
    compose(&["stop", "-t", "1", "web"]).success();
    let followed = follow.join().unwrap().success();
    assert!(followed.stdout.contains("response:404"), "{followed:?}");
    compose(&["start", "web"]).success();
    let once = compose(&[
        "run",
        "--rm",
        "-T",
        "client",
        "sh",
        "-c",
        "echo one-off; exit 4",
    ]);
    assert_eq!(once.code, 4, "{once:?}");
    assert!(once.stdout.contains("one-off"), "{once:?}");

    compose(&["down", "-v"]).success();
    assert_eq!(s.docker(&["ps", "-aq"]).success().stdout, "");
    let nets = s
        .docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "type=custom",
        ])
        .success();
    assert_eq!(nets.stdout, "", "down removes the project network");
    assert_eq!(s.docker(&["volume", "ls", "-q"]).success().stdout, "");
    assert_eq!(env.qemus(), 0);
}

/// The `HostConfig` fields of docker's everyday flags, sent by the docker CLI: `--ulimit`,
/// `--sysctl`, `--shm-size`, `--volumes-from`, `--log-opt`; one running container shows them.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, the docker CLI and network namespaces: run scripts/test.sh"
)]
fn docker_run_limits_kernel_settings_volumes_from_and_log_options() {
    let env = Env::tagged("engflags", true);
    let s = Service::start(&env);
    s.docker(&["create", "--name", "data", "-v", "/anon", IMAGE])
        .success();
    let script = "i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); done; sleep 600";
    s.docker(&[
        "run",
        "-d",
        "--name",
        "p",
        "-u",
        "0",
        "--network",
        "none",
        "--ulimit",
        "nofile=256:512",
        "--sysctl",
        "kernel.shmmax=65536",
        "--shm-size",
        "128m",
        "--device",
        "/dev/net/tun",
        "--volumes-from",
        "data",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        IMAGE,
        "sh",
        "-c",
        script,
    ])
    .success();
    let check = "grep 'open files' /proc/self/limits; cat /proc/sys/kernel/shmmax; \
                 grep ' /dev/shm ' /proc/mounts; echo x > /anon/f && echo written; \
                 ls -l /dev/net/tun | busybox awk '{print $5 $6}'";
    let out = s.docker(&["exec", "p", "sh", "-c", check]).success().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Max", "open", "files", "256", "512", "files"],
        "{out}"
    );
    assert_eq!(lines[1], "65536", "{out}");
    assert!(lines[2].contains("size=131072k"), "{out}");
    assert_eq!(lines[3], "written", "{out}");
    assert_eq!(lines[4], "10,200", "{out}");
    let h = s
        .docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.Ulimits}} {{json .HostConfig.Sysctls}} {{.HostConfig.ShmSize}} \
             {{json .HostConfig.VolumesFrom}} {{json .HostConfig.LogConfig.Config}}",
            "p",
        ])
        .success()
        .stdout;
    assert_eq!(
        h.trim(),
        r#"[{"Name":"nofile","Hard":512,"Soft":256}] {"kernel.shmmax":"65536"} 134217728 ["data"] {"max-file":"2","max-size":"1k"}"#
    );
    // The log was rotated into two files of about 1 KB: the last lines, in order.
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let logs = s.docker(&["logs", "p"]).success().stdout;
        if logs.ends_with("line 100\n") {
            break logs;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let numbers: Vec<u32> = logs
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.len() < 50, "{logs}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{logs}");
    s.docker(&["run", "--rm", "--sysctl", "vm.swappiness=1", IMAGE, "true"])
        .refused("vm.swappiness");
    s.docker(&["run", "--rm", "--device", "/dev/sda", IMAGE, "true"])
        .refused("/dev/sda");
}
