# The spare segment outlives the commit log of the transaction that created
# it (issue 7). After a rotation, _maintain creates the next segment at once
# and rotates to it only once pg_xact_status(created_by) says 'committed'.
# If the tracked tables then stay quiet while the rest of the cluster burns
# through transactions, vacuum truncates the commit log past created_by and
# pg_xact_status() returns NULL ("too old to know"): the history would never
# rotate again and grow without bound once writes resume.
#
# The test ages the spare by moving the xid counter 2.1 billion ahead with
# pg_resetwal -x: the cluster is then far past autovacuum_freeze_max_age, so
# autovacuum (forced, for wraparound, although off) freezes every database
# and truncates the commit log; the test waits until pg_xact_status() of the
# spare's creator is NULL, then writes and prunes: the current segment must
# move on, and a reader from before sees every change.
#
# Bounded: a few seconds.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = PostgreSQL::Test::Cluster->new('old_spare');
$node->init;
$node->append_conf('postgresql.conf', qq{
fsync = off
autovacuum = off
ec_feed.segment_rows = 1
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE os (id int PRIMARY KEY, v int NOT NULL);
SELECT ec_feed.track('os');
INSERT INTO os VALUES (1, 0);
SELECT ec_feed.prune();		-- a spare (1)
SELECT ec_feed.prune();		-- segment 0 closed, 1 current, a spare (2)
});
my $start = $node->safe_psql('postgres', 'SELECT ec_feed.cursor_now()');
my ($cur_before, $spare) = split /\|/, $node->safe_psql('postgres',
	"SELECT pg_sequence_last_value('ec_feed.segment_current'), "
	  . "(SELECT id FROM ec_feed.segment WHERE id > pg_sequence_last_value('ec_feed.segment_current'))");
is($spare, $cur_before + 1, "a spare segment ($spare) is ready");
$node->stop;

# xid 2,100,000,000: its commit log segment must exist (zeroed), as in
# PostgreSQL's own tests that move the counter
my $xid = 2_100_000_000;
my $segno = int($xid / (32768 * 32));
my $file = sprintf('%s/pg_xact/%04X', $node->data_dir, $segno);
open(my $fh, '>', $file) or die "cannot create $file: $!";
binmode $fh;
print $fh ("\0" x (8192 * 32));
close $fh;
command_ok([ 'pg_resetwal', '-x', $xid, $node->data_dir ], 'xid counter moved ahead');
$node->start;

# wait for the forced autovacuum to truncate the commit log (an xid
# assigned past the vacuum limit also asks the postmaster for it)
my $status;
for my $i (1 .. 600)
{
	$node->safe_psql('postgres', 'SELECT pg_current_xact_id()');
	$status = $node->safe_psql('postgres',
		"SELECT coalesce(pg_xact_status(created_by), 'unknown') FROM ec_feed.segment WHERE id = $spare");
	last if $status eq 'unknown';
	sleep 0.1;
}
is($status, 'unknown', "the spare's creator became too old for pg_xact_status()");
is($node->safe_psql('postgres', "SELECT pg_sequence_last_value('ec_feed.segment_current')"),
	$cur_before, 'the current segment did not move meanwhile');

$node->safe_psql('postgres', q{
INSERT INTO os VALUES (2, 0);
UPDATE os SET v = v + 1 WHERE id = 1;
});
$node->safe_psql('postgres', 'SELECT ec_feed.prune()') for 1 .. 3;
my $cur_after = $node->safe_psql('postgres', "SELECT pg_sequence_last_value('ec_feed.segment_current')");
cmp_ok($cur_after, '>', $cur_before, "the history rotates again (current segment $cur_before -> $cur_after)");

$node->safe_psql('postgres', q{
UPDATE os SET v = v + 1 WHERE id = 2;
});
$node->safe_psql('postgres', 'SELECT ec_feed.prune()') for 1 .. 3;
is($node->safe_psql('postgres',
	"SELECT string_agg(op || ' ' || (key->>'id'), ', ' ORDER BY version) FROM ec_feed.read('$start', 100) WHERE op <> 'progress'"),
	'insert 2, update 1, update 2', 'a reader from before gets every change');

$node->stop;
done_testing();
