#!/usr/bin/env bash
# Benchmark: file I/O inside a container on its own ext4 rootfs (qcow2 overlay), on a named volume
# (raw ext4 image, virtio-blk), on a bind mount (virtiofs, virtiofsd on the host) and, for
# reference, on the host directly. Per target: sequential write of SIZE_MB MiB with fsync, then
# creating FILES small files (one `echo` each) and a sync. Times come from /proc/uptime (10 ms
# resolution), median of RUNS runs, one VM per run. SIZE_MB stays small because an image's rootfs
# has only ~32 MiB of free space (the ext4 builder's headroom).
#
# Usage: bench/volumes.sh [RUNS]   (root; scripts/setup.sh done: kernel .deb, static vminitd,
# virtiofsd). Env: SIZE_MB=24 FILES=1000 CONTAINER_BIN (default target/release/container)
# CONTAINER_VMINITD, ACCEL (tcg|kvm, default: the runtime's choice).
set -euo pipefail

RUNS=${1:-3}
SIZE_MB=${SIZE_MB:-24}
FILES=${FILES:-1000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/volumes-bench}
ROOT=$WORK/root
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin" "$WORK/share" "$WORK/host"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
C() { "$BIN" --root "$ROOT" "$@"; }
ACCEL_ARGS=()
[ -n "${ACCEL:-}" ] && ACCEL_ARGS=(--accel "$ACCEL")

cp /bin/busybox "$WORK/bb/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/bench:1 >/dev/null
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
C system kernel set --deb "$deb" >/dev/null
C volume create benchvol --size 1G >/dev/null

# One target: prints "SEQ_SECONDS SMALL_SECONDS".
SCRIPT='
t() { cut -d" " -f1 /proc/uptime; }
d=$1; mkdir -p $d
s=$(t); dd if=/dev/zero of=$d/seq bs=1M count='"$SIZE_MB"' conv=fsync 2>/dev/null || exit 1; m=$(t)
i=0; while [ $i -lt '"$FILES"' ]; do echo x > $d/f$i || exit 1; i=$((i+1)); done; sync; e=$(t)
rm -rf $d/seq $d/f*
echo "$s $m $e" | awk "{printf \"%.2f %.2f\n\", \$2-\$1, \$3-\$2}"
'
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A seq small
for target in rootfs volume bind host; do
    seqs=(); smalls=()
    for _ in $(seq "$RUNS"); do
        case $target in
            rootfs) out=$(C run --rm --network none -u 0 -e PATH=/bin "${ACCEL_ARGS[@]}" localhost/bench:1 /bin/sh -c "$SCRIPT" x /bench) ;;
            volume) out=$(C run --rm --network none -u 0 -e PATH=/bin "${ACCEL_ARGS[@]}" -v benchvol:/bench localhost/bench:1 /bin/sh -c "$SCRIPT" x /bench) ;;
            bind) out=$(C run --rm --network none -u 0 -e PATH=/bin "${ACCEL_ARGS[@]}" -v "$WORK/share:/bench" localhost/bench:1 /bin/sh -c "$SCRIPT" x /bench) ;;
            host) out=$(/bin/busybox sh -c "$SCRIPT" x "$WORK/host/bench") ;;
        esac
        seqs+=("${out% *}"); smalls+=("${out#* }")
    done
    seq[$target]=$(printf '%s\n' "${seqs[@]}" | median)
    small[$target]=$(printf '%s\n' "${smalls[@]}" | median)
done

printf '%-8s %14s %12s %18s\n' TARGET "WRITE ${SIZE_MB}MiB" MiB/s "${FILES} SMALL FILES"
for target in rootfs volume bind host; do
    s=${seq[$target]}
    rate=$(awk -v s="$s" -v m="$SIZE_MB" 'BEGIN { if (s > 0) printf "%.0f", m / s; else print "-" }')
    printf '%-8s %13ss %12s %17ss\n' "$target" "$s" "$rate" "${small[$target]}"
done
C volume rm benchvol >/dev/null
