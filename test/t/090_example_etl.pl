# examples/etl/etl.py, end to end: a source cluster with writers (inserts,
# updates, deletes, keys deleted and re-inserted, a long transaction, a
# TRUNCATE during the copy and another while following), a sink cluster,
# and the example consumer, killed with SIGKILL at random moments (20
# times) during its chunked initial copy and while it follows the feed, and
# started again each time; then stopped until it is dropped and its history
# pruned (EC001: it copies again) and the source restarted (it reconnects).
# After each part the sink table equals the source table,
# row versions included (a change applied twice or out of order would leave
# an older version or a resurrected row), and the consumer has acknowledged.
#
# Seeded writers: EC_ETL_SEED reproduces a run.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $python = '/usr/bin/python3';
plan skip_all => 'python3-psycopg is not installed (test/lib.sh installs it)'
  unless system($python, '-c', 'import psycopg') == 0;

my $etl = File::Spec->rel2abs(dirname(__FILE__) . '/../../examples/etl/etl.py');
my $seed = $ENV{EC_ETL_SEED} // 90;
note "seed $seed (EC_ETL_SEED)";

my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$source->start;
my $sink = PostgreSQL::Test::Cluster->new('sink');
$sink->init;
$sink->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$sink->start;

$source->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, val text, n int);
SELECT ec_feed.track('items');
INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series(1, 3000) g;
});
# every row version the consumer writes into the sink, in order
$sink->safe_psql(
	'postgres', q{
CREATE TABLE items (id int PRIMARY KEY, val text, n int, ec_version bigint NOT NULL);
CREATE TABLE applied (seq bigserial, id int, version bigint);
CREATE FUNCTION log_applied() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO applied (id, version) VALUES (NEW.id, NEW.ec_version); RETURN NULL; END$$;
CREATE TRIGGER log_applied AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_applied();
});

my $consumer;
my ($cout, $cerr) = ('', '');
sub start_consumer
{
	$consumer = IPC::Run::start(
		[ $python, $etl, $source->connstr('postgres'), $sink->connstr('postgres'), 'items' ],
		'<', \undef, '>>', \$cout, '2>>', \$cerr,
		init => sub { $ENV{ETL_CHUNK} = 10 });
}
sub kill_consumer
{
	$consumer->signal('KILL');
	eval { $consumer->finish };
}
# a psql session left running, each statement sent on its own
sub start_psql
{
	my $out = '';
	return IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $source->connstr('postgres'),
			map { ('-c', $_) } @_ ],
		'<', \undef, '>', \$out, '2>', \$out);
}
# the consumer's state in the sink ('' before it has created its tables)
sub sink_state
{
	my ($rc, $out) = $sink->psql('postgres',
		"SELECT copying, copy_after FROM ec_etl_state JOIN ec_etl_table USING (name) WHERE name = 'etl_items'");
	return $rc == 0 ? $out : '';
}
sub wait_for { my ($what, $cond) = @_;
	for (1 .. 600) { return pass($what) if $cond->(); usleep(100_000); }
	fail($what); }

# writers: updates, deletes, re-inserts of deleted keys, new keys; one
# transaction each, a few milliseconds apart
sub start_writers
{
	my ($seed, $iterations) = @_;
	return start_psql("SELECT setseed($seed / 1000.0)", qq{
DO \$\$
DECLARE k int;
BEGIN
	FOR i IN 1 .. $iterations LOOP
		k := 1 + floor(random() * 2100)::int;
		CASE floor(random() * 4)::int
		WHEN 0 THEN DELETE FROM items WHERE id = k;
		WHEN 1 THEN INSERT INTO items VALUES (k, 're' || i, i)
		            ON CONFLICT (id) DO UPDATE SET val = 'up' || i, n = items.n + 1;
		ELSE UPDATE items SET n = n + 1, val = 'u' || i WHERE id = k;
		END CASE;
		COMMIT;
		PERFORM pg_sleep(0.005);
	END LOOP;
END \$\$});
}

# SIGKILL the consumer at random moments (seeded) until $done says so, or
# $max times; returns how many times it was killed
srand($seed);
sub kill_repeatedly
{
	my ($done, $max) = @_;
	my $kills = 0;
	while ($kills < $max && !$done->())
	{
		usleep(300_000 + int(rand(700_000)));
		kill_consumer();
		$kills++;
		note 'killed at: ' . sink_state();
		start_consumer();
	}
	return $kills;
}

# the chunked copy, with writers, a long transaction (writes early, commits
# after the copy has passed its keys) and a TRUNCATE in the middle
my $writers = start_writers($seed, 400);
my $long = start_psql('BEGIN', 'UPDATE items SET val = $$long$$ WHERE id BETWEEN 10 AND 20',
	'DELETE FROM items WHERE id = 30', 'INSERT INTO items VALUES (5000, $$long$$, 0)',
	'SELECT pg_sleep(4)', 'COMMIT');
start_consumer();
wait_for('the consumer is copying', sub { sink_state() =~ /^t\|\{/ });
my $kills = kill_repeatedly(sub { 0 }, 2);
$source->safe_psql('postgres', q{
SET ec_feed.allow_truncate = on;
BEGIN;
INSERT INTO items VALUES (6000, 'gone with the truncate', 0);
TRUNCATE items;
INSERT INTO items SELECT g, 'after' || g, 0 FROM generate_series(1, 3000) g;
COMMIT;
});
$kills += kill_repeatedly(sub { sink_state() !~ /^t/ }, 10);
ok($writers->finish, 'writers done');
ok($long->finish, 'long transaction committed');
wait_for('the copy is done, the consumer follows', sub { sink_state() eq 'f|' });

# following the feed: writers, a key deleted and re-inserted, a TRUNCATE
$writers = start_writers($seed + 1, 300);
$source->safe_psql('postgres', q{
DELETE FROM items WHERE id = 100;
INSERT INTO items VALUES (100, 'back', 1);
UPDATE items SET n = n + 10 WHERE id < 50;
});
$kills += kill_repeatedly(sub { 0 }, 9);
$source->safe_psql('postgres', q{
SET ec_feed.allow_truncate = on;
BEGIN;
INSERT INTO items VALUES (6000, 'gone with the truncate', 0);
TRUNCATE items;
INSERT INTO items SELECT g, 'after' || g, 0 FROM generate_series(1, 300) g;
COMMIT;
DELETE FROM items WHERE id = 7;
INSERT INTO items VALUES (7, 'again', 2);
});
$kills += kill_repeatedly(sub { 0 }, 9);
ok($writers->finish, 'writers done');
$source->safe_psql('postgres', 'UPDATE items SET n = n + 1 WHERE id % 3 = 0');
cmp_ok($kills, ">=", 20, "the consumer was killed $kills times");

my $q = q{SELECT count(*) || ':' || coalesce(md5(string_agg(format('%s|%s|%s|%s', id, val, n, ec_version), ',' ORDER BY id)), '')
	FROM items};
# the sink equals the source; per key, a version applied is newer than every
# one applied before it (nothing goes back, nothing is applied twice)
sub check_sink
{
	my ($when) = @_;
	my $want = $source->safe_psql('postgres', $q);
	wait_for("$when: the sink equals the source (rows and versions)",
		sub { $sink->safe_psql('postgres', $q) eq $want });
	is($sink->safe_psql('postgres', $q), $want, "$when: sink $want");
	is($sink->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT version <= max(version) OVER (PARTITION BY id ORDER BY seq
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS back
                      FROM applied) a WHERE back}),
		'0', "$when: per key, every version applied is newer than the ones before it");
	note "$when: versions applied: " . $sink->safe_psql('postgres', 'SELECT count(*) FROM applied');
	is($sink->safe_psql('postgres',
		'SELECT count(*) FROM ec_etl_tombstone t JOIN items i ON t.tab = $$items$$ AND t.key = jsonb_build_object($$id$$, i.id)'),
		'0', "$when: no tombstone for a key the sink has");
}
check_sink('after the kills');

# the source knows how far the consumer got: its acknowledged position is the
# cursor the sink stored
my $stored = $sink->safe_psql('postgres', "SELECT cursor FROM ec_etl_state WHERE name = 'etl_items'");
wait_for('the source has the ack of the stored cursor', sub {
	$source->safe_psql('postgres',
		"SELECT ec_feed._cursor_position(cursor) = ec_feed._cursor_position('$stored')"
		  . " FROM ec_feed.consumers WHERE name = 'etl_items'") eq 't' });

# EC001: the consumer is stopped for longer than retention_max, dropped, and
# the history it needs pruned; started again, it copies again (keys deleted
# meanwhile are removed from the sink by the chunks that cover them)
kill_consumer();
$source->safe_psql('postgres', q{
SET ec_feed.retention_min = 0;
SET ec_feed.segment_rows = 1;
SELECT ec_feed.prune();
DELETE FROM items WHERE id % 7 = 0;
UPDATE items SET n = n + 100 WHERE id % 5 = 0;
INSERT INTO items SELECT g, 'new', 0 FROM generate_series(3001, 3050) g;
SELECT ec_feed.prune();
SELECT ec_feed.prune();
SET ec_feed.retention_max = '1s';
SELECT pg_sleep(1.2);
UPDATE items SET n = n + 1 WHERE id = 1;
SELECT ec_feed.prune();
UPDATE items SET n = n + 1 WHERE id = 2;
SELECT ec_feed.prune();
});
is($source->safe_psql('postgres', "SELECT state FROM ec_feed.consumers WHERE name = 'etl_items'"),
	'dropped', 'the stopped consumer was dropped');
my ($rc, $out, $err) = $source->psql('postgres', "SELECT count(*) FROM ec_feed.read('$stored')");
like($err, qr/cursor is older than the retained history/, "its cursor's history is gone (EC001)");
start_consumer();
check_sink('after EC001 and a new copy');

# the source restarts: the consumer connects again
$source->restart;
$source->safe_psql('postgres', 'UPDATE items SET n = n + 1 WHERE id < 100');
check_sink('after a restart of the source');

kill_consumer();    # (its output is collected now)
like($cerr, qr/cursor is older than the retained history: copying again/,
	'the consumer copied again after EC001');
like($cerr, qr/reconnecting/, 'the consumer reconnected after the restart');
unlike($cerr, qr/Traceback/, 'the consumer raised no error') or diag $cerr;

done_testing();
