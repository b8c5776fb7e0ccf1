//! `delete`: remove a container and everything it owns on disk.

use std::time::Duration;

use super::{Container, ContainerError, StopOptions, Verb};

impl Container {
    /// Deletes the container and its anonymous volumes; a running one only with `force` (it
    /// is killed first). For the runtime's own disposable containers (a shim's task, a pod's
    /// member); a user's `rm` is [`Container::delete_with`].
    pub async fn delete(self, force: bool) -> Result<(), ContainerError> {
        self.delete_with(force, true).await
    }

    /// Deletes the container; a running one only with `force`. Its anonymous volumes go with
    /// it only with `volumes` (docker's `rm -v`): otherwise they stay, dangling, for `volume
    /// prune`, as docker keeps them. `--rm` containers always take theirs.
    pub async fn delete_with(mut self, force: bool, volumes: bool) -> Result<(), ContainerError> {
        self.refresh()?;
        if let Some(pod) = crate::pod::infra_name(&self.record) {
            let members = crate::pod::members(self.rt.store(), self.id())?;
            if !members.is_empty() {
                return Err(crate::pod::PodError::Member(format!(
                    "{} is pod {pod}'s VM and {} containers run in it: remove the pod \
                     (container pod rm {pod})",
                    self.name(),
                    members.len()
                ))
                .into());
            }
        }
        if self.check(Verb::Delete).is_err() {
            if !force {
                self.check(Verb::Delete)?;
            }
            // Killed at once, as docker's `rm -f` does (no stop signal, no grace).
            let now = StopOptions {
                signal: Some(libc::SIGKILL),
                timeout: Some(Duration::ZERO),
            };
            self.stop(now).await?;
            crate::client::wait_stopped(self.rt.store(), self.id(), Duration::from_secs(30))
                .await?;
        }
        let store = self.rt.store();
        crate::monitor::network::release(store, &self.record);
        store.remove(self.id())?;
        crate::pod::detach_disks(store, &self.record);
        crate::events::Journal::new(store.root())
            .record(&crate::events::Event::container("destroy", &self.record));
        if volumes || self.record.config.auto_remove {
            crate::volume::remove_anonymous(store.root(), &self.record.config.mounts);
        }
        Ok(())
    }
}
