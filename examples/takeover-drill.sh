#!/usr/bin/env bash
# The takeover drill on one machine (issue 15, docs/takeover.md): three
# primaries (three stores, mounts, volumes) mirror to one `strata archive
# serve --takeover-dir`, under a steady write load with fsync. The drill kills
# one primary's daemon (kill -9) and wipes its store, waits until the archive
# host serves that volume, checks that every file fsynced before the kill is
# there and that the other two kept mirroring, then fails back (strata release
# of the takeover mount, strata recover on a fresh store) and ends with
# strata verify on all three. Run as root (FUSE). Exit 0 when everything held.
#
#   STRATA          how to run strata [node $(dirname $0)/../bin/strata.js]
#   WORK            scratch directory [/var/tmp/strata-takeover-drill] (removed at the end unless KEEP=1)
#   TAKEOVER_AFTER  --takeover-after seconds [5]
#   LEASE           the primaries' --lease seconds [2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STRATA=${STRATA:-node $here/../bin/strata.js}
WORK=${WORK:-/var/tmp/strata-takeover-drill}
TAKEOVER_AFTER=${TAKEOVER_AFTER:-5}
LEASE=${LEASE:-2}
VOLS=(alpha beta gamma)
export STRATA_RUN_DIR=$WORK/run

step() { printf '\n== %s\n' "$*"; }
fail() { echo "DRILL FAILED: $*" >&2; exit 1; }

cleanup() {
  set +e
  for pid in "${LOADS[@]:-}"; do kill "$pid" 2>/dev/null; done
  for m in "$WORK"/mnt-* "$WORK"/takeover/*/mnt; do [ -d "$m" ] && $STRATA unmount "$m" >/dev/null 2>&1; done
  [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

rm -rf "$WORK"; mkdir -p "$WORK/run"
head -c 32 /dev/urandom | base64 > "$WORK/token"; chmod 600 "$WORK/token"

step "archive with automatic takeover (--takeover-after $TAKEOVER_AFTER)"
$STRATA archive serve --data "$WORK/archive" --listen 127.0.0.1:0 --token-file "$WORK/token" \
  --takeover-dir "$WORK/takeover" --takeover-after "$TAKEOVER_AFTER" --takeover-lease "$LEASE" \
  --on-takeover "echo \"\$STRATA_VOLUME \$STRATA_MOUNTPOINT \$STRATA_EPOCH\" >> $WORK/hook.log" \
  > "$WORK/serve.out" 2> "$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*"listening":"[^"]*:\([0-9]*\)".*/\1/p' "$WORK/serve.out")
[ -n "$PORT" ] || fail "the archive did not start (see $WORK/serve.log)"
URL=strata://127.0.0.1:$PORT
A=(--archive "$URL" --token-file "$WORK/token")

step "three primaries, each under a write load (every fsynced file is logged)"
LOADS=()
for v in "${VOLS[@]}"; do
  mkdir -p "$WORK/mnt-$v"
  $STRATA mount --store "$WORK/store-$v" "${A[@]}" --volume "$v" --lease "$LEASE" "$WORK/mnt-$v"
  ( set +o pipefail; i=0; mkdir -p "$WORK/mnt-$v/load"
    while true; do i=$((i+1))
      if yes "$v file $i" | head -c 8192 | dd of="$WORK/mnt-$v/load/f$i" conv=fsync status=none 2>/dev/null; then echo "$i" >> "$WORK/fsynced-$v"; else sleep 0.2; fi
      sleep 0.05
    done ) &
  LOADS+=($!)
done
sleep 5
$STRATA archive status "${A[@]}"

step "disk loss on alpha: kill -9 of its daemon, the store wiped"
pid=$($STRATA status --json "$WORK/mnt-alpha" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
t0=$(date +%s.%N)
kill -9 "$pid"; kill "${LOADS[0]}"; wait "${LOADS[0]}" 2>/dev/null || true
$STRATA unmount "$WORK/mnt-alpha" >/dev/null; rm -rf "$WORK/store-alpha"

step "waiting for the archive host to serve alpha"
for _ in $(seq 600); do $STRATA archive status "${A[@]}" --json | grep -q '"state":"serving"' && break; sleep 0.1; done
t1=$(date +%s.%N)
$STRATA archive status "${A[@]}" --volume alpha
printf 'kill -9 -> takeover serving: %.2f s\n' "$(echo "$t1 - $t0" | bc)"
TM=$WORK/takeover/alpha/mnt
missing=0
while read -r i; do [ "$(cat "$TM/load/f$i" 2>/dev/null)" = "$(yes "alpha file $i" | head -c 8192)" ] || missing=$((missing+1)); done < "$WORK/fsynced-alpha"
echo "$(wc -l < "$WORK/fsynced-alpha") files fsynced before the kill, $missing missing on the takeover mount"
[ "$missing" = 0 ] || fail "fsynced files lost"
grep -q "alpha $TM" "$WORK/hook.log" || fail "--on-takeover did not run"
echo written during the takeover > "$TM/during"; sync

step "the others kept mirroring"
for j in 1 2; do kill "${LOADS[$j]}"; done
for v in beta gamma; do $STRATA sync "$WORK/mnt-$v" || fail "$v did not drain"; done

step "failback: release the takeover mount, recover alpha on a fresh store"
if $STRATA recover --store "$WORK/store-alpha2" "${A[@]}" --volume alpha "$WORK/mnt-alpha" 2>/dev/null; then fail "recover while the takeover holds the lease"; fi
$STRATA archive release alpha "${A[@]}"
$STRATA recover --store "$WORK/store-alpha2" "${A[@]}" --volume alpha --lease "$LEASE" "$WORK/mnt-alpha"
[ "$(cat "$WORK/mnt-alpha/during")" = "written during the takeover" ] || fail "the takeover's write is missing"
for _ in $(seq 600); do $STRATA status --json "$WORK/mnt-alpha" | grep -q '"phase":"complete"' && break; sleep 0.2; done
$STRATA sync "$WORK/mnt-alpha"

step "strata verify, all three"
$STRATA verify --store "$WORK/store-alpha2" "${A[@]}" --volume alpha
for v in beta gamma; do $STRATA verify --store "$WORK/store-$v" "${A[@]}" --volume "$v"; done
$STRATA archive status "${A[@]}"
echo "DRILL PASSED"
