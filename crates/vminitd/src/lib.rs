//! vminitd, the guest's PID 1: boots the VM's userspace (mounts, modules), reaps every child,
//! and serves the agent protocol to the host over virtio-serial. It also runs as an ordinary
//! process serving a unix socket (`--listen`), which is how its server logic is tested
//! without a VM.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod boot;
pub mod caps;
pub mod container_init;
pub mod copy;
pub mod copyup;
pub mod error;
pub mod fdio;
pub mod log;
pub mod mounts;
pub mod netlink;
pub mod port;
pub mod process;
pub mod ps;
pub mod reaper;
pub mod report;
pub mod rootfs;
pub mod service;
pub mod socket;
pub mod spawn;
pub mod stdio;
pub mod sys;
pub mod system;
pub mod template;
pub mod user;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use process::Processes;
use service::{Agent, Mode};

fn runtime() -> tokio::runtime::Runtime {
    // A single thread on purpose: the process is forked for every container process, and a
    // fork is only safe when no other thread can hold a lock.
    loop {
        match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
        {
            Ok(rt) => return rt,
            Err(e) => {
                log!("cannot build the runtime, retrying: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log!("BUG: {info}");
    }));
}

/// PID 1: boot, then serve the agent port forever. Never returns.
pub fn init_main() -> ! {
    install_panic_hook();
    let template = boot::boot();
    let cgroup = PathBuf::from("/sys/fs/cgroup");
    let cgroup = cgroup.join("cgroup.controllers").exists().then_some(cgroup);
    let procs = Processes::new(PathBuf::from("/run/containers"), cgroup);
    let agent = Arc::new(Agent {
        procs,
        mode: Mode::Init,
        template,
        sockets: Default::default(),
    });
    loop {
        let rt = runtime();
        let a = Arc::clone(&agent);
        // A panic that escapes a task is caught by tokio; one in this loop itself is caught
        // here and the loop restarts with a fresh runtime: PID 1 must not exit.
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(serve_port(a))));
        log!(
            "agent loop ended ({}); restarting",
            if r.is_err() { "panic" } else { "error" }
        );
        drop(rt);
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn serve_port(agent: Arc<Agent>) {
    tokio::spawn(reaper::reaper(Arc::clone(&agent.procs)));
    let port = loop {
        match port::open(agent::contract::AGENT_PORT_NAME, Duration::from_secs(30)).await {
            Ok(p) => break p,
            Err(e) => log!("agent port: {e}"),
        }
    };
    log!("agent port open");
    loop {
        port::wait_for_host(&port).await;
        let session = match port::session(&port) {
            Ok(s) => s,
            Err(e) => {
                log!("agent port: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match agent.serve(session.clone(), session).await {
            Ok(()) => {}
            Err(e) => log!("session ended: {e}"),
        }
    }
}

/// Ordinary-process mode: serve connections on a unix socket, one at a time (like the single
/// virtio-serial port). `run_dir` holds per-container files; `cgroup_root` may be `None`.
pub fn host_main(
    socket: PathBuf,
    run_dir: PathBuf,
    cgroup_root: Option<PathBuf>,
) -> std::io::Result<()> {
    install_panic_hook();
    // Orphans of our processes come back to us to be reaped, as under PID 1.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let rt = runtime();
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(&socket)?;
        let procs = Processes::new(run_dir, cgroup_root);
        let agent = Arc::new(Agent {
            procs,
            mode: Mode::Host,
            template: template::Template::none(),
            sockets: Default::default(),
        });
        tokio::spawn(reaper::reaper(Arc::clone(&agent.procs)));
        loop {
            let (conn, _) = listener.accept().await?;
            let (rd, wr) = conn.into_split();
            if let Err(e) = agent.serve(rd, wr).await {
                log!("session ended: {e}");
            }
        }
    })
}
