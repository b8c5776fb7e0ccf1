//! The host as the runtime sees it: is it ready to run containers ([`Runtime::status`]), what
//! the state directory holds on disk ([`Runtime::df`]), and the guest kernels
//! ([`Runtime::kernels`]). The state directory's layout is known here and in the stores, not
//! by front ends.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::real::template::TemplateInfo;
pub use vmm::{Kernel, KernelSource, KernelStore};

use crate::real::template::TemplateStore;

use crate::container::ContainerError;
use crate::state::Status;
use crate::Runtime;

/// Errors reading the host's state.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The kernel store cannot be read.
    #[error(transparent)]
    Kernel(#[from] vmm::kernel::KernelError),
    /// The image store cannot be read.
    #[error(transparent)]
    Images(#[from] oci::StoreError),
    /// The containers cannot be read.
    #[error(transparent)]
    Containers(#[from] ContainerError),
}

/// `system status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemStatus {
    /// A container can be run: kernel, QEMU and vminitd are there.
    pub ready: bool,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The guest kernel.
    pub kernel: KernelStatus,
    /// The accelerator a container would get.
    pub accelerator: AccelStatus,
    /// The QEMU binary.
    pub qemu: QemuStatus,
    /// The guest init.
    pub vminitd: VminitdStatus,
    /// Containers by status.
    pub containers: ContainerCounts,
}

/// The configured guest kernel.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    /// One is configured.
    pub configured: bool,
    /// Its release (`uname -r` in the guest).
    pub release: Option<String>,
    /// Its id in the kernel store.
    pub id: Option<String>,
}

/// The accelerator and why.
#[derive(Debug, Clone, Serialize)]
pub struct AccelStatus {
    /// `kvm`, `tcg`, or none when it cannot be decided.
    pub name: Option<String>,
    /// Why.
    pub reason: String,
}

/// The QEMU binary found on PATH.
#[derive(Debug, Clone, Serialize)]
pub struct QemuStatus {
    /// Its path.
    pub path: Option<PathBuf>,
    /// The first line of its `--version`.
    pub version: Option<String>,
}

/// The static guest init.
#[derive(Debug, Clone, Serialize)]
pub struct VminitdStatus {
    /// Its path.
    pub path: Option<PathBuf>,
}

/// Containers by status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ContainerCounts {
    /// All.
    pub total: u64,
    /// Created, never started.
    pub created: u64,
    /// Running.
    pub running: u64,
    /// Exited.
    pub exited: u64,
}

/// One row of `system df`.
#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    /// `images`, `rootfs cache`, `containers`, `templates` or `kernels`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// How many.
    pub count: usize,
    /// Bytes allocated on disk.
    pub bytes: u64,
}

impl Runtime {
    /// The guest kernels of this state directory.
    pub fn kernels(&self) -> KernelStore {
        KernelStore::new(self.root())
    }

    /// The VM templates made so far, oldest first, each with the number of its pre-booted
    /// VMs waiting in the pool.
    pub fn templates(&self) -> Vec<TemplateInfo> {
        let waiting = crate::real::pool::Pool::new(self.root()).waiting();
        let mut list = TemplateStore::new(self.root()).list();
        for t in &mut list {
            t.waiting = waiting.iter().filter(|w| w.key == t.key).count();
        }
        list
    }

    /// Stops the pre-booted VMs waiting in the pool and removes every VM template (the next
    /// start makes a new one); returns how many templates went.
    pub fn templates_prune(&self) -> std::io::Result<usize> {
        crate::real::pool::Pool::new(self.root()).stop_all();
        TemplateStore::new(self.root()).prune()
    }

    /// Is this host ready to run containers: kernel, accelerator, QEMU, vminitd, containers.
    pub fn status(&self) -> Result<SystemStatus, SystemError> {
        let kernel = self.kernels().configured()?;
        let qemu = find_in_path("qemu-system-x86_64");
        let accel = |name: Option<&str>, reason: String| AccelStatus {
            name: name.map(String::from),
            reason,
        };
        let accelerator = match (&kernel, &qemu) {
            (Some(k), Some(q)) => match vmm::accel::choose(None, k, q) {
                Ok(d) => accel(Some(d.accel.qemu_name()), d.reason),
                Err(e) => accel(None, e.to_string()),
            },
            // Without a kernel the PVM probe cannot run: say what /dev/kvm alone tells.
            _ => match vmm::accel::kvm_usable() {
                Ok(()) if !vmm::accel::is_pvm_host() => {
                    accel(Some("kvm"), "hardware virtualization available".into())
                }
                Ok(()) => accel(
                    None,
                    "PVM host: decided by a probe boot of the kernel".into(),
                ),
                Err(why) => accel(Some("tcg"), format!("/dev/kvm is not usable ({why})")),
            },
        };
        let vminitd = crate::vminitd::find();
        let mut containers = ContainerCounts::default();
        for c in self.containers()? {
            containers.total += 1;
            match c.status() {
                Status::Created => containers.created += 1,
                Status::Running => containers.running += 1,
                // Between two runs it is neither; docker counts it as stopped.
                Status::Exited | Status::Restarting => containers.exited += 1,
            }
        }
        Ok(SystemStatus {
            ready: kernel.is_some() && qemu.is_some() && vminitd.is_some(),
            state_dir: self.root().to_path_buf(),
            kernel: KernelStatus {
                configured: kernel.is_some(),
                release: kernel.as_ref().and_then(|k| k.release.clone()),
                id: kernel.as_ref().map(|k| k.id.clone()),
            },
            accelerator,
            qemu: QemuStatus {
                version: qemu.as_deref().and_then(qemu_version),
                path: qemu,
            },
            vminitd: VminitdStatus { path: vminitd },
            containers,
        })
    }

    /// Disk used by images, the rootfs cache, containers and kernels (allocated blocks, so
    /// sparse images count what they hold).
    pub fn df(&self) -> Result<Vec<DiskUsage>, SystemError> {
        let root = self.root();
        let images = oci::Store::open(root)?;
        let kernels = self.kernels();
        let containers = self.store().list().map_err(ContainerError::from)?.len();
        let rootfs = crate::rootfs::RootfsCache::dir(root);
        let count_ext4 = |dir: &Path| {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "ext4"))
                        .count()
                })
                .unwrap_or(0)
        };
        Ok(vec![
            DiskUsage {
                kind: "images",
                count: images.list()?.len(),
                bytes: images.dirs().iter().map(|d| disk_usage(d)).sum(),
            },
            DiskUsage {
                kind: "rootfs cache",
                count: count_ext4(&rootfs),
                bytes: disk_usage(&rootfs),
            },
            DiskUsage {
                kind: "containers",
                count: containers,
                bytes: disk_usage(self.store().containers_dir()),
            },
            DiskUsage {
                kind: "templates",
                count: self.templates().len(),
                bytes: disk_usage(TemplateStore::new(root).dir()),
            },
            DiskUsage {
                kind: "kernels",
                count: kernels.list().len(),
                bytes: disk_usage(kernels.dir()),
            },
        ])
    }
}

/// Bytes allocated on disk under `path` (files counted once per inode).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(d) = std::fs::read_dir(&p) {
                stack.extend(d.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// First line of `qemu --version`, e.g. `QEMU emulator version 7.2.x (Debian …)`.
fn qemu_version(qemu: &Path) -> Option<String> {
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}
