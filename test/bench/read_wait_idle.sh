#!/usr/bin/env bash
# The CPU an idle waiting consumer costs: one ec_feed.read(..., wait_ms)
# waiting 10 s with nothing committing; the backend's CPU time from
# /proc (utime + stime) over the wait, as a share of one core.
#
# Usage (as root, after `make install`): bash test/bench/read_wait_idle.sh
set -euo pipefail
# shellcheck source=test/bench/cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
bench_cluster rwi 5605
psql -d postgres -c "CREATE EXTENSION ec_feed" -c "CREATE TABLE t (id int PRIMARY KEY)" -c "SELECT ec_feed.track('t')" >/dev/null
cursor=$(psql -d postgres -c "SELECT ec_feed.cursor_now()")
PGAPPNAME=idle_waiter command psql -XqAt -d postgres -c "SELECT op FROM ec_feed.read('$cursor', 10, NULL, 10000)" >/dev/null &
sleep 1
pid=$(psql -d postgres -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'idle_waiter'")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
t0=$(ticks "$pid"); s0=$(date +%s.%N)
sleep 8
t1=$(ticks "$pid"); s1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
echo "idle waiting read: $(echo "($t1 - $t0) / $hz" | bc -l | cut -c1-6) s CPU in $(echo "$s1 - $s0" | bc -l | cut -c1-5) s: $(echo "100 * ($t1 - $t0) / $hz / ($s1 - $s0)" | bc -l | cut -c1-5)% of a core"
wait
