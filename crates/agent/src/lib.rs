//! The host↔guest agent protocol of the project: one schema ([`schema`]), a length-prefixed
//! framing with resynchronisation ([`frame`]), stable error codes ([`error`]), the host-side
//! [`Client`] (and [`share`], which lets other processes' clients use one client's
//! connection: the containers of a pod, one VM) and guest-side helpers ([`server`]), the
//! names outside the schema that both sides rely on ([`contract`]), and the tar streams both
//! sides read and write: `cp`'s ([`copy`]) and the builder's image layers ([`layer`]).
//! Transport-agnostic: anything that is `AsyncRead + AsyncWrite` carries it (virtio-serial
//! through a QEMU unix socket in practice).

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod caps;
pub mod client;
pub mod contract;
pub mod copy;
pub mod error;
pub mod frame;
pub mod layer;
pub mod schema;
pub mod server;
pub mod share;

pub use client::{Client, ClientError, OutputStream, StdinWriter};
pub use error::{ErrorCode, WireError};
pub use schema::*;
