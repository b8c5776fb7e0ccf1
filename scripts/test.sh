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
echo "==> cargo test" >&2
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
echo "==> all tests passed" >&2
