#!/usr/bin/env bash
# TCP throughput into a VM over our network datapath vs into a namespace over a veth pair.
#
#   VM:   host netns ─ bridge (made by `container network create`) ─ tap ─ QEMU microvm
#         virtio-net ─ busybox `nc -l` in the guest
#   peer: host netns ─ veth ─ second netns ─ busybox `nc -l`
#
# The same sender (python, SIZE_MB MiB, timed from connect until the receiver closes) runs
# against both, RUNS times each; the medians and their ratio are printed. Everything happens
# inside network namespaces this script creates and deletes. Run as root from the repository:
#   bench/net-throughput.sh [--accel tcg|kvm]      (env: SIZE_MB=128 RUNS=3 KERNEL_DEB=…)
set -euo pipefail
cd "$(dirname "$0")/.."

ACCEL=tcg
[[ "${1:-}" == "--accel" ]] && ACCEL=$2
SIZE_MB=${SIZE_MB:-128}
RUNS=${RUNS:-3}
KERNEL_DEB=${KERNEL_DEB:-$(ls .work/kernel/linux-image-*-cloud-amd64_*.deb 2>/dev/null | head -1 || true)}
[[ -f "$KERNEL_DEB" ]] || KERNEL_DEB=$(ls /work/main/.work/kernel/linux-image-*.deb | head -1)
cargo build -q -p cli
BIN=$PWD/target/debug/container

W=$(mktemp -d)
NS=ctrbench-$$
PEER=ctrbench-peer-$$
QEMU_PID=
cleanup() {
    [[ -n "$QEMU_PID" ]] && kill "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
    ip netns pids "$PEER" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$PEER" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

# Guest: Debian cloud kernel + busybox initramfs with the virtio-net modules.
dpkg-deb -x "$KERNEL_DEB" "$W/k"
KERNEL=$(ls "$W"/k/boot/vmlinuz-*)
mkdir -p "$W"/init/{bin,proc,sys,dev,mods}
cp /bin/busybox "$W/init/bin/busybox"
MODS="virtio_ring virtio virtio_mmio failover net_failover virtio_net"
for m in $MODS; do cp "$(find "$W/k/lib/modules" -name "$m.ko")" "$W/init/mods/"; done
cat > "$W/init/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $MODS; do insmod /mods/\$m.ko; done
ip link set lo up
ip addr add 10.230.0.2/24 dev eth0
ip link set eth0 up
echo READY
while true; do nc -l -p 5001 > /dev/null; done
INIT
chmod +x "$W/init/init"
(cd "$W/init" && find . | cpio -o -H newc --quiet) > "$W/initrd"

# Host side: a namespace with our bridge, a tap on it, and a veth to the peer namespace.
ip netns add "$NS"
ip netns add "$PEER"
ip -n "$NS" link set lo up
ip netns exec "$NS" "$BIN" --root "$W/state" network create bench --subnet 10.230.0.0/24 >/dev/null
BRIDGE=$(ip netns exec "$NS" "$BIN" --root "$W/state" network inspect bench | sed -n 's/.*"bridge": "\(.*\)".*/\1/p')
ip -n "$NS" tuntap add dev benchtap mode tap
ip -n "$NS" link set benchtap master "$BRIDGE" up
ip -n "$NS" link add vbench type veth peer name vbenchp
ip -n "$NS" link set vbenchp netns "$PEER"
ip -n "$NS" addr add 10.231.0.1/24 dev vbench
ip -n "$NS" link set vbench up
ip -n "$PEER" addr add 10.231.0.2/24 dev vbenchp
ip -n "$PEER" link set vbenchp up
ip -n "$PEER" link set lo up
ip netns exec "$PEER" sh -c 'while true; do busybox nc -l -p 5001 > /dev/null; done' &

KHZ=$(awk -F: '/cpu MHz/ {printf "%d", $2*1000; exit}' /proc/cpuinfo)
ip netns exec "$NS" qemu-system-x86_64 -M microvm -accel "$ACCEL" -m 512 -smp 1 \
    -nodefaults -no-user-config -display none -serial "file:$W/serial.log" \
    -kernel "$KERNEL" -initrd "$W/initrd" \
    -append "console=ttyS0 panic=-1 pci=off i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable no_timer_check cryptomgr.notests quiet tsc_early_khz=$KHZ" \
    -netdev tap,id=n0,ifname=benchtap,script=no,downscript=no \
    -device virtio-net-device,netdev=n0 2>"$W/qemu.err" &
QEMU_PID=$!
for _ in $(seq 600); do grep -q READY "$W/serial.log" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$W/serial.log" || { echo "guest did not come up:" >&2; cat "$W/serial.log" "$W/qemu.err" >&2; exit 1; }

# One timed transfer; prints MiB/s.
send() {
    ip netns exec "$NS" python3 - "$1" "$SIZE_MB" <<'PY'
import socket, sys, time
host, mib = sys.argv[1], int(sys.argv[2])
chunk = b"\0" * (1 << 20)
for attempt in range(100):
    try:
        s = socket.create_connection((host, 5001), timeout=5); break
    except OSError:
        time.sleep(0.1)
s.settimeout(600)
start = time.monotonic()
for _ in range(mib):
    s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
print(f"{mib / (time.monotonic() - start):.1f}")
PY
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

VM=$(for _ in $(seq "$RUNS"); do send 10.230.0.2; done | median)
VETH=$(for _ in $(seq "$RUNS"); do send 10.231.0.2; done | median)
echo "TCP host -> VM (bridge+tap+virtio-net, $ACCEL): $VM MiB/s"
echo "TCP host -> netns (veth):                     $VETH MiB/s"
awk -v a="$VM" -v b="$VETH" 'BEGIN {printf "ratio VM/veth: %.3f  (%d MiB x %d runs, medians)\n", a/b, '"$SIZE_MB"', '"$RUNS"'}'
