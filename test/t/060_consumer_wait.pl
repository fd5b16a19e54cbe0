# "Has my pipeline processed this write?" (contract section 5): a session
# waits in ec_feed.require_visible(token, wait_ms, consumer) while the
# consumer (another session) reads the feed and acknowledges. The wait
# holds no snapshot (no xmin published while it sleeps), ends as soon as
# the acknowledgement commits (well before wait_ms), and without one it
# ends after wait_ms with EC003 'consumer_behind' naming the consumer.
#
# An isolation spec cannot show this: isolationtester sees only lock waits,
# and this wait sleeps on a latch.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $json = JSON::PP->new;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = 'C'\nautovacuum = off\n");
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, name text);
SELECT ec_feed.track('items');
});
my $start = $node->safe_psql('postgres', "SELECT ec_feed.register_consumer('indexer')");
$node->safe_psql('postgres', "INSERT INTO items VALUES (1, 'one')");
my $token = $node->safe_psql('postgres',
	'SELECT ec_feed.row_token(t) FROM items t WHERE id = 1');

is($node->safe_psql('postgres', "SELECT ec_feed.token_status('$token', 'indexer')"),
	'pending', 'written, not processed: pending');

# a psql session started now, left to run; each statement sent on its own
sub start_psql
{
	my (@statements) = @_;
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

# without an ack: EC003 after wait_ms, reason consumer_behind, the consumer named
my $t0 = time;
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT ec_feed.require_visible('$token', 300, 'indexer')");
my $elapsed = time - $t0;
isnt($rc, 0, 'no ack: require_visible fails');
like($err, qr/ERROR:  resource not consistent/, 'EC003 message');
ok($elapsed >= 0.3, sprintf('it waited wait_ms (%.2f s)', $elapsed));
my ($detail) = $err =~ /^DETAIL:  (.*)$/m;
my $payload = eval { $json->decode($detail // '') } // {};
is_deeply([ sort keys %$payload ],
	[qw(code consumer reason retry_after_ms suggestion)], 'payload fields');
is($payload->{reason}, 'consumer_behind', 'payload reason');
is($payload->{consumer}, 'indexer', 'payload names the consumer');

# the waiter: returns when the indexer acks, then reports the time
my $waiter = start_psql(
	"SET application_name = 'waiter'",
	"SELECT ec_feed.require_visible('$token', 60000, 'indexer')",
	'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint');
$node->poll_query_until('postgres',
	"SELECT wait_event = 'Extension' FROM pg_stat_activity WHERE application_name = 'waiter'")
  or die 'the waiter did not start waiting';
is( $node->safe_psql(
		'postgres',
		"SELECT backend_xmin IS NULL FROM pg_stat_activity WHERE application_name = 'waiter'"),
	't',
	'a waiting require_visible holds no xmin');

# the indexer reads its page and acks its progress cursor (the time is
# read just before the ack commits)
my $page = $node->safe_psql('postgres',
	"SELECT cursor FROM ec_feed.read('$start', 1000, '{items}') WHERE op = 'progress'");
my ($acked_ms) = split /\|/,
  $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, ec_feed.ack('indexer', '$page')");
($rc, $out, $err) = finish_psql($waiter);
is($rc, 0, 'the waiter returned without error') or diag $err;
my ($returned_ms) = $out =~ /^([0-9]+)$/m;
my $latency = ($returned_ms // 1e15) - $acked_ms;
ok($latency < 5000, "the wait ended ${latency} ms after the ack (its timeout: 60 s)");
note "require_visible returned ${latency} ms after ec_feed.ack()";

is($node->safe_psql('postgres', "SELECT ec_feed.token_status('$token', 'indexer')"),
	'visible', 'acked: visible');

$node->stop;
done_testing();
