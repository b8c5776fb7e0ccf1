//! `container system kernel set|show`, driven through the real binary with a fresh `--root`.

mod common;

use common::kernel_deb;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn container(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_container"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn set_from_deb_then_show() {
    let root = tempfile::tempdir().unwrap();
    let deb = kernel_deb();
    let o = container(
        root.path(),
        &["system", "kernel", "set", "--deb", deb.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cloud-amd64"));

    let o = container(
        root.path(),
        &["system", "kernel", "show", "--format", "json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source"]["type"], "deb");
    assert!(v["release"].as_str().unwrap().ends_with("-cloud-amd64"));
    let vmlinux = PathBuf::from(v["vmlinux"].as_str().unwrap());
    assert!(vmlinux.starts_with(root.path()));
    assert_eq!(&std::fs::read(&vmlinux).unwrap()[..4], b"\x7fELF");
    let modules = PathBuf::from(v["modulesDir"].as_str().unwrap());
    assert!(modules.join("kernel/drivers/block/virtio_blk.ko").is_file());

    // --binary with the unpacked ELF and the modules directory replaces it.
    let o = container(
        root.path(),
        &[
            "system",
            "kernel",
            "set",
            "--binary",
            vmlinux.to_str().unwrap(),
            "--modules",
            modules.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = container(root.path(), &["system", "kernel", "show"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.contains("SOURCE:   binary"), "{table}");
    assert!(
        table.contains(&format!("MODULES:  {}", modules.display())),
        "{table}"
    );
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let junk = root.path().join("junk");
    std::fs::write(&junk, "not a kernel").unwrap();

    let o = container(
        root.path(),
        &[
            "system",
            "kernel",
            "set",
            "--binary",
            junk.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("not a Linux kernel image") && e.contains("junk"),
        "{e}"
    );

    let o = container(
        root.path(),
        &["system", "kernel", "set", "--deb", junk.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("not a Debian package"),
        "{}",
        stderr(&o)
    );

    let o = container(
        root.path(),
        &["system", "kernel", "set", "--deb", "/nonexistent.deb"],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("/nonexistent.deb"), "{}", stderr(&o));

    // Nothing was set by the failures: show falls back to the host kernel, or says how to set one.
    let o = container(root.path(), &["system", "kernel", "show"]);
    if !o.status.success() {
        assert_eq!(o.status.code(), Some(125));
        assert!(
            stderr(&o).contains("container system kernel set"),
            "{}",
            stderr(&o)
        );
    }
}
