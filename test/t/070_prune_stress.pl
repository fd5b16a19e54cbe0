# Pruning under load (issue 7): the history in tiny segments while writers
# run, a reader follows the feed and a loop prunes; a crash in the middle.
#
# Settings (ALTER SYSTEM): ec_feed.segment_rows = 300, segment_period = 1 s,
# retention_min = 5 s. Writers (pgbench, rate-limited): upserts, updates and
# deletes of 60 hot keys (every update adds 1 to v, every insert sets v = 0),
# rolled-back transactions and savepoints (v = -1, note 'rb'), long
# transactions (1-3.5 s, first change long before the rotation that follows).
# A loop calls ec_feed.prune() every 20 ms; the live reader's read()s also
# prune by themselves (each is a statement of its own).
#
# The live reader applies the feed to a copy, and checks on every change:
# no version twice, each key's versions increasing, and the chain: an insert
# finds the key absent with v = 0, an update finds it present and adds exactly
# 1 to v, a delete finds it present with the row it deletes. A lost or
# repeated change breaks the chain (the history itself is pruned, so it
# cannot be the reference). At the end the copy equals the table.
#
# The history's size stays bounded while writes continue: at every sample
# (twice a second), the rows in all segments are at most the versions handed
# out in the last W seconds plus 2 segments (segment_rows each), where
# W = retention_min + longest transaction + segment_period + 6 s slack
# (a change's segment closes within segment_period, freezes once the writers
# open then end, and is dropped retention_min later; the slack covers the
# prune loop's delay and the crash's downtime). The maximum seen is printed.
#
# A second reader stops: once the segment current when it stopped and the
# next are dropped, its next read raises EC001 with the JSON detail, and
# read(NULL) and the detail's oldest_cursor read again.
#
# The crash: an immediate stop while a prune runs in an open transaction (it
# rotated, froze or dropped something and has not committed) and the prune
# loop and the writers run; after the restart the live reader continues from
# its cursor (kept here) with nothing lost or repeated.
#
# Bounded: EC_PRUNE_SECONDS (default 40) of writes in two phases around the
# crash, about 60-80 s in all. EC_PRUNE_SEED repeats the random choices (the
# writers' pgbench seed, the crash time, page sizes), not the timing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $seconds = $ENV{EC_PRUNE_SECONDS} || 40;
my $seed = $ENV{EC_PRUNE_SEED} || (time() ^ $$) % 1000000;
srand($seed);
diag "070_prune_stress: seed $seed (EC_PRUNE_SEED), $seconds s of writes (EC_PRUNE_SECONDS)";

my $segment_rows = 300;
my $retention = 5;
my $long_max = 3.5;
my $period = 1;
my $window = $retention + $long_max + $period + 6;

my $node = PostgreSQL::Test::Cluster->new('prune');
$node->init;
$node->append_conf('postgresql.conf', qq{
fsync = off
max_connections = 40
max_prepared_transactions = 10
});
$node->start;

$node->safe_psql('postgres', qq{
CREATE EXTENSION ec_feed;
CREATE TABLE ps (k int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
SELECT ec_feed.track('ps');
ALTER SYSTEM SET ec_feed.segment_rows = $segment_rows;
ALTER SYSTEM SET ec_feed.segment_period = '${period}s';
ALTER SYSTEM SET ec_feed.retention_min = '${retention}s';
SELECT pg_reload_conf();
-- the rows in every segment (one dropped meanwhile counts 0)
CREATE FUNCTION hist_rows() RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE
	s record;
	n bigint := 0;
	c bigint;
BEGIN
	FOR s IN SELECT relid::oid AS relid FROM ec_feed.segment LOOP
		BEGIN
			EXECUTE format('SELECT count(*) FROM ec_feed.%I', (SELECT relname FROM pg_class WHERE oid = s.relid)) INTO c;
			n := n + c;
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
	END LOOP;
	RETURN n;
END
\$\$;
});
is($node->safe_psql('postgres', 'SHOW ec_feed.retention_min'), "${retention}s", 'retention_min set for the server');

# Keys 1-60 hot, 1001-1100 written by long transactions, 500001+ only by
# rolled-back work. v = -1 and note 'rb' mark rolled-back writes.
my %scripts = (
	'write.sql' => q{
\set hot random(1, 60)
\set hot2 random(1, 60)
\set op random(1, 10)
\set d random(0, 20)
BEGIN;
\if :op <= 2
DELETE FROM ps WHERE k = :hot;
\elif :op <= 6
INSERT INTO ps (k, v, note) VALUES (:hot, 0, 'w') ON CONFLICT (k) DO UPDATE SET v = ps.v + 1, note = 'w';
\else
UPDATE ps SET v = v + 1, note = 'w' WHERE k = :hot;
\endif
UPDATE ps SET v = v + 1, note = 'w2' WHERE k = :hot2;
\sleep :d ms
COMMIT;
},
	'subxact.sql' => q{
\set hot random(1, 60)
\set nk random(500001, 900000)
BEGIN;
INSERT INTO ps (k, v, note) VALUES (:hot, 0, 's') ON CONFLICT (k) DO UPDATE SET v = ps.v + 1, note = 's';
SAVEPOINT a;
UPDATE ps SET v = -1, note = 'rb' WHERE k = :hot;
INSERT INTO ps (k, v, note) VALUES (:nk, -1, 'rb') ON CONFLICT (k) DO NOTHING;
ROLLBACK TO SAVEPOINT a;
COMMIT;
},
	'rollback.sql' => q{
\set hot random(1, 60)
\set nk random(500001, 900000)
\set d random(0, 20)
BEGIN;
INSERT INTO ps (k, v, note) VALUES (:nk, -1, 'rb') ON CONFLICT (k) DO NOTHING;
UPDATE ps SET v = -1, note = 'rb' WHERE k = :hot;
\sleep :d ms
ROLLBACK;
},
	'long.sql' => q{
\set n random(1001, 1100)
\set hot random(1, 60)
\set d random(1000, 3500)
BEGIN;
INSERT INTO ps (k, v, note) VALUES (:n, 0, 'long') ON CONFLICT (k) DO UPDATE SET v = ps.v + 1, note = 'long';
\sleep :d ms
UPDATE ps SET v = v + 1, note = 'long' WHERE k = :hot;
COMMIT;
},
	'prune.sql' => q{
SELECT ec_feed.prune();
\sleep 20 ms
},
);
for my $f (keys %scripts)
{
	append_to_file($node->basedir . "/$f", $scripts{$f});
}
my $dir = $node->basedir;

# the writers and the prune loop for one phase; returns the harnesses
sub start_load
{
	my ($secs, $phase) = @_;
	my @conn = ('-h', $node->host, '-p', $node->port, 'postgres');
	my %h;
	for my $job (
		[ 'main', '-c', '4', '-j', '2', '--rate=150', '--max-tries=10', "--random-seed=" . ($seed + $phase),
			'-f', "$dir/write.sql\@80", '-f', "$dir/subxact.sql\@10", '-f', "$dir/rollback.sql\@10" ],
		[ 'long', '-c', '1', "--random-seed=" . ($seed + $phase + 10), '-f', "$dir/long.sql" ],
		[ 'prune', '-c', '1', '-f', "$dir/prune.sql" ])
	{
		my ($name, @args) = @$job;
		my ($out, $err) = ('', '');
		$h{$name} = {
			out => \$out, err => \$err,
			h => IPC::Run::start([ 'pgbench', '-n', '-T', $secs, @args, @conn ],
				'<', \undef, '>', \$out, '2>', \$err) };
	}
	return \%h;
}

sub running
{
	my $h = shift;
	eval { $h->pump_nb if $h->pumpable; };
	return $h->pumpable;
}

sub finish_load
{
	my ($load, $expect_clean, $label) = @_;
	for my $name (sort keys %$load)
	{
		my $j = $load->{$name};
		$j->{h}->finish;
		my $rc = $? >> 8;
		note "pgbench $name ($label):\n${$j->{out}}\n${$j->{err}}";
		if ($expect_clean)
		{
			is($rc, 0, "$label: pgbench $name exited cleanly");
			unlike(${ $j->{err} }, qr/aborted|error/i, "$label: pgbench $name: no client aborted");
		}
	}
}

# ---- the live reader: its cursor and copy live here, across the crash
my $reader;
my $cursor;    # undef: read(NULL), the oldest change retained
my (%seen, %lastver, %copy);
my ($delivered, $dups, $inversions, $rolled_back, $chain_breaks, $pages, $bad_pages, $ec001_live) = (0) x 8;

sub read_page
{
	my ($max_rows) = @_;
	my $after = defined $cursor ? "'$cursor'" : 'NULL';
	$reader->{stderr} = '';
	my ($out, $err) = $reader->query(
		"SELECT op, coalesce(key->>'k', ''), coalesce(version::text, ''), "
		  . "coalesce(data->>'v', ''), coalesce(data->>'note', ''), cursor "
		  . "FROM ec_feed.read($after, $max_rows, ARRAY['ps'::regclass])");
	if ($err)
	{
		$ec001_live++ if $reader->{stderr} =~ /older than the retained history/;
		die "ec_feed.read($after, $max_rows) failed: $reader->{stderr}";
	}
	my @rows = map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/, $out;
	$pages++;
	my $last = pop @rows;
	if (!defined $last || $last->[0] ne 'progress' || grep { $_->[0] eq 'progress' } @rows)
	{
		$bad_pages++;
		die "page without exactly one final progress row: $out";
	}
	for my $r (@rows)
	{
		my ($op, $k, $ver, $v, $note) = @$r;
		$delivered++;
		$dups++ if $seen{$ver}++;
		if (exists $lastver{$k} && $lastver{$k} >= $ver)
		{
			$inversions++;
			diag "key $k: $op version $ver delivered after version $lastver{$k}" if $inversions <= 10;
		}
		$lastver{$k} = $ver;
		$rolled_back++ if $note eq 'rb' || $v eq '-1' || $k >= 500001;
		my $have = $copy{$k};
		my $broken =
		    $op eq 'insert' ? (defined $have || $v ne '0')
		  : $op eq 'update' ? (!defined $have || $v != $have->{v} + 1)
		  : $op eq 'delete' ? (!defined $have || $have->{v} ne $v || $have->{note} ne $note)
		  : 1;
		if ($broken)
		{
			$chain_breaks++;
			diag "key $k: $op version $ver (v $v, $note) applied to "
			  . (defined $have ? "v $have->{v}, $have->{note}" : 'no row')
			  if $chain_breaks <= 10;
		}
		if ($op eq 'delete') { delete $copy{$k}; }
		else { $copy{$k} = { ver => $ver, v => $v, note => $note }; }
	}
	$cursor = $last->[5];
	return scalar @rows;
}

# ---- the history's size, sampled
my $mon;
my @samples;    # [time, rows, last version]
my ($max_rows_seen, $max_excess, $max_excess_at, $max_ratio) = (0, -1e9, '', 0);

sub sample
{
	my $out = $mon->query_safe(
		"SELECT hist_rows(), coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0), count(*) FROM ec_feed.segment");
	my ($rows, $seq, $nseg) = split /\|/, $out;
	my $t = time();
	push @samples, [ $t, $rows, $seq ];
	$max_rows_seen = $rows if $rows > $max_rows_seen;
	# versions handed out in the last $window seconds (all of them early on)
	my $base = 0;
	for my $s (@samples)
	{
		last if $s->[0] > $t - $window;
		$base = $s->[2];
	}
	my $excess = $rows - ($seq - $base);
	if ($seq - $base > 0 && $rows / ($seq - $base) > $max_ratio)
	{
		$max_ratio = $rows / ($seq - $base);
	}
	if ($excess > $max_excess)
	{
		$max_excess = $excess;
		$max_excess_at = sprintf "%.1f s: %d rows in %d segments, %d versions in the last %.1f s",
		  $t - $samples[0][0], $rows, $nseg, $seq - $base, $window;
	}
}

my @sizes = (2000, 2000, 500, 50);

# follow the feed while the load runs, until $until (or the load ends);
# $hook is called after each page
sub follow
{
	my ($load, $until, $hook) = @_;
	my $last_sample = 0;
	while (time() < $until && grep { running($_->{h}) } values %$load)
	{
		my $max = $sizes[ int(rand(@sizes)) ];
		my $n = read_page($max);
		if (time() - $last_sample >= 0.5)
		{
			sample();
			$last_sample = time();
		}
		$hook->() if $hook;
		sleep(0.02) if $n < $max;
	}
}

my $phase_a = int($seconds / 2);
my $phase_b = $seconds - $phase_a;
my $crash_at = $phase_a * (0.5 + rand(0.4));
note sprintf "phase A %d s, crash after %.1f s; phase B %d s", $phase_a, $crash_at, $phase_b;

$reader = $node->background_psql('postgres', on_error_stop => 0);
$mon = $node->background_psql('postgres', on_error_stop => 0);

# ---- phase A, then the crash in the middle of a prune
my $t0 = time();
my $load = start_load($phase_a + 5, 0);
follow($load, $t0 + $crash_at);
$reader->quit;
$mon->quit;
my $pr = $node->background_psql('postgres', on_error_stop => 0);
my $segs_before = $pr->query_safe("SELECT string_agg(id || ':' || (closed_nxt IS NOT NULL)::text || (frozen_at IS NOT NULL)::text, ' ' ORDER BY id) FROM ec_feed.segment");
# a prune with something to do: wait (a little) for a segment to be due
my $pruned_open = '';
for my $try (1 .. 50)
{
	$pr->query_safe('BEGIN');
	my $removed = $pr->query_safe('SELECT ec_feed.prune()');
	$pruned_open = $pr->query_safe("SELECT string_agg(id || ':' || (closed_nxt IS NOT NULL)::text || (frozen_at IS NOT NULL)::text, ' ' ORDER BY id) FROM ec_feed.segment");
	last if $pruned_open ne $segs_before || $removed > 0;
	$pr->query_safe('ROLLBACK');
	sleep(0.05);
}
note "segments before the open prune: $segs_before; in it, uncommitted: $pruned_open";
isnt($pruned_open, $segs_before, 'the prune open at the crash changed the segments');
sleep(0.2);
$node->stop('immediate');
$pr->{run}->kill_kill;
finish_load($load, 0, 'phase A');
my $crash_time = time();
$node->start;
note sprintf "restarted %.1f s after the crash", time() - $crash_time;

# ---- phase B: the live reader goes on; a second reader stops
$reader = $node->background_psql('postgres', on_error_stop => 0);
$mon = $node->background_psql('postgres', on_error_stop => 0);
my $t1 = time();
$load = start_load($phase_b, 1);
follow($load, $t1 + 1);
my ($stale, $stale_seg) = split /\|/, $node->safe_psql('postgres',
	"SELECT ec_feed.cursor_now(), coalesce(pg_sequence_last_value('ec_feed.segment_current'), 0)");
my $stale_at = time();
my ($stale_gone, $stale_err, $stale_rc) = (0, '', 0);
my ($rc_null, $out_null, $err_null, $rc_old, $out_old, $err_old, $old_tries) = ('') x 7;
follow($load, $t1 + $phase_b + 30, sub {
	return if $stale_gone;
	my $left = $node->safe_psql('postgres',
		"SELECT count(*) FROM ec_feed.segment WHERE id <= $stale_seg + 1");
	return if $left > 0;
	$stale_gone = time() - $stale_at;
	$stale_rc = $node->psql('postgres', "SELECT count(*) FROM ec_feed.read('$stale', 100)",
		stderr => \$stale_err);
	# read(NULL) works at once; the oldest cursor of the detail too, unless
	# a prune moved the horizon again meanwhile (then its EC001 gives the
	# newer one: a few tries)
	($rc_null, $out_null, $err_null) = $node->psql('postgres',
		"SELECT count(*) FROM ec_feed.read(NULL, 100000) WHERE op = 'progress'");
	my $err = $stale_err;
	for my $try (1 .. 5)
	{
		my ($detail) = $err =~ /DETAIL:  (\{.*\})/;
		my $oldest = eval { decode_json($detail // '') }->{oldest_cursor} // '';
		($rc_old, $out_old, $err_old) = $node->psql('postgres',
			"SELECT count(*) FROM ec_feed.read('$oldest', 100000) WHERE op = 'progress'");
		$old_tries = $try;
		last unless $err_old =~ /older than the retained history/;
		$err = $err_old;
	}
});
finish_load($load, 1, 'phase B');

# every writer has ended: drain until an empty page, then once more
my $drain = 0;
while (read_page(2000) > 0)
{
	die "feed does not drain" if ++$drain > 1000;
}
my $after_drain = read_page(2000);
sample();

# ---- the stopped reader
ok($stale_gone, sprintf('the stopped reader\'s segments were dropped %.1f s after it stopped (retention_min %d s)',
	$stale_gone || -1, $retention));
cmp_ok($stale_gone || 0, '>=', $retention, 'not before retention_min');
isnt($stale_rc, 0, 'its next read fails');
like($stale_err, qr/ERROR:  cursor is older than the retained history/, 'with EC001');
my ($detail) = $stale_err =~ /DETAIL:  (\{.*\})/;
my $json = eval { decode_json($detail // '') } // {};
is($json->{code}, 'cursor_too_old', 'its JSON detail names the code');
ok(defined $json->{oldest_cursor} && defined $json->{suggestion}, 'and gives the oldest cursor and a suggestion');
is("$rc_null|$out_null|$err_null", '0|1|', 'read(NULL) then works');
is("$rc_old|$out_old|$err_old", '0|1|', "and so does the oldest cursor of the detail ($old_tries tries)");

# ---- the live reader's copy
my %table;
for my $line (split /\n/, $node->safe_psql('postgres', "SELECT k, ec_version, v, note FROM ps"))
{
	my ($k, $ver, $v, $note) = split /\|/, $line;
	$table{$k} = "$ver|$v|$note";
}
my $copy_missing = grep { !exists $copy{$_} } keys %table;
my $copy_extra = grep { !exists $table{$_} } keys %copy;
my $copy_stale = grep { exists $copy{$_} && "$copy{$_}{ver}|$copy{$_}{v}|$copy{$_}{note}" ne $table{$_} } keys %table;
my ($rows_pruned, $segments, $last_seq) = split /\|/, $node->safe_psql('postgres',
	"SELECT (SELECT rows_pruned FROM ec_feed.pruned), (SELECT count(*) FROM ec_feed.segment), "
	  . "pg_sequence_last_value('ec_feed.change_seq')");
my $rb_in_table = $node->safe_psql('postgres', "SELECT count(*) FROM ps WHERE note = 'rb' OR v = -1 OR k > 500000");
$reader->quit;
$mon->quit;

note sprintf "%d changes delivered in %d pages; %d rows pruned; %d segments left; last version %d",
  $delivered, $pages, $rows_pruned, $segments, $last_seq;
note sprintf "history: at most %d rows seen; largest excess over the bound's window part: %d (at %s)",
  $max_rows_seen, $max_excess, $max_excess_at;
diag sprintf "history max %d rows (bound: versions of the last %.1f s + %d; at most %.2f times those versions); pruned %d of %d delivered",
  $max_rows_seen, $window, 2 * $segment_rows, $max_ratio, $rows_pruned, $delivered;

# the run must have exercised what it checks
cmp_ok($delivered, '>=', 2000, "enough changes were delivered ($delivered)");
cmp_ok($rows_pruned, '>=', $delivered / 2, "most of the history was pruned meanwhile ($rows_pruned rows)");
cmp_ok(scalar(@samples), '>=', 20, 'the history was sampled (' . scalar(@samples) . ' times)');

# the guarantees
cmp_ok($max_excess, '<=', 2 * $segment_rows,
	"history rows stay within the versions of the last $window s + 2 segments (max excess $max_excess)");
is($ec001_live, 0, 'the live reader never got EC001');
is($bad_pages, 0, 'every page ended with exactly one progress row');
is($dups, 0, "no change delivered twice ($delivered deliveries)");
is($inversions, 0, 'per-key versions strictly increase in delivery order');
is($chain_breaks, 0, 'each change applies to the state the previous one left (nothing lost or repeated)');
is($rolled_back, 0, 'no change of a rolled-back transaction or savepoint delivered');
is($rb_in_table, '0', 'no rolled-back write is in the table');
is($copy_missing + $copy_extra + $copy_stale, 0,
	"the live reader's copy equals the table (" . scalar(keys %table)
	  . " keys: $copy_missing missing, $copy_extra extra, $copy_stale stale)");
is($after_drain, 0, 'nothing more after the feed drained');

diag "random choices: EC_PRUNE_SEED=$seed repeats them (not their timing)"
  unless Test::More->builder->is_passing;
$node->stop;
done_testing();
