#!/bin/sh
# The state nano guest (the restore checker) answers a stable fingerprint of its
# memory, counters and the registers it holds across every VM exit; "bump" changes
# it; a second VM booted with the same seed answers the same sequence of
# fingerprints (what a snapshot/restore test compares), another seed does not.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

boot() { # NAME BOOT-ARGS
    "$BIN/fc-launch" --kernel "$GUEST/state.elf" --mem 48 --vsock "$T/$1.sock" --boot-args "$2" \
        >"$T/$1.console" 2>"$T/$1.err" &
    PIDS="$PIDS $!"
    eval "vm_$1=$!"
}
boot a "mem=16"
boot b "mem=16"
boot c "mem=16 seed=2"

python3 - "$ROOT/tests/cli" "$T" >"$T/out" 2>&1 <<'PY' || fail "$(cat "$T/out") / a: $(cat "$T/a.err")"
import json, sys
sys.path.insert(0, sys.argv[1])
from nano_client import Conn
T = sys.argv[2]
REGS = ["rbx", "rbp", "rcx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] + \
       ["xmm%d" % i for i in range(16)] + ["mxcsr", "fcw", "st0"]

def run(name):
    c = Conn("%s/%s.sock" % (T, name), 9000, 10.0)
    out = []
    for i, req in enumerate(["check", "check", "bump", "check", "check", "bump", "bump", "check"]):
        c.send_invoke(req.encode())
        kind, body = c.answer()
        if kind != "OK":
            raise SystemExit("%s: %s answered %s %r" % (name, req, kind, body))
        a = json.loads(body)
        r = a["registers"]
        if a["counters"]["invokes"] != i + 1 or r["mismatches"] != 0 or r["first_bad"] != "" or \
                a["clock"]["backwards"] != 0 or a["memory"]["region_mib"] != 16:
            raise SystemExit("%s: %s answered %r" % (name, req, a))
        if any(int(r[k], 16) == 0 for k in REGS):
            raise SystemExit("%s: a held register reads 0: %r" % (name, r))
        if a["volatile"]["blocking_outs"] < i + 1 or a["volatile"]["tsc_khz"] <= 0:
            raise SystemExit("%s: volatile: %r" % (name, a["volatile"]))
        out.append(a)
    c.send_invoke(b"nonsense")
    kind, body = c.answer()
    if kind != "ERR" or b"expected check or bump" not in body:
        raise SystemExit("nonsense answered %s %r" % (kind, body))
    c.s.sendall(b"EXIT 0\n")
    c.answer()
    return out

a = run("a")
fp = [x["fingerprint"] for x in a]
# check, check: equal; bump changes memory (the bump answer shows the registers held
# before it), the next check also the registers; bumps count up.
if not (fp[0] == fp[1] and fp[2] != fp[1] and fp[3] == fp[4] and len({fp[1], fp[2], fp[3], fp[5], fp[7]}) == 5):
    raise SystemExit("fingerprints: %r" % fp)
if [x["counters"]["bumps"] for x in a] != [0, 0, 1, 1, 1, 2, 3, 3]:
    raise SystemExit("bumps: %r" % [x["counters"]["bumps"] for x in a])
if a[3]["registers"] == a[1]["registers"] or a[2]["registers"] != a[1]["registers"]:
    raise SystemExit("registers did not follow the bumps")
if a[2]["memory"]["region"] == a[1]["memory"]["region"] or a[2]["memory"]["heap_blocks"] != 65:
    raise SystemExit("bump did not change memory: %r / %r" % (a[1]["memory"], a[2]["memory"]))

def stable(xs):
    return [{k: v for k, v in x.items() if k != "volatile"} for x in xs]

b = run("b")
if stable(b) != stable(a):
    raise SystemExit("same seed, different answers:\n%r\n%r" % (stable(a), stable(b)))
c = run("c")
if {x["fingerprint"] for x in c} & set(fp):
    raise SystemExit("seed=2 answers a fingerprint of seed=1")
PY
for n in a b c; do
    eval "wait \$vm_$n" || fail "fc-launch $n exited $?: $(cat "$T/$n.err")"
done
