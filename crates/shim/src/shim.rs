//! containerd's shim lifecycle: `start` (spawn the shim daemon for a task and print its ttrpc
//! address), `delete` (clean up after a shim that is gone), and the daemon's task service.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::{ExitSignal, Shim};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, DeleteResponse, Error, Flags, StartOpts};
use runtime::Runtime;
use sha2::Digest;

use crate::service::Service;

/// Where the shim keeps its containers unless `CONTAINER_SHIM_ROOT` says otherwise: a state
/// root of its own (kernel, init filesystem cache, container records), apart from the CLI's.
pub const DEFAULT_ROOT: &str = "/var/lib/container-shim";
/// The environment variable naming the shim's state root (containerd passes its environment
/// on to shims).
pub const ROOT_ENV: &str = "CONTAINER_SHIM_ROOT";

/// The shim's state root.
pub fn state_root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// The runtime of the shim's state root; monitors are re-executed from this binary.
pub fn open_runtime() -> Result<Runtime, Error> {
    let program =
        std::env::current_exe().map_err(|e| Error::Other(format!("find this executable: {e}")))?;
    let root = state_root();
    Runtime::open(&root, program).map_err(|e| {
        Error::Other(format!(
            "state root {}: {}",
            root.display(),
            runtime::error_line(&e)
        ))
    })
}

/// One shim process.
pub struct ContainerShim {
    namespace: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for ContainerShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        ContainerShim {
            namespace: args.namespace.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let socket = socket_path(&opts.address, &opts.namespace, &opts.id);
        let address = format!("unix://{}", socket.display());
        let exe = std::env::current_exe()
            .map_err(|e| Error::Other(format!("find this executable: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.current_dir(&self.bundle)
            .args([
                "-namespace",
                &opts.namespace,
                "-id",
                &opts.id,
                "-address",
                &opts.address,
            ])
            .arg("-socket")
            .arg(&address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if opts.debug {
            cmd.arg("-debug");
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent: the shim
        // daemon leaves containerd's session so that it outlives this `start` call and
        // signals sent to containerd's process group.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Other(format!("spawn the shim daemon: {e}")))?;
        // The daemon closes its stdout once its server listens.
        if let Some(mut out) = child.stdout.take() {
            let mut sink = Vec::new();
            let _ = tokio::task::spawn_blocking(move || out.read_to_end(&mut sink)).await;
        }
        // Reaped in the background: the daemon runs as long as its task.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        // containerd reads it to reconnect after a restart.
        std::fs::write(self.bundle.join("address"), &address)
            .map_err(|e| Error::Other(format!("write address: {e}")))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let rt = open_runtime()?;
        if crate::bundle::clean_up(&rt, &self.bundle).await {
            log::info!("cleaned up the container of {}", self.bundle.display());
        }
        Ok(DeleteResponse {
            // What runc's shim reports for a process it had to kill.
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(crate::process::now()),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let rt = match open_runtime() {
            Ok(rt) => rt,
            Err(e) => {
                log::error!("{e}");
                std::process::exit(1);
            }
        };
        Service::new(rt, self.namespace.clone(), publisher, self.exit.clone())
    }
}

/// The daemon's socket: next to containerd's own socket, named by a hash of containerd's
/// address, the namespace and the task id (as containerd's shims name theirs), so that two
/// containerds or two tasks never meet and the path stays short for `sun_path`.
fn socket_path(containerd_address: &str, namespace: &str, id: &str) -> PathBuf {
    let address = containerd_address.trim_start_matches("unix://");
    let dir = Path::new(address)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("/run/containerd"));
    let hash = sha2::Sha256::digest(format!("{address}/{namespace}/{id}").as_bytes());
    dir.join("s").join(hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_live_next_to_containerds_and_differ_per_task() {
        let a = socket_path("/tmp/x/containerd.sock", "default", "a");
        let b = socket_path("/tmp/x/containerd.sock", "default", "b");
        assert!(a.starts_with("/tmp/x/s"));
        assert_ne!(a, b);
        assert!(a.as_os_str().len() < 108);
    }
}
