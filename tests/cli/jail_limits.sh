#!/bin/sh
# fc-launch --jail's cgroup holds the VMM to its memory: init-heavy filling a 200 MiB
# table in a 256 MiB guest under a 64 MiB memory.max is killed by the OOM killer,
# fc-launch exits 137 and says so, and no jail directory or cgroup is left.  Bad
# jail flags fail with 64 and one line naming the flag, before anything runs.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_jail

name=jail-limits-$$
"$BIN/fc-launch" --kernel "$GUEST/init-heavy.elf" --boot-args "table=200 rounds=1" --mem 256 --jail "$T/root" \
    --id "$name" --uid 40003 --gid 40003 --cgroup-memory 64 --cgroup-cpus 1 >"$T/console" 2>"$T/err"
assert_eq "$?" 137 "exit status of a VMM over its memory limit"
assert_contains "$(cat "$T/err")" "killed by the OOM killer" "error line"
assert_eq "$(grep -c . "$T/err")" 1 "error lines"
[ -e "$T/root" ] && fail "jail directory left behind"
find /sys/fs/cgroup -maxdepth 4 -name "$name" | grep -q . && fail "cgroup left behind"

bad() {  # WANT_MESSAGE ARGS...: fc-launch ARGS exits 64 naming the problem in one line
    local want=$1
    shift
    "$BIN/fc-launch" "$@" >/dev/null 2>"$T/bad"
    assert_eq "$?" 64 "exit status of fc-launch $*"
    assert_contains "$(cat "$T/bad")" "$want" "error for fc-launch $*"
    assert_eq "$(grep -c . "$T/bad")" 1 "error lines for fc-launch $*"
}
touch "$T/file"
bad "go with --jail" --kernel "$GUEST/hello.elf" --uid 40003
bad "--jail needs --uid and --gid" --kernel "$GUEST/hello.elf" --jail "$T/j"
bad "(not 0; one uid per VMM)" --kernel "$GUEST/hello.elf" --jail "$T/j" --uid 40003 --gid 0
bad "not a directory" --kernel "$GUEST/hello.elf" --jail "$T/file" --uid 40003 --gid 40003
bad "record without --jail" --jail "$T/j" --uid 40003 --gid 40003 --restore "$T" --record-access "$T/log"
[ -e "$T/j" ] && fail "a refused --jail created its directory"
exit 0
