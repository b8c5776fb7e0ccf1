#!/usr/bin/env bash
# Runs every fuzz target until RUNS executions (default 10 million) or SECONDS of fuzzing
# (default 3600), whichever comes first, and prints each target's execution count, speed and
# findings; exits non-zero if any target found a crash. Outside CI: docs/security.md records
# the figures.
#
# Usage: fuzz/run.sh [RUNS] [SECONDS] [TARGET...]   (installs cargo-fuzz and uses nightly)
# FUZZ_SANITIZER=none builds without AddressSanitizer: about 5 times the executions a second
# for the ext4 targets (safe Rust, where a fault shows as a panic, an overflow check or the
# targets' own checks; ASan adds only the few unsafe blocks). Default: address.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-10000000}
SECS=${2:-3600}
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(agent_frames archive_load tar_to_ext4 layer_stack)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# The ext4 targets walk every image they build with our own reader and give every Nth to
# e2fsck (a process per image would hold them to tens of executions a second).
export EXT4_FUZZ_FSCK_EVERY=${EXT4_FUZZ_FSCK_EVERY:-1000}
SANITIZER=${FUZZ_SANITIZER:-address}

# Per-target input limits (as in README.md).
declare -A ARGS=(
    [agent_frames]="-max_len=65536"
    [archive_load]="-max_len=16384"
    [tar_to_ext4]="-max_len=16384"
    [layer_stack]="-max_len=3000 -len_control=0"
)
failed=0
echo "sanitizer: $SANITIZER"
printf '%-14s %14s %10s %9s %s\n' target executions seconds exec/s result
for t in "${targets[@]}"; do
    log=$(mktemp)
    mkdir -p "corpus/$t"
    t0=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # ARGS holds several flags
    cargo +nightly fuzz run -s "$SANITIZER" "$t" "corpus/$t" -- -runs="$RUNS" -max_total_time="$SECS" \
        -print_final_stats=1 ${ARGS[$t]} >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        result="no findings"
    elif grep -q 'libFuzzer: run interrupted' "$log"; then
        # Stopped by hand (SIGINT): the count so far stands, nothing was found.
        result="interrupted, no findings"
    else
        result="FOUND: $(grep -m1 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" || echo "exit $rc")"
        failed=1
    fi
    secs=$(( $(date +%s) - t0 ))
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    speed=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
    printf '%-14s %14s %10s %9s %s\n' "$t" "${execs:-?}" "$secs" "${speed:-?}" "$result"
    case "$result" in *"no findings") ;; *) tail -40 "$log" >&2 ;; esac
    rm -f "$log"
done
exit "$failed"
