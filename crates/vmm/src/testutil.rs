//! Test fixtures shared by the unit tests: the real Debian cloud kernel, extracted once.

use std::path::PathBuf;
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

/// Extracts the Debian kernel once per checkout (under `target/vmm-test-kernel/`) and returns it.
pub fn debian_kernel() -> &'static TestKernel {
    static KERNEL: OnceLock<TestKernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let deb = testkit::kernel_deb();
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        let dest = testkit::workspace()
            .join("target/vmm-test-kernel")
            .join(name);
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
