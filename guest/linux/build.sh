#!/bin/sh
# Builds the kindling guest kernel (vmlinux + bzImage) once per machine and prints
# the directory holding it.
#
#   guest/linux/build.sh            -> /var/cache/kindling/linux-<hash>
#
# Source: Debian's linux-source-6.1 package ($KINDLING_LINUX_SRC, default
# /usr/src/linux-source-6.1.tar.xz).  Config: `make tinyconfig` + kindling.config.
# The cache key hashes the source version, the fragment, this script and the
# compiler, so changing any of them builds a new kernel.  A lock serialises
# concurrent callers; the build happens in a temp dir renamed into place, so the
# cache never holds a half-built kernel.  Exit: 0 ok, 69 no kernel source, 70 build
# failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/kindling.config
src=${KINDLING_LINUX_SRC:-/usr/src/linux-source-6.1.tar.xz}
jobs=${KINDLING_JOBS:-$(nproc)}

say() { echo "linux-build: $*" >&2; }
die() { code=$1; shift; say "error: $*"; exit "$code"; }

[ -r "$src" ] || die 69 "$src: kernel source not found (apt-get install linux-source-6.1, or set KINDLING_LINUX_SRC)"
for tool in make gcc bc flex bison xz cpio; do
    command -v "$tool" >/dev/null 2>&1 || die 69 "$tool not found (scripts/install-deps.sh installs it)"
done
[ -e /usr/include/libelf.h ] || [ -e /usr/include/gelf.h ] ||
    die 69 "libelf headers not found (apt-get install libelf-dev)"

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
key=$( {
    echo "src $(basename "$src") $(stat -c %s "$src") $src_version"
    gcc --version | head -n 1
    cat "$fragment" "$0"
} | sha256sum | cut -c1-16)
# A kernel already built is used even where the cache is read-only (the nested test
# host of scripts/hwvirt.sh sees the host's cache that way).
cache=${KINDLING_CACHE:-/var/cache/kindling}
if [ -f "$cache/linux-$key/vmlinux" ] && [ -f "$cache/linux-$key/bzImage" ]; then
    echo "$cache/linux-$key"
    exit 0
fi
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
    [ -z "${KINDLING_CACHE:-}" ] || die 70 "$cache: cache directory not writable"
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/kindling
    mkdir -p "$cache" || die 70 "$cache: cannot create cache directory"
fi

out=$cache/linux-$key

if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
    echo "$out"
    exit 0
fi

exec 9>"$cache/.linux-$key.lock"
flock 9
# Someone else may have finished the build while we waited for the lock.
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
    echo "$out"
    exit 0
fi

# Holding the lock, any temp dir for this key is left over from a killed build.
rm -rf "$cache/.linux-$key.tmp."*
work=$(mktemp -d "$cache/.linux-$key.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
log=$cache/linux-$key.log  # kept after a failure, replaced by the next attempt
start=$(date +%s)
say "building guest kernel into $out ($jobs jobs; log: $log)"

tar -xJf "$src" -C "$work" ||
    die 70 "$src: extraction failed"
tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)

build() {
    make -C "$tree" ARCH=x86_64 tinyconfig &&
        "$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" "$fragment" &&
        make -C "$tree" ARCH=x86_64 olddefconfig
}
build >"$log" 2>&1 || { tail -n 30 "$log" >&2; die 70 "kernel configuration failed"; }

# Kconfig silently drops options whose dependencies are missing: insist that
# every option of the fragment made it into the final .config.
missing=""
while read -r line; do
    case $line in
    CONFIG_*=*)
        grep -qx "$line" "$tree/.config" || missing="$missing $line" ;;
    "# CONFIG_"*" is not set")
        opt=${line#\# }; opt=${opt%% *}
        ! grep -q "^$opt=" "$tree/.config" || missing="$missing $opt=n" ;;
    esac
done <"$fragment"
[ -z "$missing" ] || die 70 "kindling.config options not applied:$missing"

make -C "$tree" ARCH=x86_64 -j"$jobs" vmlinux bzImage >>"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die 70 "kernel build failed (log above)"; }

mkdir "$work/out"
cp "$tree/vmlinux" "$tree/arch/x86/boot/bzImage" "$work/out/"
cp "$tree/.config" "$work/out/config"
make -s -C "$tree" ARCH=x86_64 kernelrelease >"$work/out/release"
echo "$(( $(date +%s) - start ))" >"$work/out/build-seconds"
mv "$work/out" "$out"
mv "$log" "$out/build.log"
sync -f "$out" 2>/dev/null || true
say "built $(cat "$out/release") in $(cat "$out/build-seconds")s"
echo "$out"
