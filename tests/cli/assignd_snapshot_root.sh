#!/bin/sh
# assignd --snapshot-root DIR: an acquire naming a snapshot dir outside DIR (or a
# symlink inside it that leads out) gets 400 and places nothing; one inside is
# restored.  The API socket is mode 0600.
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"

mkdir "$T/ok"
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/ok/snap" >/dev/null || fail "snap-make"
cp -a "$T/ok/snap" "$T/outside"
ln -s "$T/outside" "$T/ok/link"
start_assignd --snapshot-root "$T/ok"
assert_eq "$(stat -c %a "$T/a.sock")" 600 "API socket mode"

acq() { api -d '{"function": "hello", "snapshot": {"dir": "'"$1"'"}, "wait_ms": 1000}' http://a/v1/acquire; }
assert_eq "$(acq "$T/outside")" 400 "snapshot outside the root"
assert_contains "$(cat "$T/body")" "outside every --snapshot-root" "error message"
assert_eq "$(acq "$T/ok/link")" 400 "a symlink in the root that leads out"
assert_eq "$(acq "$T/ok/../outside")" 400 "a .. path out of the root"
assert_eq "$(metric 'kindling_assign_sandboxes{state="creating"}')" 0 "nothing placed"
assert_eq "$(acq "$T/ok/snap")" 200 "snapshot inside the root: $(cat "$T/body")"
exit 0
