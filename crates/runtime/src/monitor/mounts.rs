//! Turns a container's `-v`/`--mount`/`--tmpfs` list into guest mounts: each volume's disk is
//! mounted once in the VM (outside the container) under [`VOLUMES_DIR`], then bind-mounted
//! into the container at its target; a tmpfs is mounted straight into the container.

use std::path::PathBuf;

use crate::backend::{Guest, GuestError, GuestMount};
use crate::volume::MountSpec;

/// Where volume filesystems are mounted inside the VM, one directory per volume name.
pub const VOLUMES_DIR: &str = "/run/container/volumes";
/// Where virtiofs shares are mounted inside the VM, one directory per share index.
pub const SHARES_DIR: &str = "/run/container/shares";

/// The virtiofs tag of the `index`th share.
pub fn share_tag(index: usize) -> String {
    format!("share{index}")
}

/// The host directories the container shares, in share (tag) order.
pub fn host_shares(mounts: &[MountSpec]) -> Vec<crate::backend::HostShare> {
    mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind {
                source, readonly, ..
            } => Some(crate::backend::HostShare {
                dir: source.clone(),
                readonly: *readonly,
                device_nodes: false,
            }),
            _ => None,
        })
        .collect()
}

/// `/dev/vdX` of the `index`th volume disk when `before` disks precede the volumes' (the
/// rootfs disk is `vda` unless the rootfs is a share).
fn device(before: usize, index: usize) -> String {
    // Past vdz the kernel goes on with vdaa; 25 volumes per container is plenty.
    let letter = (b'a' + (before + index) as u8) as char;
    format!("/dev/vd{letter}")
}

/// Mounts the volume disks in the guest (in `volumes` order, which is disk order, after
/// `disks_before` other disks) and returns the container's extra mounts, in the user's order.
pub async fn prepare(
    guest: &dyn Guest,
    id: &str,
    disks_before: usize,
    volumes: &[(String, PathBuf)],
    mounts: &[MountSpec],
) -> Result<Vec<GuestMount>, GuestError> {
    if volumes.len() > 25 {
        return Err(GuestError::InvalidArgument(format!(
            "{} volumes: at most 25 per container",
            volumes.len()
        )));
    }
    for (i, (name, _)) in volumes.iter().enumerate() {
        guest
            .mount(&GuestMount {
                source: device(disks_before, i),
                target: format!("{VOLUMES_DIR}/{name}"),
                fstype: "ext4".into(),
                options: Vec::new(),
            })
            .await?;
    }
    let mut share = 0;
    let mut out = Vec::new();
    let mut sockets = inbound_sockets(id, mounts).into_iter();
    for m in mounts {
        if let MountSpec::Socket { target, .. } = m {
            // In the user's order: a socket may sit in a directory another mount brings.
            // `inbound_sockets` lists the sockets in this same order, one each.
            if let Some((listener, host)) = sockets.next() {
                out.push(socket_mount(guest, &listener, &host, target).await?);
            }
            continue;
        }
        if let MountSpec::Bind { readonly, .. } = m {
            let mut options = Vec::new();
            if *readonly {
                options.push("ro".to_string());
            }
            guest
                .mount(&GuestMount {
                    source: share_tag(share),
                    target: format!("{SHARES_DIR}/{share}"),
                    fstype: "virtiofs".into(),
                    options,
                })
                .await?;
            share += 1;
        }
        out.push(container_mount(
            m,
            &format!("{SHARES_DIR}/{}", share.saturating_sub(1)),
        ));
    }
    Ok(out)
}

/// A socket bind: the guest listens as `listener` for the host socket `host`, and its socket is
/// bound at `target` in the container.
async fn socket_mount(
    guest: &dyn Guest,
    listener: &str,
    host: &std::path::Path,
    target: &str,
) -> Result<GuestMount, GuestError> {
    Ok(GuestMount {
        source: guest.listen_socket(listener, host).await?,
        target: target.to_string(),
        fstype: "bind".into(),
        options: vec!["bind".into()],
    })
}

/// The container's socket binds as (listener id, host socket), in mount order: what
/// [`prepare`] listens on and the monitor relays.
pub fn inbound_sockets(id: &str, mounts: &[MountSpec]) -> Vec<(String, PathBuf)> {
    mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Socket { source, .. } => Some(source.clone()),
            _ => None,
        })
        .enumerate()
        .map(|(i, host)| (crate::sockets::listener_id(id, i), host))
        .collect()
}

/// A pod member's container mounts: its binds are directories of the pod's share, bound there
/// on the host ([`crate::pod::attach_disks`]), `binds/<n>` under its directory `dir` in the
/// guest; its socket binds are listeners of the pod's vminitd, as a container's of its own
/// are (a listener left by a monitor that died is closed first); volumes are refused at
/// create.
pub async fn member_mounts(
    guest: &dyn Guest,
    id: &str,
    dir: &str,
    mounts: &[MountSpec],
) -> Result<Vec<GuestMount>, GuestError> {
    let mut sockets = inbound_sockets(id, mounts).into_iter();
    let mut out = Vec::new();
    for (m, bind_dir) in member_bind_dirs(dir, mounts) {
        match m {
            MountSpec::Socket { target, .. } => {
                // `inbound_sockets` lists the sockets in mount order, one each.
                if let Some((listener, host)) = sockets.next() {
                    let _ = guest.close_socket(&listener).await;
                    out.push(socket_mount(guest, &listener, &host, &target).await?);
                }
            }
            m => out.push(container_mount(&m, &bind_dir)),
        }
    }
    Ok(out)
}

/// Each of a member's mounts with the guest directory of its bind source (`binds/<n>` under
/// `dir`, counting binds only). A file is bound as itself there (see `pod::bind_sources`), so
/// the path is the file's, not a directory's with the name below it.
fn member_bind_dirs(dir: &str, mounts: &[MountSpec]) -> Vec<(MountSpec, String)> {
    let mut bind = 0;
    mounts
        .iter()
        .map(|m| {
            let source = format!("{dir}/binds/{bind}");
            let m = match m {
                MountSpec::Bind {
                    source,
                    target,
                    readonly,
                    file: Some(_),
                } => MountSpec::Bind {
                    source: source.clone(),
                    target: target.clone(),
                    readonly: *readonly,
                    file: None,
                },
                other => other.clone(),
            };
            if matches!(m, MountSpec::Bind { .. }) {
                bind += 1;
            }
            (m, source)
        })
        .collect()
}

/// The container mount for `m`; `bind_dir` is where the guest sees the directory of a bind.
fn container_mount(m: &MountSpec, bind_dir: &str) -> GuestMount {
    match m {
        MountSpec::Volume {
            source,
            target,
            readonly,
            nocopy,
            ..
        } => {
            let mut options = vec!["rbind".to_string()];
            if *readonly {
                options.push("ro".into());
            }
            if !*nocopy {
                // Our option, for vminitd: an empty volume first gets the image's content.
                options.push(agent::contract::MOUNT_OPTION_COPYUP.into());
            }
            GuestMount {
                source: format!("{VOLUMES_DIR}/{source}"),
                target: target.clone(),
                fstype: "bind".into(),
                options,
            }
        }
        MountSpec::Bind {
            target,
            readonly,
            file,
            ..
        } => {
            let mut options = vec!["rbind".to_string()];
            if *readonly {
                options.push("ro".into());
            }
            let source = match file {
                Some(name) => format!("{bind_dir}/{name}"),
                None => bind_dir.to_string(),
            };
            GuestMount {
                source,
                target: target.clone(),
                fstype: "bind".into(),
                options,
            }
        }
        // Refused for pod members at create; a container of its own gets its socket
        // binds from `prepare`.
        MountSpec::Socket { target, .. } => GuestMount {
            source: String::new(),
            target: target.clone(),
            fstype: "bind".into(),
            options: vec!["bind".into()],
        },
        MountSpec::Tmpfs { target, options } => {
            let mut opts = vec!["nosuid".to_string(), "nodev".into()];
            if !options.iter().any(|o| o.starts_with("mode=")) {
                opts.push("mode=1777".into());
            }
            opts.extend(options.iter().cloned());
            GuestMount {
                source: "tmpfs".into(),
                target: target.clone(),
                fstype: "tmpfs".into(),
                options: opts,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_follow_the_rootfs() {
        assert_eq!(device(1, 0), "/dev/vdb");
        assert_eq!(device(1, 2), "/dev/vdd");
        // A shared rootfs has no disk: the first volume is vda.
        assert_eq!(device(0, 0), "/dev/vda");
    }

    #[test]
    fn volumes_bind_and_tmpfs_mounts_directly() {
        let v = container_mount(
            &MountSpec::Volume {
                source: "data".into(),
                target: "/data".into(),
                readonly: true,
                anonymous: false,
                nocopy: false,
            },
            "/unused",
        );
        assert_eq!(v.source, "/run/container/volumes/data");
        assert_eq!(v.options, ["rbind", "ro", "copyup"]);
        let v = container_mount(
            &MountSpec::Volume {
                source: "data".into(),
                target: "/data".into(),
                readonly: false,
                anonymous: false,
                nocopy: true,
            },
            "/unused",
        );
        assert_eq!(v.options, ["rbind"]);
        let t = container_mount(
            &MountSpec::Tmpfs {
                target: "/scratch".into(),
                options: vec!["size=1m".into()],
            },
            "/unused",
        );
        assert_eq!(t.fstype, "tmpfs");
        assert_eq!(t.options, ["nosuid", "nodev", "mode=1777", "size=1m"]);
    }

    #[test]
    fn a_members_binds_come_from_its_directory_in_the_pods_share() {
        let bind = |target: &str, file: Option<&str>| MountSpec::Bind {
            source: "/host".into(),
            target: target.into(),
            readonly: false,
            file: file.map(String::from),
        };
        let mounts = [
            bind("/a", None),
            MountSpec::Tmpfs {
                target: "/t".into(),
                options: vec![],
            },
            bind("/etc/hosts", Some("hosts")),
        ];
        let m: Vec<GuestMount> = member_bind_dirs("/run/pod/abc", &mounts)
            .iter()
            .map(|(m, dir)| container_mount(m, dir))
            .collect();
        assert_eq!(m[0].source, "/run/pod/abc/binds/0");
        assert_eq!(m[1].fstype, "tmpfs");
        assert_eq!(m[2].source, "/run/pod/abc/binds/1");
        assert_eq!(m[2].target, "/etc/hosts");
    }
}
