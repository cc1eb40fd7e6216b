#!/bin/bash
# A nightly batch job under a checkpoint: take one, run the job, look at what
# it changed, and roll back only the part that went wrong (here: the database),
# keeping the rest of the job's work (here: a git repository).
#
#   examples/checkpoint-batch-job.sh /mnt/data        # a strata mount
set -euo pipefail
MNT=${1:?usage: $0 MOUNTPOINT}
STRATA=${STRATA:-strata}
APP=$MNT/batch-demo
mkdir -p "$APP"
cd "$APP"

# The state before the job: a database and a repository.
sqlite3 app.db "create table if not exists orders(id integer primary key, amount int);
  insert into orders(amount) select abs(random()) % 1000 from (select 1 union all select 2 union all select 3);"
[ -d repo ] || { git init -q repo && git -C repo -c user.email=job@example -c user.name=job commit -q --allow-empty -m start; }

NAME=before-job-$(date +%s)
$STRATA checkpoint create "$MNT" --name "$NAME"

# The job: it updates the repository (fine) and damages the database (not fine).
date > repo/last-run && git -C repo add last-run && git -C repo -c user.email=job@example -c user.name=job commit -q -m "nightly run"
sqlite3 app.db "delete from orders; insert into orders(amount) values (-1);"

echo "--- what the job changed:"
$STRATA checkpoint diff "$MNT" "$NAME" "$APP"

echo "--- rolling back the database only (dry run, then for real):"
$STRATA rollback "$MNT" --to "$NAME" "$APP/app.db" --dry-run
$STRATA rollback "$MNT" --to "$NAME" "$APP/app.db"

echo "--- database: $(sqlite3 app.db 'pragma integrity_check'), $(sqlite3 app.db 'select count(*) from orders where amount >= 0') good orders"
echo "--- repository keeps the job's commit: $(git -C repo log --oneline -1)"
$STRATA checkpoint delete "$MNT" "$NAME"
