//! Scratch directories of builds and commits (the layers unpacked, the export, the builder
//! VM's disks and sockets). Each is named after the process that made it, so that what a
//! process killed half-way leaves (kill -9, the OOM killer) is recognised and removed by the
//! next build or commit that makes one beside it.

use std::path::Path;

/// A scratch directory `{kind}-{pid}-XXXXXX` in `parent`, deleted on drop; the leftovers of
/// dead processes of the same kind there are removed first.
pub fn make(parent: &Path, kind: &str) -> std::io::Result<tempfile::TempDir> {
    sweep(parent, kind);
    tempfile::Builder::new()
        .prefix(&format!("{kind}-{}-", std::process::id()))
        .tempdir_in(parent)
}

/// Removes the `{kind}-{pid}-…` directories in `parent` whose process is gone.
fn sweep(parent: &Path, kind: &str) {
    let prefix = format!("{kind}-");
    atomic_file::remove_dead_writers(parent, |name| {
        name.strip_prefix(&prefix)?.split_once('-')?.0.parse().ok()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_processs_scratch_goes_a_live_ones_stays() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join("build-99999999-abc");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("layer.tar"), b"x").unwrap();
        // `build-out-…` is another kind, not a build of pid "out".
        let other = parent.path().join("build-out-99999999-abc");
        std::fs::create_dir(&other).unwrap();
        let mine = make(parent.path(), "build").unwrap();
        assert!(!dead.exists());
        assert!(other.exists());
        let again = make(parent.path(), "build").unwrap();
        assert!(mine.path().exists() && again.path().exists());
    }
}
