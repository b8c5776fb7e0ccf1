//! Test fixtures shared by the unit tests: the real Debian cloud kernel, extracted once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The Debian kernel, unpacked for tests.
pub struct TestKernel {
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// Its modules directory (`lib/modules/<release>`).
    pub modules: PathBuf,
    /// Its release string.
    pub release: String,
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `linux-image-*-cloud-amd64` package that scripts/setup.sh downloads to `.work/kernel`,
/// or the file named by `CONTAINER_TEST_KERNEL_DEB`.
pub fn debian_kernel_deb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINER_TEST_KERNEL_DEB") {
        return Some(PathBuf::from(p));
    }
    let dir = workspace_root().join(".work/kernel");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-image-") && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// Extracts the Debian kernel once per checkout (under `target/vmm-test-kernel/`) and returns it.
pub fn debian_kernel() -> &'static TestKernel {
    static KERNEL: OnceLock<TestKernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let deb = debian_kernel_deb()
            .expect("the Debian kernel .deb is missing: run scripts/setup.sh (or set CONTAINER_TEST_KERNEL_DEB)");
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        let dest = workspace_root().join("target/vmm-test-kernel").join(name);
        let done = dest.join(".complete");
        if !done.exists() {
            let tmp = atomic_file::temp_sibling(&dest);
            std::fs::create_dir_all(&tmp).unwrap();
            crate::deb::extract_kernel(&deb, &tmp).unwrap();
            std::fs::write(tmp.join(".complete"), b"").unwrap();
            let _ = std::fs::remove_dir_all(&dest);
            if std::fs::rename(&tmp, &dest).is_err() {
                // Another test binary won the race; use its copy.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        let img = std::fs::read(dest.join("vmlinuz")).unwrap();
        TestKernel {
            vmlinuz: dest.join("vmlinuz"),
            modules: dest.join("modules"),
            release: crate::bzimage::release(&img).unwrap(),
        }
    })
}
