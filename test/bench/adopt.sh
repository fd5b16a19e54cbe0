#!/usr/bin/env bash
# Benchmark: CALL ec_feed.adopt() on a table of ROWS rows that predate
# track(), with a concurrent writer updating random rows meanwhile.
#
# Reports the time of the adoption, the WAL it wrote, and the latency of the
# concurrent writer's single-row UPDATEs (pgbench, one client) during the
# adoption, against the same writer on the same table just before it (the
# rows then locked by an adoption batch make it wait; how long is the
# point). Then checks that every row got a version of its own.
#
# Usage: test/bench/adopt.sh   (against the server in PGHOST/PGPORT/PGUSER,
#        which must have ec_feed installed; a database ec_feed_adopt is
#        created and dropped)
# Settings: ROWS (default 1000000), BATCH_PAGES (default 64), WRITER_SECONDS
#           (how long the writer runs from the start of the adoption, which
#           must end before it; default 180: the writer's log is read once it
#           ended, only the updates that ended during the adoption count),
#           PGBIN (directory of psql and pgbench; default: pg_config --bindir)
set -euo pipefail

ROWS=${ROWS:-1000000}
BATCH_PAGES=${BATCH_PAGES:-64}
WRITER_SECONDS=${WRITER_SECONDS:-180}
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=ec_feed_adopt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ec_adopt.XXXXXX")
trap 'kill "${WRITER:-}" 2>/dev/null || true; rm -rf "$WORK"; "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -d "$DB" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
CREATE TABLE adopt_items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL, note text);
INSERT INTO adopt_items SELECT g, 'item ' || g, 0, repeat('x', 40) FROM generate_series(1, $ROWS) g;
SELECT ec_feed.track('adopt_items');
VACUUM ANALYZE adopt_items;
CHECKPOINT;
SQL

cat >"$WORK/writer.sql" <<SQL
\set id random(1, $ROWS)
UPDATE adopt_items SET qty = qty + 1 WHERE id = :id;
SQL

# writer alone: a baseline of 10 s
"$PGBIN/pgbench" -n -c 1 -T 10 -f "$WORK/writer.sql" -l --log-prefix="$WORK/base" "$DB" >"$WORK/base.out" 2>&1

# writer during the adoption
"$PGBIN/pgbench" -n -c 1 -T "$WRITER_SECONDS" -f "$WORK/writer.sql" -l --log-prefix="$WORK/during" "$DB" >"$WORK/during.out" 2>&1 &
WRITER=$!
sleep 1
lsn0=$(psql -d "$DB" -At -c "SELECT pg_current_wal_lsn()")
size0=$(psql -d "$DB" -At -c "SELECT pg_size_pretty(pg_table_size('adopt_items'))")
t0=$(date +%s.%N)
psql -d "$DB" -c "CALL ec_feed.adopt('adopt_items', $BATCH_PAGES)"
t1=$(date +%s.%N)
lsn1=$(psql -d "$DB" -At -c "SELECT pg_current_wal_lsn()")
wait "$WRITER"
WRITER=

stats() { # STEM [FROM TO]: pgbench's per-transaction log: field 3 latency (us), 5.6 end time
	cat "$WORK/$1".* | awk -v from="${2:-0}" -v to="${3:-1e12}" '
		{ t = $5 + $6 / 1e6; if (t >= from && t <= to) print $3 }' | sort -n | awk '
		{ v[NR] = $1 }
		END { if (NR == 0) { print "no transactions"; exit }
			  printf "%d updates, median %.2f ms, p99 %.2f ms, max %.1f ms\n",
				NR, v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000, v[NR] / 1000 }'
}

echo "rows: $ROWS, batch_pages: $BATCH_PAGES, table: $size0 before, $(psql -d "$DB" -At -c "SELECT pg_size_pretty(pg_table_size('adopt_items'))") after"
echo "adopt: $(echo "$t1 - $t0" | bc) s, WAL $(psql -d "$DB" -At -c "SELECT pg_size_pretty(pg_wal_lsn_diff('$lsn1', '$lsn0'))")"
echo "writer alone:         $(stats base)"
echo "writer during adopt:  $(stats during "$t0" "$t1")"
psql -d "$DB" -At -c "SELECT 'rows without a version of their own: ' || count(*) FROM adopt_items a, ec_feed.tracked_rel t WHERE t.relid = 'adopt_items'::regclass AND a.ec_version < t.history_since"
