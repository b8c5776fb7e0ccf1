//! The container init (docker's `--init`, the job tini does there): vminitd re-executed inside
//! a container as its PID 1, in front of the real command.
//!
//! The first process of a container is PID 1 of its PID namespace, and the kernel drops every
//! signal sent to such a process that it has no handler for (`sig_task_ignored` in
//! kernel/signal.c; only SIGKILL and SIGSTOP from an ancestor namespace get through). So
//! `sleep 600` or a shell without a `trap` ignores `stop`'s SIGTERM and waits out the whole
//! timeout, and orphans nobody reaps stay zombies. With `init` in the process spec, the child
//! that `spawn.rs` forked execs `/proc/self/exe` (this same static binary, reachable from any
//! mount namespace through that link, so nothing is added to the container's filesystem) as
//!
//! ```text
//!   vminitd-init -- CMD ARG…        PID 1 of the container
//!    └─ CMD ARG…                    its only child, in its own process group
//! ```
//!
//! which forwards every signal it can catch to the command, reaps every process that ends up
//! its child, and exits as soon as the command ends: with its exit code, or 128+n when a
//! signal n killed it (tini's rule, so `stop` of a `sleep` gives 143 as with docker). The
//! kernel then kills whatever is left in the namespace. The command was already looked up by
//! `spawn.rs` before the container started (so 127/126 are reported as without an init); the
//! init looks it up again the same way, in the same namespaces, environment and identity.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// `argv[0]` of the init; `main.rs` recognises the mode by it. A name rather than a path:
/// there is no such file in the container, the binary is reached through `/proc/self/exe`.
pub const ARGV0: &CStr = c"vminitd-init";

/// Signals the init does not catch: those the kernel raises for a fault of the init itself
/// (forwarding them would hide a crash), the two that cannot be caught, and the terminal's
/// background-job stops, which it ignores so that it can hand the terminal to the command.
const NOT_FORWARDED: &[libc::c_int] = &[
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// Exit code for a failure of the init itself (no command, fork failed), as docker's 125.
const INIT_FAILED: i32 = 125;

/// The path `spawn.rs` execs for the init.
pub(crate) fn exe() -> CString {
    CString::from(c"/proc/self/exe")
}

/// The init's argv for `args`.
pub(crate) fn argv(args: &[CString]) -> Vec<CString> {
    let mut v = vec![CString::from(ARGV0), CString::from(c"--")];
    v.extend(args.iter().cloned());
    v
}

/// Whether this process was started as a container init.
pub fn invoked() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| a.as_bytes() == ARGV0.to_bytes())
}

/// The init: never returns.
pub fn main() -> ! {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new("--")) {
        fail("usage: vminitd-init -- COMMAND [ARG...]");
    }
    // Arguments come from execve, so they hold no NUL.
    let command: Vec<CString> = args
        .filter_map(|a: OsString| CString::new(a.into_vec()).ok())
        .collect();
    if command.is_empty() {
        pause()
    }
    std::process::exit(run(&command))
}

/// A pod's pause process (the job of Kubernetes' `pause` image): PID 1 of the pod's infra
/// container, which holds the VM up for the pod's members and does nothing else. It reaps
/// whatever is left to it and exits 0 on SIGTERM, SIGINT or SIGHUP, so that stopping the pod
/// takes no grace period.
fn pause() -> ! {
    // SAFETY: signal-mask calls on our own single-threaded process; the set is initialised
    // by sigemptyset before use.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    loop {
        // SAFETY: `set` is a valid, initialised signal set.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig == libc::SIGCHLD {
            // SAFETY: non-blocking reap of any child.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        } else if sig > 0 {
            std::process::exit(0)
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{}: {msg}", ARGV0.to_string_lossy());
    std::process::exit(INIT_FAILED)
}

fn run(command: &[CString]) -> i32 {
    // SAFETY: plain signal-mask and disposition calls on our own single-threaded process; the
    // sets are initialised by sigfillset/sigemptyset before use.
    let (caught, previous) = unsafe {
        let mut caught: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut caught);
        for &sig in NOT_FORWARDED {
            libc::sigdelset(&mut caught, sig);
        }
        // Blocked, not handled: a blocked signal is queued even for a namespace's PID 1, and
        // sigwaitinfo below takes it; nothing arrives between the fork and the wait unseen.
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &caught, &mut previous);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        (caught, previous)
    };
    // SAFETY: fork in a single-threaded process; the child only makes syscalls and execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail(&format!("fork: {}", std::io::Error::last_os_error()));
    }
    if child == 0 {
        exec_command(command, &previous)
    }
    supervise(child, &caught)
}

/// The command's side of the fork: its own process group, in the foreground of the terminal
/// if there is one (so Ctrl-C and window changes reach it, not the init), default signal
/// handling, then exec.
fn exec_command(command: &[CString], mask: &libc::sigset_t) -> ! {
    // SAFETY: syscalls on our own process; `mask` is a valid set.
    unsafe {
        libc::setpgid(0, 0);
        // Fails with ENOTTY without a terminal, which is fine: there is nothing to hand over.
        libc::tcsetpgrp(0, libc::getpgrp());
        // Rust's runtime ignores SIGPIPE and we ignore the terminal stops; exec would keep both.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
    }
    let path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let (code, msg) = match crate::spawn::lookup(&command[0], &path) {
        Ok(exe) => {
            let mut argv: Vec<*const libc::c_char> = command.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            // SAFETY: exe and argv are NUL-terminated C strings (and a null-terminated array)
            // that live until execv replaces the process; the environment is our own.
            unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
            let e = std::io::Error::last_os_error();
            let code = if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) {
                127
            } else {
                126
            };
            (code, format!("exec {}: {e}", exe.to_string_lossy()))
        }
        Err((kind, e, what)) => (if kind == b'N' { 127 } else { 126 }, format!("{what}: {e}")),
    };
    eprintln!("{}: {msg}", ARGV0.to_string_lossy());
    // SAFETY: leaving the forked child without running the init's destructors.
    unsafe { libc::_exit(code) }
}

/// Forwards every caught signal to the command and reaps on SIGCHLD, until the command ends;
/// returns the init's exit code.
fn supervise(command: i32, caught: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: `caught` is a valid set; the info is not read.
        let sig = unsafe { libc::sigwaitinfo(caught, std::ptr::null_mut()) };
        if sig < 0 {
            // EINTR only: every signal that could interrupt the wait is in the set.
            continue;
        }
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(command) {
                return code;
            }
        } else {
            // ESRCH when the command has just ended: its SIGCHLD is next.
            // SAFETY: kill(2) with integer arguments.
            unsafe { libc::kill(command, sig) };
        }
    }
}

/// Reaps every child that ended (orphans of the container included; one SIGCHLD may stand
/// for several); the exit code when one of them is the command.
fn reap(command: i32) -> Option<i32> {
    let mut code = None;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return code;
        }
        if pid == command {
            code = Some(exit_code(status));
        }
    }
}

/// tini's rule: the command's code, or 128+n when signal n killed it.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_puts_the_command_after_the_marker() {
        let cmd = [CString::from(c"sleep"), CString::from(c"600")];
        let v: Vec<String> = argv(&cmd)
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        assert_eq!(v, ["vminitd-init", "--", "sleep", "600"]);
    }

    #[test]
    fn exit_codes_follow_tini() {
        // Encoded as wait(2) does: code << 8, or the signal number.
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGKILL), 137);
    }
}
