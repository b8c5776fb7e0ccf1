#!/bin/sh
# Benchmark: the same layers into an ext4 image by
#   (a) ours:      container rootfs create --layer L1 --layer L2 OUT
#   (b) reference: tar -x of each layer into a tmpfs directory, then mkfs.ext4 -d DIR OUT
# Prints the median wall time and peak memory (/usr/bin/time -v) of each and the ratio b/a.
#
# Layers (made once, cached in $BENCH_DIR, default /var/tmp/ext4-bench):
#   1. a Debian rootfs (debootstrap --variant=minbase bookworm) as one gzip layer, or when
#      debootstrap is missing, a copy of /usr (plus busybox) as one layer;
#   2. 100 000 small files (100 directories of 1000 files of 1-2 KiB), gzip.
#
# Usage: bench/ext4.sh [RUNS]   (needs root: tmpfs mount, debootstrap)
set -eu

RUNS=${1:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ext4-bench}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTAINER_BIN:-$HERE/target/release/container}
mkdir -p "$BENCH_DIR"
cd "$BENCH_DIR"

if [ ! -x "$BIN" ]; then
    (cd "$HERE" && cargo build --release -p cli)
fi

if [ ! -f base.tar.gz ]; then
    if command -v debootstrap >/dev/null 2>&1; then
        [ -d debian ] || debootstrap --variant=minbase bookworm debian http://deb.debian.org/debian
        tar -C debian --numeric-owner --xattrs -czf base.tar.gz .
    else
        rm -rf usrcopy && mkdir -p usrcopy/bin
        cp -a /usr usrcopy/usr
        cp /bin/busybox usrcopy/bin/ 2>/dev/null || true
        tar -C usrcopy --numeric-owner -czf base.tar.gz .
        rm -rf usrcopy
    fi
fi

if [ ! -f small.tar.gz ]; then
    python3 - <<'PY'
import io, tarfile, random
random.seed(1)
with tarfile.open("small.tar.gz", "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as t:
    for d in range(100):
        di = tarfile.TarInfo(f"small/d{d:03}")
        di.type = tarfile.DIRTYPE
        di.mode = 0o755
        di.mtime = 1700000000
        t.addfile(di)
        for f in range(1000):
            data = (f"{d}-{f}-" * 200).encode()[: 1024 + random.randrange(1024)]
            fi = tarfile.TarInfo(f"small/d{d:03}/f{f:04}")
            fi.size = len(data)
            fi.mode = 0o644
            fi.mtime = 1700000000
            t.addfile(fi, io.BytesIO(data))
PY
fi

# Size both images the same (bytes and inodes): what ours picks on its own.
"$BIN" rootfs create --layer base.tar.gz --layer small.tar.gz --format json ours.img > summary.json
SIZE=$(python3 -c 'import json; print(json.load(open("summary.json"))["size_bytes"])')
INODES=$(python3 -c 'import json; print(json.load(open("summary.json"))["inodes"])')
echo "layers: $(du -h base.tar.gz | cut -f1) base, $(du -h small.tar.gz | cut -f1) small; image size $SIZE bytes"

cat > reference.sh <<EOS
#!/bin/sh
set -e
D=\$(mktemp -d /tmp/ext4-bench-ref.XXXXXX)
mount -t tmpfs -o size=8g tmpfs "\$D"
tar -C "\$D" --numeric-owner --xattrs --xattrs-include='*' -xzf "$BENCH_DIR/base.tar.gz"
tar -C "\$D" --numeric-owner --xattrs --xattrs-include='*' -xzf "$BENCH_DIR/small.tar.gz"
rm -f "$BENCH_DIR/ref.img"
mkfs.ext4 -q -F -b 4096 -N $INODES -d "\$D" "$BENCH_DIR/ref.img" $((SIZE / 4096))
umount "\$D"
rmdir "\$D"
EOS
chmod +x reference.sh

measure() { # name, command...
    name=$1; shift
    : > "$name.times"
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        /usr/bin/time -v "$@" > /dev/null 2> "$name.time.txt"
        wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$name.time.txt" |
            awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$name.time.txt")
        echo "$wall $rss" >> "$name.times"
        i=$((i + 1))
    done
    sort -n "$name.times" | awk -v n="$RUNS" -v name="$name" '
        { w[NR] = $1; if ($2 > m) m = $2 }
        END { printf "%-10s median wall %.2f s  (min %.2f, max %.2f)  peak RSS %d MiB\n",
              name, w[int((n + 1) / 2)], w[1], w[n], m / 1024 }'
}

measure ours "$BIN" rootfs create --layer base.tar.gz --layer small.tar.gz ours.img
measure reference ./reference.sh

e2fsck -fn ours.img > /dev/null && echo "ours.img: e2fsck -fn clean"
a=$(sort -n ours.times | awk -v n="$RUNS" '{ w[NR] = $1 } END { print w[int((n + 1) / 2)] }')
b=$(sort -n reference.times | awk -v n="$RUNS" '{ w[NR] = $1 } END { print w[int((n + 1) / 2)] }')
awk -v a="$a" -v b="$b" 'BEGIN { printf "ratio reference/ours (median wall): %.2fx\n", b / a }'
echo "note: the reference's tmpfs copy of the tree is page cache, not counted in its RSS"
