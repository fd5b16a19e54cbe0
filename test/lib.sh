# test/lib.sh: bootstrap shared by test/run_all.sh and test/demo.sh (sourced).
#
# From a fresh Debian 12 machine as root (or as a user who can sudo or write
# the PostgreSQL install directories) it
#   - installs the Debian packages that are missing,
#   - copies the source tree to a private work directory and builds it there
#     (make clean && make; the Makefile adds -Wall -Wextra -Werror),
#   - installs the extension (make install),
#   - starts a throwaway cluster (Unix socket only, own port) and removes it
#     and the work directory on every exit path.
# initdb refuses to run as root, so as root everything after the install runs
# as the unprivileged user "postgres" (created by the postgresql-common package).
#
# Settings (environment):
#   EC_PG       PostgreSQL major to test: 15 (default: the host's, Debian 12's
#               own), 17 or 18 (in a cached Debian root of the release that
#               ships it, made with debootstrap; as root: see test/pgroot.sh)
#   PG_CONFIG   pg_config of the PostgreSQL to build for and test against
#               (default /usr/lib/postgresql/$EC_PG/bin/pg_config; a relocated
#               copy of PostgreSQL works too: its binaries are used throughout;
#               ignored for 17 and 18, which use the root's)
#   EC_PORT     port of the throwaway cluster (socket file only, no TCP)
#   EC_TMP      parent of the work directory (default /tmp; keep it short:
#               Unix socket paths are limited to 107 bytes)
#   EC_KEEP=1   keep the work directory (build copy, logs, cluster data)

EC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EC_SCRIPT="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd -P)/$(basename "${BASH_SOURCE[1]}")"
EC_HOST_PG=15			# the major Debian 12 ships
EC_PG_MAJOR=${EC_PG:-$EC_HOST_PG}
case "$EC_PG_MAJOR" in
	15 | 17 | 18) ;;
	*) printf '==> ERROR: EC_PG=%s: tested majors are 15, 17 and 18\n' "$EC_PG_MAJOR" >&2; exit 2 ;;
esac
# Outside its Debian root, a major the host does not ship runs in that root.
EC_USE_ROOT=
if [ "$EC_PG_MAJOR" != "$EC_HOST_PG" ] && [ -z "${EC_IN_ROOT:-}" ]; then
	EC_USE_ROOT=1
	unset PG_CONFIG
fi
: "${PG_CONFIG:=/usr/lib/postgresql/$EC_PG_MAJOR/bin/pg_config}"
EC_BASE_PACKAGES=(postgresql-$EC_PG_MAJOR postgresql-server-dev-$EC_PG_MAJOR
	postgresql-client-$EC_PG_MAJOR libipc-run-perl perl make gcc libc6-dev
	coreutils tar util-linux
	python3 python3-psycopg python3-fastapi python3-uvicorn python3-httpx)	# examples/ and their tests

EC_WORK=
EC_SRC=
EC_USER=
EC_CLUSTER_UP=
EC_APT_UPDATED=
EC_SUDO=
EC_BINDIR=

# Connection settings of the caller must not redirect our clients elsewhere.
unset PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS PGHOSTADDR PGDATA \
	PGPASSWORD PGPASSFILE PGSSLMODE PGREQUIRESSL PGCLIENTENCODING \
	PGTZ PGDATESTYLE PGAPPNAME PGTARGETSESSIONATTRS PGCONNECT_TIMEOUT

ec_log()  { printf '==> %s\n' "$*"; }
ec_warn() { printf '==> WARNING: %s\n' "$*"; }
ec_die()  { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

ec_is_root() { [ "$(id -u)" -eq 0 ]; }

# Can we get root rights without a prompt (CI has no stdin)?
ec_can_root() {
	ec_is_root && return 0
	if [ -z "$EC_SUDO" ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true </dev/null 2>/dev/null; then
			EC_SUDO=yes
		else
			EC_SUDO=no
		fi
	fi
	[ "$EC_SUDO" = yes ]
}

ec_as_root() {
	if ec_is_root; then
		"$@"
	elif ec_can_root; then
		sudo -n "$@" </dev/null
	else
		return 1
	fi
}

# ec_ensure_packages PKG...: install the Debian packages that are not installed.
ec_ensure_packages() {
	local p missing=()
	if ! command -v dpkg-query >/dev/null 2>&1; then
		ec_warn "dpkg-query not found (not Debian?): not checking packages $*"
		return 0
	fi
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	ec_log "installing missing Debian packages: ${missing[*]}"
	ec_can_root ||
		ec_die "missing packages ${missing[*]}, and no root rights (run as root: apt-get install ${missing[*]})"
	if [ -z "$EC_APT_UPDATED" ]; then
		ec_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null ||
			ec_die "apt-get update failed"
		EC_APT_UPDATED=1
	fi
	ec_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" </dev/null ||
		ec_die "apt-get install ${missing[*]} failed"
}

# ec_user_run CMD...: run as the unprivileged test user, with a clean, explicit
# environment (root's TMPDIR or HOME may not be usable by postgres).
# ec_user_argv CMD...: only put that command line into the array EC_ARGV.
ec_user_argv() {
	local envv=(
		"PATH=$PATH"
		"HOME=$EC_WORK"
		"TMPDIR=$EC_WORK/tmp"
		"LC_ALL=C.UTF-8"
		"LANG=C.UTF-8"
		"PG_CONFIG=$PG_CONFIG"
	)
	local v
	for v in PGHOST PGPORT PGUSER CI PROVE_FLAGS PG_TEST_TIMEOUT_DEFAULT PG_TEST_NOCLEAN \
		EC_STRESS_SECONDS EC_STRESS_SEED EC_MODEL_SECONDS EC_MODEL_SEED EC_MODEL_FIGURES EC_ETL_SEED; do
		[ -n "${!v:-}" ] && envv+=("$v=${!v}")
	done
	if ec_is_root; then
		EC_ARGV=(runuser -u "$EC_USER" -- env -i "${envv[@]}" "$@")
	else
		EC_ARGV=(env -i "${envv[@]}" "$@")
	fi
}
ec_user_run() {
	ec_user_argv "$@"
	"${EC_ARGV[@]}"
}

# ec_cleanup: stop the cluster, remove the work directory. Runs from the EXIT
# trap, so it must not change the exit status.
ec_cleanup() {
	local rc=$?
	trap - EXIT
	if [ -n "$EC_CLUSTER_UP" ]; then
		ec_cluster_stop || true
	fi
	if [ -n "$EC_WORK" ] && [ -d "$EC_WORK" ]; then
		# servers of TAP tests that were killed (e.g. by a timeout) before
		# they could stop their nodes themselves
		local pidfile
		while IFS= read -r pidfile; do
			ec_user_run "$EC_BINDIR/pg_ctl" -D "$(dirname "$pidfile")" -m immediate -w -t 30 stop \
				>/dev/null 2>&1 || true
		done < <(find "$EC_WORK" -name postmaster.pid 2>/dev/null)
		if [ -n "${EC_KEEP:-}" ]; then
			ec_log "kept work directory $EC_WORK"
		else
			rm -rf "$EC_WORK"
		fi
	fi
	exit "$rc"
}

ec_install_traps() {
	trap ec_cleanup EXIT
	trap 'ec_warn "interrupted"; exit 130' INT
	trap 'ec_warn "terminated"; exit 143' TERM HUP
}

# ec_check_pg: the PostgreSQL we build for is there and is the right major.
ec_check_pg() {
	[ -x "$PG_CONFIG" ] || ec_die "PG_CONFIG=$PG_CONFIG is not an executable pg_config"
	local ver
	ver=$("$PG_CONFIG" --version) || ec_die "$PG_CONFIG --version failed"
	case "$ver" in
		"PostgreSQL $EC_PG_MAJOR".*) ;;
		*) ec_warn "built and tested on PostgreSQL $EC_PG_MAJOR, this is: $ver" ;;
	esac
	EC_BINDIR=$("$PG_CONFIG" --bindir)
	[ -x "$EC_BINDIR/initdb" ] || ec_die "no initdb in $EC_BINDIR (is postgresql-$EC_PG_MAJOR installed?)"
}

# ec_setup_workdir: private copy of the source tree, owned by the test user.
ec_setup_workdir() {
	if ec_is_root; then
		EC_USER=postgres
		id -u "$EC_USER" >/dev/null 2>&1 || ec_die "user $EC_USER does not exist (it comes with postgresql-common)"
	else
		EC_USER=$(id -un)
	fi
	EC_WORK=$(mktemp -d "${EC_TMP:-/tmp}/ec_feed.XXXXXX") || ec_die "mktemp failed"
	EC_SRC=$EC_WORK/src
	mkdir -p "$EC_SRC" "$EC_WORK/tmp"
	# Build artefacts of the caller's tree are left behind; make clean removes
	# anything else (results/, tmp_check/, ...).
	tar -C "$EC_ROOT" --exclude=./.git --exclude='*.o' --exclude='*.bc' --exclude='*.so' \
		-cf - . | tar -C "$EC_SRC" -xf - || ec_die "copying the source tree failed"
	if ec_is_root; then
		chown -R "$EC_USER:" "$EC_WORK"
	fi
	chmod 700 "$EC_WORK"
	ec_log "work directory $EC_WORK (running as $EC_USER)"
}

# ec_build: make clean && make, in the private copy, as the test user.
ec_build() {
	local log=$EC_WORK/build.log
	ec_log "building: make clean && make (PG_CONFIG=$PG_CONFIG)"
	if ! { ec_user_run make -C "$EC_SRC" clean &&
		ec_user_run make -C "$EC_SRC" -j"$(nproc 2>/dev/null || echo 2)"; } >"$log" 2>&1; then
		tail -n 150 "$log"
		ec_die "build failed (see above)"
	fi
	# gcc's warnings fail the build (-Werror); show any other tool's (e.g. the
	# clang run that makes the JIT bitcode, which does not get -Werror).
	if grep -E '(^|[^A-Za-z])warning:' "$log" >/dev/null; then
		grep -E -B2 -A4 '(^|[^A-Za-z])warning:' "$log" | head -n 60
		ec_warn "the build printed warnings (see above)"
	fi
	ec_log "build ok"
}

# ec_install: make install, as the current user when it may write the install
# directories, else through root rights.
ec_install() {
	local log=$EC_WORK/install.log pkglibdir sharedir
	pkglibdir=$("$PG_CONFIG" --pkglibdir)
	sharedir=$("$PG_CONFIG" --sharedir)
	ec_log "installing: make install (into $pkglibdir, $sharedir/extension)"
	if ec_is_root || { [ -w "$pkglibdir" ] && [ -w "$sharedir/extension" ] &&
		{ [ ! -e "$pkglibdir/bitcode" ] || [ -w "$pkglibdir/bitcode" ]; }; }; then
		make -C "$EC_SRC" PG_CONFIG="$PG_CONFIG" install >"$log" 2>&1
	elif ec_can_root; then
		sudo -n make -C "$EC_SRC" PG_CONFIG="$PG_CONFIG" install >"$log" 2>&1 </dev/null
	else
		ec_die "cannot write $pkglibdir and no sudo: run as root, or give this user write access to the PostgreSQL install directories"
	fi || {
		tail -n 50 "$log"
		ec_die "make install failed"
	}
}

# ec_bootstrap PKG...: everything up to an installed extension. For a major
# the host does not ship, the calling script instead runs again inside that
# major's Debian root, and its exit status is ours.
ec_bootstrap() {
	if [ -n "$EC_USE_ROOT" ]; then
		ec_root_run "${EC_SCRIPT#"$EC_ROOT"/}"
	fi
	ec_install_traps
	ec_ensure_packages "${EC_BASE_PACKAGES[@]}" "$@"
	ec_check_pg
	ec_setup_workdir
	ec_build
	ec_install
}

# ec_cluster_start PORT [postgresql.conf line]...: throwaway cluster in the
# work directory, Unix socket only. Exports PGHOST, PGPORT, PGUSER.
ec_cluster_start() {
	local port=$1 line
	shift
	EC_PGDATA=$EC_WORK/data
	EC_SERVER_LOG=$EC_WORK/server.log
	ec_log "starting a throwaway cluster (port $port, socket in $EC_WORK)"
	ec_user_run "$EC_BINDIR/initdb" -D "$EC_PGDATA" -U postgres -A trust \
		--encoding=UTF8 --locale=C --no-sync >"$EC_WORK/initdb.log" 2>&1 || {
		cat "$EC_WORK/initdb.log"
		ec_die "initdb failed"
	}
	{
		echo "# throwaway cluster of ec_feed's test/lib.sh"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$EC_WORK'"
		echo "port = $port"
		echo "max_prepared_transactions = 10"
		echo "lc_messages = 'C'"
		for line in "$@"; do echo "$line"; done
	} >>"$EC_PGDATA/postgresql.conf"
	if ec_is_root; then chown "$EC_USER:" "$EC_PGDATA/postgresql.conf"; fi
	EC_CLUSTER_UP=1
	ec_user_run "$EC_BINDIR/pg_ctl" -D "$EC_PGDATA" -l "$EC_SERVER_LOG" -w -t 120 start \
		>"$EC_WORK/pg_ctl.log" 2>&1 || {
		cat "$EC_WORK/pg_ctl.log"
		tail -n 40 "$EC_SERVER_LOG" 2>/dev/null
		ec_die "the cluster did not start"
	}
	export PGHOST=$EC_WORK PGPORT=$port PGUSER=postgres
}

ec_cluster_stop() {
	[ -n "$EC_CLUSTER_UP" ] || return 0
	EC_CLUSTER_UP=
	ec_user_run "$EC_BINDIR/pg_ctl" -D "$EC_PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
		ec_user_run "$EC_BINDIR/pg_ctl" -D "$EC_PGDATA" -m immediate -w -t 60 stop >/dev/null 2>&1 ||
		ec_warn "could not stop the cluster in $EC_PGDATA"
}

# ec_psql ARGS...: psql on the throwaway cluster as the test user.
ec_psql() {
	ec_user_run "$EC_BINDIR/psql" -X -v ON_ERROR_STOP=1 -d postgres "$@"
}

# shellcheck source=test/pgroot.sh
. "$EC_ROOT/test/pgroot.sh"
