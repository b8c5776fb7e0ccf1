#!/usr/bin/env bash
# Benchmark: a task through containerd and our shim against our own CLI, the same busybox image,
# run alternately so drift of the machine hits all alike:
#   (a) ctr run --rm --runtime io.containerd.container.v2 IMAGE ID true   (containerd 1.6 of its
#       own in $WORK: overlayfs snapshot, shim start, the snapshot's layers as a cached ext4
#       disk, VM template clone; SHIM_ROOTFS=share serves the snapshot through virtiofs and
#       boots cold, the shim's behaviour before disks);
#   (b) container run --rm --network none IMAGE true                      (VM template clone);
#   (c) container run --rm --network none --no-template IMAGE true        (cold boot).
# Prints the median wall time of each, the ratios (a)/(b) and (a)/(c), and peak RSS summed over
# the processes of one run (those with $WORK in their command line: monitor, QEMU, virtiofsd,
# the CLI; containerd and the shim's daemon are outside it).
#
# Usage: bench/shim.sh [RUNS]   (root; scripts/setup.sh done: static vminitd, kernel .deb;
# Debian's containerd). CONTAINER_BIN and SHIM_BIN name other builds of the two binaries.
set -euo pipefail

RUNS=${1:-7}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
SHIM=${SHIM_BIN:-$HERE/target/release/containerd-shim-container-v2}
WORK=${BENCH_DIR:-/var/tmp/shim-bench}
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
[ -x "$SHIM" ] || (cd "$HERE" && cargo build --release -p shim)
C() { "$BIN" --root "$WORK/root" "$@"; }
CTR() { ctr --address "$WORK/c.sock" "$@"; }
CTRD_PID=
cleanup() {
    for t in $(CTR task ls -q 2>/dev/null); do CTR task delete -f "$t" >/dev/null 2>&1 || true; done
    [ -n "$CTRD_PID" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null || true
    grep " $WORK/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
    rm -rf "$WORK"
}
cleanup
trap cleanup EXIT
mkdir -p "$WORK/bb/bin" "$WORK/shimroot" "$WORK/bin"
export CONTAINER_TEMPLATES=on
# The shim runs from a copy in $WORK/bin, where no vminitd lies next to it.
export CONTAINER_VMINITD=${CONTAINER_VMINITD:-$HERE/target/x86_64-unknown-linux-gnu/release/vminitd}

cp /bin/busybox "$WORK/bb/bin/"
for a in true sh sleep; do ln -s busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/bench:1 >/dev/null
C image save -o "$WORK/bb-oci.tar" localhost/bench:1
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb | head -1)}
C system kernel set --deb "$deb" >/dev/null
"$BIN" --root "$WORK/shimroot" system kernel set --deb "$deb" >/dev/null

# containerd with its own root, state and sockets; the shim first on its PATH.
cp "$SHIM" "$WORK/bin/containerd-shim-container-v2"
cat >"$WORK/config.toml" <<TOML
version = 2
root = "$WORK/ctrd/root"
state = "$WORK/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/c.sock"
[ttrpc]
  address = "$WORK/c.sock.ttrpc"
[debug]
  address = "$WORK/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/ctrd/opt"
TOML
PATH="$WORK/bin:$PATH" CONTAINER_SHIM_ROOTFS=${SHIM_ROOTFS:-disk} CONTAINER_SHIM_ROOT="$WORK/shimroot" containerd --config "$WORK/config.toml" \
    >"$WORK/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do CTR version >/dev/null 2>&1 && break; sleep 0.1; done
CTR image import "$WORK/bb-oci.tar" >/dev/null

n=0
shim() { n=$((n + 1)); CTR run --rm --runtime io.containerd.container.v2 localhost/bench:1 "b$n-$$" true; }
ours() { C run --rm --network none localhost/bench:1 true; }
cold() { C run --rm --network none --no-template localhost/bench:1 true; }
# Warm-up: the rootfs cache, the init filesystems, the template, the accelerator probe.
ours; cold; shim

. "$(dirname "$0")/lib.sh"
export -f shim ours cold C CTR
export BIN WORK n
# The shim is containerd's child, not ctr's: count every process naming the run directory.
export MEASURE_SCAN_WORK=1
declare -a A_WALL B_WALL C_WALL A_RSS B_RSS C_RSS
for i in $(seq "$RUNS"); do
    read -r w r < <(measure "n=$i; shim"); A_WALL+=("$w"); A_RSS+=("$r")
    read -r w r < <(measure ours); B_WALL+=("$w"); B_RSS+=("$r")
    read -r w r < <(measure cold); C_WALL+=("$w"); C_RSS+=("$r")
    echo "run $i: ctr+shim ${A_WALL[-1]} s | container run ${B_WALL[-1]} s | --no-template ${C_WALL[-1]} s" >&2
done
aw=$(median "${A_WALL[@]}"); bw=$(median "${B_WALL[@]}"); cw=$(median "${C_WALL[@]}")
echo "ctr run --rm (shim):                  median ${aw} s, peak RSS $(median "${A_RSS[@]}") KiB"
echo "container run --rm (template):        median ${bw} s, peak RSS $(median "${B_RSS[@]}") KiB"
echo "container run --rm --no-template:     median ${cw} s, peak RSS $(median "${C_RSS[@]}") KiB"
awk -v a="$aw" -v b="$bw" -v c="$cw" 'BEGIN{printf "ratio shim/template %.2fx, shim/cold %.2fx\n", a/b, a/c}'
