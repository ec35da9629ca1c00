#!/bin/sh
# Installs every Debian and npm package the build, the tests and the demo need.
# Idempotent: does nothing when everything is already there.  Run as root on
# Debian 12; elsewhere it only reports what is missing.
set -eu

PKGS="build-essential pkg-config git ca-certificates
 libcli11-dev doctest-dev libssl-dev libcurl4-openssl-dev libzstd-dev zstd
 libseccomp-dev libfuse3-dev fuse3 nlohmann-json3-dev libboost-dev libmemcached-dev
 scdoc socat curl gnuplot-nox python3 procps
 memcached
 linux-source-6.1 bc flex bison libelf-dev cpio xz-utils"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

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
