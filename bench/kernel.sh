#!/usr/bin/env bash
# Benchmark: the tailored guest kernel (kernel/config-6.1-container, scripts/build-kernel.sh)
# against Debian's cloud kernel, side by side in one script, four commands per round in turn:
#   cloud-run     container run --rm --network none IMAGE true   (state dir with the cloud kernel set)
#   tailored-run  the same, in a state dir with the tailored vmlinux set (no modules)
#   cloud-floor   raw QEMU microvm boot of the cloud vmlinux (PVH), busybox initramfs that insmods
#                 virtio_ring/virtio/virtio_mmio/virtio_blk, mounts the image's cached ext4 rootfs
#                 from a qcow2 overlay as /dev/vda, powers off (what bench/run.sh calls "raw")
#   tailored-floor  the same boot with the tailored vmlinux (nothing to insmod)
# Prints the median wall time and peak RSS (summed over all processes of one run: client +
# monitor + QEMU, or QEMU alone; sampled from /proc every 20 ms) of each, and the median of the
# per-round ratios tailored-run / cloud-floor (issue 10's target: at most 0.75) and
# tailored-run / cloud-run.
#
# Usage: bench/kernel.sh [RUNS]   (root; scripts/setup.sh done: release build, static vminitd,
# kernel .deb). Builds the tailored kernel first if it is not cached (about 8 min on 2 cores).
# CONTAINER_VMINITD overrides the vminitd found next to the binary.
set -euo pipefail

RUNS=${1:-7}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/kernel-bench}
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin" "$WORK/initfs"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
TAILORED=$("$HERE/scripts/build-kernel.sh")
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] || { echo "no kernel .deb in .work/kernel (run scripts/setup.sh)" >&2; exit 1; }

# One state directory per kernel, each with the same busybox-static one-layer image.
cp /bin/busybox "$WORK/bb/bin/"
ln -s busybox "$WORK/bb/bin/true"
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
for k in cloud tailored; do
    "$BIN" --root "$WORK/$k" image import "$WORK/bb.tar" localhost/bench:1 >/dev/null
done
"$BIN" --root "$WORK/cloud" system kernel set --deb "$deb" >/dev/null
"$BIN" --root "$WORK/tailored" system kernel set --binary "$TAILORED" >/dev/null
# Warm-up: the rootfs cache, the init filesystem and the accelerator probe of each state dir.
for k in cloud tailored; do
    "$BIN" --root "$WORK/$k" run --rm --network none localhost/bench:1 true
done

cloud_json=$("$BIN" --root "$WORK/cloud" system kernel show --format json)
cloud_vmlinux=$(jq -r .vmlinux <<<"$cloud_json")
moddir=$(jq -r .modulesDir <<<"$cloud_json")
rootfs=$(ls "$WORK"/cloud/rootfs/*.ext4)

# The floors' initramfs: busybox, the cloud kernel's virtio block modules, an init that loads
# whichever of them are there (the tailored kernel has them built in and gets none).
. "$(dirname "$0")/lib.sh"
raw_initfs "$WORK/initfs" "$WORK/tailored.cpio"
raw_modules "$moddir" "$WORK/initfs/mod"
raw_initfs "$WORK/initfs" "$WORK/cloud.cpio"
tsc=$(awk -F: '/cpu MHz/{printf "%d", $2*1000; exit}' /proc/cpuinfo)

cloud_floor() { raw_boot "$cloud_vmlinux" "$WORK/cloud.cpio" cloud; }
tailored_floor() { raw_boot "$TAILORED" "$WORK/tailored.cpio" tailored; }
cloud_run() { "$BIN" --root "$WORK/cloud" run --rm --network none localhost/bench:1 true; }
tailored_run() { "$BIN" --root "$WORK/tailored" run --rm --network none localhost/bench:1 true; }
export -f raw_boot cloud_floor tailored_floor cloud_run tailored_run
export BIN WORK rootfs cloud_vmlinux TAILORED tsc

names=(cloud_run tailored_run cloud_floor tailored_floor)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A WALL RSS
RATIO_FLOOR=() RATIO_RUN=()
for i in $(seq "$RUNS"); do
    declare -A w=()
    line="run $i:"
    for n in "${names[@]}"; do
        read -r wall rss < <(measure "$n")
        w[$n]=$wall
        WALL[$n]+="$wall " RSS[$n]+="$rss "
        line+=" $n ${wall} s $((rss / 1024)) MiB |"
    done
    RATIO_FLOOR+=("$(awk -v a="${w[tailored_run]}" -v b="${w[cloud_floor]}" 'BEGIN{print a/b}')")
    RATIO_RUN+=("$(awk -v a="${w[tailored_run]}" -v b="${w[cloud_run]}" 'BEGIN{print a/b}')")
    echo "$line" >&2
done
echo "accelerator: tcg; runs: $RUNS; load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "${names[@]}"; do
    # shellcheck disable=SC2086 # the lists are space-separated numbers
    printf '%-15s median %s s, peak RSS %s MiB (all processes)\n' "$n" \
        "$(median ${WALL[$n]})" "$(awk -v k="$(median ${RSS[$n]})" 'BEGIN{printf "%d", k/1024}')"
done
printf 'tailored-run / cloud-floor: median %.2fx (per-round ratios; target <= 0.75)\n' "$(median "${RATIO_FLOOR[@]}")"
printf 'tailored-run / cloud-run:   median %.2fx\n' "$(median "${RATIO_RUN[@]}")"
