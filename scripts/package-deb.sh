#!/usr/bin/env bash
# Builds the Debian package container_<version>_amd64.deb: the `container` CLI, the containerd
# shim, the static guest init (vminitd, under /usr/libexec/container, where the CLI looks for
# it), shell completions, man pages and the systemd units of packaging/systemd. The guest
# kernel is not in the package: `container system kernel set --deb …` (README, "Guest kernel").
#
# Usage: scripts/package-deb.sh [OUT_DIR]   (default target/debian)
# The binaries come from a release build unless CONTAINER_BIN, SHIM_BIN and VMINITD_BIN name
# them (the package test uses the test build's).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$HERE/target/debian}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$HERE/Cargo.toml" | head -1)
if [ -z "${CONTAINER_BIN:-}" ] || [ -z "${SHIM_BIN:-}" ] || [ -z "${VMINITD_BIN:-}" ]; then
    (cd "$HERE" && cargo build --release -p cli -p shim)
    (cd "$HERE" && RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
        cargo build --release -p vminitd --target x86_64-unknown-linux-gnu)
fi
CONTAINER_BIN=${CONTAINER_BIN:-$HERE/target/release/container}
SHIM_BIN=${SHIM_BIN:-$HERE/target/release/containerd-shim-container-v2}
VMINITD_BIN=${VMINITD_BIN:-$HERE/target/x86_64-unknown-linux-gnu/release/vminitd}

PKG=$(mktemp -d "${TMPDIR:-/tmp}/container-deb.XXXXXX")
trap 'rm -rf "$PKG"' EXIT
install -D -m 0755 "$CONTAINER_BIN" "$PKG/usr/bin/container"
install -D -m 0755 "$SHIM_BIN" "$PKG/usr/bin/containerd-shim-container-v2"
install -D -m 0755 "$VMINITD_BIN" "$PKG/usr/libexec/container/vminitd"
mkdir -p "$PKG/usr/share/bash-completion/completions" "$PKG/usr/share/zsh/vendor-completions" \
    "$PKG/usr/share/fish/vendor_completions.d"
"$CONTAINER_BIN" completion bash >"$PKG/usr/share/bash-completion/completions/container"
"$CONTAINER_BIN" completion zsh >"$PKG/usr/share/zsh/vendor-completions/_container"
"$CONTAINER_BIN" completion fish >"$PKG/usr/share/fish/vendor_completions.d/container.fish"
"$CONTAINER_BIN" __man "$PKG/usr/share/man/man1" 2>/dev/null
gzip -9n "$PKG"/usr/share/man/man1/*.1
for unit in "$HERE"/packaging/systemd/*; do
    install -D -m 0644 "$unit" "$PKG/lib/systemd/system/$(basename "$unit")"
done
install -D -m 0644 "$HERE/README.md" "$PKG/usr/share/doc/container/README.md"
mkdir -p "$PKG/DEBIAN"
cat >"$PKG/DEBIAN/control" <<CONTROL
Package: container
Version: $VERSION
Architecture: amd64
Maintainer: Containerization for Linux <noreply@localhost>
Depends: qemu-system-x86 (>= 1:7.2), iproute2, nftables
Recommends: qemu-utils
Suggests: containerd, docker.io
Section: admin
Priority: optional
Installed-Size: $(du -sk "$PKG" | cut -f1)
Description: Linux containers, each in its own lightweight virtual machine
 Pulls OCI images, writes their filesystems as ext4 images and runs every
 container in its own QEMU microvm, with a Docker Engine API socket and a
 containerd shim v2.
CONTROL
mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$PKG" "$OUT/container_${VERSION}_amd64.deb" >/dev/null
echo "$OUT/container_${VERSION}_amd64.deb"
