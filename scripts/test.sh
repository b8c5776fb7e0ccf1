#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests and the integration tests that drive the
# real `container` binary against a local registry and real VMs (QEMU; TCG where KVM cannot be used).
# Installs and builds what the tests need first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
# The static guest init that setup.sh built; tests that boot VMs use it rather than building again.
export VMINITD_STATIC=$PWD/target/x86_64-unknown-linux-gnu/release/vminitd
export CONTAINER_VMINITD=$VMINITD_STATIC
echo "==> cargo test" >&2
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
echo "==> all tests passed" >&2
