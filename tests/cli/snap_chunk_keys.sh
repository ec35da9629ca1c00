#!/bin/sh
# Secrets: a function layer read with another tenant's key fails with a clear error
# and decrypts nothing; no key at all is a configuration error; keys never come from
# the command line; a key file group or others may read is refused.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
S="dir:$T/store"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 16 keys || fail "mksnap"
unset KINDLING_CONVERGENCE_SECRET KINDLING_TENANT_KEY
head -c 32 /dev/urandom >"$T/t1.key"
head -c 32 /dev/urandom >"$T/t2.key"
chmod 600 "$T/t1.key" "$T/t2.key"

out=$("$SC" put "$T/snap" --store "$S" --layer function 2>&1); rc=$?
assert_eq "$rc" "78" "no tenant key: exit status"
assert_contains "$out" "KINDLING_TENANT_KEY" "no tenant key: names the variable"
echo 0011 >"$T/short.key"
chmod 600 "$T/short.key"
out=$("$SC" put "$T/snap" --store "$S" --layer function --key-file "$T/short.key" 2>&1); rc=$?
assert_eq "$rc" "78" "short key file: exit status"
# A key file others may read is refused before it is used.
cp "$T/t1.key" "$T/open.key"
chmod 644 "$T/open.key"
out=$("$SC" put "$T/snap" --store "$S" --layer function --key-file "$T/open.key" 2>&1); rc=$?
assert_eq "$rc" "78" "key file mode 0644: exit status"
assert_contains "$out" "$T/open.key: holds secrets but is mode 0644: make it private (chmod 600)" "key file mode 0644"

id=$("$SC" put "$T/snap" --store "$S" --layer function --key-file "$T/t1.key") || fail "put"
for cmd in "get $id --out $T/out" "verify $id" "stat $id"; do
    # shellcheck disable=SC2086
    out=$("$SC" $cmd --store "$S" --key-file "$T/t2.key" 2>&1); rc=$?
    assert_eq "$rc" "65" "wrong key ($cmd): exit status"
    assert_contains "$out" "snap-chunk: error: manifest $id: wrong key or tampered manifest" "wrong key ($cmd)"
done
[ ! -e "$T/out" ] || fail "wrong key: get left output"
[ -z "$(ls -A "$T" | grep '\.tmp\.')" ] || fail "wrong key: temp directory left"

# The tenant key from the environment (hex) works like the key file.
KINDLING_TENANT_KEY=$(od -An -tx1 -v "$T/t1.key" | tr -d ' \n') "$SC" get "$id" --store "$S" --out "$T/out" \
    || fail "get with KINDLING_TENANT_KEY"
cmp "$T/snap/mem" "$T/out/mem" || fail "mem differs"
# A convergence secret does not open a function layer.
out=$(KINDLING_CONVERGENCE_SECRET=$(od -An -tx1 -v "$T/t1.key" | tr -d ' \n') "$SC" verify "$id" --store "$S" 2>&1); rc=$?
assert_eq "$rc" "78" "function layer with only a convergence secret"
# There is no flag that takes a key on the command line.
out=$("$SC" put "$T/snap" --store "$S" --layer function --key 00112233445566778899aabbccddeeff 2>&1); rc=$?
assert_eq "$rc" "64" "--key is not an option"
exit 0
