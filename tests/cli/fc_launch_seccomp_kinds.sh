# Every kind of fc-launch thread, under exactly the seccomp filter fc-launch gives
# it (tests/helpers/seccomp_probe installs it on a thread the way fc-launch does),
# is stopped by a forbidden system call with one line naming the thread kind and
# the call, and exit status 159; the calls every thread needs still work.
. "$(dirname "$0")/../lib.sh"
P=$ROOT/$O/tests/helpers/seccomp_probe
[ -x "$P" ] || fail "missing $P (make all builds it)"

for kind in vmm vcpu api device uffd helper; do
    out=$("$P" $kind allowed 2>"$T/err"); rc=$?
    assert_eq "$rc" 0 "$kind: allowed calls: $(cat "$T/err")"
    assert_eq "$out" allowed "$kind: allowed calls"
    for call in "socket 41 socket" "ioctl 16 ioctl" "fork 56 clone"; do
        set -- $call
        "$P" $kind "$1" >/dev/null 2>"$T/err"; rc=$?
        assert_eq "$rc" 159 "$kind $1: exit status"
        assert_eq "$(cat "$T/err")" "seccomp-probe: seccomp: $kind thread made a forbidden system call $2 ($3)" \
            "$kind $1: the SIGSYS line"
    done
    # Threads that never open files get EACCES (glibc's malloc may try, once).
    case $kind in vmm | api) want="open: ok" ;; *) want="open: Permission denied" ;; esac
    assert_eq "$("$P" $kind open 2>&1)" "$want" "$kind: open"
done
exit 0
