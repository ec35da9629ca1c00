#!/bin/sh
# Every committed fuzz input (tests/fuzz/corpus/NAME: seeds, and inputs that once
# crashed a target) runs through its target once, without libFuzzer: $O/fuzz/NAME-replay.
# Under build-san (make check) that is ASan+UBSan over the whole corpus.
. "$(dirname "$0")/../lib.sh"
cd "$T" || fail "cd $T"
n=0
for src in "$ROOT"/tests/fuzz/*.cpp; do
    name=$(basename "$src" .cpp)
    bin=$ROOT/$O/fuzz/$name-replay
    [ -x "$bin" ] || fail "$bin not built (make fuzz-replay)"
    [ -d "$ROOT/tests/fuzz/corpus/$name" ] || fail "no corpus for fuzz target $name (tests/fuzz/corpus/$name)"
    "$bin" "$ROOT/tests/fuzz/corpus/$name" >"$T/$name.log" 2>&1 || fail "$name: $(tail -n 20 "$T/$name.log")"
    grep -q "inputs replayed" "$T/$name.log" || fail "$name: $(tail -n 5 "$T/$name.log")"
    n=$((n + 1))
done
[ "$n" -ge 11 ] || fail "only $n fuzz targets"
exit 0
