# Shared by the benchmark scripts: timing one command with its peak memory, medians, and the
# memory (PSS) of a container's monitor with everything it started.
# Source it after exporting WORK (the run directory every measured process names).

# Runs the shell function "$1" once; prints "wall_seconds peak_rss_kib" (RSS summed over the
# processes it started, each at its own peak). The wall time is taken when the command is
# reaped, not at the next sample; the sampler walks only the command's own process tree
# (/proc/PID/task/*/children) every 20 ms, so it neither rounds the time up to its period nor
# competes for the CPU with a scan of every process. MEASURE_SCAN_WORK=1 also counts processes
# outside the tree whose command line names $WORK (a containerd shim is containerd's child).
# Each measurement starts after an untimed pause (MEASURE_PAUSE seconds, default 1): cold VM
# starts run back to back alternated between two speeds about 11 % apart on this machine, where
# starts one second apart spread by about 1.5 % (docs/benchmarks.md, "Seventh pass").
measure() {
    python3 - "$1" <<'PY'
import os, subprocess, sys, threading, time
what = sys.argv[1]
peaks = {}
done = threading.Event()
def tree(pid):
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for c in f.read().split():
                    out += tree(int(c))
    except OSError:
        pass
    return out
def scan_work():
    work, out = os.environ["WORK"], []
    for pid in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if pid.isdigit() and work in cmd and "python3" not in cmd and "bash" not in cmd.split("\0")[0]:
            out.append(int(pid))
    return out
def sample(root):
    while not done.is_set():
        pids = set(tree(root)[1:])  # [0] is the bash running the function
        if os.environ.get("MEASURE_SCAN_WORK"):
            pids |= set(scan_work())
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]))
            except OSError:
                pass
        done.wait(0.02)
time.sleep(float(os.environ.get("MEASURE_PAUSE", "1")))
t0 = time.monotonic()
p = subprocess.Popen(["bash", "-c", what], stdout=subprocess.DEVNULL)
sampler = threading.Thread(target=sample, args=(p.pid,))
sampler.start()
p.wait()
wall = time.monotonic() - t0
done.set()
sampler.join()
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
# Sums, over the monitor $1 and its descendants, the number the awk program $3 prints for
# /proc/PID/$2.
tree_sum() {
    local p t=0 v
    for p in $(tree "$1"); do
        v=$(awk "$3" /proc/"$p"/"$2" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# PSS in KiB summed over the monitor $1 and its descendants.
pss() { tree_sum "$1" smaps_rollup '/^Pss:/{print $2}'; }

# Copies the virtio block modules of the modules directory $1 into $2.
raw_modules() {
    local m f
    mkdir -p "$2"
    for m in virtio virtio_ring virtio_mmio virtio_blk; do
        f=$(find "$1" -name "$m.ko*" | head -1)
        if [ -n "$f" ]; then cp "$f" "$2/"; fi
    done
}

# raw_boot KERNEL CPIO NAME: one boot of the raw floor: QEMU microvm (same machine and vCPU
# model as ours) with KERNEL and the initramfs CPIO, the cached ext4 rootfs $rootfs through a
# throw-away qcow2 overlay as /dev/vda; the console goes to $WORK/NAME-console.log. Needs
# $WORK, $rootfs and $tsc (host TSC kHz) exported.
raw_boot() {
    qemu-img create -q -f qcow2 -F raw -b "$rootfs" "$WORK/$3.qcow2"
    qemu-system-x86_64 -M microvm,pit=on,pic=on,rtc=on,isa-serial=on -accel tcg -cpu qemu64,+arat -smp 1 -m 512M \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$1" -initrd "$2" \
        -append "console=ttyS0 rdinit=/init panic=-1 reboot=t pci=off i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable no_timer_check cryptomgr.notests quiet tsc_early_khz=$tsc" \
        -serial "file:$WORK/$3-console.log" \
        -drive "id=d0,file=$WORK/$3.qcow2,format=qcow2,if=none,cache=unsafe" -device virtio-blk-device,drive=d0
    rm -f "$WORK/$3.qcow2"
}

# The raw floor's initramfs, packed to $2 from the directory $1: busybox and an init that loads
# whatever virtio block modules the caller put into $1/mod (none for a kernel with them built
# in), mounts /dev/vda as ext4 and powers off.
raw_initfs() {
    mkdir -p "$1/bin" "$1/mnt" "$1/proc" "$1/dev" "$1/mod"
    cp /bin/busybox "$1/bin/"
    cat >"$1/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_blk; do
    [ -f /mod/$m.ko ] && /bin/busybox insmod /mod/$m.ko
done
while [ ! -b /dev/vda ]; do /bin/busybox sleep 0.01; done
/bin/busybox mount -t ext4 /dev/vda /mnt
/bin/busybox umount /mnt
/bin/busybox poweroff -f
EOF
    chmod 755 "$1/init"
    (cd "$1" && find . | cpio -o -H newc --quiet >"$2")
}
