//! `exec`: another process in a running container.

use super::{Container, ContainerError, Verb};
use crate::client;
use crate::protocol::Request;
use crate::spec::{exec_spec, ProcessOptions, ProcessSpec};

impl Container {
    /// The process `exec` runs: `args` with the container's environment, cwd and user unless
    /// `opts` overrides them (docker's rules). `KEY` without a value in `opts.env` is copied
    /// from this process's environment, as docker copies it from the client's.
    pub fn exec_spec(
        &self,
        args: Vec<String>,
        opts: &ProcessOptions,
    ) -> Result<ProcessSpec, ContainerError> {
        let lookup = |k: &str| std::env::var(k).ok();
        Ok(exec_spec(&self.record.config.process, args, opts, &lookup)?)
    }

    /// Starts `spec` in the running container and returns once it runs, without its stdio.
    /// (An attached exec sends [`Request::Exec`] on [`Container::connect`]'s stream and
    /// relays with [`client::relay`].)
    pub async fn exec_detached(&mut self, spec: ProcessSpec) -> Result<(), ContainerError> {
        let stream = self.connect(Verb::Exec).await?;
        let req = Request::Exec { spec, detach: true };
        client::request(stream, self.id(), req).await?;
        Ok(())
    }
}
