//! Logging to the console: vminitd's stderr is `/dev/console` (the serial port the host
//! records as the boot log). One line per event, prefixed with monotonic milliseconds.

/// Writes one log line to stderr; never fails (a log line that cannot be written is dropped).
pub fn write(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("vminitd[{}]: {}\n", crate::sys::monotonic_ms(), args);
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `log!("...", args)`: a line on the console.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => { $crate::log::write(format_args!($($t)*)) };
}
