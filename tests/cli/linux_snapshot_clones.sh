#!/bin/sh
# A Linux function is snapshotted by snap-make in two layers: the base once the agent
# is up (stage 1), the function's diff layer over it once its runtime asks for the
# first invocation; 10 clones restored from that one snapshot answer their first invoke
# with 10 distinct /proc/sys/kernel/random/uuid values and /dev/urandom bytes (the
# kernel CRNG that getrandom(2) also reads): the agent reseeds the kernel RNG from
# the entropy fc-launch writes on restore, before the invocation runs, and tells the
# runtime (Kindling-Restore-Generation).  Without the reseed every clone printed the
# same bytes.  On PVM hosts it runs inside the nested-KVM host (scripts/hwvirt.sh).
# serial: boots Linux (inside a QEMU TCG nested-KVM host on PVM hosts: minutes of CPU)
. "$(dirname "$0")/../lib.sh"

need_linux_kvm "$@"
. "$ROOT/tests/cli/linux.lib"

shell_initrd "$T/root" "$(cat <<'EOF'
#!/bin/sh
API=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime
while :; do
    wget -q -S -O /tmp/event "$API/invocation/next" 2>/tmp/hdr || exit 3
    id=$(sed -n "s/^ *Lambda-Runtime-Aws-Request-Id: *//p" /tmp/hdr | tr -d "\r")
    gen=$(sed -n "s/^ *Kindling-Restore-Generation: *//p" /tmp/hdr | tr -d "\r")
    uuid=$(cat /proc/sys/kernel/random/uuid)
    rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n")
    wget -q -O /dev/null --post-data "{\"uuid\":\"$uuid\",\"rand\":\"$rand\",\"restore\":\"$gen\"}" "$API/invocation/$id/response"
done
EOF
)"
# Two layers, as for nano: the base (kernel + agent up, stage 1: no runtime yet) and
# the function's diff layer over it (restored from the base, up to the runtime's
# first /next).
"$BIN/snap-make" --json --kernel "$kdir/bzImage" --initrd "$T/root.cpio" --mem 256 --timeout 120 --stage 1 \
    --boot-args "$LINUX_ARGS kindling.function=rand" \
    --console "$T/base.console" --out "$T/base" >"$T/base.out" 2>"$T/base.err" ||
    fail "snap-make base: $(cat "$T/base.err"); console: $(tail -n 5 "$T/base.console")"
"$BIN/snap-make" --json --base "$T/base" --timeout 120 --console "$T/snap.console" --out "$T/snap" \
    >"$T/snap-make.out" 2>"$T/snap-make.err" ||
    fail "snap-make over the base: $(cat "$T/snap-make.err"); console: $(tail -n 5 "$T/snap.console")"
python3 - "$T" <<'PY' || fail "layers: $(cat "$T/base.out" "$T/snap-make.out")"
import json, sys
base, fn = (json.load(open(sys.argv[1] + f)) for f in ("/base.out", "/snap-make.out"))
assert base["stage"] == 1 and base["kind"] == "full", base
assert fn["stage"] == 0 and fn["kind"] == "diff" and fn["parent"] == base["dir"], fn
assert fn["mem_data_bytes"] < base["mem_data_bytes"], (fn, base)
PY

printf 'x' >"$T/x.in"
n=${CLONES:-10}
# One clone at a time (clone k stops itself with EXIT k after its answer, which
# fc-launch must return): ten Linux guests at once
# inside the TCG-emulated nested host starve one another past any sane timeout.
k=1
while [ $k -le $n ]; do
    bg "$BIN/fc-launch" --restore "$T/snap" --vsock "$T/c$k.sock" >"$T/c$k.console" 2>"$T/c$k.err"
    pid=$!
    wait_for_file "$T/c$k.sock" 60 || fail "clone $k: no vsock socket: $(cat "$T/c$k.err")"
    out=$(python3 "$ROOT/tests/cli/nano_client.py" "$T/c$k.sock" --timeout=60 invoke "$T/x.in" stats exit "$k") ||
        fail "clone $k: $out $(cat "$T/c$k.err"); console: $(tail -n 5 "$T/c$k.console")"
    answer=$(echo "$out" | head -n 1)
    assert_contains "$answer" 'OK {"uuid":"' "clone $k answers"
    assert_contains "$answer" '"restore":"1"' "clone $k: the runtime was told about the restore"
    assert_contains "$(echo "$out" | sed -n 2p)" '"reseeds":1' "clone $k: one reseed"
    echo "$answer" | sed 's/.*"uuid":"\([^"]*\)".*/\1/' >>"$T/uuids"
    echo "$answer" | sed 's/.*"rand":"\([^"]*\)".*/\1/' >>"$T/rands"
    wait "$pid"; rc=$?
    assert_eq "$rc" "$k" "clone $k: fc-launch exit status after EXIT $k (the agent's control page)"
    k=$((k + 1))
done
assert_eq "$(sort -u "$T/uuids" | wc -l)" "$n" "distinct uuids among $n clones ($(tr '\n' ' ' <"$T/uuids"))"
assert_eq "$(sort -u "$T/rands" | wc -l)" "$n" "distinct urandom bytes among $n clones"
echo "$n clones of one Linux snapshot: $n distinct uuids and urandom outputs"
