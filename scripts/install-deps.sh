#!/bin/sh
# Installs every Debian and npm package the build, the tests and the demo need.
# Idempotent: does nothing when everything is already there.  Run as root on
# Debian 12; elsewhere it only reports what is missing.
set -eu

PKGS="build-essential pkg-config git ca-certificates
 libcli11-dev doctest-dev libssl-dev libcurl4-openssl-dev libzstd-dev zstd
 libseccomp-dev libfuse3-dev fuse3 nlohmann-json3-dev libboost-dev libmemcached-dev
 scdoc socat curl gnuplot-nox python3 procps
 memcached awscli python3-botocore python3-boto3 wrk
 linux-source-6.1 bc flex bison libelf-dev cpio xz-utils
 qemu-system-x86 busybox-static squashfs-tools e2fsprogs
 clang libclang-rt-14-dev llvm"
# (clang + libclang-rt-14-dev: `make fuzz`'s libFuzzer, ASan and UBSan runtimes;
# llvm: llvm-symbolizer, for file:line in their reports.)

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# s3rver (the S3 endpoint of the tests) comes from npm: Debian's nodejs + npm unless a
# node with npm is already installed (e.g. NodeSource's, which conflicts with them).
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: error: missing packages:$missing (run as root)" >&2
        exit 77
    fi
    echo "install-deps: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# npm packages go to a directory outside the work tree, shared by every clone
# (scripts/s3rver.sh looks there).  Pinned: s3rver 3.x's credentials (S3RVER/S3RVER)
# and answers are what the tests expect.
NODE_DIR=${KINDLING_NODE_DIR:-/opt/kindling/node}
if [ ! -f "$NODE_DIR/node_modules/s3rver/package.json" ]; then
    if ! mkdir -p "$NODE_DIR" 2>/dev/null || [ ! -w "$NODE_DIR" ]; then
        echo "install-deps: error: s3rver missing and $NODE_DIR not writable (run as root)" >&2
        exit 77
    fi
    echo "install-deps: installing s3rver into $NODE_DIR" >&2
    npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" s3rver@3.7.1 >/dev/null
fi

# The nested-KVM test host (scripts/hwvirt.sh): Debian's kernel package unpacked with
# the modules it needs into the kindling cache; Linux-guest tests run in it on hosts
# whose KVM cannot boot Linux (PVM).
if [ "$(id -u)" = 0 ]; then
    "$(dirname "$0")/hwvirt.sh" --prepare
    # The Debian packages of the Linux guests' root images (scripts/mkroot.sh), unpacked
    # into the kindling cache: the nested host builds images from it read-only.
    "$(dirname "$0")/mkroot.sh" --prepare
fi
