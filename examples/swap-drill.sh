#!/usr/bin/env bash
# The swap drill on one machine (issue 13, docs/swap.md): a mirrored mount
# (file:// archive with one snapshot target) holds a small project tree; a
# snapshot is taken (the good point); a "processing run" damages the volume
# (overwrites, deletes, renames); a spare is prepared from the good point
# while a program keeps reading and appending to a log; the swap is committed
# under that program; the drill checks that the tree equals the good point,
# that the program never failed, that the archive converged (strata verify),
# then swaps back and checks the damaged tree is exactly what it was.
# Second round, the same good point from a local checkpoint taken with the
# snapshot (`--from checkpoint:good`: the live files are block-copied, only the
# blocks changed since are read from the checkpoint's log): prepare, commit
# under the program, check, swap back.
# Run as root (FUSE). Exit 0 when everything held.
#
#   STRATA  how to run strata [node $(dirname $0)/../bin/strata.js]
#   WORK    scratch directory [/var/tmp/strata-swap-drill] (removed at the end unless KEEP=1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STRATA=${STRATA:-node $here/../bin/strata.js}
WORK=${WORK:-/var/tmp/strata-swap-drill}
export STRATA_RUN_DIR=$WORK/run
MNT=$WORK/mnt STORE=$WORK/store SPARE=$WORK/spare ARCHIVE=file://$WORK/archive

step() { printf '\n== %s\n' "$*"; }
fail() { echo "DRILL FAILED: $*" >&2; exit 1; }
manifest() { (cd "$1" && find . -mindepth 1 ! -name log -printf '%p %y %m %U %G %s %T@ %l\n' | LC_ALL=C sort && find . -type f ! -name log -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum); }

cleanup() {
  set +e
  [ -n "${PROG:-}" ] && kill "$PROG" 2>/dev/null
  $STRATA unmount "$MNT" >/dev/null 2>&1
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"; mkdir -p "$WORK/run" "$MNT" "$SPARE" "$WORK/target"

step "a mirrored mount with a project tree"
$STRATA mount "$MNT" --store "$STORE" --archive "$ARCHIVE" --volume project
mkdir -p "$MNT/src/lib" "$MNT/data"
for i in $(seq 1 50); do head -c $((i * 3000)) /dev/urandom > "$MNT/data/sample-$i.bin"; done
for i in $(seq 1 20); do echo "module $i" > "$MNT/src/lib/mod$i.txt"; done
ln "$MNT/data/sample-1.bin" "$MNT/data/first.bin"; ln -s lib/mod1.txt "$MNT/src/main"
setfattr -n user.owner -v team "$MNT/data"
$STRATA sync "$MNT"

step "the good point: an archive snapshot"
$STRATA archive targets --archive "$ARCHIVE" --target A="$WORK/target" >/dev/null
SNAP=$($STRATA snapshot create "$MNT" --wait --json | node -e 'process.stdin.on("data", d => console.log(JSON.parse(d).id))')
echo "snapshot $SNAP"
$STRATA checkpoint create "$MNT" --name good     # the same point, kept locally (docs/checkpoints.md)
manifest "$MNT" > "$WORK/good.manifest"

step "a processing run damages the volume"
for i in $(seq 1 25); do echo "garbage $i" > "$MNT/data/sample-$i.bin"; done
rm -f "$MNT"/src/lib/mod1[0-9].txt; mv "$MNT/src/lib" "$MNT/src/lib.broken"; echo junk > "$MNT/junk"
$STRATA sync "$MNT"
manifest "$MNT" > "$WORK/damaged.manifest"

program() {
  rm -f "$WORK/stop"
  ( set +e; n=0
    while [ ! -e "$WORK/stop" ]; do
      cat "$MNT"/data/*.bin > /dev/null || echo "read failed" >> "$WORK/errors"
      echo "line $n" >> "$MNT/log" || echo "append failed" >> "$WORK/errors"
      n=$((n + 1))
    done ) &
  PROG=$!
}

step "a program keeps using the mount (reads every file, appends to a log)"
program

step "prepare a spare from the good point (in the background of the daemon)"
$STRATA swap prepare "$MNT" --spare "$SPARE" --from "snapshot:$SNAP"

step "commit the swap while the program runs"
$STRATA swap commit "$MNT" --hold-timeout 10
sleep 1; touch "$WORK/stop"; wait "$PROG"; PROG=
[ -e "$WORK/errors" ] && fail "the program saw errors: $(sort "$WORK/errors" | uniq -c)"
manifest "$MNT" | diff - "$WORK/good.manifest" >/dev/null || fail "the tree is not the good point"
echo "the tree is the good point; the program never failed"
$STRATA sync "$MNT"
$STRATA verify --store "$SPARE" --archive "$ARCHIVE" --volume project || fail "the archive did not converge"
$STRATA status "$MNT" | grep -E '^(store|swap)'

step "undo: swap back to the damaged tree (it is the spare now)"
$STRATA swap back "$MNT"
manifest "$MNT" | diff - "$WORK/damaged.manifest" >/dev/null || fail "swap back did not restore the pre-swap tree"
$STRATA sync "$MNT"
$STRATA verify --store "$STORE" --archive "$ARCHIVE" --volume project || fail "the archive did not converge after swap back"
$STRATA snapshot list --archive "$ARCHIVE" --volume project

step "again from the local checkpoint: the spare still holds the snapshot's tree, discard it first"
$STRATA checkpoint list "$MNT"          # live again: it belongs to this store
$STRATA swap discard "$MNT"
program
$STRATA swap prepare "$MNT" --spare "$SPARE" --from checkpoint:good
$STRATA swap commit "$MNT" --hold-timeout 10
sleep 1; touch "$WORK/stop"; wait "$PROG"; PROG=
[ -e "$WORK/errors" ] && fail "the program saw errors: $(sort "$WORK/errors" | uniq -c)"
manifest "$MNT" | diff - "$WORK/good.manifest" >/dev/null || fail "the tree is not the checkpoint's"
echo "the tree is the checkpoint's; the program never failed"
$STRATA status --json "$MNT" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const c=JSON.parse(s).swap.lastCommit;console.log("handover: "+c.handover.kind+", hold "+c.holdMs+" ms")})'
$STRATA sync "$MNT"
$STRATA verify --store "$SPARE" --archive "$ARCHIVE" --volume project || fail "the archive did not converge to the checkpoint's tree"
$STRATA swap back "$MNT"
manifest "$MNT" | diff - "$WORK/damaged.manifest" >/dev/null || fail "swap back did not restore the pre-swap tree"
$STRATA sync "$MNT"
$STRATA verify --store "$STORE" --archive "$ARCHIVE" --volume project || fail "the archive did not converge after swap back"
echo; echo "DRILL OK"
