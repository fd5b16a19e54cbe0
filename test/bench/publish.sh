#!/usr/bin/env bash
# What publishing marks for hot standbys costs the writers (src/publish.c):
# pgbench single-row UPDATEs of a tracked table at 4 clients, with writers
# publishing a mark at most every 100 ms per session (the default) and with
# publishing off (ec_feed.publish_interval = 0), interleaved in one run;
# median tps and the ratio. Also counts the marks published.
#
# Usage (as root, after `make install`): bash test/bench/publish.sh [seconds] [reps]
set -euo pipefail
secs=${1:-5}
reps=${2:-3}
# shellcheck source=test/bench/cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
bench_cluster pub 5604 -c synchronous_commit=off

psql -d postgres <<SQL
CREATE EXTENSION ec_feed;
CREATE TABLE tracked (id bigint PRIMARY KEY, qty int);
SELECT ec_feed.track('tracked');
INSERT INTO tracked SELECT g, 0 FROM generate_series(1, 10000) g;
VACUUM ANALYZE;
SQL
printf '%s\n' '\set id random(1, 10000)' 'UPDATE tracked SET qty = qty + 1 WHERE id = :id;' > "$dir/update.sql"
chown postgres "$dir/update.sql"

declare -A samples
for ((rep = 1; rep <= reps; rep++)); do
	for interval in 0 100; do
		before=$(psql -d postgres -c "SELECT coalesce(max(id), 0) FROM ec_feed.mark")
		tps=$(PGOPTIONS="-c ec_feed.publish_interval=$interval" "$bindir/pgbench" -n -f "$dir/update.sql" \
			-T "$secs" -c 4 -j 2 postgres 2>/dev/null | awk '/^tps/ {print $3; exit}')
		after=$(psql -d postgres -c "SELECT coalesce(max(id), 0) FROM ec_feed.mark")
		samples["$interval"]+="$tps "
		echo "publish_interval=${interval}ms: $tps tps, $((after - before)) marks published"
	done
done
off=$(echo "${samples[0]}" | median); on=$(echo "${samples[100]}" | median)
printf 'median tps: publishing off %s, every 100 ms per session %s: ratio %.3f\n' "$off" "$on" "$(echo "$on / $off" | bc -l)"
