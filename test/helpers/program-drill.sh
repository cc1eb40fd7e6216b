#!/bin/bash
# Real programs writing into a strata mount until it fails under them
# (test/helpers/program-drill.ts). Every change a program was told is durable
# is logged in LOG, a native directory, after the fact:
#   acked-wal   ids of rows committed to a WAL-mode sqlite database (synchronous=FULL)
#   acked-rb    ids of rows committed to a rollback-journal database (synchronous=EXTRA:
#               the journal's unlink is synced too; and `sync .` of the directory after
#               each commit, since SQLite skips its own when it cannot open the directory)
#   acked-git   numbers i of commits "c<i>" made with core.fsync=all (the number, not a hash:
#               a `git rev-parse HEAD` after the commit fails when the daemon dies in between,
#               and it prints "HEAD" then; the commit was acknowledged all the same)
#   acked-mv    "i k": file a/xK replaced by rename over it after an fsync of the new
#               file and of the directory; its bytes are LOG/native-xK
#   begun-edit / acked-edit  "i path": an in-place pwrite + append + fsync of a file of
#               the tree listed in EDIT_LIST (when set), in that order
# Continues where an earlier run of it left off (ids and counters from the logs).
# Each loop stops at its first failure (the daemon was killed): programs exit by themselves.
# Usage: program-drill.sh MNT LOG [EDIT_ROOT EDIT_LIST]
set -u
M=$1; LOG=$2; EDIT_ROOT=${3:-}; EDIT_LIST=${4:-}
mkdir -p "$M/a/b/c" "$LOG" || exit 1
next() { local n; n=$(tail -n 1 "$1" 2>/dev/null | cut -d' ' -f1); echo $(( ${n:-0} + 1 )); }

( cd "$M/a/b/c" || exit 1
  [ -e db.sq ] || sqlite3 db.sq "PRAGMA journal_mode=WAL; CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT);" >/dev/null || exit 1
  [ -e dbr.sq ] || sqlite3 dbr.sq "CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT);" >/dev/null || exit 1
  i=$(next "$LOG/acked-wal"); j=$(next "$LOG/acked-rb")
  while :; do
    sqlite3 db.sq "PRAGMA synchronous=FULL; INSERT INTO t VALUES($i, hex(randomblob(300))); UPDATE t SET v='u$i' WHERE i=$(( i / 2 ));" 2>/dev/null || break
    echo "$i" >> "$LOG/acked-wal"; i=$((i + 1))
    # `sync .` after it: SQLite's own directory sync after the journal's unlink is skipped when the
    # directory cannot be opened (a kill right after the unlink returned: open gets ECONNABORTED,
    # and sqlite3 still exits 0), so it alone does not prove the commit durable (docs/mirroring.md).
    sqlite3 dbr.sq "PRAGMA synchronous=EXTRA; INSERT INTO t VALUES($j, hex(randomblob(5000)));" 2>/dev/null && sync . 2>/dev/null || break
    echo "$j" >> "$LOG/acked-rb"; j=$((j + 1))
  done ) &

( cd "$M/a" || exit 1
  if [ ! -e g ]; then git init -q g || exit 1; fi
  cd g || exit 1
  git config core.fsync all && git config user.email drill@strata && git config user.name drill || exit 1
  i=$(wc -l < "$LOG/acked-git" 2>/dev/null || echo 0)
  while :; do
    i=$((i + 1))
    head -c $(( (i * 7919) % 60000 )) /dev/urandom > "f$((i % 7))" 2>/dev/null || break
    echo "$i" >> log 2>/dev/null || break
    git add -A 2>/dev/null && git commit -qm "c$i" 2>/dev/null || break
    echo "$i" >> "$LOG/acked-git"
  done ) &

( i=$(next "$LOG/acked-mv")
  while :; do
    k=$((i % 5))
    head -c 100000 /dev/urandom > "$LOG/ntmp"
    cp "$LOG/ntmp" "$M/a/x.tmp" 2>/dev/null && sync "$M/a/x.tmp" 2>/dev/null \
      && mv "$M/a/x.tmp" "$M/a/x$k" 2>/dev/null && sync "$M/a" 2>/dev/null || break
    mv "$LOG/ntmp" "$LOG/native-x$k"
    echo "$i $k" >> "$LOG/acked-mv"; i=$((i + 1))
  done ) &

if [ -n "$EDIT_LIST" ]; then
  ( n=$(wc -l < "$EDIT_LIST"); i=$(next "$LOG/begun-edit")
    while :; do
      f=$(sed -n "$(( (i * 2654435761) % n + 1 ))p" "$EDIT_LIST")
      echo "$i $f" >> "$LOG/begun-edit"
      python3 - "$EDIT_ROOT/$f" "$i" <<'PY' 2>/dev/null || break
import os, sys
path, i = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
size = os.fstat(fd).st_size
os.pwrite(fd, b'X%dX' % i, size // 2)
os.lseek(fd, 0, os.SEEK_END)
os.write(fd, b'\nappended %d\n' % i)
os.fsync(fd)
os.close(fd)
PY
      echo "$i $f" >> "$LOG/acked-edit"; i=$((i + 1))
    done ) &
fi
wait
