//! Pre-booted VMs: a clone of a VM template restored ahead of time, waiting for the next
//! container of its shape, so that a start skips QEMU's own start, the restore and the agent
//! handshake (Kata calls its equivalent the VM cache).
//!
//! ```text
//!  <root>/pool/<key>-<pid>/        one per waiting VM, made by its pool process
//!    entry.json      written once the VM waits (see [`EntryInfo`]); gone once claimed
//!    placeholder<N>.img, boot.log
//!  <root>/pool/<key>.<slot>.lock   flock held by the pool process of that slot
//! ```
//!
//! A pool process is started (`container __monitor-pool FILE`, detached) by a monitor whose VM came
//! from a template, once that container runs, for the same VM shape. It restores a clone with
//! placeholder disks, connects to its agent and waits, without `Resume`: the clone gets its
//! entropy and clock only when claimed. `start` claims one before it would spawn a monitor
//! ([`claim`]): the pool process then *becomes* that container's monitor (QEMU stays its
//! child), swaps the container's own disks in behind the placeholders
//! ([`vmm::qmp::Qmp::swap_disk`]) and resumes the guest. A VM that does not fit the container
//! after all (its shape differs) is killed and the monitor boots as usual.
//!
//! A waiting VM leaves after [`POOL_IDLE_ENV`] seconds, when its template, its entry or its
//! state directory goes, or with `system template prune`. NICs on taps are pooled with a
//! tap of their own, which takes the place of the container's when claimed; VMs with host
//! directories are not (virtiofs needs shared memory), nor user-mode networking (its port
//! forwards are fixed when QEMU starts).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::vm::{boot_err, boot_src, connect_agent, spawn_vm, QemuHandle};
use crate::backend::{BootError, Booted, VmRequest};
use crate::state::{ContainerRecord, Lock};

/// How many pre-booted VMs to keep waiting per VM shape (default 1; `0` turns the pool off).
/// Only VMs that start from a template are pooled.
pub const POOL_ENV: &str = "CONTAINER_POOL";

/// Seconds a pre-booted VM waits for a container before it leaves (default 600).
pub const POOL_IDLE_ENV: &str = "CONTAINER_POOL_IDLE";

/// How long a claim may take on either side before it is given up.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// The environment a monitor's behaviour depends on: a pool process serves only claimers
/// whose values are its own (a test or a user that sets any of them gets a monitor of its
/// own making). The network namespace counts too: a monitor makes its taps and binds its
/// ports in its own. Of `PATH`, what it finds counts (QEMU): shells differ in `PATH` alone
/// (a Python virtualenv's, sudo's) without running another QEMU.
fn relevant_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("CONTAINER_")
                || matches!(k.as_str(), "TMPDIR" | "XDG_RUNTIME_DIR" | "RUST_LOG")
        })
        .collect();
    let netns = std::fs::read_link("/proc/self/ns/net").unwrap_or_default();
    env.push((" netns".into(), netns.display().to_string()));
    let qemu = super::template::which(Path::new(vmm::DEFAULT_QEMU)).unwrap_or_default();
    env.push((" qemu".into(), qemu.display().to_string()));
    env.sort();
    env
}

/// The number of VMs to keep per shape ([`POOL_ENV`]).
pub fn pool_size() -> usize {
    std::env::var(POOL_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

fn idle_limit() -> Duration {
    Duration::from_secs(
        std::env::var(POOL_IDLE_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(600),
    )
}

/// What a waiting VM says about itself (`entry.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    /// The template key (the VM's shape).
    pub key: String,
    /// The pool process.
    pub pid: u32,
    /// Where it takes claims.
    pub socket: PathBuf,
    /// vCPUs and memory, for a claimer to pick a VM that fits.
    pub cpus: u32,
    /// Guest memory.
    pub memory_mib: u64,
    /// NICs.
    #[serde(default)]
    pub nets: usize,
    /// When the VM was ready.
    pub ready: chrono::DateTime<chrono::Utc>,
    /// Restore until ready, in milliseconds.
    pub boot_ms: u64,
}

/// The pool of one state directory.
#[derive(Debug, Clone)]
pub struct Pool {
    dir: PathBuf,
}

impl Pool {
    /// The pool under `<root>/pool`.
    pub fn new(root: &Path) -> Pool {
        Pool {
            dir: root.join("pool"),
        }
    }

    /// The VMs waiting now (entries of dead pool processes are removed on the way).
    pub fn waiting(&self) -> Vec<EntryInfo> {
        self.sweep();
        let mut out: Vec<EntryInfo> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("entry.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.ready));
        out
    }

    /// Removes the directories of pool processes that died.
    fn sweep(&self) {
        atomic_file::remove_dead_writers(&self.dir, entry_pid);
    }

    /// Stops every waiting VM (and the pool processes still booting one); returns how many.
    pub fn stop_all(&self) -> usize {
        let mut stopped = 0;
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Some(pid) = entry_pid(&e.file_name().to_string_lossy()) else {
                continue;
            };
            // A claimed one is a container's monitor now (its entry has no entry.json left).
            // Removing its entry is what makes a waiting one leave: its next check sees the
            // entry gone. The signal only hurries it; a pid reused by now is not ours.
            if !e.path().join("entry.json").is_file() {
                continue;
            }
            if std::fs::remove_dir_all(e.path()).is_ok() {
                stopped += 1;
                if let (true, Ok(pid)) = (proc_is_pool(pid), i32::try_from(pid)) {
                    // SAFETY: kill(2) with SIGTERM of a pool process (checked just above).
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
        stopped
    }

    /// Whether a slot of `key` is free, i.e. another pool process would have work to do.
    fn has_free_slot(&self, key: &str) -> bool {
        (0..pool_size()).any(|slot| Lock::try_exclusive(&self.lock_path(key, slot)).is_ok())
    }

    fn lock_path(&self, key: &str, slot: usize) -> PathBuf {
        self.dir.join(format!("{key}.{slot}.lock"))
    }

    /// Starts a pool process for VMs of `cfg` (a clone's cold-boot config, as the backend
    /// made it for a container) unless every slot of its shape is taken. `program` is the
    /// `container` executable.
    pub fn refill(&self, program: &Path, root: &Path, cfg: &vmm::VmConfig) {
        if pool_size() == 0 || !poolable(cfg) {
            return;
        }
        let key = super::template::key(cfg);
        if std::fs::create_dir_all(&self.dir).is_err() || !self.has_free_slot(&key) {
            return;
        }
        let seed = self.dir.join(format!(".seed-{key}-{}", std::process::id()));
        let Ok(json) = serde_json::to_vec(cfg) else {
            return;
        };
        if atomic_file::write_atomic_unsynced(&seed, &json).is_err() {
            return;
        }
        let mut command = std::process::Command::new(program);
        command
            .arg("--root")
            .arg(root)
            .arg(crate::POOL_SUBCOMMAND)
            .arg(&seed)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Not the monitor's owner: a pooled VM belongs to no shim until claimed.
            .env_remove(super::super::monitor::owner::OWNER_ENV);
        if let Err(e) = crate::container::spawn_detached(&mut command) {
            tracing::debug!("start a pool process: {e}");
            let _ = std::fs::remove_file(&seed);
        }
    }
}

/// The pool process's pid in the name of an entry (`<key>-<pid>`) or a seed
/// (`.seed-<key>-<pid>`, its starter's).
fn entry_pid(name: &str) -> Option<u32> {
    name.rsplit_once('-')?.1.parse().ok()
}

/// Whether `/proc/PID/cmdline` is one of our pool processes (a pid may be reused).
fn proc_is_pool(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .any(|a| a == crate::POOL_SUBCOMMAND.as_bytes())
        })
        .unwrap_or(false)
}

/// Whether VMs of `cfg` can wait in the pool: NICs on taps only (a pre-booted VM's tap takes
/// the place of the one the container's network session makes; user-mode networking has its
/// forwards on QEMU's command line), no virtiofs share, no vsock daemon.
pub fn poolable(cfg: &vmm::VmConfig) -> bool {
    cfg.nets.iter().all(|n| n.user.is_none()) && cfg.shares.is_empty() && cfg.vsock_socket.is_none()
}

/// Whether container `record` could be served by a pooled VM at all (checked before a claim,
/// so that a VM is not given up for a container it cannot serve).
fn record_fits(record: &ContainerRecord) -> bool {
    let c = &record.config;
    let vm = &c.vm;
    c.netns.is_none()
        && c.rootfs_dir.is_none()
        && c.mounts.is_empty()
        && crate::pod::infra_of(record).is_none()
        && crate::pod::infra_name(record).is_none()
        && !vm.no_template
        && !vm.overlay
        && vm.kernel.is_none()
        && vm.init.is_none()
        && vm.accel.is_none()
        && vm.modules.is_empty()
}

/// A claim: the container the pool process is to become the monitor of.
#[derive(Serialize, Deserialize)]
struct Claim {
    id: String,
    wait_attach: bool,
    hold: bool,
    env: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    pid: Option<u32>,
    refused: Option<String>,
}

/// Hands container `record` to a waiting VM's pool process, which becomes its monitor;
/// returns that process's pid, or None when no waiting VM takes it (the caller spawns a
/// monitor as usual).
pub fn claim(
    root: &Path,
    record: &ContainerRecord,
    opts: crate::monitor::MonitorOptions,
) -> Option<u32> {
    if pool_size() == 0 || !record_fits(record) {
        return None;
    }
    let vm = &record.config.vm;
    let env = relevant_env();
    for entry in Pool::new(root).waiting() {
        if entry.cpus != vm.cpus.max(1)
            || entry.memory_mib != vm.memory_mib.max(64)
            || entry.nets != record.config.networks.len()
        {
            continue;
        }
        let request = Claim {
            id: record.id.clone(),
            wait_attach: opts.wait_attach,
            hold: opts.hold,
            env: env.clone(),
        };
        match claim_one(&entry.socket, &request) {
            Ok(pid) => return Some(pid),
            Err(why) => tracing::debug!("pre-booted VM {}: {why}", entry.pid),
        }
    }
    None
}

fn claim_one(socket: &Path, request: &Claim) -> Result<u32, String> {
    let stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(CLAIM_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(CLAIM_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    writer
        .write_all(line.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    let answer: Answer = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    match (answer.pid, answer.refused) {
        (Some(pid), _) => {
            // The pool process goes ahead only on this word: a claimer that gave up before
            // (and spawns a monitor of its own) never leaves two monitors behind.
            writer.write_all(b"go\n").map_err(|e| e.to_string())?;
            Ok(pid)
        }
        (None, why) => Err(why.unwrap_or_else(|| "refused".into())),
    }
}

/// A clone restored and connected, not yet resumed, kept by a pool process for the container
/// it becomes the monitor of.
pub struct Prebooted {
    key: String,
    vm: QemuHandle,
    client: agent::Client,
    qmp: PathBuf,
    console: PathBuf,
    template: PathBuf,
    balloon: bool,
    /// Holds the agent and QMP sockets for as long as the VM lives.
    sockets: tempfile::TempDir,
    /// Its NICs' taps, attached to nothing until they take the place of the container's.
    taps: Vec<net::ScratchTap>,
    /// The pool entry: its placeholder disks stay until the container's are in place (a
    /// reopen opens the old file once more).
    entry: PathBuf,
}

impl Prebooted {
    /// Whether this VM is of `cfg`'s shape.
    pub(crate) fn fits(&self, cfg: &vmm::VmConfig) -> bool {
        poolable(cfg) && super::template::key(cfg) == self.key
    }

    /// The template it was restored from.
    pub(crate) fn template(&self) -> &Path {
        &self.template
    }

    /// Ends the VM (it did not fit, or could not be handed over).
    pub(crate) async fn discard(mut self) {
        crate::backend::Vm::kill(&mut self.vm).await;
        let _ = std::fs::remove_dir_all(&self.entry);
    }

    /// Gives the VM `cfg`'s disks and resumes it for the container of `req`.
    pub(crate) async fn adopt(
        mut self,
        req: &VmRequest,
        cfg: &vmm::VmConfig,
        balloon: bool,
    ) -> Result<Booted, BootError> {
        let (qmp, disks) = (self.qmp.clone(), cfg.disks.clone());
        let swapped = tokio::task::spawn_blocking(move || {
            let mut q = vmm::qmp::Qmp::connect(&qmp, Duration::from_secs(5))?;
            for (i, d) in disks.iter().enumerate() {
                q.swap_disk(i, d)?;
            }
            q.announce_disk_sizes()
        })
        .await
        .map_err(boot_src("give the pre-booted VM its disks"))
        .and_then(|r| r.map_err(boot_src("give the pre-booted VM its disks")));
        let sizes = match swapped {
            Ok(s) => s,
            Err(e) => {
                self.discard().await;
                return Err(e);
            }
        };
        // The console so far (the boot was the template's) goes where the container's is read.
        if std::fs::rename(&self.console, &req.console_log).is_err() {
            let _ = std::fs::copy(&self.console, &req.console_log);
        }
        tracing::debug!("pre-booted VM has its disks");
        let _ = std::fs::remove_dir_all(&self.entry);
        for (tap, net) in std::mem::take(&mut self.taps).into_iter().zip(&cfg.nets) {
            if let Err(e) = tap.take_place_of(&net.tap) {
                self.discard().await;
                return Err(boot_src(format!("give the pre-booted VM tap {}", net.tap))(
                    e,
                ));
            }
        }
        let resumed = self
            .client
            .resume(super::template::resume_request(
                balloon && self.balloon,
                sizes,
            ))
            .await;
        if let Err(e) = resumed {
            self.discard().await;
            return Err(boot_src("resume the pre-booted VM")(e));
        }
        tracing::debug!("pre-booted VM resumed");
        let name = req
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("container");
        let guest = super::AgentGuest::new(self.client, &name[..name.len().min(12)]);
        let mut vm = self.vm;
        vm.keep = Some(Box::new(self.sockets));
        Ok(Booted {
            vm: Box::new(vm),
            guest: std::sync::Arc::new(guest),
            template: Some(self.key),
            prebooted: true,
        })
    }
}

/// The pool process (`container __monitor-pool SEED`): restores a clone for the shape in the config
/// file `seed` (removed once read), waits for a claim and then runs that container's monitor.
pub fn main(root: &Path, seed: &Path) -> Result<i32, BootError> {
    let cfg: vmm::VmConfig = std::fs::read(seed)
        .map_err(boot_src(format!("read {}", seed.display())))
        .and_then(|b| serde_json::from_slice(&b).map_err(boot_src("pool seed")))?;
    let _ = std::fs::remove_file(seed);
    let pool = Pool::new(root);
    let key = super::template::key(&cfg);
    let Some(slot) =
        (0..pool_size()).find_map(|s| Lock::try_exclusive(&pool.lock_path(&key, s)).ok())
    else {
        return Ok(0);
    };
    let entry = pool.dir.join(format!("{key}-{}", std::process::id()));
    std::fs::create_dir_all(&entry).map_err(boot_src("create the pool entry"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(boot_src("start the runtime"))?;
    let waited = rt.block_on(prepare_and_wait(root, &cfg, &key, &entry));
    // The slot is free for the next pool process as soon as this one is claimed or leaves.
    drop(slot);
    let Some((prebooted, claim)) = waited.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&entry);
    })?
    else {
        let _ = std::fs::remove_dir_all(&entry);
        return Ok(0);
    };
    let _ = std::fs::remove_file(entry.join("entry.json"));
    let store = crate::state::Store::open(root).map_err(boot_src("open the state directory"))?;
    // From here on this is the container's monitor: its log is the container's monitor.log.
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store.dir_of(&claim.id).join("monitor.log"))
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto stdout and stderr of this process; `log` stays open until then.
        unsafe {
            libc::dup2(log.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
        }
    }
    let backend = super::QemuBackend::new(root, crate::vminitd::find())?.with_prebooted(prebooted);
    let opts = crate::monitor::MonitorOptions {
        wait_attach: claim.wait_attach,
        hold: claim.hold,
    };
    rt.block_on(crate::monitor::run(&store, &claim.id, &backend, opts))
        .map_err(|e| boot_err(crate::error_line(&e)))
}

/// Restores the clone, writes the entry and waits; `Ok(None)` when it leaves unclaimed.
async fn prepare_and_wait(
    root: &Path,
    cfg: &vmm::VmConfig,
    key: &str,
    entry: &Path,
) -> Result<Option<(Prebooted, Claim)>, BootError> {
    let began = Instant::now();
    // SIGTERM (prune, a host shutdown) ends the wait like the idle time does: the VM and its
    // taps go with it, not left behind by a killed process. Taken from here on, so a
    // SIGTERM during the restore is served once it is done.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(boot_src("watch for SIGTERM"))?;
    let template = super::template::TemplateStore::new(root).dir().join(key);
    if !template.join("template.json").is_file() {
        return Ok(None);
    }
    let balloon = super::template::eligible(cfg, true).unwrap_or(false);
    let sockets = super::template::socket_dir_named("cpool", key)
        .map_err(boot_src("create the pool's socket directory"))?;
    let (agent_socket, qmp, claim_socket) = (
        sockets.path().join("agent.sock"),
        sockets.path().join("qmp.sock"),
        sockets.path().join("claim.sock"),
    );
    let mut c = cfg.clone();
    super::template::placeholders(&mut c, entry)?;
    let mut taps = Vec::new();
    if !c.nets.is_empty() {
        remove_dead_taps();
    }
    for (i, n) in c.nets.iter_mut().enumerate() {
        let name = format!("cpo{:x}n{i}", std::process::id());
        let tap = net::ScratchTap::create(&name).map_err(boot_src("create a placeholder tap"))?;
        n.tap = tap.name().to_string();
        taps.push(tap);
    }
    c.agent_socket = Some(agent_socket.clone());
    c.console_log = entry.join("boot.log");
    c.name = Some(entry.display().to_string());
    super::template::clone_config(&mut c, &template, qmp.clone());
    let mut vm = spawn_vm(c, Vec::new(), None).await?;
    let console = entry.join("boot.log");
    let connected = async {
        let early = tokio::net::UnixStream::connect(&agent_socket).await.ok();
        super::template::restore(&template, &qmp, false).await?;
        connect_agent(&agent_socket, early, &mut vm, &console).await
    }
    .await;
    let client = match connected {
        Ok(c) => c,
        Err(e) => {
            crate::backend::Vm::kill(&mut vm).await;
            return Err(e);
        }
    };
    let listener =
        tokio::net::UnixListener::bind(&claim_socket).map_err(boot_src("listen for claims"))?;
    let info = EntryInfo {
        key: key.to_string(),
        pid: std::process::id(),
        socket: claim_socket,
        cpus: cfg.cpus,
        memory_mib: cfg.memory_mib,
        nets: cfg.nets.len(),
        ready: chrono::Utc::now(),
        boot_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let json = serde_json::to_vec_pretty(&info).map_err(boot_src("write entry.json"))?;
    atomic_file::write_atomic_unsynced(&entry.join("entry.json"), &json)
        .map_err(boot_src("write entry.json"))?;
    let deadline = Instant::now() + idle_limit();
    let env = relevant_env();
    let claim = loop {
        let tick = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                match take_claim(stream, &env).await {
                    Some(claim) => break Some(claim),
                    None => continue,
                }
            }
            _ = vm.exit.changed() => break None,
            _ = term.recv() => break None,
            _ = tick => {
                let gone = !entry.join("entry.json").is_file() || !template.join("template.json").is_file();
                if gone || Instant::now() > deadline {
                    break None;
                }
            }
        }
    };
    let Some(claim) = claim else {
        crate::backend::Vm::kill(&mut vm).await;
        return Ok(None);
    };
    Ok(Some((
        Prebooted {
            key: key.to_string(),
            vm,
            client,
            qmp,
            console,
            template,
            balloon,
            sockets,
            taps,
            entry: entry.to_path_buf(),
        },
        claim,
    )))
}

/// The first variable whose value differs between `a` and `b` (both sorted by name).
fn env_difference(a: &[(String, String)], b: &[(String, String)]) -> Option<String> {
    let names: std::collections::BTreeSet<&String> = a.iter().chain(b).map(|(k, _)| k).collect();
    let value = |env: &[(String, String)], k: &String| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    names
        .into_iter()
        .find(|k| value(a, k) != value(b, k))
        .map(|k| k.trim().to_string())
}

/// Removes the taps of pool processes killed before they could (`cpo{pid:x}n{i}`).
fn remove_dead_taps() {
    let Ok(links) = net::links() else { return };
    let dead: Vec<String> = links
        .into_iter()
        .map(|l| l.name)
        .filter(|n| {
            n.strip_prefix("cpo")
                .and_then(|r| r.split_once('n'))
                .and_then(|(pid, _)| u32::from_str_radix(pid, 16).ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    let _ = net::delete_links(&dead);
}

/// Reads one claim from `stream`: answered with our pid when its environment is ours and
/// its sender is our user, and taken only once the claimer says `go`.
async fn take_claim(stream: tokio::net::UnixStream, env: &[(String, String)]) -> Option<Claim> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if stream.peer_cred().ok()?.uid() != me {
        return None;
    }
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let talk = async {
        let claim: Claim = serde_json::from_str(&lines.next_line().await.ok()??).ok()?;
        let answer = match env_difference(&claim.env, env) {
            None => Answer {
                pid: Some(std::process::id()),
                refused: None,
            },
            Some(name) => Answer {
                pid: None,
                refused: Some(format!("its {name} differs")),
            },
        };
        let mut text = serde_json::to_string(&answer).ok()?;
        text.push('\n');
        write.write_all(text.as_bytes()).await.ok()?;
        answer.pid?;
        (lines.next_line().await.ok()?? == "go").then_some(claim)
    };
    tokio::time::timeout(CLAIM_TIMEOUT, talk).await.ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_from_another_environment_names_what_differs() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ours = env(&[
            (" netns", "net:[1]"),
            ("CONTAINER_POOL", "1"),
            ("PATH", "/bin"),
        ]);
        assert_eq!(env_difference(&ours, &ours), None);
        let other = env(&[(" netns", "net:[2]"), ("PATH", "/bin")]);
        assert_eq!(env_difference(&ours, &other).as_deref(), Some("netns"));
        let fewer = env(&[(" netns", "net:[1]"), ("PATH", "/bin")]);
        assert_eq!(
            env_difference(&ours, &fewer).as_deref(),
            Some("CONTAINER_POOL")
        );
    }

    #[test]
    fn vms_with_user_mode_networking_or_shares_are_not_pooled() {
        let mut c = vmm::VmConfig::new("/k".into(), "/i".into(), "/c".into());
        assert!(poolable(&c));
        c.nets.push(vmm::NetSpec {
            tap: "t0".into(),
            mac: None,
            user: None,
        });
        assert!(poolable(&c));
        let mut user = c.clone();
        user.nets[0].user = Some(Vec::new());
        assert!(!poolable(&user));
        c.shares.push(vmm::ShareSpec {
            socket: "/s/fs0.sock".into(),
            tag: "s0".into(),
        });
        assert!(!poolable(&c));
    }
}
