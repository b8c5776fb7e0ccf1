//! Test set-up written once for every test binary of the workspace: where the guest kernel and
//! the static vminitd are, a real registry, network namespaces, image fixtures (and a cached
//! debootstrap Debian image), guests booted straight from the kernel package, and test
//! binaries that re-run themselves as children.
//!
//! Tests that need root, QEMU, a registry or network namespaces carry
//! `#[cfg_attr(not(container_testenv), ignore = "…")]`: they are compiled (and linted) always, but
//! run only where `scripts/test.sh` turns the cfg on, so a plain `cargo test --workspace` as any
//! user runs the tests that need nothing of the machine.

pub mod child;
pub mod debian;
pub mod guest;
pub mod images;
pub mod netns;
pub mod registry;
pub mod soak;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use netns::Netns;
pub use registry::Registry;

/// The variable naming the guest kernel package; without it, `<workspace>/.work/kernel/*.deb`.
pub const KERNEL_DEB_VAR: &str = "CONTAINER_TEST_KERNEL_DEB";

/// The variable naming the static vminitd. It is the runtime's own, so the guest a test boots
/// by hand and the guest `container` boots run the same binary.
pub const VMINITD_VAR: &str = "CONTAINER_VMINITD";

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The Debian guest kernel package: `$CONTAINER_TEST_KERNEL_DEB`, else the one
/// `scripts/setup.sh` downloads to `<workspace>/.work/kernel/`.
pub fn kernel_deb() -> PathBuf {
    if let Some(p) = std::env::var_os(KERNEL_DEB_VAR) {
        return PathBuf::from(p);
    }
    let dir = workspace().join(".work/kernel");
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no guest kernel .deb in {}: run scripts/setup.sh or set {KERNEL_DEB_VAR}",
                dir.display()
            )
        })
}

/// The static vminitd for guests: `$CONTAINER_VMINITD`, else the one `scripts/setup.sh` builds,
/// else built here once (as setup.sh builds it) into `target/vminitd-static`.
pub fn static_vminitd() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os(VMINITD_VAR) {
            return std::fs::canonicalize(&p)
                .unwrap_or_else(|e| panic!("{VMINITD_VAR}={}: {e}", Path::new(&p).display()));
        }
        let ws = workspace();
        let setup = ws.join("target/x86_64-unknown-linux-gnu/release/vminitd");
        if setup.is_file() {
            return setup;
        }
        static_build("vminitd", "vminitd")
    })
    .clone()
}

/// `fhprobe` (src/bin/fhprobe.rs) built static for guests, once, beside the static vminitd.
pub fn static_fhprobe() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| static_build("testkit", "fhprobe"))
        .clone()
}

/// Builds binary `bin` of `package` statically linked, for guests, into
/// `target/vminitd-static` (as scripts/setup.sh builds vminitd); returns its path.
fn static_build(package: &str, bin: &str) -> PathBuf {
    let ws = workspace();
    let target_dir = ws.join("target/vminitd-static");
    // The explicit --target keeps RUSTFLAGS off the proc-macro crates (ENVIRONMENT.md).
    let status = Command::new(env!("CARGO"))
        .current_dir(&ws)
        .args(["build", "--release", "-p", package, "--bin", bin])
        .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .status()
        .expect("run cargo");
    assert!(status.success(), "static build of {bin} failed");
    target_dir
        .join("x86_64-unknown-linux-gnu/release")
        .join(bin)
}

/// Runs `cmd` and returns its stdout; panics with its output when it cannot start or fails.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs an outside tool and returns its stdout; panics with its output on failure.
#[track_caller]
pub fn tool(program: &str, args: &[&str]) -> String {
    run(Command::new(program).args(args))
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Writes an ext4 image of `size` (e.g. `64M`) at `image` holding the tree at `content`, with
/// e2fsprogs' `mkfs.ext4 -d` (an outside writer, so a guest's mount tests the guest, not ours).
pub fn mkfs_ext4(content: &Path, image: &Path, size: &str) {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(content)
        .arg(image)
        .arg(size));
}

/// A file's text, lossily decoded; empty when it cannot be read (a log not yet written).
pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Every path under `root`, relative to it, directories with a trailing `/`, except those
/// `skip` is true for (a skipped directory is not entered); symlinks are not followed. What
/// a state directory holds, to compare before and after something that must leave nothing.
pub fn paths_under(root: &Path, skip: impl Fn(&str) -> bool) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, skip: &dyn Fn(&str) -> bool, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            if skip(&rel) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(format!("{rel}/"));
                walk(base, &p, skip, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &skip, &mut out);
    out
}
