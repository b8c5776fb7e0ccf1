//! [`Runtime`]: the one entry of every front end (the CLI, the Engine API server, the
//! containerd shim, the builder) into containers, volumes, networks, kernels and the host's
//! state directory.

use std::path::{Path, PathBuf};

use crate::container::{prepare, Container, ContainerError, ContainerOptions, MonitorCommand};
use crate::filter::Filters;
use crate::state::{StateError, Store};

/// The runtime of one state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    store: Store,
    monitor: MonitorCommand,
}

impl Runtime {
    /// Opens the state directory `root` (made when missing). `program` is the `container`
    /// executable that monitors are re-executed from (see [`crate::MONITOR_SUBCOMMAND`]).
    pub fn open(root: &Path, program: PathBuf) -> Result<Runtime, StateError> {
        Ok(Runtime {
            store: Store::open(root)?,
            monitor: MonitorCommand {
                program,
                root: root.to_path_buf(),
            },
        })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// The container records (for the monitor and maintenance; front ends use [`Container`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn monitor_command(&self) -> &MonitorCommand {
        &self.monitor
    }

    /// The container with this name, id or unique id prefix.
    pub fn container(&self, key: &str) -> Result<Container, ContainerError> {
        let record = self.store.reconcile(self.store.resolve(key)?)?;
        Ok(Container::new(self.clone(), record))
    }

    /// Every container, oldest first.
    pub fn containers(&self) -> Result<Vec<Container>, ContainerError> {
        let mut out = Vec::new();
        for record in self.store.list()? {
            out.push(Container::new(self.clone(), self.store.reconcile(record)?));
        }
        Ok(out)
    }

    /// The containers a listing shows: those that pass `filters`, among the running ones, or
    /// among all with `all` or a filter that asks for stopped ones ([`Filters::shows_all`], as
    /// docker); oldest first. `ancestor` filters are resolved in the content store first.
    pub fn list_containers(
        &self,
        all: bool,
        filters: &Filters,
    ) -> Result<Vec<Container>, ContainerError> {
        let mut filters = filters.clone();
        if filters.has_key("ancestor") {
            if let Ok(store) = oci::Store::open(self.root()) {
                filters.resolve_images(&store);
            }
        }
        let all = all || filters.shows_all();
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| all || c.status().is_up())
            .filter(|c| filters.is_empty() || filters.matches(&c.summary()))
            .collect())
    }

    /// Creates a container (status `created`) from `opts`: see [`prepare`] for what is
    /// checked and resolved first; a missing image is pulled with `pull`.
    pub async fn create(
        &self,
        opts: ContainerOptions,
        pull: &oci::PullOptions,
    ) -> Result<Container, ContainerError> {
        let req = prepare(self.root(), opts, pull).await?;
        let record = crate::container::create_record(&self.store, req)?;
        crate::events::Journal::new(self.root())
            .record(&crate::events::Event::container("create", &record));
        Ok(Container::new(self.clone(), record))
    }
}
