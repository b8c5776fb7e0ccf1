//! The names host and guest must agree on outside the message schema: where the guest's init
//! and its module list sit in the init filesystem, what the agent's virtio-serial port is
//! called, the mount option and kernel argument vminitd understands. The host writes them
//! (`vmm` builds the initfs and the command line, `runtime` the mounts) and vminitd reads them;
//! keeping them here, beside the schema, means a rename cannot reach only one side.
//!
//! ```text
//!  host (vmm, runtime)                         guest (vminitd)
//!  initfs  INIT_PATH         ───────────────▶  PID 1, started by rdinit=INIT_PATH
//!  initfs  MODULES_LIST      ───────────────▶  modules loaded in that order
//!  -device virtserialport,name=AGENT_PORT_NAME ▶ /sys/class/virtio-ports/*/name
//!  cmdline REPORTING_ORDER_ARG<n>  ─────────▶  re-applied once the balloon driver loads
//!  Mount.options MOUNT_OPTION_COPYUP ───────▶  an empty volume first gets the image's files
//!  cmdline TEMPLATE_ARG      ───────────────▶  only EARLY_MODULES at boot; the rest on Resume
//! ```

/// Path of the guest's PID 1 inside the init filesystem (the kernel's `rdinit=`).
pub const INIT_PATH: &str = "/sbin/vminitd";

/// Path of the module load-order list inside the init filesystem: one absolute path of an
/// uncompressed `.ko` per line, loaded in order before anything else.
pub const MODULES_LIST: &str = "/etc/vminitd/modules";

/// Name of the agent's virtio-serial port (QEMU `virtserialport,name=`); the guest finds its
/// device through `/sys/class/virtio-ports/*/name`.
pub const AGENT_PORT_NAME: &str = "containerization.agent";

/// Kernel argument (followed by a page order) that sets the smallest free block the guest
/// reports to the host's balloon. Linux 6.1 ignores it at boot, so vminitd applies it itself
/// once the balloon driver is loaded.
pub const REPORTING_ORDER_ARG: &str = "page_reporting.page_reporting_order=";

/// A `bind` mount option that is ours, not mount(8)'s: when the mount's source directory is
/// empty, vminitd first copies the image's files at the target into it (docker's volume
/// "copy-up"); it is removed before the mount is made.
pub const MOUNT_OPTION_COPYUP: &str = "copyup";

/// Kernel argument of a VM booted to become a template: vminitd loads only
/// [`EARLY_MODULES`] at boot and the rest when the host sends `Resume` (so no network
/// interface is probed before a clone has its own; disks are, see [`EARLY_MODULES`]).
pub const TEMPLATE_ARG: &str = "container.template=1";

/// The modules a template loads at boot: the virtio transport, the agent's console port,
/// the block driver and overlayfs (a builder VM's; it drives no device, so nothing of it
/// belongs to one clone). A template's disks are placeholders; a clone's are the same devices
/// over its own files, whose capacity QEMU announces after the restore (`Resume::disks`):
/// probing them again in every clone cost about 110 ms under TCG, re-reading a capacity
/// costs nothing.
pub const EARLY_MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "overlay",
];
