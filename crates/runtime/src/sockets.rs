//! Unix sockets across the VM boundary, relayed through the agent connection (a socket cannot
//! cross virtiofs: connecting to a shared socket file reaches nothing on the other side).
//!
//! - **Into the container** (`-v /host.sock:/path`, `--ssh`): the guest listens at
//!   [`agent::contract::guest_socket`] in the socket's stead (made while the container's mounts
//!   are set up, bound at `/path`); here one task per socket accepts each connection the
//!   container makes and connects it to the host socket.
//! - **Out of the container** (`--publish-socket /host.sock:/path`): the monitor listens at
//!   the host path; each connection is joined to a connection the guest makes to `/path` in
//!   the container's mount namespace.
//!
//! Each connection's bytes ride the handle's stdin and stdout streams with the agent's credit
//! flow control, so a side that stops reading stalls only its own connection.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// A container's socket published on the host (`--publish-socket HOST:CONTAINER`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishSocket {
    /// Where the host socket is made (absolute).
    pub host: PathBuf,
    /// The socket's path in the container (absolute), which the container listens on.
    pub container: String,
}

/// Parses `--publish-socket HOST_PATH:CONTAINER_PATH` (both absolute).
pub fn parse_publish(spec: &str) -> Result<PublishSocket, String> {
    let bad = |why: &str| format!("--publish-socket {spec}: {why}");
    let (host, container) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected HOST_PATH:CONTAINER_PATH"))?;
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(bad("both paths must be absolute"));
    }
    if host.len() >= crate::state::SUN_PATH_MAX || container.len() >= crate::state::SUN_PATH_MAX {
        return Err(bad("a unix socket path must be shorter than 108 bytes"));
    }
    Ok(PublishSocket {
        host: PathBuf::from(host),
        container: container.to_string(),
    })
}

/// Where `--ssh` puts the host's SSH agent socket in the container (Apple's path).
pub const SSH_AGENT_TARGET: &str = "/run/host-services/ssh-auth.sock";

/// `--ssh`: the mount of the host's agent socket `auth_sock` ($SSH_AUTH_SOCK) at
/// [`SSH_AGENT_TARGET`], and the `SSH_AUTH_SOCK=` variable that points the container there.
pub fn ssh_agent(
    auth_sock: Option<std::ffi::OsString>,
) -> Result<(crate::volume::MountSpec, String), String> {
    let sock = auth_sock
        .filter(|s| !s.is_empty())
        .ok_or("--ssh: SSH_AUTH_SOCK is not set (no SSH agent to forward)")?;
    let sock = PathBuf::from(sock);
    let source = std::fs::canonicalize(&sock)
        .map_err(|e| format!("--ssh: SSH_AUTH_SOCK {}: {e}", sock.display()))?;
    let is_socket = std::fs::metadata(&source).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    });
    if !is_socket {
        return Err(format!(
            "--ssh: SSH_AUTH_SOCK {} is not a socket",
            sock.display()
        ));
    }
    Ok((
        crate::volume::MountSpec::Socket {
            source,
            target: SSH_AGENT_TARGET.into(),
        },
        format!("SSH_AUTH_SOCK={SSH_AGENT_TARGET}"),
    ))
}

/// The listener id of the `index`th socket bind of container `id` (unique in a VM, also in a
/// pod's, and short enough for a socket path).
pub fn listener_id(id: &str, index: usize) -> String {
    format!("{}-{index}", &id[..id.len().min(12)])
}

/// The relays of one running container: dropping it stops them and removes the published
/// host sockets.
#[derive(Default)]
pub struct SocketRelays {
    tasks: Vec<JoinHandle<()>>,
    published: Vec<PathBuf>,
}

impl std::fmt::Debug for SocketRelays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketRelays")
            .field("tasks", &self.tasks.len())
            .field("published", &self.published)
            .finish()
    }
}

impl Drop for SocketRelays {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for p in &self.published {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl SocketRelays {
    /// Starts the relays: `inbound` pairs a guest listener id with its host socket, `publish`
    /// names the container's sockets to publish. A host path of `publish` that cannot be
    /// listened on fails the whole start (nothing is left listening).
    pub fn start(
        client: &agent::Client,
        container: &str,
        inbound: Vec<(String, PathBuf)>,
        publish: &[PublishSocket],
    ) -> std::io::Result<SocketRelays> {
        let mut relays = SocketRelays::default();
        for p in publish {
            let listener = listen(&p.host)?;
            relays.published.push(p.host.clone());
            relays.tasks.push(tokio::spawn(outbound(
                client.clone(),
                container.to_string(),
                listener,
                p.container.clone(),
            )));
        }
        for (id, host) in inbound {
            relays
                .tasks
                .push(tokio::spawn(accept_loop(client.clone(), id, host)));
        }
        Ok(relays)
    }
}

/// Listens at `path` for `--publish-socket`: a socket file left there by an earlier run is
/// replaced; anything else at the path is an error, never removed.
fn listen(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("--publish-socket {}: {e}", path.display()),
        )
    };
    let listener = bind_unix(path).map_err(io)?;
    // The owner and its group may connect, as on docker's own socket.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    UnixListener::from_std(listener).map_err(io)
}

/// Binds a unix socket at `path`. A socket file there that nobody answers on (left by a
/// process that ended) is replaced; a socket another process serves (`AddrInUse`) and
/// anything that is not a socket (`AlreadyExists`) are refused and left alone. The callers
/// set the mode they want: the Docker API socket, published sockets.
pub fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        // Another container (or program) serves it: never taken over.
        Ok(m)
            if m.file_type().is_socket()
                && std::os::unix::net::UnixStream::connect(path).is_ok() =>
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another process listens there",
            ))
        }
        // Left by a run that ended: nobody listens.
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::net::UnixListener::bind(path)
}

/// Accepts the container's connections on guest listener `id`, each joined to a new
/// connection to the host socket `host`.
async fn accept_loop(client: agent::Client, id: String, host: PathBuf) {
    loop {
        let handle = match client.socket_accept(&id).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!("socket {}: accepting stopped: {e}", host.display());
                return;
            }
        };
        let client = client.clone();
        let host = host.clone();
        tokio::spawn(async move {
            match UnixStream::connect(&host).await {
                Ok(conn) => relay(&client, handle, conn).await,
                Err(e) => {
                    tracing::warn!("socket {}: {e}", host.display());
                    end(&client, handle, true).await;
                }
            }
        });
    }
}

/// Accepts host connections on a published socket, each joined to a new connection to
/// `path` in the container.
async fn outbound(client: agent::Client, container: String, listener: UnixListener, path: String) {
    loop {
        let conn = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::warn!("published socket {path}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let client = client.clone();
        let container = container.clone();
        let path = path.clone();
        tokio::spawn(async move {
            match client.socket_connect(&container, &path).await {
                Ok(handle) => relay(&client, handle, conn).await,
                // The host client sees its connection closed.
                Err(e) => tracing::warn!("published socket {path}: {e}"),
            }
        });
    }
}

/// Moves bytes between `conn` and the guest helper `handle` until both directions end; each
/// side's end is passed on as a half-close.
async fn relay(client: &agent::Client, handle: agent::ProcessHandle, conn: UnixStream) {
    let (mut rd, mut wr) = conn.into_split();
    let mut stdin = client.stdin(handle);
    let mut out = client.stdout(handle);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        let ok = loop {
            match rd.read(&mut buf).await {
                Ok(0) => break true,
                Ok(n) => {
                    if stdin.write_all(&buf[..n]).await.is_err() {
                        break false;
                    }
                }
                Err(_) => break false,
            }
        };
        let _ = stdin.close().await;
        ok
    };
    let down = async {
        let mut ok = true;
        while let Some(chunk) = out.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                ok = false;
                break;
            }
        }
        let _ = wr.shutdown().await;
        ok
    };
    let (up, down) = tokio::join!(up, down);
    end(client, handle, !(up && down)).await;
}

/// Collects the guest helper: killed first when its connection broke (it may be blocked on
/// a side nobody serves any more).
async fn end(client: &agent::Client, handle: agent::ProcessHandle, kill: bool) {
    if kill {
        let _ = client.kill(handle, libc::SIGKILL, false).await;
    }
    let _ = client.wait(handle).await;
    let _ = client.delete(handle).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_need_two_absolute_paths() {
        let p = parse_publish("/tmp/h.sock:/run/app.sock").unwrap();
        assert_eq!(p.host, PathBuf::from("/tmp/h.sock"));
        assert_eq!(p.container, "/run/app.sock");
        for bad in ["/tmp/h.sock", "rel:/x", "/x:rel", ""] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        let long = format!("/{}:/x", "a".repeat(120));
        assert!(parse_publish(&long).unwrap_err().contains("108"));
    }

    #[test]
    fn ssh_needs_an_agent_socket() {
        let err = ssh_agent(None).unwrap_err();
        assert!(err.contains("SSH_AUTH_SOCK is not set"), "{err}");
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("f");
        std::fs::write(&file, "").unwrap();
        let err = ssh_agent(Some(file.clone().into())).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        let sock = t.path().join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (m, var) = ssh_agent(Some(sock.clone().into())).unwrap();
        assert_eq!(m.target(), SSH_AGENT_TARGET);
        assert_eq!(var, format!("SSH_AUTH_SOCK={SSH_AGENT_TARGET}"));
    }

    #[test]
    fn listener_ids_are_short_and_distinct() {
        let id = "ab".repeat(32);
        assert_eq!(listener_id(&id, 0), "abababababab-0");
        assert_ne!(listener_id(&id, 0), listener_id(&id, 1));
    }

    #[tokio::test]
    async fn a_published_path_that_is_not_a_socket_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("f");
        std::fs::write(&file, "keep").unwrap();
        let err = listen(&file).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        // A socket someone serves is not taken over; a stale one is replaced.
        let sock = t.path().join("s");
        let live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = listen(&sock).unwrap_err();
        assert!(err.to_string().contains("listens there"), "{err}");
        drop(live);
        let l = listen(&sock).unwrap();
        drop(l);
    }
}
