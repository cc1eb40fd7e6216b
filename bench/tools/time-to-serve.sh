#!/bin/bash
# time-to-serve.sh - `strata recover` wall time against one `strata archive
# serve` process, for one or more strata checkouts in turn (an A/B of two
# builds: alternated, so a drift of the machine hits both), with the page cache
# dropped before each run (root). Prints one line per run: the wall time, the
# daemon's own "serving after", and its `startup` breakdown (status --json).
#
#   bench/tools/time-to-serve.sh ARCHIVE_DATA_DIR TOKEN_FILE VOLUME ROUNDS REPO [REPO...]
#
# ARCHIVE_DATA_DIR: an archive's data directory, e.g. one the scale benchmark
# kept (SCALE_ARCHIVE_DIR=DIR npm run bench:scale: DIR/data, DIR/token). The
# first REPO runs the archive server and the status/unmount calls.
# Every recover fences the volume (its epoch goes up by one): use a copy.
set -euo pipefail
data=$1 token=$2 volume=$3 rounds=$4; shift 4
repos=("$@")
w=$(mktemp -d /var/tmp/strata-tts.XXXXXX)
mkdir -p "$w/mnt"
cli="node ${repos[0]}/bin/strata.js"
port=$((20000 + RANDOM % 20000))
$cli archive serve --data "$data" --listen 127.0.0.1:$port --token-file "$token" --log-level warn > "$w/server.log" 2>&1 &
server=$!
cleanup() { $cli unmount "$w/mnt" > /dev/null 2>&1 || true; kill $server 2> /dev/null || true; wait $server 2> /dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
for _ in $(seq 1 50); do grep -q "listening\|serving" "$w/server.log" 2> /dev/null && break; sleep 0.2; done
sleep 0.5
for round in $(seq 1 "$rounds"); do
  for repo in "${repos[@]}"; do
    rm -rf "$w/store"
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(date +%s%N)
    node "$repo/bin/strata.js" recover --store "$w/store" --archive strata://127.0.0.1:$port --token-file "$token" \
      --volume "$volume" --depth 2 --no-background-restore "$w/mnt" > "$w/recover.out" 2>&1 || { cat "$w/recover.out"; exit 1; }
    t1=$(date +%s%N)
    startup=$($cli status --json "$w/mnt" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(JSON.stringify(j.startup??null))})')
    echo "{\"repo\":\"$repo\",\"round\":$round,\"recover_wall_s\":$(( (t1 - t0) / 1000000 ))e-3,\"daemon\":\"$(grep -o 'serving after [0-9.]* s' "$w/recover.out" || true)\",\"startup\":$startup}"
    $cli unmount "$w/mnt" > /dev/null
  done
done
