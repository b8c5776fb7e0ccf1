//! A pod member's "VM": a connection to its pod's VM through the infra container's shared
//! agent socket ([`crate::pod`]), instead of a QEMU of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::UnixStream;

use super::vm::{boot_err, boot_src};
use super::AgentGuest;
use crate::backend::{BootError, Booted, Guest, PodMember, Vm, VmExit, VmRequest};

/// How long the pod's monitor may take to answer a member's handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Connects a member to its pod's VM.
pub(crate) async fn attach(req: &VmRequest, member: &PodMember) -> Result<Booted, BootError> {
    let stream = UnixStream::connect(&member.socket).await.map_err(|e| {
        boot_err(format!(
            "the pod's VM is not running (its socket {}: {e})",
            member.socket.display()
        ))
    })?;
    let client = tokio::time::timeout(HANDSHAKE, agent::Client::connect(stream))
        .await
        .map_err(|_| boot_err("the pod's VM did not answer"))?
        .map_err(boot_src("connect to the pod's VM"))?;
    let name = req
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("container");
    let guest = Arc::new(AgentGuest::member(
        client.clone(),
        crate::pod::guest_name(name),
        &member.guest_dir,
        member.directory,
    ));
    let vm = MemberVm {
        guest: guest.clone(),
        client,
    };
    Ok(Booted {
        prebooted: false,
        vm: Box::new(vm),
        guest,
        template: None,
    })
}

/// A member's end of the pod's VM. It has no process of its own (its record keeps no VM
/// pid: killing one would kill the whole pod) and cannot be frozen alone.
struct MemberVm {
    guest: Arc<AgentGuest>,
    client: agent::Client,
}

#[async_trait]
impl Vm for MemberVm {
    fn pid(&self) -> Option<u32> {
        None
    }

    async fn wait(&mut self) -> VmExit {
        // The member is gone from the VM once its guest's `shutdown` (the teardown) ran.
        tokio::select! {
            _ = self.client.closed() => VmExit("the pod's VM ended".into()),
            _ = self.guest.left_pod() => VmExit("left the pod's VM".into()),
        }
    }

    async fn kill(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.guest.shutdown()).await;
    }
}
