//! Module files come from kernel packages: `.modinfo` parsing must fail cleanly, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmm::modules::parse_modinfo(data);
});
