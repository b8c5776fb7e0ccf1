//! What a VM is made of, and its translation to a QEMU `microvm` command line.
//!
//! Every device is virtio-mmio. Without a second IO-APIC the microvm machine has 8 transports;
//! with `ioapic2=on` it has 24 (QEMU `hw/i386/microvm.c`). We turn `ioapic2` on only when a
//! VM needs more than 8 devices, and refuse more than 24.
//!
//! Memory goes back to the host: every VM gets a `virtio-balloon-device` with free page
//! reporting (virtio spec 1.2 §5.5.6.7; the guest side is Linux `mm/page_reporting.c`). The
//! guest tells QEMU which free blocks of 2 MiB and more it holds, and QEMU discards them
//! (`madvise(MADV_DONTNEED)`, or a hole punched in a shared memfd), so memory a container
//! touched once and freed stops counting on the host. The balloon is never inflated; with
//! `deflate-on-oom` it could not starve the guest even if it were.
//!
//! Under TCG, QEMU 7.2 reserves a 1 GiB translation cache and fills it lazily; it is only
//! emptied when full. Boot and ordinary work use about 50 MiB of it, but a guest that keeps
//! running freshly written code (builds, package installs, JITs) grows it by the size of each
//! new translation, up to the full 1 GiB of host memory. [`DEFAULT_TB_SIZE_MIB`] caps it
//! (measured in docs/benchmarks.md, "Memory").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use agent::contract::{AGENT_PORT_NAME, INIT_PATH, REPORTING_ORDER_ARG};

use crate::accel::{host_tsc_khz, Accel};

/// Virtio-mmio transports without / with the second IO-APIC.
const MMIO_SLOTS: usize = 8;
const MMIO_SLOTS_IOAPIC2: usize = 24;

/// TCG translation cache size (`-accel tcg,tb-size=`) in MiB: above the ~50 MiB a boot and
/// ordinary work use, far below QEMU's 1 GiB default.
pub const DEFAULT_TB_SIZE_MIB: u32 = 128;

/// The QEMU binary VMs run when none is named: found on `PATH`.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// The vCPU model under TCG: QEMU's default `qemu64` plus ARAT (the local APIC timer keeps
/// running in idle states). Without ARAT, Linux marks the APIC timer as stopping in deep idle,
/// finds no broadcast timer on microvm and stays in periodic mode: an idle guest then takes
/// 250 timer interrupts a second (HZ) instead of a few, about 1 % of a host core per VM.
/// KVM keeps QEMU's default model (KVM reports ARAT itself).
pub const TCG_CPU_MODEL: &str = "qemu64,+arat";

/// Smallest free block (as a page order: 2^5 pages = 128 KiB) the guest reports to the host
/// under TCG. Linux's default is the pageblock order (2 MiB), which keeps the host's huge
/// pages whole, what matters under KVM; under TCG the smaller blocks return another ~10 MiB
/// of an idle guest and ~30 MiB after fragmenting work (docs/benchmarks.md, "Memory").
/// Linux 6.1 ignores the kernel argument; vminitd applies it once the balloon driver loads.
pub const TCG_REPORTING_ORDER: u32 = 5;

/// Kernel arguments every boot gets besides `rdinit=` (which [`VmConfig::cmdline`] puts second,
/// from [`INIT_PATH`]); see ENVIRONMENT.md for why each helps under TCG.
pub const BASE_CMDLINE: &[&str] = &[
    "console=ttyS0",
    "panic=-1",
    "reboot=t",
    "pci=off",
    "i8042.noaux",
    "i8042.nokbd",
    "i8042.nopnp",
    "tsc=reliable",
    "no_timer_check",
    "cryptomgr.notests",
    "quiet",
];

/// Errors of turning a config into a command line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// More virtio devices than the machine has transports.
    #[error(
        "the VM needs {0} virtio devices; the microvm machine has at most {MMIO_SLOTS_IOAPIC2}"
    )]
    TooManyDevices(usize),
    /// A value that would break QEMU's comma-separated option syntax.
    #[error("{what} {value:?} contains a comma, which QEMU options cannot carry")]
    Comma { what: &'static str, value: String },
    /// cpus or memory is zero.
    #[error(
        "the VM needs at least 1 cpu and 64 MiB of memory (got {cpus} cpus, {memory_mib} MiB)"
    )]
    Size { cpus: u32, memory_mib: u64 },
    /// vhost-user devices (virtiofs, vsock) with guest RAM in a private file mapping: their
    /// daemons can only share RAM that is mapped shared.
    #[error("virtiofs and vsock devices need shared guest memory, not a private memory file")]
    PrivateMemoryWithVhostUser,
    /// A memory file with a QEMU of its own user: QEMU opens the file itself (by path,
    /// read-write), which such a QEMU may not.
    #[error("guest RAM in a file (VM templates) needs QEMU to run as the invoking user")]
    MemoryFileAsOwnUser,
    /// A file or socket handed to QEMU could not be opened.
    #[error("cannot open {what} {path}")]
    Open {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// QEMU of its own user reopens the kernel and init filesystem, which it can only if
    /// every user may read them.
    #[error(
        "{what} {path} is not readable by QEMU's own user (mode {mode:04o}): make it \
         world-readable (chmod a+r) or set {QEMU_USER_ENV}=invoker"
    )]
    NotWorldReadable {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    /// `CONTAINER_QEMU_USER` holds something else than `own`, `invoker` or a uid range.
    #[error("{QEMU_USER_ENV}={0:?}: expected own, invoker or FIRST-LAST (a uid range)")]
    User(String),
}

/// Whether `CONTAINER_QEMU_CAPS=keep` leaves QEMU the invoking user's capabilities: for
/// debugging QEMU, and to measure what dropping them costs (docs/benchmarks.md).
pub(crate) fn keep_caps() -> bool {
    std::env::var("CONTAINER_QEMU_CAPS").is_ok_and(|v| v == "keep")
}

/// Who QEMU runs as: `own` (the default as root), `invoker`, or `FIRST-LAST` (own, from that
/// uid range). See [`QemuUser`].
pub const QEMU_USER_ENV: &str = "CONTAINER_QEMU_USER";

/// The uids QEMU processes of their own take by default: 65536 from 1879048192 (0x70000000), a
/// range systemd leaves unused (its container ranges end below it, and nothing above 2^31
/// is safe from signedness bugs), so no account of the host has them.
pub const QEMU_UIDS: (u32, u32) = (0x7000_0000, 0x1_0000);

/// Who a VM's QEMU runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuUser {
    /// [`QEMU_USER_ENV`] decides; unset, it is [`QemuUser::Own`] with [`QEMU_UIDS`] as root
    /// and the invoking user otherwise.
    #[default]
    Default,
    /// The invoking user, without capabilities (root for the rootful mode).
    Invoker,
    /// A uid that no other process has, from `first` to `first + count - 1`, its group the
    /// same number and no other group (but `/dev/kvm`'s under KVM). It owns no file: every
    /// file and socket QEMU needs is opened by the caller and handed over
    /// ([`crate::handoff`]), so it reaches nothing of the state directory, other containers'
    /// disks included. Needs root.
    Own { first: u32, count: u32 },
}

impl QemuUser {
    /// The uid range QEMU takes one uid from, or `None` for the invoking user.
    pub fn range(&self) -> Result<Option<(u32, u32)>, ConfigError> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        match self {
            QemuUser::Invoker => Ok(None),
            QemuUser::Own { first, count } => Ok(Some((*first, (*count).max(1)))),
            QemuUser::Default => {
                let value = std::env::var(QEMU_USER_ENV).unwrap_or_default();
                match value.as_str() {
                    "invoker" => Ok(None),
                    // Kept capabilities are for debugging QEMU as the invoking user.
                    "" | "own" if !root || keep_caps() => Ok(None),
                    "" | "own" => Ok(Some(QEMU_UIDS)),
                    range => {
                        let parsed = range
                            .split_once('-')
                            .and_then(|(a, b)| {
                                Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
                            })
                            .filter(|(a, b)| *a > 0 && a <= b);
                        match parsed {
                            Some((a, b)) if root => Ok(Some((a, b - a + 1))),
                            _ => Err(ConfigError::User(value)),
                        }
                    }
                }
            }
        }
    }
}

/// Guest RAM kept in a file (VM templates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryFile {
    /// The file (as large as the guest's memory).
    pub path: PathBuf,
    /// Mapped shared: the guest's writes go to the file (a template being made). Otherwise
    /// privately: writes are copy-on-write and unchanged pages stay shared, through the page
    /// cache, with every other VM mapping the same file (a clone).
    pub shared: bool,
}

/// Format of a disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A plain image.
    Raw,
    /// A qcow2 image (e.g. an overlay over a raw base).
    Qcow2,
}

/// A virtio-blk disk. The first disk of a VM is `/dev/vda`, the next `/dev/vdb`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Image file on the host.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
    /// Whether the guest may only read it.
    pub readonly: bool,
}

/// A virtio-net interface backed by an existing host tap device, or by QEMU's user-mode
/// network stack (for callers that may not create taps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// The tap's name (`ip tuntap add dev NAME mode tap`); unused with `user`.
    pub tap: String,
    /// The guest MAC address (`52:54:00:…`); QEMU picks one when `None`.
    pub mac: Option<String>,
    /// User-mode networking instead of the tap: the guest is 10.0.2.15/24 behind QEMU's NAT
    /// (gateway 10.0.2.2, DNS 10.0.2.3), reachable from the host only through these forwards.
    #[serde(default)]
    pub user: Option<Vec<HostForward>>,
}

/// A host port QEMU's user-mode network forwards to the guest (`hostfwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostForward {
    /// UDP instead of TCP.
    pub udp: bool,
    /// Host address to listen on (IPv4: QEMU's `hostfwd` takes no other).
    pub host_ip: std::net::Ipv4Addr,
    /// Host port.
    pub host_port: u16,
    /// Guest port.
    pub guest_port: u16,
}

/// A virtiofs share served by a `virtiofsd` the caller runs on `socket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSpec {
    /// virtiofsd's vhost-user socket.
    pub socket: PathBuf,
    /// The tag the guest mounts (`mount -t virtiofs TAG DIR`).
    pub tag: String,
}

/// Everything one VM is booted with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmConfig {
    /// The kernel to boot (an ELF vmlinux for PVH boot, or a bzImage).
    pub kernel: PathBuf,
    /// The initramfs (see [`crate::initfs`]).
    pub initfs: PathBuf,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Accelerator (see [`crate::accel::choose`]).
    pub accel: Accel,
    /// virtio-blk disks, in `/dev/vdX` order.
    pub disks: Vec<DiskSpec>,
    /// virtio-net interfaces, in `eth0…` order.
    pub nets: Vec<NetSpec>,
    /// virtiofs shares.
    pub shares: Vec<ShareSpec>,
    /// vhost-user socket of a `vhost-device-vsock` daemon the caller runs, for AF_VSOCK in the
    /// guest (optional; the agent uses virtio-serial).
    #[serde(default)]
    pub vsock_socket: Option<PathBuf>,
    /// Unix socket QEMU listens on for the agent's virtio-serial port, if any.
    pub agent_socket: Option<PathBuf>,
    /// File the guest's serial console is written to (truncated when the VM starts).
    pub console_log: PathBuf,
    /// Unix socket for QEMU's QMP monitor, if wanted.
    pub qmp_socket: Option<PathBuf>,
    /// Kernel arguments after the standard ones.
    pub extra_cmdline: Vec<String>,
    /// Host TSC frequency for `tsc_early_khz=` under TCG; read from /proc/cpuinfo when `None`.
    pub tsc_khz: Option<u64>,
    /// The QEMU binary (`qemu-system-x86_64` from `PATH` by default).
    pub qemu: PathBuf,
    /// Arguments appended to QEMU's command line as they are (tuning, experiments).
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// A virtio balloon with free page reporting, so freed guest memory returns to the host
    /// (the guest needs the `virtio_balloon` module: [`crate::Features::balloon`]).
    #[serde(default = "yes")]
    pub balloon: bool,
    /// TCG translation cache in MiB (`None`: QEMU's default of 1 GiB); ignored under KVM.
    #[serde(default = "default_tb_size")]
    pub tb_size_mib: Option<u32>,
    /// Guest RAM in a file rather than anonymous memory (see [`MemoryFile`]).
    #[serde(default)]
    pub memory_file: Option<MemoryFile>,
    /// Start paused, waiting for a saved state (`-incoming defer`, then
    /// [`crate::qmp::Qmp::restore`]).
    #[serde(default)]
    pub incoming: bool,
    /// QEMU's seccomp sandbox ([`SANDBOX`]): on unless a caller has a reason.
    #[serde(default = "sandbox_default")]
    pub sandbox: bool,
    /// Who QEMU runs as.
    #[serde(default)]
    pub user: QemuUser,
    /// QEMU's `-name`: what `ps` shows of whose VM this is (the runtime puts the container's
    /// directory there). A QEMU handed its files has no other path on its command line.
    #[serde(default)]
    pub name: Option<String>,
}

/// QEMU's seccomp filter: the guest's devices run in a process that cannot start programs,
/// change its privileges (setuid and friends), change scheduling or resource limits, or make
/// the obsolete system calls QEMU no longer needs. A guest that takes over a device model
/// finds a process that can do little more than QEMU itself does. Templates pass their state
/// file as a descriptor ([`crate::qmp`]) so that `spawn=deny` holds for them too.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The sandbox is on unless `CONTAINER_QEMU_SANDBOX=off` (for debugging QEMU, and to measure
/// what the sandbox costs: docs/benchmarks.md), as docker's `--security-opt seccomp=unconfined`.
fn sandbox_default() -> bool {
    std::env::var("CONTAINER_QEMU_SANDBOX").map_or(true, |v| v != "off")
}

fn yes() -> bool {
    true
}

fn default_tb_size() -> Option<u32> {
    Some(DEFAULT_TB_SIZE_MIB)
}

impl VmConfig {
    /// A config with the given boot files and console log, 1 cpu, 512 MiB, TCG, no devices.
    pub fn new(kernel: PathBuf, initfs: PathBuf, console_log: PathBuf) -> Self {
        VmConfig {
            kernel,
            initfs,
            cpus: 1,
            memory_mib: 512,
            accel: Accel::Tcg,
            disks: Vec::new(),
            nets: Vec::new(),
            shares: Vec::new(),
            vsock_socket: None,
            agent_socket: None,
            console_log,
            qmp_socket: None,
            extra_cmdline: Vec::new(),
            tsc_khz: None,
            qemu: PathBuf::from(DEFAULT_QEMU),
            extra_args: Vec::new(),
            balloon: true,
            tb_size_mib: default_tb_size(),
            memory_file: None,
            incoming: false,
            sandbox: sandbox_default(),
            user: QemuUser::Default,
            name: None,
        }
    }

    /// Number of virtio-mmio devices this VM uses.
    pub fn device_count(&self) -> usize {
        self.disks.len()
            + self.nets.len()
            + self.shares.len()
            + usize::from(self.vsock_socket.is_some())
            + usize::from(self.agent_socket.is_some())
            + usize::from(self.balloon)
    }

    /// The `-cpu` model, if not QEMU's default: [`TCG_CPU_MODEL`] under TCG.
    pub fn cpu_model(&self) -> Option<&'static str> {
        (self.accel == Accel::Tcg).then_some(TCG_CPU_MODEL)
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        let mut parts: Vec<String> = BASE_CMDLINE.iter().map(|s| s.to_string()).collect();
        parts.insert(1, format!("rdinit={INIT_PATH}"));
        if self.accel == Accel::Tcg {
            if let Some(khz) = self.tsc_khz.or_else(host_tsc_khz) {
                parts.push(format!("tsc_early_khz={khz}"));
            }
            if self.balloon {
                parts.push(format!("{REPORTING_ORDER_ARG}{TCG_REPORTING_ORDER}"));
            }
        }
        parts.extend(self.extra_cmdline.iter().cloned());
        parts.join(" ")
    }

    /// The QEMU arguments (without the binary itself), for a QEMU that opens its files by
    /// path.
    pub fn args(&self) -> Result<Vec<String>, ConfigError> {
        self.args_with(&mut crate::handoff::Paths)
    }

    /// The QEMU arguments, naming files and sockets as `files` says.
    pub(crate) fn args_with(&self, files: &mut dyn Files) -> Result<Vec<String>, ConfigError> {
        if self.cpus == 0 || self.memory_mib < 64 {
            return Err(ConfigError::Size {
                cpus: self.cpus,
                memory_mib: self.memory_mib,
            });
        }
        let devices = self.device_count();
        if devices > MMIO_SLOTS_IOAPIC2 {
            return Err(ConfigError::TooManyDevices(devices));
        }
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));

        // pit/pic/rtc stay on: turning them off made TCG boots slower or hang (ENVIRONMENT.md).
        let mut machine = String::from("microvm,pit=on,pic=on,rtc=on,isa-serial=on");
        if devices > MMIO_SLOTS {
            machine.push_str(",ioapic2=on");
        }
        // vhost-user devices read guest memory directly: it must be a shared memfd.
        let shared_memory = !self.shares.is_empty() || self.vsock_socket.is_some();
        if shared_memory && self.memory_file.as_ref().is_some_and(|f| !f.shared) {
            return Err(ConfigError::PrivateMemoryWithVhostUser);
        }
        if shared_memory || self.memory_file.is_some() {
            machine.push_str(",memory-backend=mem");
        }
        if let Some(name) = &self.name {
            no_comma("VM name", name)?;
            push(&["-name", &format!("guest={name}")]);
        }
        push(&["-M", &machine]);
        let mut accel = self.accel.qemu_name().to_string();
        if let (Accel::Tcg, Some(mib)) = (self.accel, self.tb_size_mib) {
            let _ = write!(accel, ",tb-size={mib}");
        }
        push(&["-accel", &accel]);
        if let Some(model) = self.cpu_model() {
            push(&["-cpu", model]);
        }
        push(&["-smp", &self.cpus.to_string()]);
        push(&["-m", &format!("{}M", self.memory_mib)]);
        if let Some(f) = &self.memory_file {
            push(&[
                "-object",
                &format!(
                    "memory-backend-file,id=mem,size={}M,mem-path={},share={}",
                    self.memory_mib,
                    opt_path("memory file", &f.path)?,
                    if f.shared { "on" } else { "off" }
                ),
            ]);
        } else if shared_memory {
            push(&[
                "-object",
                &format!(
                    "memory-backend-memfd,id=mem,size={}M,share=on",
                    self.memory_mib
                ),
            ]);
        }
        if self.incoming {
            push(&["-incoming", "defer"]);
        }
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        if self.sandbox {
            push(&["-sandbox", SANDBOX]);
        }
        push(&["-kernel", &files.boot_file("kernel", &self.kernel)?]);
        push(&["-initrd", &files.boot_file("initfs", &self.initfs)?]);
        push(&["-append", &self.cmdline()]);
        push(&[
            "-chardev",
            &format!("file,id=con,path={}", files.log_file(&self.console_log)?),
            "-serial",
            "chardev:con",
        ]);
        if let Some(qmp) = &self.qmp_socket {
            push(&[
                "-chardev",
                &format!("socket,id=qmp,{}", files.server_socket("QMP socket", qmp)?),
                "-mon",
                "chardev=qmp,mode=control",
            ]);
        }

        // Device order is guest order: disks first so the rootfs is /dev/vda. The default
        // cache mode (writeback) honours the guest's flushes, so what a container fsyncs
        // survives QEMU being killed; discard=unmap gives freed blocks back to the overlay.
        //
        // werror/rerror=report: a write the host cannot store (its disk is full, so the qcow2
        // overlay or a volume's image cannot grow) fails in the guest as an I/O error that the
        // writing process sees, and the container keeps running: under docker, too, only the
        // write fails (ENOSPC there; EIO here, as the guest's filesystem believes it has
        // room). QEMU's default (werror=enospc) would pause the whole VM instead, silently:
        // every process in it, exec, stop and the agent hang until someone resumes it.
        for (i, d) in self.disks.iter().enumerate() {
            let format = match d.format {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            };
            let mut drive = format!(
                "id=disk{i},node-name=vd{i},{},format={format},if=none,discard=unmap,werror=report,rerror=report",
                files.drive(d)?
            );
            if d.readonly {
                drive.push_str(",readonly=on");
            }
            push(&["-drive", &drive]);
            push(&["-device", &format!("virtio-blk-device,drive=disk{i}")]);
        }
        for (i, n) in self.nets.iter().enumerate() {
            let netdev = match &n.user {
                Some(forwards) => {
                    let mut d = format!("user,id=net{i},net=10.0.2.0/24");
                    for f in forwards {
                        let proto = if f.udp { "udp" } else { "tcp" };
                        let _ = write!(
                            d,
                            ",hostfwd={proto}:{}:{}-:{}",
                            f.host_ip, f.host_port, f.guest_port
                        );
                    }
                    d
                }
                None => format!("tap,id=net{i},{}", files.tap(&n.tap)?),
            };
            push(&["-netdev", &netdev]);
            let mut dev = format!("virtio-net-device,netdev=net{i}");
            if let Some(mac) = &n.mac {
                no_comma("MAC address", mac)?;
                let _ = write!(dev, ",mac={mac}");
            }
            push(&["-device", &dev]);
        }
        for (i, s) in self.shares.iter().enumerate() {
            no_comma("share tag", &s.tag)?;
            push(&[
                "-chardev",
                &format!(
                    "socket,id=fs{i},{}",
                    files.client_socket("share socket", &s.socket)?
                ),
            ]);
            push(&[
                "-device",
                &format!("vhost-user-fs-device,chardev=fs{i},tag={}", s.tag),
            ]);
        }
        if let Some(sock) = &self.vsock_socket {
            push(&[
                "-chardev",
                &format!(
                    "socket,id=vsock,{}",
                    files.client_socket("vsock socket", sock)?
                ),
                "-device",
                "vhost-user-vsock-device,chardev=vsock",
            ]);
        }
        if let Some(sock) = &self.agent_socket {
            push(&["-device", "virtio-serial-device,max_ports=2"]);
            push(&[
                "-chardev",
                &format!(
                    "socket,id=agent,{}",
                    files.server_socket("agent socket", sock)?
                ),
            ]);
            push(&[
                "-device",
                &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
            ]);
        }
        if self.balloon {
            // Last, so it takes no place before the disks and nets the guest numbers.
            push(&[
                "-device",
                "virtio-balloon-device,free-page-reporting=on,deflate-on-oom=on",
            ]);
        }
        a.extend(self.extra_args.iter().cloned());
        Ok(a)
    }
}

/// How a command line names the files and sockets QEMU uses: by path
/// ([`crate::handoff::Paths`]) or as descriptors handed over ([`crate::handoff::Handoff`]).
pub(crate) trait Files {
    /// The kernel or init filesystem, as `-kernel`/`-initrd` take it.
    fn boot_file(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError>;
    /// The console log QEMU writes, as a chardev's `path=` value.
    fn log_file(&mut self, path: &Path) -> Result<String, ConfigError>;
    /// A `-drive`'s file options (`file=…`, and a qcow2 backing file's when handed over).
    fn drive(&mut self, disk: &DiskSpec) -> Result<String, ConfigError>;
    /// A tap netdev's options after its id (`ifname=…` or `fd=…`).
    fn tap(&mut self, name: &str) -> Result<String, ConfigError>;
    /// A socket chardev QEMU connects (`path=…` or `fd=…`).
    fn client_socket(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError>;
    /// A socket chardev QEMU listens on (`path=…,server=on,wait=off` or `fd=…,server=…`).
    fn server_socket(&mut self, what: &'static str, path: &Path) -> Result<String, ConfigError>;
}

/// A path for a QEMU option value: commas would split the option, so they are refused.
pub(crate) fn opt_path(what: &'static str, p: &std::path::Path) -> Result<String, ConfigError> {
    let s = p.to_string_lossy().into_owned();
    no_comma(what, &s)?;
    Ok(s)
}

pub(crate) fn no_comma(what: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.contains(',') {
        return Err(ConfigError::Comma {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> VmConfig {
        let mut c = VmConfig::new(
            "/k/vmlinux".into(),
            "/k/init.cpio".into(),
            "/s/boot.log".into(),
        );
        c.tsc_khz = Some(2596146);
        c
    }

    fn joined(c: &VmConfig) -> String {
        c.args().unwrap().join(" ")
    }

    #[test]
    fn minimal_tcg_vm() {
        let c = base();
        let a = c.args().unwrap();
        let s = a.join(" ");
        assert!(s.starts_with(
            "-M microvm,pit=on,pic=on,rtc=on,isa-serial=on -accel tcg,tb-size=128 -cpu qemu64,+arat -smp 1 -m 512M"
        ));
        assert!(s.contains("-no-reboot"));
        assert!(s.contains("-chardev file,id=con,path=/s/boot.log -serial chardev:con"));
        let append = &a[a.iter().position(|x| x == "-append").unwrap() + 1];
        assert!(append.starts_with("console=ttyS0 rdinit=/sbin/vminitd panic=-1"));
        assert!(append.ends_with("tsc_early_khz=2596146 page_reporting.page_reporting_order=5"));
        assert!(!s.contains("ioapic2") && !s.contains("memfd"));
        assert!(
            s.ends_with("-device virtio-balloon-device,free-page-reporting=on,deflate-on-oom=on")
        );
        assert_eq!(c.device_count(), 1);
        let mut off = base();
        off.balloon = false;
        assert!(!joined(&off).contains("balloon"));
        assert!(!off.cmdline().contains("page_reporting"));
        assert_eq!(off.device_count(), 0);
    }

    #[test]
    fn memory_files_for_templates_and_clones() {
        let mut t = base();
        t.memory_file = Some(MemoryFile {
            path: "/t/ram".into(),
            shared: true,
        });
        let s = joined(&t);
        assert!(s.starts_with("-M microvm,pit=on,pic=on,rtc=on,isa-serial=on,memory-backend=mem "));
        assert!(s.contains("-object memory-backend-file,id=mem,size=512M,mem-path=/t/ram,share=on"));
        assert!(!s.contains("-incoming"));
        let mut c = t.clone();
        c.memory_file = Some(MemoryFile {
            path: "/t/ram".into(),
            shared: false,
        });
        c.incoming = true;
        let s = joined(&c);
        assert!(s.contains("mem-path=/t/ram,share=off") && s.contains("-incoming defer"));
        assert!(!s.contains("memfd"));
        c.shares.push(ShareSpec {
            socket: "/s/fs0.sock".into(),
            tag: "s0".into(),
        });
        assert!(matches!(
            c.args(),
            Err(ConfigError::PrivateMemoryWithVhostUser)
        ));
    }

    #[test]
    fn qemu_runs_in_its_seccomp_sandbox() {
        let s = joined(&base());
        assert!(s.contains(
            "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        ));
        let mut off = base();
        off.sandbox = false;
        assert!(!joined(&off).contains("-sandbox"));
    }

    #[test]
    fn kvm_has_no_tsc_hint() {
        let mut c = base();
        c.accel = Accel::Kvm;
        assert!(!c.cmdline().contains("tsc_early_khz"));
        assert!(!c.cmdline().contains("page_reporting"));
        assert!(joined(&c).contains("-accel kvm -smp"));
        let mut c = base();
        c.tb_size_mib = None;
        assert!(joined(&c).contains("-accel tcg -cpu qemu64,+arat -smp"));
    }

    #[test]
    fn devices() {
        let mut c = base();
        c.disks.push(DiskSpec {
            path: "/r/root.qcow2".into(),
            format: DiskFormat::Qcow2,
            readonly: false,
        });
        c.disks.push(DiskSpec {
            path: "/r/data.img".into(),
            format: DiskFormat::Raw,
            readonly: true,
        });
        c.nets.push(NetSpec {
            user: None,
            tap: "tap0".into(),
            mac: Some("52:54:00:12:34:56".into()),
        });
        c.shares.push(ShareSpec {
            socket: "/r/fs.sock".into(),
            tag: "vol0".into(),
        });
        c.agent_socket = Some("/r/agent.sock".into());
        c.extra_cmdline.push("foo=bar".into());
        let s = joined(&c);
        assert!(s.contains("-drive id=disk0,node-name=vd0,file=/r/root.qcow2,format=qcow2,if=none"));
        assert!(
            s.contains("format=raw,if=none,discard=unmap,werror=report,rerror=report,readonly=on")
        );
        // A full host disk is an I/O error in the guest, not a paused VM.
        assert!(s.contains("format=qcow2,if=none,discard=unmap,werror=report,rerror=report"));
        assert!(s.find("drive=disk0").unwrap() < s.find("drive=disk1").unwrap());
        assert!(s.contains("-netdev tap,id=net0,ifname=tap0,script=no,downscript=no -device virtio-net-device,netdev=net0,mac=52:54:00:12:34:56"));
        assert!(s.contains("microvm,pit=on,pic=on,rtc=on,isa-serial=on,memory-backend=mem"));
        assert!(s.contains("-object memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(s.contains("-device vhost-user-fs-device,chardev=fs0,tag=vol0"));
        assert!(s.contains("socket,id=agent,path=/r/agent.sock,server=on,wait=off"));
        assert!(s.contains("virtserialport,chardev=agent,name=containerization.agent"));
        assert!(c.cmdline().ends_with("page_reporting_order=5 foo=bar"));
        assert_eq!(c.device_count(), 6);
        c.vsock_socket = Some("/r/vsock.sock".into());
        let s = joined(&c);
        assert!(s.contains(
            "-chardev socket,id=vsock,path=/r/vsock.sock -device vhost-user-vsock-device,chardev=vsock"
        ));
        assert_eq!(c.device_count(), 7);
        // User-mode networking: QEMU's NAT with host forwards, no tap.
        let mut u = base();
        u.nets.push(NetSpec {
            tap: String::new(),
            mac: None,
            user: Some(vec![
                HostForward {
                    udp: false,
                    host_ip: std::net::Ipv4Addr::LOCALHOST,
                    host_port: 8080,
                    guest_port: 80,
                },
                HostForward {
                    udp: true,
                    host_ip: std::net::Ipv4Addr::UNSPECIFIED,
                    host_port: 5353,
                    guest_port: 53,
                },
            ]),
        });
        assert!(joined(&u).contains(
            "-netdev user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53 -device virtio-net-device,netdev=net0"
        ));
        // vsock alone also needs the shared memfd backend.
        let mut v = base();
        v.vsock_socket = Some("/r/v.sock".into());
        assert!(joined(&v).contains("memory-backend=mem"));
    }

    #[test]
    fn device_limits_and_bad_values() {
        let mut c = base();
        for i in 0..9 {
            c.disks.push(DiskSpec {
                path: format!("/d{i}").into(),
                format: DiskFormat::Raw,
                readonly: false,
            });
        }
        assert!(joined(&c).contains("ioapic2=on"));
        for i in 0..16 {
            c.nets.push(NetSpec {
                user: None,
                tap: format!("t{i}"),
                mac: None,
            });
        }
        assert!(matches!(c.args(), Err(ConfigError::TooManyDevices(26))));
        let mut c = base();
        c.console_log = "/a,b".into();
        assert!(matches!(c.args(), Err(ConfigError::Comma { .. })));
        let mut c = base();
        c.memory_mib = 0;
        assert!(matches!(c.args(), Err(ConfigError::Size { .. })));
    }
}
