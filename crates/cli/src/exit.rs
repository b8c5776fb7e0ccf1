//! The one place where errors become messages and exit codes.

/// Exit code for a fault of the runtime itself (docker uses the same).
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
