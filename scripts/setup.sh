#!/usr/bin/env bash
# Installs everything strata needs on a fresh Debian 12 machine with Node 20
# (run as root): the libfuse 2.9 runtime and fusermount, the real programs the
# tests and the demo use, fio for the benchmarks; then builds strata (npm ci:
# the FUSE bridge in native/fuse-native, strata's native addon, TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  libfuse2 fuse fio sqlite3 rsync git attr xfsprogs python3 tar coreutils util-linux procps openssl g++ make >/dev/null
npm ci --no-audit --no-fund
