//! `image load` input: any bytes as an archive must fail cleanly (no panic) and never name an
//! image whose content is incomplete.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tmp");
    let store = oci::Store::open(&dir.path().join("state")).expect("store");
    let input = dir.path().join("in.tar");
    std::fs::write(&input, data).expect("write");
    if let Ok(refs) = oci::load(&store, &input) {
        for r in refs {
            let target = store.resolve(&r).expect("loaded name resolves");
            assert!(store.has_blob(&target.digest));
        }
    }
});
