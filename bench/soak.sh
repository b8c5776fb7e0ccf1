#!/usr/bin/env bash
# The kill -9 soak (issue 16, "Faults"): `image pull`, `image load`, `image import`, `image
# push`, `rootfs create`, a rootfs cache build by `create`, `run`, `run --rm`, `stop`, `rm`,
# `volume create`, `volume rm`, `network create`, `build` and `commit` killed at a random point
# of their run; the monitor, QEMU and virtiofsd of a
# starting or running container killed at a random point of their life; the Engine API
# server during `docker run -d` and `docker rm -f`; the containerd shim during `ctr run -d`
# and `ctr task exec`; KILLS times each (default 100; the test suite runs 10). After every
# kill the store verifies, `system cleanup` runs, every remaining container is started and
# removed, and the host must be exactly as before: processes,
# links, addresses, nft rules and mounts of the test's namespace, files under the state
# directory. The checks are those of crates/cli/tests/soak.rs and the shim's
# crates/shim/tests/ctr.rs (kill_9_of_the_shim_mid_request); this script only raises the count
# and prints the tallies.
#
# Usage: bench/soak.sh [KILLS] [TEST...]   (root; scripts/setup.sh done; TEST names filter the
# targets, e.g. kill_9_of_qemu). CONTAINER_SOAK_SEED repeats a run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINER_SOAK_KILLS=${1:-100}
shift $(( $# > 0 ? 1 : 0 ))
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg container_testenv"
export CONTAINER_VMINITD=$PWD/target/x86_64-unknown-linux-gnu/release/vminitd
t0=$(date +%s)
set +e
filter='^soak |^test |test result|panicked|assertion|after a kill|differs|^[+-] '
cargo test -p cli --test soak -- --test-threads="${TEST_THREADS:-2}" --nocapture "$@" 2>&1 |
    grep -E "$filter"
status=${PIPESTATUS[0]}
# The shim's soak lives with the shim's tests; it runs unless filters leave it out.
if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -q shim; then
    cargo test -p shim --test ctr -- --nocapture kill_9_of_the_shim 2>&1 | grep -E "$filter"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
set -e
echo "soak: $CONTAINER_SOAK_KILLS kills per target in $(( $(date +%s) - t0 )) s, exit $status"
exit "$status"
