//! `rename`: a new name for a running or stopped container, checked as docker checks it
//! (moby `daemon/rename.go`). The hostname stays; peers on its networks resolve the new name.

use super::{Container, ContainerError};
use crate::state::{validate_name, Lock, StateError};

impl Container {
    /// Renames the container to `new` (a leading `/` is dropped, as docker drops it).
    pub async fn rename(&mut self, new: &str) -> Result<(), ContainerError> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if new.is_empty() || self.name().is_empty() {
            return Err(ContainerError::Rename(
                "Neither old nor new names may be empty".into(),
            ));
        }
        validate_name(new)?;
        let rt = self.rt.clone();
        let store = rt.store();
        // The store's naming lock, which `create` takes to pick a free name.
        let _names = Lock::exclusive(&store.containers_dir().join(".lock"))?;
        self.refresh()?;
        if self.name() == new {
            return Err(ContainerError::Rename(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = store.list()?.into_iter().find(|c| c.name == new) {
            return Err(StateError::NameInUse {
                name: new.to_string(),
                id: other.id,
            }
            .into());
        }
        let old = self.name().to_string();
        self.record = store.update(self.id(), |r| r.name = new.to_string())?;
        crate::events::container_event(
            store,
            self.id(),
            "rename",
            &[("oldName", format!("/{old}"))],
        );
        if !self.record.config.networks.is_empty() {
            if let Err(e) =
                net::Networks::open(store.root()).and_then(|n| n.rename_container(self.id(), new))
            {
                tracing::warn!(
                    "rename {new} in its networks' name tables: {}",
                    crate::error_line(&e)
                );
            }
        }
        Ok(())
    }
}
