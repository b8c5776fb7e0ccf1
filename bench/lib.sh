# Shared by the benchmark scripts: timing one command with its peak memory, medians, and the
# memory (PSS) of a container's monitor with everything it started.
# Source it after exporting WORK (the run directory every measured process names).

# Runs the shell function "$1" once; prints "wall_seconds peak_rss_kib" (RSS summed over the
# processes that mention $WORK in their command line, each at its own peak).
measure() {
    python3 - "$1" <<'PY'
import os, subprocess, sys, time
what, work = sys.argv[1], os.environ["WORK"]
peaks = {}
def sample():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            if work not in cmd or "python3" in cmd or "bash" in cmd.split("\0")[0]:
                continue
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]))
        except OSError:
            pass
t0 = time.monotonic()
p = subprocess.Popen(["bash", "-c", what], stdout=subprocess.DEVNULL)
while p.poll() is None:
    sample()
    time.sleep(0.02)
wall = time.monotonic() - t0
if p.returncode != 0:
    sys.exit(f"{what} failed with {p.returncode}")
print(f"{wall:.3f} {sum(peaks.values())}")
PY
}

# The median of the arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

# The monitor and its descendants, one pid a line.
tree() {
    echo "$1"
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$c"; done
}
# PSS in KiB summed over the monitor $1 and its descendants.
pss() {
    local p t=0 v
    for p in $(tree "$1"); do
        v=$(awk '/^Pss:/{print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
