//! [`Guest`] over the `agent` crate's client: maps our process ids to agent handles, attaches
//! output streams before starting a process (so no byte is lost), and keeps each process's
//! stdin writer until it is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backend::{
    ContainerTuning, Guest, GuestError, GuestMount, GuestNetwork, ProcessExit, ProcessOutput,
};
use crate::resources::{ResourceLimits, CPU_PERIOD_US};
use crate::spec::ProcessSpec;
use crate::stats::Sample;

/// Where the container's root filesystem is mounted inside the VM.
pub const ROOTFS_TARGET: &str = "/run/container/rootfs";

type Stdin = Arc<tokio::sync::Mutex<Option<agent::StdinWriter>>>;

/// A guest reached through the agent protocol.
pub struct AgentGuest {
    client: agent::Client,
    container: String,
    handles: Mutex<HashMap<String, agent::ProcessHandle>>,
    /// How the first process creates the container.
    container_setup: Mutex<ContainerSetup>,
    /// cgroup limits for the container's creation.
    resources: Mutex<ResourceLimits>,
    stdins: Mutex<HashMap<String, Stdin>>,
    /// OOM kill counts reported with processes' exits.
    exit_oom_kills: Mutex<HashMap<String, u64>>,
    /// A pod member's directory in its pod's VM ([`crate::pod`]): its root filesystem is
    /// mounted under it, and the VM is not its to configure or power off.
    member_dir: Option<String>,
    /// A pod member whose root filesystem is a host directory, bound at `bundle/` of its
    /// directory, instead of an image's ext4 under an overlay.
    directory_rootfs: bool,
    /// Set once a member's container has left the pod's VM.
    left: tokio::sync::watch::Sender<bool>,
}

/// Container-wide settings the first `CreateProcess` carries.
#[derive(Debug, Clone, Default)]
struct ContainerSetup {
    mounts: Vec<agent::Mount>,
    readonly_rootfs: bool,
    privileged: bool,
    sysctl: std::collections::BTreeMap<String, String>,
    shm_size: Option<u64>,
    cgroupns_host: bool,
    devices: Vec<agent::DeviceNode>,
    masked_paths: Vec<String>,
    readonly_paths: Vec<String>,
}

/// Moves an agent output stream into a channel of chunks.
fn forward(stream: agent::OutputStream) -> mpsc::Receiver<Bytes> {
    forward_paced(stream, None)
}

/// [`forward`], taking chunks no faster than `pace` allows (shared by a process's streams):
/// the guest's credit is granted as chunks are taken, so a process that writes faster waits.
fn forward_paced(
    mut stream: agent::OutputStream,
    pace: Option<Arc<Mutex<crate::pace::Pace>>>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(chunk) = stream.recv().await {
            let wait = pace
                .as_ref()
                .and_then(|p| p.lock().ok().map(|mut p| p.take(chunk.len())));
            if tx.send(Bytes::from(chunk)).await.is_err() {
                break;
            }
            if let Some(wait) = wait.filter(|w| !w.is_zero()) {
                tokio::time::sleep(wait).await;
            }
        }
    });
    rx
}

fn to_agent(m: &GuestMount) -> agent::Mount {
    agent::Mount {
        source: m.source.clone(),
        target: m.target.clone(),
        fstype: m.fstype.clone(),
        options: m.options.clone(),
    }
}

impl AgentGuest {
    /// Wraps a connected client; `container` names the container inside the guest.
    pub fn new(client: agent::Client, container: &str) -> AgentGuest {
        AgentGuest {
            client,
            container: container.to_string(),
            handles: Mutex::new(HashMap::new()),
            container_setup: Mutex::default(),
            resources: Mutex::new(ResourceLimits::default()),
            stdins: Mutex::new(HashMap::new()),
            exit_oom_kills: Mutex::new(HashMap::new()),
            member_dir: None,
            directory_rootfs: false,
            left: tokio::sync::watch::channel(false).0,
        }
    }

    /// Resolves once a pod member's container has left the pod's VM (its `shutdown` ran);
    /// never for a VM's own guest.
    pub async fn left_pod(&self) {
        let mut rx = self.left.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// A pod member's guest: `client` reaches the pod's VM through its shared socket, and
    /// `dir` is the member's directory there (its `base.ext4` and `upper.ext4`).
    pub fn member(
        client: agent::Client,
        container: &str,
        dir: &str,
        directory: bool,
    ) -> AgentGuest {
        AgentGuest {
            member_dir: Some(dir.trim_end_matches('/').to_string()),
            directory_rootfs: directory,
            ..AgentGuest::new(client, container)
        }
    }

    /// Where the container's root filesystem is mounted in the VM.
    fn rootfs_target(&self) -> String {
        match &self.member_dir {
            Some(dir) => format!("{dir}/rootfs"),
            None => ROOTFS_TARGET.to_string(),
        }
    }

    /// A pod member's root filesystem: its image's ext4 read-only and its own upper ext4, both
    /// files in the pod's share reached through loop devices, under an overlay.
    async fn mount_member_rootfs(&self, dir: &str) -> Result<(), GuestError> {
        // A member whose monitor died left its mounts behind: the same upper file mounted
        // twice read-write would corrupt it. Detached first (none: nothing happens).
        for sub in ["rootfs", "upper", "lower"] {
            let _ = self.client.umount(&format!("{dir}/{sub}"), true).await;
        }
        if self.directory_rootfs {
            // Bound on itself elsewhere: the container's root must be a mount of its own.
            let m = agent::Mount {
                source: format!("{dir}/{}", crate::pod::BUNDLE),
                target: format!("{dir}/rootfs"),
                fstype: "bind".into(),
                options: vec!["rbind".into()],
            };
            self.client.mount(m).await?;
            return Ok(());
        }
        let mounts = [
            agent::Mount {
                source: format!("{dir}/base.ext4"),
                target: format!("{dir}/lower"),
                fstype: "ext4".into(),
                // Every container of that image mounts the same file: nobody may write it,
                // its journal included.
                options: vec!["loop".into(), "ro".into(), "noload".into()],
            },
            agent::Mount {
                source: format!("{dir}/upper.ext4"),
                target: format!("{dir}/upper"),
                fstype: "ext4".into(),
                options: vec!["loop".into()],
            },
            agent::Mount {
                source: "overlay".into(),
                target: format!("{dir}/rootfs"),
                fstype: "overlay".into(),
                options: vec![
                    format!("lowerdir={dir}/lower"),
                    format!("upperdir={dir}/upper/data"),
                    format!("workdir={dir}/upper/work"),
                ],
            },
        ];
        for m in mounts {
            self.client.mount(m).await?;
        }
        Ok(())
    }

    /// Ends a pod member's container without touching the VM: every process of it killed
    /// and released, its root filesystem unmounted (the loop devices free themselves).
    async fn leave_pod(&self, dir: &str) {
        let handles: Vec<agent::ProcessHandle> = self
            .handles
            .lock()
            .map(|h| h.values().copied().collect())
            .unwrap_or_default();
        for &h in &handles {
            let _ = self.client.kill(h, libc::SIGKILL, true).await;
        }
        for &h in &handles {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.client.wait(h)).await;
            let _ = self.client.delete(h).await;
        }
        if let Ok(mut h) = self.handles.lock() {
            h.clear();
        }
        for sub in ["rootfs", "upper", "lower"] {
            let target = format!("{dir}/{sub}");
            if self.client.umount(&target, false).await.is_err() {
                let _ = self.client.umount(&target, true).await;
            }
        }
        self.left.send_replace(true);
    }

    fn handle(&self, id: &str) -> Result<agent::ProcessHandle, GuestError> {
        self.handles
            .lock()
            .ok()
            .and_then(|h| h.get(id).copied())
            .ok_or_else(|| GuestError::NoProcess(id.to_string()))
    }

    /// Writes the container's cgroup limits in the guest. With `lift`, an absent limit is
    /// written as `max` (an update); without it, absent limits are left alone and nothing is
    /// sent when there are none (a new container).
    async fn apply_resources(&self, limits: &ResourceLimits, lift: bool) -> Result<(), GuestError> {
        if limits.is_empty() && !lift {
            return Ok(());
        }
        let or_max = |v: Option<u64>| {
            if lift {
                Some(v.unwrap_or(agent::NO_LIMIT))
            } else {
                v
            }
        };
        let quota = limits.cpu_quota_us();
        let r = agent::Resources {
            container: self.container.clone(),
            memory_max: or_max(limits.memory_bytes),
            cpu_quota_us: quota,
            cpu_period_us: (quota.is_some() || lift).then_some(CPU_PERIOD_US),
            pids_max: or_max(limits.pids_limit),
        };
        Ok(self.client.update_resources(r).await?)
    }

    /// The `CreateProcess` for `spec`; with `setup`, it creates the container (on the mounted
    /// rootfs, with its mounts), else it joins the existing one.
    fn create_request(
        &self,
        setup: Option<ContainerSetup>,
        spec: &ProcessSpec,
    ) -> agent::CreateProcess {
        let creates = setup.is_some();
        let setup = setup.unwrap_or_default();
        agent::CreateProcess {
            container: self.container.clone(),
            rootfs: creates.then(|| self.rootfs_target()),
            hostname: None,
            readonly_rootfs: setup.readonly_rootfs,
            mounts: setup.mounts,
            privileged: setup.privileged,
            cgroupns_host: setup.cgroupns_host,
            remove_stubs: false,
            own_network: false,
            process: agent::ProcessSpec {
                args: spec.args.clone(),
                env: spec.env.clone(),
                cwd: Some(spec.cwd.clone()),
                user: spec.user.clone(),
                terminal: spec.terminal,
                stdin: spec.open_stdin,
                console_size: spec.console_size,
                capability_set: spec.capabilities.clone(),
                init: spec.init,
                rlimits: spec.rlimits.iter().map(|u| u.to_rlimit()).collect(),
                ..Default::default()
            },
            sysctl: setup.sysctl,
            shm_size: setup.shm_size,
            devices: setup.devices,
            masked_paths: setup.masked_paths,
            readonly_paths: setup.readonly_paths,
            start: false,
        }
    }

    fn stdin(&self, id: &str) -> Option<Stdin> {
        self.stdins.lock().ok().and_then(|s| s.get(id).cloned())
    }
}

#[async_trait]
impl Guest for AgentGuest {
    async fn configure(&self, hostname: &str, network: &GuestNetwork) -> Result<(), GuestError> {
        if self.member_dir.is_some() {
            // The pod's VM: its infra container configured it.
            return Ok(());
        }
        // One IPv6 default route: through the first network that has IPv6.
        let first_v6 = network.interfaces.iter().position(|n| n.gateway6.is_some());
        for (i, a) in network.interfaces.iter().enumerate() {
            let mut addresses = vec![a.address.to_string()];
            addresses.extend(a.address6.map(|a| a.to_string()));
            let iface = agent::Interface {
                name: format!("eth{i}"),
                addresses,
                // One default route: through the first network.
                gateway: (i == 0).then(|| a.gateway.to_string()),
                gateway6: a
                    .gateway6
                    .filter(|_| first_v6 == Some(i))
                    .map(|g| g.to_string()),
                mtu: Some(a.mtu),
                mac: Some(a.mac.clone()),
            };
            self.client.setup_interface(iface).await?;
        }
        let mut nameservers: Vec<String> =
            network.dns.servers.iter().map(|s| s.to_string()).collect();
        if nameservers.is_empty() {
            for a in &network.interfaces {
                for d in &a.dns {
                    let d = d.to_string();
                    if !nameservers.contains(&d) {
                        nameservers.push(d);
                    }
                }
            }
        }
        let dns =
            (!nameservers.is_empty() || network.dns != Default::default()).then(|| agent::Dns {
                nameservers,
                search: network.dns.search.clone(),
                options: network.dns.options.clone(),
                keep_image: network.dns.none,
            });
        let hosts = network
            .hosts
            .iter()
            .map(|(ip, names)| agent::HostEntry {
                ip: ip.to_string(),
                names: names.clone(),
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .ok();
        let c = agent::Configure {
            hostname: Some(hostname.to_string()),
            time_unix_ns: now,
            dns,
            hosts,
            ..Default::default()
        };
        self.client.configure(c).await.map_err(GuestError::from)
    }

    async fn mount_rootfs(&self, device: &str, fstype: &str) -> Result<(), GuestError> {
        if let Some(dir) = &self.member_dir {
            return self.mount_member_rootfs(dir).await;
        }
        let m = agent::Mount {
            source: device.to_string(),
            target: ROOTFS_TARGET.to_string(),
            fstype: fstype.to_string(),
            options: Vec::new(),
        };
        self.client.mount(m).await.map_err(GuestError::from)
    }

    async fn mount(&self, m: &GuestMount) -> Result<(), GuestError> {
        self.client
            .mount(to_agent(m))
            .await
            .map_err(GuestError::from)
    }

    fn set_container_mounts(
        &self,
        mounts: Vec<GuestMount>,
        readonly_rootfs: bool,
        privileged: bool,
    ) {
        if let Ok(mut c) = self.container_setup.lock() {
            c.mounts = mounts.iter().map(to_agent).collect();
            c.readonly_rootfs = readonly_rootfs;
            c.privileged = privileged;
        }
    }

    fn set_container_tuning(&self, tuning: ContainerTuning) {
        if let Ok(mut c) = self.container_setup.lock() {
            c.sysctl = tuning.sysctls;
            c.shm_size = tuning.shm_size;
            c.cgroupns_host = tuning.cgroupns_host;
            c.masked_paths = tuning.masked_paths;
            c.readonly_paths = tuning.readonly_paths;
            c.devices = tuning
                .devices
                .iter()
                .map(|d| agent::DeviceNode {
                    path: d.container_path.clone(),
                    major: d.major,
                    minor: d.minor,
                    mode: d.mode(),
                })
                .collect();
        }
    }

    fn set_container_resources(&self, limits: ResourceLimits) {
        if let Ok(mut r) = self.resources.lock() {
            *r = limits;
        }
    }

    async fn update_resources(&self, limits: ResourceLimits) -> Result<(), GuestError> {
        self.apply_resources(&limits, true).await
    }

    async fn stats(&self) -> Result<Sample, GuestError> {
        let s = self
            .client
            .stats(Some(self.container.clone()))
            .await
            .map_err(GuestError::from)?;
        Ok(Sample::from_agent(&s))
    }

    async fn processes(&self) -> Result<agent::ProcessList, GuestError> {
        Ok(self.client.processes(self.container.clone()).await?)
    }

    async fn spawn(&self, id: &str, spec: &ProcessSpec) -> Result<ProcessOutput, GuestError> {
        let first = self.handles.lock().map(|h| h.is_empty()).unwrap_or(false);
        // The first process creates the container on the mounted rootfs; later ones (exec)
        // join it.
        let setup = self
            .container_setup
            .lock()
            .ok()
            .filter(|_| first)
            .map(|c| c.clone());
        let mut req = self.create_request(setup, spec);
        let limits = self.resources.lock().map(|r| *r).unwrap_or_default();
        // The first process's limits go on its cgroup between create and start; without any,
        // the guest starts it at once.
        let started = first && limits.is_empty();
        req.start = started;
        let h = self.client.create_process(req).await?;
        // The container's own process is paced; an exec's output goes to the client that
        // asked for it.
        let pace = first
            .then(crate::pace::output_rate)
            .flatten()
            .map(|rate| Arc::new(Mutex::new(crate::pace::Pace::new(rate))));
        let stdout = forward_paced(self.client.stdout(h), pace.clone());
        let stderr = if spec.terminal {
            mpsc::channel(1).1
        } else {
            forward_paced(self.client.stderr(h), pace)
        };
        if spec.open_stdin {
            let w = self.client.stdin(h);
            if let Ok(mut s) = self.stdins.lock() {
                s.insert(id.to_string(), Arc::new(tokio::sync::Mutex::new(Some(w))));
            }
        }
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(id.to_string(), h);
        }
        if started {
            return Ok(ProcessOutput { stdout, stderr });
        }
        if first {
            // The container (and its cgroup) exists now; its process has not run yet.
            if let Err(e) = self.apply_resources(&limits, false).await {
                let _ = self.client.delete(h).await;
                return Err(e);
            }
        }
        if let Err(e) = self.client.start(h).await {
            let _ = self.client.delete(h).await;
            return Err(e.into());
        }
        Ok(ProcessOutput { stdout, stderr })
    }

    async fn prepare(&self, id: &str, spec: &ProcessSpec) -> Result<(), GuestError> {
        let setup = self
            .container_setup
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        // Never run: no terminal or stdin to set up.
        let spec = ProcessSpec {
            terminal: false,
            open_stdin: false,
            console_size: None,
            ..spec.clone()
        };
        let req = self.create_request(Some(setup), &spec);
        // Created, never started: the process waits for a start that does not come, and its
        // namespaces are what copies join. Shutdown ends it.
        let h = self.client.create_process(req).await?;
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(id.to_string(), h);
        }
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<ProcessExit, GuestError> {
        let h = self.handle(id)?;
        let st = self.client.wait(h).await?;
        if let (Some(n), Ok(mut m)) = (st.oom_kills, self.exit_oom_kills.lock()) {
            m.insert(id.to_string(), n);
        }
        Ok(match (st.code, st.signal) {
            (Some(c), _) => ProcessExit::Code(c),
            (None, Some(s)) => ProcessExit::Signal(s),
            (None, None) => ProcessExit::Code(255),
        })
    }

    fn oom_kills_at_exit(&self, id: &str) -> Option<u64> {
        self.exit_oom_kills.lock().ok()?.get(id).copied()
    }

    async fn signal(&self, id: &str, signal: i32) -> Result<(), GuestError> {
        let h = self.handle(id)?;
        self.client
            .kill(h, signal, false)
            .await
            .map_err(GuestError::from)
    }

    async fn write_stdin(&self, id: &str, data: Bytes) -> Result<(), GuestError> {
        let Some(w) = self.stdin(id) else {
            return Ok(());
        };
        let mut guard = w.lock().await;
        match guard.as_mut() {
            Some(w) => w.write_all(&data).await.map_err(GuestError::from),
            None => Ok(()),
        }
    }

    async fn close_stdin(&self, id: &str) -> Result<(), GuestError> {
        let Some(w) = self.stdin(id) else {
            return Ok(());
        };
        let taken = w.lock().await.take();
        match taken {
            Some(w) => w.close().await.map_err(GuestError::from),
            None => Ok(()),
        }
    }

    async fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), GuestError> {
        let h = self.handle(id)?;
        self.client
            .resize_pty(h, rows, cols)
            .await
            .map_err(GuestError::from)
    }

    async fn shutdown(&self) -> Result<(), GuestError> {
        if let Some(dir) = &self.member_dir {
            self.leave_pod(dir).await;
            return Ok(());
        }
        self.client.shutdown(false).await.map_err(GuestError::from)
    }

    async fn copy_out(
        &self,
        id: &str,
        path: &str,
        follow_link: bool,
    ) -> Result<(agent::PathStat, ProcessOutput), GuestError> {
        let req = agent::CopyOut {
            container: self.container.clone(),
            path: path.to_string(),
            follow_link,
        };
        let started = self.client.copy_out(req).await.map_err(GuestError::from)?;
        let h = started.handle;
        let output = ProcessOutput {
            stdout: forward(self.client.stdout(h)),
            stderr: forward(self.client.stderr(h)),
        };
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(id.to_string(), h);
        }
        Ok((started.stat.unwrap_or_default(), output))
    }

    async fn export(&self, id: &str) -> Result<ProcessOutput, GuestError> {
        // The rootfs in the VM's own mount namespace: nothing the container mounted over it
        // is seen there (its mounts never propagate back). The layer packer writes the names
        // `docker export` writes (relative, no root entry); a plain ext4 rootfs has none of
        // overlayfs' whiteouts or opaque markers for it to translate.
        let req = agent::LayerOut {
            path: self.rootfs_target(),
        };
        let started = self.client.layer_out(req).await.map_err(GuestError::from)?;
        let h = started.handle;
        let output = ProcessOutput {
            stdout: forward(self.client.stdout(h)),
            stderr: forward(self.client.stderr(h)),
        };
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(id.to_string(), h);
        }
        Ok(output)
    }

    async fn copy_in(
        &self,
        id: &str,
        path: &str,
        source: Option<agent::CopySource>,
        preserve_owner: bool,
    ) -> Result<ProcessOutput, GuestError> {
        let req = agent::CopyIn {
            container: self.container.clone(),
            path: path.to_string(),
            source,
            preserve_owner,
        };
        let h = self
            .client
            .copy_in(req)
            .await
            .map_err(GuestError::from)?
            .handle;
        let output = ProcessOutput {
            stdout: forward(self.client.stdout(h)),
            stderr: forward(self.client.stderr(h)),
        };
        let w = self.client.stdin(h);
        if let Ok(mut s) = self.stdins.lock() {
            s.insert(id.to_string(), Arc::new(tokio::sync::Mutex::new(Some(w))));
        }
        if let Ok(mut hs) = self.handles.lock() {
            hs.insert(id.to_string(), h);
        }
        Ok(output)
    }

    fn agent_client(&self) -> Option<agent::Client> {
        Some(self.client.clone())
    }

    async fn listen_socket(&self, id: &str, host: &std::path::Path) -> Result<String, GuestError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(host)
            .map_err(|e| GuestError::InvalidArgument(format!("socket {}: {e}", host.display())))?;
        let req = agent::SocketListen {
            id: id.to_string(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        };
        self.client
            .socket_listen(req)
            .await
            .map_err(GuestError::from)?;
        Ok(agent::contract::guest_socket(id))
    }

    async fn close_socket(&self, id: &str) -> Result<(), GuestError> {
        self.client.socket_close(id).await.map_err(GuestError::from)
    }

    fn relay_sockets(
        &self,
        inbound: Vec<(String, std::path::PathBuf)>,
        publish: &[crate::sockets::PublishSocket],
    ) -> Result<crate::sockets::SocketRelays, GuestError> {
        crate::sockets::SocketRelays::start(&self.client, &self.container, inbound, publish)
            .map_err(|e| GuestError::InvalidArgument(e.to_string()))
    }

    async fn release(&self, id: &str) -> Result<(), GuestError> {
        let h = self.handle(id)?;
        self.client.delete(h).await?;
        if let Ok(mut hs) = self.handles.lock() {
            hs.remove(id);
        }
        if let Ok(mut s) = self.stdins.lock() {
            s.remove(id);
        }
        Ok(())
    }
}
