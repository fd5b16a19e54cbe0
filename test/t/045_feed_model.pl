# Seeded model test of the change feed (issue 14): random schedules of
# writes, consumer pages and crashes, checked against a model consumer.
#
# Four writer sessions run random transactions on a small, hot key space:
# plain INSERT/UPDATE/DELETE, INSERT ... ON CONFLICT, MERGE, COPY FROM STDIN,
# savepoints (released, rolled back, and around statements that may fail),
# primary-key changes, delete + re-insert (two statements and one), a table
# whose AFTER trigger writes the same table in the same statement (a parent's
# counter and the row's own materialized path), long transactions held open
# across many consumer pages, rollbacks, PREPARE TRANSACTION with COMMIT or
# ROLLBACK PREPARED later (some PREPAREs wait for a synchronous standby that
# does not answer, until cancelled: the xid is then listed twice in the
# procarray for a long time, as under real synchronous replication), and
# immediate-stop crashes at random points (some right after a quiet spell in
# which open transactions wrote but nothing committed, so that the consumer's
# last marks name versions and xids whose WAL is lost in the crash), and
# the history rotating into a new segment every 5 s throughout.
#
# Two model consumers follow ec_feed.read() with random page sizes, one for
# every table (rels NULL), one for two of the three tables (rels given). They
# keep their cursor only here, in Perl memory, across the crashes. Sometimes
# a consumer processes only a prefix of a page and goes on from that row's
# cursor; sometimes it re-reads from a random row cursor of the page while no
# commit is in flight, and the rows after it must be exactly the rows of the
# first read. Each consumer applies the changes to a copy (key -> data) and
# checks, on every change:
#   - exactly once: no version delivered twice;
#   - per-key order: a key's versions strictly increase;
#   - the chain: an insert finds the key absent, an update or delete finds it
#     present, a delete's data is the copy's row, an update's `changed` is
#     exactly the set of columns that differ from the copy's row;
#   - nothing of a rolled-back savepoint, and only tables in rels;
# atomicity: whenever a page ends with room left (the consumer caught up with
# the mark of that call: a delta boundary), every transaction it has seen a
# change of has been delivered completely (count of its history rows);
# and at each quiescent point (writers idle, every prepared transaction
# resolved, consumers drained): copy == table, every committed change in the
# history delivered, nothing delivered that is not there, every committed
# transaction delivered with exactly the number of changes its writer counted
# before COMMIT/PREPARE, and no change of a transaction that rolled back or was
# lost in a crash. Prepared transactions survive the crashes; in-doubt commits
# are resolved with pg_xact_status() before anyone writes again.
#
# Bounded: EC_MODEL_SECONDS (default 60) of random schedule in rounds of about
# 12 s, each ending in a quiescent check; about 75-90 s in all.
# EC_MODEL_SEED repeats the random choices (every writer's transactions, the
# consumers' page sizes, cuts and re-reads, the crash times), not the timing
# of the interleaving.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time sleep);

# A small PRNG per stream (xorshift32), so that each writer's choices depend
# on the seed only, not on the order in which sessions get their turn.
{

	package Rng;

	sub new
	{
		my ($class, $seed, $stream) = @_;
		my $s = (($seed % 4294967291) * 2654435761 + $stream * 40503 + 1) & 0xFFFFFFFF;
		my $self = bless { s => $s || 1 }, $class;
		$self->next32 for 1 .. 8;
		return $self;
	}

	sub next32
	{
		my $self = shift;
		my $x = $self->{s};
		$x ^= ($x << 13) & 0xFFFFFFFF;
		$x ^= $x >> 17;
		$x ^= ($x << 5) & 0xFFFFFFFF;
		return $self->{s} = $x;
	}
	sub below { my ($self, $n) = @_; return $self->next32 % $n; }
	sub range { my ($self, $lo, $hi) = @_; return $lo + $self->below($hi - $lo + 1); }
	sub chance { my ($self, $p) = @_; return $self->next32 / 4294967296 < $p; }
	sub pick { my ($self, @l) = @_; return $l[ $self->below(scalar @l) ]; }

	sub distinct
	{
		my ($self, $n, $lo, $hi) = @_;
		my %got;
		$got{ $self->range($lo, $hi) } = 1 while keys %got < $n;
		my @l = keys %got;
		# keys() order is Perl's; put them in the stream's order
		my @out;
		push @out, splice(@l, $self->below(scalar @l), 1) while @l;
		return @out;
	}
}

# A psql session driven without blocking: send one statement, poll for its
# end. Errors come back with their SQLSTATE (VERBOSITY verbose).
{

	package Sess;
	use Time::HiRes qw(time sleep);

	sub new
	{
		my ($class, $node, $name) = @_;
		my $self = bless { node => $node, name => $name, n => 0 }, $class;
		local %ENV = $node->_get_env();
		my @cmd = (
			$node->installed_command('psql'),
			'-XAtq', '-F', "\t",
			'-v', 'ON_ERROR_STOP=0',
			'-v', 'VERBOSITY=verbose',
			'-v', 'SHOW_CONTEXT=never',
			'-d', $node->connstr('postgres') . " application_name=model_$name",
			'-f', '-');
		$self->{in} = $self->{out} = $self->{err} = '';
		$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>', \$self->{out},
			'2>', \$self->{err});
		return $self;
	}

	sub pump
	{
		my $self = shift;
		return if $self->{dead};
		eval {
			if ($self->{h}->pumpable) { $self->{h}->pump_nb; }
			else { $self->{dead} = 1; }
			1;
		} or $self->{dead} = 1;
	}

	sub send
	{
		my ($self, $sql, $meta) = @_;
		die "session $self->{name} is busy" if $self->{busy};
		my $m = "__ec_model_$self->{n}__";
		$self->{n}++;
		$self->{in} .= "$sql\n\\echo $m\n\\warn $m\n";
		$self->{busy} = { marker => $m, sql => $sql, sent => time(), meta => $meta };
		$self->pump;
	}

	# undef while the statement runs; then { out, err, code, msg, sql, meta }
	sub poll
	{
		my $self = shift;
		my $b = $self->{busy} or return undef;
		$self->pump;
		my $m = $b->{marker};
		if ($self->{out} =~ /\Q$m\E\n/ && $self->{err} =~ /\Q$m\E\n/)
		{
			$self->{out} =~ s/^(.*?)\Q$m\E\n//s;
			my $out = $1;
			$self->{err} =~ s/^(.*?)\Q$m\E\n//s;
			my $err = $1;
			$self->{busy} = undef;
			$out =~ s/\n\z//;
			my %r = (out => $out, err => $err, sql => $b->{sql}, meta => $b->{meta},
				secs => time() - $b->{sent});
			if ($err =~ /(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}):\s*([^\n]*)/)
			{
				($r{code}, $r{msg}) = ($1, $2);
				$r{msg} .= " (DETAIL: $1)" if $err =~ /DETAIL:\s+(?:[0-9A-Z]{5}:\s*)?([^\n]*)/;
			}
			return \%r;
		}
		if ($self->{dead})
		{
			$self->{busy} = undef;
			return { dead => 1, code => 'DEAD', msg => "psql exited: $self->{err}",
				err => $self->{err}, sql => $b->{sql}, meta => $b->{meta} };
		}
		return undef;
	}

	our %prof;
	sub query
	{
		my ($self, $sql, $timeout) = @_;
		$self->send($sql);
		my $t0 = time();
		my $pk = $self->{name} =~ s/\d+$//r;
		my $r;
		until ($r = $self->poll)
		{
			die "$self->{name}: no answer in " . ($timeout // 180) . " s to: $sql"
			  if time() - $t0 > ($timeout // 180);
			sleep(0.0003);
		}
		$prof{$pk} += time() - $t0;
		return $r;
	}

	sub safe
	{
		my ($self, $sql) = @_;
		my $r = $self->query($sql);
		die "$self->{name}: query failed: $sql\n$r->{err}" if $r->{code} || $r->{err} =~ /ERROR/;
		return $r->{out};
	}

	sub kill
	{
		my $self = shift;
		eval { $self->{h}->kill_kill; 1 };
		$self->{dead} = 1;
	}

	sub quit
	{
		my $self = shift;
		return if $self->{dead};
		$self->{in} .= "\\q\n";
		eval { $self->{h}->finish; 1 } or $self->kill;
	}
}

my $seconds = $ENV{EC_MODEL_SECONDS} || 60;
my $seed = $ENV{EC_MODEL_SEED} || ((int(time() * 1000) ^ ($$ << 8)) % 1000000000) || 1;
srand($seed);
my $repro = "EC_MODEL_SEED=$seed EC_MODEL_SECONDS=$seconds";
my $repro_cmd =
  "$repro make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/045_feed_model.pl "
  . "(extension installed; or $repro EC_SUITES=tap bash test/run_all.sh)";
diag "045_feed_model: seed $seed, $seconds s; reproduce the choices with $repro";

my $node = PostgreSQL::Test::Cluster->new('model');
$node->init;
# synchronous_standby_names names a standby that never connects: commits do
# not wait for it (synchronous_commit = local), a PREPARE that sets
# synchronous_commit = remote_write does, until cancelled. wal_writer_delay is
# long so that WAL not flushed by a commit is lost in a crash. A short
# segment_period rotates the history into a new segment every few seconds
# (the consumers' reads run the rotation), so that rotations meet crashes,
# prepared transactions and long transactions.
$node->append_conf('postgresql.conf', qq{
ec_feed.segment_period = '5s'
wal_level = replica
max_wal_senders = 2
fsync = off
max_connections = 30
max_prepared_transactions = 20
synchronous_commit = local
synchronous_standby_names = 'ec_model_nobody'
deadlock_timeout = 50ms
wal_writer_delay = 10s
lc_messages = 'C'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE m_kv (k int PRIMARY KEY, v int NOT NULL, tag text NOT NULL, pad text);
CREATE TABLE m_tree (id int PRIMARY KEY, parent int, cnt int NOT NULL DEFAULT 0, path text, tag text NOT NULL);
CREATE TABLE m_other (id int PRIMARY KEY, v int NOT NULL, tag text NOT NULL);
CREATE TABLE m_plain (v int);
-- AFTER trigger that writes its own table in the same statement: the
-- parent's child counter and the new row's materialized path. It fires
-- before ec_feed's record trigger (trigger names sort a_ < zz_).
CREATE FUNCTION m_tree_maint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW.parent IS NOT NULL THEN
			UPDATE m_tree SET cnt = cnt + 1 WHERE id = NEW.parent;
		END IF;
		UPDATE m_tree SET path = coalesce((SELECT p.path FROM m_tree p WHERE p.id = NEW.parent), '') || '/' || NEW.id
		WHERE id = NEW.id;
	ELSIF OLD.parent IS NOT NULL THEN
		UPDATE m_tree SET cnt = cnt - 1 WHERE id = OLD.parent;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER a_m_tree_maint AFTER INSERT OR DELETE ON m_tree
	FOR EACH ROW EXECUTE FUNCTION m_tree_maint();
SELECT ec_feed.track('m_kv');
SELECT ec_feed.track('m_tree');
SELECT ec_feed.track('m_other');
INSERT INTO m_kv (k, v, tag) SELECT g, 0, 'init' FROM generate_series(1, 150) g;
INSERT INTO m_tree (id, parent, tag) SELECT g, NULLIF(g / 2, 0), 'init' FROM generate_series(1, 20) g;
INSERT INTO m_other (id, v, tag) SELECT g, 0, 'init' FROM generate_series(1, 10) g;
-- the whole history: every segment (ec_feed.history is segment 0 only)
CREATE FUNCTION m_history(cond text) RETURNS SETOF ec_feed.history
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE (SELECT string_agg(format('SELECT * FROM %s WHERE %s', relid, cond), ' UNION ALL ')
						  FROM ec_feed.segment);
END $$;
});

my %KEYCOL = (m_kv => 'k', m_tree => 'id', m_other => 'id');

# ------------------------------------------------------------------------
# state
# ------------------------------------------------------------------------

my $mode = 'run';    # run | hold (no commits) | drain (finish, start nothing)
my $epoch = 0;       # number of crashes so far
my (%stats, %opok, %errcodes, %fail_count, @fail_msgs);
my (%committed, %dead_tags, %pending, @interval_commits);
my @crash_info;      # per crash: { pre_seq, post_seq }
my $max_xid = 0;      # the highest xid a writer has reported
my $watermark = 0;   # every history row at or below it was checked at a quiescent point
my $history_rows = 0;

my @CATEGORIES = (
	'writer-error', 'read-error', 'page-shape', 'duplicate', 'key-order', 'chain',
	'changed-columns', 'rolled-back-delivered', 'rels', 'atomicity', 'resume-mismatch',
	'copy-vs-table', 'missed', 'extra', 'xid-count', 'lost-delivered',
	'prepared-after-crash', 'quiesce');

sub fail_model
{
	my ($cat, $msg) = @_;
	die "unknown category $cat" unless grep { $_ eq $cat } @CATEGORIES;
	$fail_count{$cat}++;
	my $text = "[$cat] seed $seed, after $epoch crashes: $msg";
	push @fail_msgs, $text if $fail_count{$cat} <= 8;
	note $text if $fail_count{$cat} <= 50;
}

my $admin;
my @writers = map { { id => $_, rng => Rng->new($seed, 100 + $_), txn_no => 0, next_at => 0 } } 1 .. 4;
my @consumers = (
	{ name => 'all', rels_sql => undef, relset => { m_kv => 1, m_tree => 1, m_other => 1 } },
	{ name => 'filtered', rels_sql => q{ARRAY['m_kv', 'm_tree']::regclass[]}, relset => { m_kv => 1, m_tree => 1 } });
for my $i (0 .. $#consumers)
{
	my $c = $consumers[$i];
	$c->{rng} = Rng->new($seed, 10 + $i);
	$c->{relsql_in} = join(', ', map { "'$_'::regclass" } sort keys %{ $c->{relset} });
	$c->{$_} = {} for qw(copy lastver seen xid_count touched xid_total);
	$c->{$_} = 0 for qw(pages delivered cuts verified key_checks atomic_checks next_at errors);
	$c->{stack} = [];
	$c->{interval} = [];
	$c->{cursor} = undef;
	$c->{origin} = 'the start (NULL)';
}
my $crash_rng = Rng->new($seed, 7);

sub connect_all
{
	$admin = Sess->new($node, 'admin');
	$admin->safe("SELECT 1;");
	for my $w (@writers)
	{
		$w->{sess} = Sess->new($node, "w$w->{id}");
		$w->{pid} = $w->{sess}->safe(
			"SET lock_timeout = '2s'; SET statement_timeout = '60s'; SELECT pg_backend_pid();");
	}
	for my $c (@consumers)
	{
		$c->{sess} = Sess->new($node, "c_$c->{name}");
		$c->{sess}->safe("SELECT 1;");
	}
}

# ------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------

my %ALLOWED_ERRORS = (
	'23505' => 'unique violation',
	'40P01' => 'deadlock',
	'40001' => 'serialization failure',
	'55P03' => 'lock timeout',
	'57014' => 'cancel (of a PREPARE before it waited for the standby)');

sub copy_sql
{
	my ($table, $cols, @rows) = @_;
	return "COPY $table ($cols) FROM STDIN;\n"
	  . join('', map { join("\t", map { defined $_ ? $_ : '\N' } @$_) . "\n" } @rows) . '\.';
}

# One or two statements of random writes, tagged $tag: [sql, op] each.
sub gen_writes
{
	my ($r, $tag) = @_;
	my $key = sub { $r->chance(0.4) ? $r->range(1, 16) : $r->range(17, 300) };
	my $val = sub { $r->range(-999, 999) };
	my $x = $r->below(100);
	if ($x < 9)
	{
		my $k = $key->();
		return ([ "INSERT INTO m_kv (k, v, tag) VALUES ($k, " . $val->() . ", '$tag');", 'insert' ]);
	}
	if ($x < 20)
	{
		my $k = $key->();
		return ([ "UPDATE m_kv SET v = v + 1, tag = '$tag' WHERE k = $k;", 'update' ]);
	}
	if ($x < 23)
	{
		my $a = $r->range(1, 8);
		return ([ "UPDATE m_kv SET v = v - 1, tag = '$tag' WHERE k BETWEEN $a AND " . ($a + 3) . ";", 'update_multi' ]);
	}
	if ($x < 25)
	{
		my $k = $key->();
		return ([ "UPDATE m_kv SET tag = tag WHERE k = $k;", 'update_noop' ]);
	}
	if ($x < 31)
	{
		my $k = $key->();
		return ([ "DELETE FROM m_kv WHERE k = $k;", 'delete' ]);
	}
	if ($x < 39)
	{
		my @k = $r->distinct($r->range(1, 3), 1, 40);
		my $values = join(', ', map { "($_, " . $val->() . ", '$tag')" } @k);
		return ([ "INSERT INTO m_kv (k, v, tag) VALUES $values ON CONFLICT (k) DO UPDATE "
			  . "SET v = m_kv.v + excluded.v, tag = excluded.tag;", 'upsert' ]);
	}
	if ($x < 41)
	{
		my @k = $r->distinct($r->range(1, 3), 1, 300);
		my $values = join(', ', map { "($_, 0, '$tag')" } @k);
		return ([ "INSERT INTO m_kv (k, v, tag) VALUES $values ON CONFLICT DO NOTHING;", 'upsert_nothing' ]);
	}
	if ($x < 48)
	{
		my @k = $r->distinct($r->range(1, 3), 1, 30);
		my $values = join(', ', map { "($_, " . $val->() . ")" } @k);
		return ([ "MERGE INTO m_kv t USING (VALUES $values) AS s(k, d) ON t.k = s.k "
			  . "WHEN MATCHED AND s.d < -600 THEN DELETE "
			  . "WHEN MATCHED THEN UPDATE SET v = t.v + s.d, tag = '$tag' "
			  . "WHEN NOT MATCHED THEN INSERT (k, v, tag) VALUES (s.k, s.d, '$tag');", 'merge' ]);
	}
	if ($x < 52)
	{
		my @k = $r->distinct($r->range(1, 6), 11, 400);
		return ([ copy_sql('m_kv', 'k, v, tag', map { [ $_, $val->(), $tag ] } @k), 'copy' ]);
	}
	if ($x < 55)
	{
		# many versions at once: in a quiet spell before a crash, the
		# sequence's WAL record for them is lost with the crash
		my $base = $r->range(1000, 9000) * 10;
		return ([ copy_sql('m_kv', 'k, v, tag', map { [ $base + $_, $_, $tag ] } 0 .. $r->range(20, 60)), 'bulk_copy' ]);
	}
	if ($x < 58)
	{
		my ($old, $new) = ($key->(), $key->());
		return ([ "UPDATE m_kv SET k = $new, tag = '$tag' WHERE k = $old;", 'keychange' ]);
	}
	if ($x < 63)
	{
		my $k = $key->();
		return (
			[ "DELETE FROM m_kv WHERE k = $k;", 'delete' ],
			[ "INSERT INTO m_kv (k, v, tag) VALUES ($k, " . $val->() . ", '$tag');", 'reinsert' ]);
	}
	if ($x < 66)
	{
		my $k = $key->();
		return ([ "WITH d AS (DELETE FROM m_kv WHERE k = $k RETURNING k) "
			  . "INSERT INTO m_kv (k, v, tag) SELECT k, " . $val->() . ", '$tag' FROM d;", 'delete_reinsert_1stmt' ]);
	}
	if ($x < 75)
	{
		# a child and, after it in the same statement, its parent
		my ($c, $p, $g) = $r->distinct(3, 1, 40);
		$g = undef if $r->chance(0.3);
		my @rows = ([ $c, $p ]);
		push @rows, [ $p, $g ] if $r->chance(0.6);
		my $values = join(', ', map { "($_->[0], " . ($_->[1] // 'NULL') . ", '$tag')" } @rows);
		my $conflict = $r->chance(0.5) ? ' ON CONFLICT (id) DO UPDATE SET tag = excluded.tag' : '';
		return ([ "INSERT INTO m_tree (id, parent, tag) VALUES $values$conflict;", 'tree_insert' ]);
	}
	if ($x < 78)
	{
		my ($c, $p, $g) = $r->distinct(3, 1, 40);
		return ([ copy_sql('m_tree', 'id, parent, tag', [ $c, $p, $tag ], [ $p, $g, $tag ]), 'tree_copy' ]);
	}
	if ($x < 82)
	{
		my ($a, $b) = $r->distinct(2, 1, 40);
		my $where = $r->chance(0.5) ? "id = $a" : "id IN ($a, $b)";
		return ([ "DELETE FROM m_tree WHERE $where;", 'tree_delete' ]);
	}
	if ($x < 85)
	{
		my $a = $r->range(1, 40);
		return ([ "UPDATE m_tree SET tag = '$tag' WHERE id = $a OR parent = $a;", 'tree_update' ]);
	}
	if ($x < 87)
	{
		my ($a, $b) = $r->distinct(2, 1, 40);
		return ([ "UPDATE m_tree SET id = $b, tag = '$tag' WHERE id = $a;", 'tree_keychange' ]);
	}
	if ($x < 92)
	{
		my $i = $r->range(1, 12);
		return ([ $r->chance(0.8)
			? "INSERT INTO m_other (id, v, tag) VALUES ($i, 1, '$tag') ON CONFLICT (id) DO UPDATE SET v = m_other.v + 1, tag = excluded.tag;"
			: "DELETE FROM m_other WHERE id = $i;", 'other' ]);
	}
	if ($x < 94)
	{
		return ([ "INSERT INTO m_plain (v) VALUES (1);", 'untracked' ]);
	}
	my $k = $key->();
	return ([ "UPDATE m_kv SET pad = CASE WHEN pad IS NULL THEN repeat(md5('$tag'), 100) END, "
		  . "tag = '$tag' WHERE k = $k;", 'pad' ]);
}

# One unit of a transaction: writes, alone or in a savepoint block.
sub gen_unit
{
	my ($w, $t) = @_;
	my $r = $w->{rng};
	my $sp = 's' . ++$t->{sp};
	if ($r->chance(0.07))
	{
		# a block rolled back on purpose: its tag must never reach the feed
		my @w = (gen_writes($r, "r$t->{tag}.$t->{sp}"), gen_writes($r, "r$t->{tag}.$t->{sp}"));
		return (
			{ kind => 'sp', sql => "SAVEPOINT $sp;", block => $sp },
			(map { { kind => 'dml', sql => $_->[0], op => $_->[1], block => $sp } } @w),
			{ kind => 'rollback_to', sql => "ROLLBACK TO SAVEPOINT $sp;", block => $sp });
	}
	my @w = gen_writes($r, $t->{tag});
	if ($r->chance(0.8))
	{
		return (
			{ kind => 'sp', sql => "SAVEPOINT $sp;", block => $sp },
			(map { { kind => 'dml', sql => $_->[0], op => $_->[1], block => $sp } } @w),
			{ kind => 'release', sql => "RELEASE SAVEPOINT $sp;", block => $sp });
	}
	return map { { kind => 'dml', sql => $_->[0], op => $_->[1] } } @w;
}

sub new_txn
{
	my ($w) = @_;
	my $r = $w->{rng};
	$w->{txn_no}++;
	my $t = { tag => "w$w->{id}.$w->{txn_no}", sp => 0, epoch => $epoch, writer => $w->{id} };
	$t->{gid} = "g$t->{tag}";
	$t->{long} = $r->chance($w->{id} == 1 ? 0.25 : 0.03);
	my @plan = ({ kind => 'begin', sql => 'BEGIN;' });
	for (1 .. ($t->{long} ? $r->range(3, 7) : $r->range(1, 4)))
	{
		push @plan, { kind => 'pause', secs => $r->range(200, 900) / 1000 } if $t->{long};
		push @plan, gen_unit($w, $t);
	}
	push @plan, { kind => 'precommit', sql =>
		  "SELECT pg_current_xact_id_if_assigned(), "
		  . "count(*) FILTER (WHERE relid IN ('m_kv'::regclass, 'm_tree'::regclass)), "
		  . "count(*) FILTER (WHERE relid = 'm_other'::regclass) "
		  . "FROM m_history('xid = pg_current_xact_id_if_assigned()');" };
	my $e = $r->below(100);
	if ($e < 70)
	{
		push @plan, { kind => 'end', end => 'commit', sql => 'COMMIT;' };
	}
	elsif ($e < 78)
	{
		push @plan, { kind => 'end', end => 'rollback', sql => 'ROLLBACK;' };
	}
	else
	{
		my $sync = $e >= 94;
		push @plan, { kind => 'dml', sql => 'SET LOCAL synchronous_commit = remote_write;', op => 'sync_prepare' }
		  if $sync;
		push @plan, { kind => 'end', end => 'prepare', sync => $sync,
			cancel_after => $r->range(50, 800) / 1000, sql => "PREPARE TRANSACTION '$t->{gid}';" };
	}
	$t->{resolve} = $r->chance(0.85) ? 'commit' : 'rollback';    # of a prepared one
	$t->{prepared_for} = $r->chance(0.2) ? $r->range(500, 2000) / 1000 : $r->range(20, 300) / 1000;
	$t->{plan} = \@plan;
	$w->{txn} = $t;
	$stats{txns}++;
	$stats{long_txns}++ if $t->{long};
}

sub txn_dead
{
	my ($t, $why) = @_;
	$dead_tags{ $t->{tag} } = $why;
	$stats{"ended: $why"}++;
}

sub txn_committed
{
	my ($t, $how) = @_;
	$stats{"ended: $how"}++;
	$stats{long_committed}++ if $t->{long};
	return unless defined $t->{xid} && $t->{xid} ne '';
	$t->{committed_epoch} = $epoch;
	$committed{ $t->{xid} } = $t;
	push @interval_commits, $t;
}

sub writer_result
{
	my ($w, $r) = @_;
	my $t = $w->{txn};
	my $item = $r->{meta};
	$Sess::prof{ 'stmt ' . ($item->{op} // $item->{kind}) } += $r->{secs};
	if ($item->{kind} eq 'precommit' && !$r->{code})
	{
		@$t{qw(xid n_main n_other)} = split /\t/, $r->{out}, -1;
		$max_xid = $t->{xid} if $t->{xid} ne '' && $t->{xid} > $max_xid;
	}
	if ($r->{code})
	{
		$errcodes{ $r->{code} }++;
		fail_model('writer-error',
			"writer $w->{id}, transaction $t->{tag}: unexpected error $r->{code} ($r->{msg}) in: $r->{sql}")
		  unless $ALLOWED_ERRORS{ $r->{code} };
		if ($item->{kind} eq 'end')
		{
			txn_dead($t, "$item->{end} failed");
			$w->{txn} = undef;
			return;
		}
		if (defined $item->{block} && $item->{kind} ne 'rollback_to')
		{
			my $b = $item->{block};
			@{ $t->{plan} } = grep { ($_->{block} // '') ne $b } @{ $t->{plan} };
			unshift @{ $t->{plan} }, { kind => 'rollback_to', sql => "ROLLBACK TO SAVEPOINT $b;" };
		}
		else
		{
			$t->{plan} = [ { kind => 'end', end => 'rollback', sql => 'ROLLBACK;', aborted => 1 } ];
		}
		return;
	}
	$opok{ $item->{op} }++ if $item->{op};
	return unless $item->{kind} eq 'end';
	if ($item->{end} eq 'commit')
	{
		txn_committed($t, 'commit');
	}
	elsif ($item->{end} eq 'rollback')
	{
		txn_dead($t, $item->{aborted} ? 'error' : 'rollback');
	}
	else
	{
		$stats{prepared}++;
		$stats{prepared_sync}++ if $item->{sync};
		$t->{due} = time() + $t->{prepared_for};
		$pending{ $t->{gid} } = $t;
	}
	$w->{txn} = undef;
	$w->{next_at} = time() + $w->{rng}->range(0, 15) / 1000;
}

sub writer_step
{
	my ($w) = @_;
	my $s = $w->{sess};
	if ($s->{busy})
	{
		my $r = $s->poll or return 0;
		writer_result($w, $r);
		return 1;
	}
	return 0 if time() < $w->{next_at} && !($mode eq 'drain' && $w->{txn});
	if (!$w->{txn})
	{
		return 0 if $mode eq 'drain';
		new_txn($w);
	}
	my $t = $w->{txn};
	my $item = $t->{plan}[0];
	if ($item->{kind} eq 'pause')
	{
		shift @{ $t->{plan} };
		$w->{next_at} = time() + $item->{secs} unless $mode eq 'drain';
		return 1;
	}
	if ($mode eq 'hold' && $item->{kind} eq 'precommit')
	{
		# a quiet spell before a crash: keep writing, commit nothing
		return 0 if ++$t->{held} > 12;
		unshift @{ $t->{plan} }, gen_unit($w, $t);
		return 1;
	}
	return 0 if $mode eq 'hold' && $item->{kind} eq 'end';
	shift @{ $t->{plan} };
	$s->send($item->{sql}, $item);
	$stats{statements}++;
	return 1;
}

# Cancel PREPAREs waiting for the standby; resolve prepared transactions.
sub admin_step
{
	my $did = 0;
	for my $w (@writers)
	{
		my $b = $w->{sess}{busy} or next;
		my $item = $b->{meta};
		next unless $item->{kind} eq 'end' && $item->{sync};
		next unless $mode eq 'drain' || time() - $b->{sent} > $item->{cancel_after};
		# again and again: a cancel that arrives before the backend has read
		# the PREPARE is ignored, and statement_timeout does not end the wait
		next if $b->{cancelled} && time() - $b->{cancelled} < 0.2;
		$admin->safe("SELECT pg_cancel_backend($w->{pid});");
		$b->{cancelled} = time();
		$did++;
	}
	return $did if $mode eq 'hold';
	for my $gid (sort keys %pending)
	{
		my $t = $pending{$gid};
		next unless $mode eq 'drain' || time() >= $t->{due};
		my $how = $t->{resolve} eq 'commit' ? 'COMMIT' : 'ROLLBACK';
		my $r = $admin->query("$how PREPARED '$gid';");
		if ($r->{code})
		{
			fail_model('prepared-after-crash', "$how PREPARED '$gid' failed: $r->{code} $r->{msg}");
			txn_dead($t, 'prepared, lost');
		}
		elsif ($how eq 'COMMIT')
		{
			txn_committed($t, 'commit prepared');
		}
		else
		{
			txn_dead($t, 'rollback prepared');
		}
		delete $pending{$gid};
		$did++;
	}
	return $did;
}

# Wait (without sending anything) until no COMMIT is in flight.
sub settle_commits
{
	my $t0 = time();
	while (grep { my $b = $_->{sess}{busy}; $b && $b->{meta}{kind} eq 'end' && $b->{meta}{end} eq 'commit' } @writers)
	{
		for my $w (@writers)
		{
			if (my $r = $w->{sess}->poll) { writer_result($w, $r); }
		}
		return 0 if time() - $t0 > 5;
		sleep(0.0003);
	}
	return 1;
}

# ------------------------------------------------------------------------
# the model consumer
# ------------------------------------------------------------------------

my $json = JSON::PP->new;

sub short_cursor
{
	my $c = shift;
	return 'NULL' unless defined $c;
	return length($c) > 40 ? substr($c, 0, 20) . '...' . substr($c, -12) . ' (' . length($c) . ' chars)' : $c;
}

# one call of ec_feed.read: (rows, progress cursor, undef) or (undef, undef, error)
sub feed_page
{
	my ($c, $cursor, $max) = @_;
	my $sql = "SELECT cursor, op, rel::text, key::text, version, xid, data::text, changed::text "
	  . "FROM ec_feed.read(" . (defined $cursor ? "'$cursor'" : 'NULL') . ", $max"
	  . (defined $c->{rels_sql} ? ", $c->{rels_sql}" : '') . ");";
	my $r = $c->{sess}->query($sql);
	return (undef, undef, $r) if $r->{code};
	my @rows = map { [ split /\t/, $_, -1 ] } split /\n/, $r->{out};
	my $last = pop @rows;
	my $bad =
	    !defined $last || $last->[1] ne 'progress' || $last->[0] eq '' ? 'no final progress row with a cursor'
	  : (grep { @$_ != 8 || $_->[1] eq 'progress' || $_->[0] eq '' } @rows) ? 'a malformed or extra progress row'
	  : @rows > $max ? scalar(@rows) . " changes on a page of $max"
	  : undef;
	if ($bad)
	{
		fail_model('page-shape', "consumer $c->{name}: ec_feed.read(" . short_cursor($cursor) . ", $max): $bad");
		return (undef, undef, { code => 'SHAPE', msg => $bad });
	}
	return (\@rows, $last->[0], undef);
}

sub describe_change
{
	my ($row) = @_;
	my ($op, $rel, $key, $ver, $xid, $data) = @$row[ 1 .. 6 ];
	my ($tag) = $data =~ /"tag": "([^"]*)"/;
	return "$op v$ver of $rel $key (xid $xid, tag " . ($tag // '?') . ")";
}

sub apply_row
{
	my ($c, $row, $page) = @_;
	my ($op, $rel, $key, $ver, $xid, $data, $changed) = @$row[ 1 .. 7 ];
	my $k = "$rel $key";
	my $what = "consumer $c->{name}, page $page->{id}: " . describe_change($row);
	my ($tag) = $data =~ /"tag": "([^"]*)"/;
	$tag //= '';

	fail_model('rels', "$what: table not in this consumer's rels") unless $c->{relset}{$rel};
	if ($op ne 'insert' && $op ne 'update' && $op ne 'delete')
	{
		fail_model('page-shape', "$what: unknown op");
		return;
	}
	if (my $first = $c->{seen}{$ver})
	{
		fail_model('duplicate', "$what: version $ver delivered again (first on page $first)");
	}
	if (my $last = $c->{lastver}{$k})
	{
		$c->{key_checks}++;
		fail_model('key-order', "$what: after $last->[1] v$last->[0] (xid $last->[2]) of the same key")
		  if $last->[0] >= $ver;
	}
	my $have = $c->{copy}{$k};
	my $last = $c->{lastver}{$k};
	my $prev = $last ? "$last->[1] v$last->[0] (xid $last->[2])" : 'none';
	if ($op eq 'insert')
	{
		fail_model('chain', "$what: insert of a key the copy has (its last change: $prev)") if defined $have;
	}
	elsif (!defined $have)
	{
		fail_model('chain', "$what: $op of a key the copy does not have (its last change: $prev)");
	}
	elsif ($op eq 'delete')
	{
		fail_model('chain', "$what: the delete's row $data is not the copy's row $have (last change: $prev)")
		  if $data ne $have;
	}
	else
	{
		my ($old, $new) = ($json->decode($have), $json->decode($data));
		my %cols = (%$old, %$new);
		my @diff = sort grep {
			my ($a, $b) = ($old->{$_}, $new->{$_});
			defined $a != defined $b || (defined $a && "$a" ne "$b")
		} keys %cols;
		my @said = sort grep { $_ ne '' } split /,/, ($changed =~ s/^\{|\}$//gr);
		fail_model('changed-columns', "$what: changed {" . join(',', @said) . "} but the row differs from the copy's in {"
			  . join(',', @diff) . "} (copy $have, last change: $prev)")
		  if "@diff" ne "@said";
	}
	fail_model('rolled-back-delivered', "$what: written in a savepoint that was rolled back") if $tag =~ /^r/;

	push @{ $page->{undo} }, [ $k, $have, $last, $ver, $xid ];
	if ($op eq 'delete') { delete $c->{copy}{$k}; }
	else { $c->{copy}{$k} = $data; }
	$c->{lastver}{$k} = [ $ver, $op, $xid ];
	$c->{seen}{$ver} = $page->{id};
	$c->{xid_count}{$xid}++;
	$c->{touched}{$xid} = 1;
	$c->{delivered}++;
	$stats{"delivered $op"}++ if $c->{name} eq 'all';
	push @{ $c->{interval} }, [ $ver, $rel, $key, $xid, $tag, $op ];
}

sub undo_page
{
	my ($c, $page) = @_;
	for my $u (reverse @{ $page->{undo} })
	{
		my ($k, $have, $last, $ver, $xid) = @$u;
		if (defined $have) { $c->{copy}{$k} = $have; } else { delete $c->{copy}{$k}; }
		if ($last) { $c->{lastver}{$k} = $last; } else { delete $c->{lastver}{$k}; }
		delete $c->{seen}{$ver};
		$c->{xid_count}{$xid}--;
		$c->{delivered}--;
		pop @{ $c->{interval} };
	}
}

# A read failed: report it, and go on from the cursor before the last page
# (the consumer forgets that page), so the rest of the run still checks.
sub read_failed
{
	my ($c, $cursor, $origin, $err) = @_;
	fail_model('read-error', "consumer $c->{name}: ec_feed.read(" . short_cursor($cursor)
		  . ") with the cursor of $origin failed: $err->{code} $err->{msg}\n  cursor: " . ($cursor // 'NULL'));
	$c->{errors}++;
	my $page = pop @{ $c->{stack} };
	if ($page && $c->{errors} < 1000)
	{
		undo_page($c, $page);
		$c->{cursor} = $page->{in};
		$c->{origin} = $page->{in_origin};
	}
	else
	{
		fail_model('read-error', "consumer $c->{name}: cannot go on reading; it stops here");
		$c->{dead} = 1;
	}
	$c->{next_at} = time() + 0.2;
}

# At a delta boundary every transaction seen must be complete.
sub check_atomic
{
	my ($c, $page) = @_;
	my @x = sort keys %{ $c->{touched} };
	return unless @x;
	my @unknown = grep { !exists $c->{xid_total}{$_} } @x;
	if (@unknown)
	{
		my %n = map { split /\t/ } split /\n/, $admin->safe(
			"SELECT xid, count(*) FROM m_history(\$c\$xid = ANY ('{" . join(',', @unknown)
			  . "}'::xid8[]) AND relid IN ($c->{relsql_in})\$c\$) GROUP BY xid;");
		$c->{xid_total}{$_} = $n{$_} // 0 for @unknown;
	}
	for my $x (@x)
	{
		$c->{atomic_checks}++;
		next if $c->{xid_count}{$x} == $c->{xid_total}{$x};
		my @vers = map { $_->[0] } grep { $_->[3] eq $x } @{ $c->{interval} };
		fail_model('atomicity', "consumer $c->{name} caught up at page $page->{id}, but has $c->{xid_count}{$x} of "
			  . "the $c->{xid_total}{$x} changes of xid $x (delivered versions: @vers)");
	}
	$c->{touched} = {};
}

# Read one page; sometimes process a prefix only, sometimes re-read from a row
# cursor in the middle and compare. Returns (changes applied, caught up).
sub consumer_read
{
	my ($c, %opt) = @_;
	return (0, 1) if $c->{dead};
	my $rng = $c->{rng};
	my $max = $opt{max} // $rng->pick(1, 2, 3, 5, 8, 20, 100, 1000);
	my $verify = !$opt{plain} && $rng->chance(0.08);
	my $cut = !$opt{plain} && !$verify && $rng->chance(0.12);
	$verify = 0 if $verify && !settle_commits();
	my ($in, $in_origin) = ($c->{cursor}, $c->{origin});
	my $page = { id => ++$c->{pages}, in => $in, in_origin => $in_origin, undo => [] };
	my @preparing = map { $_->{sess}{busy}{meta}{sql} =~ /'(\S+)'/ ? ($1 . ($_->{sess}{busy}{meta}{sync} ? ' (waiting for the standby)' : '')) : () }
	  grep { my $b = $_->{sess}{busy}; $b && $b->{meta}{kind} eq 'end' && $b->{meta}{end} eq 'prepare' } @writers;
	my $context = ($opt{before_crash} ? "; read right before crash " . ($epoch + 1) : "; read after $epoch crashes")
	  . (@preparing ? "; when it was read, PREPARE TRANSACTION was running for @preparing" : '');
	my ($rows, $progress, $err) = feed_page($c, $in, $max);
	if ($err)
	{
		$c->{pages}--;
		read_failed($c, $in, $in_origin, $err);
		return (0, 0);
	}
	my @rows = @$rows;
	my $n = @rows;
	my @apply = @rows;
	my ($cursor, $origin, $caught) = ($progress, "page $page->{id} (progress$context)", $n < $max);
	if ($verify && $n >= 2)
	{
		my $i = 1 + $rng->below($n - 1);
		my ($again, $progress2, $err2) = feed_page($c, $rows[ $i - 1 ][0], $max - $i);
		if ($err2)
		{
			read_failed($c, $rows[ $i - 1 ][0], "page $page->{id} row $i$context", $err2);
			return (0, 0);
		}
		my @tail = @rows[ $i .. $n - 1 ];
		my $diff;
		for my $j (0 .. ($#tail > $#$again ? $#tail : $#$again))
		{
			my $a = $tail[$j] ? join('|', @{ $tail[$j] }[ 1 .. 7 ]) : '';
			my $b = $again->[$j] ? join('|', @{ $again->[$j] }[ 1 .. 7 ]) : '';
			next if $a eq $b;
			$diff = "position " . ($i + $j + 1) . ": first read "
			  . ($tail[$j] ? describe_change($tail[$j]) : 'nothing') . ", re-read "
			  . ($again->[$j] ? describe_change($again->[$j]) : 'nothing');
			last;
		}
		fail_model('resume-mismatch', "consumer $c->{name}, page $page->{id} ($n changes of max $max): "
			  . "re-reading from the cursor of row $i (no commit in between) differs at $diff")
		  if $diff;
		@apply = (@rows[ 0 .. $i - 1 ], @$again);
		($cursor, $origin, $caught) = ($progress2, "page $page->{id} (re-read from row $i, progress$context)", @$again < $max - $i);
		$c->{verified}++;
	}
	elsif ($cut && $n >= 2)
	{
		my $i = 1 + $rng->below($n - 1);
		@apply = @rows[ 0 .. $i - 1 ];
		($cursor, $origin, $caught) = ($rows[ $i - 1 ][0], "page $page->{id} row $i$context", 0);
		$c->{cuts}++;
	}
	apply_row($c, $_, $page) for @apply;
	($c->{cursor}, $c->{origin}) = ($cursor, $origin);
	push @{ $c->{stack} }, $page;
	shift @{ $c->{stack} } while @{ $c->{stack} } > 4;
	check_atomic($c, $page) if $caught;
	$c->{next_at} = $caught ? time() + $rng->range(0, 30) / 1000 : time();
	return (scalar @apply, $caught);
}

# ------------------------------------------------------------------------
# the schedule: ticks, crashes, quiescent points
# ------------------------------------------------------------------------

sub tick
{
	my $did = 0;
	$did += writer_step($_) for @writers;
	$did += admin_step();
	if ($mode ne 'drain')
	{
		for my $c (@consumers)
		{
			next if $c->{dead} || time() < $c->{next_at};
			consumer_read($c);
			$did++;
		}
	}
	unless ($did) { my $t0 = time(); sleep(0.001); $Sess::prof{sleep} += time() - $t0; }
}

sub crash
{
	if ($crash_rng->chance(0.6))
	{
		# a quiet spell: writes go on, nothing commits
		$mode = 'hold';
		my $until = time() + $crash_rng->range(200, 800) / 1000;
		tick() while time() < $until;
	}
	consumer_read($_, plain => 1, before_crash => 1) for @consumers;    # marks taken right before the crash
	my $pre_seq = $admin->safe("SELECT last_value FROM ec_feed.change_seq;");
	# the highest xid handed out so far, as far as one can tell without
	# assigning one (which would flush the WAL at commit)
	my $pre_xid = $admin->safe("SELECT greatest($max_xid, (SELECT max(backend_xid::text::bigint) FROM pg_stat_activity), "
		  . "(SELECT max(transaction::text::bigint) FROM pg_prepared_xacts));");
	$node->stop('immediate');
	$epoch++;
	$_->{sess}->kill for @writers, @consumers;
	$admin->kill;

	my (@commit_in_doubt, @prepare_in_doubt);
	for my $w (@writers)
	{
		my $t = $w->{txn} or next;
		my $b = $w->{sess}{busy};
		if ($b && $b->{meta}{kind} eq 'end' && $b->{meta}{end} eq 'commit') { push @commit_in_doubt, $t; }
		elsif ($b && $b->{meta}{kind} eq 'end' && $b->{meta}{end} eq 'prepare') { push @prepare_in_doubt, $t; }
		else { txn_dead($t, 'open at a crash'); }
		$w->{txn} = undef;
		$w->{next_at} = 0;
	}

	$node->start;
	$admin = Sess->new($node, 'admin');
	# before anything else assigns an xid: did the COMMITs in flight commit?
	for my $t (@commit_in_doubt)
	{
		if (!defined $t->{xid} || $t->{xid} eq '')
		{
			txn_dead($t, 'in doubt, wrote nothing');
			next;
		}
		my $r = $admin->query("SELECT pg_xact_status('$t->{xid}'::xid8);");
		if (!$r->{code} && $r->{out} eq 'committed') { txn_committed($t, 'commit in doubt at a crash'); }
		else { txn_dead($t, 'commit lost in a crash'); }
	}
	my %prepared = map { $_ => 1 } grep { $_ ne '' } split /\n/, $admin->safe("SELECT gid FROM pg_prepared_xacts;");
	for my $t (@prepare_in_doubt)
	{
		if ($prepared{ $t->{gid} })
		{
			$stats{prepared}++;
			$pending{ $t->{gid} } = $t;
		}
		else
		{
			txn_dead($t, 'prepare lost in a crash');
		}
	}
	for my $gid (sort keys %pending)
	{
		fail_model('prepared-after-crash', "prepared transaction $gid did not survive the crash")
		  unless $prepared{$gid};
		$pending{$gid}{due} = time() + $crash_rng->range(100, 3000) / 1000;
	}
	for my $gid (sort keys %prepared)
	{
		fail_model('prepared-after-crash', "unknown prepared transaction $gid after the crash")
		  unless $pending{$gid};
	}
	my $post_seq = $admin->safe("SELECT last_value FROM ec_feed.change_seq;");
	push @crash_info, { pre_seq => $pre_seq, post_seq => $post_seq, pre_xid => $pre_xid };
	$stats{crashes_seq_back}++ if $post_seq < $pre_seq;
	note "crash $epoch: change_seq last_value $pre_seq before, $post_seq after; "
	  . scalar(@commit_in_doubt) . " commits and " . scalar(@prepare_in_doubt) . " prepares in flight; "
	  . scalar(keys %pending) . " prepared transactions pending";
	$admin->quit;
	connect_all();
	$mode = 'run';
}

sub run_until
{
	my ($end, @crash_at) = @_;
	while (time() < $end)
	{
		if (@crash_at && time() >= $crash_at[0])
		{
			shift @crash_at;
			crash();
		}
		tick();
	}
}

# Everything committed or rolled back, consumers drained; then the checks.
sub quiescent_check
{
	my ($label) = @_;
	$mode = 'drain';
	my $t0 = time();
	while (grep({ $_->{txn} || $_->{sess}{busy} } @writers) || %pending)
	{
		tick();
		if (time() - $t0 > 120)
		{
			fail_model('quiesce', "$label: writers still busy after 120 s: "
				  . join('; ', map { "w$_->{id}: " . ($_->{sess}{busy} ? $_->{sess}{busy}{sql} : 'idle') } @writers));
			last;
		}
	}
	for my $c (@consumers)
	{
		my $pages = 0;
		while (!$c->{dead})
		{
			my (undef, $caught) = consumer_read($c, plain => 1, max => 1000);
			last if $caught;
			if (++$pages > 5000)
			{
				fail_model('quiesce', "$label: consumer $c->{name} did not catch up in 5000 pages");
				last;
			}
		}
	}

	my %table;
	for my $rel (sort keys %KEYCOL)
	{
		my $kc = $KEYCOL{$rel};
		for my $line (split /\n/, $admin->safe(
				"SELECT jsonb_build_object('$kc', $kc)::text, (to_jsonb(t) - 'ec_version' - 'ec_xid')::text FROM $rel t;"))
		{
			my ($key, $data) = split /\t/, $line;
			$table{"$rel $key"} = $data;
		}
	}
	my %history;
	for my $line (split /\n/, $admin->safe(
			"SELECT seq, xid, relid::regclass::text, op, key::text FROM m_history('seq > $watermark');"))
	{
		my @f = split /\t/, $line;
		$history{ $f[0] } = \@f;
	}
	$history_rows += keys %history;

	for my $c (@consumers)
	{
		next if $c->{dead};
		my $who = "$label, consumer $c->{name}";
		for my $k (sort keys %table)
		{
			my ($rel) = split / /, $k;
			next unless $c->{relset}{$rel};
			my $have = $c->{copy}{$k};
			next if defined $have && $have eq $table{$k};
			my $last = $c->{lastver}{$k};
			my $lastdesc = $last ? "$last->[1] v$last->[0] xid $last->[2]" : 'none';
			fail_model('copy-vs-table', "$who: $k is " . (defined $have ? "$have in the copy" : 'missing from the copy')
				  . ", $table{$k} in the table (last change delivered: $lastdesc)");
		}
		for my $k (sort keys %{ $c->{copy} })
		{
			next if exists $table{$k};
			my $last = $c->{lastver}{$k};
			fail_model('copy-vs-table', "$who: $k is $c->{copy}{$k} in the copy, absent from the table "
				  . "(last change delivered: $last->[1] v$last->[0] xid $last->[2])");
		}
		for my $seq (sort { $a <=> $b } keys %history)
		{
			my ($s, $xid, $rel, $op, $key) = @{ $history{$seq} };
			next unless $c->{relset}{$rel};
			next if $c->{seen}{$seq};
			my $t = $committed{$xid};
			my $when = $t ? "committed by $t->{tag} after crash $t->{committed_epoch}" : 'committed by an unknown transaction';
			if ($t && $t->{committed_epoch} > 0)
			{
				my $e = $t->{committed_epoch};
				my $ci = $crash_info[ $e - 1 ];
				$when .= "; change_seq went back from $ci->{pre_seq} to $ci->{post_seq} in crash $e"
				  . ($seq <= $ci->{pre_seq} ? ", so v$seq was handed out twice" : '')
				  if $ci->{post_seq} < $ci->{pre_seq};
				$when .= "; xid $xid had been handed out before crash $e already (xids up to $ci->{pre_xid} were)"
				  if $xid <= $ci->{pre_xid};
			}
			fail_model('missed', "$who: never delivered: op $op v$seq of $rel $key, xid $xid ($when)");
		}
		for my $d (@{ $c->{interval} })
		{
			my ($ver, $rel, $key, $xid, $tag, $op) = @$d;
			fail_model('extra', "$who: delivered $op v$ver of $rel $key (xid $xid), which is not in the history")
			  unless $history{$ver};
			fail_model('lost-delivered', "$who: delivered $op v$ver of $rel $key (xid $xid) with tag $tag, "
				  . "written by a transaction that did not commit ($dead_tags{$tag})")
			  if $dead_tags{$tag};
		}
		for my $t (@interval_commits)
		{
			my $want = $t->{n_main} + ($c->{relset}{m_other} ? $t->{n_other} : 0);
			my $got = $c->{xid_count}{ $t->{xid} } // 0;
			fail_model('xid-count', "$who: transaction $t->{tag} (xid $t->{xid}) counted $want changes before it "
				  . "committed; $got delivered")
			  if $want != $got;
		}
		$c->{interval} = [];
		$c->{stack} = [];
	}
	@interval_commits = ();
	$watermark = $admin->safe("SELECT coalesce(max(seq), 0) FROM m_history('true');");
	$stats{quiescent_checks}++;
	note sprintf "%s: %d statements, %d transactions, %d changes delivered to consumer all, %d crashes, failures: %s",
	  $label, $stats{statements} // 0, $stats{txns} // 0, $consumers[0]{delivered}, $epoch,
	  join(', ', map { "$_ $fail_count{$_}" } sort keys %fail_count) || 'none';
	$mode = 'run';
}

# ------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------

connect_all();
my $t_start = time();
my $rounds = int($seconds / 12 + 0.5) || 1;
for my $round (1 .. $rounds)
{
	my $len = $seconds / $rounds;
	my $start = time();
	my @crash_at = sort { $a <=> $b }
	  map { $start + $len * $crash_rng->range(15, 90) / 100 } 1 .. $crash_rng->pick(1, 1, 1, 2);
	run_until($start + $len, @crash_at);
	quiescent_check("round $round");
}
my $elapsed = time() - $t_start;

$admin->quit;
$_->{sess}->quit for @writers, @consumers;

# ------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------

my ($ca, $cf) = @consumers;
my $segments = $node->safe_psql('postgres', 'SELECT count(*) FROM ec_feed.segment;');
my $figures = sprintf
  "seed %d: %.0f s; %d statements in %d transactions (%d long); %s; %d prepared (%d waiting for a standby); "
  . "%d crashes (change_seq went back in %d); consumer all: %d changes in %d pages, %d cut pages, "
  . "%d verified re-reads, %d per-key order checks, %d atomicity checks; consumer filtered: %d changes, %d pages; "
  . "%d history rows checked in %d segments; writer errors: %s; failures: %s",
  $seed, $elapsed, $stats{statements} // 0, $stats{txns} // 0, $stats{long_txns} // 0,
  join(', ', map { "$_ " . $stats{$_} } grep { /^ended: / } sort keys %stats),
  $stats{prepared} // 0, $stats{prepared_sync} // 0, $epoch, $stats{crashes_seq_back} // 0,
  $ca->{delivered}, $ca->{pages}, $ca->{cuts}, $ca->{verified}, $ca->{key_checks}, $ca->{atomic_checks},
  $cf->{delivered}, $cf->{pages}, $history_rows, $segments,
  join(', ', map { "$_ $errcodes{$_}" } sort keys %errcodes) || 'none',
  join(', ', map { "$_ $fail_count{$_}" } sort keys %fail_count) || 'none';
note $figures;
note "profile: " . join(', ', map { sprintf "%s %.1f s", $_, $Sess::prof{$_} } sort keys %Sess::prof);
note "statements that succeeded, by kind: " . join(', ', map { "$_ $opok{$_}" } sort keys %opok);
diag "045_feed_model figures: $figures" if $ENV{EC_MODEL_FIGURES};

# the run must have exercised what it checks
cmp_ok($stats{'ended: commit'} // 0, '>=', 2 * $seconds, 'transactions committed');
cmp_ok($segments, '>=', 3, 'the history rotated into new segments during the run');
cmp_ok(($stats{'ended: commit prepared'} // 0), '>', 0, 'prepared transactions committed later');
cmp_ok($epoch, '>', 0, 'crashes');
cmp_ok($stats{long_committed} // 0, '>', 0, 'long transactions committed');
cmp_ok($ca->{verified}, '>', 0, 're-reads from a row cursor in the middle of a page compared');
cmp_ok($ca->{cuts} + $cf->{cuts}, '>', 0, 'consumers went on from a row cursor in the middle of a page');
for my $op (qw(upsert merge copy keychange delete_reinsert_1stmt reinsert tree_insert tree_copy other))
{
	cmp_ok($opok{$op} // 0, '>', 0, "$op statements succeeded");
}
cmp_ok($ca->{delivered}, '>=', 15 * $seconds, 'changes delivered');

for my $cat (@CATEGORIES)
{
	is($fail_count{$cat} // 0, 0, "model check: $cat");
}
if (@fail_msgs)
{
	diag $_ for @fail_msgs;
	diag "045_feed_model figures: $figures";
	diag "reproduce the random choices (not their timing): $repro_cmd";
}

$node->stop;
done_testing();
