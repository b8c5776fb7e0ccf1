#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine (run as root), then builds.
# Idempotent: a second run only checks. Used by the README's first command and by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

APT_PACKAGES=(
    qemu-system-x86      # the VMs (microvm machine type)
    docker-registry      # CNCF distribution registry, for tests and the demo
    skopeo umoci         # outside oracles / peers for OCI layouts and the pull benchmark
    busybox-static       # test and demo images are built from it
    e2fsprogs            # e2fsck as a test oracle for our ext4 images (never in the product path)
    cpio                 # test oracle for the init filesystem
    apache2-utils        # htpasswd, for registry auth tests
    iproute2 nftables    # networking (bridges, taps, NAT)
    libseccomp-dev libcap-ng-dev   # to build virtiofsd
    debootstrap          # the scenario tests' Debian image (testkit::debian), bench/ext4.sh's rootfs layer
    iperf3               # bench/net-throughput.sh (inside the test containers and on the host)
    buildah              # the oracle `container build` is compared with (docs/build.md)
    # Real clients of `container system service` (the Docker API socket). Only their client
    # binaries are used; dockerd is never started (policy-rc.d keeps the package from doing so).
    docker.io docker-compose python3-docker
    jq xz-utils zstd curl ca-certificates
    containerd           # the shim's tests and bench/shim.sh start their own containerd + ctr
    containernetworking-plugins   # CNI bridge/host-local/loopback for the shim's CRI tests
    protobuf-compiler    # protoc, for the k8s-cri crate (the CRI tests' client) to build
    openssh-client       # ssh-agent/ssh-add: real client and server of the socket relay tests
)

# apt-cache needs package lists; a fresh machine may have none.
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -q

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # qemu-system-x86 7.2 (bookworm) conflicts with a newer backported qemu-utils some machines
    # carry; pin the qemu tools to the qemu-system version so both install together.
    qv=$(apt-cache madison qemu-system-x86 | awk 'NR==1{print $3}')
    pins=()
    if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -qv "^${qv}$"; then
        pins+=("qemu-utils=$qv" "qemu-block-extra=$qv")
    fi
    apt-get install -y -q --no-install-recommends --allow-downgrades "${missing[@]}" "${pins[@]}"
fi

# The guest kernel: Debian's cloud kernel package, downloaded (not installed on the host).
KDIR=.work/kernel
mkdir -p "$KDIR"
if ! ls "$KDIR"/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    log "downloading guest kernel package $pkg"
    (cd "$KDIR" && apt-get download "$pkg")
fi

# virtiofsd serves bind mounts (-v /host:/path) to the VMs; Debian 12 has no package for it.
VIRTIOFSD_VERSION=1.14.0
if ! { command -v virtiofsd || ls "${CARGO_HOME:-$HOME/.cargo}/bin/virtiofsd"; } >/dev/null 2>&1; then
    log "installing virtiofsd $VIRTIOFSD_VERSION from crates.io"
    cargo install --locked virtiofsd --version "$VIRTIOFSD_VERSION"
fi

log "building"
cargo build --release --workspace --bins --exclude vminitd
# vminitd is the guest's PID 1 and must be static (the guest init filesystem has no libc). The
# explicit --target is required so proc-macro crates still build for the host.
RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols' \
    cargo build --release -p vminitd --target x86_64-unknown-linux-gnu
