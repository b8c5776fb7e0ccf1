//! `container build` (design: `docs/build.md`): [`build`] runs a Dockerfile's stages with
//! RUN steps in builder VMs ([`vm`]), a layer cache ([`cache`]) and the image assembled in the
//! content store; front ends (the CLI, the Engine API's `/build`) call it with a
//! [`runtime::Runtime`]. Below it, the host side that needs no VM: the build context and the
//! layers of `COPY`, `ADD` and `WORKDIR`.
//!
//! ```text
//!  directory / tar on stdin ──▶ context::Context ──┐   (.dockerignore applied, indexed)
//!  unpacked stage or image  ──▶ tree::DirTree ─────┤ SourceTree
//!                                                  ▼
//!  dockerfile::Copy/Add ──▶ copy::CopySpec ──▶ copy::plan(spec, CopyEnv { source,
//!        (URLs: CopySpec::download)                 stage: &dyn Tree, users })
//!                                                  │
//!                                                  ▼
//!                                 layer::LayerPlan ──write──▶ tar (diff_id) + gzip (blob)
//!
//!  digest::source_digest(tree, pattern, excludes)  ──▶ cache keys (no mtimes)
//!  workdir::workdir_layer(path, owner, stage, mtime) ──▶ the directories WORKDIR creates
//! ```
//!
//! The builder supplies the stage as a [`tree::Tree`] (what is at a path: it decides
//! where a destination leads and which directories exist) and its users as a
//! [`user::UserLookup`]; both describe the stage *before* the step. [`stage::StageTree`]
//! is both, indexed from the stage's layer tars (whiteouts applied), so the stage never
//! has to be unpacked on the host.

#![warn(clippy::unwrap_used)]

pub mod builder;
pub mod cache;
pub mod commit;
pub mod compress;
pub mod config;
pub mod context;
pub mod copy;
pub mod digest;
pub mod fetch;
pub mod layer;
pub mod mounts;
pub mod output;
pub mod stage;
pub mod tree;
pub mod unpack;
pub mod user;
pub mod vm;
pub mod workdir;

mod path;
mod scratch;

pub use builder::{build, build_on, BuildError, BuildOptions, BuildResult, Progress, StepReport};
pub use context::{Context, ContextError, DockerfileAt};
pub use copy::{expand, plan, CopyEnv, CopyError, CopySource, CopySpec, Op};
pub use digest::{source_digest, tree_digest};
pub use fetch::{Download, FetchError};
pub use layer::{LayerDigests, LayerError, LayerPlan, WrittenLayer};
pub use stage::{StageError, StageTree};
pub use tree::{DirTree, EmptyTree, Entry, Kind, SourceTree, Tree, TreeError};
pub use user::{NoUsers, OwnerSpec, UserDb, UserError, UserLookup};
pub use workdir::{workdir_layer, workdir_owner};
