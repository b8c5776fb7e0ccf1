//! Unix sockets across the VM boundary, with OpenSSH's agent as the real client and server on
//! both sides: a host socket bound into a container (`-v HOST.sock:PATH`, `--ssh`) and a
//! container's socket published on the host (`--publish-socket`). Needs what tests/run.rs
//! needs, plus openssh-client (ssh-agent, ssh-add, ssh-keygen) on the host.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use common::images;
use common::{vm, Run};
use serde_json::json;

const IMAGE: &str = "localhost/ssh-test:1";

/// Busybox with the host's ssh-agent and ssh-add and their libraries.
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssh-image");
        let _ = std::fs::remove_dir_all(&dir);
        let layers = images::busybox_with(&["test", "grep"], |l| {
            images::with_host_programs(l, &[&which("ssh-agent"), &which("ssh-add")])
        });
        let config = json!({
            "Env": ["PATH=/usr/bin:/bin"],
            "Cmd": ["sh"],
        });
        images::archive(&dir, IMAGE, &layers, config)
    })
}

fn which(program: &str) -> String {
    for dir in ["/usr/bin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{program} not found: install openssh-client (scripts/setup.sh)");
}

/// A host ssh-agent on a socket of its own, with one key whose comment is `COMMENT`.
struct HostAgent {
    child: Child,
    socket: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

const COMMENT: &str = "socket-relay-test";

impl HostAgent {
    fn start() -> HostAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new(which("ssh-agent"))
            .args(["-D", "-a"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let key = dir.path().join("key");
        let gen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", COMMENT, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen");
        assert!(gen.status.success(), "{gen:?}");
        let agent = HostAgent {
            child,
            socket,
            key,
            _dir: dir,
        };
        common::retry(|| agent.socket.exists().then_some(())).expect("ssh-agent's socket");
        agent
    }

    /// `ssh-add ARGS` against the agent at `socket`.
    fn ssh_add(socket: &Path, args: &[&Path]) -> Run {
        let o = Command::new(which("ssh-add"))
            .args(args)
            .env("SSH_AUTH_SOCK", socket)
            .output()
            .expect("ssh-add");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env(tag: &str) -> vm::Env {
    let env = vm::Env::tagged(tag, false);
    env.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
        .success();
    env
}

/// `container ARGS…` with `SSH_AUTH_SOCK` set (or unset) in the CLI's environment.
fn run_with_agent(env: &vm::Env, socket: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = env.cli.command(args);
    match socket {
        Some(s) => cmd.env("SSH_AUTH_SOCK", s),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    vm::wait_output(cmd)
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn host_sockets_reach_the_container_through_binds_and_ssh() {
    let agent = HostAgent::start();
    HostAgent::ssh_add(&agent.socket, &[&agent.key]).success();
    let env = env("sock");

    // --ssh: the host's agent at Apple's path, SSH_AUTH_SOCK pointing there.
    let r = run_with_agent(
        &env,
        Some(&agent.socket),
        &[
            "run",
            "--rm",
            "--ssh",
            IMAGE,
            "sh",
            "-c",
            "echo $SSH_AUTH_SOCK; ssh-add -l",
        ],
    )
    .success();
    assert!(
        r.stdout.starts_with("/run/host-services/ssh-auth.sock\n") && r.stdout.contains(COMMENT),
        "{r:?}"
    );

    // A socket as a -v source, twice in one container, each connection relayed.
    let bind = format!("{}:/tmp/a.sock", agent.socket.display());
    let bind2 = format!("{}:/tmp/b.sock", agent.socket.display());
    let r = env
        .run(&[
            "run",
            "--rm",
            "-v",
            &bind,
            "-v",
            &bind2,
            IMAGE,
            "sh",
            "-c",
            "test -S /tmp/a.sock && SSH_AUTH_SOCK=/tmp/a.sock ssh-add -l && \
             SSH_AUTH_SOCK=/tmp/b.sock ssh-add -l && SSH_AUTH_SOCK=/tmp/a.sock ssh-add -l",
        ])
        .success();
    assert_eq!(r.stdout.matches(COMMENT).count(), 3, "{r:?}");
    // The guest socket has the host socket's owner and mode (ssh-agent's 0600, root's), so
    // another user of the container is refused, as with a bind of the host socket itself.
    let r = env.run(&[
        "run",
        "--rm",
        "-u",
        "1000",
        "-v",
        &bind,
        IMAGE,
        "sh",
        "-c",
        "SSH_AUTH_SOCK=/tmp/a.sock ssh-add -l",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("Permission denied"), "{r:?}");

    // Without an agent, --ssh says so and creates nothing.
    let r = run_with_agent(&env, None, &["run", "--rm", "--ssh", IMAGE, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("SSH_AUTH_SOCK is not set"), "{r:?}");
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_container_socket_is_published_on_the_host() {
    let agent = HostAgent::start();
    let env = env("psock");
    let dir = tempfile::tempdir().expect("tempdir");
    let published = dir.path().join("published.sock");
    let spec = format!("{}:/tmp/agent.sock", published.display());
    env.run(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--publish-socket",
        &spec,
        IMAGE,
        "ssh-agent",
        "-D",
        "-a",
        "/tmp/agent.sock",
    ])
    .success();
    // The host socket exists once the container runs; the agent inside answers through it
    // once it listens.
    let listed = common::retry(|| {
        let r = HostAgent::ssh_add(&published, &[Path::new("-l")]);
        r.stdout.contains("no identities").then_some(r)
    });
    assert!(
        listed.is_some(),
        "no answer through {}",
        published.display()
    );
    // A key added from the host lands in the container's agent.
    HostAgent::ssh_add(&published, &[&agent.key]).success();
    let r = env
        .run(&[
            "exec",
            "-e",
            "SSH_AUTH_SOCK=/tmp/agent.sock",
            "srv",
            "ssh-add",
            "-l",
        ])
        .success();
    assert!(r.stdout.contains(COMMENT), "{r:?}");
    // Many connections one after another, each its own relay.
    for _ in 0..5 {
        let r = HostAgent::ssh_add(&published, &[Path::new("-l")]);
        assert!(r.stdout.contains(COMMENT), "{r:?}");
    }
    // Another container cannot take the published path over while it is served.
    let r = env.run(&["run", "--rm", "--publish-socket", &spec, IMAGE, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("another process listens there"), "{r:?}");
    // Stopping the container removes the host socket.
    env.run(&["stop", "-t", "1", "srv"]).success();
    assert!(
        !published.exists(),
        "the published socket outlived its container"
    );

    // A path that holds something else is never replaced.
    let file = dir.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    let spec = format!("{}:/tmp/x.sock", file.display());
    let r = env.run(&["run", "--rm", "--publish-socket", &spec, IMAGE, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("is not a socket"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // Bad specs fail before anything is made.
    env.run(&["run", "--rm", "--publish-socket", "rel:/x", IMAGE, "true"])
        .fails_with("both paths must be absolute");
    env.run(&[
        "run",
        "--rm",
        "--publish-socket",
        "/nonexistent-dir/s.sock:/x",
        IMAGE,
        "true",
    ])
    .fails_with("does not exist");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn pod_members_relay_sockets_both_ways() {
    let agent = HostAgent::start();
    HostAgent::ssh_add(&agent.socket, &[&agent.key]).success();
    let env = env("podsock");
    env.run(&["pod", "create", "sp"]).success();
    // A host socket bound into a member, twice: its listener in the pod's VM is closed when
    // the member ends, so the next run of the same container can listen again.
    let bind = format!("{}:/tmp/a.sock", agent.socket.display());
    env.run(&[
        "create",
        "--pod",
        "sp",
        "--name",
        "client",
        "-v",
        &bind,
        IMAGE,
        "sh",
        "-c",
        "SSH_AUTH_SOCK=/tmp/a.sock ssh-add -l",
    ])
    .success();
    for _ in 0..2 {
        let r = env.run(&["start", "-a", "client"]).success();
        assert!(r.stdout.contains(COMMENT), "{r:?}");
    }
    // A member's socket published on the host, removed when the member stops while the pod
    // runs on.
    let dir = tempfile::tempdir().expect("tempdir");
    let published = dir.path().join("member.sock");
    let spec = format!("{}:/tmp/agent.sock", published.display());
    env.run(&[
        "run",
        "-d",
        "--pod",
        "sp",
        "--name",
        "srv",
        "--publish-socket",
        &spec,
        IMAGE,
        "ssh-agent",
        "-D",
        "-a",
        "/tmp/agent.sock",
    ])
    .success();
    let listed = common::retry(|| {
        let r = HostAgent::ssh_add(&published, &[Path::new("-l")]);
        r.stdout.contains("no identities").then_some(r)
    });
    assert!(
        listed.is_some(),
        "no answer through {}",
        published.display()
    );
    HostAgent::ssh_add(&published, &[&agent.key]).success();
    let r = env
        .run(&[
            "exec",
            "-e",
            "SSH_AUTH_SOCK=/tmp/agent.sock",
            "srv",
            "ssh-add",
            "-l",
        ])
        .success();
    assert!(r.stdout.contains(COMMENT), "{r:?}");
    env.run(&["stop", "-t", "1", "srv"]).success();
    assert!(
        !published.exists(),
        "the published socket outlived its member"
    );
    // The pod's VM runs on, and the member's listener is gone from it: a new member with the
    // same socket bind listens again.
    let r = env
        .run(&[
            "run",
            "--rm",
            "--pod",
            "sp",
            "-v",
            &bind,
            IMAGE,
            "sh",
            "-c",
            "SSH_AUTH_SOCK=/tmp/a.sock ssh-add -l",
        ])
        .success();
    assert!(r.stdout.contains(COMMENT), "{r:?}");
    env.run(&["pod", "rm", "-f", "sp"]).success();
}
