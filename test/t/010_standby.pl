# Read-your-writes across servers (contract section 4) with a real streaming
# standby: token_status, require_visible (its EC003 payload and its bounded
# wait) and get, while replay is paused and after it resumes; a wait that
# does not hold back replay; tokens after a promotion; a token of another
# cluster.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $json = JSON::PP->new;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', q{
max_prepared_transactions = 10
autovacuum = off
hot_standby_feedback = off
# a recovery conflict cancels standby queries after this long
max_standby_streaming_delay = 3s
# and replay logs its waits for conflicts longer than this
log_recovery_conflict_waits = on
deadlock_timeout = 100ms
lc_messages = 'C'
});
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, name text);
SELECT ec_feed.track('items');
CREATE TABLE junk (id int);
CREATE TABLE junk_x (id int);
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

# psql on a node: (exit code, stdout, stderr), errors with their SQLSTATE
sub run_sql
{
	my ($node, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql(
		'postgres', $sql,
		stdout => \$out,
		stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $out, $err);
}

# the token of row id as it is now, read on the primary (the row must exist)
sub token_of
{
	my ($id) = @_;
	return $primary->safe_psql('postgres',
		"SELECT ec_feed.row_token(t) FROM items t WHERE id = $id");
}

sub get_row
{
	my ($node, $id, $token) = @_;
	my $arg = defined $token ? "'$token'" : 'NULL';
	return $node->safe_psql('postgres',
		"SELECT status, data FROM ec_feed.get('items', '{\"id\": $id}', $arg)");
}

# a psql session started now, left to run; returns a handle. Each statement
# is sent on its own (one -c each), as an application would.
sub start_psql
{
	my ($node, @statements) = @_;
	my %h = (stdout => '', stderr => '');
	$h{run} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'),
			map { ('-c', $_) } @statements
		],
		'<', \undef, '>', \$h{stdout}, '2>', \$h{stderr},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%h;
}

sub finish_psql
{
	my ($h) = @_;
	$h->{run}->finish;
	return ($h->{run}->result(0), $h->{stdout}, $h->{stderr});
}

# ---------------------------------------------------------------------
# a replicated write: visible and found on the standby
# ---------------------------------------------------------------------
$primary->safe_psql('postgres', "INSERT INTO items VALUES (1, 'one')");
my $tok1 = token_of(1);
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok1')"),
	'visible', 'replayed write: visible on the standby');
is(get_row($standby, 1, $tok1), 'found|{"id": 1, "name": "one"}',
	'replayed write: found on the standby');
is($standby->safe_psql('postgres', "SELECT ec_feed.require_visible('$tok1', 1000)"),
	'', 'replayed write: require_visible returns');

# ---------------------------------------------------------------------
# replay paused: the write is received but not replayed
# ---------------------------------------------------------------------
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$standby->poll_query_until('postgres',
	"SELECT pg_get_wal_replay_pause_state() = 'paused'")
  or die 'replay did not pause';
$primary->safe_psql('postgres', "INSERT INTO items VALUES (2, 'two')");
my $tok2 = token_of(2);
$primary->wait_for_catchup($standby, 'flush');

is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok2')"),
	'pending', 'replay paused: pending');
is($primary->safe_psql('postgres', "SELECT ec_feed.token_status('$tok2')"),
	'visible', 'the same token: visible on the primary');
is(get_row($standby, 2, $tok2), 'not_consistent|',
	'replay paused: get with the token says not_consistent');
is(get_row($standby, 2), 'not_found|',
	'replay paused: get without a token cannot tell, and says not_found');

my ($rc, $out, $err) =
  run_sql($standby, "SELECT ec_feed.require_visible('$tok2')");
isnt($rc, 0, 'replay paused: require_visible fails');
like($err, qr/ERROR:  EC003: resource not consistent/, 'EC003 and its message');
my ($detail) = $err =~ /^DETAIL:  (.*)$/m;
my $payload = eval { $json->decode($detail // '') };
ok(ref $payload eq 'HASH', 'the errdetail is a JSON object') or diag $err;
$payload //= {};
is_deeply([ sort keys %$payload ],
	[qw(code reason retry_after_ms suggestion)], 'payload fields');
is($payload->{code}, 'resource_not_consistent', 'payload code');
is($payload->{reason}, 'replica_behind', 'payload reason on a standby');
like($payload->{suggestion} // '', qr/retry/i, 'payload suggests a retry');
like($payload->{retry_after_ms} // '', qr/^[0-9]+$/,
	'payload retry_after_ms is a number');
ok(($payload->{retry_after_ms} // 0) > 0, 'retry_after_ms is positive');

# statement_timeout cuts a long wait
my $t0 = time;
($rc, $out, $err) = run_sql($standby,
	"SET statement_timeout = '300ms'; SELECT ec_feed.require_visible('$tok2', 60000)"
);
my $elapsed = time - $t0;
like($err, qr/57014: canceling statement due to statement timeout/,
	'statement_timeout cancels the wait');
ok($elapsed < 10, sprintf('... promptly (%.2f s)', $elapsed));

# a waiting session publishes no xmin (it would hold back replay)
my $waiter = start_psql(
	$standby,
	"SET application_name = 'waiter'",
	"SELECT ec_feed.require_visible('$tok2', 60000)",
	'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint');
$standby->poll_query_until('postgres',
	"SELECT wait_event = 'Extension' FROM pg_stat_activity WHERE application_name = 'waiter'"
) or die 'the waiter did not start waiting';
is( $standby->safe_psql(
		'postgres',
		"SELECT backend_xmin IS NULL FROM pg_stat_activity WHERE application_name = 'waiter'"
	),
	't',
	'a waiting require_visible holds no xmin');

# the wait ends as soon as replay resumes
# (the time is read just before replay resumes)
my ($resumed_ms) = split /\|/,
  $standby->safe_psql('postgres',
	'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, pg_wal_replay_resume()'
  );
($rc, $out, $err) = finish_psql($waiter);
is($rc, 0, 'the waiter returned without error') or diag $err;
my ($returned_ms) = $out =~ /^([0-9]+)$/m;
my $latency = ($returned_ms // 1e15) - $resumed_ms;
ok($latency < 5000,
	"the wait ended ${latency} ms after replay resumed (its timeout: 60 s)");
note "require_visible returned ${latency} ms after pg_wal_replay_resume()";

is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok2')"),
	'visible', 'replay resumed: visible');
is(get_row($standby, 2, $tok2), 'found|{"id": 2, "name": "two"}',
	'replay resumed: found');

# a REPEATABLE READ transaction keeps its snapshot: it does not wait
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$standby->poll_query_until('postgres',
	"SELECT pg_get_wal_replay_pause_state() = 'paused'")
  or die 'replay did not pause';
$primary->safe_psql('postgres', "UPDATE items SET name = 'deux' WHERE id = 2");
my $tok2b = token_of(2);
$primary->wait_for_catchup($standby, 'flush');
my $rr = $standby->background_psql('postgres', on_error_stop => 0);
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM items;');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok2b')"),
	'visible', 'the update is replayed');
$t0 = time;
$rr->query("SELECT ec_feed.require_visible('$tok2b', 60000);");
like($rr->{stderr}, qr/resource not consistent.*"reason":"transaction_snapshot"/s,
	'REPEATABLE READ: EC003, the transaction snapshot predates the write');
ok(time - $t0 < 10, 'REPEATABLE READ: it did not wait for its timeout');
$rr->quit;

# ---------------------------------------------------------------------
# a replicated delete: not_found with the token of the deleted version
# ---------------------------------------------------------------------
$primary->safe_psql('postgres', 'DELETE FROM items WHERE id = 2');
$primary->wait_for_catchup($standby);
is(get_row($standby, 2, $tok2b), 'not_found|',
	'replicated delete: not_found with the old token');

# ---------------------------------------------------------------------
# a write still open on the primary while later transactions commit: on the
# standby its xid is below the snapshot's xmax and listed only in subxip
# (snapshots taken during recovery keep running xids there, not in xip)
# ---------------------------------------------------------------------
my $otok = $primary->safe_psql(
	'postgres', q{
BEGIN;
INSERT INTO items VALUES (50, 'open');
SELECT ec_feed.row_token(t) FROM items t WHERE id = 50;
PREPARE TRANSACTION 'open_50';
});
$primary->safe_psql('postgres', "INSERT INTO items VALUES (51, 'later')");
my $tok51 = token_of(51);
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok51')"),
	'visible', 'a later commit is visible on the standby');
is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$otok')"),
	'pending', 'the earlier, still open write is pending on the standby');
is(get_row($standby, 50, $otok), 'not_consistent|',
	'... and get says not_consistent');
$primary->safe_psql('postgres', "COMMIT PREPARED 'open_50'");
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$otok')"),
	'visible', 'once committed and replayed: visible');
is(get_row($standby, 50, $otok), 'found|{"id": 50, "name": "open"}',
	'... and found');

# ---------------------------------------------------------------------
# a long wait does not cause a recovery conflict or delay replay
#
# X: a transaction left open on the primary, so that a standby snapshot
# taken now has xmin <= X; D: a delete after X; P: the write waited for,
# kept open by PREPARE TRANSACTION. Once X ends, VACUUM on the primary
# removes D's rows (D < P, the primary's horizon), and replaying that
# conflicts with every standby session still holding a snapshot with
# xmin <= D. A plain query that holds its snapshot (pg_sleep) is cancelled,
# which shows that the setup produces the conflict; require_visible is not,
# and replay does not wait for it.
# ---------------------------------------------------------------------
my $round = 0;

sub conflict_round
{
	my ($standby_sql) = @_;
	$round++;
	my $x = $primary->background_psql('postgres');
	$x->query_safe("BEGIN; INSERT INTO junk_x VALUES ($round);");
	$primary->safe_psql('postgres',
		'INSERT INTO junk SELECT g FROM generate_series(1, 500) g');
	$primary->safe_psql('postgres', 'DELETE FROM junk');
	my $ptok = $primary->safe_psql(
		'postgres', qq{
BEGIN;
INSERT INTO items VALUES (100 + $round, 'prepared');
SELECT ec_feed.row_token(t) FROM items t WHERE id = 100 + $round;
PREPARE TRANSACTION 'conflict_$round';
});
	$primary->wait_for_catchup($standby);

	my $log_offset = -s $standby->logfile;
	my $conflicts_before = $standby->safe_psql('postgres',
		"SELECT confl_snapshot FROM pg_stat_database_conflicts WHERE datname = 'postgres'"
	);
	my $session = start_psql(
		$standby,
		"SET application_name = 'round$round'",
		sprintf($standby_sql, $ptok));
	$standby->poll_query_until('postgres',
		"SELECT state = 'active' AND wait_event IN ('Extension', 'PgSleep') FROM pg_stat_activity WHERE application_name = 'round$round'"
	) or die "round $round: the standby session did not start";

	$x->query_safe('COMMIT');
	$x->quit;
	$primary->safe_psql('postgres', 'VACUUM junk');
	my $t = time;
	$primary->wait_for_catchup($standby);
	my $replay_s = time - $t;

	$primary->safe_psql('postgres', "COMMIT PREPARED 'conflict_$round'");
	my ($src, $sout, $serr) = finish_psql($session);
	my $conflicts_after = $standby->safe_psql('postgres',
		"SELECT confl_snapshot FROM pg_stat_database_conflicts WHERE datname = 'postgres'"
	);
	my $replay_waited =
	  slurp_file($standby->logfile, $log_offset) =~ /recovery still waiting/;
	return ($src, $serr, $replay_s, $conflicts_after - $conflicts_before,
		$replay_waited);
}

my ($src, $serr, $replay_s, $conflicts, $replay_waited) =
  conflict_round("SELECT pg_sleep(10), '%s'");
like($serr, qr/conflict with recovery/,
	'control: a query holding its snapshot is cancelled by the cleanup');
is($conflicts, 1, 'control: one snapshot conflict counted');
ok($replay_waited, 'control: replay logged that it waited for the conflict');
note sprintf('control: the cleanup was replayed after %.2f s', $replay_s);

($src, $serr, $replay_s, $conflicts, $replay_waited) =
  conflict_round("SELECT ec_feed.require_visible('%s', 10000)");
is($src, 0, 'require_visible waiting through the cleanup is not cancelled')
  or diag $serr;
is($conflicts, 0, 'no snapshot conflict counted');
ok(!$replay_waited, 'replay did not wait for a conflict');
ok($replay_s < 2.5,
	sprintf('the cleanup was replayed after %.2f s (conflicts wait 3 s)', $replay_s));

# the same on the primary: a waiting session publishes no xmin, so it holds
# back no vacuum; it returns when the write commits
my $ptok = $primary->safe_psql(
	'postgres', q{
BEGIN;
INSERT INTO items VALUES (200, 'prepared');
SELECT ec_feed.row_token(t) FROM items t WHERE id = 200;
PREPARE TRANSACTION 'primary_wait';
});
is($primary->safe_psql('postgres', "SELECT ec_feed.token_status('$ptok')"),
	'pending', 'primary: a prepared write is pending');
my $pwaiter = start_psql(
	$primary,
	"SET application_name = 'pwaiter'",
	"SELECT ec_feed.require_visible('$ptok', 60000)",
	"SELECT 'returned'");
$primary->poll_query_until('postgres',
	"SELECT wait_event = 'Extension' FROM pg_stat_activity WHERE application_name = 'pwaiter'"
) or die 'the primary waiter did not start waiting';
is( $primary->safe_psql(
		'postgres',
		"SELECT backend_xmin IS NULL FROM pg_stat_activity WHERE application_name = 'pwaiter'"
	),
	't',
	'primary: a waiting require_visible holds no xmin');
$primary->safe_psql('postgres', "COMMIT PREPARED 'primary_wait'");
($rc, $out, $err) = finish_psql($pwaiter);
is($rc, 0, 'primary: the waiter returned without error') or diag $err;
like($out, qr/^returned$/m, "primary: ... after the commit");

# ---------------------------------------------------------------------
# a token of another cluster: EC002
# ---------------------------------------------------------------------
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init;
$other->start;
$other->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, name text);
SELECT ec_feed.track('items');
INSERT INTO items VALUES (1, 'elsewhere');
});
my $foreign = $other->safe_psql('postgres',
	'SELECT ec_feed.row_token(t) FROM items t WHERE id = 1');
$other->stop;
for my $node ($standby, $primary)
{
	for my $call (
		"SELECT ec_feed.token_status('$foreign')",
		"SELECT ec_feed.require_visible('$foreign', 100)",
		"SELECT * FROM ec_feed.get('items', '{\"id\": 1}', '$foreign')")
	{
		($rc, $out, $err) = run_sql($node, $call);
		like($err, qr/ERROR:  EC002: token is from another database cluster/,
			$node->name . ": another cluster's token: EC002 ($call)");
	}
}

# ---------------------------------------------------------------------
# promotion: tokens from before still check correctly
# ---------------------------------------------------------------------
$primary->safe_psql('postgres', "INSERT INTO items VALUES (3, 'three')");
my $tok3 = token_of(3);
$primary->wait_for_catchup($standby);

# a write the standby never receives: cut streaming first
$standby->append_conf('postgresql.conf', "primary_conninfo = ''");
$standby->reload;
$standby->poll_query_until('postgres',
	'SELECT NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver)')
  or die 'the wal receiver did not stop';
$primary->safe_psql('postgres', "INSERT INTO items VALUES (4, 'lost')");
my $tok4 = token_of(4);
$primary->stop;

$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'the standby was not promoted';

is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok1')"),
	'visible', 'promoted: an old token is visible');
is(get_row($standby, 1, $tok1), 'found|{"id": 1, "name": "one"}',
	'promoted: found with an old token');
is(get_row($standby, 3, $tok3), 'found|{"id": 3, "name": "three"}',
	'promoted: found with the token of the last replayed write');
is(get_row($standby, 2, $tok2b), 'not_found|',
	'promoted: a deleted row is not_found');
($rc, $out, $err) = run_sql($standby, "SELECT ec_feed.token_status('$tok4')");
like($err, qr/ERROR:  EC002: token is ahead of this server's transaction counter/,
	'promoted: the token of a write lost in the failover is EC002');
$standby->safe_psql('postgres', "UPDATE items SET name = 'uno' WHERE id = 1");
my $tok1b = $standby->safe_psql('postgres',
	'SELECT ec_feed.row_token(t) FROM items t WHERE id = 1');
is($standby->safe_psql('postgres', "SELECT ec_feed.token_status('$tok1b')"),
	'visible', 'promoted: a new write is visible');
is(get_row($standby, 1, $tok1), 'found|{"id": 1, "name": "uno"}',
	'promoted: an old token finds the new version');

$standby->stop;
done_testing();
