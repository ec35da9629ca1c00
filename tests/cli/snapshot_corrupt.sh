# A broken snapshot is refused before any VM starts: corrupt, truncated,
# wrong-version or wrong-CRC vmstate, a mem file shorter than the machine, a
# missing file -> exit 65/66, one line naming the file, no socket left behind; a
# snapshot.json that names host files is refused the same way.
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

# A snapshot is no capability for host files (issue 13, finding 3): snapshot.json
# naming a host file as a drive, a parent layer by an absolute path or one outside
# the layer's directory, or too much memory for this host, is refused; the vsock
# socket comes from --vsock, never from the snapshot.
edit() {  # NAME PYTHON-STATEMENT on j
    copy "$1"
    python3 - "$T/$1/snapshot.json" "$2" <<'PY'
import json, sys
p = sys.argv[1]
j = json.load(open(p))
exec(sys.argv[2])
json.dump(j, open(p, "w"))
PY
}
edit hostdrive 'j["devices"]["drives"] = [{"drive_id": "d", "path_on_host": "/etc/shadow", "is_root_device": False, "is_read_only": True}]'
broken hostdrive 65 "path_on_host.*is absolute"
edit escapedrive 'j["devices"]["drives"] = [{"drive_id": "d", "path_on_host": "../../../../../../etc/shadow", "is_root_device": False, "is_read_only": False}]'
broken escapedrive 65 "drive d .* is outside"
edit hostparent 'j["kind"] = "diff"; j["parent"] = {"path": "/", "id": "0" * 32}'
broken hostparent 65 "parent.path.*is absolute"
edit bigmem 'j["machine"]["mem_size_mib"] = 1 << 22; j["files"]["mem"]["size"] = 1 << 42'
truncate -s 4T "$T/bigmem/mem"
broken bigmem 78 "more than this host has"
"$BIN/fc-launch" --restore "$T/good" >"$T/out" 2>"$T/err"
assert_eq "$?" 64 "restore without --vsock: exit status"
assert_contains "$(cat "$T/err")" "give its host socket (--vsock PATH" "restore without --vsock"

# The good snapshot still restores.
"$BIN/fc-launch" --restore "$T/good" --vsock "$T/good.sock" >/dev/null 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
python3 "$ROOT/tests/cli/nano_client.py" "$T/good.sock" hello-repeat 1 exit 0 >/dev/null || fail "good snapshot: $(cat "$T/err")"
wait $vm || fail "good snapshot exit status"
exit 0
