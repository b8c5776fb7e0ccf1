//! `container system status|df|cleanup` through the real binary with a fresh `--root`: the
//! status of a host before and after a kernel is set, disk usage by kind, and the repair of a
//! record whose monitor died (a crash simulated by editing state.json the way a killed monitor
//! leaves it).

#[allow(unused_imports)] // the registry support is not needed here
mod common;

use std::path::PathBuf;

use common::kernel_deb;
use common::{images, Cli};

fn status(cli: &Cli) -> serde_json::Value {
    let mut c = cli.command(&["system", "status", "--format", "json"]);
    // A static ELF stands in for vminitd: status must report the path it would use.
    c.env("CONTAINER_VMINITD", "/bin/busybox");
    let out = c.output().expect("run container");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[test]
fn status_before_and_after_a_kernel_is_set() {
    let cli = Cli::new();
    let before = status(&cli);
    assert_eq!(before["kernel"]["configured"], false);
    assert_eq!(before["ready"], false, "{before}");
    assert_eq!(before["stateDir"], cli.root().to_str().unwrap());
    assert_eq!(before["vminitd"]["path"], "/bin/busybox");
    assert!(
        before["qemu"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("QEMU emulator version")),
        "{before}"
    );
    assert_eq!(before["containers"]["total"], 0);

    cli.run(&[
        "system",
        "kernel",
        "set",
        "--deb",
        kernel_deb().to_str().unwrap(),
    ])
    .success();
    let after = status(&cli);
    assert_eq!(after["kernel"]["configured"], true);
    assert!(
        after["kernel"]["release"]
            .as_str()
            .is_some_and(|r| r.starts_with("6.")),
        "{after}"
    );
    let accel = after["accelerator"]["name"].as_str().unwrap_or("none");
    assert!(accel == "kvm" || accel == "tcg", "{after}");
    assert_eq!(after["ready"], true, "{after}");
    let table = cli.run(&["system", "status"]).success().stdout;
    assert!(
        table.contains("qemu:") && table.contains("QEMU emulator"),
        "{table}"
    );

    let df = cli
        .run(&["system", "df", "--format", "json"])
        .success()
        .json();
    let kernels = df
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "kernels")
        .cloned()
        .expect("kernels row");
    assert_eq!(kernels["count"], 1);
    // The vmlinux alone is several MiB.
    assert!(kernels["bytes"].as_u64().unwrap() > 4 << 20, "{df}");
}

fn row(df: &serde_json::Value, kind: &str) -> (u64, u64) {
    let r = df
        .as_array()
        .expect("df prints an array")
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} row: {df}"));
    (r["count"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
}

fn state_of(cli: &Cli, id: &str) -> (PathBuf, serde_json::Value) {
    let path = cli.root().join("containers").join(id).join("state.json");
    let v = serde_json::from_slice(&std::fs::read(&path).expect("state.json")).expect("json");
    (path, v)
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for nf_tables: run scripts/test.sh"
)]
fn df_counts_and_cleanup_repairs_a_dead_monitor() {
    let tmp = tempfile::tempdir().unwrap();
    let image = images::busybox(&tmp.path().join("layout"));
    let archive = tmp.path().join("busybox.tar");
    images::to_oci_archive(&image, &archive, "localhost/busybox:1");
    let cli = Cli::new();
    let empty = cli
        .run(&["system", "df", "--format", "json"])
        .success()
        .json();
    assert_eq!(row(&empty, "images").0, 0);
    assert_eq!(row(&empty, "rootfs cache"), (0, 0));

    cli.run(&["image", "load", "-i", &archive.to_string_lossy()])
        .success();
    let a = cli
        .run(&["create", "--name", "a", "localhost/busybox:1"])
        .success()
        .stdout
        .trim()
        .to_string();
    let b = cli
        .run(&["create", "--name", "b", "localhost/busybox:1"])
        .success()
        .stdout
        .trim()
        .to_string();
    let df = cli
        .run(&["system", "df", "--format", "json"])
        .success()
        .json();
    assert_eq!(row(&df, "images").0, 1);
    assert!(row(&df, "images").1 > row(&empty, "images").1, "{df}");
    let (n, bytes) = row(&df, "rootfs cache");
    assert_eq!(n, 1, "{df}");
    assert!(bytes > 1 << 20, "the busybox rootfs holds > 1 MiB: {df}");
    assert_eq!(row(&df, "containers").0, 2);
    assert_eq!(status(&cli)["containers"]["created"], 2);

    // `a`: the record says running under a monitor pid that is dead (a reaped `true`), and its
    // monitor socket is left; `b` never ran but has a stale agent socket.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let (path, mut v) = state_of(&cli, &a);
    v["status"] = "running".into();
    v["monitorPid"] = dead.into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let a_sock = cli.root().join("containers").join(&a).join("monitor.sock");
    std::fs::write(&a_sock, "").unwrap();
    let b_sock = cli.root().join("containers").join(&b).join("agent.sock");
    std::fs::write(&b_sock, "").unwrap();

    let report = cli
        .run(&["system", "cleanup", "--format", "json"])
        .success()
        .json();
    assert_eq!(report["repaired"], serde_json::json!([a]), "{report}");
    assert_eq!(report["socketsRemoved"], serde_json::json!([b]), "{report}");
    let (_, v) = state_of(&cli, &a);
    assert_eq!(v["status"], "exited");
    assert_eq!(v["exitCode"], 125);
    assert_eq!(v["exitReason"], "monitor process died");
    assert!(v["monitorPid"].is_null());
    assert!(!a_sock.exists() && !b_sock.exists());
    assert_eq!(state_of(&cli, &b).1["status"], "created");

    let again = cli.run(&["system", "cleanup"]).success().stdout;
    assert_eq!(again.trim(), "nothing to clean up");
}
