# Shell helpers to run Debian's docker-registry (the CNCF distribution registry) on loopback.
# Source this file; call `registry_start DIR` (sets REGISTRY_ADDR and REGISTRY_PID) and
# `registry_stop`. Used by the quickstart and the benchmarks; the Rust tests have their own.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

registry_start() {
    local dir=$1 port
    port=$(free_port)
    mkdir -p "$dir/storage"
    cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    REGISTRY_ADDR=127.0.0.1:$port
    for _ in $(seq 100); do
        curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "registry did not start; log:" >&2
    cat "$dir/registry.log" >&2
    return 1
}

registry_stop() {
    # The registry ends by our SIGTERM, so `wait` reports 143; that is the expected end, and it
    # must not become the exit status of a script whose EXIT trap calls this.
    if [ -n "${REGISTRY_PID:-}" ]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
    fi
    REGISTRY_PID=
}

# Writes a busybox-static root filesystem tarball (busybox plus its applet symlinks) to $1.
busybox_rootfs_tar() {
    local out=$1 tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp"/{bin,etc,root,tmp,proc,sys,dev}
    cp /bin/busybox "$tmp/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
    tar -C "$tmp" --numeric-owner -cf "$out" .
    rm -rf "$tmp"
}
