//! Atomic whole-file writes, the one implementation every host crate uses.
//!
//! State files, store indexes, credentials and caches are all replaced the same way so that a
//! reader (or a crash) sees either the old content or the new, never a mix:
//!
//! ```text
//!   write bytes ──► .NAME.tmp-PID-N ──fsync──► rename(2) over NAME ──► fsync(dir)
//!                   (same directory,           (atomic within one      (makes the rename
//!                    so rename never            filesystem)             itself durable)
//!                    crosses filesystems)
//! ```
//!
//! The temporary file is removed again when any step before the rename fails. The parent
//! directory is not created: a writer whose directory vanished (a container deleted under it)
//! must fail rather than resurrect it.
//!
//! It has no dependencies so every layer, the lowest included, can use it.

// No unwrap on data from outside (DIRECTION.md); tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` atomically; the new file gets the usual creation mode (0666
/// less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write(path, bytes, None)
}

/// Replaces `path` with `bytes` atomically, the new file having exactly `mode` whatever the
/// umask (0600 for credentials). The mode is set before any byte is written, so the content is
/// never readable with wider permissions.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write(path, bytes, Some(mode))
}

/// Replaces `path` with `bytes` atomically (a reader or a crash of this process sees the old
/// file or the new one) without waiting for the disk: no fsync of the file or its directory.
/// For records rewritten many times a second whose loss to a power cut only rolls them back to
/// an earlier state that is itself consistent.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut options = OpenOptions::new();
        // Not create_new: a temp left by a crashed writer whose pid was reused is overwritten
        // rather than failing this write.
        options.write(true).create(true).truncate(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut f = options.open(&tmp)?;
        if let Some(mode) = mode {
            // The open mode above is filtered by the umask; this makes it exact.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// A path beside `path` (same directory, so a rename onto `path` stays on one filesystem) that
/// no other writer uses: the process id and a per-process counter are in its name, and the
/// leading dot keeps it out of plain listings.
pub fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// The writer's pid in the name of a [`temp_sibling`] file (`.NAME.tmp-PID-N`).
pub fn temp_sibling_pid(file_name: &str) -> Option<u32> {
    let (_, tail) = file_name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    tail.split_once('-')?.0.parse().ok()
}

/// Removes the entries of `dir` whose writer died before renaming them into place or
/// removing them (a kill -9 half-way): temp files, and whole scratch directories. `pid_of`
/// reads the writer's pid from a name, `None` for entries that are not its kind. A process
/// that no longer exists writes no more; a pid reused since is taken for alive, which only
/// keeps the entry until a later sweep. Returns how many were removed.
pub fn remove_dead_writers(dir: &Path, pid_of: impl Fn(&str) -> Option<u32>) -> usize {
    let mut removed = 0;
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(&pid_of) else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(entry.path()),
            _ => fs::remove_file(entry.path()),
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Removes the [`temp_sibling`]s of `path` whose writer died before renaming them onto it
/// (an earlier write to the same file, killed half-way); returns how many.
pub fn remove_dead_temps_of(path: &Path) -> usize {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return 0;
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(".{name}.tmp-");
    remove_dead_writers(dir, |n| {
        n.starts_with(&prefix)
            .then(|| temp_sibling_pid(n))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["state.json"]);
        write_atomic_unsynced(&path, b"newer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        assert_eq!(entries(dir.path()), ["state.json"]);
    }

    #[test]
    fn mode_is_exact_and_replaces_a_wider_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic_with_mode(&path, b"secret", 0o600).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn missing_directory_fails_without_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone/state.json");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(!dir.path().join("gone").exists());
    }

    #[test]
    fn failed_rename_removes_the_temp() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory at the target makes rename(2) fail after the temp is written.
        let path = dir.path().join("target");
        fs::create_dir_all(path.join("inside")).unwrap();
        assert!(write_atomic(&path, b"x").is_err());
        assert_eq!(entries(dir.path()), ["target"]);
    }

    #[test]
    fn temp_siblings_differ_and_stay_beside() {
        let path = Path::new("/a/b/file");
        let (x, y) = (temp_sibling(path), temp_sibling(path));
        assert_ne!(x, y);
        assert_eq!(x.parent(), path.parent());
    }

    #[test]
    fn temps_of_dead_writers_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_sibling(&dir.path().join("state.json"));
        assert_eq!(
            temp_sibling_pid(&mine.file_name().unwrap().to_string_lossy()),
            Some(std::process::id())
        );
        fs::write(&mine, b"half").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(
            dir.path().join(format!(".state.json.tmp-{dead}-0")),
            b"half",
        )
        .unwrap();
        fs::write(dir.path().join("state.json"), b"{}").unwrap();
        fs::write(dir.path().join(format!(".other.tmp-{dead}-0")), b"half").unwrap();
        // A scratch directory of a dead writer goes whole.
        let scratch = dir.path().join(format!(".scratch.tmp-{dead}-0"));
        fs::create_dir(&scratch).unwrap();
        fs::write(scratch.join("part"), b"half").unwrap();
        assert_eq!(remove_dead_temps_of(&dir.path().join("state.json")), 1);
        assert_eq!(remove_dead_writers(dir.path(), temp_sibling_pid), 2);
        let mut want = vec![
            mine.file_name().unwrap().to_string_lossy().into_owned(),
            "state.json".to_string(),
        ];
        want.sort();
        assert_eq!(entries(dir.path()), want);
    }
}
