#!/bin/sh
# Builds the C reference file systems of `npm run bench:reference` (bench/README.md):
#
#   passthrough_ll  always: libfuse's C example, from Debian's libfuse3-dev
#                   (/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c).
#   passthrough_hp  when SRC_DIR holds libfuse's example/passthrough_hp.cc and
#                   example/cxxopts.hpp of the libfuse 3.14 era (Debian's binary
#                   packages do not ship them; scripts/fetch-libfuse-examples.sh
#                   takes them from Debian's source package of fuse3).
#
# Usage: scripts/build-reference-fs.sh SRC_DIR OUT_DIR
# Then:  PASSTHROUGH_LL=OUT_DIR/passthrough_ll PASSTHROUGH_HP=OUT_DIR/passthrough_hp npm run bench:reference
#
# Neither program is part of strata (both are GPLv2 examples of libfuse); they
# are built outside the repository and never committed. Needs gcc, g++,
# pkg-config and libfuse3-dev (apt-get install -y build-essential pkg-config libfuse3-dev).
#
# The -DHAVE_* flags are what libfuse's own build (meson's config.h) defines on
# Linux with glibc; without them the examples leave out utimensat on paths
# (tar could not set times), posix_fallocate, copy_file_range and xattrs.
set -eu

if [ "$#" -ne 2 ]; then
	echo "usage: $0 SRC_DIR OUT_DIR" >&2
	exit 2
fi
src=$1
out=$2
examples=/usr/share/doc/libfuse3-dev/examples

pkg-config --exists fuse3 || { echo "$0: pkg-config finds no fuse3: apt-get install -y libfuse3-dev" >&2; exit 1; }
[ -f "$examples/passthrough_ll.c" ] || { echo "$0: $examples/passthrough_ll.c is missing: apt-get install -y libfuse3-dev" >&2; exit 1; }
mkdir -p "$out"
fuse_cflags=$(pkg-config --cflags fuse3)
fuse_libs=$(pkg-config --libs fuse3)
echo "libfuse $(pkg-config --modversion fuse3)"

# shellcheck disable=SC2086 # the pkg-config output is a list of words
gcc -O2 -Wall $fuse_cflags -DHAVE_FALLOCATE -DHAVE_POSIX_FALLOCATE -DHAVE_COPY_FILE_RANGE -I"$examples" \
	-o "$out/passthrough_ll" "$examples/passthrough_ll.c" $fuse_libs -lpthread
echo "built $out/passthrough_ll (from $examples/passthrough_ll.c)"

if [ -f "$src/passthrough_hp.cc" ] && [ -f "$src/cxxopts.hpp" ]; then
	# shellcheck disable=SC2086
	g++ -O2 -std=c++17 $fuse_cflags -DHAVE_UTIMENSAT -DHAVE_POSIX_FALLOCATE -DHAVE_SETXATTR -I"$src" \
		-o "$out/passthrough_hp" "$src/passthrough_hp.cc" $fuse_libs -lpthread
	echo "built $out/passthrough_hp (from $src/passthrough_hp.cc)"
else
	echo "no passthrough_hp: $src lacks passthrough_hp.cc and cxxopts.hpp (libfuse's example/ folder, libfuse 3.14 era)"
fi
