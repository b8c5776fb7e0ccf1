//! Debian packages come from users: the ar + tar reader must fail cleanly, never panic, and
//! never write outside its destination.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let _ = vmm::deb::extract_kernel_from(data, std::path::Path::new("fuzz.deb"), &dest);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        assert_eq!(entry.unwrap().file_name(), "out", "wrote outside dest");
    }
});
