#!/bin/sh
# The init-heavy nano guest builds its table during init and answers from it
# deterministically: the same requests get byte-identical answers within one VM and
# from a second VM booted with the same options (what snapshot tests compare), a
# different seed changes them; get/chase/walk agree with each other; bad requests
# and bad options are refused.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

boot() { # NAME BOOT-ARGS
    "$BIN/fc-launch" --kernel "$GUEST/init-heavy.elf" --mem 48 --vsock "$T/$1.sock" --boot-args "$2" \
        >"$T/$1.console" 2>"$T/$1.err" &
    PIDS="$PIDS $!"
    eval "vm_$1=$!"
}
boot a "table=8 touch=25 rounds=1"
boot b "table=8 touch=25 rounds=1"
boot c "table=8 touch=25 rounds=1 seed=2"

python3 - "$ROOT/tests/cli" "$T" >"$T/out" 2>&1 <<'PY' || fail "$(tail -n 3 "$T/out"); fc-launch: $(cat "$T/a.err" "$T/b.err" "$T/c.err")"
import json, sys
sys.path.insert(0, sys.argv[1])
from nano_client import Conn
T = sys.argv[2]
ENTRIES = 8 << 18

def session(name):
    c = Conn("%s/%s.sock" % (T, name), 9000, 10.0)
    def call(req, ok=True):
        c.send_invoke(req.encode())
        kind, body = c.answer()
        if (kind == "OK") != ok:
            raise SystemExit("%s: %r answered %s %r" % (name, req, kind, body))
        return json.loads(body) if ok else body.decode()
    return c, call

script = ["info", "", "walk", "walk 25", "walk 100", "walk 0", "get 0 1 2 3 4 2097151",
          "chase 0 1", "chase 0 2", "chase 12345 1000"]

def timeless(a):  # init_ms and warm_ms are the only time-dependent fields
    return {k: v for k, v in a.items() if not k.endswith("_ms")}

def run(name):
    c, call = session(name)
    answers = [timeless(call(r)) for r in script]
    for r in script:  # asked again: the same answers
        a = timeless(call(r))
        if a != answers[script.index(r)]:
            raise SystemExit("%s: %r answered %r, then %r" % (name, r, answers[script.index(r)], a))
    return c, call, answers

c, call, a = run("a")
info, dflt, walk, walk25, walk100, walk0, get, ch1, ch2, ch1000 = a
chall = call("chase 0 %d" % ENTRIES)  # 2M dependent reads: once is enough
want = {"table_mib": 8, "entries": ENTRIES, "pages": 2048, "seed": 1, "rounds": 1, "touch": 25}
for k, v in want.items():
    if info[k] != v: raise SystemExit("info %s = %r, want %r" % (k, info[k], v))
# The default request walks touch=25 percent: a fixed set of about 512 pages,
# the one the init warmed.
if not (dflt == walk == walk25 and walk["percent"] == 25 and abs(walk["pages"] - 512) <= 2):
    raise SystemExit("walk answers: %r %r %r" % (dflt, walk, walk25))
if info["warm_pages"] != walk["pages"] or info["warm_sum"] != walk["sum"]:
    raise SystemExit("warm-up %r vs walk %r" % (info, walk))
if walk100["pages"] != 2048 or walk0["pages"] != 0:
    raise SystemExit("walk 100 / 0: %r %r" % (walk100, walk0))
vals = get["values"]
if len(vals) != 6 or len(set(vals)) != 6 or max(vals) >= ENTRIES:
    raise SystemExit("get: %r" % get)
# chase follows the same table that get reads, and the table is one cycle.
if ch1["end"] != vals[0]: raise SystemExit("chase 0 1 = %r, table[0] = %d" % (ch1, vals[0]))
if ch2["end"] != call("get %d" % vals[0])["values"][0]: raise SystemExit("chase 0 2: %r" % ch2)
if chall["end"] != 0 or ch1000["steps"] != 1000: raise SystemExit("chase: %r %r" % (chall, ch1000))
for bad in ["get %d" % ENTRIES, "get", "get x", "walk 101", "walk 1 2", "chase 0", "hello"]:
    call(bad, ok=False)

_, _, b = run("b")
if b != a: raise SystemExit("a second VM with the same options answers differently:\n%r\n%r" % (a, b))
_, _, s2 = run("c")
if s2[6]["values"] == get["values"] or s2[2]["sum"] == walk["sum"]:
    raise SystemExit("seed=2 answers like seed=1: %r" % s2)
for n in ("a", "b", "c"):
    cc, _ = session(n)
    cc.s.sendall(b"EXIT 0\n")
    cc.answer()
PY
for n in a b c; do
    eval "wait \$vm_$n" || fail "fc-launch $n exited $?: $(cat "$T/$n.err")"
done
assert_contains "$(cat "$T/a.console")" "init-heavy: 8 MiB table (2097152 entries, 2048 pages, seed 1, 1 rounds) built in" "console"

# A bad option stops the VM during init with EX_CONFIG and says which.
"$BIN/fc-launch" --kernel "$GUEST/init-heavy.elf" --mem 48 --boot-args "table=0" >"$T/bad.console" 2>"$T/bad.err"
assert_eq "$?" 78 "fc-launch exit status for table=0"
assert_contains "$(cat "$T/bad.console")" "bad option table=0" "console"
