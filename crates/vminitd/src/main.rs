//! The vminitd binary: PID 1 of the VM, the init of a container started with `--init` (see
//! `container_init.rs`), or (`--listen SOCKET`) an ordinary agent server for tests and
//! development.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: vminitd                      (as PID 1 of a VM)\n       vminitd --listen SOCKET [--run-dir DIR] [--cgroup-root DIR]");
    std::process::exit(2)
}

fn main() {
    // Before the PID check: a container init is PID 1 too, of its container's namespace.
    if vminitd::container_init::invoked() {
        vminitd::container_init::main();
    }
    if std::process::id() == 1 {
        vminitd::init_main();
    }
    let mut args = std::env::args().skip(1);
    let mut socket = None;
    let mut run_dir = std::env::temp_dir().join(format!("vminitd-{}", std::process::id()));
    let mut cgroup = None;
    while let Some(a) = args.next() {
        let mut val = || args.next().map(PathBuf::from).unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => socket = Some(val()),
            "--run-dir" => run_dir = val(),
            "--cgroup-root" => cgroup = Some(val()),
            _ => usage(),
        }
    }
    let Some(socket) = socket else { usage() };
    if let Err(e) = vminitd::host_main(socket.clone(), run_dir, cgroup) {
        eprintln!("vminitd: serving {}: {e}", socket.display());
        std::process::exit(125);
    }
}
