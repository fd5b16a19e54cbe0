# The background worker that publishes marks (src/publisher.c), with ec_feed
# in shared_preload_libraries on a primary and a streaming standby: without
# any publish_mark() call, a consumer on the standby sees each committed
# write, in order, soon after it commits (the commit -> seen-on-standby
# latency is printed); an idle primary publishes nothing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $primary = PostgreSQL::Test::Cluster->new('pub_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', q{
shared_preload_libraries = 'ec_feed'
ec_feed.publish_databases = 'postgres'
ec_feed.publish_interval = 20
lc_messages = 'C'
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, v int);
SELECT ec_feed.track('items');
});
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('pub_standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

ok($primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ec_feed publisher'"),
	'the publisher runs');

# a standby session that polls the feed: the first change after the cursor
my $cursor = $standby->safe_psql('postgres',
	"SELECT cursor FROM ec_feed.read(NULL, 1000) WHERE op = 'progress'");
my @latency;
for my $i (1 .. 30)
{
	$primary->safe_psql('postgres', "INSERT INTO items VALUES ($i, $i)");
	my $committed = time();
	my $seen;
	for (1 .. 2000)
	{
		my $out = $standby->safe_psql('postgres',
			"SELECT coalesce(key->>'id', ''), cursor FROM ec_feed.read('$cursor', 10)");
		my @lines = split /\n/, $out;
		($seen, $cursor) = split /\|/, $lines[-1];
		my @ids = grep { $_ ne '' } map { (split /\|/)[0] } @lines;
		if (@ids)
		{
			is(join(',', @ids), $i, "write $i seen on the standby, alone and whole");
			$seen = 1;
			last;
		}
		$seen = 0;
		usleep(2000);
	}
	ok($seen, "write $i reached the standby's feed") or last;
	push @latency, 1000 * (time() - $committed);
}
@latency = sort { $a <=> $b } @latency;
diag sprintf('076_standby_publisher: commit -> seen on the standby, ms: p50 %.1f, p90 %.1f, max %.1f (psql per poll)',
	$latency[ int(@latency / 2) ], $latency[ int(@latency * 0.9) ], $latency[-1]);

# idle: nothing published (after the last write's mark)
sleep 1;
my $n1 = $primary->safe_psql('postgres', 'SELECT count(*) FROM ec_feed.mark');
sleep 1;
my $n2 = $primary->safe_psql('postgres', 'SELECT count(*) FROM ec_feed.mark');
is($n2, $n1, 'an idle primary publishes no marks');

$standby->stop;
$primary->stop;
done_testing();
