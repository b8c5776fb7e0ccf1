//! Repairing the state a crash leaves behind (`container system cleanup`): records that claim a
//! monitor that is gone, sockets of containers that no longer run, socket directories of
//! containers that no longer exist, and the networking of both: taps of containers that do
//! not run, addresses of containers that no longer exist.

use std::fs;

use serde::Serialize;

use crate::state::{process_is, StateError, Store};

/// What [`cleanup`] repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    /// Ids of records whose monitor had died, now marked exited.
    pub repaired: Vec<String>,
    /// Ids of containers without a live monitor whose leftover sockets were removed.
    pub sockets_removed: Vec<String>,
    /// Socket directories (outside the store, for long `--root` paths) of containers that no
    /// longer exist, removed.
    pub orphan_socket_dirs: Vec<String>,
    /// Ids of containers without a live monitor whose taps were removed.
    pub taps_removed: Vec<String>,
    /// Ids of containers that no longer exist whose network addresses were freed.
    pub addresses_released: Vec<String>,
    /// Hidden directories of volume creates or deletes killed half-way, removed.
    pub volume_leftovers_removed: usize,
    /// Directories of container creates killed before their first record was in place.
    pub unborn_removed: Vec<String>,
}

/// Errors of [`cleanup`].
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The container store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The networks could not be cleaned.
    #[error("clean up container networking")]
    Network(#[source] net::NetworkError),
    /// The volume store could not be cleaned.
    #[error("clean up volumes")]
    Volume(#[source] crate::volume::VolumeError),
}

/// Repairs every container record of `store` whose monitor died (as `ps` would, but for all
/// of them at once) and removes sockets no live monitor serves.
pub fn cleanup(store: &Store) -> Result<CleanupReport, CleanupError> {
    let mut report = CleanupReport::default();
    // `list` also finishes deletes interrupted by a crash.
    let records = store.list()?;
    for record in &records {
        let before = (record.status, record.monitor_pid);
        let now = store.reconcile(record.clone())?;
        if (now.status, now.monitor_pid) != before {
            report.repaired.push(now.id.clone());
        }
        let live = now
            .monitor_pid
            .is_some_and(|pid| process_is(pid, crate::MONITOR_SUBCOMMAND));
        if !live {
            let dir = store.socket_dir(&now.id);
            let leftover = ["monitor.sock", "agent.sock"]
                .iter()
                .any(|s| fs::symlink_metadata(dir.join(s)).is_ok());
            if leftover {
                store.remove_sockets(&now.id);
                report.sockets_removed.push(now.id.clone());
            }
        }
    }
    // Sockets of a deep --root live in one shared directory per store, one subdirectory per
    // container (named by an id prefix); those matching no record are left from a crash.
    let probe = "0".repeat(64);
    let sock = store.socket_dir(&probe);
    if sock != store.dir_of(&probe) {
        if let Some(shared) = sock.parent() {
            for entry in fs::read_dir(shared).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !records.iter().any(|r| r.id.starts_with(&name)) {
                    let _ = fs::remove_dir_all(entry.path());
                    report
                        .orphan_socket_dirs
                        .push(entry.path().display().to_string());
                }
            }
            let _ = fs::remove_dir(shared);
        }
    }
    // Records are replaced by temp file and rename: a writer killed half-way leaves its
    // temp file beside the record.
    for record in &records {
        atomic_file::remove_dead_writers(&store.dir_of(&record.id), atomic_file::temp_sibling_pid);
    }
    atomic_file::remove_dead_writers(store.root(), atomic_file::temp_sibling_pid);
    report.unborn_removed = store.remove_unborn()?;
    network(store, &mut report).map_err(CleanupError::Network)?;
    // Only a store that exists: cleanup makes no directories.
    if store.root().join("volumes").is_dir() {
        report.volume_leftovers_removed = crate::volume::VolumeStore::open(store.root())
            .and_then(|v| v.remove_leftovers())
            .map_err(CleanupError::Volume)?;
    }
    Ok(report)
}

/// The networking half: runs only when networks exist, so a store that never used one needs
/// no privileges to clean.
fn network(store: &Store, report: &mut CleanupReport) -> Result<(), net::NetworkError> {
    let nets = net::Networks::open(store.root())?;
    if nets.list()?.is_empty() {
        return Ok(());
    }
    // Records are read fresh under the networks' lock: a container started or created while
    // this runs has its record (and monitor pid) before it attaches.
    let alive = |id: &str| {
        store
            .load(id)
            .ok()
            .and_then(|r| r.monitor_pid)
            .is_some_and(|pid| process_is(pid, crate::MONITOR_SUBCOMMAND))
    };
    report.taps_removed = nets.cleanup_stale(alive)?;
    report.addresses_released =
        nets.release_orphans(|id| !matches!(store.load(id), Err(StateError::NotFound(_))))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        not(container_testenv),
        ignore = "needs root for nf_tables: run scripts/test.sh"
    )]
    fn orphan_socket_dirs_of_a_deep_root_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // Deep enough that sockets go to the shared runtime directory (sun_path limit).
        let root = tmp.path().join("d".repeat(60)).join("e".repeat(60));
        let store = Store::open(&root).unwrap();
        let gone = "ab".repeat(32);
        let sock = store.socket_dir(&gone);
        assert_ne!(
            sock,
            store.dir_of(&gone),
            "root not deep enough for the test"
        );
        fs::create_dir_all(&sock).unwrap();
        fs::write(sock.join("monitor.sock"), b"").unwrap();
        let report = cleanup(&store).unwrap();
        assert_eq!(report.orphan_socket_dirs, vec![sock.display().to_string()]);
        assert!(!sock.exists());
        assert!(sock.parent().is_some_and(|p| !p.exists()));
        assert_eq!(cleanup(&store).unwrap(), CleanupReport::default());
    }
}
