#!/usr/bin/env bash
# Build benchmark: `container build` against Debian's `buildah bud --isolation chroot`, the same
# Dockerfiles and contexts, run alternately (A B A B …) so drift of the machine hits both alike.
#   (a) cold: FROM a busybox image, 5 RUN steps and 2 COPY steps; ours with --no-cache (one
#       builder VM from the VM template, each RUN a container on an overlay in it, layers out
#       and in), buildah with --no-cache (its default: no intermediate layers committed);
#   (b) cached: the same Dockerfile again, nothing changed; ours from the build cache (no VM),
#       buildah with --layers (after one --layers build to fill its cache);
#   (c) a COPY of a context of 20 000 files of 10 KiB of random data (200 MiB), cold for both.
# Both keep the base image ready (ours in the content store and its ext4 in the rootfs cache,
# buildah's unpacked in its storage, overlay driver); every image built is removed untimed.
# Prints each pair, the medians, the ratios and peak RSS summed over the processes of one run.
#
# Usage: bench/build.sh [RUNS]   (root; needs scripts/setup.sh done: release build, static
# vminitd, kernel .deb; buildah). CONTAINER_VMINITD overrides the vminitd found by the binary.
set -euo pipefail

RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
WORK=${BENCH_DIR:-/var/tmp/build-bench}
ROOT=$WORK/root
[ -x "$BIN" ] || (cd "$HERE" && cargo build --release -p cli)
for tool in buildah jq python3; do
    command -v "$tool" >/dev/null || { echo "bench/build.sh: $tool is missing" >&2; exit 1; }
done
C() { "$BIN" --root "$ROOT" "$@"; }
B() { buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" "$@"; }
cleanup() {
    B rmi -a -f >/dev/null 2>&1 || true
    umount -R "$WORK/buildah/root/overlay" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
cleanup
trap cleanup EXIT
mkdir -p "$WORK/bb/bin" "$WORK/a" "$WORK/c/files"
export CONTAINER_TEMPLATES=on

# The base: busybox-static as a one-layer image, for us and (saved as an OCI archive) buildah.
cp /bin/busybox "$WORK/bb/bin/"
for a in sh true cat echo mkdir ls; do ln -s busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$WORK/bb.tar" .
C image import "$WORK/bb.tar" localhost/bench:1 >/dev/null
C image save -o "$WORK/base.tar" localhost/bench:1
B pull -q "oci-archive:$WORK/base.tar" >/dev/null
B tag "$(B images -q | head -1)" localhost/bench:1
deb=${CONTAINER_TEST_KERNEL_DEB:-$(ls "$HERE"/.work/kernel/*.deb 2>/dev/null | head -1)}
C system kernel set --deb "$deb" >/dev/null

# (a)/(b): 5 RUN steps and 2 COPY steps.
for i in 1 2 3 4 5 6 7 8; do echo "source file $i" >"$WORK/a/src$i.txt"; done
mkdir -p "$WORK/a/conf" && echo "key=value" >"$WORK/a/conf/app.conf"
cat >"$WORK/a/Dockerfile" <<'EOF'
FROM localhost/bench:1
RUN mkdir -p /app/data /app/logs && echo one > /app/data/one
COPY src*.txt /app/src/
RUN cat /app/src/*.txt > /app/all.txt && rm /app/src/src8.txt
RUN echo 'app:x:1000:1000::/app:/bin/sh' >> /etc/passwd
COPY conf /app/conf
RUN ls -l /app > /app/listing && echo two > /app/data/two
RUN rm -r /app/logs && mkdir /app/logs && echo three > /app/logs/three
CMD ["cat", "/app/all.txt"]
EOF
# (c): 20 000 files of 10 KiB in 100 directories.
python3 - "$WORK/c/files" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, f"d{d:03}")
    os.mkdir(p)
    for f in range(200):
        with open(os.path.join(p, f"f{f:03}.bin"), "wb") as out:
            out.write(os.urandom(10 * 1024))
PY
printf 'FROM localhost/bench:1\nCOPY . /ctx/\n' >"$WORK/c/Dockerfile"
echo "context (c): $(du -sm "$WORK/c" | cut -f1) MiB, $(find "$WORK/c" -type f | wc -l) files"

. "$(dirname "$0")/lib.sh"
ours_cold() { C build -q --no-cache --network none -t localhost/out:a "$WORK/a" >/dev/null; }
theirs_cold() { B bud -q --isolation chroot --no-cache --pull=never -t out-a "$WORK/a" >/dev/null; }
ours_cached() { C build -q --network none -t localhost/out:b "$WORK/a" >/dev/null; }
theirs_cached() { B bud -q --isolation chroot --layers --pull=never -t out-b "$WORK/a" >/dev/null; }
ours_copy() { C build -q --no-cache --network none -t localhost/out:c "$WORK/c" >/dev/null; }
theirs_copy() { B bud -q --isolation chroot --no-cache --pull=never -t out-c "$WORK/c" >/dev/null; }
drop() { # untimed: the images a run made (their layers stay as blobs until a prune)
    C image rm "localhost/out:$1" >/dev/null 2>&1 || true
    B rmi -f "out-$1" >/dev/null 2>&1 || true
}
export -f C B ours_cold theirs_cold ours_cached theirs_cached ours_copy theirs_copy
export BIN ROOT WORK CONTAINER_TEMPLATES

# Warm-up: the template, the initfs, the base's ext4 (ours); buildah's base in its storage.
ours_cold; theirs_cold; drop a
# The cache for (b), filled once by each.
ours_cached; theirs_cached

pair() { # NAME OURS THEIRS [DROP]: RUNS alternating pairs (removing the images unless DROP=no)
    local name=$1 w r
    local -a aw=() ar=() bw=() br=() ratio=()
    for i in $(seq "$RUNS"); do
        read -r w r < <(measure "$2") || true; [ -n "$w" ] || { echo "$2 failed" >&2; exit 1; }
        aw+=("$w"); ar+=("$r")
        read -r w r < <(measure "$3") || true; [ -n "$w" ] || { echo "$3 failed" >&2; exit 1; }
        bw+=("$w"); br+=("$r")
        ratio+=("$(awk -v a="${aw[-1]}" -v b="${bw[-1]}" 'BEGIN{print a/b}')")
        [ "${4:-}" = no ] || drop "${name:0:1}"
        echo "  $name run $i: container ${aw[-1]} s $((ar[-1] / 1024)) MiB | buildah ${bw[-1]} s $((br[-1] / 1024)) MiB" >&2
    done
    printf '%s: container %.3f s (peak %d MiB), buildah %.3f s (peak %d MiB), container/buildah %.2f (median of %d pairs, %.2f–%.2f)\n' \
        "$name" "$(median "${aw[@]}")" "$(( $(median "${ar[@]}") / 1024 ))" \
        "$(median "${bw[@]}")" "$(( $(median "${br[@]}") / 1024 ))" "$(median "${ratio[@]}")" "$RUNS" \
        "$(printf '%s\n' "${ratio[@]}" | sort -g | head -1)" "$(printf '%s\n' "${ratio[@]}" | sort -g | tail -1)"
}
echo "accelerator: tcg; runs: $RUNS; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
pair "a-cold" ours_cold theirs_cold
pair "b-cached" ours_cached theirs_cached no
pair "c-copy" ours_copy theirs_copy
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
