#!/usr/bin/env bash
# The write path: INSERT and UPDATE latency on a tracked table (stamp and
# history triggers) against the same table untracked, side by side in one
# run, conditions interleaved; medians and ratios. Then the throughput of a
# 1-row UPDATE at CLIENTS clients (issue 10: tracked >= 0.85x untracked),
# and the backend's CPU time per statement (user + system, from /proc), which
# a loaded machine disturbs far less than latency or throughput.
#
# Usage (as root, after `make install`): bash test/bench/write_path.sh [seconds]
#   KEY=timestamptz  the primary key's type (default bigint); timestamptz
#                    keys take the canonical-key path of ec_row_key()
#   REPS=3           samples per condition (medians)
#   CLIENTS=8        clients of the UPDATE throughput run (0: skip it)
#   PORT=5602        the throwaway cluster's port
#   STMTS=20000      statements per CPU-time sample (0: skip them)
set -euo pipefail
key=${KEY:-bigint}
case $key in
	bigint) kexpr() { echo "$1"; } ;;
	timestamptz) kexpr() { echo "('2000-01-01 00:00+00'::timestamptz + ($1) * interval '1 second')"; } ;;
	*) echo "KEY must be bigint or timestamptz" >&2; exit 2 ;;
esac
secs=${1:-5}
reps=${REPS:-3}
clients=${CLIENTS:-8}
stmts=${STMTS:-20000}
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
# commits are not what is measured: no fsync wait
bench_cluster wp "${PORT:-5602}" -c synchronous_commit=off

psql -d postgres <<SQL
CREATE EXTENSION ec_feed;
-- same columns: the untracked table carries ec_version/ec_xid too
CREATE TABLE plain (id $key PRIMARY KEY, name text, qty int, note text,
					ec_version bigint NOT NULL DEFAULT 0, ec_xid xid8 NOT NULL DEFAULT '0');
CREATE TABLE tracked (id $key PRIMARY KEY, name text, qty int, note text);
SELECT ec_feed.track('tracked');
INSERT INTO plain (id, name, qty, note) SELECT $(kexpr g), 'name ' || g, g, repeat('x', 100) FROM generate_series(1, 10000) g;
INSERT INTO tracked (id, name, qty, note) SELECT $(kexpr g), 'name ' || g, g, repeat('x', 100) FROM generate_series(1, 10000) g;
CREATE SEQUENCE ids START 100000;
VACUUM ANALYZE;
SQL

for t in plain tracked; do
	echo "INSERT INTO $t (id, name, qty, note) VALUES ($(kexpr "nextval('ids')"), 'new', 1, repeat('y', 100));" > "$dir/insert_$t.sql"
	printf '%s\n' '\set id random(1, 10000)' "UPDATE $t SET qty = qty + 1 WHERE id = $(kexpr :id);" > "$dir/update_$t.sql"
done
# CPU samples: one session runs $stmts autocommit statements; its backend's
# utime + stime (clock ticks) are read before and after
for t in plain tracked; do
	for op in insert update; do
		{
			echo 'SELECT pg_backend_pid() AS pid \gset'
			echo '\setenv BPID :pid'
			echo "\\! awk '{print \$14 + \$15}' /proc/\$BPID/stat"
			if [ "$op" = insert ]; then
				awk -v n="$stmts" '{for (i = 0; i < n; i++) print}' "$dir/insert_$t.sql"
			else
				awk -v n="$stmts" -v t="$t" 'BEGIN {
					srand(1)
					for (i = 0; i < n; i++)
						printf "UPDATE %s SET qty = qty + 1 WHERE id = %d;\n", t, 1 + int(rand() * 10000)
				}' | sed "s/id = \([0-9]*\);/id = $(kexpr '\1');/"
			fi
			echo "\\! awk '{print \$14 + \$15}' /proc/\$BPID/stat"
		} > "$dir/cpu_${op}_$t.sql"
	done
done
ticks=$(getconf CLK_TCK)
chown postgres "$dir"/*.sql

declare -A samples
for ((rep = 1; rep <= reps; rep++)); do
	for op in insert update; do
		for t in plain tracked; do
			ms=$("$bindir/pgbench" -n -f "$dir/${op}_$t.sql" -T "$secs" -c 1 postgres 2>/dev/null |
				awk '/latency average/ {print $4}')
			samples["$op,$t"]+="$ms "
		done
	done
	# backend CPU microseconds per statement
	if [ "$stmts" -gt 0 ]; then
		for op in insert update; do
			for t in plain tracked; do
				us=$(psql -d postgres -f "$dir/cpu_${op}_$t.sql" | tr '\n' ' ' |
					awk -v n="$stmts" -v hz="$ticks" '{printf "%.1f", ($2 - $1) * 1e6 / hz / n}')
				samples["cpu_$op,$t"]+="$us "
			done
		done
	fi
	# throughput of concurrent 1-row updates (10,000 keys: few lock waits)
	if [ "$clients" -gt 0 ]; then
		for t in plain tracked; do
			tps=$("$bindir/pgbench" -n -f "$dir/update_$t.sql" -T "$secs" -c "$clients" -j "$clients" postgres 2>/dev/null |
				awk '/^tps/ {print $3}')
			samples["tps,$t"]+="$tps "
		done
	fi
done
printf '%-8s %12s %12s %8s\n' "median" "untracked" "tracked" "ratio"
for op in insert update; do
	p=$(echo "${samples["$op,plain"]}" | median); t=$(echo "${samples["$op,tracked"]}" | median)
	printf '%-8s %9s ms %9s ms %7.2fx\n' "$op" "$p" "$t" "$(echo "$t / $p" | bc -l)"
done
if [ "$stmts" -gt 0 ]; then
	for op in insert update; do
		p=$(echo "${samples["cpu_$op,plain"]}" | median); t=$(echo "${samples["cpu_$op,tracked"]}" | median)
		printf '%-8s %9s us %9s us %7.2fx  (backend CPU per statement)\n' "cpu $op" "$p" "$t" "$(echo "$t / $p" | bc -l)"
	done
fi
if [ "$clients" -gt 0 ]; then
	p=$(echo "${samples["tps,plain"]}" | median); t=$(echo "${samples["tps,tracked"]}" | median)
	printf '%-8s %8.0f tps %8.0f tps %7.2fx  (UPDATE, %d clients; tracked/untracked)\n' \
		"tps" "$p" "$t" "$(echo "$t / $p" | bc -l)" "$clients"
fi
