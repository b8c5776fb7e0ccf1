//! Unix sockets between the host and containers. A host socket bound into a container (`-v
//! HOST.sock:PATH`, `--ssh`) becomes a listening socket of ours in the guest
//! ([`agent::contract::guest_socket`]), which the host binds into the container; the host
//! takes each connection with `SocketAccept` and relays it to the host socket. The relay in
//! the guest is a copy helper ([`crate::copy::socket_relay`]) whose stdio rides the agent's
//! flow-controlled frames, so a connection that stops reading stalls only itself.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use agent::contract::{guest_socket, GUEST_SOCKETS_DIR};
use agent::{CopyStarted, SocketListen};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::error::GuestError;
use crate::process::Processes;

/// The open listeners, by id.
#[derive(Default)]
pub struct Listeners {
    map: Mutex<HashMap<String, Arc<Listener>>>,
}

struct Listener {
    socket: UnixListener,
    /// Set when the listener closes: pending accepts end.
    closed: watch::Sender<bool>,
}

fn valid(id: &str) -> Result<(), GuestError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(GuestError::InvalidArgument(format!(
            "socket listener id {id:?}: letters, digits, '-', '_' and '.' only"
        )))
    }
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Listener>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens at the guest socket of `req.id`, with the host socket's owner and mode.
    pub fn listen(&self, req: &SocketListen) -> Result<(), GuestError> {
        valid(&req.id)?;
        if self.lock().contains_key(&req.id) {
            return Err(GuestError::AlreadyExists(format!(
                "socket listener {} exists already",
                req.id
            )));
        }
        std::fs::create_dir_all(GUEST_SOCKETS_DIR)
            .map_err(|e| GuestError::sys(format!("create {GUEST_SOCKETS_DIR}"), e))?;
        let path = guest_socket(&req.id);
        // A socket file of a listener this vminitd no longer has (none survive a restart).
        let _ = std::fs::remove_file(&path);
        let socket = UnixListener::bind(&path)
            .map_err(|e| GuestError::sys(format!("listen on {path}"), e))?;
        // Who may connect is what the host socket allows: its owner and mode, numerically,
        // as a bind mount of the host socket would show them.
        let set = std::os::unix::fs::chown(&path, Some(req.uid), Some(req.gid)).and_then(|()| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(req.mode & 0o7777))
        });
        if let Err(e) = set {
            let _ = std::fs::remove_file(&path);
            return Err(GuestError::sys(
                format!("set the owner and mode of {path}"),
                e,
            ));
        }
        let (closed, _) = watch::channel(false);
        self.lock()
            .insert(req.id.clone(), Arc::new(Listener { socket, closed }));
        Ok(())
    }

    /// Waits for the next connection on `id` and starts its relay.
    pub async fn accept(
        &self,
        procs: &Arc<Processes>,
        id: &str,
    ) -> Result<CopyStarted, GuestError> {
        let listener = self
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| GuestError::NotFound(format!("socket listener {id} is not open")))?;
        let mut closed = listener.closed.subscribe();
        let conn = tokio::select! {
            r = listener.socket.accept() => r.map_err(|e| GuestError::sys(format!("accept on {}", guest_socket(id)), e))?.0,
            _ = closed.wait_for(|c| *c) => {
                return Err(GuestError::NotFound(format!("socket listener {id} was closed")));
            }
        };
        let conn = conn
            .into_std()
            .and_then(|c| c.set_nonblocking(false).map(|()| c))
            .map_err(|e| GuestError::sys("take the accepted connection", e))?;
        crate::copy::socket_relay(procs, OwnedFd::from(conn)).await
    }

    /// Closes `id`: its socket goes, pending accepts fail.
    pub fn close(&self, id: &str) -> Result<(), GuestError> {
        let listener = self
            .lock()
            .remove(id)
            .ok_or_else(|| GuestError::NotFound(format!("socket listener {id} is not open")))?;
        let _ = listener.closed.send(true);
        let _ = std::fs::remove_file(guest_socket(id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_names() {
        for ok in ["abc123-0", "a_b.c"] {
            assert!(valid(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(valid(bad).is_err(), "{bad}");
        }
    }
}
