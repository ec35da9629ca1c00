# A guest that triggers a VMM warning in a loop cannot fill the disk fc-launch's
# stderr goes to: the hostile guest's warn-flood mode has the vsock device refuse
# FEATURES_OK 20000 times, and the log keeps the first 20 refusals, about one a
# second after that, and says how many it suppressed.
. "$(dirname "$0")/../lib.sh"
need_kvm

timeout 60 "$BIN/fc-launch" --kernel "$GUEST/hostile.elf" --mem 32 --vsock "$T/v.sock" \
    --boot-args "mode=warn-flood" >"$T/console" 2>"$T/err"
rc=$?
assert_eq "$rc" 3 "exit status (the guest survives its flood and exits 3)"
grep -q "hostile: still alive" "$T/console" || fail "guest did not finish its flood: $(cat "$T/console")"
refusals=$(grep -c "refusing FEATURES_OK" "$T/err")
[ "$refusals" -ge 20 ] || fail "expected the first 20 refusals logged, got $refusals: $(head -5 "$T/err")"
lines=$(wc -l <"$T/err")
bytes=$(wc -c <"$T/err")
[ "$lines" -le 200 ] || fail "$lines log lines for one flood (rate limit missing?): $(tail -3 "$T/err")"
[ "$bytes" -le 32768 ] || fail "log is $bytes bytes"
if [ "$lines" -gt 25 ]; then
    grep -q "similar warnings suppressed" "$T/err" || fail "no suppression summary: $(tail -3 "$T/err")"
fi
exit 0
