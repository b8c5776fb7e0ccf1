//! A containerd snapshot as a read-only ext4 disk, so that a task's VM gets its root
//! filesystem as a block device and can start from a VM template, as `container run` does,
//! instead of booting cold around a virtiofs share (a template's clone maps guest memory
//! private; virtiofsd needs it shared).
//!
//! containerd's overlayfs snapshotter hands a task its rootfs as one `overlay` mount: the
//! committed layers as `lowerdir` (topmost first) and an empty `upperdir` for the container's
//! writes. This module reads those mounts; the runtime turns the layer directories into a
//! cached ext4 image ([`runtime::snapshot`]).
//!
//! The container writes to its VM's own overlay disk over that image, as under `container
//! run`; those writes go with the task and never reach the snapshot's `upperdir` (gVisor's
//! default rootfs overlay makes the same trade). A snapshot whose `upperdir` already holds
//! files (a task started again on a used container) keeps the virtiofs share, so nothing
//! written there before is hidden; so does any mount this module does not understand.

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;

/// `disk` (the default) or `share`: how a task outside a pod gets its root filesystem. `share`
/// always mounts the snapshot on the host and serves it through virtiofs, so that the
/// container's writes land in the snapshot (what `ctr snapshot diff` or a commit of a running
/// task sees) at the price of a cold boot.
pub const ROOTFS_ENV: &str = "CONTAINER_SHIM_ROOTFS";

/// Whether the shim's environment asks for disks (the default) rather than shares.
pub fn disks_wanted() -> bool {
    std::env::var(ROOTFS_ENV).map_or(true, |v| v != "share")
}

/// The committed layer directories of a snapshot, bottom first, when `mounts` is one overlay
/// (or bind) mount of plain directories whose writable part is still empty; `None` when the
/// snapshot must be served as it is.
pub fn layers(mounts: &[Mount]) -> Option<Vec<PathBuf>> {
    let [m] = mounts else {
        return None;
    };
    let option = |key: &str| {
        m.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let dirs: Vec<PathBuf> = match m.type_.as_str() {
        "overlay" => {
            if !option("upperdir").is_none_or(|u| is_empty_dir(Path::new(u))) {
                return None;
            }
            let mut lower: Vec<PathBuf> =
                option("lowerdir")?.split(':').map(PathBuf::from).collect();
            lower.reverse();
            lower
        }
        // One committed layer seen read-only, or an active snapshot without parents (the
        // writable directory itself: only while it is empty).
        "bind" | "rbind" => {
            let source = PathBuf::from(&m.source);
            if m.options.iter().any(|o| o == "ro") {
                vec![source]
            } else if is_empty_dir(&source) {
                Vec::new()
            } else {
                return None;
            }
        }
        _ => return None,
    };
    dirs.iter()
        .all(|d| d.is_absolute() && d.is_dir())
        .then_some(dirs)
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[String]) -> Mount {
        Mount {
            type_: kind.into(),
            source: source.into(),
            options: options.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn overlay_layers_come_bottom_first_and_need_an_empty_upper() {
        let t = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = t.path().join(n);
            std::fs::create_dir_all(&p).unwrap();
            p.display().to_string()
        };
        let (l1, l2, up, work) = (d("1"), d("2"), d("up"), d("work"));
        let opts = vec![
            format!("lowerdir={l2}:{l1}"),
            format!("upperdir={up}"),
            format!("workdir={work}"),
        ];
        let got = layers(&[mount("overlay", "overlay", &opts)]).unwrap();
        assert_eq!(got, [PathBuf::from(&l1), PathBuf::from(&l2)]);
        std::fs::write(Path::new(&up).join("written"), "x").unwrap();
        assert_eq!(layers(&[mount("overlay", "overlay", &opts)]), None);
        // A bind: read-only is a layer; writable only while empty.
        assert_eq!(
            layers(&[mount("bind", &l1, &["ro".into(), "rbind".into()])]).unwrap(),
            [PathBuf::from(&l1)]
        );
        assert_eq!(layers(&[mount("bind", &up, &["rbind".into()])]), None);
        assert_eq!(
            layers(&[mount("bind", &l1, &["rbind".into()])])
                .unwrap()
                .len(),
            0
        );
        // Anything else is served as it is.
        assert_eq!(layers(&[mount("ext4", "/dev/mapper/x", &[])]), None);
        assert_eq!(layers(&[]), None);
    }
}
