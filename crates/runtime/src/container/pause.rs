//! `pause`, `unpause` and `top`: asks of a running container's monitor that touch its VM as a
//! whole (freeze, thaw) or list what runs in it. See `monitor/pause.rs` for what a paused
//! container still accepts.

use super::{Container, ContainerError, Verb};
use crate::client::{self, ClientError};
use crate::protocol::{Frame, Request};
use crate::top::{PsFormat, Table};

impl Container {
    /// Freezes the container's VM (docker's `pause`): every process stops until
    /// [`Container::unpause`]; it still counts as running, with status `paused`.
    pub async fn pause(&mut self) -> Result<(), ContainerError> {
        let stream = self.connect(Verb::Pause).await?;
        client::request(stream, self.id(), Request::Pause).await?;
        Ok(())
    }

    /// Lets a paused container's VM run again; the signals `kill` held meanwhile follow.
    pub async fn unpause(&mut self) -> Result<(), ContainerError> {
        let stream = self.connect(Verb::Unpause).await?;
        client::request(stream, self.id(), Request::Unpause).await?;
        Ok(())
    }

    /// The container's processes as `ps` with `ps_args` shows them (docker's `top`; see
    /// [`PsFormat::parse`] for the options understood).
    pub async fn top(&mut self, ps_args: &[String]) -> Result<Table, ContainerError> {
        let format = PsFormat::parse(ps_args)?;
        let stream = self.connect(Verb::Top).await?;
        match client::request(stream, self.id(), Request::Top).await? {
            Frame::Processes(list) => Ok(format.table(&list, chrono::Utc::now())),
            _ => Err(ClientError::Closed(self.id().to_string()).into()),
        }
    }
}
