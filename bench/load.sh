#!/usr/bin/env bash
# Load: P `run --rm` in parallel (all must succeed), then S sequential run/rm cycles, with the
# default network (a bridge, a tap, an address and nft rules per container) in the script's own
# network namespace. Before and after, the host's state that a leak would grow is taken and
# compared; the script fails if anything differs:
#   - processes of the state root (monitors, QEMU, virtiofsd),
#   - network links, addresses and nft rules in the namespace, the network store's files,
#   - mounts under the state root, socket directories, container records,
#   - bytes on disk under the state root (containers, rootfs cache; the kernel and images are
#     there before),
#   - open file descriptors of the script's own shell (the only long-lived process: there is
#     no daemon).
# Prints the parallel phase's wall time and failures, the sequential phase's median and
# slowest cycle, and the comparison.
#
# Usage: bench/load.sh [PARALLEL] [SEQUENTIAL]   (defaults 50 and 500; root; scripts/setup.sh done)
set -euo pipefail

P=${1:-50}
S=${2:-500}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/load-bench}
ROOT=$WORK/root
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
C() { "$BIN" --root "$ROOT" "$@"; }
NS=loadbench$$
ip netns add "$NS"
trap 'for c in $(C ls -a -q 2>/dev/null); do C rm -f "$c" >/dev/null 2>&1 || true; done; ip netns del "$NS"' EXIT
CN() { ip netns exec "$NS" "$BIN" --root "$ROOT" "$@"; }

cp /bin/busybox "$WORK/bb/bin/"
for a in sh true; do ln -s busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/load:1 >/dev/null
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
C system kernel set --deb "$deb" >/dev/null
# Warm-up: the rootfs cache, the init filesystem, the VM template, the default network.
CN run --rm localhost/load:1 true >/dev/null

state() {
    echo "processes $(pgrep -f -- "$ROOT" | grep -vc "^$$\$" || true)"
    echo "links $(ip -n "$NS" -o link | wc -l)"
    echo "addresses $(ip -n "$NS" -o addr | wc -l)"
    echo "nft-rules $(ip netns exec "$NS" nft list ruleset 2>/dev/null | grep -c '^\s*\(ip\|tcp\|udp\|meta\|iifname\|oifname\|ct\|counter\|dnat\|masquerade\|accept\|drop\)' || true)"
    # Leases and network records: any byte left behind changes the digest.
    echo "network-store $(find "$ROOT/networks" -type f 2>/dev/null | sort | xargs -r cat | md5sum | cut -c1-12)"
    echo "mounts $(grep -c -- "$ROOT" /proc/self/mountinfo || true)"
    echo "records $(C ls -a -q | wc -l)"
    echo "socket-dirs $(ls -d /run/container-*/* 2>/dev/null | wc -l)"
    echo "disk-kib $(du -sk "$ROOT/containers" | cut -f1)"
    echo "shell-fds $(ls /proc/$$/fd | wc -l)"
}
state >"$WORK/before"

t0=$(date +%s.%N)
for i in $(seq "$P"); do
    (CN run --rm localhost/load:1 true >"$WORK/p$i.out" 2>&1; echo $? >"$WORK/p$i.rc") &
done
wait
t1=$(date +%s.%N)
failed=0
for i in $(seq "$P"); do
    if [ "$(cat "$WORK/p$i.rc")" != 0 ]; then
        failed=$((failed + 1))
        echo "parallel run $i failed: $(tail -1 "$WORK/p$i.out")" >&2
    fi
done
echo "parallel: $P x run --rm true in $(python3 -c "print(round($t1 - $t0, 1))") s, $failed failed"

times=()
for i in $(seq "$S"); do
    a=$(date +%s%N)
    CN run --rm localhost/load:1 true >/dev/null || { echo "sequential run $i failed" >&2; failed=$((failed + 1)); }
    times+=($(( ($(date +%s%N) - a) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "sequential: $S x run --rm true, median $(echo "$sorted" | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}') ms, slowest $(echo "$sorted" | tail -1) ms"

# The last VMs' teardown is over when their records are gone.
for _ in $(seq 100); do [ "$(C ls -a -q | wc -l)" = 0 ] && break; sleep 0.1; done
state >"$WORK/after"
if diff "$WORK/before" "$WORK/after" >"$WORK/diff"; then
    echo "host state before and after: identical ($(tr '\n' ' ' <"$WORK/after"))"
else
    echo "host state changed:"; cat "$WORK/diff"; failed=$((failed + 1))
fi
[ "$failed" = 0 ]
