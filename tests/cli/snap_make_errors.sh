# snap-make failures: one clear line, the documented exit code, nothing left
# behind (no partial snapshot directory, no vsock socket).
. "$(dirname "$0")/../lib.sh"
need_kvm
SM=$BIN/snap-make
mkdir "$T/w" && cd "$T/w" || exit 1

expect() {  # CODE TEXT CMD...
    code=$1 text=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    assert_eq "$rc" "$code" "$* ($(cat "$T/err"))"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "$*: expected one line: $(cat "$T/err")"
    grep -q "^snap-make: error: .*$text" "$T/err" || fail "$*: stderr lacks '$text': $(cat "$T/err")"
}
expect 64 "give one of --nano FILE or --kernel FILE" "$SM" --out o
expect 64 "give one of" "$SM" --nano "$GUEST/hello.elf" --base b --out o
expect 64 "--initrd goes with --kernel" "$SM" --nano "$GUEST/hello.elf" --initrd i --out o
expect 65 "stopped first: guest wrote to unknown port" "$SM" --nano "$GUEST/hostile.elf" --boot-args mode=bad-port --out o1
expect 75 "stage 7: timed out" "$SM" --nano "$GUEST/hello.elf" --stage 7 --timeout 1 --out o2
mkdir o3
expect 73 "o3: File exists" "$SM" --nano "$GUEST/hello.elf" --out o3
expect 66 "nope/snapshot.json" "$SM" --base nope --out o4
expect 66 "/nonexistent.elf" "$SM" --nano /nonexistent.elf --out o5
rmdir o3
[ -z "$(ls -A)" ] || fail "left behind: $(ls -A)"
exit 0
