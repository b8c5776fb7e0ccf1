//! [`VmBackend`] on QEMU `microvm` from the `vmm` crate: kernel from the kernel store (or `-k`),
//! modules for block + virtio-serial (+ the memory balloon, + overlayfs for a builder's VM), the cached init filesystem with vminitd, the container's
//! qcow2 overlay as `/dev/vda`, the agent's virtio-serial port on `<dir>/agent.sock`.
//!
//! A VM restores a copy of a pre-booted template where one can serve ([`super::template`]);
//! the QEMU process and its agent connection are [`super::vm`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::agent::AgentGuest;
use super::vm::{boot_err, boot_src, connect_agent, spawn_vm};
use crate::backend::{BootError, Booted, Vm, VmBackend, VmRequest, VmRootfs, ROOTFS_TAG};

/// Set (to anything but empty or `0`) to boot VMs without the memory balloon, so freed guest
/// memory stays with QEMU. Only for measuring what the balloon saves (bench/memory.sh).
const NO_BALLOON_ENV: &str = "CONTAINER_NO_BALLOON";

/// Whether VMs get the free-page-reporting balloon (see [`NO_BALLOON_ENV`]).
fn balloon_enabled() -> bool {
    match std::env::var_os(NO_BALLOON_ENV) {
        Some(v) => v.is_empty() || v == "0",
        None => true,
    }
}

/// The init filesystem a VM of some kernel and features boots with.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct InitfsChoice {
    /// The cached archive (in the memo: its file name).
    initfs: PathBuf,
    /// The kernel's disk and NIC drivers are modules (a template defers them).
    modular: bool,
    /// Optional drivers the kernel lacks.
    missing: Vec<String>,
}

/// The init filesystem for `kernel`, `vminitd` and `features`, built and cached in `cache_dir`
/// by content. Finding the modules walks the kernel's whole module tree and naming the archive
/// hashes vminitd and the modules (about 5 ms of every start), so the answer is remembered
/// next to the archives, keyed by the kernel's id and the identity of its module directory
/// and of vminitd (device, inode, size, change time: a rebuilt vminitd is a new key). A lost
/// or stale memo only costs the walk.
fn initfs_for(
    cache_dir: &Path,
    kernel: &vmm::Kernel,
    vminitd: &Path,
    features: vmm::Features,
) -> Result<InitfsChoice, BootError> {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let stamp = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            format!(
                "{}:{}:{}:{}.{}:{}.{}",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            )
        })
    };
    let key = format!(
        "initfs-memo-v1\n{}\n{:?}\n{:?}\n{}\n{:?}\n{:?}",
        kernel.id,
        kernel.modules_dir,
        kernel.modules_dir.as_deref().and_then(stamp),
        vminitd.display(),
        stamp(vminitd),
        features
    );
    let memo = cache_dir.join(format!(
        "memo-{}.json",
        &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..32]
    ));
    // The memo names the archive relative to its directory: a state root copied or moved
    // elsewhere must not send QEMU to the old root's files.
    if let Some(mut choice) = std::fs::read(&memo)
        .ok()
        .and_then(|b| serde_json::from_slice::<InitfsChoice>(&b).ok())
    {
        choice.initfs = cache_dir.join(choice.initfs.file_name().unwrap_or_default());
        if choice.initfs.is_file() {
            return Ok(choice);
        }
    }
    let (modules, missing) =
        vmm::modules::resolve_features(kernel.modules_dir.as_deref(), features)
            .map_err(boot_src("guest kernel modules"))?;
    let initfs = vmm::Initfs::new(vminitd)
        .modules(&modules)
        .build_cached(cache_dir)
        .map_err(boot_src("init filesystem"))?;
    let choice = InitfsChoice {
        initfs,
        modular: modules.iter().any(|m| m.name == "virtio_blk"),
        missing: missing.iter().map(|m| m.to_string()).collect(),
    };
    let mut named = choice.clone();
    named.initfs = choice
        .initfs
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    if let Ok(json) = serde_json::to_vec(&named) {
        let _ = atomic_file::write_atomic(&memo, &json);
    }
    Ok(choice)
}

/// Boots container VMs with QEMU.
pub struct QemuBackend {
    root: PathBuf,
    vminitd: Option<PathBuf>,
    /// A pool process's VM, for the container it was claimed for (used once).
    prebooted: std::sync::Mutex<Option<super::pool::Prebooted>>,
    /// The config of the last VM restored from a template, for [`VmBackend::started`] to
    /// pre-boot the next one of its shape.
    last_clone: std::sync::Mutex<Option<vmm::VmConfig>>,
}

impl QemuBackend {
    /// A backend for the state root `root`, with the static vminitd at `vminitd` (None: not
    /// found; boots then fail with a message saying how to provide it).
    pub fn new(root: &Path, vminitd: Option<PathBuf>) -> Result<QemuBackend, BootError> {
        Ok(QemuBackend {
            root: root.to_path_buf(),
            vminitd,
            prebooted: std::sync::Mutex::new(None),
            last_clone: std::sync::Mutex::new(None),
        })
    }

    /// This backend's first VM is `vm` when it fits (a pool process turned monitor).
    pub fn with_prebooted(self, vm: super::pool::Prebooted) -> QemuBackend {
        if let Ok(mut slot) = self.prebooted.lock() {
            *slot = Some(vm);
        }
        self
    }

    /// The cold-boot config of `req`, and whether the kernel's disk and NIC drivers are
    /// modules (a template needs them unloaded until its clones resume).
    fn config(&self, req: &VmRequest) -> Result<(vmm::VmConfig, bool), BootError> {
        let store = vmm::KernelStore::new(&self.root);
        let kernel = match &req.options.kernel {
            Some(k) => store
                .for_path(k)
                .map_err(boot_src(format!("kernel {}", k.display())))?,
            None => store.current().map_err(boot_src("guest kernel"))?,
        };
        let vminitd = req
            .options
            .init
            .as_ref()
            .or(self.vminitd.as_ref())
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                boot_err(
                    "vminitd not found: set CONTAINER_VMINITD or build it with scripts/setup.sh",
                )
            })?;
        let features = vmm::Features {
            block: true,
            console: true,
            net: !req.nets.is_empty(),
            virtiofs: !req.shares.is_empty()
                || matches!(req.rootfs, VmRootfs::Share(_))
                || req.pod_share.is_some(),
            // A pod's members mount their image and upper filesystems from files.
            loop_devices: req.pod_share.is_some(),
            balloon: balloon_enabled(),
            overlay: req.options.overlay,
            fuse: req.options.modules.iter().any(|m| m == "fuse"),
            tun: req.options.modules.iter().any(|m| m == "tun"),
            ..Default::default()
        };
        let InitfsChoice {
            initfs,
            modular,
            missing,
        } = initfs_for(&self.root.join("initfs"), &kernel, vminitd, features)?;
        // A kernel without the balloon driver still runs containers; the guest's freed memory
        // then stays with QEMU.
        let balloon = features.balloon && !missing.iter().any(|m| m == "virtio_balloon");
        if !missing.is_empty() {
            tracing::warn!(
                "the guest kernel lacks {}: freed guest memory will not return to the host",
                missing.join(", ")
            );
        }
        let mut cfg = vmm::VmConfig::new(kernel.vmlinux.clone(), initfs, req.console_log.clone());
        cfg.name = Some(req.dir.display().to_string());
        cfg.balloon = balloon;
        let qemu = cfg.qemu.clone();
        let forced = match &req.options.accel {
            Some(a) => Some(a.parse::<vmm::Accel>().map_err(boot_src("--accel"))?),
            None => None,
        };
        let decision =
            vmm::accel::choose(forced, &kernel, &qemu).map_err(boot_src("accelerator"))?;
        tracing::info!("{}", decision.notice());
        cfg.accel = decision.accel;
        cfg.cpus = req.options.cpus.max(1);
        cfg.memory_mib = req.options.memory_mib.max(64);
        if let VmRootfs::Disk(disk) = &req.rootfs {
            cfg.disks.push(vmm::DiskSpec {
                path: disk.clone(),
                format: vmm::DiskFormat::Qcow2,
                readonly: false,
            });
        }
        for n in &req.nets {
            let user = match &n.user {
                None => None,
                Some(ports) => Some(
                    ports
                        .iter()
                        .map(|p| match p.host_ip {
                            std::net::IpAddr::V4(host_ip) => Ok(vmm::HostForward {
                                udp: p.protocol == net::ports::Protocol::Udp,
                                host_ip,
                                host_port: p.host_port,
                                guest_port: p.container_port,
                            }),
                            std::net::IpAddr::V6(_) => Err(boot_err(format!(
                                "cannot publish {p}: user-mode networking forwards IPv4 host addresses only"
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            cfg.nets.push(vmm::NetSpec {
                tap: n.tap.clone(),
                mac: Some(n.mac.clone()),
                user,
            });
        }
        for disk in &req.volume_disks {
            cfg.disks.push(vmm::DiskSpec {
                path: disk.clone(),
                format: vmm::DiskFormat::Raw,
                readonly: false,
            });
        }
        for (i, _) in req.shares.iter().enumerate() {
            cfg.shares.push(vmm::ShareSpec {
                socket: req.socket_dir.join(format!("fs{i}.sock")),
                tag: crate::monitor::share_tag(i),
            });
        }
        if let VmRootfs::Share(_) = &req.rootfs {
            cfg.shares.push(vmm::ShareSpec {
                socket: req.socket_dir.join("fsroot.sock"),
                tag: ROOTFS_TAG.to_string(),
            });
        }
        if req.pod_share.is_some() {
            cfg.shares.push(vmm::ShareSpec {
                socket: req.socket_dir.join("fspod.sock"),
                tag: crate::pod::POD_TAG.to_string(),
            });
        }
        cfg.agent_socket = Some(req.socket_dir.join("agent.sock"));
        // Every VM gets QMP, for `container pause` (a template's clone uses it to restore
        // first; the template key leaves it out).
        cfg.qmp_socket = Some(req.socket_dir.join("qmp.sock"));
        Ok((cfg, modular))
    }

    /// The template a VM of `cfg` can be restored from, made first if missing, and whether its
    /// clone may load the balloon driver; None when it boots cold (not eligible, turned off, or
    /// the template could not be made: warned).
    async fn template_for(
        &self,
        req: &VmRequest,
        cfg: &vmm::VmConfig,
        modular: bool,
    ) -> Option<(PathBuf, bool)> {
        if req.options.no_template {
            return None;
        }
        let balloon = match super::template::eligible(cfg, modular) {
            Ok(b) => b,
            Err(why) => {
                tracing::debug!("cold boot: {why}");
                return None;
            }
        };
        match super::template::TemplateStore::new(&self.root)
            .ensure(cfg)
            .await
        {
            Ok(dir) => Some((dir, balloon)),
            Err(e) => {
                tracing::warn!("cold boot: {}", crate::error_line(&e));
                None
            }
        }
    }
}

#[async_trait]
impl VmBackend for QemuBackend {
    async fn create_overlay(&self, base: &Path, overlay: &Path) -> Result<(), BootError> {
        let (base, overlay) = (base.to_path_buf(), overlay.to_path_buf());
        tokio::task::spawn_blocking(move || vmm::qcow2_overlay(&base, &overlay))
            .await
            .map_err(boot_src("create overlay disk"))?
            .map_err(boot_src("create overlay disk"))
    }

    async fn boot(&self, req: &VmRequest) -> Result<Booted, BootError> {
        if let VmRootfs::Pod(member) = &req.rootfs {
            return super::pod::attach(req, member).await;
        }
        let (cfg, modular) = self.config(req)?;
        let mut prebooted = self.prebooted.lock().ok().and_then(|mut p| p.take());
        if let Some((dir, balloon)) = self.template_for(req, &cfg, modular).await {
            if let Ok(mut last) = self.last_clone.lock() {
                *last = Some(cfg.clone());
            }
            match prebooted.take() {
                Some(p) if p.fits(&cfg) && p.template() == dir => {
                    match p.adopt(req, &cfg, balloon).await {
                        Ok(b) => return Ok(b),
                        Err(e) => tracing::warn!(
                            "the pre-booted VM failed, restoring the template: {}",
                            crate::error_line(&e)
                        ),
                    }
                }
                Some(p) => p.discard().await,
                None => {}
            }
            match self.boot_clone(req, cfg.clone(), &dir, balloon).await {
                Ok(b) => return Ok(b),
                Err(e) => tracing::warn!(
                    "restoring template {} failed, booting cold: {}",
                    dir.display(),
                    crate::error_line(&e)
                ),
            }
        }
        if let Some(p) = prebooted {
            p.discard().await;
        }
        self.boot_vm(req, cfg, None, false).await
    }

    fn started(&self) {
        let Some(cfg) = self.last_clone.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        let Ok(program) = std::env::current_exe() else {
            return;
        };
        super::pool::Pool::new(&self.root).refill(&program, &self.root, &cfg);
    }
}

impl QemuBackend {
    /// Starts `cfg` as a clone of the template in `dir`: restore, then `Resume`.
    async fn boot_clone(
        &self,
        req: &VmRequest,
        mut cfg: vmm::VmConfig,
        dir: &Path,
        balloon: bool,
    ) -> Result<Booted, BootError> {
        let qmp = req.socket_dir.join("qmp.sock");
        super::template::clone_config(&mut cfg, dir, qmp);
        self.boot_vm(req, cfg, Some(dir), balloon).await
    }

    /// Starts QEMU with `cfg` and connects to vminitd; a clone (`template`) is restored and
    /// resumed in between.
    async fn boot_vm(
        &self,
        req: &VmRequest,
        cfg: vmm::VmConfig,
        template: Option<&Path>,
        balloon: bool,
    ) -> Result<Booted, BootError> {
        let sock = cfg.agent_socket.clone().unwrap_or_default();
        let qmp = cfg.qmp_socket.clone();
        let shares = req
            .shares
            .iter()
            .enumerate()
            .map(|(i, s)| super::virtiofs::ShareLaunch {
                share: s.clone(),
                socket: req.socket_dir.join(format!("fs{i}.sock")),
                log: req.dir.join(format!("virtiofsd-{i}.log")),
            })
            .chain(match &req.rootfs {
                VmRootfs::Share(share) => Some(super::virtiofs::ShareLaunch {
                    share: share.clone(),
                    socket: req.socket_dir.join("fsroot.sock"),
                    log: req.dir.join("virtiofsd-rootfs.log"),
                }),
                VmRootfs::Disk(_) | VmRootfs::Pod(_) => None,
            })
            .chain(
                req.pod_share
                    .as_ref()
                    .map(|share| super::virtiofs::ShareLaunch {
                        share: share.clone(),
                        socket: req.socket_dir.join("fspod.sock"),
                        log: req.dir.join("virtiofsd-pod.log"),
                    }),
            )
            .collect();
        let mut vm = spawn_vm(cfg, shares, req.netns.clone()).await?;
        tracing::debug!("QEMU running (pid {:?})", vm.pid);
        let connected = async {
            let mut early = None;
            let mut disks = Vec::new();
            if let (Some(dir), Some(qmp)) = (template, &qmp) {
                // Connected before the restore, the clone's agent port comes up with its host
                // already there, as in the saved template: the guest keeps its session and
                // takes the Hello as a restart, instead of seeing a hang-up and polling for
                // the next host (about 30 ms under TCG).
                early = tokio::net::UnixStream::connect(&sock).await.ok();
                disks = super::template::restore(dir, qmp, true).await?;
                tracing::debug!("VM state restored");
            }
            let client = connect_agent(&sock, early, &mut vm, &req.console_log).await?;
            if template.is_some() {
                tracing::debug!("agent connected, resuming");
                client
                    .resume(super::template::resume_request(balloon, disks))
                    .await
                    .map_err(boot_src("resume the restored VM"))?;
            }
            Ok::<_, BootError>(client)
        };
        match connected.await {
            Ok(client) => {
                let name = req
                    .dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("container");
                let guest = AgentGuest::new(client, &name[..name.len().min(12)]);
                Ok(Booted {
                    prebooted: false,
                    vm: Box::new(vm),
                    guest: Arc::new(guest),
                    template: template
                        .and_then(|d| d.file_name())
                        .map(|n| n.to_string_lossy().into_owned()),
                })
            }
            Err(e) => {
                vm.kill().await;
                Err(e)
            }
        }
    }
}
