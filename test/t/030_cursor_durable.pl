# A cursor never names state that a crash can take back (issue 14.3, G1).
#
# A consumer keeps its cursor outside the database. If the server crashes
# before the WAL of what the cursor's mark saw is flushed, recovery can take
# that state back:
#  1. the version sequence's advance: a writer holding an open transaction
#     drew versions (after a checkpoint, so nextval WAL-logged its advance);
#     after the crash the sequence hands out those versions again, and the
#     cursor (whose lo is above them) treats new commits as already read;
#  2. a transaction the mark saw finish by rolling back: its abort record was
#     not flushed, so after the crash its xid is assigned again, and the
#     cursor treats the new transaction as visible before it.
# ec_feed flushes the WAL up to the mark's readings before a cursor leaves
# the server. Without that flush this test loses changes in both cases.
#
# WAL must stay in shared memory until the crash: no WAL writer cycle
# (wal_writer_delay = 10s, and only partial pages are pending), no
# background writer, no checkpoint, no autovacuum.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('durable');
$node->init;
$node->append_conf('postgresql.conf', q{
autovacuum = off
wal_writer_delay = 10s
bgwriter_lru_maxpages = 0
checkpoint_timeout = 1h
max_wal_size = 1GB
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
SELECT ec_feed.track('items');
INSERT INTO items SELECT g, 'setup' FROM generate_series(1, 10) g;
});

my %delivered;

# Follow the feed from $cursor (undef: the start) until a page is empty;
# returns the last progress cursor, kept here in Perl as a consumer would.
sub follow
{
	my ($cursor) = @_;
	while (1)
	{
		my $after = defined $cursor ? "'$cursor'" : 'NULL';
		my $out = $node->safe_psql('postgres',
			"SELECT op, version, cursor FROM ec_feed.read($after, 1000, ARRAY['items'::regclass])");
		my $rows = 0;
		for my $line (split /\n/, $out)
		{
			my ($op, $version, $c) = split /\|/, $line;
			if ($op eq 'progress')
			{
				$cursor = $c;
			}
			else
			{
				$rows++;
				$delivered{$version}++;
			}
		}
		return $cursor if $rows == 0;
	}
}

sub missed
{
	my @missed;
	for my $seq (split /\n/, $node->safe_psql('postgres',
		q{SELECT seq FROM ec_feed.history WHERE relid = 'items'::regclass ORDER BY seq}))
	{
		push @missed, $seq unless $delivered{$seq};
	}
	return join(',', @missed);
}

my $cursor = follow(undef);
is(scalar(keys %delivered), 10, 'the setup rows are delivered');

# 1. versions drawn by an open transaction, not flushed at the crash
$node->safe_psql('postgres', 'CHECKPOINT');
my $writer = $node->background_psql('postgres');
$writer->query_safe(q{BEGIN; INSERT INTO items SELECT g, 'lost' FROM generate_series(101, 105) g;});
$cursor = follow($cursor);
$node->stop('immediate');
$writer->{run}->kill_kill;
$node->start;
for my $id (201 .. 205)
{
	$node->safe_psql('postgres', "INSERT INTO items VALUES ($id, 'after crash 1')");
}
$cursor = follow($cursor);
is(missed(), '', 'every change committed after the first crash is delivered from the kept cursor');

# 2. an xid the mark saw roll back, its abort record not flushed at the crash
$node->safe_psql('postgres', 'CHECKPOINT');
# a committed change after the checkpoint: the sequence's advance is flushed
$node->safe_psql('postgres', q{INSERT INTO items VALUES (300, 'committed')});
$node->safe_psql('postgres', q{BEGIN; INSERT INTO items VALUES (301, 'rolled back'); ROLLBACK;});
$cursor = follow($cursor);
$node->stop('immediate');
$node->start;
for my $id (401 .. 405)
{
	$node->safe_psql('postgres', "INSERT INTO items VALUES ($id, 'after crash 2')");
}
$cursor = follow($cursor);
is(missed(), '', 'every change committed after the second crash is delivered from the kept cursor');

is(join(',', grep { $delivered{$_} > 1 } sort { $a <=> $b } keys %delivered), '',
	'no change was delivered twice');
is($node->safe_psql('postgres', q{SELECT count(*) FROM items}), '21',
	'the table has the setup rows, 300 and the ten rows written after the crashes');

$node->stop;
done_testing();
