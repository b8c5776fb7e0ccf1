//! OCI images for the `container` runtime: references, manifests and configs, the registry
//! client, the on-disk content store (an OCI image layout), and the operations on images
//! (pull, push, save, load, import, prune).
//!
//! The runtime needs three calls: [`Store::open`], [`Store::image`] (or [`pull`] when the image
//! is missing) and [`Store::blob_path`] for each of [`Image::layers`]. See README.md.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod archive;
pub mod auth;
pub mod client;
pub mod digest;
mod gc;
pub mod pull;
pub mod push;
pub mod reference;
pub mod spec;
pub mod store;

pub use archive::{import, load, load_with, save, save_platform, ArchiveError, Loaded};
pub use auth::{AuthError, CredentialStore, Credentials, Login};
pub use client::{ClientError, RegistryClient, Scheme};
pub use digest::{Digest, DigestError};
pub use gc::PruneReport;
pub use pull::{pull, BlobOutcome, Progress, PullError, PullOptions};
pub use push::{push, PushError, PushOptions};
pub use reference::{Reference, ReferenceError};
pub use spec::{
    media_type, Compression, ContainerConfig, Descriptor, ImageConfig, Index, Manifest,
    ManifestDoc, Platform, SpecError,
};
pub use store::{Entry, Image, Store, StoreError};
