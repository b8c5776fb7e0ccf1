#!/usr/bin/env bash
# Benchmark: N containers in one pod (one VM) against N containers each in its own VM, side by
# side. For each mode and run, with the default network:
#   start   wall time from nothing to all N containers running (`pod create` + N `run -d --pod`,
#           against N `run -d`), each `sleep`,
#   PSS     host memory of everything the containers hold, once idle for 5 s: the sum of PSS over
#           every monitor and its descendants (QEMU, virtiofsd for the pod's share),
#   exec    one `exec NAME true` into each container, the slowest,
# then everything is removed. Prints the medians of both modes and their ratios (pod/separate).
#
# Usage: bench/pod.sh [N] [RUNS]   (defaults 2 and 3; root; needs scripts/setup.sh done).
set -euo pipefail

N=${1:-2}
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/pod-bench}
ROOT=$WORK/root
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
C() { "$BIN" --root "$ROOT" "$@"; }
. "$(dirname "$0")/lib.sh"
NS=podbench$$
ip netns add "$NS"
trap 'C pod rm -f bench >/dev/null 2>&1 || true; for i in $(seq "$N"); do C rm -f "solo$i" >/dev/null 2>&1 || true; done; ip netns del "$NS"' EXIT
# Every container command runs in the benchmark's own network namespace.
CN() { ip netns exec "$NS" "$BIN" --root "$ROOT" "$@"; }

cp /bin/busybox "$WORK/bb/bin/"
for a in sh sleep true; do ln -s busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/podbench:1 >/dev/null
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
C system kernel set --deb "$deb" >/dev/null
CN run --rm localhost/podbench:1 true >/dev/null # warm-up: rootfs cache, initfs

now() { date +%s.%N; }
monitors() {
    local ids
    ids=$(C ls -a -q)
    [ -n "$ids" ] || return 0
    # shellcheck disable=SC2086
    C inspect $ids | python3 -c 'import json,sys; print(" ".join(str(c["monitorPid"]) for c in json.load(sys.stdin) if c.get("monitorPid")))'
}
total_pss() { local t=0 m; for m in $(monitors); do t=$((t + $(pss "$m"))); done; echo "$t"; }
slowest_exec() {
    local worst=0 name t0 ms
    for name in "$@"; do
        t0=$(now); CN exec "$name" true; ms=$(python3 -c "print(int(($(now) - $t0) * 1000))")
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "$worst"
}

# One run of mode $1 (pod|separate): prints "start_s pss_kib exec_ms".
one() {
    local t0 t1 names=() i
    t0=$(now)
    if [ "$1" = pod ]; then
        CN pod create bench >/dev/null
        for i in $(seq "$N"); do CN run -d --pod bench --name "m$i" localhost/podbench:1 sleep 3600 >/dev/null; names+=("m$i"); done
    else
        for i in $(seq "$N"); do CN run -d --name "solo$i" localhost/podbench:1 sleep 3600 >/dev/null; names+=("solo$i"); done
    fi
    t1=$(now)
    sleep 5
    echo "$(python3 -c "print(round($t1 - $t0, 3))") $(total_pss) $(slowest_exec "${names[@]}")"
    if [ "$1" = pod ]; then C pod rm -f bench >/dev/null; else C rm -f "${names[@]}" >/dev/null; fi
}

declare -A start pss ex
for r in $(seq "$RUNS"); do
    for mode in pod separate; do
        read -r s p e < <(one "$mode")
        start[$mode]+="$s "; pss[$mode]+="$p "; ex[$mode]+="$e "
        echo "run $r $mode: start ${s}s, PSS $((p / 1024)) MiB, slowest exec ${e} ms" >&2
    done
done
for mode in pod separate; do
    # shellcheck disable=SC2086
    printf '%-9s N=%s  start %6.2f s   PSS %5d MiB   slowest exec %4d ms\n' "$mode" "$N" \
        "$(median ${start[$mode]})" "$(( $(median ${pss[$mode]} | cut -d. -f1) / 1024 ))" "$(median ${ex[$mode]} | cut -d. -f1)"
done
# shellcheck disable=SC2086
python3 -c "print('pod/separate: start %.2fx  PSS %.2fx' % ($(median ${start[pod]}) / $(median ${start[separate]}), $(median ${pss[pod]}) / $(median ${pss[separate]})))"
