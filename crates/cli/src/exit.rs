//! The one place where errors become messages and exit codes.

/// Exit code for a fault of the runtime itself (docker uses the same), and for usage errors.
pub const RUNTIME_FAULT: i32 = 125;

/// An error that carries the exit code the process should end with, for cases where the code
/// is not 125 (a container's own exit status, 126/127 for an unusable command).
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
            RUNTIME_FAULT
        }
    }
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
    use super::usage_line;

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
