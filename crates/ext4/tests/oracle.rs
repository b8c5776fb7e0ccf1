//! Images built from layers must pass `e2fsck -fn` and, loop-mounted, match what `umoci
//! unpack` makes of the same layers: names, types, contents, modes, owners, symlink targets,
//! hard-link identity, xattrs, device numbers and mtimes. Needs root (loop mounts).

mod common;

use common::Layer;
use tar::EntryType;

fn opts() -> ext4::FormatOptions {
    ext4::FormatOptions::default()
}

/// Content that is not all zero, so it is really stored.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn every_file_type_matches_umoci() {
    let mut l = Layer::new();
    l.dir("etc", 0o755)
        .file("etc/hosts", 0o644, b"127.0.0.1 localhost\n")
        .file_owned("etc/shadow", 0o640, 0, 42, b"root:*:1::::::\n")
        .file_owned(
            "etc/high-ids",
            0o600,
            100_000,
            200_000,
            b"ids above 16 bits\n",
        )
        .dir_owned("home", 0o755, 0, 0)
        .dir_owned("home/user", 0o700, 1000, 1000)
        .file_owned("home/user/big", 0o600, 1000, 1000, &pattern(3 << 20, 7))
        .dir("tmp", 0o1777)
        .dir("bin", 0o755)
        .file("bin/su", 0o4755, &pattern(10_000, 3))
        .file("bin/wall", 0o2755, &pattern(5000, 4))
        .symlink("bin/sh", "busybox")
        .symlink(
            "bin/long",
            &format!("/{}", "very-long-symlink-target/".repeat(8)),
        )
        .file("bin/busybox", 0o755, &pattern(100_000, 9))
        .hardlink("bin/ls", "bin/busybox")
        .hardlink("bin/cat", "bin/busybox")
        .dir("dev", 0o755)
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/sda", EntryType::Block, 8, 0)
        .device("dev/big", EntryType::Char, 300, 70_000)
        .fifo("dev/initctl")
        .file("empty", 0o644, b"");
    let long_name = format!("deep/{}/{}", "d".repeat(120), "f".repeat(200));
    l.dir("deep", 0o755)
        .dir(&format!("deep/{}", "d".repeat(120)), 0o755);
    l.file(&long_name, 0o644, b"long name\n");
    // Sparse: data, a 40 MiB hole, data; fragmented: 600 runs of one block with holes.
    let mut sparse = pattern(4096, 1);
    sparse.extend(vec![0u8; 40 << 20]);
    sparse.extend(pattern(5000, 2));
    l.file("sparse", 0o644, &sparse);
    let mut frag = Vec::new();
    for i in 0..600u32 {
        frag.extend(pattern(4096, i as u8));
        frag.extend(vec![0u8; 4096]);
    }
    l.file("fragmented", 0o644, &frag);
    l.pax(&[
        ("SCHILY.xattr.user.small", b"v"),
        ("SCHILY.xattr.trusted.t", b"x"),
    ])
    .file("xattr-inline", 0o644, b"x");
    let cap = [
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    l.pax(&[
        ("SCHILY.xattr.user.big", &[b'b'; 300][..]),
        ("SCHILY.xattr.security.capability", &cap[..]),
    ])
    .file("xattr-block", 0o755, b"y");
    l.pax(&[("mtime", b"1600000000.123456789")])
        .file("nanos", 0o644, b"ns");
    let layer = l.finish();
    let s = common::check_against_umoci(&[layer], &opts(), true);
    assert!(s.size_bytes >= 4 << 20);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn whiteouts_opaque_dirs_and_type_changes_match_umoci() {
    common::check_against_umoci(&whiteout_stack(), &opts(), false);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn rootfs_without_lost_found_matches_umoci_exactly() {
    // As an image's rootfs is built for containers: the root holds the layers' names only, and
    // e2fsck's only remark is the missing /lost+found (checked in `check_against_umoci`).
    let opts = ext4::FormatOptions {
        lost_found: false,
        journal: true,
        ..opts()
    };
    let s = common::check_against_umoci(&whiteout_stack(), &opts, false);
    // The root, a, a/sub and opq: f2d was whited out, d2f became a file.
    assert_eq!(s.directories, 4);
}

/// Three layers with whiteouts, an opaque directory and type changes.
fn whiteout_stack() -> Vec<Vec<u8>> {
    let mut l0 = Layer::new();
    l0.dir("a", 0o755)
        .file("a/keep", 0o644, b"keep")
        .file("a/gone", 0o644, b"gone")
        .dir("a/sub", 0o755)
        .file("a/sub/x", 0o644, b"x")
        .dir("opq", 0o755)
        .file("opq/old1", 0o644, b"1")
        .dir("opq/olddir", 0o755)
        .file("opq/olddir/f", 0o644, b"f")
        .file("f2d", 0o644, b"file becomes dir")
        .dir("d2f", 0o755)
        .file("d2f/child", 0o644, b"child")
        .file("l2f", 0o644, b"target")
        .symlink("s2f", "l2f")
        .file("orig", 0o644, &pattern(9000, 5));
    let mut l1 = Layer::new();
    l1.mtime += 100;
    l1.whiteout("a/gone")
        .whiteout("a/sub")
        .dir("opq", 0o750)
        .file("opq/new", 0o644, b"new")
        .opaque("opq")
        .dir("f2d", 0o755)
        .file("f2d/inside", 0o644, b"inside")
        .file("d2f", 0o600, b"now a file")
        .file("s2f", 0o644, b"symlink became file")
        .hardlink("linked", "orig")
        .file("a/keep", 0o600, b"replaced");
    let mut l2 = Layer::new();
    l2.mtime += 200;
    l2.dir("a/sub", 0o700)
        .file("a/sub/y", 0o644, b"y back")
        .whiteout("f2d");
    vec![l0.finish(), l1.finish(), l2.finish()]
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for loop mounts: run scripts/test.sh"
)]
fn large_directory_gets_an_htree_e2fsck_accepts() {
    let mut l = Layer::new();
    l.dir("many", 0o755);
    for i in 0..20_000 {
        l.file(&format!("many/file-{i:06}"), 0o644, b"");
    }
    common::check_against_umoci(&[l.finish()], &opts(), true);
}
