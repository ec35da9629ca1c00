#!/bin/sh
# make demo: the whole invoke path on this host, end to end.
#  1. snapshots of the example functions (snap-make), timing their cold boot + init
#  2. the snapshots chunked into the embedded default store (snap-chunk put, dir:),
#     then reassembled on the "worker" from the store (snap-chunk get), and one
#     restore records each function's page access order (REAP) next to it
#  3. assignd (sandbox placement, journal) and routerd (the Lambda Invoke API)
#  4. invokes through the Lambda API with the AWS CLI, and with curl's SigV4 for timing
#  5. per function: cold boot + init, first invoke after restore, warm invoke; and a
#     latency distribution plot (gnuplot) of cold vs restored vs warm, like the talk's
# Usage: scripts/demo.sh [BUILD_DIR]
set -eu
O=${1:-build}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=$ROOT/$O/bin GUEST=$ROOT/$O/guest
CLIENT=$ROOT/tests/cli/nano_client.py
OUT=$ROOT/$O/demo
N=${DEMO_RUNS:-20}
T=$(mktemp -d /tmp/kindling-demo.XXXXXX)
cleanup() {
    [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null
    [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
[ -c /dev/kvm ] || { echo "demo: /dev/kvm is missing: kindling needs KVM to run microVMs" >&2; exit 69; }
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
ms() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) * 1000))" "$1"; }

export KINDLING_CONVERGENCE_SECRET=6b696e646c696e672064656d6f20636f6e76657267656e636520736563726574
export KINDLING_TENANT_KEY=6b696e646c696e672064656d6f2074656e616e74206b6579206b6579206b6579

# Functions: name, guest image, memory, guest command line, request.
FUNCS="hello:hello.elf:32::{\"name\":\"kindling\"}
init-heavy:init-heavy.elf:128:table=64 touch=25:walk"

step "1. boot each function once and snapshot it when its init is done (snap-make)"
printf '%s\n' "$FUNCS" | while IFS=: read -r name elf mem args req; do
    "$BIN/snap-make" --nano "$GUEST/$elf" --mem "$mem" --boot-args "$args" --out "$T/$name.snap" --json >"$T/$name.make"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('  %-11s boot + init to ready: %7.1f ms, %5.1f MiB of memory data' % (sys.argv[2], j['init_ms'], j['mem_data_bytes']/1048576))" "$T/$name.make" "$name"
done

step "2. chunk the snapshots into the store (dir:$T/store), reassemble them on the worker"
printf '%s\n' "$FUNCS" | while IFS=: read -r name elf mem args req; do
    id=$("$BIN/snap-chunk" put "$T/$name.snap" --store "dir:$T/store" --layer function --no-progress)
    "$BIN/snap-chunk" get "$id" --store "dir:$T/store" --out "$T/worker-$name" --no-progress
    echo "  $name: manifest $id"
    # REAP: restore once, recording the order the function touches its memory on
    # an invoke; assignd prefetches that working set for every later restore.
    printf '%s' "$req" >"$T/req"
    "$BIN/fc-launch" --restore "$T/worker-$name" --vsock "$T/rec.sock" --record-access "$T/worker-$name/access.log" -q >/dev/null &
    python3 "$CLIENT" "$T/rec.sock" invoke "$T/req" exit 0 >/dev/null
    wait $!
done

step "3. start assignd (placement + journal) and routerd (Lambda API)"
AK=AKIDKINDLINGDEMO SK=kindling-demo-secret
echo "$AK $SK 123456789012" >"$T/credentials"
chmod 600 "$T/credentials"  # routerd refuses a secrets file others may read
python3 - "$T" "$FUNCS" >"$T/functions.json" <<'PY'
import json, sys
t, funcs = sys.argv[1], sys.argv[2]
fs = []
for line in funcs.splitlines():
    name, elf, mem, args, req = line.split(":", 4)
    fs.append({"name": name, "tenant": "123456789012", "memory": int(mem), "timeout": 30, "concurrency": 10,
               "snapshot": {"dir": f"{t}/worker-{name}"}})
print(json.dumps({"functions": fs}, indent=1))
PY
"$BIN/assignd" --socket "$T/assignd.sock" --journal "file:$T/journal" --run-dir "$T/run" >"$T/assignd.out" 2>"$T/assignd.err" &
APID=$!
i=0; while [ ! -S "$T/assignd.sock" ]; do i=$((i + 1)); [ $i -gt 500 ] && { cat "$T/assignd.err"; exit 1; }; sleep 0.01; done
"$BIN/routerd" --listen 127.0.0.1:0 --functions "$T/functions.json" --credentials "$T/credentials" \
    --assignd "$T/assignd.sock" --queue-dir "$T/queue" >"$T/routerd.out" 2>"$T/routerd.err" &
RPID=$!
i=0; while [ ! -s "$T/routerd.out" ]; do i=$((i + 1)); [ $i -gt 500 ] && { cat "$T/routerd.err"; exit 1; }; sleep 0.01; done
ADDR=$(head -1 "$T/routerd.out")
echo "  assignd on $T/assignd.sock, routerd on http://$ADDR"

step "4. invoke through the Lambda API with the AWS CLI"
export AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_MAX_ATTEMPTS=1
if command -v aws >/dev/null; then
    echo "  \$ aws lambda list-functions --endpoint-url http://$ADDR"
    aws lambda list-functions --endpoint-url "http://$ADDR" --query 'Functions[].[FunctionName,MemorySize]' --output text | sed 's/^/    /'
    echo "  \$ aws lambda invoke --endpoint-url http://$ADDR --function-name hello --payload '{\"name\":\"kindling\"}' out.json"
    # AWS CLI v2 takes the payload as base64 unless told otherwise; v1 takes it raw.
    fmt=""
    aws --version 2>&1 | grep -q '^aws-cli/2' && fmt="--cli-binary-format raw-in-base64-out"
    # shellcheck disable=SC2086
    aws lambda invoke --endpoint-url "http://$ADDR" --function-name hello --payload '{"name":"kindling"}' \
        $fmt "$T/out.json" | sed 's/^/    /'
    echo "    out.json: $(cat "$T/out.json")"
else
    echo "  (the AWS CLI is not installed; scripts/install-deps.sh installs it)"
fi

# Timed invokes: curl signs with SigV4 itself, so no CLI start-up is in the figure.
invoke() {  # FUNCTION PAYLOAD -> prints seconds
    curl -sS -o "$T/answer" -w '%{time_total}\n' --aws-sigv4 "aws:amz:us-east-1:lambda" --user "$AK:$SK" \
        -H 'Content-Type: application/json' --data-binary "$2" "http://$ADDR/2015-03-31/functions/$1/invocations"
}
# drain FUNCTION: stop its sandboxes, and wait until none is left (routerd gives back
# the lease it holds once it sees the drain, within half its --lease-hold-ms).
drain() {
    curl -sS -o /dev/null --unix-socket "$T/assignd.sock" -X POST -d "{\"function\":\"$1\"}" http://assignd/v1/drain
    i=0
    until curl -sS --unix-socket "$T/assignd.sock" http://assignd/v1/sandboxes | python3 -c '
import json, sys
sys.exit(any(s["function"] == sys.argv[1] and s["state"] != "dead" for s in json.load(sys.stdin)))' "$1"; do
        i=$((i + 1)); [ $i -gt 500 ] && { echo "demo: $1 sandboxes still running after a drain" >&2; exit 1; }
        sleep 0.01
    done
}

step "5. cold boot + init vs restore from the snapshot vs warm ($N runs each)"
: >"$OUT/latency.dat"
printf '%s\n' "$FUNCS" | while IFS=: read -r name elf mem args req; do
    printf '%s' "$req" >"$T/req"
    for k in $(seq 1 $((N / 4 + 2))); do
        rm -f "$T/cold.sock"
        s=$(python3 - "$BIN/fc-launch" "$GUEST/$elf" "$mem" "$args" "$T/cold.sock" "$T/req" <<'PY'
import os, socket, subprocess, sys, time
fc, elf, mem, args, sock, req = sys.argv[1:]
payload = open(req, "rb").read()
t0 = time.perf_counter()
vm = subprocess.Popen([fc, "--kernel", elf, "--mem", mem, "--boot-args", args, "--vsock", sock, "-q"],
                      stdout=subprocess.DEVNULL)
while True:  # the guest answers CONNECT once its driver is up
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"CONNECT 9000\n")
        f = s.makefile("rb")
        if f.readline().startswith(b"OK "):
            break
    except OSError:
        pass
    s.close()
    time.sleep(0.0002)
s.sendall(b"INVOKE %d\n" % len(payload) + payload)
n = int(f.readline().split()[1])
f.read(n)
print(time.perf_counter() - t0)
s.sendall(b"EXIT 0\n")
vm.wait()
PY
)
        echo "$name cold $s" >>"$OUT/latency.dat"
    done
    for k in $(seq 1 "$N"); do
        drain "$name"
        echo "$name restored $(invoke "$name" "$(cat "$T/req")")" >>"$OUT/latency.dat"  # restore + prefetch
        echo "$name warm $(invoke "$name" "$(cat "$T/req")")" >>"$OUT/latency.dat"
    done
    python3 - "$OUT/latency.dat" "$name" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith(sys.argv[2] + " ")]
def med(kind):
    v = sorted(float(r[2]) * 1000 for r in rows if r[1] == kind)
    return "%8.1f ms (p10 %.1f, p90 %.1f)" % (statistics.median(v), v[len(v) // 10], v[min(len(v) - 1, len(v) * 9 // 10)])
print("  %-11s cold boot + init -> answer %s" % (sys.argv[2], med("cold")))
print("  %-11s first invoke after restore %s   (via routerd + assignd)" % ("", med("restored")))
print("  %-11s warm invoke                %s   (via routerd + assignd)" % ("", med("warm")))
PY
done

step "6. latency distribution plot"
if command -v gnuplot >/dev/null; then
    python3 - "$OUT/latency.dat" "$OUT" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
for name in sorted({r[0] for r in rows}):
    for kind in ("cold", "restored", "warm"):
        v = sorted(float(r[2]) * 1000 for r in rows if r[0] == name and r[1] == kind)
        with open(f"{sys.argv[2]}/{name}-{kind}.cdf", "w") as f:
            for i, x in enumerate(v):
                f.write(f"{x} {(i + 1) / len(v)}\n")
PY
    for name in $(printf '%s\n' "$FUNCS" | cut -d: -f1); do
        gnuplot <<EOG
set terminal pngcairo size 900,500 noenhanced
set output "$OUT/latency-$name.png"
set title "$name: time to answer an invoke (CDF, $N runs; kindling on a 2-core PVM host)"
set xlabel "milliseconds (log scale)"
set ylabel "fraction of invokes"
set logscale x
set key bottom right
set grid
plot "$OUT/$name-cold.cdf" using 1:2 with steps lw 2 title "cold: boot + init", \
     "$OUT/$name-restored.cdf" using 1:2 with steps lw 2 title "restored from snapshot (uffd + REAP prefetch)", \
     "$OUT/$name-warm.cdf" using 1:2 with steps lw 2 title "warm sandbox"
EOG
        echo "  $OUT/latency-$name.png"
    done
else
    echo "  (gnuplot is not installed; the raw samples are in $OUT/latency.dat)"
fi
echo "  raw samples: $OUT/latency.dat"
