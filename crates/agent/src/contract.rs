//! The names host and guest must agree on outside the message schema: where the guest's init
//! and its module list sit in the init filesystem, what the agent's virtio-serial port is
//! called, the mount options and kernel argument vminitd understands. The host writes them
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
//!  Mount.options MOUNT_OPTION_LOOP ─────────▶  the source file is mounted through a loop device
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

/// A mount option of ours, mount(8)'s `-o loop`: the source is a regular file that vminitd
/// attaches to a loop device, which it mounts instead; it is removed before the mount is made.
/// A pod member joining a running VM gets its rootfs this way, as image files in a virtiofs
/// share, because the microvm machine cannot hot-plug a disk.
pub const MOUNT_OPTION_LOOP: &str = "loop";

/// Where vminitd puts the listening sockets of `SocketListen` (a guest tmpfs directory of its
/// own, outside every container); the host binds [`guest_socket`] into the container.
pub const GUEST_SOCKETS_DIR: &str = "/run/vminitd/sockets";

/// The guest path of socket listener `id` (see [`GUEST_SOCKETS_DIR`]).
pub fn guest_socket(id: &str) -> String {
    format!("{GUEST_SOCKETS_DIR}/{id}.sock")
}

/// Kernel argument of a VM booted to become a template: vminitd loads only
/// [`EARLY_MODULES`] at boot and the rest (the balloon's driver) when the host sends `Resume`.
pub const TEMPLATE_ARG: &str = "container.template=1";

/// The modules a template loads at boot: the virtio transport, the agent's console port,
/// the block and network drivers, and overlayfs (a builder VM's; it drives no device). A
/// template's disks and NICs are placeholders of the clones' kind; a clone's are the same
/// devices over its own files and taps. Disks: QEMU announces each clone's capacity after the
/// restore (`Resume::disks`). NICs: the interface stays down in the template and takes the
/// clone's MAC when it is configured (`SetupInterface::mac`, which also tells QEMU's device).
/// Probing them again in every clone cost about 110 ms (disks) and 100 ms (NICs) under TCG.
pub const EARLY_MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "overlay",
    "failover",
    "net_failover",
    "virtio_net",
];
