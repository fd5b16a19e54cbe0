#!/usr/bin/env bash
# The feed against the limit of its design (issue 10): ec_feed.read() over N
# changes, server-side (count(*)) and to a client (COPY), against a plain
# scan and a COPY of the same history rows, and against the references in
# between: the rows in version order (an index scan) and those rows
# materialized (what any set-returning function costs: PostgreSQL's
# FunctionScan always puts a function's rows into a tuplestore, which spills
# to a temporary file beyond work_mem).
#
# Each query runs REPS times in one session; reported are the backend's CPU
# time (utime + stime: robust on a shared machine) and the median wall time
# in the session (no connection start), per query, and the ratios (higher is
# better: 1.0 = as fast as the plain scan or COPY of the history).
#
# Usage (as root, after `make install`): bash test/bench/read_speed.sh [rows] [reps]
#   PY=1        also a Python consumer (psycopg 3, pages of 5,000, every
#               column as text; by SELECT and by COPY of each page) against
#               a COPY of the history to Python
#   MEM_ROWS=N  also the backend's peak private memory (RssAnon) during
#               read(NULL, N) over N changes (default work_mem), and during
#               read(NULL, 1000)
#   PORT        the throwaway cluster's port (default 5606)
set -euo pipefail
rows=${1:-100000}
reps=${2:-5}
# shellcheck source=test/bench/cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
bench_cluster rs "${PORT:-5606}" -c shared_buffers=512MB

fill() {	# db rows
	psql -d postgres -c "CREATE DATABASE $1"
	psql -d "$1" <<SQL
CREATE EXTENSION ec_feed;
CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int);
SELECT ec_feed.track('items');
INSERT INTO items SELECT g, 'name ' || g, g FROM generate_series(1, $2) g;
VACUUM ANALYZE;
-- a consumer reading pages of page rows to the end, server-side
CREATE FUNCTION read_pages(page int) RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE
	c text;
	n bigint := 0;
	k bigint;
BEGIN
	LOOP
		SELECT count(*) FILTER (WHERE op <> 'progress'), max(cursor) FILTER (WHERE op = 'progress')
		INTO k, c FROM ec_feed.read(c, page);
		n := n + k;
		EXIT WHEN k = 0;
	END LOOP;
	RETURN n;
END
\$\$;
SQL
}
fill rs "$rows"

labels=(scan iscan mat read pages copy_scan copy_read)
declare -A what=(
	[scan]="plain scan of the history (count)"
	[iscan]="the history in version order (index scan)"
	[mat]="the same, materialized (tuplestore)"
	[read]="read(), one page of all"
	[pages]="read(), pages of 5,000"
	[copy_scan]="COPY of the history"
	[copy_read]="COPY of read(), one page"
)
declare -A query=(
	[scan]="SELECT count(*) FROM (SELECT * FROM ec_feed.history) h"
	[iscan]="SELECT count(*) FROM (SELECT * FROM ec_feed.history ORDER BY seq OFFSET 0) h"
	[mat]="WITH m AS MATERIALIZED (SELECT * FROM ec_feed.history ORDER BY seq) SELECT count(*) FROM m"
	[read]="SELECT count(*) FROM ec_feed.read(NULL, 100000000)"
	[pages]="SELECT read_pages(5000)"
	[copy_scan]="COPY (SELECT * FROM ec_feed.history) TO '/dev/null'"
	[copy_read]="COPY (SELECT * FROM ec_feed.read(NULL, 100000000)) TO '/dev/null'"
)

# one session; the server writes COPY's output itself, so the client costs nothing
coproc SESSION { command psql -XqAt -d rs 2>&1; }
exec 5<&"${SESSION[0]}" 6>&"${SESSION[1]}"	# a coprocess's own are closed in subshells
send() { printf '%s\n' "$*" >&6; }
await() {	# lines until the marker, the "Time:" ones to stdout
	local line
	while read -r line <&5; do
		[ "$line" = "-- done" ] && return
		case $line in Time:*) echo "$line" | awk '{print $2}' ;; esac
	done
}
send "SELECT 'pid:' || pg_backend_pid();"
while read -r line <&5; do case $line in pid:*) pid=${line#pid:}; break ;; esac; done
tick_ms=$((1000 / $(getconf CLK_TCK)))
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
send "\\timing on"
# warm the cache
for l in "${labels[@]}"; do send "${query[$l]};"; done
send "\\echo -- done"
await >/dev/null

declare -A cpu_ms wall_ms
for l in "${labels[@]}"; do
	a=$(cpu)
	for ((i = 0; i < reps; i++)); do send "${query[$l]};"; done
	send "\\echo -- done"
	wall_ms[$l]=$(await | median)
	b=$(cpu)
	cpu_ms[$l]=$(((b - a) * tick_ms / reps))
done
send "\\q"

ratio() { echo "$1 / $2" | bc -l; }
printf '%s changes; per query: backend CPU ms (median wall ms in the session), %s runs:\n' "$rows" "$reps"
for l in "${labels[@]}"; do
	printf '  %-44s %5d (%7.1f)\n' "${what[$l]}" "${cpu_ms[$l]}" "${wall_ms[$l]}"
done
printf 'server-side, CPU: read() at %.2fx the plain scan (pages of 5,000: %.2fx), %.2fx the materialized index scan\n' \
	"$(ratio "${cpu_ms[scan]}" "${cpu_ms[read]}")" "$(ratio "${cpu_ms[scan]}" "${cpu_ms[pages]}")" \
	"$(ratio "${cpu_ms[mat]}" "${cpu_ms[read]}")"
printf 'to a client, CPU: COPY of read() at %.2fx a COPY of the history (wall: %.2fx)\n' \
	"$(ratio "${cpu_ms[copy_scan]}" "${cpu_ms[copy_read]}")" "$(ratio "${wall_ms[copy_scan]}" "${wall_ms[copy_read]}")"

if [ -n "${PY:-}" ]; then
	# Debian's python3 has psycopg (python3-psycopg), whatever python3 is first in PATH
	/usr/bin/python3 - "$PGHOST" "$PGPORT" "$reps" <<'PY'
import statistics, sys, time
import psycopg
from psycopg.types.string import TextLoader

host, port, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = psycopg.connect(host=host, port=port, user="postgres", dbname="rs", autocommit=True)
# every column as text: jsonb, int8, "char", oid, regclass, xid8, text[]
for t in (3802, 20, 18, 26, 2205, 5069, 1009):
	conn.adapters.register_loader(t, TextLoader)

def consumer():
	cursor, n = None, 0
	while True:
		rows = conn.execute("SELECT * FROM ec_feed.read(%s, 5000)", (cursor,)).fetchall()
		cursor = rows[-1][0]
		if len(rows) == 1:
			return n
		n += len(rows) - 1

def consumer_copy():
	# the same pages through COPY: the client parses one buffer per row
	cursor, n = None, 0
	while True:
		with conn.cursor().copy("COPY (SELECT * FROM ec_feed.read(%s, 5000)) TO STDOUT", (cursor,)) as cp:
			rows = list(cp.rows())
		cursor = rows[-1][0]
		if len(rows) == 1:
			return n
		n += len(rows) - 1

def copy():
	n = 0
	with conn.cursor().copy("COPY (SELECT * FROM ec_feed.history) TO STDOUT") as cp:
		for _ in cp.rows():
			n += 1
	return n

funcs = (("consumer", consumer), ("consumer_copy", consumer_copy), ("copy", copy))
times = {name: [] for name, _ in funcs}
counts = {}
for _ in range(reps + 1):		# the first round warms up
	for name, f in funcs:
		t = time.perf_counter()
		counts[name] = f()
		times[name].append(time.perf_counter() - t)
rate = {k: counts[k] / statistics.median(v[1:]) for k, v in times.items()}
print("Python (psycopg %s, text): COPY of the history %.0f rows/s; a consumer, pages of 5,000: "
	  "by SELECT %.0f rows/s (%.2fx), by COPY %.0f rows/s (%.2fx)"
	  % (psycopg.__version__, rate["copy"], rate["consumer"], rate["consumer"] / rate["copy"],
		 rate["consumer_copy"], rate["consumer_copy"] / rate["copy"]))
PY
fi

if [ -n "${MEM_ROWS:-}" ]; then
	fill rs_mem "$MEM_ROWS"
	peak() {	# query -> peak RssAnon of its backend above the idle one, kB
		local p base top=0 v line
		coproc MEM { command psql -XqAt -d rs_mem 2>&1; }
		printf '%s\n' "SELECT 'pid:' || pg_backend_pid();" >&"${MEM[1]}"
		while read -r line <&"${MEM[0]}"; do case $line in pid:*) p=${line#pid:}; break ;; esac; done
		base=$(awk '/RssAnon/ {print $2}' "/proc/$p/status")
		printf '%s;\n\\echo -- done\n' "$1" >&"${MEM[1]}"
		while :; do
			v=$(awk '/RssAnon/ {print $2}' "/proc/$p/status")
			[ "$v" -gt "$top" ] && top=$v
			if read -t 0.02 -r line <&"${MEM[0]}"; then [ "$line" = "-- done" ] && break; fi
		done
		printf '\\q\n' >&"${MEM[1]}"
		wait "$MEM_PID" 2>/dev/null || true
		echo $((top - base))
	}
	printf 'memory per call (peak RssAnon above idle, work_mem %s): read(NULL, %s) %s kB, read(NULL, 1000) %s kB\n' \
		"$(psql -d rs_mem -c 'SHOW work_mem')" "$MEM_ROWS" \
		"$(peak "SELECT count(*) FROM ec_feed.read(NULL, $MEM_ROWS)")" \
		"$(peak "SELECT count(*) FROM ec_feed.read(NULL, 1000)")"
fi
