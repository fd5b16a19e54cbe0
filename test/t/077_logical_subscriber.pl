# Tables tracked on a logical replication subscriber: the apply worker runs
# with session_replication_role = replica, and every replicated change,
# TRUNCATE included, reaches the subscriber's feed. A consumer reading that
# feed ends with a copy equal to the subscriber's tables: after the initial
# copy, inserts, updates, deletes, a TRUNCATE of one table, of two at once,
# of a partitioned table (published through its root), and of a partition
# alone. The subscription keeps running (a replicated TRUNCATE is never
# refused). Locally the guard still refuses; a superuser session in replica
# role is recorded like the apply worker. Also: an update from 0.2.0 makes
# the guards of tables tracked before fire always, without moving their
# history_since, and so does a partition created later.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $json = JSON::PP->new->canonical;

my $pub = PostgreSQL::Test::Cluster->new('lr_publisher');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('lr_subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$sub->start;

my $tables = q{
CREATE TABLE lr_a (id int PRIMARY KEY, v text);
CREATE TABLE lr_b (id int PRIMARY KEY, v text);
CREATE TABLE lr_p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE lr_p1 PARTITION OF lr_p FOR VALUES FROM (0) TO (100);
CREATE TABLE lr_p2 PARTITION OF lr_p FOR VALUES FROM (100) TO (200);
CREATE TABLE lr_q (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE lr_q1 PARTITION OF lr_q FOR VALUES FROM (0) TO (100);
CREATE TABLE lr_q2 PARTITION OF lr_q FOR VALUES FROM (100) TO (200);
};
$pub->safe_psql('postgres', $tables . q{
INSERT INTO lr_a SELECT g, 'a' || g FROM generate_series(1, 5) g;
INSERT INTO lr_b SELECT g, 'b' || g FROM generate_series(1, 3) g;
INSERT INTO lr_p SELECT g, 'p' || g FROM generate_series(95, 105) g;
CREATE PUBLICATION lr_pub FOR TABLE lr_a, lr_b, lr_p WITH (publish_via_partition_root = true);
-- published partition by partition: a TRUNCATE of one partition alone is
-- replicated (through the root it is not: PostgreSQL sends only the root's)
CREATE PUBLICATION lr_pub2 FOR TABLE lr_q;
});
# the subscriber's copies are tracked before the first row arrives
$sub->safe_psql('postgres', $tables . q{
CREATE EXTENSION ec_feed;
SELECT ec_feed.track('lr_a');
SELECT ec_feed.track('lr_b');
SELECT ec_feed.track('lr_p');
SELECT ec_feed.track('lr_q');
});
my $cursor = $sub->safe_psql('postgres',
	"SELECT cursor FROM ec_feed.read(NULL, 10) WHERE op = 'progress'");
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION lr_sub CONNECTION '$connstr' PUBLICATION lr_pub, lr_pub2");
ok($sub->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')"),
	'initial copy done');
$pub->wait_for_catchup('lr_sub');

# The consumer: its copy of the three tables, kept by key, from the feed.
my %copy;
my %ops;
sub consume
{
	for (;;)
	{
		my $out = $sub->safe_psql('postgres',
			"SELECT op, rel, coalesce(key::text, ''), coalesce(data::text, ''), cursor "
			  . "FROM ec_feed.read('$cursor', 100)");
		my $rows = 0;
		for my $line (split /\n/, $out)
		{
			my ($op, $rel, $key, $data, $c) = split /\|/, $line, 5;
			if ($op eq 'progress') { $cursor = $c; next; }
			$rows++;
			$ops{$op}++;
			if ($op eq 'insert' || $op eq 'update')
			{
				$copy{$rel}{ $json->decode($key)->{id} } = $json->decode($data)->{v};
			}
			elsif ($op eq 'delete')
			{
				delete $copy{$rel}{ $json->decode($key)->{id} };
			}
			elsif ($op eq 'truncate')
			{
				$copy{$rel} = {};
			}
			else
			{
				fail("unexpected op $op of $rel");
			}
		}
		return if $rows == 0;
	}
}

# the consumer's copy equals the subscriber's tables (and the publisher's)
sub check_copy
{
	my ($what) = @_;
	consume();
	my $mine = join("\n",
		map { my $rel = $_; map { "$rel|$_|$copy{$rel}{$_}" } sort { $a <=> $b } keys %{ $copy{$rel} } }
		  grep { %{ $copy{$_} // {} } } qw(lr_a lr_b lr_p lr_q));
	my $q = q{
SELECT string_agg(r, E'\n' ORDER BY t, id) FROM (
	SELECT 'lr_a' AS t, id, 'lr_a|' || id || '|' || v AS r FROM lr_a
	UNION ALL SELECT 'lr_b', id, 'lr_b|' || id || '|' || v FROM lr_b
	UNION ALL SELECT 'lr_p', id, 'lr_p|' || id || '|' || v FROM lr_p
	UNION ALL SELECT 'lr_q', id, 'lr_q|' || id || '|' || v FROM lr_q) x};
	my $subs = $sub->safe_psql('postgres', $q);
	is($subs, $pub->safe_psql('postgres', $q), "$what: the subscriber has the publisher's rows");
	is($mine, $subs, "$what: the consumer's copy equals the subscriber's tables");
}

# the subscription still applies: no error, a worker, a later insert arrives
sub check_running
{
	my ($what, $id) = @_;
	$pub->safe_psql('postgres', "INSERT INTO lr_a VALUES ($id, 'late$id')");
	$pub->wait_for_catchup('lr_sub');
	is($sub->safe_psql('postgres', "SELECT v FROM lr_a WHERE id = $id"), "late$id",
		"$what: a later insert is applied");
	is($sub->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'lr_sub' AND pid IS NOT NULL"),
		'1', "$what: the apply worker runs");
	is($sub->safe_psql('postgres',
		"SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'lr_sub'"),
		'0', "$what: the apply worker met no error");
}

check_copy('initial copy');
is($ops{insert}, 11 + 5 + 3, 'the initial copy arrived as inserts');

$pub->safe_psql('postgres', q{
INSERT INTO lr_a VALUES (6, 'a6');
UPDATE lr_a SET v = 'a2x' WHERE id = 2;
DELETE FROM lr_a WHERE id = 3;
UPDATE lr_p SET v = 'p99x' WHERE id = 99;
DELETE FROM lr_p WHERE id = 100;
INSERT INTO lr_b VALUES (4, 'b4');
});
$pub->wait_for_catchup('lr_sub');
check_copy('inserts, updates, deletes');

# TRUNCATE of one table, then rows again
$pub->safe_psql('postgres', q{
TRUNCATE lr_a;
INSERT INTO lr_a VALUES (1, 'again1');
});
$pub->wait_for_catchup('lr_sub');
check_copy('TRUNCATE of one table');
is($ops{truncate}, 1, 'the TRUNCATE is one truncate change');
check_running('after TRUNCATE of one table', 50);

# TRUNCATE of two tables in one statement
$pub->safe_psql('postgres', 'TRUNCATE lr_a, lr_b');
$pub->wait_for_catchup('lr_sub');
check_copy('TRUNCATE of two tables');
is($ops{truncate}, 3, 'one truncate change per table');
is($sub->safe_psql('postgres', q{
	SELECT string_agg(rel::text, ',' ORDER BY rel::text) FROM ec_feed.read(NULL, 1000)
	WHERE op = 'truncate'}), 'lr_a,lr_a,lr_b', 'truncate changes name the tables');
check_running('after TRUNCATE of two tables', 51);

# TRUNCATE of the partitioned table (published through its root): one
# change for the root
$pub->safe_psql('postgres', 'TRUNCATE lr_p');
$pub->wait_for_catchup('lr_sub');
check_copy('TRUNCATE of a partitioned table');
is($ops{truncate}, 4, 'one truncate change for the partitioned table');
is($sub->safe_psql('postgres',
	"SELECT count(*) FROM ec_feed.read(NULL, 1000) WHERE rel::text ~ '^lr_[pq][0-9]'"),
	'0', 'no change names a partition');

# TRUNCATE of a partition alone: one delete per row (keyed by the root)
$pub->safe_psql('postgres', q{INSERT INTO lr_q VALUES (1, 'q1'), (2, 'q2'), (150, 'q150')});
$pub->wait_for_catchup('lr_sub');
check_copy('rows in the partitions again');
my $deletes = $ops{delete};
$pub->safe_psql('postgres', 'TRUNCATE lr_q1');
$pub->wait_for_catchup('lr_sub');
check_copy('TRUNCATE of a partition');
is($ops{delete} - $deletes, 2, "the partition's rows leave as deletes");
# and the whole tree, published partition by partition
$pub->safe_psql('postgres', q{INSERT INTO lr_q VALUES (3, 'q3')});
$pub->safe_psql('postgres', 'TRUNCATE lr_q');
$pub->wait_for_catchup('lr_sub');
check_copy('TRUNCATE of a partitioned table published by partition');
check_running('after TRUNCATE of partitions', 52);
check_copy('at the end');

# Locally (origin role) the guard refuses as on any server
my $err = '';
my $rc = $sub->psql('postgres', 'TRUNCATE lr_b', stderr => \$err);
isnt($rc, 0, 'a local TRUNCATE is refused');
like($err, qr/cannot truncate table "lr_b" tracked by ec_feed/, 'refused by the guard');
# a superuser session in replica role: recorded, as the apply worker's
$sub->safe_psql('postgres', q{
SET session_replication_role = replica;
TRUNCATE lr_b;
});
consume();
is(scalar(keys %{ $copy{lr_b} }), 0, 'a TRUNCATE in replica role reaches the consumer');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM lr_b'), '0', 'and the table is empty');

# The guards: all fire always, on the tables and on every partition
is($sub->safe_psql('postgres', q{
	SELECT string_agg(tgrelid::regclass::text || '=' || tgenabled::text, ',' ORDER BY tgrelid::regclass::text)
	FROM pg_trigger WHERE tgname = 'zz_ec_feed_truncate_guard'}),
	'lr_a=A,lr_b=A,lr_p=A,lr_p1=A,lr_p2=A,lr_q=A,lr_q1=A,lr_q2=A', 'every guard fires always');

# An update from 0.2.0: guards of tables tracked before fire always
# afterwards; history_since stays; a partition created later too.
$sub->safe_psql('postgres', 'CREATE DATABASE lr_upgrade');
$sub->safe_psql('lr_upgrade', q{
CREATE EXTENSION ec_feed VERSION '0.2.0';
CREATE TABLE up_t (id int PRIMARY KEY, v text);
SELECT ec_feed.track('up_t');
});
is($sub->safe_psql('lr_upgrade',
	"SELECT tgenabled FROM pg_trigger WHERE tgname = 'zz_ec_feed_truncate_guard'"),
	'O', '0.2.0: the guard fires on origin only');
my $since = $sub->safe_psql('lr_upgrade', 'SELECT history_since FROM ec_feed.tracked_rel');
$sub->safe_psql('lr_upgrade', q{
ALTER EXTENSION ec_feed UPDATE;
CREATE TABLE up_p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE up_p1 PARTITION OF up_p FOR VALUES FROM (0) TO (10);
SELECT ec_feed.track('up_p');
});
my $since_p = $sub->safe_psql('lr_upgrade',
	"SELECT history_since FROM ec_feed.tracked_rel WHERE relid = 'up_p'::regclass");
$sub->safe_psql('lr_upgrade', 'CREATE TABLE up_p2 PARTITION OF up_p FOR VALUES FROM (10) TO (20)');
is($sub->safe_psql('lr_upgrade', q{
	SELECT string_agg(tgrelid::regclass::text || '=' || tgenabled::text, ',' ORDER BY tgrelid::regclass::text)
	FROM pg_trigger WHERE tgname = 'zz_ec_feed_truncate_guard'}),
	'up_p=A,up_p1=A,up_p2=A,up_t=A', 'after the update every guard fires always');
is($sub->safe_psql('lr_upgrade',
	"SELECT history_since FROM ec_feed.tracked_rel WHERE relid = 'up_t'::regclass"),
	$since, 'the update left history_since alone');
is($sub->safe_psql('lr_upgrade',
	"SELECT history_since FROM ec_feed.tracked_rel WHERE relid = 'up_p'::regclass"),
	$since_p, 'a new partition left history_since alone');
# an attached partition's guard too (the ALTER TABLE moves history_since anyway)
$sub->safe_psql('lr_upgrade', q{
CREATE TABLE up_p3 (id int PRIMARY KEY, v text, ec_version bigint NOT NULL, ec_xid xid8 NOT NULL);
ALTER TABLE up_p ATTACH PARTITION up_p3 FOR VALUES FROM (20) TO (30);
});
is($sub->safe_psql('lr_upgrade',
	"SELECT tgenabled FROM pg_trigger WHERE tgname = 'zz_ec_feed_truncate_guard' AND tgrelid = 'up_p3'::regclass"),
	'A', "an attached partition's guard fires always");
is($sub->safe_psql('lr_upgrade',
	"SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'ec_feed_schema_changed'"),
	'O', 'the schema-change event trigger is enabled again');

$sub->stop;
$pub->stop;
done_testing();
