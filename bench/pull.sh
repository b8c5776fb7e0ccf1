#!/usr/bin/env bash
# Pull benchmark: `container image pull` vs `skopeo copy docker://… oci:…`, same image, same
# local registry, run alternately (A B A B …) so drift of the machine hits both alike.
#
# The image: LAYERS layers of LAYER_MIB MiB of random (incompressible) data each, gzip -1,
# about 100 MiB in all, pushed by skopeo into Debian's docker-registry on 127.0.0.1.
# Every run pulls into a fresh directory (created and removed inside the timed command, for both).
#
# Usage: bench/pull.sh [RUNS]      env: CONTAINER=path/to/container LAYERS=4 LAYER_MIB=25
set -euo pipefail

RUNS=${1:-5}
LAYERS=${LAYERS:-4}
LAYER_MIB=${LAYER_MIB:-25}
here=$(cd "$(dirname "$0")/.." && pwd)
CONTAINER=${CONTAINER:-$here/target/release/container}
if [[ ! -x $CONTAINER ]]; then
    (cd "$here" && cargo build --release -p cli >&2)
fi
for tool in docker-registry skopeo jq sha256sum gzip curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/pull.sh: $tool is missing (scripts/setup.sh)" >&2; exit 1; }
done

. "$here/scripts/lib/registry.sh"
work=$(mktemp -d /tmp/bench-pull.XXXXXX)
cleanup() {
    registry_stop
    rm -rf "$work"
}
trap cleanup EXIT

registry_start "$work/registry"
port=${REGISTRY_ADDR##*:}

# --- image ------------------------------------------------------------------------------------
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
put_blob() { # file → prints digest, moves it into the layout
    local d
    d=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$layout/blobs/sha256/$d"
    echo "$d"
}
layers_json=() diff_ids=()
for i in $(seq "$LAYERS"); do
    mkdir -p "$work/l$i/data"
    head -c "$((LAYER_MIB << 20))" /dev/urandom >"$work/l$i/data/random-$i.bin"
    tar -C "$work/l$i" -cf "$work/l$i.tar" data
    diff_ids+=("\"sha256:$(sha256sum "$work/l$i.tar" | cut -d' ' -f1)\"")
    gzip -1 -c "$work/l$i.tar" >"$work/l$i.tgz"
    size=$(stat -c %s "$work/l$i.tgz")
    d=$(put_blob "$work/l$i.tgz")
    layers_json+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size}")
    rm -rf "$work/l$i" "$work/l$i.tar"
done
join() { local IFS=,; echo "$*"; }
echo "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$(join "${diff_ids[@]}")]}}" >"$work/config.json"
csize=$(stat -c %s "$work/config.json")
cdig=$(put_blob "$work/config.json")
echo "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cdig\",\"size\":$csize},\"layers\":[$(join "${layers_json[@]}")]}" >"$work/manifest.json"
msize=$(stat -c %s "$work/manifest.json")
mdig=$(put_blob "$work/manifest.json")
echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mdig\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}}]}" >"$layout/index.json"
ref=127.0.0.1:$port/bench/random:latest
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$ref"
total=$(du -sm "$layout/blobs" | cut -f1)
echo "image: $ref, $LAYERS layers, ${total} MiB, manifest sha256:$mdig"

# --- the two commands -----------------------------------------------------------------------
# Each creates a fresh destination, pulls, checks the result and removes it.
ours() {
    local d
    d=$(mktemp -d "$work/ours.XXXXXX")
    "$CONTAINER" --root "$d" image pull -q "$ref" >/dev/null
    [[ $("$CONTAINER" --root "$d" image list --format json | jq -r '.[0].digest') == "sha256:$mdig" ]]
    rm -rf "$d"
}
theirs() {
    local d
    d=$(mktemp -d "$work/skopeo.XXXXXX")
    skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$d/layout:latest"
    [[ $(jq -r '.manifests[0].digest' "$d/layout/index.json") == "sha256:$mdig" ]]
    rm -rf "$d"
}
now() { date +%s.%N; }

ours; theirs # warm-up (page cache, registry)
a=() b=()
for i in $(seq "$RUNS"); do
    t0=$(now); ours; t1=$(now); theirs; t2=$(now)
    a+=("$(awk -v x="$t0" -v y="$t1" 'BEGIN{print y-x}')") b+=("$(awk -v x="$t1" -v y="$t2" 'BEGIN{print y-x}')")
    printf 'run %d: container %.3f s, skopeo %.3f s\n' "$i" "${a[-1]}" "${b[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2)? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ma=$(median "${a[@]}") mb=$(median "${b[@]}")
printf 'median wall: container image pull %.3f s, skopeo copy %.3f s\n' "$ma" "$mb"
ratios=()
for i in "${!a[@]}"; do ratios+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN{print y/x}')"); done
printf 'ratio skopeo/container: %.2f of the medians, %.2f median of the %d pairs (target >= 1.25)\n' \
    "$(awk -v a="$ma" -v b="$mb" 'BEGIN{print b/a}')" "$(median "${ratios[@]}")" "$RUNS"
