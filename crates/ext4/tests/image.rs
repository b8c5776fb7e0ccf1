//! Images on their own: journal, empty volumes, compression, big and sparse files, huge
//! directories, and hostile layers. Every image is checked with `e2fsck -fn` and mounted.

mod common;

use std::process::Command;

use common::{e2fsck_clean, Layer, Mount};

fn build(
    layers: &[Vec<u8>],
    opts: &ext4::FormatOptions,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = common::write_layers(tmp.path(), layers);
    let image = tmp.path().join("img");
    ext4::build_from_layers(&paths, &image, opts).expect("build");
    (tmp, image)
}

fn build_err(layers: &[Vec<u8>]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = common::write_layers(tmp.path(), layers);
    let image = tmp.path().join("img");
    let err = ext4::build_from_layers(&paths, &image, &ext4::FormatOptions::default())
        .expect_err("must be rejected");
    assert!(!image.exists(), "no image is left behind on error");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file removed");
    let mut text = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        text.push_str(&format!(": {s}"));
        src = s.source();
    }
    text
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn journal_is_accepted_and_the_fs_mounts_read_write() {
    let mut l = Layer::new();
    l.dir("etc", 0o755).file("etc/motd", 0o644, b"hi\n");
    let opts = ext4::FormatOptions {
        journal: true,
        ..Default::default()
    };
    let (tmp, image) = build(&[l.finish()], &opts);
    e2fsck_clean(&image);
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&image)
        .output()
        .expect("dumpe2fs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("has_journal"), "{text}");
    assert!(text.contains("metadata_csum"), "{text}");
    {
        let m = Mount::new(&image, &tmp.path().join("mnt"), false);
        std::fs::write(m.dir.join("etc/new"), b"written in the guest").expect("write");
        std::fs::create_dir(m.dir.join("newdir")).expect("mkdir");
        assert_eq!(
            std::fs::read(m.dir.join("etc/motd")).expect("read"),
            b"hi\n"
        );
    }
    e2fsck_clean(&image);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn empty_volume_of_given_size() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("vol");
    let s = ext4::format_empty(&image, 300 << 20, &ext4::FormatOptions::default()).expect("format");
    assert_eq!(s.size_bytes, 300 << 20);
    assert_eq!(std::fs::metadata(&image).expect("stat").len(), 300 << 20);
    // Sparse on the host: far less allocated than the size.
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&image).expect("stat").blocks() * 512 < 16 << 20);
    e2fsck_clean(&image);
    {
        let m = Mount::new(&image, &tmp.path().join("mnt"), false);
        std::fs::write(m.dir.join("data"), vec![7u8; 50 << 20]).expect("fill");
    }
    e2fsck_clean(&image);
}

/// `dumpe2fs -h` of an image.
fn dumpe2fs(image: &std::path::Path) -> String {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .expect("dumpe2fs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn journal_size_and_data_mode_are_what_was_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("vol");
    let opts = ext4::FormatOptions {
        journal: true,
        journal_size: Some(32 << 20),
        data_mode: Some(ext4::DataMode::Writeback),
        lost_found: false,
        ..Default::default()
    };
    ext4::format_empty(&image, 256 << 20, &opts).expect("format");
    common::e2fsck_clean_but_lost_found(&image);
    let text = dumpe2fs(&image);
    assert!(text.contains("has_journal"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Total journal size:") && l.trim_end().ends_with(" 32M")),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("Default mount options:") && l.contains("journal_data_writeback")
        ),
        "{text}"
    );

    // The default size for 256 MiB (mke2fs's 16 MiB) and no data mode: the kernel's default.
    let plain = tmp.path().join("plain");
    let opts = ext4::FormatOptions {
        journal: true,
        ..Default::default()
    };
    ext4::format_empty(&plain, 256 << 20, &opts).expect("format");
    let text = dumpe2fs(&plain);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Total journal size:") && l.trim_end().ends_with(" 16M")),
        "{text}"
    );
    assert!(!text.contains("journal_data"), "{text}");

    for (size, fs) in [(1 << 20, 256u64 << 20), (200 << 20, 256 << 20)] {
        let opts = ext4::FormatOptions {
            journal: true,
            journal_size: Some(size),
            ..Default::default()
        };
        let err = ext4::format_empty(&tmp.path().join("bad"), fs, &opts)
            .expect_err("journal size out of bounds");
        assert!(matches!(err, ext4::Ext4Error::JournalSize { .. }), "{err}");
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn volume_without_lost_found_is_empty_and_the_kernel_writes_it() {
    // A new named volume: journal, no lost+found, so a program that wants an empty directory
    // (postgres's initdb) accepts its mount point.
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("vol");
    let opts = ext4::FormatOptions {
        journal: true,
        lost_found: false,
        label: Some("data".into()),
        ..Default::default()
    };
    let s = ext4::format_empty(&image, 64 << 20, &opts).expect("format");
    assert_eq!((s.files, s.directories), (1, 1), "the root alone");
    common::e2fsck_clean_but_lost_found(&image);
    assert!(common::debugfs_ls(&image, "/").is_empty());
    {
        let m = Mount::new(&image, &tmp.path().join("mnt"), false);
        assert_eq!(
            std::fs::read_dir(&m.dir).expect("ls").count(),
            0,
            "the kernel lists nothing at the root"
        );
        // What initdb does first: subdirectories and files, made durable.
        std::fs::create_dir_all(m.dir.join("pgdata/base/1")).expect("mkdir");
        std::fs::write(m.dir.join("pgdata/PG_VERSION"), b"15\n").expect("write");
        std::fs::write(m.dir.join("pgdata/base/1/1259"), vec![3u8; 3 << 20]).expect("write");
        std::fs::File::open(m.dir.join("pgdata/base/1/1259"))
            .and_then(|f| f.sync_all())
            .expect("fsync");
        std::fs::remove_file(m.dir.join("pgdata/PG_VERSION")).expect("unlink");
    }
    // Still only the missing directory after the kernel wrote and removed files; the kernel
    // did not make one either.
    common::e2fsck_clean_but_lost_found(&image);
    assert_eq!(common::debugfs_ls(&image, "/"), ["pgdata"]);
    assert_eq!(common::debugfs_ls(&image, "/pgdata/base/1"), ["1259"]);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs e2fsprogs: run scripts/test.sh"
)]
#[should_panic(expected = "e2fsck -fy of a copy")]
fn the_lost_found_oracle_fails_an_image_that_has_one() {
    // The oracle must tell the two kinds apart: a repair of an image with lost+found changes
    // nothing, which is not the one expected complaint.
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("vol");
    ext4::format_empty(&image, 16 << 20, &ext4::FormatOptions::default()).expect("format");
    common::e2fsck_clean_but_lost_found(&image);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn gzip_and_zstd_layers_are_detected() {
    let mut a = Layer::new();
    a.file("gz", 0o644, b"from gzip");
    let mut b = Layer::new();
    b.file("zst", 0o644, b"from zstd");
    let gz = common::gzip(&a.finish());
    let zst = zstd::encode_all(&b.finish()[..], 3).expect("zstd");
    let (tmp, image) = build(&[gz, zst], &ext4::FormatOptions::default());
    e2fsck_clean(&image);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    assert_eq!(std::fs::read(m.dir.join("gz")).expect("gz"), b"from gzip");
    assert_eq!(std::fs::read(m.dir.join("zst")).expect("zst"), b"from zstd");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn sparse_file_over_4_gib_stays_sparse() {
    // A GNU sparse archive made by tar itself: 5 GiB apparent, a few KiB of data.
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let f = std::fs::File::create(src.join("huge")).expect("create");
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).expect("write");
    f.write_all_at(b"end", (5 << 30) - 3).expect("write");
    drop(f);
    let layer = tmp.path().join("l.tar");
    let st = Command::new("tar")
        .args(["--sparse", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&layer)
        .arg("huge")
        .status()
        .expect("tar");
    assert!(st.success());
    let image = tmp.path().join("img");
    let s =
        ext4::build_from_layers(&[layer], &image, &ext4::FormatOptions::default()).expect("build");
    assert!(
        s.size_bytes < 1 << 30,
        "image sized by data, not apparent size: {}",
        s.size_bytes
    );
    e2fsck_clean(&image);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    let md = std::fs::metadata(m.dir.join("huge")).expect("stat");
    assert_eq!(md.len(), 5 << 30);
    let g = std::fs::File::open(m.dir.join("huge")).expect("open");
    let mut buf = [0u8; 5];
    g.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"start");
    g.read_exact_at(&mut buf[..3], (5 << 30) - 3).expect("read");
    assert_eq!(&buf[..3], b"end");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn hundred_thousand_entries_use_a_two_level_htree() {
    let mut l = Layer::new();
    l.dir("d", 0o755);
    for i in 0..100_000 {
        l.file(&format!("d/some-longer-file-name-{i:07}"), 0o644, b"");
    }
    let (tmp, image) = build(&[l.finish()], &ext4::FormatOptions::default());
    e2fsck_clean(&image);
    let out = Command::new("debugfs")
        .args(["-R", "htree_dump /d"])
        .arg(&image)
        .output()
        .expect("debugfs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Indirect levels: 1"),
        "{}",
        &text[..text.len().min(500)]
    );
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    let start = std::time::Instant::now();
    for i in (0..100_000).step_by(997) {
        assert!(m
            .dir
            .join(format!("d/some-longer-file-name-{i:07}"))
            .exists());
    }
    assert!(!m.dir.join("d/absent").exists());
    assert!(start.elapsed().as_secs() < 5, "lookups stay fast");
    assert_eq!(
        std::fs::read_dir(m.dir.join("d")).expect("ls").count(),
        100_000
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn hostile_paths_stay_inside_the_image() {
    let mut l = Layer::new();
    l.dir("etc", 0o755);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(4);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    // The tar crate's builder refuses "..": write the names into the header ourselves.
    h.as_gnu_mut().expect("gnu").name[..19].copy_from_slice(b"../../../etc/passwd");
    l.raw_entry(h.clone(), b"evil");
    h.as_gnu_mut().expect("gnu").name[..19].copy_from_slice(b"/abs/olute/path\0\0\0\0");
    l.raw_entry(h, b"abso");
    // A symlinked directory pointing out, then an entry under it.
    l.symlink("escape", "../../../../tmp");
    l.file("escape/planted", 0o644, b"planted");
    l.file("dup", 0o644, b"first").file("dup", 0o600, b"second");
    let (tmp, image) = build(&[l.finish()], &ext4::FormatOptions::default());
    e2fsck_clean(&image);
    assert!(!std::path::Path::new("/tmp/planted").exists());
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    assert_eq!(
        std::fs::read(m.dir.join("etc/passwd")).expect("inside"),
        b"evil"
    );
    assert_eq!(
        std::fs::read(m.dir.join("abs/olute/path")).expect("inside"),
        b"abso"
    );
    assert_eq!(
        std::fs::read(m.dir.join("tmp/planted")).expect("inside"),
        b"planted"
    );
    assert_eq!(std::fs::read(m.dir.join("dup")).expect("dup"), b"second");
}

#[test]
fn bad_layers_are_rejected_naming_the_entry() {
    // Truncated in the middle of a file's data.
    let mut l = Layer::new();
    l.file("ok", 0o644, b"fine")
        .file("cut", 0o644, &vec![1u8; 100_000]);
    let mut t = l.finish();
    t.truncate(512 * 3 + 20_000);
    let e = build_err(&[t]);
    assert!(e.contains("\"cut\""), "{e}");

    // Hard link to nothing.
    let mut l = Layer::new();
    l.hardlink("link", "nowhere");
    let e = build_err(&[l.finish()]);
    assert!(e.contains("\"link\"") && e.contains("nowhere"), "{e}");

    // A hard link that replaces the directory holding its own target (found by the
    // layer_stack fuzzer: the target's node was freed, then linked to).
    let mut l = Layer::new();
    l.dir("a", 0o755)
        .file("a/b", 0o644, b"x")
        .hardlink("a", "a/b");
    let e = build_err(&[l.finish()]);
    assert!(e.contains("\"a\"") && e.contains("a/b"), "{e}");

    // A file as a parent directory.
    let mut l = Layer::new();
    l.file("f", 0o644, b"x").file("f/child", 0o644, b"y");
    let e = build_err(&[l.finish()]);
    assert!(
        e.contains("f/child") && e.contains("not a directory"),
        "{e}"
    );

    // A symlink whose target would create a directory name over 255 bytes.
    let mut l = Layer::new();
    l.symlink("l", &"x".repeat(300)).file("l/f", 0o644, b"z");
    let e = build_err(&[l.finish()]);
    assert!(e.contains("\"l/f\"") && e.contains("255"), "{e}");

    // Device numbers ext4 cannot encode.
    let mut l = Layer::new();
    l.device("dev/x", tar::EntryType::Char, 5000, 1);
    let e = build_err(&[l.finish()]);
    assert!(e.contains("dev/x") && e.contains("out of range"), "{e}");

    // Garbage that is not a tar at all.
    let e = build_err(&[vec![0x42; 2000]]);
    assert!(e.contains("layer"), "{e}");
}

#[test]
fn too_small_a_size_is_a_clear_error() {
    let mut l = Layer::new();
    l.file("big", 0o644, &vec![9u8; 8 << 20]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = common::write_layers(tmp.path(), &[l.finish()]);
    let opts = ext4::FormatOptions {
        size: Some(4 << 20),
        ..Default::default()
    };
    let err =
        ext4::build_from_layers(&paths, &tmp.path().join("img"), &opts).expect_err("too small");
    assert!(err.to_string().contains("too small"), "{err}");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn posix_acls_round_trip_through_the_kernel() {
    // Generic xattr form: version 2, then (tag, perm, id) entries.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let mut l = Layer::new();
    l.pax(&[("SCHILY.xattr.system.posix_acl_access", &acl)])
        .file("acl", 0o640, b"acl");
    let (tmp, image) = build(&[l.finish()], &ext4::FormatOptions::default());
    e2fsck_clean(&image);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    let back = xattr::get(m.dir.join("acl"), "system.posix_acl_access")
        .expect("getxattr")
        .expect("acl present");
    assert_eq!(back, acl);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn deep_extent_trees_and_reused_blocks_in_a_full_image() {
    // 2000 one-block extents: a two-level extent tree.
    let mut frag = Vec::new();
    for i in 0..2000u32 {
        frag.extend(std::iter::repeat_n((i % 251) as u8 | 1, 4096));
        frag.extend(std::iter::repeat_n(0u8, 4096));
    }
    // Layer 0 fills most of a 24 MiB image with garbage-looking data; layer 1 replaces it, so
    // the new data and the metadata must reuse freed blocks (inode tables included).
    let mut l0 = Layer::new();
    l0.file("big", 0o644, &vec![0xAAu8; 14 << 20]);
    let mut l1 = Layer::new();
    l1.file("big", 0o644, &vec![0x55u8; 14 << 20]);
    for i in 0..300 {
        l1.file(&format!("f{i}"), 0o644, format!("file {i}").as_bytes());
    }
    l1.file("frag", 0o644, &frag);
    let opts = ext4::FormatOptions {
        size: Some(40 << 20),
        ..Default::default()
    };
    let (tmp, image) = build(&[l0.finish(), l1.finish()], &opts);
    e2fsck_clean(&image);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    assert_eq!(std::fs::read(m.dir.join("frag")).expect("frag"), frag);
    assert!(std::fs::read(m.dir.join("big"))
        .expect("big")
        .iter()
        .all(|&b| b == 0x55));
    assert_eq!(
        std::fs::read(m.dir.join("f299")).expect("f299"),
        b"file 299"
    );
    let out = Command::new("debugfs")
        .args(["-R", "stat /frag"])
        .arg(&image)
        .output()
        .expect("debugfs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(1):") || text.contains("(ETB1)") || text.contains("ETB"),
        "{}",
        &text[..text.len().min(800)]
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn times_before_1970_and_after_2038_keep_their_nanoseconds() {
    let mut l = Layer::new();
    l.pax(&[("mtime", b"-100.5")]).file("old", 0o644, b"o");
    l.pax(&[("mtime", b"4102444800.25")])
        .file("future", 0o644, b"f");
    let (tmp, image) = build(&[l.finish()], &ext4::FormatOptions::default());
    e2fsck_clean(&image);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    use std::os::unix::fs::MetadataExt;
    let old = std::fs::metadata(m.dir.join("old")).expect("old");
    assert_eq!((old.mtime(), old.mtime_nsec()), (-101, 500_000_000));
    let fut = std::fs::metadata(m.dir.join("future")).expect("future");
    assert_eq!(
        (fut.mtime(), fut.mtime_nsec()),
        (4_102_444_800, 250_000_000)
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn big_htree_directory_survives_kernel_writes() {
    let mut l = Layer::new();
    l.dir("d", 0o755);
    for i in 0..30_000 {
        l.file(&format!("d/entry-{i:06}"), 0o644, b"");
    }
    let (tmp, image) = build(&[l.finish()], &ext4::FormatOptions::default());
    e2fsck_clean(&image);
    {
        let m = Mount::new(&image, &tmp.path().join("mnt"), false);
        for i in 0..3000 {
            std::fs::write(m.dir.join(format!("d/added-{i}")), b"new").expect("create");
            std::fs::remove_file(m.dir.join(format!("d/entry-{:06}", i * 7))).expect("remove");
        }
        assert_eq!(
            std::fs::read_dir(m.dir.join("d")).expect("ls").count(),
            30_000
        );
    }
    e2fsck_clean(&image);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn min_size_gives_room_to_write_and_costs_no_disk() {
    let mut l = Layer::new();
    l.dir("etc", 0o755).file("etc/motd", 0o644, b"hi\n");
    let opts = ext4::FormatOptions {
        min_size: Some(2 << 30),
        journal: true,
        ..Default::default()
    };
    let (tmp, image) = build(&[l.finish()], &opts);
    e2fsck_clean(&image);
    let meta = std::fs::metadata(&image).expect("stat");
    assert!(meta.len() >= 2 << 30, "size {} below min_size", meta.len());
    {
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 < 128 << 20,
            "image is sparse: {} blocks",
            meta.blocks()
        );
    }
    {
        // 256 MiB would not fit in the content-sized default (content + 25 % + 32 MiB).
        let m = Mount::new(&image, &tmp.path().join("mnt"), false);
        let chunk = vec![0x5a_u8; 1 << 20];
        let mut f = std::fs::File::create(m.dir.join("big")).expect("create");
        for _ in 0..256 {
            std::io::Write::write_all(&mut f, &chunk).expect("write 256 MiB");
        }
        f.sync_all().expect("sync");
    }
    e2fsck_clean(&image);
}

/// Mount points made where the layers left their paths free (`FormatOptions::ensure`), under
/// a symlinked `/etc` too: the image checks clean and the kernel sees them.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn ensured_entries_check_clean_and_mount() {
    let mut l = Layer::new();
    l.dir("usr", 0o755)
        .dir("usr/etc", 0o755)
        .file("usr/etc/hostname", 0o600, b"image's own\n")
        .symlink("etc", "usr/etc")
        .dir("proc", 0o555);
    let entry = |path: &str, dir: bool| ext4::EnsureEntry {
        path: path.into(),
        dir,
        perm: if dir { 0o755 } else { 0o644 },
    };
    let opts = ext4::FormatOptions {
        journal: true,
        lost_found: false,
        ensure: vec![
            entry("/proc", true),
            entry("/sys", true),
            entry("/dev", true),
            entry("/etc/hosts", false),
            entry("/etc/hostname", false),
        ],
        ..Default::default()
    };
    let (tmp, image) = build(&[l.finish()], &opts);
    e2fsck_clean(&image);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    let mut names: Vec<String> = std::fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dev", "etc", "proc", "sys", "usr"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(m.dir.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("proc"), 0o555, "the layer's own /proc stays");
    assert_eq!(mode("sys"), 0o755);
    // Through the symlink: made in usr/etc, the image's own hostname kept.
    assert_eq!(std::fs::read(m.dir.join("usr/etc/hosts")).unwrap(), b"");
    assert_eq!(mode("usr/etc/hosts"), 0o644);
    assert_eq!(
        std::fs::read(m.dir.join("usr/etc/hostname")).unwrap(),
        b"image's own\n"
    );
}
