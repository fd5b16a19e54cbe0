#!/usr/bin/env bash
# The demo command: bash test/demo.sh   (from any directory)
#
# Installs missing Debian packages (also python3-psycopg2 for the demo
# program), builds and installs the extension, starts a throwaway cluster and
# runs test/demo/demo.py: ~10 concurrent writers on a tracked table for 20 s,
# one consumer following ec_feed.read() and one paging by (updated_at, id);
# then it prints, for both, changes written / delivered, keys missed / stale
# and commit->seen freshness. Bounded (under a minute after the build); the
# cluster is removed at the end. Settings: see test/lib.sh, and
#   EC_DEMO_SECONDS   seconds of writes (default 20)
#   EC_DEMO_ARGS      more options for demo.py (e.g. "--writers 12 --seed 7")
set -uo pipefail

# shellcheck source=test/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"

ec_bootstrap python3 python3-psycopg2
ec_cluster_start "${EC_PORT:-55433}"

ec_log "running the demo"
# shellcheck disable=SC2086
ec_user_run timeout -k 10 150 /usr/bin/python3 "$EC_SRC/test/demo/demo.py" \
	--seconds "${EC_DEMO_SECONDS:-20}" ${EC_DEMO_ARGS:-} </dev/null
rc=$?
[ "$rc" -eq 124 ] && ec_warn "the demo did not finish in time"
exit "$rc"
