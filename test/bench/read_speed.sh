#!/usr/bin/env bash
# The feed against the limit of its design (issue 10): ec_feed.read() over
# N changes, server-side (count(*)) and to a client (COPY ... TO STDOUT),
# against a plain scan and a COPY of the same history rows; interleaved,
# medians of REPS, ratios (higher is better: 1.0 = as fast as the table).
#
# Usage (as root, after `make install`): bash test/bench/read_speed.sh [rows] [reps]
set -euo pipefail
rows=${1:-100000}
reps=${2:-5}
# shellcheck source=test/bench/cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
bench_cluster rs 5606 -c shared_buffers=512MB

psql -d postgres <<SQL
CREATE EXTENSION ec_feed;
CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int);
SELECT ec_feed.track('items');
INSERT INTO items SELECT g, 'name ' || g, g FROM generate_series(1, $rows) g;
VACUUM ANALYZE;
SQL
# warm the cache
psql -d postgres -c "SELECT count(*) FROM ec_feed.read(NULL, 100000000)" >/dev/null

t() {	# seconds of one psql command, to /dev/null
	local s e
	s=$(date +%s.%N)
	psql -d postgres -c "$1" >/dev/null
	e=$(date +%s.%N)
	echo "$e - $s" | bc -l
}
declare -A samples
for ((i = 1; i <= reps; i++)); do
	samples[read]+="$(t "SELECT count(*) FROM ec_feed.read(NULL, 100000000)") "
	samples[scan]+="$(t "SELECT count(*) FROM (SELECT * FROM ec_feed.history) h") "
	samples[copy_read]+="$(t "COPY (SELECT * FROM ec_feed.read(NULL, 100000000)) TO STDOUT") "
	samples[copy_scan]+="$(t "COPY (SELECT * FROM ec_feed.history) TO STDOUT") "
done
declare -A m
for k in read scan copy_read copy_scan; do m[$k]=$(echo "${samples[$k]}" | median); done
printf '%s changes, medians of %s (seconds, including psql start):\n' "$rows" "$reps"
printf '  server-side: read() %.3f, plain scan %.3f: read at %.2fx the table\n' "${m[read]}" "${m[scan]}" "$(echo "${m[scan]} / ${m[read]}" | bc -l)"
printf '  to a client: COPY of read() %.3f, COPY of the table %.3f: %.2fx\n' "${m[copy_read]}" "${m[copy_scan]}" "$(echo "${m[copy_scan]} / ${m[copy_read]}" | bc -l)"
