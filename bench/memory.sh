#!/usr/bin/env bash
# Benchmark: host memory of one idle container, before and after the guest allocates and frees
# 256 MiB, with the memory balloon (free page reporting, the default) and without it
# (CONTAINER_NO_BALLOON=1), side by side.
#
# For each mode and run: `container run -d --network none --tmpfs /t:size=300m IMAGE sleep …`,
#   (a) idle:   PSS once it is stable after boot (no change over 4 s),
#   (b) filled: right after `dd if=/dev/zero of=/t/fill bs=1M count=256` in the guest (tmpfs
#               pages are guest memory the guest really touched),
#   (c) freed:  after `rm /t/fill`, once PSS is stable again (4 s; at most 30 s),
# where PSS is summed over the container's monitor process and all its descendants (QEMU, and
# virtiofsd when there are bind mounts), from /proc/PID/smaps_rollup. QEMU's part is split into
# guest RAM, the TCG translation cache and the rest (its code, the mapped kernel and initfs,
# device buffers) from /proc/PID/smaps. With BENCH_BIND=1 the container also gets a `-v` bind
# mount, so guest RAM is a shared memfd that virtiofsd maps too.
#
# Usage: bench/memory.sh [RUNS]   (root; needs scripts/setup.sh done: release build, static
# vminitd, kernel .deb). CONTAINER_VMINITD overrides the vminitd found next to the binary.
set -euo pipefail

RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/memory-bench}
ROOT=$WORK/root
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin" "$WORK/share"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
C() { "$BIN" --root "$ROOT" "$@"; }

cp /bin/busybox "$WORK/bb/bin/"
for a in sh sleep true; do ln -s busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/membench:1 >/dev/null
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] || deb=$(ls /work/main/.work/kernel/*.deb | head -1)
C system kernel set --deb "$deb" >/dev/null
C run --rm --network none localhost/membench:1 true # warm-up: rootfs cache, initfs, accel probe

. "$(dirname "$0")/lib.sh"
# QEMU $1's PSS split: "guest_ram tcg_cache boot_files rest" in KiB. Guest RAM is the mapping of
# the VM's memory size ($2 MiB); the translation cache is QEMU's only rwx mapping; boot files are
# the kernel and initfs QEMU keeps mapped (from the state root's kernels/ and initfs/).
split() {
    awk -v ram=$(($2 * 1024)) -v root="$ROOT" '
        /^[0-9a-f]+-[0-9a-f]+ / {
            kind = "rest"
            if ($2 == "rwxp") kind = "tcg"
            if (index($6, root "/kernels/") == 1 || index($6, root "/initfs/") == 1) kind = "boot"
        }
        /^Size:/ { if ($2 == ram) kind = "ram" }
        /^Pss:/ { s[kind] += $2 }
        END { printf "%d %d %d %d\n", s["ram"], s["tcg"], s["boot"], s["rest"] }' /proc/"$1"/smaps
}
# PSS once it has not moved by more than 2 MiB over 4 s (or after $2 s): the guest reports free
# memory 2 s after it is freed, so shorter quiet spells prove nothing.
settled() {
    local end=$((SECONDS + $2)) hist=() now lo hi v
    while true; do
        now=$(pss "$1")
        hist+=("$now")
        if [ ${#hist[@]} -ge 5 ]; then
            lo=$now; hi=$now
            for v in "${hist[@]: -5}"; do
                [ "$v" -lt "$lo" ] && lo=$v
                [ "$v" -gt "$hi" ] && hi=$v
            done
            if [ $((hi - lo)) -le 2048 ]; then echo "$now"; return; fi
        fi
        if [ $SECONDS -ge $end ]; then echo "$now"; return; fi
        sleep 1
    done
}

# One run of mode $1 (balloon|noballoon); prints "idle filled freed ram tcg boot rest" in KiB,
# the split of QEMU taken when idle.
one() {
    local env=() extra=() name="mem-$1" mon qemu a b c r t k o
    [ "$1" = noballoon ] && env=(CONTAINER_NO_BALLOON=1)
    [ "${BENCH_BIND:-0}" = 1 ] && extra=(-v "$WORK/share:/share")
    env "${env[@]}" "$BIN" --root "$ROOT" run -d --name "$name" --network none \
        --tmpfs /t:size=300m "${extra[@]}" localhost/membench:1 sleep 1000000 >/dev/null
    mon=$(C inspect "$name" | jq -r '.[0].monitorPid')
    qemu=$(C inspect "$name" | jq -r '.[0].vmPid')
    a=$(settled "$mon" 30)
    read -r r t k o < <(split "$qemu" 512)
    C exec "$name" busybox dd if=/dev/zero of=/t/fill bs=1M count=256 2>/dev/null
    b=$(pss "$mon")
    C exec "$name" busybox rm /t/fill
    c=$(settled "$mon" 30)
    C rm -f "$name" >/dev/null
    echo "$a $b $c $r $t $k $o"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.0f", k/1024}'; }
declare -A IDLE FILLED FREED RAM TCG BOOT REST MON
for i in $(seq "$RUNS"); do
    for mode in balloon noballoon; do
        read -r a b c r t k o < <(one "$mode")
        IDLE[$mode]+=" $a"; FILLED[$mode]+=" $b"; FREED[$mode]+=" $c"
        RAM[$mode]+=" $r"; TCG[$mode]+=" $t"; BOOT[$mode]+=" $k"; REST[$mode]+=" $o"
        MON[$mode]+=" $((a - r - t - k - o))"
        echo "run $i $mode: idle $(mib "$a") MiB, filled $(mib "$b") MiB, freed $(mib "$c") MiB" >&2
    done
done

echo "accelerator: $(C system status --format json | jq -r .accelerator.name); runs: $RUNS; guest memory 512 MiB; bind mount: ${BENCH_BIND:-0}"
printf '%-44s %14s %14s\n' "PSS MiB, monitor + QEMU (+ virtiofsd), median" "balloon" "no balloon"
row() {
    printf '%-44s %14s %14s\n' "$1" "$(mib "$(median ${2})")" "$(mib "$(median ${3})")"
}
row "(a) idle after boot" "${IDLE[balloon]}" "${IDLE[noballoon]}"
row "(b) after allocating 256 MiB in the guest" "${FILLED[balloon]}" "${FILLED[noballoon]}"
row "(c) after freeing it" "${FREED[balloon]}" "${FREED[noballoon]}"
row "  idle split: QEMU guest RAM" "${RAM[balloon]}" "${RAM[noballoon]}"
row "  idle split: QEMU TCG translation cache" "${TCG[balloon]}" "${TCG[noballoon]}"
row "  idle split: QEMU kernel + initfs mapped" "${BOOT[balloon]}" "${BOOT[noballoon]}"
row "  idle split: QEMU rest (code, libs, heap)" "${REST[balloon]}" "${REST[noballoon]}"
row "  idle split: monitor (+ virtiofsd)" "${MON[balloon]}" "${MON[noballoon]}"
fb=$(median ${FILLED[balloon]}); cb=$(median ${FREED[balloon]}); ab=$(median ${IDLE[balloon]})
awk -v a="$ab" -v b="$fb" -v c="$cb" 'BEGIN{printf "balloon: %.0f%% of the growth returned to the host\n", 100*(b-c)/(b-a)}'
