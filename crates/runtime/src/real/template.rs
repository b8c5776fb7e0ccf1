//! VM templates: a VM booted once up to the point where vminitd waits for its first request,
//! then paused and saved, so that containers start from a restored copy instead of a cold boot.
//!
//! ```text
//!  <root>/templates/<key>/          one per VM shape (key: sha256 of everything that shapes it)
//!    ram          guest RAM, written by the template (share=on), mapped privately by clones
//!    state        QEMU device state (x-ignore-shared migration stream, ≈50 KB)
//!    template.json  what it was made from, when, how long it took
//!    boot.log     the template's console
//!  <root>/templates/<key>.lock      flock: one builder per key; others wait and reuse
//! ```
//!
//! The template boots with [`agent::contract::TEMPLATE_ARG`]: vminitd loads only the agent's
//! channel drivers, so no disk or NIC is probed with the placeholder backends the template has
//! (1 MiB raw files, user-mode network). A clone gets the same device list with its own
//! backends, and its first request is [`agent::Resume`]: fresh entropy, the clock, then the
//! deferred drivers, which now probe the clone's disks and NICs. The MAC address is set by
//! `SetupInterface` (the migration stream carries the template's).
//!
//! QEMU before 8.2 discards reported free pages of a private file mapping by punching holes
//! into the *file* (`ram_block_discard_range`), which would zero those pages under every other
//! clone. So there clones never load the balloon driver, and templates are used by default only
//! from QEMU 8.2 on ([`TEMPLATES_ENV`]): a clone that cannot return freed memory is a choice
//! for the user to make, not a default.
//!
//! A template is made under its lock in a temporary directory renamed into place only when
//! complete, so a builder killed half-way leaves nothing a later run would use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::vm::{boot_err, boot_src, connect_agent, spawn_vm};
use crate::backend::BootError;

/// `on`, `off` or `auto` (the default): whether containers start from VM templates. `auto`
/// uses them where a clone can also give freed memory back to the host (QEMU 8.2 or later, see
/// [`private_discard_is_safe`]) and boots cold otherwise, so that turning templates on never
/// silently costs a host its memory return.
pub const TEMPLATES_ENV: &str = "CONTAINER_TEMPLATES";

/// First QEMU release whose `ram_block_discard_range` leaves the file behind a private
/// mapping alone (it punched holes into it before, zeroing pages under every other clone).
const SAFE_DISCARD_QEMU: (u32, u32) = (8, 2);

/// Size of each placeholder disk of a template (never read: its driver is not loaded).
const PLACEHOLDER_BYTES: u64 = 1 << 20;

/// What a template was made from (`template.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    /// The key (the directory's name).
    pub key: String,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The init filesystem (content-addressed).
    pub initfs: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory.
    pub memory_mib: u64,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// virtio-blk devices.
    pub disks: usize,
    /// virtio-net devices.
    pub nets: usize,
    /// A balloon device (its driver stays unloaded in clones).
    pub balloon: bool,
    /// When it was made.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Boot, handshake and save, in milliseconds.
    pub build_ms: u64,
    /// Pre-booted VMs of this template waiting in the pool (counted when listed).
    #[serde(default)]
    pub waiting: usize,
}

/// How a VM of `cfg` may start from a template: `Ok(balloon)` when it can (`balloon`: its
/// clone may load the balloon driver), `Err(why)` when it boots cold.
pub fn eligible(cfg: &vmm::VmConfig, modular: bool) -> Result<bool, String> {
    let mode = std::env::var(TEMPLATES_ENV).unwrap_or_default();
    if mode == "off" {
        return Err(format!("{TEMPLATES_ENV}=off"));
    }
    if !cfg.shares.is_empty() || cfg.vsock_socket.is_some() {
        // vhost-user daemons need guest RAM mapped shared; a clone's is private.
        return Err("bind mounts (virtiofs) need shared guest memory".into());
    }
    if !modular {
        // Built-in disk and NIC drivers would probe the template's placeholders.
        return Err("the guest kernel has built-in virtio drivers".into());
    }
    let safe = private_discard_is_safe(&cfg.qemu);
    match (mode.as_str(), safe) {
        (_, true) => Ok(cfg.balloon),
        ("on", false) => Ok(false),
        _ => Err(format!(
            "QEMU before {}.{} cannot return a clone's freed memory (set {TEMPLATES_ENV}=on to \
             use templates anyway)",
            SAFE_DISCARD_QEMU.0, SAFE_DISCARD_QEMU.1
        )),
    }
}

/// Whether `qemu` discards freed pages of a private file mapping without punching holes
/// into the file (QEMU 8.2 or later). Asked on every start, so the answer of `--version` is
/// kept in the host cache ([`vmm::accel::host_cache_dir`]) under the binary's path, size and
/// modification time: a replaced QEMU is asked again.
pub fn private_discard_is_safe(qemu: &Path) -> bool {
    qemu_version_cached(qemu).is_some_and(|v| v >= SAFE_DISCARD_QEMU)
}

fn qemu_version_cached(qemu: &Path) -> Option<(u32, u32)> {
    let path = which(qemu)?;
    let meta = std::fs::metadata(&path).ok()?;
    let mtime = meta.modified().ok()?;
    let id = Sha256::digest(format!("{}\0{}\0{mtime:?}", path.display(), meta.len()).as_bytes());
    let cache =
        vmm::accel::host_cache_dir().join(format!("qemu-version-{}", hex::encode(&id[..8])));
    if let Some(v) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|t| qemu_version(&t))
    {
        return Some(v);
    }
    let out = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = qemu_version(&text)?;
    // Best effort: without the cache the next start asks QEMU again.
    if std::fs::create_dir_all(vmm::accel::host_cache_dir()).is_ok() {
        let _ = atomic_file::write_atomic(&cache, text.as_bytes());
    }
    Some(version)
}

/// `(major, minor)` of `QEMU emulator version 7.2.22 (Debian …)`.
fn qemu_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split("version ").nth(1)?.split_whitespace().next()?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The key of the template a VM of `cfg` is restored from: everything that shapes the saved
/// guest (kernel, init filesystem, memory, vCPUs, accelerator, the device list, QEMU itself).
pub fn key(cfg: &vmm::VmConfig) -> String {
    let qemu = which(&cfg.qemu).and_then(|p| std::fs::metadata(p).ok());
    let shape = serde_json::json!({
        "v": 2,
        "kernel": cfg.kernel,
        "initfs": cfg.initfs,
        "cpus": cfg.cpus,
        "memoryMib": cfg.memory_mib,
        "accel": cfg.accel.qemu_name(),
        "cpu": cfg.cpu_model(),
        "tbSize": cfg.tb_size_mib,
        "disks": cfg.disks.len(),
        // A template's guest probed its disks: a read-only one negotiated other features.
        "disksReadonly": cfg.disks.iter().map(|d| d.readonly).collect::<Vec<_>>(),
        // The backend kind shapes the device: a tap offers more virtio-net features.
        "nets": cfg.nets.iter().map(|n| if n.user.is_some() { "user" } else { "tap" }).collect::<Vec<_>>(),
        "balloon": cfg.balloon,
        "agent": cfg.agent_socket.is_some(),
        "cmdline": cfg.extra_cmdline,
        "qemu": cfg.qemu,
        "qemuSize": qemu.as_ref().map(std::fs::Metadata::len),
        "qemuMtime": qemu.and_then(|m| m.modified().ok()).map(|t| format!("{t:?}")),
    });
    let digest = Sha256::digest(shape.to_string().as_bytes());
    hex::encode(&digest[..16])
}

pub(crate) fn which(program: &Path) -> Option<PathBuf> {
    if program.is_absolute() {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The templates of one state directory.
#[derive(Debug, Clone)]
pub struct TemplateStore {
    dir: PathBuf,
}

impl TemplateStore {
    /// The store under `<root>/templates`.
    pub fn new(root: &Path) -> TemplateStore {
        TemplateStore {
            dir: root.join("templates"),
        }
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every complete template.
    pub fn list(&self) -> Vec<TemplateInfo> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<TemplateInfo> = entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("template.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by_key(|t| t.created);
        out
    }

    /// Removes every template (and leftovers of interrupted builds); returns how many
    /// templates went. A running clone keeps its mapping of a removed template's RAM.
    pub fn prune(&self) -> std::io::Result<usize> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                if path.join("template.json").is_file() {
                    removed += 1;
                }
                std::fs::remove_dir_all(&path)?;
            } else if path.extension().is_some_and(|x| x == "lock") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(removed)
    }

    /// The complete template for `cfg`, made first if missing (one builder per key; a
    /// concurrent caller waits for it and reuses its result).
    pub async fn ensure(&self, cfg: &vmm::VmConfig) -> Result<PathBuf, BootError> {
        let key = key(cfg);
        let dir = self.dir.join(&key);
        if dir.join("template.json").is_file() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.dir).map_err(boot_src("create the template store"))?;
        let lock_path = self.dir.join(format!("{key}.lock"));
        let _lock = tokio::task::spawn_blocking(move || crate::state::Lock::exclusive(&lock_path))
            .await
            .map_err(boot_src("lock the template"))?
            .map_err(boot_src("lock the template"))?;
        if dir.join("template.json").is_file() {
            return Ok(dir);
        }
        // Under the lock no other builder of this key lives: what a killed one left goes.
        let prefix = format!(".tmp-{key}-");
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let tmp = self.dir.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(boot_src("create the template directory"))?;
        match build(cfg, &key, &tmp).await {
            Ok(()) => {
                std::fs::rename(&tmp, &dir).map_err(boot_src("store the template"))?;
                Ok(dir)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }
}

/// A short private directory for a template build's sockets (unix socket paths are limited
/// to 108 bytes, state roots may be long), in the system's temp directory.
fn socket_dir(key: &str) -> std::io::Result<tempfile::TempDir> {
    socket_dir_named("ctpl", key)
}

/// [`socket_dir_in`] the system's temp directory, for `kind`'s processes (`ctpl`: template
/// builds, `cpool`: pooled VMs).
pub(crate) fn socket_dir_named(kind: &str, key: &str) -> std::io::Result<tempfile::TempDir> {
    socket_dir_in(&std::env::temp_dir(), kind, key)
}

/// `{kind}-{pid}-{key}-XXXXXX` in `parent`. Named after the process, so that the directories
/// of processes killed half-way (whose `TempDir` never dropped) are recognised and removed by
/// the next one of their kind.
fn socket_dir_in(parent: &Path, kind: &str, key: &str) -> std::io::Result<tempfile::TempDir> {
    let prefix = format!("{kind}-");
    atomic_file::remove_dead_writers(parent, |name| {
        name.strip_prefix(&prefix)?.split_once('-')?.0.parse().ok()
    });
    tempfile::Builder::new()
        .prefix(&format!("{kind}-{}-{}-", std::process::id(), &key[..8]))
        .tempdir_in(parent)
}

/// Replaces the disks of `cfg` with raw placeholder files in `dir` (never read by the guest
/// until a container's disks are put in their place).
pub(crate) fn placeholders(cfg: &mut vmm::VmConfig, dir: &Path) -> Result<(), BootError> {
    for (i, d) in cfg.disks.iter_mut().enumerate() {
        let path = dir.join(format!("placeholder{i}.img"));
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(PLACEHOLDER_BYTES))
            .map_err(boot_src("create a placeholder disk"))?;
        d.path = path;
        d.format = vmm::DiskFormat::Raw;
    }
    Ok(())
}

async fn build(cfg: &vmm::VmConfig, key: &str, dir: &Path) -> Result<(), BootError> {
    let began = Instant::now();
    let sockets = socket_dir(key).map_err(boot_src("create the template's socket directory"))?;
    let mut t = cfg.clone();
    placeholders(&mut t, dir)?;
    // The template's NIC drivers never run, but each backend must be of the clones' kind (see
    // net::ScratchTap): a tap attached to nothing, or user-mode networking without forwards.
    let mut taps = Vec::new();
    for (i, n) in t.nets.iter_mut().enumerate() {
        if n.user.is_some() {
            n.user = Some(Vec::new());
            continue;
        }
        let name = format!("ctp{}{i}", &key[..8]);
        let tap = net::ScratchTap::create(&name).map_err(boot_src("create a placeholder tap"))?;
        n.tap = tap.name().to_string();
        taps.push(tap);
    }
    let agent_socket = sockets.path().join("agent.sock");
    let qmp_socket = sockets.path().join("qmp.sock");
    t.agent_socket = Some(agent_socket.clone());
    t.qmp_socket = Some(qmp_socket.clone());
    t.console_log = dir.join("boot.log");
    t.memory_file = Some(vmm::MemoryFile {
        path: dir.join("ram"),
        shared: true,
    });
    // QEMU opens a memory file itself, by path and read-write (QEMU 7.2 has no other way),
    // which a QEMU of its own user could not; see `clone_config`.
    t.user = vmm::QemuUser::Invoker;
    t.name = Some(dir.display().to_string());
    t.incoming = false;
    t.extra_cmdline
        .push(agent::contract::TEMPLATE_ARG.to_string());
    let mut vm = spawn_vm(t, Vec::new(), None).await?;
    let console = dir.join("boot.log");
    let saved = async {
        // The handshake proves vminitd waits for requests. The host stays connected while
        // the state is saved, so the guest's session and its port's "host connected" are
        // saved with it: a clone whose monitor connects before the restore carries on that
        // session (the monitor's Hello restarts it) and never sees a hang-up.
        let host = connect_agent(&agent_socket, None, &mut vm, &console).await?;
        let state = dir.join("state");
        let saved = tokio::task::spawn_blocking(move || {
            let mut q = vmm::qmp::Qmp::connect(&qmp_socket, Duration::from_secs(10))?;
            q.save(&state)?;
            q.quit()
        })
        .await;
        drop(host);
        saved
            .map_err(boot_src("save the template"))?
            .map_err(boot_src("save the template"))
    }
    .await;
    if let Err(e) = saved {
        crate::backend::Vm::kill(&mut vm).await;
        return Err(e);
    }
    if tokio::time::timeout(Duration::from_secs(10), crate::backend::Vm::wait(&mut vm))
        .await
        .is_err()
    {
        crate::backend::Vm::kill(&mut vm).await;
        return Err(boot_err("the template VM did not quit after saving"));
    }
    let info = TemplateInfo {
        key: key.to_string(),
        kernel: cfg.kernel.clone(),
        initfs: cfg.initfs.clone(),
        cpus: cfg.cpus,
        memory_mib: cfg.memory_mib,
        accel: cfg.accel.qemu_name().to_string(),
        disks: cfg.disks.len(),
        nets: cfg.nets.len(),
        balloon: cfg.balloon,
        created: chrono::Utc::now(),
        build_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        waiting: 0,
    };
    let json = serde_json::to_vec_pretty(&info).map_err(boot_src("write template.json"))?;
    atomic_file::write_atomic(&dir.join("template.json"), &json)
        .map_err(boot_src("write template.json"))?;
    tracing::info!("made VM template {key} in {} ms", info.build_ms);
    Ok(())
}

/// Turns a cold-boot config into a clone of the template in `dir`: guest RAM mapped privately
/// from the template's file, paused for its state, with a QMP socket to restore it.
pub fn clone_config(cfg: &mut vmm::VmConfig, dir: &Path, qmp_socket: PathBuf) {
    cfg.memory_file = Some(vmm::MemoryFile {
        path: dir.join("ram"),
        shared: false,
    });
    // A clone maps the template's RAM privately, but QEMU 7.2 still opens the file
    // read-write: a uid of the clone's own would need write access to the file every clone
    // shares, so a clone's QEMU runs as the invoking user, capabilities dropped
    // (docs/security.md, gaps).
    cfg.user = vmm::QemuUser::Invoker;
    cfg.incoming = true;
    cfg.qmp_socket = Some(qmp_socket);
    cfg.extra_cmdline
        .push(agent::contract::TEMPLATE_ARG.to_string());
}

/// Loads the template's device state into a clone started with [`clone_config`]; with
/// `announce`, has QEMU tell the guest its disks' capacities and returns them (a pooled VM's
/// disks are still placeholders).
pub async fn restore(dir: &Path, qmp_socket: &Path, announce: bool) -> Result<Vec<u64>, BootError> {
    let (state, qmp) = (dir.join("state"), qmp_socket.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut q = vmm::qmp::Qmp::connect(&qmp, Duration::from_secs(10))?;
        q.restore(&state)?;
        if !announce {
            return Ok(Vec::new());
        }
        q.announce_disk_sizes()
    })
    .await
    .map_err(boot_src("restore the template"))?
    .map_err(boot_src("restore the template"))
}

/// The first request to a clone: fresh entropy and clock, then its own devices (the balloon
/// driver too when `balloon`) and its disks' capacities (`disks`, from [`restore`]).
pub fn resume_request(balloon: bool, disks: Vec<u64>) -> agent::Resume {
    use rand::RngCore;
    let mut entropy = vec![0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut entropy);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    agent::Resume {
        entropy,
        time_unix_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
        balloon,
        disks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_builds_socket_directory_goes_with_the_next_build() {
        let parent = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let left = parent.path().join(format!("ctpl-{dead}-0123abcd-x1y2z3"));
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("agent.sock"), b"").unwrap();
        let other = parent.path().join("unrelated");
        std::fs::create_dir(&other).unwrap();
        let live = socket_dir_in(parent.path(), "ctpl", "0123abcdef").unwrap();
        assert!(!left.exists(), "a dead build's directory stays");
        assert!(other.exists());
        let name = live
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!("ctpl-{}-0123abcd-", std::process::id())),
            "{name}"
        );
        // A live build's directory is not another build's to remove.
        let second = socket_dir_in(parent.path(), "ctpl", "0123abcdef").unwrap();
        assert!(live.path().exists() && second.path().exists());
    }

    fn cfg() -> vmm::VmConfig {
        let mut c = vmm::VmConfig::new("/k/vmlinux".into(), "/i/ab.cpio".into(), "/c".into());
        c.disks.push(vmm::DiskSpec {
            path: "/d/root.qcow2".into(),
            format: vmm::DiskFormat::Qcow2,
            readonly: false,
        });
        c.agent_socket = Some("/s/agent.sock".into());
        c
    }

    #[test]
    fn the_key_follows_the_vm_shape_not_its_backends() {
        let a = cfg();
        let mut b = cfg();
        b.disks[0].path = "/other/root.qcow2".into();
        b.console_log = "/other/boot.log".into();
        b.agent_socket = Some("/other/agent.sock".into());
        assert_eq!(key(&a), key(&b));
        for change in [
            |c: &mut vmm::VmConfig| c.memory_mib = 1024,
            |c: &mut vmm::VmConfig| c.cpus = 2,
            |c: &mut vmm::VmConfig| c.kernel = "/k2/vmlinux".into(),
            |c: &mut vmm::VmConfig| c.initfs = "/i/cd.cpio".into(),
            |c: &mut vmm::VmConfig| c.balloon = false,
            |c: &mut vmm::VmConfig| c.accel = vmm::Accel::Kvm,
            |c: &mut vmm::VmConfig| {
                c.disks.push(c.disks[0].clone());
            },
        ] {
            let mut c = cfg();
            change(&mut c);
            assert_ne!(key(&a), key(&c));
        }
    }

    #[test]
    fn qemu_versions_read() {
        assert_eq!(
            qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"),
            Some((7, 2))
        );
        assert_eq!(
            qemu_version("QEMU emulator version 10.0.2\n"),
            Some((10, 0))
        );
        assert_eq!(qemu_version("nonsense"), None);
        assert!((10, 0) >= SAFE_DISCARD_QEMU && (7, 2) < SAFE_DISCARD_QEMU);
    }

    #[test]
    fn the_qemu_version_is_asked_once_per_binary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let qemu = dir.path().join("qemu-system-x86_64");
        let fake = |version: &str| {
            std::fs::write(
                &qemu,
                format!(
                    "#!/bin/sh\necho 'QEMU emulator version {version}'\necho asked >> {}/asked\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let asked = || {
            std::fs::read_to_string(dir.path().join("asked"))
                .unwrap_or_default()
                .lines()
                .count()
        };
        fake("9.1.0");
        assert!(private_discard_is_safe(&qemu));
        assert!(private_discard_is_safe(&qemu));
        assert_eq!(asked(), 1, "the second answer comes from the cache");
        // Another binary at the same path (its size differs) is asked again.
        fake("7.2.22 (Debian)");
        assert!(!private_discard_is_safe(&qemu));
        assert_eq!(asked(), 2);
    }

    #[test]
    fn bind_mounts_and_builtin_drivers_boot_cold() {
        let mut c = cfg();
        assert!(eligible(&c, false).is_err());
        c.shares.push(vmm::ShareSpec {
            socket: "/s/fs0.sock".into(),
            tag: "s0".into(),
        });
        assert!(eligible(&c, true).is_err());
    }

    #[test]
    fn prune_removes_templates_and_leftovers() {
        let root = tempfile::tempdir().unwrap();
        let store = TemplateStore::new(root.path());
        assert!(store.list().is_empty());
        let t = store.dir().join("k1");
        std::fs::create_dir_all(&t).unwrap();
        let info = TemplateInfo {
            key: "k1".into(),
            kernel: "/k".into(),
            initfs: "/i".into(),
            cpus: 1,
            memory_mib: 512,
            accel: "tcg".into(),
            disks: 1,
            nets: 0,
            balloon: true,
            created: chrono::Utc::now(),
            build_ms: 1,
            waiting: 0,
        };
        std::fs::write(t.join("template.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        std::fs::create_dir_all(store.dir().join(".tmp-k2-1")).unwrap();
        std::fs::write(store.dir().join("k1.lock"), b"").unwrap();
        assert_eq!(store.list(), vec![info]);
        assert_eq!(store.prune().unwrap(), 1);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }
}
