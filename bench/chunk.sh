#!/bin/sh
# bench/chunk: snap-chunk put and get throughput on a 1 GiB synthetic snapshot,
# next to the machine's single-core limits measured in the same run (openssl speed
# for SHA-256 and AES-256-GCM, zstd -b1 on the same mem file), and dedup of N
# functions on one runtime.  Figures only.
#   CHUNK_RUNS=3       runs per figure (median and min-max printed)
#   CHUNK_MIB=1024     size of the snapshot's mem file
#   CHUNK_FUNCTIONS=4  functions in the dedup figure
#   CHUNK_DIR=...      scratch directory (default /dev/shm when it has room, so
#                      the figures are CPU, not disk; get to disk is measured too)
set -u
O=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SC=$ROOT/$O/bin/snap-chunk
MKSNAP=$ROOT/bench/chunk/mksnap.sh
RUNS=${CHUNK_RUNS:-3}
MIB=${CHUNK_MIB:-1024}
NFN=${CHUNK_FUNCTIONS:-4}
CORES=$(nproc)
[ -x "$SC" ] || { echo "bench/chunk: skipped: $SC not built"; exit 0; }
for t in openssl zstd awk; do
    command -v $t >/dev/null || { echo "bench/chunk: skipped: no $t"; exit 0; }
done
if [ -z "${CHUNK_DIR:-}" ]; then
    need_kb=$((MIB * 1024 * 3))
    if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt "$need_kb" ]; then
        CHUNK_DIR=/dev/shm
    else
        CHUNK_DIR=${TMPDIR:-/tmp}
    fi
fi
W=$(mktemp -d "$CHUNK_DIR/kindling-bench-chunk.XXXXXX")
DISK=$(mktemp -d "${TMPDIR:-/tmp}/kindling-bench-chunk-disk.XXXXXX")
trap 'rm -rf "$W" "$DISK"' EXIT INT TERM
export KINDLING_CONVERGENCE_SECRET=6b696e646c696e672062656e636820636f6e76657267656e636520736563726574
export KINDLING_TENANT_KEY=6b696e646c696e672062656e63682074656e616e74206b65792030303030303031

now() { date +%s.%N; }
# cpu_to VAR: CPU seconds (user + sys) used so far by finished children of this
# shell.  `times` must run in this shell, not in a $(...) subshell.
cpu_to() {
    times >"$W/times"
    _v=$(tail -n 1 "$W/times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] } print s }')
    eval "$1=\$_v"
}
# stats: median, min and max of the numbers on stdin, "median (min-max)".
stats() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%7.0f (%.0f-%.0f)", m, v[1], v[NR] }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
jfield() { sed "s/.*\"$1\":\\([0-9.e+-]*\\).*/\\1/"; }

echo "bench/chunk: $MIB MiB snapshot in $CHUNK_DIR, $RUNS runs, $CORES cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$MKSNAP" "$W/snap" "$MIB" bench || { echo "bench/chunk: mksnap failed"; exit 0; }
bytes=$(du -sb --apparent-size "$W/snap" | cut -f1)
echo "  snapshot: $bytes bytes; mem = 2/8 random, 2/8 text-like, 1/8 one repeated block, 1/8 written zeros, 2/8 holes"

# --- single-core limits, same run -------------------------------------------------
# openssl speed: last column = 16 KiB blocks, in 1000s of bytes per second.
sha=$(openssl speed -seconds 2 -evp sha256 2>/dev/null | awk '/^sha256/ {v = $NF} END {sub("k", "", v); printf "%.0f", v / 1000}')
aes=$(openssl speed -seconds 2 -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM/ {v = $NF} END {sub("k", "", v); printf "%.0f", v / 1000}')
zmem=$(zstd -b1 -i3 "$W/snap/mem" 2>&1 | tr '\r' '\n' | awk '/MB\/s/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "MB/s") {print $i; break}}' | tail -n 1)
dd if="$W/snap/mem" of="$W/text" bs=1M skip=$((MIB / 4)) count=$((MIB / 4)) status=none
ztext=$(zstd -b1 -i3 "$W/text" 2>&1 | tr '\r' '\n' | awk '/MB\/s/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "MB/s") {print $i; break}}' | tail -n 1)
rm -f "$W/text"
echo "  limits (1 core): sha256 $sha MB/s, aes-256-gcm $aes MB/s, zstd -1 $zmem MB/s (whole mem), $ztext MB/s (text part)"

# --- put ----------------------------------------------------------------------
# Data bytes: the bytes in non-zero chunks, the ones that get hashed and sealed.
data=$("$SC" put "$W/snap" --store "dir:$W/probe" --layer base --json | jfield data_bytes)
rm -rf "$W/probe"
echo "  data (non-zero chunks): $data bytes"
# put_runs LABEL THREADS ARGS...: MB/s of data wall-clock and per CPU-second.
put_runs() {
    label=$1; th=$2; shift 2
    : >"$W/wall"; : >"$W/percpu"
    r=0
    while [ $r -lt "$RUNS" ]; do
        rm -rf "$W/store"
        cpu_to c0; t0=$(now)
        "$SC" put "$W/snap" --store "dir:$W/store" --threads "$th" "$@" >/dev/null || return
        t1=$(now); cpu_to c1
        awk -v b="$data" -v a="$t0" -v z="$t1" 'BEGIN {print b / (z - a) / 1e6}' >>"$W/wall"
        awk -v b="$data" -v a="$c0" -v z="$c1" 'BEGIN {print b / (z - a) / 1e6}' >>"$W/percpu"
        r=$((r + 1))
    done
    printf "  %-34s %s MB/s   per core %s MB/s\n" "$label, $th thread(s):" "$(stats <"$W/wall")" "$(stats <"$W/percpu")"
    put_wall=$(median <"$W/wall"); put_core=$(median <"$W/percpu")
}
echo "put, MB/s of data, median (min-max); per core = data bytes / CPU seconds:"
put_runs "base (zstd -1)" 1 --layer base
put_runs "base (zstd -1)" "$CORES" --layer base
bw=$put_wall; bc=$put_core
put_runs "function (no zstd)" 1 --layer function
put_runs "function (no zstd)" "$CORES" --layer function
fw=$put_wall; fc=$put_core
awk -v bw="$bw" -v bc="$bc" -v fw="$fw" -v fc="$fc" -v sha="$sha" -v aes="$aes" -v z="$ztext" -v n="$CORES" 'BEGIN {
    # The issue goal: 70% of the slowest stage x cores.  Slowest stage: zstd (on the
    # text part, what it really compresses) for base layers, SHA-256 for function
    # layers.
    sb = z < sha ? z : sha; sf = sha < aes ? sha : aes
    printf "  vs goal (70%% of slowest stage x %d cores): base %.0f of %.0f MB/s (%.0f%% of slowest x cores), function %.0f of %.0f MB/s (%.0f%%)\n", n, bw, 0.7 * sb * n, 100 * bw / (sb * n), fw, 0.7 * sf * n, 100 * fw / (sf * n)
    # Every data byte of a function layer goes through SHA-256 twice (plain text,
    # then ciphertext for the id) and AES-GCM once, one after the other.
    chain = 1 / (2 / sha + 1 / aes)
    printf "  function layer per core %.0f MB/s = %.0f%% of the sha256+aes+sha256 chain (%.0f MB/s); x %d cores = %.0f MB/s\n", fc, 100 * fc / chain, chain, n, chain * n
}'

# --- get ----------------------------------------------------------------------
rm -rf "$W/store"
id=$("$SC" put "$W/snap" --store "dir:$W/store" --layer base) || exit 0
get_runs() {
    label=$1; dest=$2; shift 2
    : >"$W/wall"; : >"$W/data"; : >"$W/percpu"
    r=0
    while [ $r -lt "$RUNS" ]; do
        rm -rf "$dest/out"
        cpu_to c0; t0=$(now)
        "$SC" get "$id" --store "dir:$W/store" --out "$dest/out" "$@" >/dev/null || return
        t1=$(now); cpu_to c1
        awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN {print b / (z - a) / 1e6}' >>"$W/wall"
        awk -v b="$data" -v a="$t0" -v z="$t1" 'BEGIN {print b / (z - a) / 1e6}' >>"$W/data"
        awk -v b="$data" -v a="$c0" -v z="$c1" 'BEGIN {print b / (z - a) / 1e6}' >>"$W/percpu"
        r=$((r + 1))
    done
    rm -rf "$dest/out"
    printf "  %-30s %s MB/s of snapshot, %s MB/s of data, per core %s\n" "$label:" "$(stats <"$W/wall")" "$(stats <"$W/data")" "$(stats <"$W/percpu")"
}
echo "get from a warm dir: store (goal >= 1000 MB/s), median (min-max); holes cost nothing, data is what is fetched and opened:"
get_runs "to $CHUNK_DIR, --no-sync" "$W" --no-sync
get_runs "to $CHUNK_DIR, fsync" "$W"
get_runs "to disk ${TMPDIR:-/tmp}, fsync" "$DISK"
rm -rf "$W/store"

# --- dedup: N functions on one runtime --------------------------------------------
# base 256 MiB, runtime 128 MiB (a diff layer), each function a 32 MiB diff layer.
"$MKSNAP" "$W/base" 256 dbase && "$MKSNAP" "$W/rt" 128 drt || exit 0
objbytes() { find "$W/dstore" -path "$W/dstore/??/*" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
layer_bytes() { "$SC" stat "$1" --store "dir:$W/dstore" --json | jfield stored_bytes; }
b=$("$SC" put "$W/base" --store "dir:$W/dstore" --layer base) || exit 0
sum_b=$(layer_bytes "$b")
sum_f=0
i=1
while [ $i -le "$NFN" ]; do
    "$MKSNAP" "$W/fn$i" 32 "dfn$i" || exit 0
    # Every function build puts the runtime layer it sits on again.
    rt=$("$SC" put "$W/rt" --store "dir:$W/dstore" --layer runtime --parent "$b") || exit 0
    f=$("$SC" put "$W/fn$i" --store "dir:$W/dstore" --layer function --parent "$rt") || exit 0
    sum_f=$((sum_f + $(layer_bytes "$f")))
    rm -rf "$W/fn$i"
    i=$((i + 1))
done
sum_r=$(layer_bytes "$rt")
total=$(objbytes)
awk -v t="$total" -v b="$sum_b" -v r="$sum_r" -v f="$sum_f" -v n="$NFN" 'BEGIN {
    printf "dedup, %d functions on one runtime (base 256 MiB, runtime 128 MiB put once per function, functions 32 MiB):\n", n
    printf "  snapshots put: %d MiB; store: %.1f MB\n", 256 + n * (128 + 32), t / 1e6
    printf "  base %.1f + runtime %.1f + %d x function %.1f = %.1f MB; store / that = %.3f (the rest: %d manifests)\n", b / 1e6, r / 1e6, n, f / n / 1e6, (b + r + f) / 1e6, t / (b + r + f), n + 2
}'
echo "  load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
