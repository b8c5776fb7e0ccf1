#!/usr/bin/env bash
# Builds the tailored guest kernel (kernel/config-6.1-container) from Debian's linux-source-6.1
# and prints the path of its ELF vmlinux. The Debian cloud kernel stays the default; this one is
# opt-in (README.md, "Guest kernel").
#
#   scripts/build-kernel.sh                      # build if not cached, print the vmlinux path
#   scripts/build-kernel.sh --install [--root DIR]   # and `container system kernel set --binary` it
#   scripts/build-kernel.sh --cached             # print the path if built, else exit 1 (no build)
#
# The build lives outside the clone, in ${CONTAINER_KERNEL_CACHE:-/var/cache/container-kernel}/<key>/,
# where <key> is the sha256 of the fragment's option lines, the base configs and the linux-source
# package version: a second run with the same inputs only prints the cached path. The source tree is
# deleted after a successful build (about 2 GiB); vmlinux, .config and System.map stay.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
fragment="$repo/kernel/config-6.1-container"
cache="${CONTAINER_KERNEL_CACHE:-/var/cache/container-kernel}"
# The fragment is merged onto these; part of the cache key, so changing them rebuilds.
base_configs="x86_64_defconfig kvm_guest.config"
package=linux-source-6.1
install=0
cached_only=0
root_args=()

while (($#)); do
    case "$1" in
    --install) install=1 ;;
    --cached) cached_only=1 ;;
    --root)
        [[ $# -ge 2 ]] || usage
        root_args=(--root "$2")
        shift
        ;;
    --root=*) root_args=(--root "${1#--root=}") ;;
    -h | --help) usage ;;
    *)
        echo "build-kernel.sh: unknown argument $1" >&2
        usage
        ;;
    esac
    shift
done

log() { echo "build-kernel.sh: $*" >&2; }

# Build dependencies: only those missing are installed, so a cached run needs no apt at all.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${missing[*]} (run as root, or apt-get install them)"
        exit 1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# --cached must not install anything: tests call it to find out whether a kernel was built.
if ((cached_only)); then
    version="$(dpkg-query -W -f '${Version}' "$package" 2>/dev/null)" || exit 1
else
    ensure_packages "$package"
    version="$(dpkg-query -W -f '${Version}' "$package")"
fi
tarball="/usr/src/$package.tar.xz"
[[ -f $tarball ]] || { log "$tarball missing (reinstall $package)"; exit 1; }

# Only the option lines count: editing a comment must not cost a kernel build.
key="$( (
    grep -E '^CONFIG_|^# CONFIG_[A-Z0-9_]+ is not set$' "$fragment" | sha256sum
    echo "$base_configs"
    echo "$package $version"
) | sha256sum | cut -c1-16)"
dir="$cache/$key"
vmlinux="$dir/vmlinux"

build() {
    ensure_packages build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils
    local src="$dir/src" jobs
    jobs="$(nproc)"
    rm -rf "$src"
    mkdir -p "$src"
    log "unpacking $package $version into $src"
    tar -xf "$tarball" -C "$src" --strip-components=1
    log "configuring: $base_configs + $(basename "$fragment")"
    # shellcheck disable=SC2086 # two make targets
    make -C "$src" -s $base_configs >/dev/null
    "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment" >"$dir/merge.log" 2>&1
    make -C "$src" -s olddefconfig
    # merge_config.sh only warns when olddefconfig drops an option (unmet dependency, a renamed
    # symbol); a kernel silently missing, say, virtiofs would only show up as a failed mount.
    local bad=0 line opt
    while read -r line; do
        grep -qxF "$line" "$src/.config" || { log "config: wanted $line, got: $(grep -E "^(# )?${line%%=*}[= ]" "$src/.config" || echo nothing)"; bad=1; }
    done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$fragment")
    while read -r opt; do
        ! grep -q "^$opt=" "$src/.config" || { log "config: wanted $opt off, but something selects it"; bad=1; }
    done < <(sed -n 's/^# \(CONFIG_[A-Z0-9_]*\) is not set$/\1/p' "$fragment")
    if ((bad)); then
        rm -rf "$src"
        log "the fragment does not apply cleanly to $package $version"
        exit 1
    fi
    log "building vmlinux with $jobs jobs (log: $dir/build.log; about 8 min on 2 idle cores)"
    local start=$SECONDS
    if ! make -C "$src" -j"$jobs" vmlinux >"$dir/build.log" 2>&1; then
        tail -n 30 "$dir/build.log" >&2
        log "build failed; full log in $dir/build.log"
        exit 1
    fi
    log "built in $((SECONDS - start)) s"
    cp "$src/.config" "$dir/config"
    cp "$src/System.map" "$dir/System.map"
    # Written last and renamed: a vmlinux in the cache is always a complete one.
    cp "$src/vmlinux" "$dir/vmlinux.tmp"
    mv "$dir/vmlinux.tmp" "$vmlinux"
    rm -rf "$src"
}

if ((cached_only)); then
    [[ -f $vmlinux ]] || exit 1
elif [[ ! -f $vmlinux ]]; then
    mkdir -p "$dir"
    # One build per key at a time; a second caller waits and then finds the result.
    exec 9>"$dir/.lock"
    flock 9
    [[ -f $vmlinux ]] || build
    flock -u 9
fi

if ((install)); then
    container="$repo/target/release/container"
    [[ -x $container ]] || container="$(command -v container || true)"
    [[ -n $container ]] || { log "no container binary (cargo build --release, or put it on PATH)"; exit 1; }
    "$container" "${root_args[@]}" system kernel set --binary "$vmlinux" >&2
fi
echo "$vmlinux"
