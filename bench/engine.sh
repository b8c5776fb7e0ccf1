#!/usr/bin/env bash
# Benchmark: the Docker Engine API socket against the CLI it maps onto, side by side.
#   (a) docker run --rm --network none IMAGE true   through `container system service`
#       (Debian's docker 20.10 client: create, attach, wait, start, the hijacked stream)
#   (b) container run --rm --network none IMAGE true
# interleaved, RUNS times each; prints the medians and (a)/(b) (the issue's bar: ≤ 1.05×). Then
# `docker ps -a` with 50 containers (created, not started): median wall time (bar: ≤ 100 ms).
#
# Usage: bench/engine.sh [RUNS]   (root; scripts/setup.sh done: the release build, the static
# vminitd, the kernel .deb, docker.io). CONTAINER_BIN overrides the binary.
set -euo pipefail

RUNS=${1:-7}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
DOCKER=/usr/bin/docker
WORK=${BENCH_DIR:-/var/tmp/engine-bench}
ROOT=$WORK/root
SOCK=$WORK/docker.sock
rm -rf "$WORK" && mkdir -p "$WORK/bb/bin"
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
[ -x "$DOCKER" ] || { echo "install Debian's docker.io (scripts/setup.sh)" >&2; exit 1; }
C() { "$BIN" --root "$ROOT" "$@"; }
D() { DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$WORK/docker-config" "$DOCKER" "$@"; }

# The image: busybox-static as a one-layer image.
cp /bin/busybox "$WORK/bb/bin/"
ln -s busybox "$WORK/bb/bin/true"
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/bench:1 >/dev/null
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
C system kernel set --deb "$deb" >/dev/null

# Its output to a file: a server holding this script's stdout would keep a pipe reading it open.
C system service --socket "$SOCK" >"$WORK/service.log" 2>&1 &
service=$!
trap 'kill $service 2>/dev/null; wait $service 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
# Warm-up: the rootfs cache, the init filesystem, the accelerator probe.
C run --rm --network none localhost/bench:1 true
D run --rm --network none localhost/bench:1 true

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
: >"$WORK/a" && : >"$WORK/b"
for _ in $(seq "$RUNS"); do
    t=$(now); D run --rm --network none localhost/bench:1 true; echo "$(now) - $t" | bc >>"$WORK/a"
    t=$(now); C run --rm --network none localhost/bench:1 true; echo "$(now) - $t" | bc >>"$WORK/b"
done
a=$(median <"$WORK/a")
b=$(median <"$WORK/b")
printf 'docker run --rm (socket)   median %.3f s\n' "$a"
printf 'container run --rm         median %.3f s\n' "$b"
printf 'ratio                      %.3f\n' "$(echo "$a / $b" | bc -l)"

for i in $(seq 50); do D create --network none --name "c$i" localhost/bench:1 true >/dev/null; done
: >"$WORK/ps"
for _ in $(seq "$RUNS"); do
    t=$(now); D ps -a -q >/dev/null; echo "$(now) - $t" | bc >>"$WORK/ps"
done
printf 'docker ps -a, 50 containers median %.0f ms\n' "$(echo "$(median <"$WORK/ps") * 1000" | bc -l)"
C delete $(C list -a -q) >/dev/null
