#!/usr/bin/env bash
# A real S3 engine for strata's object-storage tests: Ceph's radosgw on a
# one-node Ceph cluster (one monitor, one manager, one OSD on memstore) from
# Debian 12's packages, bootstrapped by hand (no cephadm, no containers, no
# systemd: the daemons are started directly, as CI machines and containers
# rarely run systemd as PID 1).
#
#   scripts/s3-engine.sh start   install (apt-get, once), bootstrap, start; prints env lines
#   scripts/s3-engine.sh env     prints the env lines of a running engine
#   scripts/s3-engine.sh stop    stops the daemons and removes the engine's directory
#   scripts/s3-engine.sh start-rgw b|c / stop-rgw b|c
#                                more S3 gateways on the same cluster (ports +1, +2),
#                                for fault tests (the object store unreachable, and
#                                back) without disturbing tests that use another one
#   scripts/s3-engine.sh freeze-rgw b / thaw-rgw b
#                                SIGSTOP/SIGCONT of a gateway: connections open, no answers
#
# Env lines (eval-able): STRATA_S3_ENDPOINT, STRATA_S3_FAULT_ENDPOINT (gateway b,
# started on demand), STRATA_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION. They are also written to $DIR/env.
# Settings: STRATA_S3_ENGINE_DIR (default /var/tmp/strata-s3-engine),
# STRATA_S3_PORT (default 7480), STRATA_S3_MON_PORT (default 16789, v1; v2 is +1).
# The OSD keeps its objects in memory (memstore, 4 GiB): the engine is for
# tests; stopping it loses the bucket. Must run as root.
set -euo pipefail

DIR=${STRATA_S3_ENGINE_DIR:-/var/tmp/strata-s3-engine}
PORT=${STRATA_S3_PORT:-7480}
MON_PORT=${STRATA_S3_MON_PORT:-16789}
MON_PORT2=$((MON_PORT + 1))
BUCKET=${STRATA_S3_BUCKET:-strata-test}
ACCESS_KEY=strata-test-access
SECRET_KEY=strata-test-secret-0123456789abcdef
CONF=$DIR/ceph.conf
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

log() { printf 's3-engine: %s\n' "$*" >&2; }
ceph_() { ceph -c "$CONF" -k "$DIR/admin.keyring" -n client.admin --connect-timeout 20 "$@"; }

install() {
  local need=()
  for p in ceph-mon ceph-mgr ceph-osd radosgw ceph-common; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  fi
}

print_env() {
  cat <<EOF
STRATA_S3_ENDPOINT=http://127.0.0.1:$PORT
STRATA_S3_FAULT_ENDPOINT=http://127.0.0.1:$((PORT + 1))
STRATA_S3_FAULT_ENDPOINT_C=http://127.0.0.1:$((PORT + 2))
STRATA_S3_BUCKET=$BUCKET
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_REGION=us-east-1
EOF
}

wait_for() { # seconds, description, command...
  local n=$1 what=$2; shift 2
  for _ in $(seq 1 $((n * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timed out waiting for $what"; return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_rgw() { # a (the tests' gateway) or b (the fault tests')
  local name=${1:-a} port=$PORT
  [ "$name" = b ] && port=$((PORT + 1))
  [ "$name" = c ] && port=$((PORT + 2))
  pid_alive "$DIR/run/client.rgw.$name.pid" && return 0
  radosgw -c "$CONF" -n "client.rgw.$name" --keyring "$DIR/rgw/keyring.$name"
  wait_for 60 "radosgw $name on port $port" curl -sf "http://127.0.0.1:$port/"
}

stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

start() {
  [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
  if [ -f "$DIR/env" ] && pid_alive "$DIR/run/client.rgw.a.pid"; then cat "$DIR/env"; return 0; fi
  [ -d "$DIR" ] && stop
  for p in "$PORT" "$MON_PORT" "$MON_PORT2"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is in use (another engine? STRATA_S3_PORT, STRATA_S3_MON_PORT)"; exit 1; fi
  done
  trap 'log "start failed (logs: $DIR/log); stopping what started"; stop_daemons' ERR
  local t0; t0=$(date +%s.%N)
  install
  local t1; t1=$(date +%s.%N)
  mkdir -p "$DIR"/{run,log,mon/ceph-a,mgr/ceph-x,osd/ceph-0,rgw}
  local fsid; fsid=$(uuidgen)
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon data = $DIR/mon/ceph-\$id
mgr data = $DIR/mgr/ceph-\$id
osd data = $DIR/osd/ceph-\$id
keyring = $DIR/admin.keyring
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = 4294967296
osd max object name len = 256
osd max object namespace len = 64
ms bind ipv4 = true
ms bind ipv6 = false
[mon]
keyring = \$mon_data/keyring
[mgr]
keyring = \$mgr_data/keyring
[osd]
keyring = \$osd_data/keyring
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw/a
rgw enable usage log = false
[client.rgw.b]
rgw frontends = beast endpoint=127.0.0.1:$((PORT + 1))
rgw data = $DIR/rgw/b
[client.rgw.c]
rgw frontends = beast endpoint=127.0.0.1:$((PORT + 2))
rgw data = $DIR/rgw/c
rgw enable usage log = false
EOF
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/admin.keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
  ceph-mon -c "$CONF" -i a
  wait_for 60 "the monitor" ceph_ -s
  log "monitor up"

  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' >"$DIR/mgr/ceph-x/keyring"
  ceph-mgr -c "$CONF" -i x 2>>"$DIR/log/mgr.x.stderr"

  local uuid; uuid=$(uuidgen)
  local id; id=$(ceph_ osd new "$uuid")
  [ "$id" = 0 ] || { log "unexpected osd id $id"; exit 1; }
  ceph-authtool --create-keyring "$DIR/osd/ceph-0/keyring" --gen-key -n osd.0 >/dev/null
  ceph_ auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' -i "$DIR/osd/ceph-0/keyring" >/dev/null 2>&1
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" --keyring "$DIR/osd/ceph-0/keyring" >/dev/null 2>&1
  ceph-osd -c "$CONF" -i 0 --keyring "$DIR/osd/ceph-0/keyring" 2>>"$DIR/log/osd.0.stderr"
  wait_for 120 "the OSD" sh -c "ceph -c '$CONF' -k '$DIR/admin.keyring' osd stat | grep -q '1 up'"
  log "osd up"

  for g in a b c; do
    mkdir -p "$DIR/rgw/$g"
    ceph_ auth get-or-create "client.rgw.$g" mon 'allow rw' osd 'allow rwx' mgr 'allow rw' >"$DIR/rgw/keyring.$g"
  done
  start_rgw a
  log "radosgw up on 127.0.0.1:$PORT"
  radosgw-admin -c "$CONF" -n client.admin user create --uid strata-test --display-name 'strata tests' \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >/dev/null
  wait_for 30 "bucket $BUCKET" curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" -H "x-amz-content-sha256: $EMPTY_SHA256" \
    --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$PORT/$BUCKET"
  print_env >"$DIR/env"
  local t2; t2=$(date +%s.%N)
  log "$(printf 'install %.1f s, bootstrap+start %.1f s' "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)")"
  cat "$DIR/env"
}

stop_daemons() {
  for f in client.rgw.c client.rgw.b client.rgw.a osd.0 mgr.x mon.a; do stop_pidfile "$DIR/run/$f.pid"; done
}

stop() {
  [ -d "$DIR" ] || return 0
  stop_daemons
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) [ -f "$DIR/env" ] && cat "$DIR/env" || { log "not running"; exit 1; } ;;
  stop-rgw) stop_pidfile "$DIR/run/client.rgw.${2:-a}.pid" ;;
  start-rgw) start_rgw "${2:-a}" ;;
  freeze-rgw) kill -STOP "$(cat "$DIR/run/client.rgw.${2:-a}.pid")" ;; # accepts connections, answers nothing
  thaw-rgw) kill -CONT "$(cat "$DIR/run/client.rgw.${2:-a}.pid")" ;;
  *) echo "usage: $0 start|stop|env|start-rgw [a|b|c]|stop-rgw [a|b|c]|freeze-rgw [a|b|c]|thaw-rgw [a|b|c]" >&2; exit 2 ;;
esac
