//! Persistent tap devices for QEMU, made with the TUN/TAP ioctls
//! (Documentation/networking/tuntap.rst in the kernel tree).
//!
//! The kernel cannot create a tap through rtnetlink (the `tun` link type refuses RTM_NEWLINK),
//! so we open `/dev/net/tun`, `TUNSETIFF` with `IFF_TAP | IFF_NO_PI`, mark the device
//! persistent and give it to the current user with `TUNSETOWNER`. When our descriptor closes
//! the device stays; QEMU's `-netdev tap,ifname=NAME,script=no,downscript=no` attaches to it by
//! name. Removal goes through rtnetlink (`link::delete`).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

/// A failure creating a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// `/dev/net/tun` could not be opened (module `tun` missing, or not privileged).
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] io::Error),
    /// The tap name is longer than the kernel's limit.
    #[error("tap name {0:?} is longer than 15 bytes")]
    Name(String),
    /// `TUNSETIFF` failed.
    #[error("cannot create tap {0}")]
    Create(String, #[source] io::Error),
    /// `TUNSETOWNER` or `TUNSETPERSIST` failed.
    #[error("cannot make tap {0} persistent")]
    Persist(String, #[source] io::Error),
}

// <linux/if_tun.h>: _IOW('T', 202, int) and friends.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with the `ifr_flags` member of its union; 40 bytes as in <linux/if.h>.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates the persistent tap `name` owned by the calling user. Fails with `Create` (EBUSY)
/// if a tap of that name is in use by another process, and succeeds if an unused persistent
/// tap of that name already exists (idempotent).
pub fn create(name: &str) -> Result<(), TapError> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(TapError::Name(name.to_string()));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::OpenTun)?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = tun.as_raw_fd();
    // SAFETY: `fd` is an open /dev/net/tun descriptor and `req` is a properly sized and
    // initialised `struct ifreq` that outlives the call; the kernel only reads/writes within it.
    let rc = unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc < 0 {
        return Err(TapError::Create(
            name.to_string(),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: `fd` is the tap descriptor attached above; TUNSETOWNER takes the uid by value.
    let rc = unsafe { libc::ioctl(fd, TUNSETOWNER, libc::c_ulong::from(uid)) };
    if rc < 0 {
        return Err(TapError::Persist(
            name.to_string(),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above; TUNSETPERSIST takes 0/1 by value.
    let rc = unsafe { libc::ioctl(fd, TUNSETPERSIST, 1 as libc::c_ulong) };
    if rc < 0 {
        return Err(TapError::Persist(
            name.to_string(),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_matches_kernel() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }

    #[test]
    fn long_name_refused() {
        assert!(matches!(
            create("a-name-that-is-too-long"),
            Err(TapError::Name(_))
        ));
    }
}

/// A tap attached to nothing, deleted when dropped: the backend of a NIC whose driver never
/// runs (a VM template's placeholder). Its kind must match the clones' backends, because QEMU
/// offers a tap-backed virtio-net more features (vnet headers, offloads) than a user-mode one,
/// and a saved device state only loads into a device with the same features.
#[derive(Debug)]
pub struct ScratchTap {
    name: String,
}

impl ScratchTap {
    /// Creates the tap `name` (see [`create`]).
    pub fn create(name: &str) -> Result<ScratchTap, TapError> {
        create(name)?;
        Ok(ScratchTap {
            name: name.to_string(),
        })
    }

    /// Its interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Becomes the tap `port` (deleted), with its name, bridge and MTU, up: see
    /// [`crate::link::replace_port`]. It is then `port`'s to remove, no longer a scratch tap.
    pub fn take_place_of(self, port: &str) -> Result<(), crate::link::LinkError> {
        let name = self.name.clone();
        // Whatever happens now, the link is not this value's to delete: named `port` it is
        // the network session's, and a failed rename leaves one the session never made.
        std::mem::forget(self);
        crate::link::replace_port(port, &name).inspect_err(|_| {
            let _ = crate::link::delete(&[name]);
        })
    }
}

impl Drop for ScratchTap {
    fn drop(&mut self) {
        if let Err(e) = crate::link::delete(std::slice::from_ref(&self.name)) {
            tracing::warn!("delete tap {}: {e}", self.name);
        }
    }
}
