#!/usr/bin/env bash
# A disaster drill for strata on two hosts:
#
#   host A  the archive node: `strata archive serve` with a token
#   host B  the primary: `strata mount` of a store mirrored to volume $VOLUME
#           on host A; then the disk is "lost" (kill -9 of the daemon, the
#           stale mount cleared, the store wiped) and `strata recover` brings
#           the volume back from host A, serving after its top tiers are in
#           place, the rest on demand and in the background.
#
# Run each phase on the host named below, in this order:
#
#   A$ ./disaster-drill.sh archive    # serves the archive in the foreground (Ctrl-C stops it);
#                                     # or use strata-archive.service instead
#   B$ ./disaster-drill.sh primary    # mount, write a test tree, strata sync, strata verify, record checksums
#   B$ ./disaster-drill.sh lose       # kill -9 the daemon, clear the stale mount, WIPE $STORE (asks first)
#   B$ ./disaster-drill.sh recover    # strata recover, programs on deep paths, wait until fully local,
#                                     # compare checksums, strata verify
#   B$ ./disaster-drill.sh cleanup    # unmount (the store, the archive volume and $WORK stay)
#
#   B$ ./disaster-drill.sh drill      # primary + lose + recover in one go (host A must be serving)
#
# Everything is set through the environment (defaults in brackets):
#
#   STRATA          how to run strata on this host [strata]; e.g. "node /opt/strata/bin/strata.js"
#   ARCHIVE_HOST    host A's name or address, as host B reaches it [archive.example]
#   ARCHIVE_PORT    the archive's port [7070]
#   ARCHIVE_SCHEME  strata (h2c) or stratas (TLS) [strata]
#   TOKEN_FILE      the shared token, the same file content on both hosts, chmod 600 [/etc/strata/token];
#                   `archive` creates it on host A when missing: copy it to host B
#   --- host A ---
#   ARCHIVE_DATA    the archive's data directory [/srv/strata-archive]
#   ARCHIVE_LISTEN  the address to listen on [0.0.0.0:$ARCHIVE_PORT]
#   TLS_CERT, TLS_KEY  PEM files for stratas:// (with ARCHIVE_SCHEME=stratas). Host B
#                   trusts the system's CAs; for a private CA run host B's phases with
#                   NODE_EXTRA_CA_CERTS=/path/ca.pem in the environment.
#   --- host B ---
#   VOLUME          the archive volume of the drill's store [drill]
#   STORE           the store directory (wiped by `lose`!) [/srv/strata/drill]
#   MNT             the mountpoint [/mnt/drill]
#   WORK            where the drill keeps its checksums, NOT on the store's disk [/var/tmp/strata-drill]
#   DEPTH           `strata recover --depth`: directories at this tier stay pending [2]
#   FETCH_TIMEOUT   `--fetch-timeout`: seconds an op waits for the archive before EIO [10]
#   BIG_MB          size of the large test file in MiB [256]
#   SYNC_TIMEOUT    seconds `strata sync` may wait for the archive [600]
#   RESTORE_TIMEOUT seconds the background restore may take before the drill fails [3600]
#   DRILL_WIPE      set to "yes" to wipe $STORE without being asked
#
# The drill stops at the first failing step (exit status non-zero). It never
# wipes anything but $STORE, and refuses to when $STORE looks wrong.
set -euo pipefail

STRATA=${STRATA:-strata}
ARCHIVE_HOST=${ARCHIVE_HOST:-archive.example}
ARCHIVE_PORT=${ARCHIVE_PORT:-7070}
ARCHIVE_SCHEME=${ARCHIVE_SCHEME:-strata}
TOKEN_FILE=${TOKEN_FILE:-/etc/strata/token}
ARCHIVE_DATA=${ARCHIVE_DATA:-/srv/strata-archive}
ARCHIVE_LISTEN=${ARCHIVE_LISTEN:-0.0.0.0:$ARCHIVE_PORT}
TLS_CERT=${TLS_CERT:-}
TLS_KEY=${TLS_KEY:-}
VOLUME=${VOLUME:-drill}
STORE=${STORE:-/srv/strata/drill}
MNT=${MNT:-/mnt/drill}
WORK=${WORK:-/var/tmp/strata-drill}
DEPTH=${DEPTH:-2}
FETCH_TIMEOUT=${FETCH_TIMEOUT:-10}
BIG_MB=${BIG_MB:-256}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-600}
RESTORE_TIMEOUT=${RESTORE_TIMEOUT:-3600}
DRILL_WIPE=${DRILL_WIPE:-}

URL="$ARCHIVE_SCHEME://$ARCHIVE_HOST:$ARCHIVE_PORT"
# The test tree's deep file: 10 directories down, far below the recovery's frontier.
DEEP_DIR=projects/acme/services/billing/src/main/java/com/acme/billing
DEEP_FILE=$DEEP_DIR/Invoice.java

T0=$(date +%s.%N)
since() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
say()  { printf '[%7s s] %s\n' "$(since "$T0")" "$*"; }
step() { printf '\n'; say "== $*"; }
die()  { say "DRILL FAILED: $*" >&2; exit 1; }
run()  { printf '  $ %s\n' "$*"; "$@"; }
st()   { $STRATA "$@"; }                      # word-splits $STRATA on purpose ("node /path/strata.js")
# One field of `strata status --json $MNT`, e.g. json pid, json restore.phase.
json() { st status --json "$MNT" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    let v = JSON.parse(s); for (const k of process.argv[1].split(".")) v = v == null ? v : v[k];
    process.stdout.write(v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  });' "$1"; }
# ondemand TITLE EXPECTED CMD...: runs CMD on the mount, fails the drill unless its output holds EXPECTED.
ondemand() {
  local title=$1 want=$2 out t; shift 2
  t=$(date +%s.%N)
  out=$("$@" 2>&1) || die "$title failed: $out"
  [[ $out == *"$want"* ]] || die "$title: expected \"$want\", got \"$out\""
  say "$title: $(printf '%s' "$out" | tr '\n' ' ') ($(since "$t") s)"
}

# ---------------------------------------------------------------------------- host A

phase_archive() {
  step "host A: strata archive serve on $ARCHIVE_LISTEN, data in $ARCHIVE_DATA"
  if [[ ! -s $TOKEN_FILE ]]; then
    mkdir -p "$(dirname "$TOKEN_FILE")"
    (umask 077; head -c 32 /dev/urandom | base64 > "$TOKEN_FILE")
    say "created the token $TOKEN_FILE: copy it to host B (same path, chmod 600)"
  fi
  local tls=()
  if [[ $ARCHIVE_SCHEME == stratas ]]; then
    [[ -n $TLS_CERT && -n $TLS_KEY ]] || die "ARCHIVE_SCHEME=stratas needs TLS_CERT and TLS_KEY"
    tls=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
  fi
  say "serving until Ctrl-C (SIGTERM/SIGINT: finish requests in flight, then exit)"
  exec $STRATA archive serve --data "$ARCHIVE_DATA" --listen "$ARCHIVE_LISTEN" --token-file "$TOKEN_FILE" "${tls[@]}"
}

# ---------------------------------------------------------------------------- host B

preflight() {
  command -v node >/dev/null || die "node is not installed"
  [[ -r $TOKEN_FILE ]] || die "no token at $TOKEN_FILE (copy host A's)"
  [[ -d $MNT ]] || mkdir -p "$MNT"
  mkdir -p "$WORK"
}

phase_primary() {
  preflight
  step "host B: mount $STORE at $MNT, mirrored to $URL volume $VOLUME"
  grep -qs " $MNT fuse" /proc/mounts && die "$MNT is already mounted ('$0 cleanup' first)"
  run $STRATA mount --store "$STORE" --archive "$URL" --token-file "$TOKEN_FILE" --volume "$VOLUME" "$MNT"

  step "write a test tree: git history, a sqlite3 database, extracted sources, a ${BIG_MB} MiB file, a sparse file, a deep path"
  (
    cd "$MNT"
    rm -rf drill && mkdir drill && cd drill
    git init -q repo
    (cd repo && git config user.email drill@strata && git config user.name drill &&
      for i in 1 2 3 4 5; do echo "change $i" >> CHANGES; git add -A; git commit -qm "change $i"; done &&
      git rev-parse --short HEAD > "$WORK/head")
    rm -f "$WORK/sqlite"
    if command -v sqlite3 >/dev/null; then
      touch "$WORK/sqlite"
      sqlite3 app.db "create table t(k integer primary key, v text);
        insert into t(v) select hex(randomblob(16)) from (with recursive c(x) as (select 1 union all select x+1 from c where x<5000) select x from c);"
    fi
    mkdir -p src && tar -C /usr/include -cf - linux netinet | tar -C src -xf -
    dd if=/dev/urandom of=big.bin bs=1M count="$BIG_MB" status=none
    truncate -s 1G sparse.img && dd if=/dev/urandom of=sparse.img bs=1M count=4 seek=512 conv=notrunc status=none
    mkdir -p "$DEEP_DIR" && echo "public class Invoice {}" > "$DEEP_FILE"
  )
  say "checksums of the test tree -> $WORK/manifest.sha256 (sparse.img: only its data region)"
  (cd "$MNT/drill" && find . -type f ! -name sparse.img -print0 | sort -z | xargs -0 sha256sum > "$WORK/manifest.sha256")
  (cd "$MNT/drill" && dd if=sparse.img bs=1M skip=512 count=4 status=none | sha256sum > "$WORK/sparse.sha256")

  step "strata sync: wait until the archive holds every change"
  run $STRATA sync --timeout "$SYNC_TIMEOUT" "$MNT"
  step "strata verify: the archive holds exactly the store"
  run $STRATA verify --store "$STORE" --archive "$URL" --token-file "$TOKEN_FILE" --volume "$VOLUME"
  run $STRATA status "$MNT"
}

phase_lose() {
  preflight
  step "simulate disk loss on host B"
  # Wipe only a directory that strata made a store (it holds .strata); ask before anything happens.
  [[ -n $STORE && $STORE != / && -d $STORE/.strata ]] || die "refusing to wipe '$STORE': not a strata store"
  if [[ $DRILL_WIPE != yes ]]; then
    read -r -p "kill the daemon serving $MNT and wipe $STORE (everything in it is deleted)? type yes: " answer
    [[ $answer == yes ]] || die "nothing done"
  fi
  local pid
  pid=$(json pid 2>/dev/null) || pid=""
  if [[ $pid =~ ^[0-9]+$ ]]; then
    run kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    ls "$MNT" 2>&1 | sed 's/^/  /' || true        # "Transport endpoint is not connected"
  else
    say "no daemon serves $MNT (already dead?)"
  fi
  if grep -qs " $MNT fuse" /proc/mounts; then
    run $STRATA unmount "$MNT"                    # clears the stale mount of the dead daemon
  fi
  if mountpoint -q "$STORE"; then
    # The store is a disk of its own: wipe what is on it, and the strata
    # attributes of its root directory, which a new disk would not have either.
    run find "$STORE" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
    local attr
    for attr in $(getfattr --absolute-names -m '^trusted\.strata\.' "$STORE" 2>/dev/null | grep '^trusted'); do
      run setfattr -x "$attr" "$STORE"
    done
  else
    run rm -rf --one-file-system "$STORE"
  fi
  say "the store is gone; the archive on host A still holds volume $VOLUME"
}

phase_recover() {
  preflight
  [[ -e $WORK/manifest.sha256 ]] || die "no $WORK/manifest.sha256: run '$0 primary' first"
  step "strata recover --depth $DEPTH: fence volume $VOLUME (epoch bump), restore tiers 0..$((DEPTH - 1)), serve"
  # Instead of this line, `systemctl start strata-recover@$VOLUME` does the same in the foreground under systemd.
  local out
  out=$($STRATA recover --archive "$URL" --token-file "$TOKEN_FILE" --volume "$VOLUME" --store "$STORE" \
    --depth "$DEPTH" --fetch-timeout "$FETCH_TIMEOUT" "$MNT") || die "strata recover failed"
  printf '%s\n' "$out" | sed 's/^/  /'
  say "time to serve: $(printf '%s\n' "$out" | grep -o 'serving after [0-9.]* s')"
  say "epoch now $(json restore.epoch); $(json restore.entries.done) of $(json restore.entries.total) entries local"

  step "programs on deep paths (fetched on demand; the background restore yields to them)"
  say "fetch counters before: $(json restore.fetch)"
  ondemand "cat the deep file" "class Invoice" cat "$MNT/drill/$DEEP_FILE"
  ondemand "git log" "$(cat "$WORK/head")" git -C "$MNT/drill/repo" log --oneline -1
  if [[ -e $WORK/sqlite ]]; then
    ondemand "sqlite3 count" 5000 sqlite3 "$MNT/drill/app.db" 'select count(*) from t'
  fi
  say "fetch counters after:  $(json restore.fetch)"

  step "the background restore (strata status, every 5 s) until everything is local"
  local waited=0
  local phase
  while phase=$(json restore.phase) && [[ $phase != complete ]]; do
    [[ -n $phase ]] || die "no restore progress from the daemon serving $MNT"
    say "$(st status "$MNT" | grep -A1 '^restore' | tail -1 | sed 's/^ *//')"
    (( waited += 5 )); (( waited <= RESTORE_TIMEOUT )) || die "the restore is not complete after $RESTORE_TIMEOUT s"
    sleep 5
  done
  [[ $phase == complete ]] || die "strata status $MNT does not answer"
  st status "$MNT" | sed -n '/^restore/,/^fetched/p' | sed 's/^/  /'
  [[ $(json restore.fetch.failures) == 0 ]] || say "note: $(json restore.fetch.failures) fetches failed and were retried ($(json restore.fetch.lastError))"

  step "every file reads back as before the loss"
  (cd "$MNT/drill" && sha256sum --quiet -c "$WORK/manifest.sha256") || die "checksums differ"
  (cd "$MNT/drill" && dd if=sparse.img bs=1M skip=512 count=4 status=none | sha256sum | cmp -s - "$WORK/sparse.sha256") || die "sparse.img differs"
  say "$(wc -l < "$WORK/manifest.sha256") files + sparse.img identical; store: sparse.img $(du -h "$STORE/drill/sparse.img" | cut -f1) allocated"

  step "strata verify: 0 differences"
  run $STRATA sync --timeout "$SYNC_TIMEOUT" "$MNT"
  run $STRATA verify --store "$STORE" --archive "$URL" --token-file "$TOKEN_FILE" --volume "$VOLUME"
  say "drill passed: host B serves volume $VOLUME again, fully local, mirrored to $URL"
}

phase_cleanup() {
  step "cleanup on host B"
  if grep -qs " $MNT fuse" /proc/mounts; then run $STRATA unmount "$MNT"; fi
  say "kept: $STORE (the recovered store), $WORK, and volume $VOLUME on host A"
}

case ${1:-} in
  archive) phase_archive ;;
  primary) phase_primary ;;
  lose) phase_lose ;;
  recover) phase_recover ;;
  cleanup) phase_cleanup ;;
  drill) phase_primary; phase_lose; phase_recover ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
