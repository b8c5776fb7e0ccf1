//! `--device HOST[:CONTAINER[:PERMISSIONS]]` (docker's flag, the Engine API's
//! `HostConfig.Devices`). A container runs in a VM of its own, so a host device cannot be handed
//! to it; what a user asks for with this flag is, in practice, a *virtual* device of the
//! kernel's own: `/dev/fuse` (sshfs, fuse-overlayfs, rclone mount) and `/dev/net/tun` (VPN
//! clients, slirp4netns). Those the guest kernel provides: the flag makes the guest's node in
//! the container's `/dev` (and has the VM load the driver). Any other device is refused with a
//! clear error, never silently ignored.
//!
//! Permissions (`r`, `w`, `m`) become the node's mode bits. Nothing in the VM stops a
//! container's root from opening a node whatever its mode (there is no device cgroup to
//! enforce them: the VM is the boundary, see docs/security.md).

use serde::{Deserialize, Serialize};

/// A device node made in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMapping {
    /// The path given for the host (docker's `PathOnHost`).
    pub host_path: String,
    /// Where the node appears in the container (`PathInContainer`).
    pub container_path: String,
    /// Character device major number, as the guest kernel numbers it.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// `r`, `w` and `m` as given (`CgroupPermissions`), in that order.
    pub permissions: String,
}

impl DeviceMapping {
    /// The node's mode bits: read and write for everyone as the permissions allow.
    pub fn mode(&self) -> u32 {
        let mut mode = 0;
        if self.permissions.contains('r') {
            mode |= 0o444;
        }
        if self.permissions.contains('w') {
            mode |= 0o222;
        }
        mode
    }

    /// The guest kernel module that drives it (a modular kernel loads it at boot).
    pub fn module(&self) -> Option<&'static str> {
        KNOWN
            .iter()
            .find(|d| (d.major, d.minor) == (self.major, self.minor))
            .and_then(|d| d.module)
    }
}

/// A device the guest kernel provides.
struct Known {
    path: &'static str,
    major: u32,
    minor: u32,
    module: Option<&'static str>,
}

/// Every device `--device` can make (Documentation/admin-guide/devices.txt numbers).
const KNOWN: &[Known] = &[
    Known {
        path: "/dev/fuse",
        major: 10,
        minor: 229,
        module: Some("fuse"),
    },
    Known {
        path: "/dev/net/tun",
        major: 10,
        minor: 200,
        module: Some("tun"),
    },
    // Already in every container's /dev; allowed so that a docker command line that names
    // them (possibly under another path) still works.
    Known {
        path: "/dev/null",
        major: 1,
        minor: 3,
        module: None,
    },
    Known {
        path: "/dev/zero",
        major: 1,
        minor: 5,
        module: None,
    },
    Known {
        path: "/dev/full",
        major: 1,
        minor: 7,
        module: None,
    },
    Known {
        path: "/dev/random",
        major: 1,
        minor: 8,
        module: None,
    },
    Known {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
        module: None,
    },
    Known {
        path: "/dev/tty",
        major: 5,
        minor: 0,
        module: None,
    },
];

/// Why a `--device` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// Not `HOST[:CONTAINER[:PERMISSIONS]]`.
    #[error("invalid --device {0:?}: want HOST[:CONTAINER[:PERMISSIONS]]")]
    Syntax(String),
    /// A path that is not absolute or not under /dev.
    #[error("invalid --device {spec:?}: {path} is not a path under /dev")]
    NotUnderDev { spec: String, path: String },
    /// Permissions other than a combination of r, w and m.
    #[error(
        "invalid --device {spec:?}: permissions {perms:?} are not a combination of r, w and m"
    )]
    Permissions { spec: String, perms: String },
    /// A device the VM cannot have.
    #[error(
        "--device {0}: a container runs in a VM of its own, which has no such device (it can \
         make /dev/fuse and /dev/net/tun, the guest kernel's own)"
    )]
    Unavailable(String),
}

/// Parses one `--device` value.
pub fn parse(spec: &str) -> Result<DeviceMapping, DeviceError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, perms) = match parts[..] {
        [h] => (h, h, "rwm"),
        [h, p] if is_permissions(p) && !p.starts_with('/') => (h, h, p),
        [h, c] => (h, c, "rwm"),
        [h, c, p] => (h, c, p),
        _ => return Err(DeviceError::Syntax(spec.to_string())),
    };
    for path in [host, container] {
        if !path.starts_with("/dev/") || path.split('/').any(|c| c == "..") {
            return Err(DeviceError::NotUnderDev {
                spec: spec.to_string(),
                path: path.to_string(),
            });
        }
    }
    if !is_permissions(perms) {
        return Err(DeviceError::Permissions {
            spec: spec.to_string(),
            perms: perms.to_string(),
        });
    }
    let known = KNOWN
        .iter()
        .find(|k| k.path == host.trim_end_matches('/'))
        .ok_or_else(|| DeviceError::Unavailable(host.to_string()))?;
    Ok(DeviceMapping {
        host_path: host.to_string(),
        container_path: container.to_string(),
        major: known.major,
        minor: known.minor,
        permissions: ["r", "w", "m"]
            .into_iter()
            .filter(|c| perms.contains(c))
            .collect(),
    })
}

fn is_permissions(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms_parse() {
        let d = parse("/dev/fuse").unwrap();
        assert_eq!(
            (
                d.container_path.as_str(),
                d.major,
                d.minor,
                d.permissions.as_str()
            ),
            ("/dev/fuse", 10, 229, "rwm")
        );
        assert_eq!(d.mode(), 0o666);
        assert_eq!(d.module(), Some("fuse"));
        let d = parse("/dev/net/tun:/dev/tun0").unwrap();
        assert_eq!((d.container_path.as_str(), d.minor), ("/dev/tun0", 200));
        let d = parse("/dev/net/tun:r").unwrap();
        assert_eq!(
            (d.container_path.as_str(), d.mode()),
            ("/dev/net/tun", 0o444)
        );
        let d = parse("/dev/null:/dev/mynull:wr").unwrap();
        assert_eq!((d.permissions.as_str(), d.module()), ("rw", None));
    }

    #[test]
    fn what_the_vm_cannot_have_is_refused_by_name() {
        let e = parse("/dev/sda").unwrap_err();
        assert_eq!(e, DeviceError::Unavailable("/dev/sda".into()));
        assert!(e.to_string().contains("/dev/sda"), "{e}");
        assert!(matches!(
            parse("/dev/kvm:/dev/kvm").unwrap_err(),
            DeviceError::Unavailable(_)
        ));
        assert!(matches!(
            parse("/dev/fuse:/dev/fuse:rwx").unwrap_err(),
            DeviceError::Permissions { .. }
        ));
        assert!(matches!(
            parse("/dev/fuse:/etc/fuse").unwrap_err(),
            DeviceError::NotUnderDev { .. }
        ));
        assert!(matches!(
            parse("/dev/fuse:/dev/../etc/x").unwrap_err(),
            DeviceError::NotUnderDev { .. }
        ));
        assert!(matches!(
            parse("/dev/fuse:/dev/f:rw:x").unwrap_err(),
            DeviceError::Syntax(_)
        ));
    }
}
