# ec_feed.read(..., wait_ms): the memory of a waiting read stays bounded
# while transactions end around it. Each ending transaction wakes the wait,
# which takes a new mark and looks again; before, each look left its mark,
# its scan and a larger segment array behind (about 7 KB/s). The backend's
# memory is logged (pg_log_backend_memory_contexts) after a first burst of
# wake-ups and again after a second, larger one: the grand total must not
# grow with the number of wake-ups. Prints both totals.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('read_wait_memory');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, v int);
SELECT ec_feed.track('items');
INSERT INTO items VALUES (1, 1);
});

my $cursor = $node->safe_psql('postgres', 'SELECT ec_feed.cursor_now()');
my $waiter = $node->background_psql('postgres', on_error_stop => 0);
$waiter->query_safe("SET application_name = 'mem_waiter'");
my $pid = $waiter->query_safe('SELECT pg_backend_pid()');
$waiter->{stdout} = '';
$waiter->{stdin} .= "SELECT op FROM ec_feed.read('$cursor', 100, NULL, 120000);\n\\echo WAIT_DONE\n";
$waiter->{run}->pump_nb;

# wait until it waits
my $deadline = time() + 30;
usleep(50_000)
  until $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND wait_event = 'Extension'") eq '1'
  || time() > $deadline;

# n transactions that take an xid and end, a few ms apart: each wakes the
# wait (nothing tracked is written, so it keeps waiting)
sub wake
{
	my ($n) = @_;
	$node->safe_psql('postgres',
		join('', map { "SELECT pg_current_xact_id(); SELECT pg_sleep(0.002);\n" } 1 .. $n));
}

# the backend's memory, from its log
sub grand_total
{
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	$node->wait_for_log(qr/\[$pid\] .*LOG:  Grand total: \d+ bytes/, $offset);
	my $log = slurp_file($node->logfile, $offset);
	$log =~ /\[$pid\] .*LOG:  Grand total: (\d+) bytes/ or die "no grand total in the log";
	return $1;
}

wake(100);
my $first = grand_total();
wake(2000);
my $second = grand_total();
note("grand total after 100 wake-ups: $first bytes, after 2100: $second bytes");
cmp_ok($second - $first, "<", 8192,
	"2000 more wake-ups grow the waiting read's memory by less than one 8 kB block ($first -> $second bytes)");

# still waiting: nothing tracked committed
$waiter->{run}->pump_nb;
unlike($waiter->{stdout}, qr/WAIT_DONE/, 'the read still waits');
$node->safe_psql('postgres', 'INSERT INTO items VALUES (2, 2)');
$deadline = time() + 60;
$waiter->{run}->pump_nb until $waiter->{stdout} =~ /WAIT_DONE/ || time() > $deadline || !usleep(100_000);
like($waiter->{stdout}, qr/insert\nprogress\nWAIT_DONE/, 'then returns the change');

$waiter->quit;
$node->stop;
done_testing();
