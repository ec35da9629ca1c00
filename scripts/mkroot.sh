#!/bin/sh
# mkroot.sh: build the read-only root image of a kindling Linux guest (kindling-linux(7)
# "ROOT IMAGE AND OVERLAY"): a squashfs (zstd) holding the OS and the runtime, unpacked
# from Debian 12's packages, and the function's code as /var/task.
#
#   scripts/mkroot.sh [--runtime python3|shell] [--package PKG]... [--code DIR] OUT
#   scripts/mkroot.sh --prepare [--runtime ...] [--package PKG]...
#
# --runtime python3 (default): python3.11 (python3.11-minimal, libpython3.11-minimal,
#   libpython3.11-stdlib and the shared libraries its common modules load: ssl,
#   hashlib, zlib, bz2, lzma, ctypes, uuid, crypt), byte-compiled, with busybox
#   (busybox-static) as /bin/sh and the usual commands.  --runtime shell: busybox only.
#   Not included: dbm, curses, readline, sqlite3, tkinter, the test suite, idle,
#   ensurepip, lib2to3, docs, man pages and locales (--package adds a Debian package,
#   unpacked as is, e.g. --package libsqlite3-0).
# --code DIR: copied to /var/task (the agent's default task root); a `bootstrap` there
#   is the runtime the agent starts.
# --prepare: only download and unpack into the cache (install-deps runs it as root), so
#   that later builds need neither the network nor a writable cache (the nested-KVM test
#   host mounts it read-only).
#
# The .deb files and the unpacked, trimmed trees are cached under
# ${KINDLING_CACHE:-/var/cache/kindling}/mkroot (never in the checkout).  OUT is written
# to a temp file beside it and renamed: no partial image is left behind.
# Exit status: 0; 64 bad usage; 66 --code DIR missing; 69 a package cannot be
# downloaded or a tool is missing; 70 the build failed.
set -eu

CACHE=${KINDLING_CACHE:-/var/cache/kindling}/mkroot
ZSTD_LEVEL=${MKROOT_ZSTD_LEVEL:-6}

die() { echo "mkroot: error: $1" >&2; exit "${2:-70}"; }

runtime=python3 code="" out="" prepare=0 extra=""
while [ $# -gt 0 ]; do
    case $1 in
    --runtime) [ $# -ge 2 ] || die "--runtime needs a value" 64; runtime=$2; shift 2 ;;
    --package) [ $# -ge 2 ] || die "--package needs a value" 64; extra="$extra $2"; shift 2 ;;
    --code) [ $# -ge 2 ] || die "--code needs a directory" 64; code=$2; shift 2 ;;
    --prepare) prepare=1; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" 64 ;;
    *) [ -z "$out" ] || die "one output file, got '$out' and '$1'" 64; out=$1; shift ;;
    esac
done
case $runtime in
python3) pkgs="busybox-static libc6 libgcc-s1 zlib1g libexpat1 libssl3 libbz2-1.0 liblzma5 libffi8 libuuid1
 libcrypt1 media-types python3.11-minimal libpython3.11-minimal libpython3.11-stdlib" ;;
shell) pkgs="busybox-static" ;;
*) die "--runtime $runtime: expected python3 or shell" 64 ;;
esac
pkgs="$pkgs$extra"
[ "$prepare" = 1 ] || [ -n "$out" ] || die "usage: mkroot.sh [--runtime python3|shell] [--package PKG]... [--code DIR] OUT (see --help)" 64
[ -z "$code" ] || [ -d "$code" ] || die "--code $code: no such directory" 66
for t in dpkg-deb mksquashfs; do
    command -v "$t" >/dev/null || die "$t not found (scripts/install-deps.sh installs it)" 69
done

# The newest cached .deb of each package, downloaded when missing.
debs=""
for p in $pkgs; do
    f=$(ls "$CACHE/debs/${p}_"*.deb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$f" ]; then
        mkdir -p "$CACHE/debs" 2>/dev/null && [ -w "$CACHE/debs" ] ||
            die "package $p is not in $CACHE/debs, which is not writable (run scripts/install-deps.sh as root)" 69
        dl=$(mktemp -d "$CACHE/debs/.dl.XXXXXX")
        (cd "$dl" && apt-get download "$p" >/dev/null 2>&1) ||
            { apt-get update -qq >/dev/null 2>&1 && (cd "$dl" && apt-get download "$p" >/dev/null 2>&1); } ||
            { rm -rf "$dl"; die "apt-get download $p failed" 69; }
        mv "$dl"/*.deb "$CACHE/debs/" && rmdir "$dl"
        f=$(ls "$CACHE/debs/${p}_"*.deb | sort -V | tail -n 1)
    fi
    debs="$debs $f"
done

# The unpacked tree, keyed by the packages and by unpack() below (the trimming rules).
key=$( { for f in $debs; do basename "$f"; done; sed -n '/^unpack()/,/^}/p' "$0"; } | sha256sum | cut -c1-16)
tree=$CACHE/tree-$runtime-$key

unpack() {  # DIR: unpack $debs into DIR and trim it
    d=$1
    for f in $debs; do dpkg-deb -x "$f" "$d" || die "dpkg-deb -x $f failed"; done
    rm -rf "$d/usr/share/doc" "$d/usr/share/man" "$d/usr/share/info" "$d/usr/share/locale" \
        "$d/usr/share/lintian" "$d/usr/share/bug" "$d/usr/share/binfmts" "$d/usr/share/pixmaps" \
        "$d/usr/share/applications" "$d/usr/lib/x86_64-linux-gnu/gconv" "$d/usr/share/debconf"
    if [ -d "$d/usr/lib/python3.11" ]; then
        pl=$d/usr/lib/python3.11
        rm -rf "$pl/test" "$pl/idlelib" "$pl/tkinter" "$pl/turtledemo" "$pl/ensurepip" "$pl/lib2to3" \
            "$pl/pydoc_data" "$pl/config-3.11-x86_64-linux-gnu" "$pl/turtle.py"
        find "$pl" -depth -type d \( -name test -o -name tests \) -exec rm -rf {} +
        ln -sf python3.11 "$d/usr/bin/python3"
        # Byte-compile with the unpacked interpreter itself, so imports need not
        # compile (slow in a guest) nor write (the image is read-only).
        "$d/usr/bin/python3.11" -E -s -m compileall -q -j 0 --invalidation-mode unchecked-hash \
            -s "$d" -p / "$pl" >/dev/null || die "byte-compiling the standard library failed"
    fi
    # busybox: /bin/sh and every applet not shipped by a package.
    mkdir -p "$d/bin"
    for a in $("$d/bin/busybox" --list); do
        [ -e "$d/bin/$a" ] || [ -e "$d/usr/bin/$a" ] || [ -e "$d/sbin/$a" ] || [ -e "$d/usr/sbin/$a" ] ||
            ln -s busybox "$d/bin/$a"
    done
    mkdir -p "$d/etc" "$d/proc" "$d/sys" "$d/dev" "$d/tmp" "$d/run" "$d/root" "$d/var/task" "$d/var/tmp"
    chmod 1777 "$d/tmp" "$d/var/tmp"
    echo "root:x:0:0:root:/root:/bin/sh" >"$d/etc/passwd"
    echo "root:x:0:" >"$d/etc/group"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$d/etc/hosts"
    echo "hosts: files" >"$d/etc/nsswitch.conf"
    printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$d/etc/ld.so.conf"
    ldconfig -r "$d" 2>/dev/null || true
}

if [ ! -d "$tree" ]; then
    if mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ]; then
        tmp=$(mktemp -d "$tree.tmp.XXXXXX")
        trap 'rm -rf "$tmp"' EXIT
        unpack "$tmp"
        mv "$tmp" "$tree" 2>/dev/null || rm -rf "$tmp"  # another build won the race
        trap - EXIT
        # Drop trees of older package versions or older rules.
        for old in "$CACHE"/tree-"$runtime"-*; do
            [ "$old" = "$tree" ] || case $old in *.tmp.*) ;; *) rm -rf "$old" ;; esac
        done
    else
        [ "$prepare" = 0 ] || die "$CACHE is not writable (run as root)" 69
        tree=""
    fi
fi
[ "$prepare" = 0 ] || { echo "mkroot: ready: $tree" >&2; exit 0; }

# Stage: the cached tree (or a fresh one) plus the code, then squash to a temp file.
outdir=$(dirname "$out")
[ -d "$outdir" ] || die "$outdir: no such directory" 66
stage=$(mktemp -d "${TMPDIR:-/tmp}/mkroot.XXXXXX")
tmpout=$(mktemp "$out.tmp.XXXXXX") || die "cannot create a file in $outdir"
trap 'rm -rf "$stage" "$tmpout"' EXIT
trap 'exit 143' TERM INT
if [ -n "$tree" ]; then cp -a "$tree/." "$stage/" || die "copying $tree failed"
else unpack "$stage"; fi
if [ -n "$code" ]; then
    cp -a "$code/." "$stage/var/task/" || die "copying $code failed"
    [ -x "$stage/usr/bin/python3.11" ] &&
        "$stage/usr/bin/python3.11" -E -s -m compileall -q --invalidation-mode unchecked-hash \
            -s "$stage" -p / "$stage/var/task" >/dev/null 2>&1 || true
fi
mksquashfs "$stage" "$tmpout" -noappend -quiet -no-progress -comp zstd -Xcompression-level "$ZSTD_LEVEL" \
    -all-root -no-xattrs >/dev/null || die "mksquashfs failed"
chmod 644 "$tmpout"
mv "$tmpout" "$out" || die "rename to $out failed"
echo "mkroot: $out: $(($(stat -c %s "$out") / 1024)) KiB" >&2
