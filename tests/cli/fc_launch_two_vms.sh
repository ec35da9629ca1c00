# Two VMs side by side: each vsock socket reaches only its own guest, and each
# guest's memory is private anonymous memory of its own VMM process (nothing
# shared, nothing file-backed).
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"
CLIENT="$ROOT/tests/cli/nano_client.py"

"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/a.sock" >"$T/a.console" 2>"$T/a.err" &
a=$!
"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 48 --vsock "$T/b.sock" >"$T/b.console" 2>"$T/b.err" &
b=$!
PIDS="$PIDS $a $b"
wait_for_file "$T/a.sock" 5 && wait_for_file "$T/b.sock" 5 || fail "no vsock sockets"

# 5 invokes on A, 3 on B: each guest counts only its own.
python3 "$CLIENT" "$T/a.sock" hello-repeat 5 >/dev/null || fail "invokes on A"
python3 "$CLIENT" "$T/b.sock" hello-repeat 3 >/dev/null || fail "invokes on B"
sa=$(python3 "$CLIENT" "$T/a.sock" stats) || fail "stats A"
sb=$(python3 "$CLIENT" "$T/b.sock" stats) || fail "stats B"
na=$(echo "$sa" | python3 -c 'import json,sys; print(json.load(sys.stdin)["invokes"])')
nb=$(echo "$sb" | python3 -c 'import json,sys; print(json.load(sys.stdin)["invokes"])')
assert_eq "$na" 5 "invokes seen by VM A"
assert_eq "$nb" 3 "invokes seen by VM B"

# Guest memory: the mapping of exactly the guest's size is anonymous, private,
# and shares no page with anything.
check_mem() {  # PID SIZE_KIB
    python3 "$ROOT/tests/cli/guest_ram_private.py" "$1" "$2" || fail "guest memory of pid $1 is not private anonymous"
}
check_mem $a $((32 * 1024))
check_mem $b $((48 * 1024))

python3 "$CLIENT" "$T/a.sock" exit 0 >/dev/null || fail "exit A"
python3 "$CLIENT" "$T/b.sock" exit 0 >/dev/null || fail "exit B"
wait $a; ra=$?
wait $b; rb=$?
assert_eq "$ra$rb" 00 "exit statuses of A and B"
exit 0
