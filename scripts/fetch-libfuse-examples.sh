#!/bin/sh
# Fetches libfuse 3.14's example/ folder (passthrough_hp.cc and cxxopts.hpp,
# which Debian's libfuse3-dev does not ship) from Debian's own source package
# of fuse3, for scripts/build-reference-fs.sh:
#
#   scripts/fetch-libfuse-examples.sh /var/tmp/libfuse-src
#   scripts/build-reference-fs.sh /var/tmp/libfuse-src/example /var/tmp/reference-fs
#
# It adds a deb-src entry for bookworm (/etc/apt/sources.list.d/strata-deb-src.sources,
# as root; removed again unless KEEP_DEB_SRC=1), runs `apt-get update` and
# `apt-get source --download-only fuse3` in OUT_DIR, and unpacks the upstream
# tarball there. The sources are GPLv2 (cxxopts: MIT): they stay outside this
# repository.
set -eu

if [ "$#" -ne 1 ]; then
	echo "usage: $0 OUT_DIR" >&2
	exit 2
fi
out=$1
list=/etc/apt/sources.list.d/strata-deb-src.sources
mkdir -p "$out"
added=0
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
	cat > "$list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	added=1
fi
cleanup() {
	if [ "$added" = 1 ] && [ "${KEEP_DEB_SRC:-0}" != 1 ]; then rm -f "$list"; fi
}
trap cleanup EXIT
apt-get update -qq
(cd "$out" && apt-get source --download-only -qq fuse3)
tarball=$(ls "$out"/fuse3_*.orig.tar.* | head -n 1)
tar -xf "$tarball" -C "$out"
src=$(ls -d "$out"/fuse-3.* | head -n 1)
rm -rf "$out/example"
cp -r "$src/example" "$out/example"
echo "libfuse examples of $(basename "$src") in $out/example (passthrough_hp.cc, cxxopts.hpp)"
