//! Stable error codes that cross the host↔guest boundary. The guest maps its internal errors to
//! a [`WireError`] in one function (vminitd's `to_wire`); the host maps a `WireError` back in
//! one function ([`crate::ClientError::from_wire`]). Codes are part of the protocol: never
//! renumber, only append. Which exit code a user sees for a code is the host runtime's
//! business (`runtime::exit`), not the protocol's.

use serde::{Deserialize, Serialize};

/// Error category, stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A field of the request is malformed or out of range.
    InvalidArgument,
    /// The named object (process handle, container, interface, path) does not exist.
    NotFound,
    /// The program to execute does not exist (docker exit code 127).
    ExecutableNotFound,
    /// The program exists but cannot be executed: permissions, not a file, bad format (126).
    NotExecutable,
    /// The object exists already (container id, mount).
    AlreadyExists,
    /// The call is not valid in the object's current state ("cannot start: already started").
    WrongState,
    /// The user or group of a process spec cannot be resolved.
    UnknownUser,
    /// The call is not supported by this guest.
    Unsupported,
    /// The peers speak different protocol versions.
    ProtocolVersion,
    /// A system call failed in the guest.
    Io,
    /// Anything else; a bug in the guest.
    Internal,
    /// A code from a newer peer that this side does not know.
    #[serde(other)]
    Unknown,
}

/// An error as carried in a `Response` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// Category.
    pub code: ErrorCode,
    /// One line for humans: what failed and with what input (errno text included).
    pub message: String,
    /// The errno when a system call failed.
    #[serde(default)]
    pub errno: Option<i32>,
}

impl WireError {
    /// Builds an error without errno.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            errno: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_decode_as_unknown() {
        let e: WireError =
            serde_json::from_str(r#"{"code":"from_the_future","message":"x"}"#).unwrap();
        assert_eq!(e.code, ErrorCode::Unknown);
    }
}
