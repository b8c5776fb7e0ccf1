//! The one place where errors become messages and exit codes: the message is printed here,
//! the code comes from the runtime's mapping (`runtime::exit`), which every front end shares.

/// Exit code for a fault of the runtime itself (docker uses the same), and for usage errors.
pub use runtime::exit::RUNTIME_FAULT;

/// An error that carries the exit code the process should end with, already mapped by the
/// runtime (a container's own exit status, 126/127 for an unusable command), for cases where
/// the message, if any, has been printed already.
#[derive(Debug)]
pub struct ExitCode(pub i32);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

/// Prints the error chain once, on one line, and returns the process exit code.
pub fn report(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(err) => {
            if let Some(ExitCode(code)) = err.downcast_ref::<ExitCode>() {
                return *code;
            }
            eprintln!("Error: {}", chain(&err));
            exit_code(&err)
        }
    }
}

/// The exit code for an error: the runtime's mapping applied to its chain.
fn exit_code(err: &anyhow::Error) -> i32 {
    let err: &(dyn std::error::Error + Send + Sync + 'static) = err.as_ref();
    runtime::outcome::exit_code_of(err)
}

/// clap's multi-line usage error as one line: the message and its details, without the usage
/// block and the advice that follow.
pub fn usage_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    format!("{} (see --help)", parts.join(" "))
}

/// Joins an error and its sources into one line, skipping sources whose text the outer message
/// already contains.
pub fn chain(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_runtime_mapping() {
        use runtime::backend::GuestError;
        use runtime::exit::{exit_code as map, Termination};
        assert_eq!(report(Ok(())), 0);
        assert_eq!(report(Err(ExitCode(7).into())), 7);
        assert_eq!(report(Err(anyhow::anyhow!("disk full"))), 125);
        let missing = GuestError::remote(
            "create_process",
            runtime::exit::ErrorCode::ExecutableNotFound,
            "nosuch: not found",
        );
        let err = anyhow::Error::new(missing).context("exec in web");
        assert_eq!(report(Err(err)), 127);
        let noexec = GuestError::remote(
            "create_process",
            runtime::exit::ErrorCode::NotExecutable,
            "/etc",
        );
        assert_eq!(report(Err(noexec.into())), 126);
        assert_eq!(map(Termination::Signaled(9)), 137);
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let clap = "error: the following required arguments were not provided:\n  <IMAGE>\n\nUsage: container run <IMAGE>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(clap),
            "the following required arguments were not provided: <IMAGE> (see --help)"
        );
        let clap = "error: invalid value 'x' for '--dns <IP>': invalid IP address syntax\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(clap),
            "invalid value 'x' for '--dns <IP>': invalid IP address syntax (see --help)"
        );
    }
}
