//! Real VMs on our network, end to end: QEMU microvm (TCG) with the Debian cloud kernel and a
//! busybox initramfs standing in for vminitd (it configures eth0 from the attachment exactly
//! as vminitd is asked to: address/prefix, default route via the gateway, MTU). Checked: the
//! guest's MAC is ours, the host reaches the guest's httpd by IP and through a published port
//! on 127.0.0.1, each guest reaches an "upstream" namespace through our NAT (seen masqueraded),
//! resolves names through the DNS responder on the gateway, and reaches the other VM by name. Everything runs in
//! namespaces this test creates.
//!
//! Needs the guest kernel package that scripts/setup.sh downloads to `.work/kernel/` (or
//! `CONTAINER_TEST_KERNEL_DEB`); fails, not skips, without it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use net::{Attachment, ContainerNetwork, NetworkMode, NetworkSpec, Networks};
use testkit::guest::{self, Guest, Microvm};
use testkit::netns::{plug, Netns};

const MODULES: [&str; 6] = [
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Unpacks the kernel package and builds the initramfs; returns (kernel, initrd).
fn guest_files(dir: &Path) -> (PathBuf, PathBuf) {
    let kernel = guest::unpack_kernel(&dir.join("k"));
    let init = dir.join("init");
    for sub in ["bin", "proc", "sys", "dev", "mods", "www"] {
        std::fs::create_dir_all(init.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", init.join("bin/busybox")).unwrap();
    for m in MODULES {
        std::fs::copy(kernel.module(m), init.join(format!("mods/{m}.ko"))).unwrap();
    }
    let script = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do insmod /mods/$m.ko; done
for kv in $(cat /proc/cmdline); do case $kv in ctr_*=*) eval "${{kv%%=*}}='${{kv#*=}}'";; esac; done
ip link set lo up
ip link set eth0 mtu $ctr_mtu
ip addr add $ctr_addr dev eth0
ip link set eth0 up
ip route add default via $ctr_gw
echo hello-from-vm > /www/index.html
httpd -p 80 -h /www
echo "MAC $(cat /sys/class/net/eth0/address)"
echo "EGRESS [$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 10 $ctr_uphost $ctr_upport 2>&1 | tail -n 1)]"
echo "DNS [$(nslookup $ctr_name $ctr_gw 2>&1 | tr '\n' ' ')]"
# The other VM, by name through the gateway's DNS, then by the address it resolved to.
for i in $(seq 120); do
  ip=$(nslookup $ctr_peer $ctr_gw 2>/dev/null | awk '/^Address/ {{a=$NF}} END {{print a}}')
  out=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $ip 80 2>/dev/null | tail -n 1)
  [ "$out" = hello-from-vm ] && break
  sleep 0.5
done
echo "PEER [$ip $out]"
echo DONE
while true; do sleep 1000; done
"#,
        modules = MODULES.join(" ")
    );
    std::fs::write(init.join("init"), script).unwrap();
    testkit::tool("chmod", &["+x", init.join("init").to_str().unwrap()]);
    let initrd = dir.join("initrd");
    guest::cpio(&init, &initrd);
    (kernel.vmlinuz, initrd)
}

fn http_get(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// Boots one guest on `a`'s tap; its console goes to `serial`.
fn boot(
    host: &Netns,
    files: &(PathBuf, PathBuf),
    a: &Attachment,
    name: &str,
    peer: &str,
    serial: &Path,
) -> Guest {
    let append = guest::cmdline(&format!(
        "ctr_addr={} ctr_gw={} ctr_mtu={} ctr_uphost=10.252.0.2 ctr_upport=8000 ctr_name={name} \
         ctr_peer={peer}",
        a.address, a.gateway, a.mtu
    ));
    let netdev = format!("tap,id=n0,ifname={},script=no,downscript=no", a.tap);
    let device = format!("virtio-net-device,netdev=n0,mac={}", a.mac);
    let (kernel, initrd) = files;
    let vm = Microvm::new(kernel, initrd, &append, 256, serial)
        .args(["-netdev", &netdev, "-device", &device]);
    host.run(|| vm.spawn())
}

fn line<'a>(log: &'a str, prefix: &str) -> &'a str {
    log.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for network namespaces and QEMU: run scripts/test.sh"
)]
fn two_vms_addresses_egress_dns_peers_and_published_port() {
    let work = tempfile::tempdir().unwrap();
    let files = guest_files(work.path());
    let host = Netns::new("vmh");
    let upstream = Netns::new("vmu");
    let root = work.path().join("state");
    plug(&host, &upstream, "uplink", None, "10.252.0.2/24", None);
    host.ip(&["addr", "add", "10.252.0.1/24", "dev", "uplink"]);
    host.ip(&["route", "add", "default", "via", "10.252.0.2"]);

    // Upstream web server: answers with the address it saw.
    let listener = upstream.run(|| TcpListener::bind("10.252.0.2:8000").unwrap());
    std::thread::spawn(move || {
        while let Ok((mut s, peer)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.0 200 OK\r\n\r\nupstream-saw-{}", peer.ip());
        }
    });

    let runtime = host.run(|| tokio::runtime::Runtime::new().unwrap());
    let mode = NetworkMode::Networks(vec!["vmnet".into()]);
    let ports = vec!["127.0.0.1:18090:80".parse().unwrap()];
    let (web, client) = host.run(|| {
        let spec = NetworkSpec {
            name: "vmnet".into(),
            subnet: Some("10.220.0.0/24".parse().unwrap()),
            ..Default::default()
        };
        Networks::open(&root).unwrap().create(&spec).unwrap();
        let web = ContainerNetwork::prepare(
            &root,
            "vm1",
            Some("web"),
            &mode,
            &Default::default(),
            &ports,
        )
        .unwrap();
        let client = ContainerNetwork::prepare(
            &root,
            "vm2",
            Some("client"),
            &mode,
            &Default::default(),
            &[],
        )
        .unwrap();
        let _guard = runtime.enter();
        (web.start().unwrap(), client.start().unwrap())
    });
    let (a, b) = (
        web.attachments()[0].clone(),
        client.attachments()[0].clone(),
    );

    let (serial_a, serial_b) = (work.path().join("web.log"), work.path().join("client.log"));
    let mut qemu_a = boot(&host, &files, &a, "web", "client", &serial_a);
    let mut qemu_b = boot(&host, &files, &b, "client", "web", &serial_b);
    let log_a = qemu_a.wait_for("DONE", Duration::from_secs(180));
    let log_b = qemu_b.wait_for("DONE", Duration::from_secs(180));

    for (log, me, other) in [(&log_a, &a, &b), (&log_b, &b, &a)] {
        assert!(log.contains(&format!("MAC {}", me.mac)), "{log}");
        // Egress through our NAT: upstream sees the host's uplink address.
        assert_eq!(
            line(log, "EGRESS"),
            "EGRESS [upstream-saw-10.252.0.1]",
            "{log}"
        );
        // Its own name through the gateway's DNS responder.
        assert!(
            line(log, "DNS").contains(&me.address.addr().to_string()),
            "{log}"
        );
        // The other VM by name, then over the bridge by address.
        let peer = format!("PEER [{} hello-from-vm]", other.address.addr());
        assert_eq!(line(log, "PEER"), peer, "{log}");
    }

    // The host reaches the guest's httpd by its address and through the published port.
    let direct = format!("{}:80", a.address.addr());
    let body = host.run(move || http_get(&direct));
    assert!(body.ends_with("hello-from-vm\n"), "{body}");
    let body = host.run(|| http_get("127.0.0.1:18090"));
    assert!(body.ends_with("hello-from-vm\n"), "{body}");

    drop((qemu_a, qemu_b));
    host.run(|| {
        let _guard = runtime.enter();
        web.stop().unwrap();
        client.stop().unwrap();
        let nets = Networks::open(&root).unwrap();
        nets.release("vm1").unwrap();
        nets.release("vm2").unwrap();
        nets.delete("vmnet").unwrap();
    });
    drop(runtime);
    assert!(!host
        .links()
        .iter()
        .any(|l| l.starts_with("ctap") || l.starts_with("cbr")));
    assert!(!host.ruleset().contains("containerization"));
}
