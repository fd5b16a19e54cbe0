# shellcheck shell=bash
# Sourced by the benchmarks: a throwaway cluster on a Unix socket, owned by
# postgres, stopped and removed on exit. Also the median of numbers on stdin.
#   bench_cluster NAME PORT [server options...]
# sets bindir, dir, PGHOST, PGPORT, PGUSER and a psql() that stops on error.
bench_cluster() {
	local name=$1 port=$2
	shift 2
	bindir=$(pg_config --bindir)
	dir=$(mktemp -d "/tmp/ec_feed_$name.XXXXXX")
	chown postgres "$dir"
	trap bench_cleanup EXIT
	runuser -u postgres -- "$bindir/initdb" -D "$dir/data" -A trust >/dev/null
	runuser -u postgres -- "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
		-o "-c listen_addresses= -c unix_socket_directories=$dir -p $port $*" start >/dev/null
	export PGHOST=$dir PGPORT=$port PGUSER=postgres
}
bench_cleanup() {
	runuser -u postgres -- "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
psql() { command psql -XqAt -v ON_ERROR_STOP=1 "$@"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
