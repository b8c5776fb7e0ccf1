//! A stage's builder VM (docs/build.md, "RUN in our VMs"): booted like any container's VM
//! (from the VM template where one serves), with the stage's base as `/dev/vda` mounted
//! read-only and a sparse scratch ext4 (`/dev/vdb`) holding one directory per later layer. Each RUN is a fresh container
//! on an overlay of those, whose upper directory becomes the step's layer (`LayerOut`); a
//! COPY/ADD/WORKDIR layer made on the host enters as the next directory (`LayerIn`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use runtime::backend::{Guest, GuestNetwork, NetDevice, Vm, VmBackend, VmRequest};
use runtime::real::QemuBackend;
use runtime::state::VmOptions;

/// Where the builder's filesystems live in the guest.
const BUILD_DIR: &str = "/run/build";

/// Size of the scratch disk the layers of a stage's RUN steps live on: a sparse file, so only
/// what the steps write takes host disk. Not a tmpfs: tmpfs in Linux 6.1 has no `user.*`
/// xattrs, and overlayfs' copy-up would drop them (docker's overlay2 on ext4 keeps them).
const SCRATCH_SIZE: u64 = 64 << 30;

/// A failure of the builder VM or of a request to it.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The VM could not be booted.
    #[error("start the builder VM")]
    Boot(#[source] runtime::backend::BootError),
    /// The guest refused or failed a request.
    #[error("builder VM: {what}")]
    Guest {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Host-side I/O around the VM (its directory, a layer file).
    #[error("builder VM: {what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn guest_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> VmError {
    let what = what.into();
    move |e| VmError::Guest {
        what,
        source: Box::new(e),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// How to boot a builder VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The state root (kernel store, templates, initfs cache).
    pub root: PathBuf,
    /// The static vminitd.
    pub vminitd: Option<PathBuf>,
    /// The stage's base as an ext4 image (shared, never written: the VM writes to a qcow2
    /// overlay of it and mounts it read-only anyway).
    pub base: PathBuf,
    /// Give RUN steps a network (QEMU's user-mode NAT: the internet and the host's services
    /// on 10.0.2.2, no other container).
    pub network: bool,
    /// vCPUs and memory.
    pub vm: VmOptions,
    /// The cache mounts' disks (ext4 images with a `data` directory), in the order
    /// [`cache_dir`] numbers them.
    pub caches: Vec<PathBuf>,
}

/// Where cache disk `i` of [`VmSpec::caches`] is mounted in the guest: its `data` directory
/// is what RUN steps see.
pub fn cache_dir(i: usize) -> String {
    format!("{BUILD_DIR}/cache/{i}/data")
}

/// One RUN: its argv and process settings, as the stage's config says.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// The command.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// `USER`.
    pub user: String,
    /// `RUN --mount`s, sources in the guest ([`BuilderVm::send_files`], [`cache_dir`]).
    pub mounts: Vec<agent::Mount>,
    /// Whether the step has the VM's network (`RUN --network=none`: only its own loopback).
    pub network: bool,
}

/// How a RUN ended, with its output (all of it went to the output sink as it came).
#[derive(Debug, Clone)]
pub struct RunExit {
    /// Exit code, or 128+signal.
    pub code: i32,
}

/// Where a RUN's output goes as it arrives.
pub trait OutputSink: Send + Sync {
    /// A chunk of the step's stdout or stderr.
    fn output(&self, bytes: &[u8]);
}

/// A running builder VM.
pub struct BuilderVm {
    vm: Box<dyn Vm>,
    client: agent::Client,
    /// Keeps the guest's agent alive (the container handle map lives there).
    _guest: Arc<dyn Guest>,
    dir: tempfile::TempDir,
    /// Layer directories made so far in the guest: `l/1` … `l/N`.
    layers: usize,
    /// Directories sent for mounts so far (`m1` …).
    sent: usize,
    /// Cache disks mounted (`cache/0` …).
    caches: usize,
}

fn layer_dir(n: usize) -> String {
    format!("{BUILD_DIR}/scratch/l/{n}")
}

/// Streams the layer tar at `tar` (uncompressed) into the new guest directory `path`
/// (`LayerIn`).
async fn send_layer(client: &agent::Client, path: &str, tar: &Path) -> Result<(), VmError> {
    let started = client
        .layer_in(agent::LayerIn { path: path.into() })
        .await
        .map_err(guest_err("start unpacking a layer"))?;
    let h = started.handle;
    let mut stderr = client.stderr(h);
    let mut w = client.stdin(h);
    let mut file = tokio::fs::File::open(tar)
        .await
        .map_err(io_err(format!("open {}", tar.display())))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = file
            .read(&mut buf)
            .await
            .map_err(io_err(format!("read {}", tar.display())))?;
        if k == 0 {
            break;
        }
        w.write_all(&buf[..k])
            .await
            .map_err(guest_err("send a layer"))?;
    }
    w.close().await.map_err(guest_err("send a layer"))?;
    let status = client.wait(h).await.map_err(guest_err("unpack a layer"))?;
    let why = stderr.read_to_end().await;
    let _ = client.delete(h).await;
    if status.code != Some(0) {
        return Err(VmError::Guest {
            what: "unpack a layer".into(),
            source: String::from_utf8_lossy(&why).trim().to_string().into(),
        });
    }
    Ok(())
}

impl BuilderVm {
    /// Boots the VM and mounts the base and the scratch disk.
    pub async fn boot(spec: &VmSpec) -> Result<BuilderVm, VmError> {
        // Short: the VM's unix sockets live here.
        let dir = crate::scratch::make(&std::env::temp_dir(), "cbuild")
            .map_err(io_err("create the VM's directory"))?;
        let backend = QemuBackend::new(&spec.root, spec.vminitd.clone()).map_err(VmError::Boot)?;
        let disk = dir.path().join("base.qcow2");
        backend
            .create_overlay(&spec.base, &disk)
            .await
            .map_err(VmError::Boot)?;
        let scratch = dir.path().join("scratch.ext4");
        let opts = ext4::FormatOptions {
            label: Some("build-scratch".into()),
            ..Default::default()
        };
        ext4::format_empty(&scratch, SCRATCH_SIZE, &opts)
            .map_err(|e| io_err("make the scratch disk")(std::io::Error::other(e)))?;
        let attachment = runtime::network::user_mode_attachment();
        let nets = if spec.network {
            vec![NetDevice {
                tap: String::new(),
                mac: attachment.mac.clone(),
                user: Some(Vec::new()),
            }]
        } else {
            Vec::new()
        };
        let req = VmRequest {
            dir: dir.path().to_path_buf(),
            socket_dir: dir.path().to_path_buf(),
            rootfs: runtime::backend::VmRootfs::Disk(disk),
            console_log: dir.path().join("console.log"),
            options: VmOptions {
                overlay: true,
                ..spec.vm.clone()
            },
            nets,
            volume_disks: std::iter::once(scratch)
                .chain(spec.caches.iter().cloned())
                .collect(),
            shares: Vec::new(),
            pod_share: None,
            netns: None,
        };
        let booted = backend.boot(&req).await.map_err(VmError::Boot)?;
        let mut vm = booted.vm;
        let ready = async {
            let client = booted.guest.agent_client().ok_or_else(|| VmError::Io {
                what: "reach the guest agent".into(),
                source: std::io::Error::other("no agent connection"),
            })?;
            let network = GuestNetwork {
                interfaces: if spec.network {
                    vec![attachment]
                } else {
                    Vec::new()
                },
                ..Default::default()
            };
            booted
                .guest
                .configure("buildsandbox", &network)
                .await
                .map_err(guest_err("configure the guest"))?;
            let mount = |source: &str, target: &str, fstype: &str, options: &[&str]| agent::Mount {
                source: source.into(),
                target: target.into(),
                fstype: fstype.into(),
                options: options.iter().map(|o| o.to_string()).collect(),
            };
            client
                .mount(mount(
                    "/dev/vda",
                    &format!("{BUILD_DIR}/base"),
                    "ext4",
                    &["ro"],
                ))
                .await
                .map_err(guest_err("mount the stage's base"))?;
            client
                .mount(mount(
                    "/dev/vdb",
                    &format!("{BUILD_DIR}/scratch"),
                    "ext4",
                    &[],
                ))
                .await
                .map_err(guest_err("mount the scratch disk"))?;
            for i in 0..spec.caches.len() {
                // vda is the base, vdb the scratch disk, then the caches.
                let dev = format!("/dev/vd{}", (b'c' + i as u8) as char);
                client
                    .mount(mount(&dev, &format!("{BUILD_DIR}/cache/{i}"), "ext4", &[]))
                    .await
                    .map_err(guest_err("mount a cache disk"))?;
            }
            Ok::<_, VmError>(client)
        };
        match ready.await {
            Ok(client) => Ok(BuilderVm {
                vm,
                client,
                _guest: booted.guest,
                dir,
                layers: 0,
                sent: 0,
                caches: spec.caches.len(),
            }),
            Err(e) => {
                vm.kill().await;
                Err(e)
            }
        }
    }

    /// The VM's console log (for errors that need the guest's side).
    pub fn console_log(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// Unpacks the tar at `tar` into a new directory of the scratch disk, outside the layer
    /// stack: files for a RUN's bind or secret mount. Returns its guest path.
    pub async fn send_files(&mut self, tar: &Path) -> Result<String, VmError> {
        self.sent += 1;
        let dir = format!("{BUILD_DIR}/scratch/m{}", self.sent);
        send_layer(&self.client, &dir, tar).await?;
        Ok(dir)
    }

    /// Unpacks the layer tar at `tar` (uncompressed) into the next layer directory.
    pub async fn layer_in(&mut self, tar: &Path) -> Result<(), VmError> {
        let n = self.layers + 1;
        send_layer(&self.client, &layer_dir(n), tar).await?;
        self.layers = n;
        Ok(())
    }

    /// Runs a RUN step in a new container on the stack of layers so far, with a new upper
    /// layer directory; its output goes to `sink`. Whatever the exit, the directory is the
    /// next layer ([`BuilderVm::layer_out`] packs it).
    pub async fn run(&mut self, spec: &RunSpec, sink: &dyn OutputSink) -> Result<RunExit, VmError> {
        let n = self.layers + 1;
        let target = format!("{BUILD_DIR}/root{n}");
        let mut lower: Vec<String> = (1..n).rev().map(layer_dir).collect();
        lower.push(format!("{BUILD_DIR}/base"));
        let options = vec![
            format!("lowerdir={}", lower.join(":")),
            format!("upperdir={}", layer_dir(n)),
            format!("workdir={BUILD_DIR}/scratch/work"),
            // A renamed directory's redirect and a metadata-only copy-up cannot be written
            // as a layer (docs/build.md).
            "redirect_dir=off".into(),
            "metacopy=off".into(),
            "index=off".into(),
        ];
        self.client
            .mount(agent::Mount {
                source: "overlay".into(),
                target: target.clone(),
                fstype: "overlay".into(),
                options,
            })
            .await
            .map_err(guest_err("mount the step's root filesystem"))?;
        self.layers = n;
        let req = agent::CreateProcess {
            container: format!("step{n}"),
            rootfs: Some(target.clone()),
            hostname: None,
            readonly_rootfs: false,
            mounts: spec.mounts.clone(),
            privileged: false,
            remove_stubs: true,
            own_network: !spec.network,
            process: agent::ProcessSpec {
                args: spec.args.clone(),
                env: spec.env.clone(),
                cwd: Some(spec.cwd.clone()),
                user: spec.user.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let h = self
            .client
            .create_process(req)
            .await
            .map_err(guest_err("start the step"))?;
        let mut out = self.client.stdout(h);
        let mut err = self.client.stderr(h);
        self.client
            .start(h)
            .await
            .map_err(guest_err("start the step"))?;
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            tokio::select! {
                chunk = out.recv(), if !out_done => match chunk {
                    Some(b) => sink.output(&b),
                    None => out_done = true,
                },
                chunk = err.recv(), if !err_done => match chunk {
                    Some(b) => sink.output(&b),
                    None => err_done = true,
                },
            }
        }
        let status = self
            .client
            .wait(h)
            .await
            .map_err(guest_err("wait for the step"))?;
        // The container (and its stubs) go; then nothing holds the overlay.
        self.client
            .delete(h)
            .await
            .map_err(guest_err("remove the step's container"))?;
        self.client
            .umount(&target, false)
            .await
            .map_err(guest_err("unmount the step's root filesystem"))?;
        let code = match (status.code, status.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        };
        Ok(RunExit { code })
    }

    /// Packs the topmost layer directory as an OCI layer tar into `dest` (uncompressed).
    pub async fn layer_out(&mut self, dest: &Path) -> Result<(), VmError> {
        let started = self
            .client
            .layer_out(agent::LayerOut {
                path: layer_dir(self.layers),
            })
            .await
            .map_err(guest_err("start packing the step's layer"))?;
        let h = started.handle;
        let mut out = self.client.stdout(h);
        let mut err = self.client.stderr(h);
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(io_err(format!("create {}", dest.display())))?;
        while let Some(chunk) = out.recv().await {
            file.write_all(&chunk)
                .await
                .map_err(io_err(format!("write {}", dest.display())))?;
        }
        file.flush()
            .await
            .map_err(io_err(format!("write {}", dest.display())))?;
        let why = err.read_to_end().await;
        let status = self
            .client
            .wait(h)
            .await
            .map_err(guest_err("pack the step's layer"))?;
        let _ = self.client.delete(h).await;
        if status.code != Some(0) {
            return Err(VmError::Guest {
                what: "pack the step's layer".into(),
                source: String::from_utf8_lossy(&why).trim().to_string().into(),
            });
        }
        Ok(())
    }

    /// Stops the VM. Only the cache disks are kept: they are unmounted first, so what the
    /// guest wrote to them is on the host's files before the VM is killed.
    pub async fn stop(mut self) {
        for i in 0..self.caches {
            let dir = format!("{BUILD_DIR}/cache/{i}");
            if let Err(e) = self.client.umount(&dir, false).await {
                tracing::warn!("unmount cache disk {i} of the builder VM: {e}");
            }
        }
        self.vm.kill().await;
    }
}
