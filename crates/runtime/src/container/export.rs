//! `export`: the container's root filesystem as one tar stream, as `docker export` writes it
//! (names relative to `/`, no entry for `/` itself, without what is mounted over it: volumes,
//! binds, tmpfs, `/proc`, `/sys`). The guest packs the rootfs as its VM mounted it; a stopped
//! container's VM is booted for it in hold mode, as for `cp`.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::copy::CopyError;
use super::{Container, ContainerError};
use crate::client;

impl Container {
    /// Writes the container's root filesystem as a tar stream to `out`.
    pub async fn export<W: AsyncWrite + Unpin>(
        &mut self,
        mut out: W,
    ) -> Result<(), ContainerError> {
        let (stream, held) = self.copy_connection().await?;
        let id = self.id().to_string();
        let copied = async {
            let mut session = client::export(stream, &id).await?;
            while let Some(b) = session.next_chunk().await? {
                out.write_all(&b).await.map_err(CopyError::Stream)?;
            }
            out.flush().await.map_err(CopyError::Stream)?;
            Ok(())
        }
        .await;
        self.released(held, copied).await
    }
}
