//! `restart`: stop, then start again, as one verb so that an `--rm` container survives it.

use super::{Container, ContainerError, StopOptions};

impl Container {
    /// Stops the container (see [`Container::stop`]; not running is fine) and starts it
    /// again, returning once its process runs. An `--rm` container is not deleted in between,
    /// as with docker's `restart`.
    pub async fn restart(&mut self, opts: StopOptions) -> Result<(), ContainerError> {
        self.stop_for(opts, true).await?;
        self.refresh()?;
        self.start_detached().await?;
        crate::events::container_event(self.rt.store(), self.id(), "restart", &[]);
        Ok(())
    }
}
