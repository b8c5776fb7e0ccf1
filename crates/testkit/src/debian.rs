//! A realistic distribution image for the scenario tests: Debian built with `debootstrap
//! --variant=minbase` plus python3, nginx, postgresql, procps and curl, as a root filesystem
//! tarball for `container image import`.
//!
//! The build takes minutes and needs the Debian mirror, so its result is cached outside the
//! checkout, in [`cache_dir`] (`/var/cache/container-test` unless [`CACHE_VAR`] says otherwise),
//! under a name that hashes the suite, the package list and the build script: CI runs on fresh
//! clones on the same machine and reuses it, and a change of any input builds a new one. The
//! tarball is written to a temporary name and renamed into place, and concurrent test processes
//! take an exclusive `flock` first, so none sees half a file or builds it twice at once.
//!
//! Without a reachable mirror (and no cached tarball) [`rootfs_tar`] panics, naming the mirror:
//! the tests that need it fail rather than skip, as the other machine-dependent tests do.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The Debian suite the image is built from.
pub const SUITE: &str = "bookworm";

/// What `debootstrap --include` adds to minbase (dependencies follow, Recommends do not).
pub const PACKAGES: &[&str] = &["python3", "nginx-light", "postgresql", "procps", "curl"];

/// The variable naming the Debian mirror; without it, [`DEFAULT_MIRROR`].
pub const MIRROR_VAR: &str = "CONTAINER_TEST_DEBIAN_MIRROR";

/// The mirror the machines' apt sources use.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The variable naming the cache directory; without it, [`DEFAULT_CACHE`].
pub const CACHE_VAR: &str = "CONTAINER_TEST_CACHE";

/// Outside any checkout, so fresh clones (CI) on the same machine share it.
pub const DEFAULT_CACHE: &str = "/var/cache/container-test";

/// The build script; its text is part of the cache key.
const SCRIPT: &str = include_str!("debian.sh");

/// The cache directory: `$CONTAINER_TEST_CACHE`, else [`DEFAULT_CACHE`].
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// The mirror debootstrap downloads from: `$CONTAINER_TEST_DEBIAN_MIRROR`, else
/// [`DEFAULT_MIRROR`]. Not part of the cache key: every mirror serves the same suite.
pub fn mirror() -> String {
    std::env::var(MIRROR_VAR).unwrap_or_else(|_| DEFAULT_MIRROR.to_string())
}

/// The first 16 hex digits of sha256 over the suite, the package list and the build script.
pub fn cache_key() -> String {
    key_of(SUITE, PACKAGES, SCRIPT)
}

fn key_of(suite: &str, packages: &[&str], script: &str) -> String {
    let input = format!("{suite}\n{}\n{script}", packages.join(","));
    crate::sha256(input.as_bytes())["sha256:".len().."sha256:".len() + 16].to_string()
}

/// The cached root filesystem tarball (`<cache>/debian-bookworm-<key>.tar`), built first if
/// no process built it before. Needs root (debootstrap) and the mirror for the first build.
pub fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = cache_dir();
        let key = cache_key();
        let tar = dir.join(format!("debian-{SUITE}-{key}.tar"));
        if tar.is_file() {
            return tar;
        }
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create the test image cache {}: {e}", dir.display()));
        let lock_path = dir.join(format!("debian-{SUITE}-{key}.lock"));
        let lock = File::create(&lock_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
        lock.lock()
            .unwrap_or_else(|e| panic!("flock {}: {e}", lock_path.display()));
        // Another process may have finished it while this one waited for the lock.
        if !tar.is_file() {
            build(&dir, &key, &tar);
        }
        tar
    })
}

/// Builds the tarball into a temporary name in `dir` and renames it to `tar`; the caller holds
/// the lock.
fn build(dir: &Path, key: &str, tar: &Path) {
    let mirror = mirror();
    check_mirror(&mirror);
    // What a build killed mid-way left behind (the lock says nobody is building now).
    let prefix = format!("debian-{SUITE}-{key}.tar.");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let p = entry.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
    let temp = dir.join(format!("{prefix}tmp-{}", std::process::id()));
    eprintln!(
        "building the Debian test image with debootstrap from {mirror} (minutes, once; cached \
         as {})",
        tar.display()
    );
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("debian.sh")
        .args([SUITE, &mirror, &PACKAGES.join(",")])
        .arg(&temp)
        .output()
        .expect("run sh for the Debian image build");
    if !out.status.success() {
        let _ = std::fs::remove_file(&temp);
        let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "debootstrap of Debian {SUITE} from {mirror} failed ({}); its last lines:\n{}",
            out.status,
            tail.join("\n")
        );
    }
    File::open(&temp)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("sync {}: {e}", temp.display()));
    std::fs::rename(&temp, tar)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", temp.display(), tar.display()));
    let size = std::fs::metadata(tar).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "built {} ({} MiB) in {:.0?}",
        tar.display(),
        size >> 20,
        started.elapsed()
    );
}

/// Fails the test with a message naming the mirror when its Release file cannot be fetched,
/// instead of letting debootstrap fail minutes later with a less direct one.
fn check_mirror(mirror: &str) {
    let url = format!("{mirror}/dists/{SUITE}/Release");
    let out = Command::new("curl")
        .args(["-sSfL", "-m", "30", "-o", "/dev/null", &url])
        .output()
        .expect("run curl (Debian package curl, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "the Debian mirror is unreachable: GET {url} failed ({}). The scenario tests build their \
         image with debootstrap from it once and cache it in {}; set {MIRROR_VAR} to a reachable \
         mirror",
        String::from_utf8_lossy(&out.stderr).trim(),
        cache_dir().display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_is_stable_and_covers_the_inputs() {
        let key = cache_key();
        assert_eq!(key.len(), 16);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        assert_eq!(key, cache_key());
        assert_ne!(key, key_of("trixie", PACKAGES, SCRIPT));
        assert_ne!(key, key_of(SUITE, &PACKAGES[1..], SCRIPT));
        assert_ne!(key, key_of(SUITE, PACKAGES, &format!("{SCRIPT}\n")));
    }
}
