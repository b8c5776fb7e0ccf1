//! Reaping: vminitd is PID 1, so every orphan in the guest becomes its child; it collects
//! every exit on SIGCHLD and reports those of its own processes to the table.

use std::sync::Arc;

use agent::ExitStatus;

use crate::process::Processes;

/// Reaps children on SIGCHLD forever (PID 1 duty) and reports exits to the table.
pub async fn reaper(procs: Arc<Processes>) {
    let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            crate::log!("cannot watch SIGCHLD, falling back to polling: {e}");
            loop {
                reap_all(&procs);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    loop {
        reap_all(&procs);
        sig.recv().await;
    }
}

fn reap_all(procs: &Processes) {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let exit = if libc::WIFEXITED(status) {
            ExitStatus {
                code: Some(libc::WEXITSTATUS(status)),
                ..ExitStatus::default()
            }
        } else if libc::WIFSIGNALED(status) {
            ExitStatus {
                signal: Some(libc::WTERMSIG(status)),
                ..ExitStatus::default()
            }
        } else {
            continue;
        };
        procs.reaped(pid, exit);
    }
}
