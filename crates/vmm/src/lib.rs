//! Virtual machines for containers.
//!
//! This crate knows VMs, not containers: a [`VirtualMachine`] trait with its QEMU `microvm`
//! backend ([`QemuVm`]), the guest kernel store ([`KernelStore`]: `.deb` or binary, bzImage
//! unpacked to vmlinux), module selection from `.modinfo` ([`modules`]), the init filesystem
//! builder ([`Initfs`], a newc cpio), the accelerator choice ([`accel::choose`]) and
//! copy-on-write disks ([`qcow2_overlay`]). The runtime crate ties these to containers.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod accel;
pub mod bzimage;
pub mod config;
pub mod cpio;
pub mod deb;
pub mod disk;
mod fsutil;
mod handoff;
pub mod initfs;
pub mod kernel;
pub mod modules;
pub mod qemu;
pub mod qmp;
mod uid;

#[cfg(test)]
mod testutil;

pub use accel::{Accel, Decision};
pub use config::{
    DiskFormat, DiskSpec, HostForward, MemoryFile, NetSpec, QemuUser, ShareSpec, VmConfig,
    DEFAULT_QEMU,
};
pub use disk::qcow2_overlay;
pub use initfs::Initfs;
pub use kernel::{Kernel, KernelSource, KernelStore};
pub use modules::{Features, Module};
pub use qemu::{QemuVm, VirtualMachine, VmError};
