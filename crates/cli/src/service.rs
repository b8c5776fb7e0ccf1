//! `container system service`: the Docker Engine API on a unix socket (the `engine` crate),
//! until SIGINT or SIGTERM. Containers keep running when it stops. Under systemd socket
//! activation it serves the socket it is given instead of binding one.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::global::GlobalOptions;

/// Arguments of `container system service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The unix socket to listen on (default: /run/container/docker.sock for root,
    /// <root>/docker.sock otherwise). Clients use DOCKER_HOST=unix://PATH.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Group that may use the socket (mode 0660), as docker's `docker` group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

/// Serves the Engine API until a signal ends it; the socket file is removed then.
pub fn run(global: &GlobalOptions, a: ServiceArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let socket = a
        .socket
        .unwrap_or_else(|| engine::default_socket(rt.root()));
    // Read before the async runtime's threads exist: it changes the environment.
    let activated = engine::listener_from_systemd();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    tokio.block_on(async {
        let (listener, owned) = match activated {
            Some(l) => {
                let l = l.and_then(tokio::net::UnixListener::from_std);
                (l.context("use the socket systemd passed")?, false)
            }
            None => (engine::bind(&socket, a.group.as_deref()).await?, true),
        };
        if owned {
            eprintln!(
                "Docker Engine API {} on unix://{}",
                engine::API_VERSION,
                socket.display()
            );
        } else {
            eprintln!(
                "Docker Engine API {} on the socket systemd passed",
                engine::API_VERSION
            );
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        engine::serve(engine::Engine::new(rt), listener, shutdown).await;
        // systemd owns an activated socket's file.
        if owned {
            let _ = std::fs::remove_file(&socket);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Sessions still relaying (a `logs -f`, an attach) are not waited for.
    tokio.shutdown_background();
    Ok(())
}
