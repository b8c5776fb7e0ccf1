#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests and the integration tests that drive the
# real `container` binary against a local registry and real VMs (QEMU; TCG where KVM cannot be used).
# Installs and builds what the tests need first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

# Tests that need root, QEMU, a registry or network namespaces are ignored unless this cfg is on.
# clippy and test get the same flags so that one build of the dependencies serves both; it is set
# only after setup.sh so that the release binaries setup.sh built stay valid.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg container_testenv"
# A fresh build gains nothing from incremental state, which would take several GB more.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The build and the tests' VMs need several GB; running out half-way fails in confusing places
# (a linker killed by SIGBUS), so say so up front.
free_kib=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "$free_kib" -lt $((10 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kib / 1024)) MiB free under $PWD; the test build and its VMs need about 10 GiB" >&2
fi

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
# The static guest init that setup.sh built; tests that boot VMs use it rather than building again.
export CONTAINER_VMINITD=$PWD/target/x86_64-unknown-linux-gnu/release/vminitd
echo "==> cargo test" >&2
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
echo "==> all tests passed" >&2
