#!/usr/bin/env bash
# Benchmark: file I/O inside a container on its own ext4 rootfs (qcow2 overlay), on a named volume
# (raw ext4 image, virtio-blk), on a bind mount (virtiofs, virtiofsd on the host) and, for
# reference, on the host directly. Per target: sequential write of SIZE_MB MiB with fsync, the
# same read back with cold caches, creating FILES small files (one `echo` each) and a sync, then
# reading them all back with cold caches. "Cold" is the guest's page cache dropped (the
# containers run --privileged for /proc/sys/vm/drop_caches; for the host target the host's). Times
# come from /proc/uptime (10 ms resolution), median of RUNS runs, one VM per run.
#
# Usage: bench/volumes.sh [RUNS]   (root; scripts/setup.sh done: kernel .deb, static vminitd,
# virtiofsd). Env: SIZE_MB=128 FILES=1000 CONTAINER_BIN (default target/release/container)
# CONTAINER_VMINITD, ACCEL (tcg|kvm, default: the runtime's choice).
set -euo pipefail

RUNS=${1:-3}
SIZE_MB=${SIZE_MB:-128}
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

# One target: prints "WRITE READ CREATE READ_SMALL" seconds.
SCRIPT='
t() { cut -d" " -f1 /proc/uptime; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
d=$1; mkdir -p $d
s=$(t); dd if=/dev/zero of=$d/seq bs=1M count='"$SIZE_MB"' conv=fsync 2>/dev/null || exit 1; w=$(t)
cold; r0=$(t); dd if=$d/seq of=/dev/null bs=1M 2>/dev/null || exit 1; r1=$(t)
c0=$(t); i=0; while [ $i -lt '"$FILES"' ]; do echo x > $d/f$i || exit 1; i=$((i+1)); done; sync; c1=$(t)
cold; f0=$(t); cat $d/f* > /dev/null || exit 1; f1=$(t)
rm -rf $d/seq $d/f*
echo "$s $w $r0 $r1 $c0 $c1 $f0 $f1" | awk "{printf \"%.2f %.2f %.2f %.2f\n\", \$2-\$1, \$4-\$3, \$6-\$5, \$8-\$7}"
'
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

TARGETS="rootfs volume bind host"
declare -A result
for target in $TARGETS; do
    outs=()
    for _ in $(seq "$RUNS"); do
        run=(C run --rm --network none --privileged -u 0 -e PATH=/bin "${ACCEL_ARGS[@]}")
        case $target in
            rootfs) out=$("${run[@]}" localhost/bench:1 /bin/sh -c "$SCRIPT" x /bench) ;;
            volume) out=$("${run[@]}" -v benchvol:/bench localhost/bench:1 /bin/sh -c "$SCRIPT" x /bench) ;;
            bind) out=$("${run[@]}" -v "$WORK/share:/bench" localhost/bench:1 /bin/sh -c "$SCRIPT" x /bench) ;;
            host) out=$(/bin/busybox sh -c "$SCRIPT" x "$WORK/host/bench") ;;
        esac
        outs+=("$out")
    done
    for col in 1 2 3 4; do
        result[$target,$col]=$(printf '%s\n' "${outs[@]}" | awk -v c=$col '{print $c}' | median)
    done
done

rate() { awk -v s="$1" -v m="$SIZE_MB" 'BEGIN { if (s > 0) printf "%.0f", m / s; else print "-" }'; }
printf '%-8s %16s %16s %18s %18s\n' TARGET "WRITE ${SIZE_MB}MiB" "READ (cold)" "CREATE ${FILES}" "READ ${FILES} (cold)"
for target in $TARGETS; do
    w=${result[$target,1]}; r=${result[$target,2]}
    printf '%-8s %7ss %4s MiB/s %7ss %4s MiB/s %17ss %17ss\n' "$target" "$w" "$(rate "$w")" "$r" "$(rate "$r")" \
        "${result[$target,3]}" "${result[$target,4]}"
done
C volume rm benchvol >/dev/null
