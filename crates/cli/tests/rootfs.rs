//! `container rootfs create` end to end: the real binary, real layer tarballs made by `tar`,
//! the image checked by `e2fsck -fn` and read back by `debugfs`.

#[allow(unused_imports)] // the registry support is not needed here
mod common;

use std::path::Path;
use std::process::Command;

fn container() -> Command {
    Command::new(env!("CARGO_BIN_EXE_container"))
}

fn tar_layer(src: &Path, out: &Path, extra: &[&str]) {
    let st = Command::new("tar")
        .args(extra)
        .arg("-C")
        .arg(src)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(st.success());
}

#[track_caller]
fn e2fsck_ok(image: &Path) {
    common::run(Command::new("e2fsck").arg("-fn").arg(image));
}

#[test]
fn create_from_two_layers_with_size_and_journal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(a.join("etc")).expect("mkdir");
    std::fs::write(a.join("etc/os-release"), "ID=test\n").expect("write");
    std::fs::write(a.join("etc/remove-me"), "x").expect("write");
    std::fs::create_dir_all(b.join("etc")).expect("mkdir");
    std::fs::write(b.join("etc/.wh.remove-me"), "").expect("write");
    std::fs::write(b.join("hello"), "from layer two\n").expect("write");
    tar_layer(&a, &tmp.path().join("a.tar.gz"), &["-z"]);
    tar_layer(&b, &tmp.path().join("b.tar"), &[]);
    let image = tmp.path().join("rootfs.ext4");
    let out = container()
        .args(["rootfs", "create", "--layer"])
        .arg(tmp.path().join("a.tar.gz"))
        .arg("--layer")
        .arg(tmp.path().join("b.tar"))
        .args(["--size", "64M", "--journal", "--format", "json"])
        .arg(&image)
        .output()
        .expect("run container");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(v["size_bytes"], 64 << 20);
    e2fsck_ok(&image);
    let ls = Command::new("debugfs")
        .args(["-R", "ls -p /etc"])
        .arg(&image)
        .output()
        .expect("debugfs");
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(text.contains("os-release"), "{text}");
    assert!(!text.contains("remove-me"), "{text}");
    let cat = Command::new("debugfs")
        .args(["-R", "cat /hello"])
        .arg(&image)
        .output()
        .expect("debugfs");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "from layer two\n");
}

#[test]
fn missing_layer_is_a_runtime_fault_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = container()
        .args(["rootfs", "create", "--layer", "/nonexistent/layer.tar"])
        .arg(tmp.path().join("out.ext4"))
        .output()
        .expect("run container");
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/layer.tar"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!tmp.path().join("out.ext4").exists());
}

#[test]
fn bad_size_is_rejected_by_the_parser() {
    let out = container()
        .args([
            "rootfs", "create", "--layer", "x.tar", "--size", "12Q", "out",
        ])
        .output()
        .expect("run container");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("12Q"));
}

/// `--image` builds from the layers of an image in the content store (loaded here from an OCI
/// archive, no registry): whiteouts and opaque dirs of the upper layers are applied, e2fsck is
/// clean, and a reference that is not in the store is one error line naming it.
#[test]
fn create_from_an_image_in_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = common::images::busybox(&tmp.path().join("layout"));
    let archive = tmp.path().join("busybox.tar");
    common::images::to_oci_archive(&image, &archive, "localhost/busybox:1");
    let cli = common::Cli::new();
    cli.run(&["image", "load", "-i", &archive.to_string_lossy()])
        .success();
    let out = tmp.path().join("busybox.ext4");
    let v = cli
        .run(&[
            "rootfs",
            "create",
            "--image",
            "localhost/busybox:1",
            "--size",
            "32M",
            "--journal",
            "--format",
            "json",
            &out.to_string_lossy(),
        ])
        .success()
        .json();
    assert_eq!(v["size_bytes"], 32 << 20);
    e2fsck_ok(&out);
    let debugfs = |req: &str| {
        let o = Command::new("debugfs")
            .args(["-R", req])
            .arg(&out)
            .output()
            .expect("debugfs");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(debugfs("cat /data/a.txt"), "hello from layer 2\n");
    assert_eq!(debugfs("cat /old/z"), "z\n");
    let old = debugfs("ls -p /old");
    assert!(!old.contains("/x/"), "opaque dir kept a lower file: {old}");
    let etc = debugfs("ls -p /etc");
    assert!(etc.contains("passwd") && !etc.contains("motd"), "{etc}");

    let missing = tmp.path().join("missing.ext4");
    cli.run(&[
        "rootfs",
        "create",
        "--image",
        "localhost/notpulled:9",
        &missing.to_string_lossy(),
    ])
    .fails_with("localhost/notpulled:9");
    assert!(!missing.exists());
}
