#!/usr/bin/env bash
# Benchmark: many idle containers, started from a VM template against booted cold, side by side.
#
# For each mode (template: CONTAINER_TEMPLATES=on; cold: --no-template), N containers
# `run -d --network none IMAGE sleep …` are started one after the other and left idle for 10 s;
# then, over all of them:
#   PSS per container  the sum of PSS over every monitor and its descendants (QEMU) divided by N
#                      (PSS splits each shared page among its sharers, so the sum is the host
#                      memory they take together: template clones share unchanged guest pages),
#   idle CPU           QEMU + monitor CPU time over 10 s of idleness, per container, in % of a core,
#   exec               the slowest and the median of one `exec NAME true` into each container.
# Then the containers are deleted. Prints both modes and the template/cold ratios.
#
# Usage: bench/density.sh [N]   (default 10; root; needs scripts/setup.sh done).
set -euo pipefail

N=${1:-10}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/density-bench}
ROOT=$WORK/root
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
C() { "$BIN" --root "$ROOT" "$@"; }
export CONTAINER_TEMPLATES=on
. "$(dirname "$0")/lib.sh"

cp /bin/busybox "$WORK/bb/bin/"
for a in sh sleep true; do ln -s busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/density:1 >/dev/null
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
C system kernel set --deb "$deb" >/dev/null
C run --rm --network none localhost/density:1 true # warm-up: rootfs cache, initfs, template

# CPU ticks (utime + stime) of the monitor $1 and its descendants.
ticks() { tree_sum "$1" stat '{print $14 + $15}'; }

# One mode: "$1" is a label, the rest extra flags of `run`. Prints
# "label pss_mib_per_container cpu_percent_per_container exec_max_ms exec_median_ms".
mode() {
    local label=$1 i m total=0 t0=0 t1=0
    shift
    for i in $(seq "$N"); do
        C run -d --network none --name "$label-$i" "$@" localhost/density:1 sleep 100000 >/dev/null
    done
    sleep 10
    local monitors=()
    for i in $(seq "$N"); do
        monitors+=("$(C inspect "$label-$i" | jq -r '.[0].monitorPid')")
    done
    for m in "${monitors[@]}"; do total=$((total + $(pss "$m"))); done
    for m in "${monitors[@]}"; do t0=$((t0 + $(ticks "$m"))); done
    sleep 10
    for m in "${monitors[@]}"; do t1=$((t1 + $(ticks "$m"))); done
    local hz ex=()
    hz=$(getconf CLK_TCK)
    for i in $(seq "$N"); do
        local s e
        s=$(date +%s%N); C exec "$label-$i" true; e=$(date +%s%N)
        ex+=("$(( (e - s) / 1000000 ))")
    done
    local max
    max=$(printf '%s\n' "${ex[@]}" | sort -n | tail -1)
    C ls -a -q | xargs -r "$BIN" --root "$ROOT" rm -f >/dev/null
    awk -v l="$label" -v t="$total" -v n="$N" -v d="$((t1 - t0))" -v hz="$hz" -v mx="$max" \
        -v md="$(median "${ex[@]}")" \
        'BEGIN{printf "%s %.1f %.2f %d %s\n", l, t/n/1024, d/hz/10*100/n, mx, md}'
}

read -r _ tp tc tx tm < <(mode template)
read -r _ cp cc cx cm < <(mode cold --no-template)
echo "containers: $N idle busybox (sleep), --network none, TCG"
echo "template: PSS ${tp} MiB per container, idle CPU ${tc} % of a core each, exec max ${tx} ms (median ${tm})"
echo "cold:     PSS ${cp} MiB per container, idle CPU ${cc} % of a core each, exec max ${cx} ms (median ${cm})"
awk -v a="$tp" -v b="$cp" 'BEGIN{printf "ratio template/cold PSS: %.2fx\n", a/b}'
