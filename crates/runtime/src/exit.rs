//! The one mapping from how a container's process ended, or why it never ran, to the exit code
//! the user sees. Every front end (the CLI, a Docker Engine API server, a containerd shim)
//! reports through it, so `run`, `start -a` and `exec` agree with each other and with docker:
//!
//! ```text
//!  the process called exit(n)                      n
//!  the process was killed by signal n              128 + n     (SIGKILL: 137)
//!  the command does not exist                      127         ErrorCode::ExecutableNotFound
//!  the command exists but cannot be executed       126         ErrorCode::NotExecutable
//!  any other fault of the runtime or the guest     125         every other ErrorCode
//! ```
//!
//! Failures arrive as [`agent::ErrorCode`]s: the guest's own codes travel unchanged through
//! [`crate::backend::GuestError`], the monitor's faults ([`crate::monitor::Fault`]) and the
//! monitor protocol's [`crate::protocol::ExitInfo`], so the decision is made here once, not at
//! each hop.

pub use agent::ErrorCode;

/// A fault of the runtime itself, and a command line the CLI cannot parse (docker's 125).
pub const RUNTIME_FAULT: i32 = 125;
/// The command exists but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command does not exist.
pub const NOT_FOUND: i32 = 127;
/// A process killed by signal n exits with `SIGNAL_BASE + n` (the shell's convention).
pub const SIGNAL_BASE: i32 = 128;

/// How a container's process ended, or why it did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It called `exit` with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It could not be run, or the runtime failed around it, for this reason.
    Failed(ErrorCode),
}

/// The exit code for `t`: the one place the table above is written down.
pub fn exit_code(t: Termination) -> i32 {
    match t {
        Termination::Exited(code) => code,
        Termination::Signaled(signal) => SIGNAL_BASE + signal,
        Termination::Failed(ErrorCode::ExecutableNotFound) => NOT_FOUND,
        Termination::Failed(ErrorCode::NotExecutable) => NOT_EXECUTABLE,
        Termination::Failed(_) => RUNTIME_FAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ends_map_to_their_status_or_128_plus_the_signal() {
        assert_eq!(exit_code(Termination::Exited(0)), 0);
        assert_eq!(exit_code(Termination::Exited(7)), 7);
        assert_eq!(exit_code(Termination::Signaled(9)), 137);
        assert_eq!(exit_code(Termination::Signaled(15)), 143);
    }

    #[test]
    fn every_error_code_maps_to_127_126_or_125() {
        let all = [
            (ErrorCode::InvalidArgument, 125),
            (ErrorCode::NotFound, 125),
            (ErrorCode::ExecutableNotFound, 127),
            (ErrorCode::NotExecutable, 126),
            (ErrorCode::AlreadyExists, 125),
            (ErrorCode::WrongState, 125),
            (ErrorCode::UnknownUser, 125),
            (ErrorCode::Unsupported, 125),
            (ErrorCode::ProtocolVersion, 125),
            (ErrorCode::Io, 125),
            (ErrorCode::Internal, 125),
            (ErrorCode::Unknown, 125),
        ];
        for (code, want) in all {
            assert_eq!(exit_code(Termination::Failed(code)), want, "{code:?}");
        }
    }
}
