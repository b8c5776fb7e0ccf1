//! vminitd's error type and [`to_wire`], the one place where guest errors become the
//! protocol's stable [`ErrorCode`]s.

use agent::{ErrorCode, WireError};

use crate::report::Report;
use crate::user::UserError;

/// Why a call failed in the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A request field is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such process/container/interface.
    #[error("{0}")]
    NotFound(String),
    /// Exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// Not valid in the current state.
    #[error("{0}")]
    WrongState(String),
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was being done, with its input.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The user/group could not be resolved.
    #[error(transparent)]
    User(#[from] UserError),
    /// The process could not be set up or executed.
    #[error("{}", report_message(.0))]
    Spawn(Report),
    /// Not supported here.
    #[error("{0}")]
    Unsupported(String),
}

fn report_message(r: &Report) -> String {
    match r {
        Report::Ready => "ready".into(),
        Report::NotFound(m) | Report::NotExecutable(m) => m.clone(),
        Report::Failed { message, .. } => message.clone(),
    }
}

impl GuestError {
    /// A failed system call.
    pub fn sys(op: impl Into<String>, source: std::io::Error) -> GuestError {
        GuestError::Sys {
            op: op.into(),
            source,
        }
    }
}

/// Maps an error to its wire form.
pub fn to_wire(e: &GuestError) -> WireError {
    let (code, errno) = match e {
        GuestError::InvalidArgument(_) => (ErrorCode::InvalidArgument, None),
        GuestError::NotFound(_) => (ErrorCode::NotFound, None),
        GuestError::AlreadyExists(_) => (ErrorCode::AlreadyExists, None),
        GuestError::WrongState(_) => (ErrorCode::WrongState, None),
        GuestError::Sys { source, .. } => (ErrorCode::Io, os_error(source)),
        GuestError::User(_) => (ErrorCode::UnknownUser, None),
        GuestError::Spawn(Report::NotFound(_)) => {
            (ErrorCode::ExecutableNotFound, Some(libc::ENOENT))
        }
        GuestError::Spawn(Report::NotExecutable(_)) => {
            (ErrorCode::NotExecutable, Some(libc::EACCES))
        }
        GuestError::Spawn(Report::Failed { errno, .. }) => (ErrorCode::Io, Some(*errno)),
        GuestError::Spawn(Report::Ready) => (ErrorCode::Internal, None),
        GuestError::Unsupported(_) => (ErrorCode::Unsupported, None),
    };
    WireError {
        code,
        message: e.to_string(),
        errno,
    }
}

/// The errno of an OS error, also of one that a message wraps (an `io::Error` whose inner
/// error has the OS error as its source, such as [`crate::mounts::LoopError`]).
fn os_error(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        let inner = e.get_ref()?;
        let source = std::error::Error::source(inner)?;
        source.downcast_ref::<std::io::Error>()?.raw_os_error()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_reports_map_to_not_executable_and_executable_not_found() {
        let nf = to_wire(&GuestError::Spawn(Report::NotFound(
            "nope not found".into(),
        )));
        assert_eq!(nf.code, ErrorCode::ExecutableNotFound);
        let nx = to_wire(&GuestError::Spawn(Report::NotExecutable(
            "/etc: permission denied".into(),
        )));
        assert_eq!(nx.code, ErrorCode::NotExecutable);
        let io = to_wire(&GuestError::sys(
            "mount /dev/vda",
            std::io::Error::from_raw_os_error(libc::ENODEV),
        ));
        assert_eq!((io.code, io.errno), (ErrorCode::Io, Some(libc::ENODEV)));
        assert!(io.message.starts_with("mount /dev/vda: "));
        // A loop device's error keeps the errno under its message.
        let missing =
            crate::mounts::LoopDevice::attach(std::path::Path::new("/nonexistent/x.ext4"), true)
                .unwrap_err();
        let lo = to_wire(&GuestError::sys("mount /nonexistent/x.ext4", missing));
        assert_eq!(lo.errno, Some(libc::ENOENT));
        assert!(
            lo.message
                .contains("loop device for /nonexistent/x.ext4: open the file: "),
            "{}",
            lo.message
        );
    }
}
