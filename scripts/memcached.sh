#!/bin/sh
# Starts N memcached instances on free loopback ports for tests; prints one
# 127.0.0.1:PORT per line, and writes DIR/memcached.K.pid and DIR/memcached.K.addr
# (K = 1..N).  Items up to 2 MiB (-I 2m): chunks are 512 KiB + tag, manifests larger.
# Usage: scripts/memcached.sh DIR N [extra memcached options]
# Stop one: kill "$(cat DIR/memcached.K.pid)".  Exits 77 when memcached is missing.
set -eu
dir=$1; n=$2; shift 2
command -v memcached >/dev/null 2>&1 || { echo "memcached.sh: memcached not installed" >&2; exit 77; }
mkdir -p "$dir"
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
user=""
[ "$(id -u)" = 0 ] && user="-u root"
k=1
while [ "$k" -le "$n" ]; do
    tries=0
    while :; do
        port=$(free_port)
        # shellcheck disable=SC2086
        memcached -d -l 127.0.0.1 -p "$port" -U 0 -m 64 -I 2m -t 2 $user \
            -P "$dir/memcached.$k.pid" "$@" 2>"$dir/memcached.$k.log" || true
        ok=0
        i=0
        while [ $i -lt 100 ]; do
            if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then ok=1; break; fi
            i=$((i + 1)); sleep 0.02
        done
        if [ $ok = 1 ] && [ -s "$dir/memcached.$k.pid" ]; then break; fi
        tries=$((tries + 1))
        if [ $tries -ge 5 ]; then
            echo "memcached.sh: memcached did not start: $(cat "$dir/memcached.$k.log")" >&2
            exit 77
        fi
    done
    echo "127.0.0.1:$port" >"$dir/memcached.$k.addr"
    echo "127.0.0.1:$port"
    k=$((k + 1))
done
