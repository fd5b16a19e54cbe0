#!/usr/bin/env bash
# Benchmark: ec_feed.update_if() against the plain optimistic-concurrency
# statement it replaces, on the same tracked table, in the same pgbench run:
#
#   plain:     SELECT ec_version ... ; UPDATE t SET qty = $n WHERE id = $1 AND ec_version = $2 RETURNING *
#   update_if: SELECT ec_feed.row_token(t) ... ; SELECT * FROM ec_feed.update_if('t', {"id": $1}, $token, {"qty": $n})
#
# Each transaction reads a random row's version (or token) and writes it
# back, so nearly every write takes the applied path. pgbench runs both
# scripts interleaved (equal weights) in one run, so both see the same
# machine, cache and autovacuum; it reports per-script and per-statement
# latencies, and this script prints the ratio update_if / plain.
#
# Usage: test/bench/update_if.sh   (against the server in PGHOST/PGPORT/PGUSER,
#        which must have ec_feed installed; a database ec_feed_bench is
#        created and dropped)
# Settings: CLIENTS (default 2), DURATION (seconds per run, default 30), ROWS (default 10000),
#           PGBIN (directory of psql and pgbench; default: pg_config --bindir)
set -euo pipefail

CLIENTS=${CLIENTS:-2}
SECONDS_RUN=${DURATION:-30}
ROWS=${ROWS:-10000}
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=ec_feed_bench
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ec_bench.XXXXXX")
trap 'rm -rf "$WORK"; "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -d "$DB" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
CREATE TABLE bench_items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL, note text);
SELECT ec_feed.track('bench_items');
INSERT INTO bench_items SELECT g, 'item ' || g, 0, repeat('x', 40) FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE bench_items;
SQL

cat >"$WORK/plain.sql" <<SQL
\set id random(1, $ROWS)
\set n random(1, 1000000)
SELECT ec_version AS ver FROM bench_items WHERE id = :id \gset
UPDATE bench_items SET qty = :n WHERE id = :id AND ec_version = :ver RETURNING *;
SQL
cat >"$WORK/update_if.sql" <<SQL
\set id random(1, $ROWS)
\set n random(1, 1000000)
SELECT ec_feed.row_token(t) AS tok FROM bench_items t WHERE id = :id \gset
SELECT * FROM ec_feed.update_if('bench_items', jsonb_build_object('id', :id::int), :tok::text, jsonb_build_object('qty', :n::int));
SQL

# run_round LABEL PGOPTIONS: one pgbench run of both scripts, and the ratios
run_round() {
	local label=$1 opts=$2 before after total
	before=$(psql -d "$DB" -At -c "SELECT count(*) FROM ec_feed.history WHERE op = 'u'")
	echo "==> $label: pgbench -M prepared -c $CLIENTS -j $CLIENTS -T $SECONDS_RUN, $ROWS rows, both scripts in one run"
	PGOPTIONS="$opts" "$PGBIN/pgbench" -n -M prepared -r -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_RUN" \
		-f "$WORK/plain.sql@1" -f "$WORK/update_if.sql@1" "$DB" >"$WORK/out.txt" 2>&1 || {
		cat "$WORK/out.txt"
		exit 1
	}
	cat "$WORK/out.txt"
	# every write should land; with few clients on many rows nearly all on the applied path
	after=$(psql -d "$DB" -At -c "SELECT count(*) FROM ec_feed.history WHERE op = 'u'")
	total=$(awk '/number of transactions actually processed/ { print $NF }' "$WORK/out.txt")
	echo "==> $label: writes that landed: $((after - before)) of $total transactions" \
		"(a plain UPDATE whose version went stale writes nothing)" >>"$WORK/summary.txt"

	# per script: the average latency of the whole transaction and of its write
	awk -v label="$label" '
		/^SQL script [0-9]+:/ { s = ($0 ~ /update_if/) ? "update_if" : "plain" }
		/latency average/ && s != "" { lat[s] = $(NF - 1) }
		s != "" && /^ +[0-9.]+ +[0-9]+ +(UPDATE|SELECT \* FROM ec_feed.update_if)/ { w[s] = $1 }
		END {
			if (!("plain" in lat) || !("update_if" in lat)) { print "==> could not parse pgbench output" > "/dev/stderr"; exit 1 }
			printf "==> %s: transaction latency: plain %.3f ms, update_if %.3f ms, ratio %.2f\n",
				label, lat["plain"], lat["update_if"], lat["update_if"] / lat["plain"]
			if (("plain" in w) && ("update_if" in w) && w["plain"] > 0)
				printf "==> %s: write statement:     plain %.3f ms, update_if %.3f ms, ratio %.2f\n",
					label, w["plain"], w["update_if"], w["update_if"] / w["plain"]
		}' "$WORK/out.txt" >>"$WORK/summary.txt"
}

# The server's commit settings (a commit that waits for its WAL flush
# dominates both), then without that wait, which shows the CPU cost alone.
run_round "synchronous_commit=on" ""
run_round "synchronous_commit=off" "-c synchronous_commit=off"
echo
echo "==> summary (update_if / plain; expectation: at most 1.3 on the applied path)"
cat "$WORK/summary.txt"
