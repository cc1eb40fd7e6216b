#!/bin/sh
# An --on-takeover hook for `strata archive serve --takeover-dir DIR`
# (docs/takeover.md). The archive host runs it (sh -c) once it serves a
# volume whose primary died, with:
#
#   STRATA_VOLUME      the volume, e.g. web1
#   STRATA_MOUNTPOINT  where it is served now, DIR/VOLUME/mnt
#   STRATA_EPOCH       the epoch the takeover fenced the volume at
#
# This one exports the takeover mount over NFS (if exportfs is there) and
# moves the volume's service address to this host (if a SERVICE_ADDR_<volume>
# file names one), then logs what it did. Its exit status and output land in
# the archive's log ("event":"takeover-hook"); the mount serves regardless.
set -eu
: "${STRATA_VOLUME:?}" "${STRATA_MOUNTPOINT:?}" "${STRATA_EPOCH:?}"
CONF=${STRATA_TAKEOVER_CONF:-/etc/strata/takeover}

# 1. Export the mount (NFS needs an fsid for a FUSE filesystem).
if command -v exportfs >/dev/null 2>&1; then
  fsid=$(printf '%s' "$STRATA_VOLUME" | cksum | cut -d' ' -f1)
  exportfs -o "rw,sync,no_subtree_check,fsid=$fsid" "*:$STRATA_MOUNTPOINT"
  echo "exported $STRATA_MOUNTPOINT (fsid $fsid)"
fi

# 2. Move the service address (e.g. 192.0.2.10/24 dev eth0) to this host.
if [ -r "$CONF/$STRATA_VOLUME.addr" ]; then
  read -r addr dev < "$CONF/$STRATA_VOLUME.addr"
  ip address replace "$addr" dev "$dev"
  # Tell the neighbours (unsolicited ARP) that the address moved.
  if command -v arping >/dev/null 2>&1; then arping -c 3 -U -I "$dev" "${addr%/*}" >/dev/null 2>&1 || true; fi
  echo "service address $addr now on $dev"
fi

logger -t strata-takeover "volume $STRATA_VOLUME served at $STRATA_MOUNTPOINT (epoch $STRATA_EPOCH)" 2>/dev/null || true
echo "takeover of $STRATA_VOLUME at epoch $STRATA_EPOCH done"
