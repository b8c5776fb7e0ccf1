#!/bin/sh
# Builds the Debian root filesystem tarball of testkit::debian (run by it, as root).
# Usage: debian.sh SUITE MIRROR PACKAGES(comma-separated) OUT.tar
# Writes OUT.tar only when everything succeeded; the caller renames it into the cache.
# testkit hashes this file's text into the cache key: any change here builds a new image.
set -eu
suite=$1 mirror=$2 packages=$3 out=$4

dir=$(mktemp -d "$out.rootfs.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# minbase: essential packages and apt only; --include adds the scenario programs and their
# dependencies (no Recommends). Under `unshare --pid`, anything a maintainer script might leave
# running dies with the namespace; `--mount` keeps debootstrap's /proc mount off the host's table.
unshare --mount --pid --fork --kill-child \
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror"

# Cheap size cuts. The image is for tests: no package indexes, downloaded .debs, docs,
# translations or man pages.
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/cache/debconf/*-old \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
    "$dir"/usr/share/locale/* "$dir"/usr/share/lintian "$dir"/debootstrap
# The log directories stay: nginx and postgres refuse to start without theirs.
find "$dir"/var/log -type f -delete
# PostgreSQL's JIT provider is the only user of LLVM and of z3, LLVM's solver (≈120 MiB);
# without the provider postgres turns JIT off for the session, as the tests want under TCG.
rm -f "$dir"/usr/lib/x86_64-linux-gnu/libLLVM-*.so* "$dir"/usr/lib/x86_64-linux-gnu/libz3.so* \
    "$dir"/usr/lib/postgresql/*/lib/llvmjit*
rm -rf "$dir"/usr/lib/postgresql/*/lib/bitcode
# The cluster postgresql-common's postinst made goes; in its place an empty data directory
# owned by postgres, as in docker's postgres image, whose owner and mode a fresh volume mounted
# there takes (chroot: the image's postgres uid, not the host's).
rm -rf "$dir"/var/lib/postgresql/* "$dir"/etc/postgresql/*
chroot "$dir" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
# /dev is the runtime's (vminitd mounts its own); the host's resolver settings stay out.
rm -rf "$dir"/dev/* "$dir"/etc/resolv.conf "$dir"/etc/hostname

# The tarball's "." becomes the container's "/": 0755, not mktemp's 0700.
chmod 0755 "$dir"
tar --numeric-owner -C "$dir" -cf "$out" .
