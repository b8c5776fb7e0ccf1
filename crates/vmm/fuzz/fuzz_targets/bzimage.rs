//! Kernel images come from users and packages: unpacking must fail cleanly, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmm::bzimage::version_string(data);
    let _ = vmm::bzimage::extract_vmlinux(data);
});
