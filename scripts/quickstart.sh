#!/usr/bin/env bash
# The main job end to end on a fresh machine: install and build everything, start a local registry,
# put a locally built busybox image into it, pull it with `container image pull`, show it, and run
# it in its own VM, printing from inside the guest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/lib/registry.sh

CONTAINER=$PWD/target/release/container
WORK=$(mktemp -d /tmp/container-quickstart.XXXXXX)
cleanup() { registry_stop; rm -rf "$WORK"; }
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }

registry_start "$WORK/registry"
IMAGE=$REGISTRY_ADDR/demo/busybox:latest
export CONTAINER_VMINITD=$PWD/target/x86_64-unknown-linux-gnu/release/vminitd

# Build an image locally and push it, from a separate store so the pull below is real.
busybox_rootfs_tar "$WORK/rootfs.tar"
"$CONTAINER" --root "$WORK/build" image import "$WORK/rootfs.tar" "$IMAGE" >/dev/null
"$CONTAINER" --root "$WORK/build" image push "$IMAGE"

export CONTAINER_ROOT=$WORK/state
step container image pull "$IMAGE"
"$CONTAINER" image pull "$IMAGE"
step container image list
"$CONTAINER" image list
step container image inspect "$IMAGE"
"$CONTAINER" image inspect "$IMAGE" | head -n 40

# The guest kernel: the Debian cloud kernel package setup.sh downloaded.
step container system kernel set --deb .work/kernel/linux-image-*-cloud-amd64_*.deb
"$CONTAINER" system kernel set --deb .work/kernel/linux-image-*-cloud-amd64_*.deb
step container run --rm "$IMAGE" sh -c '…'
"$CONTAINER" run --rm "$IMAGE" sh -c \
    'echo "hello from inside the VM: kernel $(uname -r) (host: '"$(uname -r)"'), root filesystem $(grep " / " /proc/mounts | cut -d" " -f1-3)"'
