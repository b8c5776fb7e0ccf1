//! The child's report: how a forked child tells vminitd, over its close-on-exec status pipe,
//! how its setup went. Shared by the fork itself (`spawn.rs`) and the setup steps it runs in
//! the child (`rootfs.rs`), and read by the process table.
//!
//! ```text
//!   +------+-----------+----------------+
//!   | kind | errno     | message (UTF-8)|    kind: R ready, N not found (127),
//!   | 1 B  | 4 B, LE   | rest           |          X not executable (126), E failed
//!   +------+-----------+----------------+
//! ```
//!
//! EOF without a report after the start byte means exec succeeded.

use std::io::{self, Write};

/// What a child reported.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// Setup done, waiting for start.
    Ready,
    /// The program was not found (127).
    NotFound(String),
    /// The program cannot be executed (126).
    NotExecutable(String),
    /// Setup failed.
    Failed { errno: i32, message: String },
}

impl Report {
    /// Decodes a report message.
    pub fn decode(buf: &[u8]) -> Report {
        if buf.first() == Some(&b'R') {
            return Report::Ready;
        }
        if buf.len() < 5 {
            return Report::Failed {
                errno: 0,
                message: "child exited during setup".into(),
            };
        }
        let errno = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let message = String::from_utf8_lossy(&buf[5..]).into_owned();
        match buf[0] {
            b'N' => Report::NotFound(message),
            b'X' => Report::NotExecutable(message),
            _ => Report::Failed { errno, message },
        }
    }
}

/// Writes a report to the parent.
pub(crate) fn report(fd: &mut std::fs::File, kind: u8, errno: i32, message: &str) {
    let mut buf = vec![kind];
    buf.extend_from_slice(&errno.to_le_bytes());
    buf.extend_from_slice(message.as_bytes());
    let _ = fd.write_all(&buf);
}

/// A child-side failure: report kind (`E`, `N`, `X`), the error, what was being done.
pub type ChildErr = (u8, io::Error, String);

/// Attaches what was being done to a child-side error.
pub fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, ChildErr> {
    r.map_err(|e| (b'E', e, what()))
}
