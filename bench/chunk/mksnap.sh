#!/bin/sh
# mksnap.sh DIR MEM_MIB SEED — writes a synthetic snapshot directory that looks like
# one from snap-make (snapshot.json, vmstate, a sparse `mem`), deterministic per SEED:
#   mem, in eighths: [random][random][text-like][text-like][one 512 KiB block repeated]
#                    [written zeros][hole][hole]
# Used by bench/chunk.sh and the snap-chunk CLI tests until real snapshots exist.
set -eu
dir=$1; mib=$2; seed=$3
nseed=$(( $(printf %s "$seed" | cksum | cut -d" " -f1) % 1000000007 ))  # awk srand wants a small seed
mkdir -p "$dir"
# Seeded pseudo-random bytes: AES-CTR keystream (fast, reproducible).
prng() { openssl enc -aes-256-ctr -nosalt -pass "pass:kindling-$1" -pbkdf2 -iter 1 </dev/zero 2>/dev/null | head -c "$2"; }
# Compressible like kernel text/heap: structured lines with varying numbers.
texty() { awk -v s="$1" 'BEGIN { srand(s); while (1) printf "%08x task=%d state=%s vma=%x-%x flags=%o\n", NR++, int(rand()*4096), (rand()<0.5?"S":"R"), int(rand()*2^31), int(rand()*2^31), int(rand()*512) }' | head -c "$2"; }

cat >"$dir/snapshot.json" <<JSON
{"format_version":1,"machine":{"vcpu_count":1,"mem_size_mib":$mib},"guest":"nano","layer":"synthetic-$seed"}
JSON
prng "vm-$seed" 65536 >"$dir/vmstate"
mem=$dir/mem
bytes=$((mib * 1048576)); e=$((bytes / 8)); eb=$((e / 1048576))
: >"$mem"
truncate -s "$bytes" "$mem"
prng "mem-$seed" $((2 * e)) | dd of="$mem" conv=notrunc bs=1M status=none
texty "$nseed" $((2 * e)) | dd of="$mem" conv=notrunc bs=1M seek=$((2 * eb)) status=none
blk=$(mktemp)
prng "blk-$seed" 524288 >"$blk"
i=0; n=$((e / 524288))
while [ $i -lt $n ]; do cat "$blk"; i=$((i + 1)); done | dd of="$mem" conv=notrunc bs=1M seek=$((4 * eb)) status=none
rm -f "$blk"
head -c "$e" /dev/zero | dd of="$mem" conv=notrunc bs=1M seek=$((5 * eb)) status=none
