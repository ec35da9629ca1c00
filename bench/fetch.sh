#!/bin/sh
# bench/fetch: issue 5's snap-fetch figures.  A synthetic snapshot is put into an
# s3rver bucket (the origin), then fetched by snap-fetch from S3 only, through a
# memcached pair (local dir cleared), and from a warm local dir; next to `aws s3 cp
# --recursive` and plain curl loops over the same objects in the same run.  Then the
# hit ratios of 3 "workers" (separate local caches) sharing the memcached pair.
# Figures only, never pass/fail.  Usage: sh bench/fetch.sh [BUILD_DIR]
#   FETCH_RUNS=5        runs per figure (median and min-max printed)
#   FETCH_MIB=256       size of the snapshot's mem file (1024 for the issue's 1 GiB)
#   FETCH_FN_MIB=32     size of each function layer in the hit-ratio mix
#   FETCH_PARALLEL=16   snap-fetch --parallel and curl --parallel-max
#   FETCH_DIR=...       scratch directory (default /dev/shm when it has room)
# Word splitting of $(tier_stat ...) into "set --" is intended; A && B || skip is too.
# shellcheck disable=SC2046,SC2015
set -u
O=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SC=$ROOT/$O/bin/snap-chunk
SF=$ROOT/$O/bin/snap-fetch
MKSNAP=$ROOT/bench/chunk/mksnap.sh
RUNS=${FETCH_RUNS:-5}
MIB=${FETCH_MIB:-256}
FNMIB=${FETCH_FN_MIB:-32}
PAR=${FETCH_PARALLEL:-16}
skip() { echo "bench/fetch: skipped: $*"; exit 0; }
[ -x "$SC" ] && [ -x "$SF" ] || skip "$SC or $SF not built"
for t in aws curl memcached python3 openssl awk; do
    command -v $t >/dev/null 2>&1 || skip "no $t"
done
why=$("$ROOT/scripts/s3rver.sh" check 2>&1) || skip "$why"
if [ -z "${FETCH_DIR:-}" ]; then
    need_kb=$((MIB * 1024 * 4))
    if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt "$need_kb" ]; then
        FETCH_DIR=/dev/shm
    else
        FETCH_DIR=${TMPDIR:-/tmp}
    fi
fi
W=$(mktemp -d "$FETCH_DIR/kindling-bench-fetch.XXXXXX")
cleanup() {
    [ -f "$W/s3/pid" ] && kill "$(cat "$W/s3/pid")" 2>/dev/null
    for p in "$W"/mc/memcached.*.pid; do
        [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
    done
    # Let them exit before returning (bounded): the next bench sees a quiet machine.
    for p in "$W"/s3/pid "$W"/mc/memcached.*.pid; do
        i=0
        while [ -s "$p" ] && [ $i -lt 100 ] && kill -0 "$(cat "$p")" 2>/dev/null; do sleep 0.02; i=$((i + 1)); done
    done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# s3rver's one account; nothing from ~/.aws.
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    AWS_CONFIG_FILE="$W/none" AWS_SHARED_CREDENTIALS_FILE="$W/none" AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION 2>/dev/null || true
export KINDLING_CONVERGENCE_SECRET=6b696e646c696e672062656e636820636f6e76657267656e636520736563726574
export KINDLING_TENANT_KEY=6b696e646c696e672062656e63682074656e616e74206b65792030303030303031

now() { date +%s.%N; }
stats() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%6.0f (%.0f-%.0f)", m, v[1], v[NR] }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rate() { awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN {print b / (z - a) / 1e6}'; }
# tier_stat K < json: "hits p50_ms p99_ms" of tier K;  hits_all < json: hits of every tier.
tier_stat() { python3 -c 'import json,sys; t=json.load(sys.stdin)["tiers"][int(sys.argv[1])]; print(t["hits"], t["p50_ms"], t["p99_ms"])' "$1"; }
hits_all() { python3 -c 'import json,sys; print(" ".join(str(t["hits"]) for t in json.load(sys.stdin)["tiers"]))'; }

echo "bench/fetch: $MIB MiB snapshot in $FETCH_DIR, $RUNS runs, --parallel $PAR, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$MKSNAP" "$W/snap" "$MIB" fetch || skip "mksnap failed"
EP=$("$ROOT/scripts/s3rver.sh" start "$W/s3" kb 2>"$W/s3.err") || skip "s3rver could not be started: $(cat "$W/s3.err")"
S="s3://kb/snap?endpoint=$EP&region=us-east-1"
id=$("$SC" put "$W/snap" --store "$S" --layer base --threads "$(nproc)") || skip "snap-chunk put to s3rver failed"
# The origin's objects, as the baselines see them.
aws --endpoint-url "$EP" s3 ls --recursive s3://kb/snap/ >"$W/ls" || skip "aws s3 ls failed"
nobj=$(wc -l <"$W/ls" | tr -d ' ')
objb=$(awk '{s += $3} END {print s + 0}' "$W/ls")
logical=$(du -sb --apparent-size "$W/snap" | cut -f1)
echo "  origin: s3rver $EP (node, on this machine), s3://kb/snap/: $nobj objects (chunks + manifest), $objb bytes; snapshot $logical bytes"
echo "  MB/s below = object bytes ($objb) / wall-clock seconds of the whole command, median (min-max) of $RUNS runs"
# memcached: room for every object on each server, plus the mix's function layers.
mcm=$((objb * 2 / 1000000 + FNMIB * 4 + 64))
mc=$("$ROOT/scripts/memcached.sh" "$W/mc" 2 -m "$mcm" 2>"$W/mc.err" | paste -sd, -)
[ -n "$mc" ] || skip "memcached could not be started: $(cat "$W/mc.err")"
MC="memcached://$mc"

# --- from S3: snap-fetch next to aws s3 cp and curl, interleaved per run ----------------
# curl config: one url/output pair per object; sequential curl keeps one connection.
awk -v ep="$EP" -v d="$W/curl" '{printf "url = \"%s/kb/%s\"\noutput = \"%s/%s\"\n", ep, $4, d, $4}' "$W/ls" >"$W/curl.cfg"
if ! curl -sSf --create-dirs -K "$W/curl.cfg" 2>"$W/curl.err"; then
    echo "  (curl: unsigned GETs refused by the endpoint: $(head -c 200 "$W/curl.err"); curl figures are skipped)"
    nocurl=1
else
    got=$(find "$W/curl" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    [ "$got" = "$objb" ] || echo "  (curl fetched $got bytes, not $objb)"
    nocurl=0
fi
rm -rf "$W/curl"
for f in aws curl1 curlp sfw sfo sfw50 sfw99 sfo50 sfo99; do : >"$W/r.$f"; done
r=0
while [ $r -lt "$RUNS" ]; do
    rm -rf "$W/dl"
    t0=$(now)
    aws --endpoint-url "$EP" s3 cp --recursive --only-show-errors s3://kb/snap/ "$W/dl/" || skip "aws s3 cp failed"
    t1=$(now); rate "$objb" "$t0" "$t1" >>"$W/r.aws"
    rm -rf "$W/dl"
    if [ $nocurl = 0 ]; then
        t0=$(now)
        curl -sSf --create-dirs -K "$W/curl.cfg" || skip "curl failed"
        t1=$(now); rate "$objb" "$t0" "$t1" >>"$W/r.curl1"
        rm -rf "$W/curl"
        t0=$(now)
        curl -sSf --no-progress-meter --create-dirs -Z --parallel-max "$PAR" -K "$W/curl.cfg" 2>"$W/curl.err" || skip "curl -Z failed: $(head -c 200 "$W/curl.err")"
        t1=$(now); rate "$objb" "$t0" "$t1" >>"$W/r.curlp"
        rm -rf "$W/curl"
    fi
    t0=$(now)
    "$SF" "$id" --store "$S" --warm --parallel "$PAR" --json >"$W/j" || skip "snap-fetch from S3 failed"
    t1=$(now); rate "$objb" "$t0" "$t1" >>"$W/r.sfw"
    set -- $(tier_stat 0 <"$W/j"); echo "$2" >>"$W/r.sfw50"; echo "$3" >>"$W/r.sfw99"
    [ "$1" = "$nobj" ] || echo "  (S3 served $1 of $nobj objects)"
    rm -rf "$W/out"
    t0=$(now)
    "$SF" "$id" --store "$S" --out "$W/out" --no-sync --parallel "$PAR" --json >"$W/j" || skip "snap-fetch --out from S3 failed"
    t1=$(now); rate "$objb" "$t0" "$t1" >>"$W/r.sfo"
    set -- $(tier_stat 0 <"$W/j"); echo "$2" >>"$W/r.sfo50"; echo "$3" >>"$W/r.sfo99"
    r=$((r + 1))
done
cmp -s "$W/snap/mem" "$W/out/mem" || echo "  (snap-fetch --out: mem differs from the snapshot!)"
rm -rf "$W/out"
lat() { printf "p50 %5.1f ms  p99 %5.1f ms" "$(median <"$W/r.$1"50)" "$(median <"$W/r.$1"99)"; }
echo "from S3 only (s3rver), MB/s of objects, median (min-max); latency = snap-fetch's per-get p50/p99 (median over runs):"
printf "  %-44s %s MB/s\n" "aws s3 cp --recursive (baseline):" "$(stats <"$W/r.aws")"
if [ $nocurl = 0 ]; then
    printf "  %-44s %s MB/s\n" "curl -K, sequential, one connection:" "$(stats <"$W/r.curl1")"
    printf "  %-44s %s MB/s\n" "curl -K -Z --parallel-max $PAR:" "$(stats <"$W/r.curlp")"
fi
printf "  %-44s %s MB/s   %s\n" "snap-fetch --warm (fetch + check):" "$(stats <"$W/r.sfw")" "$(lat sfw)"
printf "  %-44s %s MB/s   %s\n" "snap-fetch --out --no-sync (reassembled):" "$(stats <"$W/r.sfo")" "$(lat sfo)"
awk -v a="$(median <"$W/r.aws")" -v w="$(median <"$W/r.sfw")" -v o="$(median <"$W/r.sfo")" 'BEGIN {
    printf "  snap-fetch(S3) / aws s3 cp: --warm %.2fx, --out %.2fx (goal >= 2x)\n", w / a, o / a }'
echo "  reproduce: aws --endpoint-url EP s3 cp --recursive s3://kb/snap/ DIR;  curl -sSf --create-dirs [-Z] -K CFG;"
echo "             snap-fetch ID --store 's3://kb/snap?endpoint=EP&region=us-east-1' --warm|--out DIR --no-sync --parallel $PAR --json"

# --- memcached warm, local warm -----------------------------------------------------
U="tiered:dir:$W/cache|$MC|$S"
"$SF" "$id" --store "$U" --warm --parallel "$PAR" --json >"$W/j" || skip "filling memcached failed"
set -- $(hits_all <"$W/j")
echo "tiered: local dir | memcached pair ($mc, -m $mcm each) | S3; first fetch (fills): local $1, memcached $2, S3 $3 objects"
# tier_runs LABEL K MODE CLEAR: runs of snap-fetch through $U; K = the tier expected to serve.
tier_runs() {
    label=$1; k=$2; mode=$3; clear=$4
    : >"$W/r.t"; : >"$W/r.t50"; : >"$W/r.t99"; : >"$W/r.ts"
    r=0
    while [ $r -lt "$RUNS" ]; do
        [ "$clear" = clear ] && rm -rf "$W/cache"
        rm -rf "$W/out"
        if [ "$mode" = out ]; then set -- --out "$W/out" --no-sync; else set -- --warm; fi
        t0=$(now)
        "$SF" "$id" --store "$U" "$@" --parallel "$PAR" --json >"$W/j" || { echo "  $label: snap-fetch failed"; return; }
        t1=$(now); rate "$objb" "$t0" "$t1" >>"$W/r.t"
        set -- $(tier_stat "$k" <"$W/j"); echo "$1" >>"$W/r.ts"; echo "$2" >>"$W/r.t50"; echo "$3" >>"$W/r.t99"
        r=$((r + 1))
    done
    rm -rf "$W/out"
    printf "  %-44s %s MB/s   %s   served %s/%s\n" "$label:" "$(stats <"$W/r.t")" "$(lat t)" "$(median <"$W/r.ts")" "$nobj"
}
echo "  MB/s of objects, median (min-max); latency and objects served = of the tier named:"
tier_runs "memcached, local cleared, --warm" 1 warm clear
tier_runs "memcached, local cleared, --out --no-sync" 1 out clear
tier_runs "local dir warm, --warm" 0 warm keep
tier_runs "local dir warm, --out --no-sync" 0 out keep
echo "  reproduce: snap-fetch ID --store 'tiered:dir:CACHE|memcached://A,B|s3://...' --warm|--out DIR --no-sync --parallel $PAR --json"
echo "             (memcached: rm -rf CACHE before each run; local: CACHE kept)"

# --- hit ratios: 3 workers sharing the memcached pair ---------------------------------
# Function A and B: FNMIB function layers on the snapshot above (their base); each worker
# fetches base + its function's layer through its own local cache.  memcached flushed first.
for a in $(echo "$mc" | tr , ' '); do
    python3 -c 'import socket,sys; h,p=sys.argv[1].split(":"); s=socket.create_connection((h,int(p)),2); s.sendall(b"flush_all\r\n"); s.recv(64)' "$a" ||
        echo "  (flush_all to $a failed)"
done
"$MKSNAP" "$W/fa" "$FNMIB" fetch-fn-a && "$MKSNAP" "$W/fb" "$FNMIB" fetch-fn-b || skip "mksnap failed"
fa=$("$SC" put "$W/fa" --store "$S" --layer function --parent "$id") &&
    fb=$("$SC" put "$W/fb" --store "$S" --layer function --parent "$id") || skip "put of the function layers failed"
rm -rf "$W/fa" "$W/fb"
echo "hit ratios: 3 workers (own local dir each) sharing the memcached pair, S3 origin; memcached flushed first;"
echo "  each worker fetches base ($MIB MiB) + function layer ($FNMIB MiB) with --warm; objects (chunks + manifests) served per tier:"
: >"$W/mix"
for fn in A B; do
    [ $fn = A ] && fid=$fa || fid=$fb
    for w in 1 2 3; do
        l=0; m=0; s=0
        for lid in "$id" "$fid"; do
            "$SF" "$lid" --store "tiered:dir:$W/w$w|$MC|$S" --warm --parallel "$PAR" --json >"$W/j" || { echo "  worker $w: snap-fetch failed"; continue; }
            set -- $(hits_all <"$W/j")
            l=$((l + $1)); m=$((m + $2)); s=$((s + $3))
        done
        echo "$fn $w $l $m $s" >>"$W/mix"
        printf "  function %s, worker %s:  local %5d  memcached %5d  S3 %5d\n" $fn $w $l $m $s
    done
done
awk '{ t = $3 + $4 + $5 }
     $1 == "A" && $2 > 1 { a += t; al += $3; am += $4 }
     !($1 == "A" && $2 == 1) { x += t; xl += $3; xm += $4 }
     END {
       printf "  function A after worker 1 (workers 2-3): local %.1f%% + memcached %.1f%% = %.1f%% of %d reads (goal >= 95%%)\n", 100 * al / a, 100 * am / a, 100 * (al + am) / a, a
       printf "  whole mix after the first fetch (A on 2-3, then B on 1-3; B is new on worker 1): local %.1f%% + memcached %.1f%% = %.1f%% of %d reads\n", 100 * xl / x, 100 * xm / x, 100 * (xl + xm) / x, x
     }' "$W/mix"
echo "  reproduce: per worker W, for each layer: snap-fetch LAYER --store 'tiered:dir:CACHE_W|memcached://A,B|s3://...' --warm --json (hits per tier)"
echo "  load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
