//! What a failed runtime call means for the caller's exit code: the first error in its chain
//! that knows how a container ended or why it could not start decides (see [`crate::exit`] for
//! the table). Kept apart from `exit`, which the error types themselves use, so that the
//! mapping's table sits below them and this walk above.

use crate::exit::{exit_code, Termination, RUNTIME_FAULT};

/// The exit code for a failed operation: the first error in `err`'s chain that knows how a
/// container ended or why it could not start decides (a monitor's answer, a monitor fault, a
/// guest error); any other error is a fault of the runtime.
pub fn exit_code_of(err: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(crate::client::ClientError::Failed(info)) = e.downcast_ref() {
            return info.code;
        }
        if let Some(f) = e.downcast_ref::<crate::monitor::Fault>() {
            return exit_code(Termination::Failed(f.code()));
        }
        if let Some(g) = e.downcast_ref::<crate::backend::GuestError>() {
            return exit_code(Termination::Failed(g.code()));
        }
        cur = e.source();
    }
    RUNTIME_FAULT
}

#[cfg(test)]
mod tests {
    use super::exit_code_of;
    use crate::backend::GuestError;
    use crate::exit::ErrorCode;
    use crate::protocol::ExitInfo;

    #[test]
    fn errors_find_their_code_anywhere_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("exec in web")]
        struct Outer(#[source] GuestError);

        let missing = GuestError::remote("create_process", ErrorCode::ExecutableNotFound, "x");
        assert_eq!(exit_code_of(&missing), 127);
        assert_eq!(exit_code_of(&Outer(missing)), 127);
        let noexec = GuestError::remote("create_process", ErrorCode::NotExecutable, "x");
        assert_eq!(exit_code_of(&Outer(noexec)), 126);
        let gone = GuestError::NoProcess("exec-1".into());
        assert_eq!(exit_code_of(&gone), 125);
        let answer = crate::client::ClientError::Failed(ExitInfo::failed(
            ErrorCode::ExecutableNotFound,
            "not found".into(),
        ));
        assert_eq!(exit_code_of(&answer), 127);
        let io = std::io::Error::other("disk full");
        assert_eq!(exit_code_of(&io), 125);
    }
}
