//! The host side of a bundle: the rootfs mounts containerd hands over (mounted on
//! `<bundle>/rootfs` here, as runc's shim does), finding and removing the container a bundle
//! belongs to (the `delete` action after a shim died), and metrics in containerd's format.

use std::path::Path;
use std::time::Duration;

use containerd_shim::protos::api::Mount;
use containerd_shim::protos::cgroups_v2::metrics::{
    CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::protobuf::MessageField;
use runtime::container::StopOptions;
use runtime::Runtime;

/// Mounts `mounts` (CreateTaskRequest.rootfs) on `target`, in order; returns whether anything
/// was mounted (nothing: the snapshotter's mount is already there, or the bundle has a plain
/// directory). A failure unmounts what was mounted.
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> std::io::Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    std::fs::create_dir_all(target)?;
    for (i, m) in mounts.iter().enumerate() {
        let made = containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()).filter(|t| !t.is_empty()),
            Some(m.source.as_str()).filter(|s| !s.is_empty()),
            &m.options,
            target,
        );
        if let Err(e) = made {
            if i > 0 {
                unmount_rootfs(target);
            }
            return Err(std::io::Error::other(format!(
                "mount {} ({}) on {}: {e}",
                m.source,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(true)
}

/// Unmounts everything on `target` (lazily: a virtiofsd that has not exited yet holds it).
pub fn unmount_rootfs(target: &Path) {
    loop {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // EINVAL: not a mount point (any more).
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return,
            Err(e) => {
                log::warn!("unmount {}: {e}", target.display());
                return;
            }
        }
    }
}

/// Removes the container named `name` if it is left from an earlier shim (a task id can be
/// used again once containerd deleted it).
pub async fn remove_stale(rt: &Runtime, name: &str) {
    if let Ok(c) = rt.container(name) {
        log::warn!("removing container {} left by an earlier shim", c.id());
        if let Err(e) = c.delete(true).await {
            log::warn!("remove {name}: {}", runtime::error_line(&e));
        }
    }
}

/// Kills and removes the container of `bundle` (found by its bundle label), then unmounts the
/// bundle's rootfs: what containerd's `delete` action asks after a shim died. Returns whether
/// a container was found.
pub async fn clean_up(rt: &Runtime, bundle: &Path) -> bool {
    let bundle_text = bundle.to_string_lossy();
    let mut found = false;
    for c in rt.containers().unwrap_or_default() {
        let labels = &c.record().config.labels;
        if labels.get(crate::spec::LABEL_BUNDLE).map(String::as_str) != Some(&*bundle_text) {
            continue;
        }
        found = true;
        let mut c = c;
        let now = StopOptions {
            signal: Some(libc::SIGKILL),
            timeout: Some(Duration::ZERO),
        };
        if let Err(e) = c.stop(now).await {
            log::warn!("stop {}: {}", c.id(), runtime::error_line(&e));
        }
        if let Err(e) = c.delete(true).await {
            log::warn!("delete: {}", runtime::error_line(&e));
        }
    }
    unmount_rootfs(&bundle.join("rootfs"));
    found
}

/// One stats sample as containerd's cgroup v2 metrics (what `ctr task metrics` prints).
pub fn metrics(s: &runtime::stats::Sample) -> Metrics {
    Metrics {
        pids: MessageField::some(PidsStat {
            current: s.pids,
            limit: s.pids_limit.unwrap_or(0),
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage_usec: s.cpu_usage_usec,
            user_usec: s.cpu_user_usec,
            system_usec: s.cpu_system_usec,
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            anon: s.memory_anon,
            file: s.memory_file,
            inactive_file: s.memory_inactive_file,
            usage: s.memory_current,
            usage_limit: s.memory_limit.unwrap_or(s.guest_memory_total),
            ..Default::default()
        }),
        memory_events: MessageField::some(MemoryEvents {
            oom_kill: s.oom_kills,
            ..Default::default()
        }),
        ..Default::default()
    }
}
