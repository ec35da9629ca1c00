# Bad input to fc-launch: one clear line naming the thing and the cause, the
# documented exit code, and nothing left behind.
. "$(dirname "$0")/../lib.sh"

# expect CODE TEXT CMD...: run, check the exit code and that stderr is one line
# containing TEXT.
expect() {
    code=$1 text=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    [ "$rc" = "$code" ] || fail "$*: exit $rc, expected $code; stderr: $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "$*: expected one line on stderr, got: $(cat "$T/err")"
    grep -q "^fc-launch: error: .*$text" "$T/err" || fail "$*: stderr lacks '$text': $(cat "$T/err")"
}

FC=$BIN/fc-launch
mkdir "$T/work" && cd "$T/work" || exit 1

expect 64 "nothing to boot" "$FC"
expect 64 "not expected" "$FC" --kernel x --bogus
expect 66 "$T/work/missing.elf: No such file" "$FC" --kernel "$T/work/missing.elf"
expect 66 "$T/work: Is a directory" "$FC" --kernel "$T/work"

head -c 65536 /dev/urandom >"$T/random.bin"
expect 65 "random.bin: not an ELF or bzImage" "$FC" --kernel "$T/random.bin"
expect 65 "random.bin: not an ELF" "$FC" --nano "$T/random.bin"

# An ELF for the wrong machine (aarch64, e_machine 183) and a 32-bit one.
python3 - "$T/arm.elf" "$T/i386.elf" <<'PY'
import struct, sys
def elf(path, cls, machine):
    ident = b'\x7fELF' + bytes([cls, 1, 1]) + bytes(9)
    if cls == 2:
        hdr = ident + struct.pack('<HHIQQQIHHHHHH', 2, machine, 1, 0x100000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    else:
        hdr = ident + struct.pack('<HHIIIIIHHHHHH', 2, machine, 1, 0x100000, 52, 0, 0, 52, 32, 0, 40, 0, 0)
    open(path, 'wb').write(hdr + bytes(4096))
elf(sys.argv[1], 2, 183)
elf(sys.argv[2], 1, 3)
PY
expect 65 "arm.elf: .*not x86-64" "$FC" --kernel "$T/arm.elf"
expect 65 "i386.elf: not a 64-bit ELF" "$FC" --kernel "$T/i386.elf"

if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    cp "$ROOT/$O/guest/hello.elf" "$T/secret.elf" 2>/dev/null || cp "$T/arm.elf" "$T/secret.elf"
    chmod 600 "$T/secret.elf"
    chmod 755 "$T"
    expect 77 "secret.elf: Permission denied" setpriv --reuid=65534 --regid=65534 --clear-groups "$FC" --kernel "$T/secret.elf"
fi

expect 78 "more than this host has" "$FC" --kernel "$GUEST/hello.elf" --mem 1000000
KINDLING_KVM_DEV=$T/no-kvm expect 69 "KVM is not available" "$FC" --kernel "$GUEST/hello.elf"
expect 78 "at most 3072 MiB" "$FC" --kernel "$GUEST/hello.elf" --mem 4096
expect 78 "exactly one vCPU" "$FC" --kernel "$GUEST/hello.elf" --vcpus 2

# Nothing left behind: the work dir is still empty, no vsock socket stayed.
expect 66 "missing.elf" "$FC" --kernel "$T/work/missing.elf" --vsock "$T/work/v.sock"
[ -z "$(ls -A "$T/work")" ] || fail "files left behind: $(ls -A "$T/work")"

# A Firecracker API body nested 25000 levels deep (what the 50 KiB body limit lets
# through; a refused cpu_template was re-serialised, recursing once per level, into
# the answer): 400 with a fault_message naming the depth limit, and the API keeps
# answering.  (tests/unit/fc_api_test.cpp sends the 100k levels that overflowed.)
if command -v curl >/dev/null; then
    API=$T/api.sock
    bg "$FC" --api-sock "$API" 2>"$T/api.err"
    vm=$!
    wait_for_file "$API" 5 || fail "API socket not created: $(cat "$T/api.err")"
    python3 -c 'import sys; sys.stdout.write("{\"vcpu_count\": 1, \"mem_size_mib\": 32, \"cpu_template\": " +
                                             "[" * 25000 + "]" * 25000 + "}")' >"$T/deep.json"
    out=$(curl -s --unix-socket "$API" -X PUT http://localhost/machine-config -H 'Content-Type: application/json' \
        --data-binary @"$T/deep.json" -w ' %{http_code}')
    kill -0 $vm 2>/dev/null || fail "fc-launch died on a deeply nested API body: $(cat "$T/api.err")"
    assert_contains "$out" "JSON nested deeper than 64 levels" "fault_message of a deep body"
    assert_contains "$out" " 400" "status of a deep body"
    assert_contains "$(curl -s --unix-socket "$API" http://localhost/)" '"state":"Not started"' "API after a deep body"
fi
exit 0
