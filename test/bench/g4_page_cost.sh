#!/usr/bin/env bash
# G4: the cost of one feed page must not depend on the history's size or on
# an old open transaction. Measures ec_feed.read(cursor, 1000) latency with
# pgbench, side by side in one run, against 10 thousand and 1 million rows of
# history, with and without a writing transaction held open throughout.
#
# Usage (as root, after `make install`): bash test/bench/g4_page_cost.sh [seconds]
set -euo pipefail
secs=${1:-10}
# shellcheck source=test/bench/cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
bench_cluster g4 5601 -c shared_buffers=512MB

setup_db() {			# db, history rows before the measured page
	local db=$1 rows=$2
	psql -d postgres -c "CREATE DATABASE $db"
	psql -d "$db" <<SQL
CREATE EXTENSION ec_feed;
CREATE TABLE items (id bigint PRIMARY KEY, payload text);
SELECT ec_feed.track('items');
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, $rows) g;
CREATE TABLE bench_cursor (c text);
SQL
}

new_page() {			# db: a cursor with exactly 1000 new changes after it
	psql -d "$1" <<SQL
TRUNCATE bench_cursor;
INSERT INTO bench_cursor SELECT ec_feed.cursor_now();
INSERT INTO items SELECT (SELECT max(id) FROM items) + g, md5(g::text) FROM generate_series(1, 1000) g;
VACUUM ANALYZE items;
SQL
}

echo "building history: 10k and 1M rows (this takes a while)"
setup_db g4_small 10000
setup_db g4_large 1000000

cat > "$dir/page.sql" <<'SQL'
SELECT count(*) FROM ec_feed.read(:cursor, 1000);
SQL
chown postgres "$dir/page.sql"

check_page() {
# sanity: the page returns the 1000 rows written after the cursor (+ progress)
for db in g4_small g4_large; do
	n=$(psql -d $db -c "SELECT count(*) FROM ec_feed.read((SELECT c FROM bench_cursor), 1000) WHERE op <> 'progress'")
	[ "$n" = 1000 ] || { echo "page in $db returned $n rows, expected 1000"; exit 1; }
done
}

latency() {			# db -> average latency in ms
	local db=$1 cursor
	cursor=$(psql -d "$db" -c "SELECT c FROM bench_cursor")
	"$bindir/pgbench" -n -f "$dir/page.sql" -D cursor="'$cursor'" -T "$secs" -c 1 "$db" 2>/dev/null |
		awk '/latency average/ {print $4}'
}

# Conditions alternate, each repeated, so that load from other processes on
# this shared machine spreads over all of them; medians are reported.
reps=${REPS:-3}
declare -A samples
measure() {			# condition
	for db in g4_small g4_large; do
		samples["$1,$db"]+="$(latency $db) "
	done
}
start_holder() {
	# a writing transaction, open before the cursors are taken and for the
	# whole measurement: every page must look past it
	(psql -d g4_large -c "BEGIN; INSERT INTO items VALUES (-1, 'open'); SELECT pg_sleep(3600);" >/dev/null 2>&1) &
	holder=$!
	sleep 1
}
stop_holder() {
	psql -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3600)%' AND pid <> pg_backend_pid()" >/dev/null
	wait "$holder" 2>/dev/null || true
	holder=
}
for ((rep = 1; rep <= reps; rep++)); do
	new_page g4_small; new_page g4_large; check_page
	measure plain
	start_holder
	new_page g4_small; new_page g4_large; check_page
	measure open_writer
	stop_holder
done

printf '%-30s %14s %14s %8s\n' "read(cursor, 1000), median" "10k history" "1M history" "ratio"
declare -A med
for cond in plain open_writer; do
	for db in g4_small g4_large; do med["$cond,$db"]=$(echo "${samples["$cond,$db"]}" | median); done
	printf '%-30s %11s ms %11s ms %7.2fx\n' "$cond" "${med["$cond,g4_small"]}" "${med["$cond,g4_large"]}" \
		"$(echo "${med["$cond,g4_large"]} / ${med["$cond,g4_small"]}" | bc -l)"
done
best=$(printf '%s\n' "${med[@]}" | sort -g | head -1)
worst=$(printf '%s\n' "${med[@]}" | sort -g | tail -1)
printf 'worst / best of the four medians: %.2fx (G4 expectation: within 1.5x)\n' "$(echo "$worst / $best" | bc -l)"
echo "all samples (ms):"
for k in "${!samples[@]}"; do echo "  $k: ${samples[$k]}"; done | sort
