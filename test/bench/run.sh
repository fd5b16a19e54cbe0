#!/usr/bin/env bash
# The side-by-side benchmark (issue 10): ec_feed against an untracked table,
# PgQ (pgq.logutriga + a batch consumer), wal2json logical decoding and
# (updated_at, id) paging, measured in one run on a throwaway cluster:
# write tps ratio, rows/s to a client, commit -> seen p50/p99 under the
# demo's load with long transactions, and changes lost (counted against the
# table at the end). See test/bench/sidebyside.py for what each figure is.
#
# Usage (as root, or a user with sudo; from any directory):
#   bash test/bench/run.sh
# It installs what is missing (postgresql-15-pgq3, postgresql-15-wal2json,
# gnuplot-nox, and what test/lib.sh needs), builds and installs ec_feed,
# starts a cluster with wal_level = logical, runs the measurements and writes
# test/bench/results/<date>.md and <date>.png (the README shows one of them).
# PgQ and wal2json install into /usr/lib/postgresql/15 and
# /usr/share/postgresql/15; for a relocated PostgreSQL (PG_CONFIG outside
# /usr) their files are copied into its directories.
#
# Settings (environment; see also test/lib.sh: PG_CONFIG, EC_PORT, EC_TMP):
#   EC_BENCH_SECONDS  seconds of the demo load's writes (default 20); each
#                     write-tps run lasts a quarter of it (at least 2 s).
#                     The whole run takes about 8 x this plus the build.
#   EC_BENCH_REPS     rounds of the write and read measurements (default 3)
#   EC_BENCH_ROWS     changes per method in the read measurement (100000)
#   EC_BENCH_SEED     seed of the demo load's random choices (default: time)
#   EC_BENCH_RESULTS  where to write <date>.md/.png (default test/bench/results)
# Not run by CI: a benchmark, not a timed test.
set -uo pipefail

if [ -n "${EC_PG:-}" ] && [ "$EC_PG" != 15 ]; then
	echo "==> ERROR: the side-by-side benchmark runs on PostgreSQL 15 (Debian 12's PgQ and wal2json packages)" >&2
	exit 2
fi

# shellcheck source=test/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)/lib.sh"

peers=(postgresql-15-pgq3 postgresql-15-wal2json)
ec_bootstrap "${peers[@]}" gnuplot-nox python3-psycopg

# A relocated PostgreSQL does not see what the Debian packages installed into
# /usr: copy their library and share files into its own directories.
bench_relocate_peers() {
	local pkglibdir sharedir f dest
	pkglibdir=$("$PG_CONFIG" --pkglibdir)
	sharedir=$("$PG_CONFIG" --sharedir)
	[ "$pkglibdir" = /usr/lib/postgresql/15/lib ] && return 0
	ec_log "copying the files of ${peers[*]} into $pkglibdir and $sharedir"
	while IFS= read -r f; do
		[ -f "$f" ] || continue
		case $f in
			/usr/lib/postgresql/15/lib/*) dest=$pkglibdir/${f#/usr/lib/postgresql/15/lib/} ;;
			/usr/share/postgresql/15/*) dest=$sharedir/${f#/usr/share/postgresql/15/} ;;
			*) continue ;;
		esac
		ec_as_root install -D -m 644 "$f" "$dest" || ec_die "cannot copy $f to $dest"
	done < <(dpkg -L "${peers[@]}")
}
bench_relocate_peers

# Logical decoding: this server build loads only the output plugins named in
# output_plugin_libraries (default 'pgoutput, test_decoding'); a stock server
# has no such setting and loads any.
conf=("wal_level = logical" "max_replication_slots = 10" "shared_buffers = 256MB")
if "$EC_BINDIR/postgres" --describe-config 2>/dev/null | grep -c '^output_plugin_libraries' >/dev/null; then
	conf+=("output_plugin_libraries = 'wal2json, test_decoding, pgoutput'")
fi
ec_cluster_start "${EC_PORT:-55439}" "${conf[@]}"

secs=${EC_BENCH_SECONDS:-20}
wsecs=$((secs / 4))
[ "$wsecs" -ge 2 ] || wsecs=2
out=$EC_WORK/out
results=${EC_BENCH_RESULTS:-$EC_ROOT/test/bench/results}
seed_arg=()
[ -n "${EC_BENCH_SEED:-}" ] && seed_arg=(--seed "$EC_BENCH_SEED")

ec_log "measuring (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
ec_user_run timeout -k 10 $((secs * 20 + 600)) /usr/bin/python3 "$EC_SRC/test/bench/sidebyside.py" measure \
	--out "$out" --pgbin "$EC_BINDIR" --seconds "$secs" --write-seconds "$wsecs" \
	--reps "${EC_BENCH_REPS:-3}" --read-rows "${EC_BENCH_ROWS:-100000}" "${seed_arg[@]}" </dev/null ||
	ec_die "the measurement failed (server log: $EC_SERVER_LOG; EC_KEEP=1 keeps it)"

mkdir -p "$results" || ec_die "cannot create $results"
/usr/bin/python3 "$EC_ROOT/test/bench/sidebyside.py" report --in "$out" --results "$results" ||
	ec_die "the report failed"
