# ec_feed.read(..., wait_ms): a page with nothing new waits for a commit and
# returns as soon as one with tracked changes is visible; while it waits the
# backend holds no xmin; a commit without tracked changes does not end the
# wait; the wait ends by itself after wait_ms with the progress row; cancel
# ends it. Prints commit -> returned latencies.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('read_wait');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, v int);
CREATE TABLE other (id int);
SELECT ec_feed.track('items');
});

my $cursor = $node->safe_psql('postgres', 'SELECT ec_feed.cursor_now()');
my $waiter = $node->background_psql('postgres', on_error_stop => 0);
$waiter->query_safe("SET application_name = 'waiter'");

# start a waiting read; returns when its output shows the progress row
sub start_wait
{
	my ($wait_ms, $more_columns) = @_;
	my $columns = 'op, key, cursor' . ($more_columns ? ", $more_columns" : '');
	$waiter->{stdout} = '';
	$waiter->{stdin} .= "SELECT $columns FROM ec_feed.read('$cursor', 100, NULL, $wait_ms);\n\\echo WAIT_DONE\n";
	$waiter->{run}->pump_nb;
}

sub finish_wait
{
	my $deadline = time() + 60;
	$waiter->{run}->pump_nb until $waiter->{stdout} =~ /WAIT_DONE/ || time() > $deadline
	  || !usleep(200);
	# op|key|cursor, the key as {"id": N}: op|N|cursor
	my @rows = map { [ split /\|/ ] } map { s/\{"id": (\d+)\}/$1/r } grep { /\|/ } split /\n/, $waiter->{stdout};
	$cursor = $rows[-1][2] if @rows;
	return @rows;
}

# a commit wakes the wait
start_wait(20000);
usleep(300_000);
my $xmin = $node->safe_psql('postgres',
	"SELECT coalesce(backend_xmin::text, 'none') || ' ' || wait_event FROM pg_stat_activity WHERE application_name = 'waiter'");
is($xmin, 'none Extension', 'a waiting read holds no xmin');
# a transaction without tracked changes does not end it
$node->safe_psql('postgres', 'INSERT INTO other VALUES (1)');
usleep(200_000);
$waiter->{run}->pump_nb;
unlike($waiter->{stdout}, qr/WAIT_DONE/, 'a commit without tracked changes does not end the wait');
my $t0 = time();
$node->safe_psql('postgres', 'INSERT INTO items VALUES (1, 1)');
my @rows = finish_wait();
my $ms = 1000 * (time() - $t0);
is(join(',', map { "$_->[0]:$_->[1]" } @rows), 'insert:1,progress:', 'the committed change, at once');
cmp_ok($ms, '<', 10000, "returned after the commit ($ms ms), not at wait_ms");

# nothing commits: the wait ends after wait_ms with the progress row
$t0 = time();
start_wait(500);
@rows = finish_wait();
$ms = 1000 * (time() - $t0);
is(join(',', map { $_->[0] } @rows), 'progress', 'nothing new: the progress row');
cmp_ok($ms, '>=', 450, "after about wait_ms ($ms ms)");

# cancel ends the wait
start_wait(60000);
usleep(200_000);
$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'waiter'");
$waiter->{stdin} .= "\\echo AFTER_CANCEL\n";
my $deadline = time() + 30;
$waiter->{run}->pump_nb until $waiter->{stderr} =~ /canceling statement/ || time() > $deadline || !usleep(100_000);
like($waiter->{stderr}, qr/canceling statement due to user request/, 'cancel ends the wait');
$waiter->{stderr} = '';

# the wait needs the statement to do nothing else after the call: here it
# checks once
$t0 = time();
$node->safe_psql('postgres', "SELECT count(*) FROM ec_feed.read('$cursor', 100, NULL, 5000)");
cmp_ok(1000 * (time() - $t0), '<', 4000, 'an aggregate over read() does not wait');
# nor one whose other columns may read with its snapshot: a subquery, a
# stable function, a record's output (its fields' types could be any)
for my $col ('(SELECT count(*) FROM other)', 'now()', 'ROW(op, rel)::text')
{
	$t0 = time();
	$node->safe_psql('postgres', "SELECT op, $col FROM ec_feed.read('$cursor', 100, NULL, 5000)");
	cmp_ok(1000 * (time() - $t0), '<', 4000, "read() next to $col does not wait");
}
# columns that read no table (casts between built-in types, immutable
# functions and operators) let it wait: the commit ends it, not wait_ms
start_wait(20000, "rel::text || '/' || (key->>'id') AS path, (key->>'id')::int + 0 AS n, CASE WHEN op = 'insert' THEN data->'v' END");
usleep(300_000);
$waiter->{run}->pump_nb;
unlike($waiter->{stdout}, qr/WAIT_DONE/, 'read() with expressions over its columns waits');
$t0 = time();
$node->safe_psql('postgres', 'INSERT INTO items VALUES (100, 20)');
@rows = finish_wait();
$ms = 1000 * (time() - $t0);
is(join(',', map { join(':', $_->[0], $_->[1], @$_[3 .. $#$_]) } @rows), 'insert:100:items/100:100:20,progress:',
	'... and returns the committed change with the expressions');
cmp_ok($ms, '<', 10000, "... after the commit ($ms ms), not at wait_ms");

# latency: commit -> returned, one commit at a time
my @latency;
for my $i (2 .. 31)
{
	start_wait(20000);
	usleep(20_000);
	$node->safe_psql('postgres', "INSERT INTO items VALUES ($i, $i)");
	$t0 = time();			# the commit has returned
	@rows = finish_wait();
	push @latency, 1000 * (time() - $t0);
	is($rows[0][1], $i, "change $i returned by the waiting read") or last;
}
@latency = sort { $a <=> $b } @latency;
diag sprintf('080_read_wait: commit returned -> rows seen by this script, ms (its polling included): p50 %.1f, p90 %.1f, max %.1f',
	$latency[ int(@latency / 2) ], $latency[ int(@latency * 0.9) ], $latency[-1]);

$waiter->quit;
$node->stop;
done_testing();
