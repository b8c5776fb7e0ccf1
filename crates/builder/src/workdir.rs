//! `WORKDIR`: the directories it creates, as a layer.
//!
//! As BuildKit does: every missing directory of the path (resolved in the stage, symlinks
//! followed) is made 0755 and owned by the stage's `USER` (root without one); existing
//! ones are left as they are. BuildKit records a layer for every `WORKDIR` but `/`, empty
//! when nothing was missing; we return none then, and the builder records an empty-layer
//! history entry instead (docs/build.md).

use super::copy::CopyError;
use super::layer::{Data, LayerPlan, Out};
use super::path::{self as rel, Above};
use super::tree::{resolve_with, Entry, Tree, TreeError};
use super::user::{OwnerSpec, UserLookup};

/// The owner of directories `WORKDIR` creates: the stage's `USER` (empty for root). Like
/// BuildKit and buildah, a user or group that the stage does not know yet gives root
/// rather than an error (the directory is made before anything could add the user).
pub fn workdir_owner(user: &str, users: &dyn UserLookup) -> (u32, u32) {
    if user.is_empty() {
        return (0, 0);
    }
    OwnerSpec::parse(user)
        .and_then(|o| o.resolve(users))
        .unwrap_or((0, 0))
}

/// The layer of `WORKDIR path` (absolute): the missing directories of `path` (resolved in
/// the stage, symlinks followed), 0755, owned by `owner` ([`workdir_owner`]), with
/// `mtime`. `None` when the directory already exists, so the step needs no layer.
pub fn workdir_layer(
    path: &str,
    owner: (u32, u32),
    stage: &dyn Tree,
    mtime: i64,
) -> Result<Option<LayerPlan<'static>>, CopyError> {
    let cleaned = rel::clean(path, Above::Clamp).unwrap_or_default();
    let resolved = resolve_with(stage, &cleaned, true, true).map_err(|e| match e {
        TreeError::NotADirectory { path, .. } => CopyError::NotADirectory(path),
        e => CopyError::Stage(e),
    })?;
    match stage.entry(&resolved).map_err(CopyError::Stage)? {
        Some(e) if e.is_dir() => return Ok(None),
        Some(_) => return Err(CopyError::NotADirectory(resolved)),
        None => {}
    }
    let mut plan = LayerPlan::new(None);
    let mut current = String::new();
    for component in resolved.split('/') {
        current = rel::join(&current, component);
        let entry = match stage.entry(&current).map_err(CopyError::Stage)? {
            Some(e) if e.is_dir() => e,
            Some(_) => return Err(CopyError::NotADirectory(current)),
            None => Entry::dir(0o755, owner.0, owner.1, mtime),
        };
        plan.entries.insert(
            current.clone(),
            Out {
                entry,
                data: Data::None,
            },
        );
    }
    Ok(Some(plan))
}
