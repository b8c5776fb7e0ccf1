//! Raw bytes as one layer (plain, gzip or zstd tar): may be rejected, must never panic, and
//! an image we do write must pass e2fsck.
#![no_main]

mod check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check::build_and_check(&[data.to_vec()]);
});
