#!/bin/sh
# snap-chunk errors and conventions: exit codes, messages, --help matching the man
# page, --json, progress only when asked or on a terminal.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
S="dir:$T/store"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 errors || fail "mksnap"

# run EXPECTED_RC PATTERN ARGS...: exit status and one line on stderr.
run() {
    want=$1; pat=$2; shift 2
    err=$("$SC" "$@" 2>&1 >/dev/null); rc=$?
    assert_eq "$rc" "$want" "snap-chunk $*: exit status"
    assert_contains "$err" "$pat" "snap-chunk $*"
}
run 66 "snap-chunk: error: $T/nosuch: No such file or directory" put "$T/nosuch" --store "$S" --layer base
run 64 "--layer must be base, runtime or function" put "$T/snap" --store "$S" --layer kernel
run 64 "store nosuch:/x: unknown store type" put "$T/snap" --store nosuch:/x --layer base
run 64 "is not a manifest id" get 1234 --store "$S" --out "$T/o"
id=$("$SC" put "$T/snap" --store "$S" --layer base) || fail "put"
run 69 "snap-chunk: error: dir:$T/nostore: no such store directory" verify "$id" --store "dir:$T/nostore"
other=0000000000000000000000000000000000000000000000000000000000000000
run 66 "manifest $other not found in $S" verify "$other" --store "$S"
run 66 "parent manifest $other not found" put "$T/snap" --store "$S" --layer runtime --parent "$other"
mkdir "$T/full" && touch "$T/full/x"
run 73 "$T/full: File exists" get "$id" --store "$S" --out "$T/full"
ln -s mem "$T/snap/link"
run 65 "$T/snap/link: not a regular file or directory" put "$T/snap" --store "$S" --layer base
rm "$T/snap/link"

# An empty existing directory is fine as --out.
mkdir "$T/empty"
"$SC" get "$id" --store "$S" --out "$T/empty" && cmp "$T/snap/mem" "$T/empty/mem" || fail "get into an empty dir"

# --json prints one JSON object on stdout for every command.
if command -v python3 >/dev/null; then
    for cmd in "put $T/snap --layer base" "get $id --out $T/j" "verify $id" "stat $id --chunks"; do
        # shellcheck disable=SC2086
        "$SC" $cmd --store "$S" --json | python3 -c 'import json,sys; json.load(sys.stdin)' \
            || fail "$cmd --json is not JSON"
    done
fi

# Progress bar: never when stderr is not a terminal, unless --progress.
err=$("$SC" verify "$id" --store "$S" 2>&1 >/dev/null)
assert_eq "$err" "" "no progress output without a terminal"
err=$("$SC" verify "$id" --store "$S" --progress 2>&1 >/dev/null)
assert_contains "$err" "verify [" "--progress draws a bar"
err=$("$SC" verify "$id" --store "$S" --progress --no-progress 2>&1 >/dev/null); rc=$?
assert_eq "$rc" "64" "--progress with --no-progress"

# --help and the man page list the same options.
man=$ROOT/man/snap-chunk.1.scd
help=$(for c in "" put get verify stat; do "$SC" $c --help; done)
for opt in $(grep -o '^\*--[a-z-]*\*' "$man" | tr -d '*' | sort -u) $(grep -o '^\*-[a-z]\*, \*--[a-z-]*\*' "$man" | grep -o -- '--[a-z-]*'); do
    assert_contains "$help" "$opt" "option in the man page but not in --help"
done
for opt in $(echo "$help" | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -q -- "\*$opt\*" "$man" || fail "$opt is in --help but not in man/snap-chunk.1.scd"
done
"$SC" --version | grep -Eq '^[0-9]+\.[0-9]+' || fail "--version"
exit 0
