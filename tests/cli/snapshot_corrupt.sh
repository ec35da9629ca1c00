# A broken snapshot is refused before any VM starts: corrupt, truncated,
# wrong-version or wrong-CRC vmstate, a mem file shorter than the machine, a
# missing file -> exit 65/66, one line naming the file, no socket left behind.
. "$(dirname "$0")/../lib.sh"
need_kvm
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/good" >/dev/null || fail "snap-make"

broken() {  # NAME EXPECTED_CODE TEXT: restore $T/NAME and check the refusal
    "$BIN/fc-launch" --restore "$T/$1" --vsock "$T/$1.sock" >"$T/out" 2>"$T/err"; rc=$?
    assert_eq "$rc" "$2" "$1: exit status ($(cat "$T/err"))"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "$1: expected one error line: $(cat "$T/err")"
    grep -q "^fc-launch: error: .*$3" "$T/err" || fail "$1: stderr lacks '$3': $(cat "$T/err")"
    [ ! -e "$T/$1.sock" ] || fail "$1: a VM socket was created"
}
copy() { rm -rf "$T/$1"; cp -a "$T/good" "$T/$1"; }

copy flip; printf '\377' | dd of="$T/flip/vmstate" bs=1 seek=100 conv=notrunc 2>/dev/null
broken flip 65 "flip/vmstate"

copy trunc; head -c 50 "$T/good/vmstate" >"$T/trunc/vmstate"
broken trunc 65 "trunc/vmstate"

copy magic; printf 'XNVMSTAT' | dd of="$T/magic/vmstate" bs=1 seek=0 conv=notrunc 2>/dev/null
broken magic 65 "magic/vmstate"

# Wrong version with a matching CRC over the payload: the version is in the header.
copy version; printf '\011' | dd of="$T/version/vmstate" bs=1 seek=8 conv=notrunc 2>/dev/null
broken version 65 "version/vmstate"

# Wrong CRC: flip a byte of the stored CRC (offset 20) only.
copy crc; printf '\125' | dd of="$T/crc/vmstate" bs=1 seek=20 conv=notrunc 2>/dev/null
broken crc 65 "crc/vmstate"

copy short; truncate -s 1048576 "$T/short/mem"
broken short 65 "short/mem"

copy nomem; rm "$T/nomem/mem"
broken nomem 65 "nomem/mem"

copy nojson; rm "$T/nojson/snapshot.json"
broken nojson 66 "nojson/snapshot.json"

broken missing 66 "missing"

# The good snapshot still restores.
"$BIN/fc-launch" --restore "$T/good" --vsock "$T/good.sock" >/dev/null 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
python3 "$ROOT/tests/cli/nano_client.py" "$T/good.sock" hello-repeat 1 exit 0 >/dev/null || fail "good snapshot: $(cat "$T/err")"
wait $vm || fail "good snapshot exit status"
exit 0
