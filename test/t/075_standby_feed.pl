# The change feed on a hot standby (src/publish.c), with a real streaming
# standby: a consumer on the standby follows writers on the primary (a long
# transaction, a prepared one, rolled-back ones) and its copy equals the
# table, with no change lost or repeated and every key's versions in order;
# with replay paused the standby's feed stops at a whole mark and resumes;
# a consumer that moves between primary and standby mid-stream, also onto a
# standby that lags behind its cursor, and across a promotion, gets every
# change exactly once; cursor_now() and EC001 on a standby.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('feed_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', q{
max_prepared_transactions = 10
ec_feed.publish_interval = 0
lc_messages = 'C'
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, v int);
SELECT ec_feed.track('items');
});
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('feed_standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

# Every change after cursor on node, in pages of $page: list of
# [op, id, version, v], and the last cursor.
sub read_all
{
	my ($node, $cursor, $page, $max_pages) = @_;
	my @rows;
	$max_pages //= 1000;
	for (1 .. $max_pages)
	{
		my $arg = defined $cursor ? "'$cursor'" : 'NULL';
		my $out = $node->safe_psql('postgres',
			"SELECT op, coalesce(key->>'id', ''), coalesce(version::text, ''), coalesce(data->>'v', ''), cursor "
			  . "FROM ec_feed.read($arg, $page)");
		my $n = 0;
		for my $line (split /\n/, $out)
		{
			my ($op, $id, $version, $v, $c) = split /\|/, $line, 5;
			$cursor = $c;
			next if $op eq 'progress';
			push @rows, [ $op, $id, $version, $v ];
			$n++;
		}
		last if $n < $page;
	}
	return (\@rows, $cursor);
}

# A consumer's copy: applies rows, counts repeats and per-key inversions.
my %copy;
my %last_version;
my %seen_version;
my ($repeats, $inversions) = (0, 0);

sub apply_rows
{
	my ($rows) = @_;
	for my $r (@$rows)
	{
		my ($op, $id, $version, $v) = @$r;
		$repeats++ if $seen_version{$version}++;
		$inversions++ if defined $last_version{$id} && $version <= $last_version{$id};
		$last_version{$id} = $version;
		if ($op eq 'delete') { delete $copy{$id}; }
		else { $copy{$id} = $v; }
	}
}

sub table_of
{
	my $out = $primary->safe_psql('postgres', 'SELECT id, v FROM items ORDER BY id');
	return join(',', map { s/\|/=/r } split /\n/, $out);
}

sub copy_of
{
	return join(',', map { "$_=$copy{$_}" } sort { $a <=> $b } keys %copy);
}

sub publish_and_catch_up
{
	$primary->safe_psql('postgres', 'SELECT ec_feed.publish_mark()');
	$primary->wait_for_catchup($standby);
}

# before any published mark: the standby's feed is empty, not an error
my ($rows, $cursor) = read_all($standby, undef, 100);
is(scalar(@$rows), 0, 'no published mark yet: the standby feed is empty');
my ($rc, $out, $err) = $standby->psql('postgres', 'SELECT ec_feed.cursor_now()');
like($err, qr/no mark published by the primary is visible/, 'cursor_now on a standby needs a published mark');

$primary->safe_psql('postgres', 'INSERT INTO items SELECT g, 0 FROM generate_series(1, 50) g');
publish_and_catch_up();
($rows, $cursor) = read_all($standby, undef, 7);
apply_rows($rows);
is(copy_of(), table_of(), 'the standby feed from the start equals the table');

# writers: a long transaction, a prepared one, rolled-back ones, many small ones
my $long = $primary->background_psql('postgres');
$long->query_safe('BEGIN');
$long->query_safe('UPDATE items SET v = v + 1000 WHERE id = 1');
$primary->safe_psql('postgres', q{
BEGIN; UPDATE items SET v = v + 1 WHERE id = 2; INSERT INTO items VALUES (51, 51); PREPARE TRANSACTION 'p1';
});
for my $i (1 .. 40)
{
	$primary->safe_psql('postgres', "UPDATE items SET v = v + 1 WHERE id = " . (3 + $i % 20));
	$primary->safe_psql('postgres', "BEGIN; UPDATE items SET v = -1 WHERE id = 3; ROLLBACK;") if $i % 7 == 0;
	$primary->safe_psql('postgres', "DELETE FROM items WHERE id = " . (30 + $i % 10)) if $i % 9 == 0;
	$primary->safe_psql('postgres', "INSERT INTO items VALUES (" . (100 + $i) . ", $i)");
	if ($i % 10 == 0)
	{
		publish_and_catch_up();
		my ($r, $c) = read_all($standby, $cursor, 5);
		apply_rows($r);
		$cursor = $c;
	}
}
$long->query_safe('COMMIT');
$long->quit;
$primary->safe_psql('postgres', "COMMIT PREPARED 'p1'");
publish_and_catch_up();
($rows, $cursor) = read_all($standby, $cursor, 5);
apply_rows($rows);
is(copy_of(), table_of(), 'the consumer on the standby: its copy equals the table');
is($repeats, 0, 'no change twice');
is($inversions, 0, "every key's versions in order");

# replay paused: nothing new, then everything once replay resumes
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id <= 10; INSERT INTO items VALUES (200, 200)');
$primary->safe_psql('postgres', 'SELECT ec_feed.publish_mark()');
($rows, my $paused_cursor) = read_all($standby, $cursor, 5);
is(scalar(@$rows), 0, 'replay paused: the standby feed stops at the last mark it replayed');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby);
($rows, $cursor) = read_all($standby, $paused_cursor, 5);
is(scalar(@$rows), 11, 'replay resumed: the 11 changes, whole');
apply_rows($rows);
is(copy_of(), table_of(), 'and the copy equals the table');

# moving between primary and standby mid-stream, in pages of 3: every page
# from the other server than the one before
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id BETWEEN 11 AND 40');
publish_and_catch_up();
my $turn = 0;
for (1 .. 20)
{
	my ($r, $c) = read_all($turn++ % 2 ? $standby : $primary, $cursor, 3, 1);
	apply_rows($r);
	$cursor = $c;
}
($rows, $cursor) = read_all($primary, $cursor, 3);
apply_rows($rows);
is(copy_of(), table_of(), 'switching servers every page: the copy equals the table');
is($repeats + $inversions, 0, 'and nothing repeated or out of order');

# a cursor from the primary that is ahead of a lagging standby: the standby
# returns nothing and keeps the cursor until it has replayed its mark
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id BETWEEN 41 AND 50');
($rows, my $ahead) = read_all($primary, $cursor, 4, 1);	# mid-delta: pending
apply_rows($rows);
my ($r2, $c2) = read_all($standby, $ahead, 4, 1);
is(scalar(@$r2), 0, 'a lagging standby returns nothing for a cursor ahead of it');
is($c2, $ahead, 'and hands the cursor back unchanged');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
publish_and_catch_up();
($rows, $cursor) = read_all($standby, $ahead, 4);
apply_rows($rows);
is(copy_of(), table_of(), 'after catching up it continues: the copy equals the table');
is($repeats + $inversions, 0, 'nothing repeated or out of order');

# cursor_now on the standby is a published mark: the feed after it has the
# changes after that mark
my $standby_cursor = $standby->safe_psql('postgres', 'SELECT ec_feed.cursor_now()');
$primary->safe_psql('postgres', 'INSERT INTO items VALUES (300, 300)');
publish_and_catch_up();
($rows) = read_all($standby, $standby_cursor, 100);
is(join(',', map { "$_->[0]:$_->[1]" } @$rows), 'insert:300', 'cursor_now on a standby, then the feed');

# promotion: the consumer continues on the promoted standby
$primary->safe_psql('postgres', 'UPDATE items SET v = v + 1 WHERE id <= 5');
publish_and_catch_up();
($rows, $cursor) = read_all($standby, $cursor, 2, 2);
apply_rows($rows);
$primary->stop;
$standby->promote;
$standby->safe_psql('postgres', 'INSERT INTO items VALUES (400, 400); UPDATE items SET v = 0 WHERE id = 400');
($rows, $cursor) = read_all($standby, $cursor, 2);
apply_rows($rows);
my $promoted_table = join(',', map { s/\|/=/r } split /\n/,
	$standby->safe_psql('postgres', 'SELECT id, v FROM items ORDER BY id'));
is(copy_of(), $promoted_table, 'across the promotion: the copy equals the table');
is($repeats + $inversions, 0, 'nothing repeated or out of order');

$standby->stop;
done_testing();
