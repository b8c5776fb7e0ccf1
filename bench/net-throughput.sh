#!/usr/bin/env bash
# TCP throughput into, out of and between containers over our network datapath, against the
# same transfer between two network namespaces joined by a veth pair.
#
#   host → ctr:  host netns ─ bridge (default network) ─ tap ─ QEMU virtio-net ─ container `rx`
#   ctr → host:  the same path the other way (iperf3 -R: the container sends)
#   ctr → ctr:   container `tx` ─ tap ─ bridge ─ tap ─ container `rx` (same network)
#   veth:        host netns ─ veth ─ peer netns (the baseline of all three)
#
# The tool is iperf3 (Debian's, copied with its libraries into a busybox image): `iperf3 -s` in
# `rx` and in the peer namespace, `iperf3 -c IP -t SECS -J` from the host namespace or from
# `tx`; the figure is the receiver's rate (end.sum_received), checked to be at least 80% of
# what the sender wrote (the rest is still in flight when the sender stops; a stalled
# transfer fails this). Not busybox nc: it copies 1 KiB per poll round, which under TCG measures the
# tool (and with stdin at EOF, as in a detached container, it half-closes at once, so a busybox
# nc sender talking to it stops after a few KB). The four transfers alternate, RUNS times
# each; medians in MiB/s and each container path's ratio to veth are printed.
#
# Everything runs inside two network namespaces this script creates; the containers are
# force-deleted and the namespaces removed on exit. Run as root from the repository:
#   bench/net-throughput.sh [--accel tcg|kvm]   (env: SECS=5 RUNS=3 CONTAINER_BIN=…
#                                                CONTAINER_VMINITD=… KERNEL_DEB=…)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/registry.sh

ACCEL=()
[[ "${1:-}" == "--accel" ]] && ACCEL=(--accel "$2")
SECS=${SECS:-5}
RUNS=${RUNS:-3}
command -v iperf3 >/dev/null || { echo "iperf3 is missing: apt-get install iperf3" >&2; exit 1; }
KERNEL_DEB=${KERNEL_DEB:-$(ls .work/kernel/linux-image-*-cloud-amd64_*.deb 2>/dev/null | head -1 || true)}
[[ -f "$KERNEL_DEB" ]] || KERNEL_DEB=$(ls /work/main/.work/kernel/linux-image-*.deb | head -1)
if [[ -z "${CONTAINER_BIN:-}" ]]; then
    # The CLI and monitor only set up the path; the bytes go through the kernels and QEMU.
    cargo build -q -p cli
    CONTAINER_BIN=$PWD/target/debug/container
fi
if [[ -z "${CONTAINER_VMINITD:-}" && -x target/x86_64-unknown-linux-gnu/release/vminitd ]]; then
    export CONTAINER_VMINITD=$PWD/target/x86_64-unknown-linux-gnu/release/vminitd
fi

W=$(mktemp -d)
NS=ctrbench-$$
PEER=ctrbench-peer-$$
C() { ip netns exec "$NS" "$CONTAINER_BIN" --root "$W/state" "$@"; }
cleanup() {
    C delete -f rx tx >/dev/null 2>&1 || true
    ip netns pids "$PEER" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$PEER" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$PEER"
ip -n "$NS" link set lo up

# The image: busybox-static with its applets, plus iperf3 and the libraries it loads.
busybox_rootfs_tar "$W/rootfs.tar"
mkdir "$W/rootfs"
tar -C "$W/rootfs" -xf "$W/rootfs.tar"
for f in "$(command -v iperf3)" $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    mkdir -p "$W/rootfs$(dirname "$f")"
    cp -L "$f" "$W/rootfs$f"
done
tar -C "$W/rootfs" --numeric-owner -cf "$W/rootfs.tar" .
C image import "$W/rootfs.tar" localhost/netbench:1 >/dev/null
C system kernel set --deb "$KERNEL_DEB" >/dev/null

C run -d --name rx "${ACCEL[@]}" localhost/netbench:1 iperf3 -s >/dev/null
C run -d --name tx "${ACCEL[@]}" localhost/netbench:1 sleep 100000 >/dev/null
RX_IP=$(C inspect rx | jq -r '.[0].networks[0].address' | cut -d/ -f1)
USED=$(C inspect rx | jq -r '.[0].config.vm.accel // empty')
[[ -n "$USED" ]] || USED=$(C system status --format json | jq -r '.accelerator.name')

# The veth baseline: an iperf3 server in the peer namespace.
ip -n "$NS" link add vbench type veth peer name vbenchp
ip -n "$NS" link set vbenchp netns "$PEER"
ip -n "$NS" addr add 10.231.0.1/24 dev vbench
ip -n "$NS" link set vbench up
ip -n "$PEER" addr add 10.231.0.2/24 dev vbenchp
ip -n "$PEER" link set vbenchp up
ip -n "$PEER" link set lo up
ip netns exec "$PEER" iperf3 -s >/dev/null 2>&1 &

# Reads iperf3 -J output on stdin; prints the receiver's MiB/s after checking its byte count.
rate() {
    local json
    json=$(cat)
    jq -e '.end.sum_received.bytes >= 0.8 * .end.sum_sent.bytes and .end.sum_received.bytes > 0' \
        <<<"$json" >/dev/null 2>&1 ||
        { echo "$1: short or failed transfer: $(jq -c '.error // .end' <<<"$json" 2>/dev/null || echo "$json")" >&2; exit 1; }
    jq -r '.end.sum_received.bits_per_second / 8 / 1048576 * 10 | round / 10' <<<"$json"
}
# One iperf3 client run: $1 label, then the command (servers may still be starting: retried).
client() {
    local label=$1 out
    shift
    for _ in $(seq 50); do
        out=$("$@" -t "$SECS" -J 2>/dev/null) && break
        grep -q 'unable to connect\|busy' <<<"$out" || break
        sleep 0.2
    done
    rate "$label" <<<"$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk '{a[NR]=$1} END {printf "%s-%s", a[1], a[NR]}'; }

for run in $(seq "$RUNS"); do
    client "host → ctr" ip netns exec "$NS" iperf3 -c "$RX_IP" >>"$W/host_ctr"
    client "ctr → host" ip netns exec "$NS" iperf3 -R -c "$RX_IP" >>"$W/ctr_host"
    client "ctr → ctr" C exec tx iperf3 -c "$RX_IP" >>"$W/ctr_ctr"
    client "veth" ip netns exec "$NS" iperf3 -c 10.231.0.2 >>"$W/veth"
    echo "run $run: host→ctr $(tail -1 "$W/host_ctr")  ctr→host $(tail -1 "$W/ctr_host")  ctr→ctr $(tail -1 "$W/ctr_ctr")  veth $(tail -1 "$W/veth") MiB/s" >&2
done

VETH=$(median <"$W/veth")
echo "accelerator: $USED   (iperf3, $SECS s per transfer, medians of $RUNS runs, (min-max))"
for pair in "host -> container:host_ctr" "container -> host:ctr_host" "container -> container:ctr_ctr"; do
    m=$(median <"$W/${pair#*:}")
    awk -v l="${pair%:*}" -v a="$m" -v b="$VETH" -v r="$(spread <"$W/${pair#*:}")" \
        'BEGIN {printf "TCP %-24s %8.1f MiB/s (%s)   ratio to veth %.3f\n", l, a, r, a / b}'
done
printf 'TCP %-24s %8.1f MiB/s (%s)\n' "netns -> netns (veth)" "$VETH" "$(spread <"$W/veth")"
