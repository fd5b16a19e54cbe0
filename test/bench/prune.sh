#!/usr/bin/env bash
# Pruning's cost to writers (issue 7): pgbench single-row UPDATEs of a
# tracked table at CLIENTS clients, without pruning (the history grows in one
# segment) and with a concurrent loop calling ec_feed.prune() every
# PRUNE_SLEEP_MS ms on tiny segments (rotation, freeze and DROP of a whole
# segment every few seconds), runs interleaved; the tps ratio (with /
# without) per round and its median, the prune call's latency; then a longer
# run with the loop, the history's rows and bytes sampled every 5 s (they
# must level off).
#
# Usage (as root, after `make install`; pg_config on PATH):
#   bash test/bench/prune.sh [seconds per run]
# Settings: CLIENTS (4), REPS (3 rounds), LONG (60 s), SEG_ROWS (2000),
#   RETENTION (2 s; segment_period is 1 s), PRUNE_SLEEP_MS (10: the loop's
#   pause between calls; 1000 is what one reader's read()s do by themselves)
# Not run by CI. Commits are not what is measured: synchronous_commit=off.
set -euo pipefail
secs=${1:-10}
clients=${CLIENTS:-4}
reps=${REPS:-3}
long=${LONG:-60}
seg_rows=${SEG_ROWS:-2000}
retention=${RETENTION:-2}
pause=${PRUNE_SLEEP_MS:-10}
# shellcheck source=test/bench/cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
bench_cluster prune 5604 -c synchronous_commit=off

psql -d postgres <<SQL
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
CREATE TABLE bench (id int PRIMARY KEY, qty int NOT NULL, note text);
SELECT ec_feed.track('bench');
INSERT INTO bench SELECT g, 0, repeat('x', 40) FROM generate_series(1, 10000) g;
VACUUM ANALYZE bench;
ALTER SYSTEM SET ec_feed.segment_rows = $seg_rows;
ALTER SYSTEM SET ec_feed.segment_period = '1s';
ALTER SYSTEM SET ec_feed.retention_min = '${retention}s';
SELECT pg_reload_conf();
-- rows and bytes of the whole history (a segment dropped meanwhile counts 0)
CREATE FUNCTION hist_size(OUT segments int, OUT nrows bigint, OUT bytes bigint) LANGUAGE plpgsql AS \$\$
DECLARE
	s record;
	c bigint;
BEGIN
	segments := 0; nrows := 0; bytes := 0;
	FOR s IN SELECT relid::oid AS relid FROM ec_feed.segment LOOP
		BEGIN
			EXECUTE format('SELECT count(*) FROM ec_feed.%I', (SELECT relname FROM pg_class WHERE oid = s.relid)) INTO c;
			nrows := nrows + c;
			bytes := bytes + pg_total_relation_size(s.relid);
			segments := segments + 1;
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
	END LOOP;
END
\$\$;
SQL

printf '%s\n' '\set id random(1, 10000)' 'UPDATE bench SET qty = qty + 1 WHERE id = :id;' >"$dir/update.sql"
printf '%s\n' 'SELECT ec_feed.prune();' "\\sleep $pause ms" >"$dir/prune.sql"
chown postgres "$dir"/*.sql

# settle: drop what is due, so that each run starts from a short history
settle() {
	psql -d postgres -c 'SELECT ec_feed.prune()' >/dev/null
	sleep "$((retention + 1))"
	for _ in 1 2 3; do psql -d postgres -c 'SELECT ec_feed.prune()' >/dev/null; done
}

# run WITH_PRUNE(0|1) SECONDS: prints the writers' tps (and leaves the prune
# loop's per-statement latency in $dir/prune.out)
run() {
	local with=$1 t=$2 pid=
	if [ "$with" = 1 ]; then
		"$bindir/pgbench" -n -r -c 1 -T "$t" -f "$dir/prune.sql" postgres >"$dir/prune.out" 2>&1 &
		pid=$!
	fi
	"$bindir/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$t" -f "$dir/update.sql" postgres 2>/dev/null |
		awk '/^tps = / {print $3}'
	[ -z "$pid" ] || wait "$pid"
}

echo "==> $clients clients, single-row UPDATE, $secs s per run, $reps rounds; segment_rows $seg_rows, segment_period 1 s, retention_min $retention s, prune() every $pause ms"
ratios=
prune_ms=
printf '%-6s %12s %12s %8s %16s\n' round without with ratio "prune() ms"
for ((rep = 1; rep <= reps; rep++)); do
	settle
	without=$(run 0 "$secs")
	settle
	with=$(run 1 "$secs")
	ms=$(awk '/SELECT ec_feed.prune\(\)/ {print $1}' "$dir/prune.out")
	ratio=$(echo "$with / $without" | bc -l)
	ratios+="$ratio "
	prune_ms+="$ms "
	printf '%-6s %12.0f %12.0f %7.3fx %16s\n' "$rep" "$without" "$with" "$ratio" "$ms"
done
printf '%-6s %12s %12s %7.3fx %16s\n' median "" "" "$(echo "$ratios" | median)" "$(echo "$prune_ms" | median)"

echo "==> history over a $long s run with the prune loop ($clients writers): every 5 s"
settle
"$bindir/pgbench" -n -r -c 1 -T "$long" -f "$dir/prune.sql" postgres >"$dir/prune.out" 2>&1 &
ppid=$!
"$bindir/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$long" -f "$dir/update.sql" postgres >"$dir/long.out" 2>&1 &
wpid=$!
printf '%6s %9s %10s %12s %12s\n' second segments rows bytes versions
start=$(date +%s)
v0=$(psql -d postgres -c "SELECT coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0)")
while kill -0 "$wpid" 2>/dev/null; do
	sleep 5
	kill -0 "$wpid" 2>/dev/null || break
	read -r segs rows bytes < <(psql -d postgres -F ' ' -c "SELECT * FROM hist_size()")
	v=$(psql -d postgres -c "SELECT coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0)")
	printf '%6d %9d %10d %12d %12d\n' "$(($(date +%s) - start))" "$segs" "$rows" "$bytes" "$((v - v0))"
done
wait "$wpid" "$ppid" || true
echo "writers: $(awk '/^tps = / {print $3}' "$dir/long.out") tps; rows pruned: $(psql -d postgres -c 'SELECT rows_pruned FROM ec_feed.pruned')"
