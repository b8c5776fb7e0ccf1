//! `scripts/package-deb.sh`: the Debian package holds the CLI, the shim, the static vminitd
//! where the CLI finds it, completions, man pages and the systemd units; unpacked, its
//! `container` finds its vminitd without any environment.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The containerd shim of this build, built if this test runs alone.
fn shim_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_container")).parent().unwrap();
    let shim = dir.join("containerd-shim-container-v2");
    if !shim.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "shim"])
            .status()
            .unwrap();
        assert!(status.success(), "building the shim failed");
    }
    shim
}

#[test]
fn the_debian_package_installs_a_working_cli() {
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/package-deb.sh");
    let built = Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .env("CONTAINER_BIN", env!("CARGO_BIN_EXE_container"))
        .env("SHIM_BIN", shim_binary())
        .env("VMINITD_BIN", testkit::static_vminitd())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert!(deb.exists(), "{deb:?}");
    assert!(deb
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("_amd64.deb"));

    let info = Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: container"), "{info}");
    assert!(info.contains("Depends: qemu-system-x86"), "{info}");

    let contents = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let contents = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/container",
        "./usr/bin/containerd-shim-container-v2",
        "./usr/libexec/container/vminitd",
        "./usr/share/bash-completion/completions/container",
        "./usr/share/zsh/vendor-completions/_container",
        "./usr/share/fish/vendor_completions.d/container.fish",
        "./usr/share/man/man1/container-run.1.gz",
        "./usr/share/man/man1/container-pod-create.1.gz",
        "./lib/systemd/system/container-docker.socket",
        "./lib/systemd/system/container-docker.service",
        "./lib/systemd/system/container-restart.service",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }
    // Files are root's, whoever built the package.
    assert!(
        !contents.lines().any(|l| !l.contains("root/root")),
        "{contents}"
    );

    // Unpacked, the CLI finds its vminitd in /usr/libexec/container with no CONTAINER_VMINITD.
    let root = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .status()
        .unwrap();
    assert!(x.success());
    let status = Command::new(root.path().join("usr/bin/container"))
        .args(["--root", root.path().join("state").to_str().unwrap()])
        .args(["system", "status"])
        .env_remove("CONTAINER_VMINITD")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("vminitd:"))
        .unwrap_or_default();
    assert!(line.contains("/usr/libexec/container/vminitd"), "{text}");
}
