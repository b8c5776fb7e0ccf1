//! Image verbs of a [`Runtime`] that need to know the containers: which images they use, so
//! `image prune -a` removes only the others (the content store itself is `oci::Store`).

use oci::{Reference, Store, StoreError};

use crate::container::ContainerError;
use crate::Runtime;

/// Errors of the image verbs.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The containers cannot be read.
    #[error(transparent)]
    Containers(#[from] ContainerError),
}

impl Runtime {
    /// Removes every name in `store` whose image no container (in any state) was made from,
    /// as docker's `image prune -a`; returns the names removed. The blobs stay until the
    /// store's garbage collection (`Store::prune`). A container names its image by the
    /// digest it resolved at create (the index's or the platform manifest's), so both are
    /// compared.
    pub fn image_untag_unused(&self, store: &Store) -> Result<Vec<Reference>, ImagesError> {
        let used: Vec<String> = self
            .store()
            .list()
            .map_err(ContainerError::from)?
            .into_iter()
            .map(|c| c.image_digest)
            .collect();
        let mut removed = Vec::new();
        for entry in store.list()? {
            let mut digests = vec![entry.descriptor.digest.to_string()];
            // A multi-platform name pulled for another platform has no image here.
            if let Ok(image) = store.image(&entry.reference) {
                digests.push(image.manifest_digest().to_string());
            }
            if used.iter().any(|u| digests.contains(u)) {
                continue;
            }
            store.remove_ref(&entry.reference)?;
            removed.push(entry.reference);
        }
        Ok(removed)
    }
}
