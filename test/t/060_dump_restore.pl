# pg_dump / pg_restore of a database with tracked tables (issue 8.2).
#
# A logical dump carries each row's ec_version and ec_xid as plain values.
# Restored into another cluster, ec_xid names a transaction of the old
# cluster's counter: ahead of the new counter at first (EC002 "ahead of this
# server's transaction counter" before the fix), and once the new counter
# has passed it, some unrelated transaction of the new cluster (pending,
# rolled back, or committed by chance). ec_feed must never interpret it:
#   - tokens of restored rows are visible, get() finds them, update_if()
#     applies, and a stale restored token conflicts (never merges across the
#     restore: the history is not in the dump);
#   - cursors and tokens made on the old cluster (or in the source database
#     of the same cluster) are EC002;
#   - new writes after the restore are tracked, fed, pending while open,
#     rolled back when rolled back, and merge as usual;
#   - after the new cluster's xid counter has passed the old ec_xid values,
#     with the very xid of a restored row open and another one rolled back,
#     restored rows still answer visible / found;
# for pg_restore of a custom-format dump (serial and parallel), a plain dump
# restored with psql, a schema-only restore followed by a data-only one,
# and a restore into a new database of the same cluster. The dump is taken
# while a transaction writes (its version is drawn, not in the dump). What a
# dump contains (and leaves out) is checked on the plain format. Last,
# pg_upgrade of the old cluster keeps the data as it is: its rows are not
# treated as restored (their ec_xid keeps being interpreted).
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;

# The SQLSTATE of a statement's error, or 'ok'.
sub sqlstate
{
	my ($node, $db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql");
	return 'ok' if $rc == 0;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "no sqlstate: $err";
}

# Burn xids until the next one to be assigned is $target.
sub burn_to
{
	my ($node, $target) = @_;
	$node->safe_psql('postgres', qq{
DO \$\$
DECLARE
	x bigint;
BEGIN
	LOOP
		x := pg_current_xact_id()::text::bigint;
		COMMIT;
		EXIT WHEN x >= $target - 1;
	END LOOP;
END
\$\$;});
}

sub next_xid
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT pg_current_xact_id()::text::bigint + 1');
}

# ---------------------------------------------------------------------
# the old cluster: tracked tables, tokens, a cursor, a dump taken mid-write
# ---------------------------------------------------------------------
my $old = PostgreSQL::Test::Cluster->new('old');
$old->init;
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE src');
# the old cluster's xids run well ahead of the new one's
burn_to($old, 3000);
$old->safe_psql('src', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL);
CREATE TABLE notes (id int PRIMARY KEY, body text);
SELECT ec_feed.track('items');
SELECT ec_feed.track('notes', false);
});
# one transaction per row: distinct ec_xid values
for my $id (1 .. 6)
{
	$old->safe_psql('src', "INSERT INTO items VALUES ($id, 'item $id', $id)");
}
$old->safe_psql('src', q{
UPDATE items SET qty = qty + 1 WHERE id IN (2, 3);
INSERT INTO notes VALUES (1, 'note');
});

my %old_token = split /[|\n]/, $old->safe_psql('src',
	q{SELECT id, ec_feed.row_token(i) FROM items i ORDER BY id});
my $old_note_token = $old->safe_psql('src',
	q{SELECT ec_feed.row_token(n) FROM notes n WHERE id = 1});
my $old_cursor = $old->safe_psql('src',
	q{SELECT cursor FROM ec_feed.read(NULL, 3) WHERE op = 'progress'});
my $old_row_cursor = $old->safe_psql('src',
	q{SELECT cursor FROM ec_feed.read(NULL, 2) WHERE op <> 'progress' ORDER BY version LIMIT 1});
my $old_now = $old->safe_psql('src', 'SELECT ec_feed.cursor_now()');
is(sqlstate($old, 'src', "SELECT ec_feed.token_status('$old_token{4}')"), 'ok',
	'old cluster: a token of its own works');

# state the extension keeps outside the dump: a consumer, pruning statistics
$old->safe_psql('src', q{
DO $$
BEGIN
	IF to_regprocedure('ec_feed.register_consumer(text,text)') IS NOT NULL THEN
		PERFORM ec_feed.register_consumer('planted');
	ELSE
		INSERT INTO ec_feed.consumer (name, owner, cursor, horizon)
		VALUES ('planted', current_user::regrole, ec_feed.cursor_now(),
				pg_snapshot_xmin(pg_current_snapshot()));
	END IF;
END
$$;
UPDATE ec_feed.pruned SET rows_pruned = 7;
});

# a writer is in the middle of its transaction while the dumps are taken
my $inflight = $old->background_psql('src');
$inflight->query_safe(q{BEGIN; INSERT INTO items VALUES (7, 'in flight', 7);
UPDATE items SET name = 'in flight' WHERE id = 3;});

my @old_conn = ('-h', $old->host, '-p', $old->port);
$old->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/src.dump", 'src' ], 'pg_dump -Fc');
$old->command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/src.sql", 'src' ], 'pg_dump, plain format');
$old->command_ok([ 'pg_dump', '--schema-only', '-f', "$tmp/schema.sql", 'src' ],
	'pg_dump --schema-only');
$old->command_ok([ 'pg_dump', '--data-only', '--disable-triggers', '-f', "$tmp/data.sql", 'src' ],
	'pg_dump --data-only --disable-triggers');
$old->command_ok([ 'pg_dump', '--data-only', '-f', "$tmp/data_trig.sql", 'src' ],
	'pg_dump --data-only');
# the same cluster, a new database: pg_dump | pg_restore
$old->safe_psql('postgres', 'CREATE DATABASE copy');
ok( IPC::Run::run(
		[ 'pg_dump', @old_conn, '-Fc', 'src' ], '|',
		[ 'pg_restore', @old_conn, '--exit-on-error', '-d', 'copy' ]),
	'pg_dump src | pg_restore -d copy, in the same cluster');
$inflight->query_safe('COMMIT');
$inflight->quit;

# what the dump holds
my $plain = slurp_file("$tmp/src.sql");
my ($dumped_seq) = $plain =~ /setval\('ec_feed\.change_seq', (\d+), true\)/;
ok(defined $dumped_seq, "the dump sets ec_feed.change_seq (to $dumped_seq)");
like($plain, qr/^CREATE EXTENSION IF NOT EXISTS ec_feed WITH SCHEMA ec_feed;/m,
	'the dump creates the extension');
like($plain, qr/^COPY public\.items \(id, name, qty, ec_version, ec_xid\) FROM stdin;/m,
	'the dump holds the rows with their managed columns');
like($plain, qr/^COPY ec_feed\.tracked_rel /m, 'the dump holds the registry of tracked tables');
like($plain, qr/^CREATE TRIGGER zz_ec_feed_stamp /m, 'the dump creates the stamp trigger');
like($plain, qr/^ALTER TABLE public\.items ENABLE ALWAYS TRIGGER zz_ec_feed_stamp;/m,
	'the stamp trigger fires always after a restore too');
unlike($plain, qr/^COPY ec_feed\.(history|segment|pruned|consumer) /m,
	'the dump holds no history, segments, pruning state or consumers');
unlike($plain, qr/restore_fence'/, 'the dump does not set the restore fence');
unlike($plain, qr/in flight/, 'the dump holds nothing of the transaction open while it ran');
my $inflight_version = $old->safe_psql('src', 'SELECT ec_version FROM items WHERE id = 7');
cmp_ok($inflight_version, '<=', $dumped_seq,
	'the open transaction drew its version before change_seq was dumped');
my $schema = slurp_file("$tmp/schema.sql");
unlike($schema, qr/^(COPY |SELECT pg_catalog\.setval)/m,
	'a schema-only dump holds no rows, no registry and no sequence value');
like($schema, qr/^CREATE TRIGGER zz_ec_feed_stamp /m, 'a schema-only dump creates the triggers');
my $data = slurp_file("$tmp/data.sql");
like($data, qr/^COPY ec_feed\.tracked_rel /m, 'a data-only dump holds the registry');
like($data, qr/setval\('ec_feed\.change_seq', $dumped_seq, true\)/,
	'a data-only dump sets change_seq');
unlike($data, qr/^COPY ec_feed\.(history|segment|pruned|consumer) /m,
	'a data-only dump holds no history, segments, pruning state or consumers');
unlike($data, qr/^CREATE /m, 'a data-only dump creates nothing');

my %restored_xid = split /[|\n]/, $old->safe_psql('src',
	q{SELECT id, ec_xid FROM items WHERE id <= 6 ORDER BY id});

# ---------------------------------------------------------------------
# the new cluster
# ---------------------------------------------------------------------
my $new = PostgreSQL::Test::Cluster->new('new');
$new->init;
$new->start;
my @new_conn = ('-h', $new->host, '-p', $new->port);

$new->safe_psql('postgres', 'CREATE DATABASE fc');
$new->command_ok([ 'pg_restore', @new_conn, '--exit-on-error', '-d', 'fc', "$tmp/src.dump" ],
	'pg_restore -Fc into the new cluster');
$new->safe_psql('postgres', 'CREATE DATABASE par');
$new->command_ok(
	[ 'pg_restore', @new_conn, '--exit-on-error', '-j', '2', '-d', 'par', "$tmp/src.dump" ],
	'pg_restore -j 2 into the new cluster');
$new->safe_psql('postgres', 'CREATE DATABASE plain');
$new->command_ok(
	[ 'psql', @new_conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'plain', '-f', "$tmp/src.sql" ],
	'the plain dump restored with psql');
$new->safe_psql('postgres', 'CREATE DATABASE split');
$new->command_ok(
	[ 'psql', @new_conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'split', '-f', "$tmp/schema.sql" ],
	'a schema-only dump restored');
$new->command_ok(
	[ 'psql', @new_conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'split', '-f', "$tmp/data.sql" ],
	'then a data-only dump (--disable-triggers)');

# a data-only restore with the triggers in place: every restored row is
# written anew, stamped with a version and the restoring transaction, and
# recorded (the feed shows the restore as inserts)
$new->safe_psql('postgres', 'CREATE DATABASE split2');
$new->command_ok(
	[ 'psql', @new_conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'split2', '-f', "$tmp/schema.sql" ],
	'a schema-only dump restored');
$new->command_ok(
	[ 'psql', @new_conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'split2', '-f', "$tmp/data_trig.sql" ],
	'then a data-only dump, triggers firing');
is( $new->safe_psql('split2',
		q{SELECT string_agg(i.id || ':' || ec_feed.token_status(ec_feed.row_token(i)) || ':' || g.status, ',' ORDER BY i.id)
		FROM items i, LATERAL ec_feed.get('items', jsonb_build_object('id', i.id), ec_feed.row_token(i)) g}),
	'1:visible:found,2:visible:found,3:visible:found,4:visible:found,5:visible:found,6:visible:found',
	'data-only restore with triggers: tokens visible, rows found');
is( $new->safe_psql('split2',
		q{SELECT count(*) FROM items i WHERE i.ec_xid::text::bigint IN (SELECT h.xid::text::bigint FROM ec_feed.read(NULL) h WHERE h.op = 'insert')}),
	'6', 'data-only restore with triggers: the rows carry the restoring transaction, whose inserts are in the feed');

cmp_ok(next_xid($new), '<', $restored_xid{1}, 'the old ec_xid values are ahead of the new counter');

# Everything a restored database must answer; $node/$db, $label for messages.
sub check_restored
{
	my ($node, $db, $label) = @_;
	my $q = sub { $node->safe_psql($db, $_[0]) };

	is($q->('SELECT count(*) FROM items'), '6', "$label: the six committed rows are restored");
	cmp_ok($q->(q{SELECT last_value FROM ec_feed.change_seq}), '>=', $dumped_seq,
		"$label: change_seq continues from the dumped value");
	cmp_ok($q->('SELECT max(ec_version) FROM items'), '<=', $dumped_seq,
		"$label: no restored version is above it");
	is($q->('SELECT count(*) FROM ec_feed.history'), '0', "$label: no history is restored");
	is($q->(q{SELECT string_agg(id::text, ',') FROM ec_feed.segment}), '0',
		"$label: the segment catalog is a fresh one");
	is($q->('SELECT count(*) FROM ec_feed.consumer'), '0', "$label: no consumer is restored");
	is($q->('SELECT rows_pruned FROM ec_feed.pruned'), '0', "$label: the pruning state is a fresh one");
	is($q->(q{SELECT string_agg(rel::text || ':' || history, ',' ORDER BY rel::text) FROM ec_feed.tracked}),
		'items:true,notes:false', "$label: both tables are tracked as before");

	# restored rows: their tokens are visible, get finds them
	is( $q->(q{SELECT string_agg(i.id || ':' || ec_feed.token_status(ec_feed.row_token(i)) || ':' || g.status, ',' ORDER BY i.id)
			FROM items i, LATERAL ec_feed.get('items', jsonb_build_object('id', i.id), ec_feed.row_token(i)) g}),
		'1:visible:found,2:visible:found,3:visible:found,4:visible:found,5:visible:found,6:visible:found',
		"$label: tokens of restored rows are visible and get finds the rows");
	is($q->(q{SELECT count(*) FROM items i WHERE ec_feed.token('items', jsonb_build_object('id', i.id)) = ec_feed.row_token(i)}),
		'6', "$label: token() gives the same tokens");
	is( $q->(q{SELECT ec_feed.token_status(ec_feed.row_token(n)) || ':' || g.status FROM notes n,
			LATERAL ec_feed.get('notes', '{"id": 1}', ec_feed.row_token(n)) g}),
		'visible:found', "$label: also of a table tracked without history");
	is(sqlstate($node, $db, q{SELECT ec_feed.require_visible(ec_feed.row_token(i)) FROM items i}),
		'ok', "$label: require_visible returns for restored rows");

	# tokens and cursors of the old cluster's database
	for my $id (1, 4)
	{
		is(sqlstate($node, $db, "SELECT ec_feed.token_status('$old_token{$id}')"), 'EC002',
			"$label: an old token of row $id is EC002 for token_status");
		is(sqlstate($node, $db, "SELECT * FROM ec_feed.get('items', '{\"id\": $id}', '$old_token{$id}')"),
			'EC002', "$label: and for get");
		is( sqlstate($node, $db,
				"SELECT * FROM ec_feed.update_if('items', '{\"id\": $id}', '$old_token{$id}', '{\"qty\": 0}')"),
			'EC002', "$label: and for update_if");
	}
	is(sqlstate($node, $db, "SELECT ec_feed.token_status('$old_note_token')"), 'EC002',
		"$label: an old token of a table without history is EC002");
	for my $c ([ 'progress', $old_cursor ], [ 'row', $old_row_cursor ], [ 'cursor_now', $old_now ])
	{
		is(sqlstate($node, $db, "SELECT * FROM ec_feed.read('$c->[1]')"), 'EC002',
			"$label: an old $c->[0] cursor is EC002");
	}

	# conditional writes with restored tokens
	is( $q->(q{SELECT r.status || ':' || ec_feed.token_status(r.token) FROM items i,
			LATERAL ec_feed.update_if('items', '{"id": 1}', ec_feed.row_token(i), '{"name": "one"}') r
			WHERE i.id = 1}),
		'applied:visible', "$label: update_if applies with a restored row's token");
	my $stale = $q->(q{SELECT ec_feed.token('items', '{"id": 2}')});
	$q->('UPDATE items SET qty = qty + 10 WHERE id = 2');
	is( $q->(qq{SELECT status || ':' || coalesce(changed_since::text, 'NULL')
			FROM ec_feed.update_if('items', '{"id": 2}', '$stale', '{"name": "two"}')}),
		'conflict:NULL', "$label: a stale restored token conflicts, never merges across the restore");
	is( $q->(qq{SELECT status || ':' || coalesce(changed_since::text, 'NULL')
			FROM ec_feed.delete_if('items', '{"id": 2}', '$stale')}),
		'conflict:NULL', "$label: also for delete_if");

	# new writes: tracked, fed, merged
	my $start = $q->('SELECT ec_feed.cursor_now()');
	$q->(q{INSERT INTO items VALUES (100, 'new', 1)});
	my $t100 = $q->(q{SELECT ec_feed.token('items', '{"id": 100}')});
	is($q->("SELECT ec_feed.token_status('$t100')"), 'visible', "$label: a new row's token is visible");
	is($q->(qq{SELECT status FROM ec_feed.update_if('items', '{"id": 100}', '$t100', '{"qty": 2}')}),
		'applied', "$label: update_if applies to a new row");
	is( $q->(qq{SELECT status || ':' || changed_since::text
			FROM ec_feed.update_if('items', '{"id": 100}', '$t100', '{"name": "newer"}')}),
		'merged:{qty}', "$label: a stale token of a write after the restore merges");
	is( $q->(qq{SELECT string_agg(op || ':' || coalesce(key->>'id', ''), ',' ORDER BY version)
			FROM ec_feed.read('$start') WHERE op <> 'progress'}),
		'insert:100,update:100,update:100', "$label: the feed delivers the new writes");
	is( $q->(qq{SELECT string_agg(op || ':' || (key->>'id'), ',' ORDER BY version)
			FROM ec_feed.read(NULL) WHERE op <> 'progress'}),
		'update:1,update:2,insert:100,update:100,update:100',
		"$label: and from the start, every change since the restore, nothing before it");
	cmp_ok($q->(q{SELECT min(version) FROM ec_feed.read(NULL) WHERE op <> 'progress'}), '>',
		$dumped_seq, "$label: with versions after the dumped ones");

	# a write after the restore: pending while open, an error once rolled back
	my $open = $node->background_psql($db);
	my $tp = $open->query_safe(
		q{BEGIN; UPDATE items SET name = 'open' WHERE id = 100 RETURNING ec_feed.row_token(items);});
	is($q->("SELECT ec_feed.token_status('$tp')"), 'pending',
		"$label: the token of an open write after the restore is pending");
	is($q->(qq{SELECT status FROM ec_feed.get('items', '{"id": 100}', '$tp')}), 'not_consistent',
		"$label: get says not_consistent");
	$open->query_safe('ROLLBACK');
	$open->quit;
	is(sqlstate($node, $db, "SELECT ec_feed.token_status('$tp')"), '22023',
		"$label: and rolled back, it names a write that was rolled back");

	# consumers (issue 5), once they are built: registered anew, they follow
	# the new writes; an old cluster's cursor cannot start one
	if ($q->(q{SELECT to_regprocedure('ec_feed.register_consumer(text,text)') IS NOT NULL}) ne 't')
	{
		note("$label: no ec_feed.register_consumer() yet, consumers not checked");
		return;
	}
	is(sqlstate($node, $db, "SELECT ec_feed.register_consumer('from_old', '$old_cursor')"), 'EC002',
		"$label: a consumer cannot start from an old cluster's cursor");
	my $c = $q->(q{SELECT ec_feed.register_consumer('after_restore')});
	$q->(q{INSERT INTO items VALUES (101, 'for the consumer', 1)});
	is( $q->(qq{SELECT string_agg(op || ':' || (key->>'id'), ',' ORDER BY version)
			FROM ec_feed.read('$c') WHERE op <> 'progress'}),
		'insert:101', "$label: a consumer registered after the restore gets the new write");
	my $p = $q->(qq{SELECT cursor FROM ec_feed.read('$c') WHERE op = 'progress'});
	is(sqlstate($node, $db, "SELECT ec_feed.ack('after_restore', '$p')"), 'ok',
		"$label: and acknowledges it");
	$q->(q{DELETE FROM items WHERE id = 101});
	$q->(q{SELECT ec_feed.unregister_consumer('after_restore')});
	return;
}

check_restored($new, 'fc', 'pg_restore');
check_restored($new, 'par', 'pg_restore -j 2');
check_restored($new, 'plain', 'plain dump');
check_restored($new, 'split', 'schema-only + data-only');
check_restored($old, 'copy', 'same cluster');

# the source database's tokens and cursors in its copy (same cluster)
is(sqlstate($old, 'copy', "SELECT ec_feed.token_status('$old_token{4}')"), 'EC002',
	'same cluster: a token of the source database is EC002 in the copy');

# ---------------------------------------------------------------------
# the new counter passes the old ec_xid values: the xid of restored row 4
# is held open by a transaction of the new cluster, that of row 5 rolled
# back, and the others are committed transactions of the new cluster
# ---------------------------------------------------------------------
burn_to($new, $restored_xid{4});
my $holder = $new->background_psql('postgres');
is($holder->query_safe('BEGIN; SELECT pg_current_xact_id();'), $restored_xid{4},
	"a transaction of the new cluster has restored row 4's ec_xid ($restored_xid{4}), and stays open");
burn_to($new, $restored_xid{6});
is($new->safe_psql('postgres', 'BEGIN; SELECT pg_current_xact_id(); ROLLBACK;'),
	$restored_xid{6}, "one with restored row 6's ec_xid ($restored_xid{6}) rolled back");
cmp_ok($restored_xid{5}, '<', $restored_xid{6}, "one with row 5's committed");
burn_to($new, $restored_xid{6} + 10);

for my $db ('fc', 'par', 'plain', 'split')
{
	is( $new->safe_psql($db,
			q{SELECT string_agg(i.id || ':' || ec_feed.token_status(ec_feed.row_token(i)) || ':' || g.status, ',' ORDER BY i.id)
			FROM items i, LATERAL ec_feed.get('items', jsonb_build_object('id', i.id), ec_feed.row_token(i)) g
			WHERE i.id BETWEEN 3 AND 6}),
		'3:visible:found,4:visible:found,5:visible:found,6:visible:found',
		"$db: after the counter passed the old xids, restored rows are still visible and found");
	is(sqlstate($new, $db, q{SELECT ec_feed.require_visible(ec_feed.row_token(i)) FROM items i WHERE id IN (4, 5, 6)}),
		'ok', "$db: require_visible returns for them");
	is( $new->safe_psql($db, q{SELECT string_agg(r.status, ',' ORDER BY i.id) FROM items i,
			LATERAL ec_feed.update_if('items', jsonb_build_object('id', i.id), ec_feed.row_token(i), '{"qty": 40}') r
			WHERE i.id IN (4, 5, 6)}),
		'applied,applied,applied', "$db: update_if applies to them");
}
$holder->query_safe('ROLLBACK');
$holder->quit;

# ---------------------------------------------------------------------
# a second restore: the restored database, dumped and restored again
# ---------------------------------------------------------------------
$new->safe_psql('postgres', 'CREATE DATABASE again');
ok( IPC::Run::run(
		[ 'pg_dump', @new_conn, '-Fc', 'fc' ], '|',
		[ 'pg_restore', @new_conn, '--exit-on-error', '-d', 'again' ]),
	'the restored database dumped and restored again');
is( $new->safe_psql('again',
		q{SELECT string_agg(i.id || ':' || ec_feed.token_status(ec_feed.row_token(i)) || ':' || g.status, ',' ORDER BY i.id)
		FROM items i, LATERAL ec_feed.get('items', jsonb_build_object('id', i.id), ec_feed.row_token(i)) g}),
	'1:visible:found,2:visible:found,3:visible:found,4:visible:found,5:visible:found,6:visible:found,100:visible:found',
	'second restore: rows of both earlier databases are visible and found');
is(sqlstate($new, 'again', q{SELECT ec_feed.token_status(ec_feed.token('items', '{"id": 100}'))}), 'ok',
	'second restore: the token of a row written in the first restored database works');

$new->stop;

# ---------------------------------------------------------------------
# pg_upgrade of the old cluster: the same data, nothing is taken for
# restored. The fence is kept, so a row written before the upgrade keeps
# its history: a stale token of it still merges. (Had the upgrade reset
# the fence, the first write after it would set a new one above that
# version, and the token would conflict.)
# ---------------------------------------------------------------------
my %fence_before;
for my $db ('src', 'copy')
{
	$fence_before{$db} = $old->safe_psql($db,
		q{SELECT last_value || ':' || is_called FROM ec_feed.restore_fence});
}
like($fence_before{src}, qr/:true$/, "the source database's fence is set ($fence_before{src})");
$old->stop;
my $up = PostgreSQL::Test::Cluster->new('upgraded');
$up->init;
my $bindir = $old->config_data('--bindir');
my $sockdir = PostgreSQL::Test::Utils::tempdir_short;
ok( IPC::Run::run(
		[
			'pg_upgrade', '--no-sync', '-d', $old->data_dir, '-D', $up->data_dir,
			'-b', $bindir, '-B', $bindir, '-p', $old->port, '-P', $up->port, '-s', $sockdir
		],
		'>', "$tmp/pg_upgrade.log", '2>&1',
		init => sub { chdir $tmp or die "chdir: $!"; }),
	'pg_upgrade of the old cluster') or diag(slurp_file("$tmp/pg_upgrade.log"));
$up->start;
for my $db ('src', 'copy')
{
	is($up->safe_psql($db, q{SELECT last_value || ':' || is_called FROM ec_feed.restore_fence}),
		$fence_before{$db}, "pg_upgrade keeps the fence of $db");
}
my $t5 = $up->safe_psql('src', q{SELECT ec_feed.token('items', '{"id": 5}')});
is($up->safe_psql('src', "SELECT ec_feed.token_status('$t5')"), 'visible',
	'pg_upgrade: a row written before it is visible');
$up->safe_psql('src', 'UPDATE items SET qty = qty + 1 WHERE id = 5');
is( $up->safe_psql('src', qq{SELECT status || ':' || changed_since::text
		FROM ec_feed.update_if('items', '{"id": 5}', '$t5', '{"name": "five"}')}),
	'merged:{qty}', 'pg_upgrade: the history of a row written before it still proves a merge');
is( $up->safe_psql('copy',
		q{SELECT string_agg(i.id || ':' || ec_feed.token_status(ec_feed.row_token(i)), ',' ORDER BY i.id) FROM items i}),
	'1:visible,2:visible,3:visible,4:visible,5:visible,6:visible,100:visible',
	'pg_upgrade: the restored database in it answers as before');
diag('pg_upgrade and a token made before it: '
	  . sqlstate($up, 'src', "SELECT ec_feed.token_status('$old_token{4}')"));
$up->stop;
done_testing();
