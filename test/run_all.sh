#!/usr/bin/env bash
# The one test command: bash test/run_all.sh   (from any directory)
#
# Installs missing Debian packages, builds (make clean && make, -Werror),
# installs the extension, starts a throwaway cluster and runs `make
# installcheck` for each suite: regression (test/sql), isolation (test/specs)
# and TAP (test/t). Each suite runs even when an earlier one failed, and each
# is checked to have really run all of its tests. Exits non-zero on any
# failure; the last line is "N passed, N failed" (one count per regression
# test, isolation spec and TAP script).
#
# Settings: see test/lib.sh (PG_CONFIG, EC_PORT, EC_TMP, EC_KEEP), and
#   EC_SUITES              suites to run (default "regress isolation tap")
#   EC_REQUIRE_SUITES=1    a suite without any test fails the run
#   EC_SUITE_TIMEOUT       seconds per suite before it is killed (default 900)
#   EC_TAP_TESTS           TAP scripts to run (default test/t/*.pl), e.g. test/t/075_standby_feed.pl
set -uo pipefail

# shellcheck source=test/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"

START_TIME=$(date +%s)
SUITES=${EC_SUITES:-regress isolation tap}
SUITE_TIMEOUT=${EC_SUITE_TIMEOUT:-900}
TOTAL_PASSED=0
TOTAL_FAILED=0
FAILED_SUITES=()

ec_bootstrap
# fsync is pointless for a cluster that is removed afterwards.
ec_cluster_start "${EC_PORT:-55432}" "fsync = off"

# count_lines REGEX FILE: number of lines matching (0 when none).
count_lines() { grep -E -c -- "$1" "$2" 2>/dev/null || true; }

# run_make_installcheck LOG VAR=VALUE...: one `make installcheck` restricted to a suite.
run_make_installcheck() {
	local log=$1
	shift
	ec_user_argv make -C "$EC_SRC" PG_CONFIG="$PG_CONFIG" installcheck "$@"
	timeout -k 30 "$SUITE_TIMEOUT" "${EC_ARGV[@]}" </dev/null 2>&1 | tee "$log"
	return "${PIPESTATUS[0]}"
}

# record SUITE EXPECTED PASSED FAILED RC: add a suite's counts, loudly flag
# any suite that failed or did not run all of its tests.
record() {
	local suite=$1 expected=$2 passed=$3 failed=$4 rc=$5 bad=
	if [ $((passed + failed)) -ne "$expected" ]; then
		ec_warn "$suite: $expected tests expected, but $((passed + failed)) reported (passed $passed, failed $failed)"
		if [ $((passed + failed)) -lt "$expected" ]; then
			failed=$((expected - passed))
		fi
		bad=1
	fi
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 124 ] && ec_warn "$suite: killed after ${SUITE_TIMEOUT}s"
		ec_warn "$suite: make installcheck exited with status $rc"
		[ "$failed" -eq 0 ] && failed=1
		bad=1
	fi
	[ "$failed" -gt 0 ] && bad=1
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
	TOTAL_FAILED=$((TOTAL_FAILED + failed))
	if [ -n "$bad" ]; then
		FAILED_SUITES+=("$suite")
		printf '==> %s: FAILED (%d passed, %d failed)\n' "$suite" "$passed" "$failed"
	else
		printf '==> %s: ok (%d passed)\n' "$suite" "$passed"
	fi
	[ -z "$bad" ]
}

empty_suite() {
	if [ -n "${EC_REQUIRE_SUITES:-}" ]; then
		ec_warn "$1: no tests in $2, and EC_REQUIRE_SUITES is set"
		TOTAL_FAILED=$((TOTAL_FAILED + 1))
		FAILED_SUITES+=("$1")
	else
		ec_warn "$1: no tests in $2: suite skipped"
	fi
}

show_file() { # show_file TITLE FILE LINES
	[ -s "$2" ] || return 0
	printf '\n==> %s (%s, first %d lines):\n' "$1" "$2" "$3"
	head -n "$3" "$2"
}

# pg_regress prints one line per test: "test NAME ... ok|FAILED|failed (ignored)"
# up to 15, TAP lines "ok N - NAME" / "not ok N - NAME" ("+" in a parallel
# group) from 16 on.
suite_pg_regress() { # NAME KIND FILES_GLOB_DIR EXT OUTDIR MAKEVARS...
	local name=$1 dir=$2 ext=$3 diffs=$4
	shift 4
	local n log=$EC_WORK/$name.log passed failed rc
	n=$(find "$EC_SRC/$dir" -maxdepth 1 -name "*.$ext" 2>/dev/null | wc -l)
	if [ "$n" -eq 0 ]; then
		empty_suite "$name" "$dir"
		return 0
	fi
	ec_log "$name: $n tests from $dir"
	run_make_installcheck "$log" "$@"
	rc=$?
	passed=$(count_lines '^(test +)?[^ ]+ +\.\.\. ok( |$)|^ok +[0-9]+ +[-+] ' "$log")
	failed=$(count_lines '^(test +)?[^ ]+ +\.\.\. (FAILED|failed)|^not ok +[0-9]+ +[-+] ' "$log")
	if ! record "$name" "$n" "$passed" "$failed" "$rc"; then
		show_file "$name diffs" "$EC_SRC/$diffs" 400
	fi
}

suite_tap() {
	local name=tap log=$EC_WORK/tap.log rc f passed=0 failed=0 n
	local files=() failed_files=()
	while IFS= read -r f; do files+=("$f"); done < <(cd "$EC_SRC" && ls ${EC_TAP_TESTS:-test/t/*.pl} 2>/dev/null)
	n=${#files[@]}
	if [ "$n" -eq 0 ]; then
		empty_suite "$name" test/t
		return 0
	fi
	ec_log "$name: $n scripts from test/t"
	run_make_installcheck "$log" REGRESS= ISOLATION= PROVE_FLAGS="${PROVE_FLAGS:-}" PROVE_TESTS="${files[*]}"
	rc=$?
	# prove prints "test/t/NAME.pl .. ok" (or "skipped: ...") per script that passed.
	for f in "${files[@]}"; do
		if grep -E -q "^${f//./\\.} \.+ (ok|skipped)" "$log"; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
			failed_files+=("$f")
		fi
	done
	grep -E '^Files=[0-9]+, Tests=[0-9]+' "$log" | sed 's/^/==> tap: /'
	if ! record "$name" "$n" "$passed" "$failed" "$rc"; then
		# the log of each script that failed (all of them if prove itself failed)
		[ ${#failed_files[@]} -eq 0 ] && failed_files=("${files[@]}")
		for f in "${failed_files[@]}"; do
			f=$EC_SRC/tmp_check/log/regress_log_$(basename "$f" .pl)
			[ -f "$f" ] || continue
			printf '\n==> tail of %s:\n' "$f"
			tail -n 100 "$f"
		done
	fi
}

for suite in $SUITES; do
	case "$suite" in
		regress) suite_pg_regress regress test/sql sql regression.diffs ISOLATION= TAP_TESTS= ;;
		isolation) suite_pg_regress isolation test/specs spec output_iso/regression.diffs REGRESS= TAP_TESTS= ;;
		tap) suite_tap ;;
		*) ec_die "unknown suite $suite (regress, isolation, tap)" ;;
	esac
done

if [ "$TOTAL_FAILED" -gt 0 ]; then
	printf '\n==> tail of the server log (%s):\n' "$EC_SERVER_LOG"
	tail -n 60 "$EC_SERVER_LOG" 2>/dev/null
	printf '\n==> FAILED suites: %s (elapsed %ds)\n' "${FAILED_SUITES[*]}" $(($(date +%s) - START_TIME))
else
	printf '\n==> all suites passed (elapsed %ds)\n' $(($(date +%s) - START_TIME))
fi
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
