//! The Docker Engine API (v1.41, what docker 20.10 and docker-compose 1.29 speak) on a unix
//! socket, mapped onto [`runtime::Runtime`]: `container system service` runs [`serve`].
//!
//! ```text
//!  docker CLI / compose / SDK ──HTTP/1.1 over unix socket──▶ routes ──▶ runtime::Runtime
//!                                                            │            │ (monitor sockets,
//!                       hijacked attach / exec stream ◀──────┘            ▼  state files)
//!                                                                   per-container monitors
//! ```
//!
//! This crate owns HTTP only: routing, docker's JSON shapes and error bodies, the hijacked
//! stream and its 8-byte multiplexing headers, pull progress as docker's JSON lines. Every
//! container verb is a call of the runtime; the server keeps no container state of its own
//! beyond what docker's daemon keeps in memory too: exec instances, and attaches waiting for
//! their container's start. Containers keep running when the server stops, and a restarted
//! server sees them all again, because the runtime's state is on disk.

#![warn(clippy::unwrap_used)]
// `/info` is one large `json!` document.
#![recursion_limit = "256"]

mod archive;
mod build;
mod containers;
mod create;
mod error;
mod events;
mod exec;
mod http;
mod images;
mod networks;
mod routes;
mod stats;
mod stream;
mod system;
mod transfer;
mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

pub use error::ApiError;

/// The Engine API version this server speaks (docker 20.10).
pub const API_VERSION: &str = "1.41";

/// The oldest API version a client may ask for (docker's own minimum).
pub const MIN_API_VERSION: &str = "1.24";

/// Errors of setting up or running the server.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The socket path is taken by a server that answers.
    #[error("socket {0} is in use by a running server")]
    SocketInUse(PathBuf),
    /// The socket could not be created.
    #[error("bind {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The socket's mode or group could not be set.
    #[error("set owner and mode of {path}")]
    Permissions {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `--group` names no group.
    #[error("no such group: {0}")]
    NoGroup(String),
}

/// The server's state shared by all connections.
pub struct Engine {
    rt: runtime::Runtime,
    /// Attaches to a container that is not running yet, waiting for its start (docker's
    /// `run` attaches before it starts, so that no output is missed): the start hands the
    /// first one the monitor's connection.
    pending_attaches: Mutex<HashMap<String, oneshot::Sender<UnixStream>>>,
    /// Exec instances by id (docker keeps these in its daemon's memory too).
    execs: Mutex<HashMap<String, exec::ExecInstance>>,
    /// The control channel (window size) of each attach session by container id, and of
    /// each attached exec by exec id: `resize` sends there.
    controls: Mutex<HashMap<String, mpsc::UnboundedSender<runtime::protocol::Frame>>>,
}

impl Engine {
    /// A server for the containers and images of `rt`.
    pub fn new(rt: runtime::Runtime) -> Arc<Engine> {
        Arc::new(Engine {
            rt,
            pending_attaches: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            controls: Mutex::new(HashMap::new()),
        })
    }

    /// The runtime it serves.
    pub fn runtime(&self) -> &runtime::Runtime {
        &self.rt
    }

    /// Registers an attach that waits for container `id` to start (one per container, as
    /// only one client can receive the monitor's first connection; a later one replaces it).
    fn wait_for_start(&self, id: &str, tx: oneshot::Sender<UnixStream>) {
        if let Ok(mut m) = self.pending_attaches.lock() {
            m.insert(id.to_string(), tx);
        }
    }

    /// A new control channel for the session `key` (a container id or an exec id).
    fn control(&self, key: &str) -> mpsc::UnboundedReceiver<runtime::protocol::Frame> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = self.controls.lock() {
            m.insert(key.to_string(), tx);
        }
        rx
    }

    /// Sends a new window size to session `key`; false when it has none.
    fn resize(&self, key: &str, rows: u16, cols: u16) -> bool {
        let frame = runtime::protocol::Frame::Resize(runtime::protocol::WinSize { rows, cols });
        let Ok(mut m) = self.controls.lock() else {
            return false;
        };
        let Some(tx) = m.get(key) else {
            return false;
        };
        if tx.send(frame).is_ok() {
            return true;
        }
        // The session ended: forget it.
        m.remove(key);
        false
    }

    /// The attach waiting for container `id` to start, if its client is still there.
    fn take_attach(&self, id: &str) -> Option<oneshot::Sender<UnixStream>> {
        let mut m = self.pending_attaches.lock().ok()?;
        m.remove(id).filter(|tx| !tx.is_closed())
    }
}

/// The default socket: `/run/container/docker.sock` for root, `<state root>/docker.sock`
/// otherwise.
pub fn default_socket(root: &Path) -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/container/docker.sock")
    } else {
        root.join("docker.sock")
    }
}

/// Binds the unix socket at `path` with mode 0660 (group `group` when given, so members of
/// that group can use it, as docker's `docker` group). A stale socket file (nobody answers)
/// is replaced; a live one, or a file that is not a socket, is refused
/// ([`runtime::sockets::bind_unix`]).
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, EngineError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| EngineError::NoGroup(name.to_string()))?
                .gid,
        ),
        None => None,
    };
    // Created under a umask that leaves nobody else a window between bind and chmod.
    // SAFETY: umask only swaps the process's file mode mask; it is restored right after.
    let old = unsafe { libc::umask(0o117) };
    // A stale socket (nobody answers) is replaced; a live one, or a file that is no socket, is
    // refused and left alone.
    let listener = runtime::sockets::bind_unix(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let bind_err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AddrInUse => EngineError::SocketInUse(path.to_path_buf()),
        _ => EngineError::Bind {
            path: path.to_path_buf(),
            source,
        },
    };
    let listener = listener
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(UnixListener::from_std)
        .map_err(bind_err)?;
    let perm_err = |source| EngineError::Permissions {
        path: path.to_path_buf(),
        source,
    };
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| perm_err(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(perm_err)?;
    Ok(listener)
}

/// The listening socket systemd passed (socket activation: `LISTEN_PID` is this process and
/// `LISTEN_FDS` is 1, the socket being descriptor 3), if any. The variables are removed so
/// that processes this one starts (container monitors) do not take the socket for theirs.
/// Call it before any thread is started (it changes the environment); make the result a
/// tokio listener inside the runtime (`UnixListener::from_std`).
pub fn listener_from_systemd() -> Option<std::io::Result<std::os::unix::net::UnixListener>> {
    use std::os::fd::FromRawFd;
    let pid = std::env::var("LISTEN_PID").ok()?;
    let fds = std::env::var("LISTEN_FDS").ok()?;
    if pid.parse::<u32>().ok()? != std::process::id() || fds != "1" {
        return None;
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    // SAFETY: systemd's protocol (sd_listen_fds(3)) hands this process descriptor 3, open
    // and not owned by anything else here; the listener takes ownership of it once.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    Some(std_listener.set_nonblocking(true).map(|()| std_listener))
}

/// Serves connections on `listener` until `shutdown` resolves; connections in progress
/// (a long `logs -f`, an attach) are dropped then, which leaves their containers running.
pub async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let engine = engine.clone();
                    conns.spawn(http::serve_connection(engine, stream));
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    conns.abort_all();
}
