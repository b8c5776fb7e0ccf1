//! User input: a reference that parses prints as one that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = oci::Reference::parse(s) {
            let again = oci::Reference::parse(&r.to_string()).expect("normalised form parses");
            assert_eq!(again, r);
        }
        let _ = oci::Platform::parse(s);
        let _ = oci::Digest::parse(s);
    }
});
