//! Registry answers and stored documents: manifest/index/config parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = oci::ManifestDoc::parse(data, None);
    let _ = oci::ManifestDoc::parse(data, Some("application/vnd.oci.image.index.v1+json"));
    let _ = oci::ImageConfig::parse(data);
});
