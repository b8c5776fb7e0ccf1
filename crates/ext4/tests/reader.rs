//! Write-then-read-back with our own reader (no mount needed): contents, holes, extent
//! trees, htree directories, symlinks and metadata come back as written.

mod common;

use common::Layer;
use ext4::reader::{FileKind, Reader};

#[test]
fn images_read_back_as_written() {
    let mut l = Layer::new();
    let mut frag = Vec::new();
    for i in 0..1500u32 {
        frag.extend(std::iter::repeat_n((i % 200) as u8 + 1, 4096));
        frag.extend(std::iter::repeat_n(0u8, 8192));
    }
    l.dir("etc", 0o755)
        .file_owned("etc/passwd", 0o644, 0, 0, b"root:x:0:0::/root:/bin/sh\n")
        .file_owned("frag", 0o4711, 1234, 5678, &frag)
        .symlink("short", "etc/passwd")
        .symlink("long", &"t/".repeat(50))
        .dir("many", 0o700);
    for i in 0..5000 {
        l.file(&format!("many/n{i}"), 0o644, format!("{i}").as_bytes());
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = common::write_layers(tmp.path(), &[l.finish()]);
    let image = tmp.path().join("img");
    ext4::build_from_layers(&paths, &image, &ext4::FormatOptions::default()).expect("build");

    let r = Reader::open(&image).expect("open");
    assert_eq!(
        r.read("/etc/passwd").expect("passwd"),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(r.read("frag").expect("frag"), frag);
    let st = r.stat("frag").expect("stat");
    assert_eq!(
        (st.kind, st.perm, st.uid, st.gid),
        (FileKind::File, 0o4711, 1234, 5678)
    );
    assert_eq!(st.mtime.sec, 1_700_000_000);
    assert_eq!(r.read("short").expect("short"), b"etc/passwd");
    assert_eq!(r.read("long").expect("long"), "t/".repeat(50).as_bytes());
    assert_eq!(r.stat("long").expect("stat").kind, FileKind::Symlink);
    let names = r.list("many").expect("list");
    assert_eq!(names.len(), 5000);
    assert_eq!(r.read("many/n4321").expect("n4321"), b"4321");
    assert_eq!(r.stat("many").expect("stat").perm, 0o700);
    assert!(r
        .list("/")
        .expect("root")
        .contains(&"lost+found".to_string()));
    assert!(matches!(
        r.lookup("nope"),
        Err(ext4::reader::ReadError::NotFound(_))
    ));
}
