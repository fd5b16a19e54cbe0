# test/pgroot.sh: PostgreSQL majors Debian 12 does not ship (sourced by test/lib.sh).
#
# Debian 12 (the host) has PostgreSQL 15 only. For EC_PG=17 (Debian 13,
# trixie) and EC_PG=18 (sid), a Debian root of that release is made with
# debootstrap from the Debian archive the host's apt already uses, cached, and
# the calling test script runs again inside it under chroot (as root there, the
# tests as its user postgres). The packages' binaries need that release's C
# library, hence a whole root rather than just the packages.
#
# The cache: $EC_ROOT_CACHE/<release>-<key>, where key is a hash of the
# release, the package list and the layout version, so a change of the list
# makes a new root. A root is built in a temporary directory next to it and
# renamed into place only once debootstrap and the checks below succeeded; it
# carries a marker file, and a directory without the marker is removed and
# built again. Builders of the same root take turns (flock).
#
# Every run mounts an overlay (the cached root read-only below, a throwaway
# directory above), so `make install` and the test clusters never change the
# cache, and runs of the same major do not collide. /proc, /dev and a private
# /dev/shm are mounted in it; all of them are unmounted, and processes left in
# the root stopped, on every exit path.
#
# Settings (environment):
#   EC_ROOT_CACHE    cache directory (default /var/cache/ec_feed/roots)
#   EC_ROOT_REBUILD=1  build the root again even when cached (e.g. to pick up
#                    newer sid packages)
#   EC_APT_URI       Debian archive to debootstrap from (default: the URI of
#                    the host's apt source for its own release, read from
#                    /etc/apt/sources.list.d/*.sources or sources.list)

EC_ROOT_LAYOUT=1		# bump when the way a root is made changes
EC_ROOT_RUN=
EC_ROOT_MNT=
EC_ROOT_MOUNTS=()
EC_ROOT_BUILDING=
EC_ROOT_CHILD=

# ec_root_release MAJOR: the Debian release whose archive has that major.
ec_root_release() {
	case "$1" in
		17) echo trixie ;;
		18) echo sid ;;
		*) return 1 ;;
	esac
}

# ec_root_packages MAJOR: what the root needs to build and run every suite.
# postgresql-server-dev-N brings pg_config, PGXS and the TAP test modules
# (lib/pgxs/src/test/perl); prove comes with perl.
ec_root_packages() {
	echo "postgresql-$1 postgresql-client-$1 postgresql-server-dev-$1 libipc-run-perl perl make gcc libc6-dev util-linux python3 python3-psycopg python3-fastapi python3-uvicorn python3-httpx"
}

# ec_apt_uri: the Debian archive URI of the host's apt configuration: the
# first URI of an enabled "deb" source whose suites include the host's release
# (its codename, e.g. bookworm; not bookworm-security or -updates).
ec_apt_uri() {
	if [ -n "${EC_APT_URI:-}" ]; then
		echo "$EC_APT_URI"
		return 0
	fi
	local codename uri f
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || return 1
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk -v cn="$codename" '
			function flush() {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites ~ ("(^|[ \t])" cn "([ \t]|$)") &&
					enabled != "no" && uris != "") {
					split(uris, u, /[ \t]+/)
					print u[1]
					found = 1
					exit
				}
				types = suites = uris = enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[A-Za-z-]+:/ {
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { if (!found) flush() }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		uri=$(awk -v cn="$codename" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == cn) { print $i; exit }
			}' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	return 1
}

# ec_root_spawn CMD...: run CMD as the leader of a new process group and wait
# for it. In the background, so that a signal runs our trap at once (bash runs
# traps only between commands), and in its own group, so that the trap can
# stop it with everything it started (ec_root_stop_child).
ec_root_spawn() {
	local rc
	setsid -w "$@" </dev/null &
	EC_ROOT_CHILD=$!
	wait "$EC_ROOT_CHILD"
	rc=$?
	EC_ROOT_CHILD=
	return "$rc"
}

ec_root_stop_child() {
	[ -n "$EC_ROOT_CHILD" ] || return 0
	kill -KILL -- "-$EC_ROOT_CHILD" 2>/dev/null
	kill -KILL "$EC_ROOT_CHILD" 2>/dev/null
	wait "$EC_ROOT_CHILD" 2>/dev/null
	EC_ROOT_CHILD=
}

# ec_root_umount_under DIR: unmount everything mounted at or below DIR,
# deepest first (a killed debootstrap can leave its /proc and /sys mounted).
ec_root_umount_under() {
	local dir=$1 m
	while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || ec_warn "could not unmount $m"
	done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
}

# ec_root_remove DIR: remove a (half-built) root, never following a mount.
ec_root_remove() {
	ec_root_umount_under "$1"
	rm -rf --one-file-system "$1"
}

# ec_root_ensure MAJOR: sets EC_ROOT_DIR to a complete cached root, building it
# when needed.
ec_root_ensure() {
	local major=$1 release pkgs key name cache lock tmp uri start d
	release=$(ec_root_release "$major") || ec_die "no Debian release known for PostgreSQL $major"
	pkgs=$(ec_root_packages "$major")
	key=$(printf '%s\n' "$EC_ROOT_LAYOUT" "$release" "minbase" "$pkgs" | sha256sum | cut -c1-12)
	name=$release-pg$major-$key
	cache=${EC_ROOT_CACHE:-/var/cache/ec_feed/roots}
	EC_ROOT_DIR=$cache/$name
	mkdir -p "$cache" || ec_die "cannot create $cache"
	lock=$cache/.$name.lock
	exec {EC_ROOT_LOCK_FD}>"$lock" || ec_die "cannot open $lock"
	flock "$EC_ROOT_LOCK_FD" || ec_die "cannot lock $lock"
	# Leftovers of builders that were killed: we hold the lock, so no one is
	# building this root now.
	for d in "$cache/.build.$name".*; do
		[ -e "$d" ] && ec_root_remove "$d"
	done
	if [ -n "${EC_ROOT_REBUILD:-}" ] && [ -d "$EC_ROOT_DIR" ]; then
		ec_log "EC_ROOT_REBUILD is set: removing $EC_ROOT_DIR"
		ec_root_remove "$EC_ROOT_DIR"
	fi
	if [ -d "$EC_ROOT_DIR" ] && [ ! -f "$EC_ROOT_DIR/.ec_feed_root_complete" ]; then
		ec_warn "$EC_ROOT_DIR is incomplete: building it again"
		ec_root_remove "$EC_ROOT_DIR"
	fi
	if [ -d "$EC_ROOT_DIR" ]; then
		ec_log "PostgreSQL $major: cached Debian $release root $EC_ROOT_DIR"
	else
		uri=$(ec_apt_uri) ||
			ec_die "no Debian archive URI in the host's apt configuration (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list); set EC_APT_URI"
		ec_ensure_packages debootstrap
		tmp=$(mktemp -d "$cache/.build.$name.XXXXXX") || ec_die "mktemp in $cache failed"
		EC_ROOT_BUILDING=$tmp
		start=$(date +%s)
		ec_log "PostgreSQL $major: making a Debian $release root with debootstrap from $uri (a few minutes; cached in $cache)"
		# shellcheck disable=SC2086
		if ! ec_root_spawn debootstrap --variant=minbase --include="$(echo $pkgs | tr ' ' ,)" \
			"$release" "$tmp/root" "$uri" >"$tmp/debootstrap.log" 2>&1; then
			tail -n 30 "$tmp/debootstrap.log"
			tail -n 30 "$tmp/root/debootstrap/debootstrap.log" 2>/dev/null
			ec_die "debootstrap of $release failed (see above)"
		fi
		ec_root_umount_under "$tmp/root"
		rm -f "$tmp/root"/var/cache/apt/archives/*.deb
		ec_root_check "$tmp/root" "$major"
		printf 'release %s\npackages %s\nmade %s\n' "$release" "$pkgs" "$(date -u +%FT%TZ)" \
			>"$tmp/root/.ec_feed_root_complete"
		mv -T "$tmp/root" "$EC_ROOT_DIR" || ec_die "cannot move the new root to $EC_ROOT_DIR"
		rm -rf "$tmp"
		EC_ROOT_BUILDING=
		ec_log "root ready in $(($(date +%s) - start))s: $EC_ROOT_DIR"
		# Roots of an older package list or layout of the same major.
		for d in "$cache/$release-pg$major-"*; do
			[ "$d" = "$EC_ROOT_DIR" ] || [ ! -d "$d" ] && continue
			grep -qF "$d" /proc/mounts || ec_root_remove "$d"
		done
	fi
	flock -u "$EC_ROOT_LOCK_FD"
	exec {EC_ROOT_LOCK_FD}>&-
}

# ec_root_check ROOT MAJOR: the root has what the suites need.
ec_root_check() {
	local root=$1 major=$2 pgxs
	pgxs=/usr/lib/postgresql/$major/lib/pgxs
	[ -x "$root/usr/lib/postgresql/$major/bin/pg_config" ] || ec_die "the new root has no pg_config for $major"
	[ -x "$root/usr/lib/postgresql/$major/bin/initdb" ] || ec_die "the new root has no initdb for $major"
	[ -f "$root$pgxs/src/makefiles/pgxs.mk" ] || ec_die "the new root has no PGXS"
	[ -f "$root$pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] ||
		ec_die "the new root has no PostgreSQL::Test::Cluster (in $pgxs/src/test/perl)"
	[ -f "$root$pgxs/src/test/isolation/pg_isolation_regress" ] ||
		ec_die "the new root has no pg_isolation_regress"
	chroot "$root" /usr/bin/perl -MIPC::Run -MTest::More -e 1 ||
		ec_die "the new root lacks IPC::Run or Test::More"
	[ -x "$root/usr/bin/prove" ] || ec_die "the new root has no prove"
	[ -x "$root/usr/sbin/runuser" ] || [ -x "$root/sbin/runuser" ] || ec_die "the new root has no runuser"
	chroot "$root" /usr/bin/id -u postgres >/dev/null || ec_die "the new root has no user postgres"
}

# ec_root_mount ROOT: overlay on the cached root, with /proc, /dev, /dev/shm.
ec_root_mount() {
	local root=$1
	EC_ROOT_RUN=$(mktemp -d "${EC_TMP:-/tmp}/ec_root.XXXXXX") || ec_die "mktemp failed"
	mkdir -p "$EC_ROOT_RUN/upper" "$EC_ROOT_RUN/work" "$EC_ROOT_RUN/mnt"
	EC_ROOT_MNT=$EC_ROOT_RUN/mnt
	mount -t overlay overlay \
		-o "lowerdir=$root,upperdir=$EC_ROOT_RUN/upper,workdir=$EC_ROOT_RUN/work" "$EC_ROOT_MNT" ||
		ec_die "cannot mount an overlay on $root (the kernel needs overlayfs)"
	EC_ROOT_MOUNTS=("$EC_ROOT_MNT")
	mount -t proc proc "$EC_ROOT_MNT/proc" || ec_die "cannot mount /proc in the root"
	EC_ROOT_MOUNTS+=("$EC_ROOT_MNT/proc")
	mount --bind /dev "$EC_ROOT_MNT/dev" || ec_die "cannot bind /dev into the root"
	EC_ROOT_MOUNTS+=("$EC_ROOT_MNT/dev")
	# not a peer of the host's /dev: the /dev/shm below must not show there
	mount --make-private "$EC_ROOT_MNT/dev" || ec_die "cannot make the root's /dev private"
	# PostgreSQL's dynamic shared memory lives in /dev/shm.
	mount -t tmpfs -o mode=1777,size=512m tmpfs "$EC_ROOT_MNT/dev/shm" || ec_die "cannot mount /dev/shm in the root"
	EC_ROOT_MOUNTS+=("$EC_ROOT_MNT/dev/shm")
}

# ec_root_pids: into array pids, the processes whose root is this run's root
# (only processes this run started can be there).
ec_root_pids() {
	local p
	pids=()
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$EC_ROOT_MNT" ] && pids+=("${p#/proc/}")
	done
}

# ec_root_cleanup: stop what still runs in the root, unmount, remove the run
# directory. From the EXIT trap: keeps the exit status.
ec_root_cleanup() {
	local rc=$? i sig pids
	trap - EXIT
	ec_root_stop_child
	if [ -n "$EC_ROOT_MNT" ]; then
		# Servers the inner script could not stop because it was killed
		# (pg_ctl puts them in a session of their own): SIGQUIT is an
		# immediate shutdown that also removes their shared memory; what is
		# left after a few seconds gets SIGKILL.
		for sig in QUIT KILL; do
			for i in 1 2 3 4 5 6 7 8 9 10; do
				ec_root_pids
				[ ${#pids[@]} -eq 0 ] && break 2
				[ "$i" -eq 1 ] && kill "-$sig" "${pids[@]}" 2>/dev/null
				sleep 0.5
			done
		done
		for ((i = ${#EC_ROOT_MOUNTS[@]} - 1; i >= 0; i--)); do
			umount "${EC_ROOT_MOUNTS[i]}" 2>/dev/null || umount -l "${EC_ROOT_MOUNTS[i]}" 2>/dev/null ||
				ec_warn "could not unmount ${EC_ROOT_MOUNTS[i]}"
		done
	fi
	if [ -n "${EC_ROOT_BUILDING:-}" ]; then
		ec_root_remove "$EC_ROOT_BUILDING"
	fi
	if [ -n "$EC_ROOT_RUN" ] && [ -d "$EC_ROOT_RUN" ]; then
		if [ -n "${EC_KEEP:-}" ]; then
			ec_log "kept the root's changes (work directories, logs) in $EC_ROOT_RUN/upper"
		else
			rm -rf --one-file-system "$EC_ROOT_RUN"
		fi
	fi
	exit "$rc"
}

# ec_root_run SCRIPT: run the test script (path relative to the source tree)
# inside a root of PostgreSQL $EC_PG_MAJOR; exits with its status.
ec_root_run() {
	local script=$1 v envv
	ec_is_root || ec_die "EC_PG=$EC_PG_MAJOR runs in a Debian root made with debootstrap and chroot: run as root"
	trap ec_root_cleanup EXIT
	trap 'ec_warn "interrupted"; exit 130' INT
	trap 'ec_warn "terminated"; exit 143' TERM HUP
	ec_root_ensure "$EC_PG_MAJOR"
	ec_root_mount "$EC_ROOT_DIR"
	mkdir -p "$EC_ROOT_MNT/ec_src"
	tar -C "$EC_ROOT" --exclude=./.git --exclude='*.o' --exclude='*.bc' --exclude='*.so' \
		-cf - . | tar -C "$EC_ROOT_MNT/ec_src" -xf - || ec_die "copying the source tree into the root failed"
	envv=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		LC_ALL=C.UTF-8 LANG=C.UTF-8 HOME=/root TMPDIR=/tmp
		EC_IN_ROOT=1 "EC_PG=$EC_PG_MAJOR")
	for v in EC_PORT EC_SUITES EC_TAP_TESTS EC_REQUIRE_SUITES EC_SUITE_TIMEOUT EC_KEEP CI PROVE_FLAGS \
		PG_TEST_TIMEOUT_DEFAULT PG_TEST_NOCLEAN EC_STRESS_SECONDS EC_STRESS_SEED EC_ETL_SEED \
		EC_DEMO_SECONDS EC_DEMO_ARGS; do
		[ -n "${!v:-}" ] && envv+=("$v=${!v}")
	done
	ec_log "PostgreSQL $EC_PG_MAJOR: running $script in the root (chroot $EC_ROOT_MNT)"
	ec_root_spawn chroot "$EC_ROOT_MNT" /usr/bin/env -i "${envv[@]}" /bin/bash "/ec_src/$script"
	exit $?
}
