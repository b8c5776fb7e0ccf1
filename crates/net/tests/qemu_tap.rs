//! The tap made by `attach` is usable by QEMU exactly as the runtime starts it
//! (`-netdev tap,ifname=…,script=no,downscript=no -device virtio-net-device,…,mac=…`): QEMU
//! opens it, the tap gains carrier while QEMU holds it, and `detach` removes it afterwards.
//! Runs in a namespace of its own; QEMU is started paused (`-S`), so no guest runs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::{NetworkSpec, Networks};
use testkit::Netns;

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces and QEMU: run scripts/test.sh"
)]
fn qemu_attaches_to_the_tap() {
    let host = Netns::new("qemu");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let attachment = host.run(|| {
        let nets = Networks::open(&path).unwrap();
        let spec = NetworkSpec {
            name: "vm".into(),
            subnet: Some("10.216.0.0/24".parse().unwrap()),
            ..Default::default()
        };
        nets.create(&spec).unwrap();
        nets.attach("vm1", None, "vm").unwrap()
    });
    let link = host.ip(&["link", "show", &attachment.tap]);
    assert!(link.contains("NO-CARRIER"), "no reader yet: {link}");

    let netdev = format!(
        "tap,id=n0,ifname={},script=no,downscript=no",
        attachment.tap
    );
    let device = format!("virtio-net-device,netdev=n0,mac={}", attachment.mac);
    let mut qemu = host.run(|| {
        Command::new("qemu-system-x86_64")
            .args([
                "-M",
                "microvm",
                "-accel",
                "tcg",
                "-nodefaults",
                "-display",
                "none",
                "-S",
            ])
            .args(["-netdev", &netdev, "-device", &device])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    });
    // Wait until QEMU holds the tap (carrier up) or exits with an error.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut carrier = false;
    while Instant::now() < deadline {
        if let Some(status) = qemu.try_wait().unwrap() {
            let out = qemu.wait_with_output().unwrap();
            panic!(
                "qemu exited {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let link = host.ip(&["link", "show", &attachment.tap]);
        if !link.contains("NO-CARRIER") && link.contains("LOWER_UP") {
            carrier = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(carrier, "QEMU never attached to {}", attachment.tap);

    host.run(|| {
        let nets = Networks::open(&path).unwrap();
        nets.release("vm1").unwrap();
        nets.delete("vm").unwrap();
    });
    assert!(!host
        .links()
        .iter()
        .any(|l| l.starts_with("ctap") || l.starts_with("cbr")));
}
