//! The volume verbs of a [`Runtime`]: create, list, inspect, delete and prune, with the
//! containers that use each volume (the store itself is [`crate::volume`]).

use serde::Serialize;

use crate::container::ContainerError;
use crate::state::ContainerRecord;
use crate::volume::{MountSpec, Volume, VolumeError, VolumeStore, DEFAULT_SIZE};
use crate::Runtime;

/// Errors of volume verbs.
#[derive(Debug, thiserror::Error)]
pub enum VolumesError {
    /// The volume store failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The containers cannot be read.
    #[error(transparent)]
    Containers(#[from] ContainerError),
    /// Containers still mount the volume.
    #[error("volume {name} is in use by container(s) {}", .users.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The containers' names.
        users: Vec<String>,
    },
}

/// A volume with what it costs and who uses it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// The volume.
    #[serde(flatten)]
    pub volume: Volume,
    /// Bytes the image takes on the host (it is sparse).
    pub allocated_bytes: u64,
    /// Names of the containers (any state) that mount it.
    pub containers: Vec<String>,
}

impl Runtime {
    fn volume_store(&self) -> Result<VolumeStore, VolumeError> {
        VolumeStore::open(self.root())
    }

    fn records(&self) -> Result<Vec<ContainerRecord>, VolumesError> {
        Ok(self.store().list().map_err(ContainerError::from)?)
    }

    /// Creates volume `name` of `size` bytes (default: [`DEFAULT_SIZE`]) with `labels`.
    pub fn volume_create(
        &self,
        name: &str,
        size: Option<u64>,
        labels: crate::labels::Labels,
    ) -> Result<Volume, VolumesError> {
        self.volume_create_with(name, size, labels, Default::default())
    }

    /// [`Runtime::volume_create`] with driver options (`--opt KEY=VALUE`, see
    /// [`crate::volume::VolumeOptions`]); `size` wins over a `size=` option, as Apple's `-s`.
    pub fn volume_create_with(
        &self,
        name: &str,
        size: Option<u64>,
        labels: crate::labels::Labels,
        options: std::collections::BTreeMap<String, String>,
    ) -> Result<Volume, VolumesError> {
        let from_options = crate::volume::VolumeOptions::parse(&options)?.size;
        let size = size.or(from_options).unwrap_or(DEFAULT_SIZE);
        let v = self
            .volume_store()?
            .create_with(name, size, labels, options)?;
        volume_event(self.root(), "create", name);
        Ok(v)
    }

    /// Every volume.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>, VolumesError> {
        let (vols, records) = (self.volume_store()?, self.records()?);
        Ok(vols
            .list()?
            .into_iter()
            .map(|v| info(&vols, v, &records))
            .collect())
    }

    /// Volume `name`.
    pub fn volume(&self, name: &str) -> Result<VolumeInfo, VolumesError> {
        let vols = self.volume_store()?;
        let v = vols.get(name)?;
        Ok(info(&vols, v, &self.records()?))
    }

    /// Deletes volume `name`, refused while a container (in any state) mounts it.
    pub fn volume_delete(&self, name: &str) -> Result<(), VolumesError> {
        let vols = self.volume_store()?;
        vols.get(name)?;
        let users = users(&self.records()?, name);
        if !users.is_empty() {
            return Err(VolumesError::InUse {
                name: name.to_string(),
                users,
            });
        }
        vols.remove(name)?;
        volume_event(self.root(), "destroy", name);
        Ok(())
    }

    /// Deletes every volume no container mounts that `filters` selects (and leftovers of
    /// crashed creates); returns the deleted volumes' names and the bytes they held. Named
    /// and anonymous volumes alike, as docker 20.10's prune.
    pub fn volume_prune(
        &self,
        filters: &crate::filter::Filters,
    ) -> Result<Vec<(String, u64)>, VolumesError> {
        let vols = self.volume_store()?;
        vols.remove_leftovers()?;
        let records = self.records()?;
        let mut out = Vec::new();
        for v in vols.list()? {
            let info = info(&vols, v.clone(), &records);
            if info.containers.is_empty() && filters.matches_volume(&info) {
                let size = info.allocated_bytes;
                // A volume claimed by a container created since the listing stays.
                if vols.remove(&v.name).is_ok() {
                    volume_event(self.root(), "destroy", &v.name);
                    out.push((v.name, size));
                }
            }
        }
        Ok(out)
    }
}

/// Records a volume event (docker's: the volume's name as id, driver `local`).
fn volume_event(root: &std::path::Path, action: &str, name: &str) {
    crate::events::Journal::new(root).record(
        &crate::events::Event::new(crate::events::Kind::Volume, action, name)
            .with("driver", "local"),
    );
}

/// Names of the containers whose configuration mounts volume `name`.
fn users(containers: &[ContainerRecord], name: &str) -> Vec<String> {
    containers
        .iter()
        .filter(|c| {
            c.config
                .mounts
                .iter()
                .any(|m| matches!(m, MountSpec::Volume { source, .. } if source == name))
        })
        .map(|c| c.name.clone())
        .collect()
}

fn info(vols: &VolumeStore, v: Volume, containers: &[ContainerRecord]) -> VolumeInfo {
    use std::os::unix::fs::MetadataExt;
    let allocated_bytes = std::fs::metadata(vols.disk(&v.name))
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    let containers = users(containers, &v.name);
    VolumeInfo {
        volume: v,
        allocated_bytes,
        containers,
    }
}
