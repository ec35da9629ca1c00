#!/bin/sh
# s3rver (npm) as a local S3 endpoint for tests and benchmarks.
#
#   scripts/s3rver.sh run DIR [BUCKET...]    foreground (exec: the pid is the server's);
#                                            writes DIR/endpoint once it listens
#   scripts/s3rver.sh start DIR [BUCKET...]  background; prints the endpoint, DIR/pid
#   scripts/s3rver.sh stop DIR
#   scripts/s3rver.sh env                    prints the variables a client needs
#   scripts/s3rver.sh check                  exit 0 when s3rver can run, else 77 + why
#
# Listens on 127.0.0.1, port chosen by the kernel; objects live in DIR/data.  BUCKETs
# are created at start.  Credentials: s3rver 3.x knows one access key, S3RVER with
# secret S3RVER; it refuses any other key id (403 InvalidAccessKeyId) but does not
# check SigV4 signatures (tests/cli/s3_faulty_proxy.py --verify-secret does).
# s3rver is installed by scripts/install-deps.sh under $KINDLING_NODE_DIR
# (default /opt/kindling/node).  Exit 77 with a reason when it is not there.
set -eu

NODE_DIR=${KINDLING_NODE_DIR:-/opt/kindling/node}
MOD=$NODE_DIR/node_modules/s3rver

need() {
    command -v node >/dev/null 2>&1 || { echo "s3rver.sh: node is not installed (scripts/install-deps.sh)" >&2; exit 77; }
    [ -f "$MOD/package.json" ] || { echo "s3rver.sh: s3rver is not installed in $NODE_DIR (scripts/install-deps.sh)" >&2; exit 77; }
}

cmd=${1:-}
case $cmd in
run)
    need
    dir=$2; shift 2
    mkdir -p "$dir/data"
    rm -f "$dir/endpoint"
    buckets=$(printf '%s\n' "$@" | paste -sd, -)
    # The server itself is this process (exec): the caller's kill stops it.
    # --openssl-legacy-provider: s3rver encrypts ListObjectsV2 continuation tokens with
    # DES, which OpenSSL 3 (node >= 17) only has in its legacy provider.
    exec node --openssl-legacy-provider -e '
const S3rver = require(process.argv[1]);
const fs = require("fs");
const [dir, buckets] = [process.argv[2], process.argv[3]];
const configureBuckets = buckets ? buckets.split(",").map(name => ({ name, configs: [] })) : [];
new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir + "/data", configureBuckets })
  .run()
  .then(({ address, port }) => {
    const ep = "http://" + address + ":" + port;
    fs.writeFileSync(dir + "/endpoint.tmp", ep + "\n");
    fs.renameSync(dir + "/endpoint.tmp", dir + "/endpoint");
    console.log("s3rver: listening on " + ep);
  })
  .catch(e => { console.error("s3rver: " + e.message); process.exit(69); });
for (const s of ["SIGTERM", "SIGINT"]) process.on(s, () => process.exit(0));
' "$MOD" "$dir" "$buckets"
    ;;
start)
    need
    dir=$2; shift 2
    mkdir -p "$dir"
    "$0" run "$dir" "$@" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    i=0
    while [ ! -s "$dir/endpoint" ]; do
        i=$((i + 1))
        if [ $i -gt 500 ] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "s3rver.sh: s3rver did not start:" >&2; cat "$dir/log" >&2; exit 69
        fi
        sleep 0.02
    done
    cat "$dir/endpoint"
    ;;
stop)
    dir=$2
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
    ;;
check)
    need
    ;;
env)
    echo "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1"
    ;;
*)
    echo "usage: s3rver.sh run|start DIR [BUCKET...] | stop DIR | env | check" >&2
    exit 64
    ;;
esac
