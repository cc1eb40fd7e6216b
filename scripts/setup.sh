#!/usr/bin/env bash
# Installs everything strata needs on a fresh Debian 12 machine with Node 20
# (run as root): libfuse 3 (runtime, and headers for the FUSE bridge's build),
# fusermount (Debian's `fuse`; its `fuse3` conflicts with it and is not needed:
# root mounts without a helper), the real programs the tests and the demo use
# (setfacl/getfacl from acl among them),
# fio for the benchmarks; then builds strata (npm ci: the FUSE bridge in
# native/fuse-native, strata's native addon, TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  libfuse3-3 libfuse3-dev pkg-config fuse fio sqlite3 rsync git attr acl xfsprogs python3 tar coreutils util-linux procps iproute2 openssl g++ make >/dev/null
npm ci --no-audit --no-fund
