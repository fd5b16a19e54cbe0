# examples/etl/etl.py with two tables and one consumer: items (int key) and
# lines (two-column key), copied in chunks and followed with one cursor,
# with seeded writers on both, a TRUNCATE of lines, and SIGKILLs at seeded
# random moments during the copy and while following. Then the tables leave
# the feed: `untrack('lines')` (op untrack: the consumer drops its copy in
# the sink and follows items on; its read with rels naming lines fails
# with 55000 until it has read past the untrack), and `DROP TABLE items`
# (42P01, the feed names the table by OID; the consumer drops its copy and,
# with no table left, unregisters and exits). A second consumer: a table
# untracked with its columns before its chunks were read. After each part
# the sink equals the source, row versions included, and per key every
# version applied is newer than the ones before it (nothing lost, nothing
# applied twice).
#
# Seeded: EC_ETL_SEED reproduces a run.
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
my $seed = $ENV{EC_ETL_SEED} // 93;
note "seed $seed (EC_ETL_SEED)";
srand($seed);

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
CREATE TABLE lines (order_id int, line int, qty int, PRIMARY KEY (order_id, line));
SELECT ec_feed.track('items');
SELECT ec_feed.track('lines');
INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series(1, 1000) g;
INSERT INTO lines SELECT o, l, 1 FROM generate_series(1, 100) o, generate_series(1, 10) l;
});
# every row version the consumer writes into the sink, in order, per table
$sink->safe_psql(
	'postgres', q{
CREATE TABLE items (id int PRIMARY KEY, val text, n int, ec_version bigint NOT NULL);
CREATE TABLE lines (order_id int, line int, qty int, ec_version bigint NOT NULL,
	PRIMARY KEY (order_id, line));
CREATE TABLE applied (seq bigserial, tab text, key jsonb, version bigint);
CREATE FUNCTION log_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO applied (tab, key, version)
	SELECT TG_TABLE_NAME, jsonb_object_agg(k, to_jsonb(NEW) -> k), NEW.ec_version FROM unnest(TG_ARGV) k;
	RETURN NULL;
END $$;
CREATE TRIGGER log_applied AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_applied('id');
CREATE TRIGGER log_applied AFTER INSERT OR UPDATE ON lines FOR EACH ROW EXECUTE FUNCTION log_applied('order_id', 'line');
});

my $consumer;
my ($cout, $cerr) = ('', '');
sub start_consumer
{
	$consumer = IPC::Run::start(
		[ $python, $etl, $source->connstr('postgres'), $sink->connstr('postgres'), 'items,lines' ],
		'<', \undef, '>>', \$cout, '2>>', \$cerr,
		init => sub { $ENV{ETL_CHUNK} = 10 });
}
sub kill_consumer
{
	$consumer->signal('KILL');
	eval { $consumer->finish };
}
sub start_psql
{
	my $out = '';
	return IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $source->connstr('postgres'),
			map { ('-c', $_) } @_ ],
		'<', \undef, '>', \$out, '2>', \$out);
}
sub sink_value
{
	my ($rc, $out) = $sink->psql('postgres', $_[0]);
	return $rc == 0 ? $out : '';
}
sub copying { sink_value("SELECT copying FROM ec_etl_state WHERE name = 'etl_items_lines'") }
sub wait_for { my ($what, $cond) = @_;
	for (1 .. 600) { return pass($what) if $cond->(); usleep(100_000); }
	fail($what); }

# writers on both tables: updates, deletes, re-inserts, new keys; one
# transaction each, a few milliseconds apart ($tables: which ones)
sub start_writers
{
	my ($seed, $iterations, $tables) = @_;
	my $lines = $tables =~ /lines/ ? 'true' : 'false';
	return start_psql("SELECT setseed($seed / 1000.0)", qq{
DO \$\$
DECLARE k int; o int; l int;
BEGIN
	FOR i IN 1 .. $iterations LOOP
		k := 1 + floor(random() * 1200)::int;
		o := 1 + floor(random() * 120)::int;
		l := 1 + floor(random() * 12)::int;
		CASE floor(random() * 4)::int
		WHEN 0 THEN DELETE FROM items WHERE id = k;
		            IF $lines THEN DELETE FROM lines WHERE order_id = o AND line = l; END IF;
		WHEN 1 THEN INSERT INTO items VALUES (k, 're' || i, i)
		            ON CONFLICT (id) DO UPDATE SET val = 'up' || i, n = items.n + 1;
		            IF $lines THEN INSERT INTO lines VALUES (o, l, i)
		                ON CONFLICT (order_id, line) DO UPDATE SET qty = lines.qty + 1; END IF;
		ELSE UPDATE items SET n = n + 1, val = 'u' || i WHERE id = k;
		     IF $lines THEN UPDATE lines SET qty = qty + 1 WHERE order_id = o; END IF;
		END CASE;
		COMMIT;
		PERFORM pg_sleep(0.005);
	END LOOP;
END \$\$});
}
sub kill_repeatedly
{
	my ($done, $max) = @_;
	my $kills = 0;
	while ($kills < $max && !$done->())
	{
		usleep(300_000 + int(rand(700_000)));
		kill_consumer();
		$kills++;
		start_consumer();
	}
	return $kills;
}

my %q = (
	items => q{SELECT count(*) || ':' || coalesce(md5(string_agg(format('%s|%s|%s|%s', id, val, n, ec_version), ',' ORDER BY id)), '') FROM items},
	lines => q{SELECT count(*) || ':' || coalesce(md5(string_agg(format('%s|%s|%s|%s', order_id, line, qty, ec_version), ',' ORDER BY order_id, line)), '') FROM lines});
sub check_sink
{
	my ($when, @tables) = @_;
	for my $t (@tables)
	{
		my $want = $source->safe_psql('postgres', $q{$t});
		wait_for("$when: the sink's $t equals the source's (rows and versions)",
			sub { sink_value($q{$t}) eq $want });
		is(sink_value($q{$t}), $want, "$when: $t $want");
	}
	is($sink->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT version <= max(version) OVER (PARTITION BY tab, key ORDER BY seq
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS back
                      FROM applied) a WHERE back}),
		'0', "$when: per key, every version applied is newer than the ones before it");
}

# the chunked copy of both tables, with writers on both
my $writers = start_writers($seed, 300, 'items lines');
start_consumer();
wait_for('the consumer is copying', sub { copying() eq 't' });
my $kills = kill_repeatedly(sub { copying() ne 't' }, 4);
ok($writers->finish, 'writers done');
wait_for('the copy is done, the consumer follows', sub { copying() eq 'f' });

# following: writers, a TRUNCATE of lines
$writers = start_writers($seed + 1, 200, 'items lines');
$kills += kill_repeatedly(sub { 0 }, 2);
$source->safe_psql('postgres', q{
SET ec_feed.allow_truncate = on;
BEGIN;
INSERT INTO lines VALUES (500, 1, 0);
TRUNCATE lines;
INSERT INTO lines SELECT o, l, 2 FROM generate_series(1, 50) o, generate_series(1, 5) l;
COMMIT;
});
$kills += kill_repeatedly(sub { 0 }, 2);
ok($writers->finish, 'writers done');
note "killed $kills times";
check_sink('after the kills', 'items', 'lines');

# untrack lines while items is written: the sink drops its lines, follows items on
$writers = start_writers($seed + 2, 200, 'items');
$source->safe_psql('postgres', q{
UPDATE lines SET qty = qty + 100 WHERE order_id < 10;
SELECT ec_feed.untrack('lines');
UPDATE lines SET qty = 0;
});
wait_for('untrack: the sink dropped its copy of lines',
	sub { sink_value("SELECT to_regclass('lines') IS NULL") eq 't' });
is(sink_value("SELECT gone FROM ec_etl_table WHERE tab = 'lines'"), 't', 'lines is no longer followed');
kill_repeatedly(sub { 0 }, 1);
ok($writers->finish, 'writers done');
check_sink('after the untrack of lines', 'items');

# the same consumer for another set of tables: refused
my ($rc, $out, $err) = ('', '', '');
IPC::Run::run([ $python, $etl, $source->connstr('postgres'), $sink->connstr('postgres'), 'items',
		'etl_items_lines' ], '<', \undef, '>', \$out, '2>', \$err);
like($err, qr/consumer etl_items_lines copies items, lines, not items/,
	'the consumer refuses another set of tables');

# DROP TABLE items: the sink drops its copy; no table left, the consumer exits
$source->safe_psql('postgres', q{
UPDATE items SET n = n + 1 WHERE id < 100;
DROP TABLE items;
});
my $exited = 0;
for (1 .. 600)
{
	eval { $consumer->pump_nb };    # collects its output, notices its exit
	if (!$consumer->pumpable) { $exited = 1; last }
	usleep(100_000);
}
ok($exited, 'with no table left, the consumer exits');
ok($consumer->finish, '  ... with status 0');
is(sink_value("SELECT to_regclass('items') IS NULL"), 't', 'DROP TABLE: the sink dropped its copy of items');
is(sink_value('SELECT count(*) FROM ec_etl_tombstone'), '0', 'no tombstones left');
like($cerr, qr/lines left the feed: dropped in the sink/, 'the consumer reported the untrack');
like($cerr, qr/no table left to follow: etl_items_lines unregistered/, 'the consumer reported why it stops');
is($source->safe_psql('postgres', "SELECT count(*) FROM ec_feed.consumers WHERE name = 'etl_items_lines'"),
	'0', '  ... and unregistered in the source');

# a table untracked (with its columns) during the initial copy of another
# consumer: its chunks stop, its untrack row drops the copy
$source->safe_psql('postgres', q{
CREATE TABLE a2 (id int PRIMARY KEY, v int);
CREATE TABLE b2 (id int PRIMARY KEY, v int);
SELECT ec_feed.track('a2');
SELECT ec_feed.track('b2');
INSERT INTO a2 SELECT g, g FROM generate_series(1, 3000) g;
INSERT INTO b2 SELECT g, g FROM generate_series(1, 100) g;
});
$sink->safe_psql('postgres', q{
CREATE TABLE a2 (id int PRIMARY KEY, v int, ec_version bigint NOT NULL);
CREATE TABLE b2 (id int PRIMARY KEY, v int, ec_version bigint NOT NULL);
});
$consumer = IPC::Run::start(
	[ $python, $etl, $source->connstr('postgres'), $sink->connstr('postgres'), 'a2,b2' ],
	'<', \undef, '>>', \$cout, '2>>', \$cerr, init => sub { $ENV{ETL_CHUNK} = 10 });
wait_for('the second consumer copies a2', sub {
	sink_value("SELECT copy_after IS NOT NULL FROM ec_etl_table WHERE tab = 'a2'") eq 't' });
$source->safe_psql('postgres', q{
UPDATE b2 SET v = 0 WHERE id < 10;
SELECT ec_feed.untrack('b2', drop_columns => true);
});
is(sink_value("SELECT copied FROM ec_etl_table WHERE tab = 'b2'"), 'f', '  ... b2 not copied yet when it is untracked');
wait_for('untrack during the copy: the sink dropped its copy of b2',
	sub { sink_value("SELECT to_regclass('b2') IS NULL") eq 't' });
$q{a2} = q{SELECT count(*) || ':' || md5(string_agg(format('%s|%s|%s', id, v, ec_version), ',' ORDER BY id)) FROM a2};
check_sink('after the untrack during the copy', 'a2');
kill_consumer();
unlike($cerr, qr/Traceback/, 'the consumers raised no error') or diag $cerr;

done_testing();
