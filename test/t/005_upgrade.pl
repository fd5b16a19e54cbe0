# ALTER EXTENSION ec_feed UPDATE from every released version.
#
# A database runs 0.1.0 with tracked tables, history, a consumer's cursor in
# the middle of the feed and row tokens; then the extension is updated in
# place. Afterwards:
#   - the extension's objects equal those of a fresh install of the current
#     version (every member object's definition, privileges, columns,
#     indexes, constraints, policies and triggers, from the catalog);
#   - the consumer's old cursor continues exactly where it was: the rest of
#     the old changes and every new one, each once;
#   - old tokens still work: a current one applies; a stale one from 0.1.0
#     never merges across the update (its history was recorded without the
#     proof a merge needs) but answers with a conflict, one from 0.2.0
#     merges (its history has the proof);
#   - before the update, the new library serves the old SQL objects: stale
#     tokens conflict or merge as above, visibility checks answer;
#   - new writes are tracked as before.
# Segment 0's key index is the one difference allowed: an update with
# tracked tables keeps it on the jsonb key (a backend of a library before
# 0.3.0 may still write there); an update of a database that never tracked
# a table rebuilds it on the key's hash, as a fresh install has it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @released = ('0.1.0', '0.2.0', '0.3.0');

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'ec_feed'");
ok($current ne '', "current version is $current");

# the schema of a fresh install of the current version
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION ec_feed');
my $fresh_schema = schema_of('fresh');

# Every object of the extension with its definition, in a stable order.
# (pg_dump leaves extension members out, so the catalog is asked directly.)
sub schema_of
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'ec_feed'),
members AS (
	SELECT d.classid, d.objid, d.objsubid
	FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass
	AND d.refobjid = ext.oid AND d.deptype = 'e'
),
defs AS (
	SELECT pg_describe_object(m.classid, m.objid, m.objsubid) AS obj,
		CASE m.classid
		WHEN 'pg_proc'::regclass THEN
			pg_get_functiondef(m.objid) || ' acl=' || coalesce((SELECT proacl::text FROM pg_proc WHERE oid = m.objid), '')
		WHEN 'pg_class'::regclass THEN (
			SELECT c.relkind::text || ' rls=' || c.relrowsecurity || ' acl=' || coalesce(c.relacl::text, '')
				|| ' cols=' || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
					|| CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
					|| coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
					FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
					WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
				|| ' indexes=' || coalesce((SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY pg_get_indexdef(i.indexrelid))
					FROM pg_index i WHERE i.indrelid = c.oid), '')
				|| ' constraints=' || coalesce((SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname)
					FROM pg_constraint WHERE conrelid = c.oid), '')
				|| ' policies=' || coalesce((SELECT string_agg(polname || ' ' || polcmd::text || ' ' || coalesce(pg_get_expr(polqual, polrelid), '')
					|| ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), ''), '; ' ORDER BY polname)
					FROM pg_policy WHERE polrelid = c.oid), '')
				|| ' view=' || coalesce(pg_get_viewdef(c.oid), '')
				|| ' triggers=' || coalesce((SELECT string_agg(pg_get_triggerdef(t.oid), '; ' ORDER BY t.tgname)
					FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
			FROM pg_class c WHERE c.oid = m.objid)
		WHEN 'pg_event_trigger'::regclass THEN (
			SELECT evtevent::text || ' ' || coalesce(evttags::text, '') || ' ' || evtfoid::regprocedure::text || ' ' || evtenabled::text
			FROM pg_event_trigger WHERE oid = m.objid)
		ELSE '' END AS def
	FROM members m
	-- segments after the first are data, made and dropped as the history
	-- rotates (the 0.3.0 database made its spare one); on 17 and later
	-- (not on 15) their row types are listed as members too
	WHERE pg_describe_object(m.classid, m.objid, m.objsubid) !~ '^(table|type) ec_feed\.history_[0-9]+(\[\])?$'
)
SELECT string_agg(obj || E'\n  ' || coalesce(def, ''), E'\n' ORDER BY obj)
	|| E'\nschema acl=' || (SELECT coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'ec_feed')
FROM defs
});
}

# segment 0's key index on the jsonb key (before 0.4.0) and on its hash
my $seg0_key_hash = $node->safe_psql('fresh',
	"SELECT pg_get_indexdef('ec_feed.history_rel_key_idx'::regclass)");
like($seg0_key_hash, qr/jsonb_hash_extended\(key, '111477477041529'::bigint\)/,
	'a fresh install indexes segment 0 by the hash of the key');
(my $seg0_key_jsonb = $seg0_key_hash) =~ s/jsonb_hash_extended\(key, '111477477041529'::bigint\)/key/;

# a database that never tracked a table: after the update it is a fresh install
for my $old (@released)
{
	my $db = 'empty_' . ($old =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION ec_feed VERSION '$old'");
	is($node->safe_psql($db, "SELECT pg_get_indexdef('ec_feed.history_rel_key_idx'::regclass)"),
		$seg0_key_jsonb, "$old, nothing tracked: segment 0's key index is on the jsonb key before the update");
	$node->safe_psql($db, 'ALTER EXTENSION ec_feed UPDATE');
	is(schema_of($db), $fresh_schema, "$old, nothing tracked: the update gives exactly a fresh install");
}

# rows of read(cursor) as [op, id, version], and the progress cursor
sub read_page
{
	my ($db, $cursor, $max) = @_;
	my $out = $node->safe_psql($db,
		"SELECT op, key->>'id', version, cursor FROM ec_feed.read("
		  . ($cursor eq '' ? 'NULL' : "'$cursor'")
		  . ", $max, ARRAY['items'::regclass])");
	my (@rows, $next);
	for my $line (split /\n/, $out)
	{
		my ($op, $id, $version, $c) = split /\|/, $line;
		if ($op eq 'progress') { $next = $c; }
		else { push @rows, [ $op, $id, $version ]; }
	}
	return (\@rows, $next);
}

for my $old (@released)
{
	my $db = 'from_' . ($old =~ s/\./_/gr);
	# 0.2.0 records the history chain a merge needs; 0.1.0 did not
	my $chained = $old ne '0.1.0';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION ec_feed VERSION '$old'");
	$node->safe_psql($db, q{
		CREATE TABLE items (id int PRIMARY KEY, a text, b text);
		SELECT ec_feed.track('items');
		INSERT INTO items SELECT g, 'a' || g, 'b' || g FROM generate_series(1, 10) g;
		UPDATE items SET a = 'a-changed' WHERE id <= 3;
	});
	my $cursor = $node->safe_psql($db,
		"SELECT cursor FROM ec_feed.read(NULL, 1000, ARRAY['items'::regclass]) WHERE op = 'progress'");
	$node->safe_psql($db, q{
		INSERT INTO items VALUES (11, 'a11', 'b11');
		DELETE FROM items WHERE id = 10;
	});
	# the consumer reads one row of the rest, keeps that row's cursor
	my ($page) = read_page($db, $cursor, 1);
	is(scalar(@$page), 1, "$old: consumer read one more change before the update");
	my $row_cursor = $node->safe_psql($db,
		"SELECT cursor FROM ec_feed.read('$cursor', 1, ARRAY['items'::regclass]) WHERE op <> 'progress'");
	my $tok_current = $node->safe_psql($db, q{SELECT ec_feed.token('items', '{"id":5}')});
	my $tok_stale = $node->safe_psql($db, q{SELECT ec_feed.token('items', '{"id":6}')});
	$node->safe_psql($db, q{UPDATE items SET b = 'b6-changed' WHERE id = 6});

	# this library serves the old SQL too, until the update: safe answers
	my $tok7 = $node->safe_psql($db, q{SELECT ec_feed.token('items', '{"id":7}')});
	$node->safe_psql($db, q{UPDATE items SET b = 'b7-changed' WHERE id = 7});
	is($node->safe_psql($db,
		qq{SELECT status || ' ' || coalesce(changed_since::text, 'NULL') FROM ec_feed.update_if('items', '{"id":7}', '$tok7', '{"a":"z"}')}),
		$chained ? 'merged {b}' : 'conflict NULL',
		"$old: before the update, a stale token " . ($chained ? 'merges' : 'conflicts') . ' under the new library');
	is($node->safe_psql($db,
		qq{SELECT ec_feed.token_status('$tok_current') || ' ' || (SELECT status FROM ec_feed.get('items', '{"id":5}', '$tok_current'))}),
		'visible found', "$old: before the update, token_status and get answer under the new library");

	$node->safe_psql($db, 'ALTER EXTENSION ec_feed UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'ec_feed'"),
		$current, "$old: updated to $current");
	my $updated = schema_of($db);
	ok($updated =~ s/\Q$seg0_key_jsonb\E/$seg0_key_hash/, "$old: segment 0 keeps its key index on the jsonb key");
	is($updated, $fresh_schema, "$old: schema after the update equals a fresh install (but for that index)");

	$node->safe_psql($db, q{
		INSERT INTO items VALUES (12, 'a12', 'b12');
		UPDATE items SET b = 'b1-new' WHERE id = 1;
	});

	# the rest of the feed after the old row cursor: the delete of 10, then
	# the updates of 6 and 7 (before the update) and the new writes
	my ($rest) = read_page($db, $row_cursor, 1000);
	is(join(',', map { "$_->[0]:$_->[1]" } @$rest),
		$chained ? 'delete:10,update:6,update:7,update:7,insert:12,update:1'
		: 'delete:10,update:6,update:7,insert:12,update:1',
		"$old: the old row cursor continues exactly after its row");
	my %seen;
	$seen{ $_->[2] }++ for @$rest;
	ok(!grep({ $_ > 1 } values %seen), "$old: no change twice");

	is($node->safe_psql($db,
		qq{SELECT status FROM ec_feed.update_if('items', '{"id":5}', '$tok_current', '{"a":"x"}')}),
		'applied', "$old: a current token from before the update applies");
	is($node->safe_psql($db,
		qq{SELECT status || ' ' || coalesce(changed_since::text, 'NULL') FROM ec_feed.update_if('items', '{"id":6}', '$tok_stale', '{"a":"y"}')}),
		$chained ? 'merged {b}' : 'conflict NULL',
		"$old: a stale token from before the update " . ($chained ? 'merges across it (the chain was recorded)' : 'does not merge across it'));
	is($node->safe_psql($db, q{SELECT a FROM items WHERE id = 6}), $chained ? 'y' : 'a6',
		"$old: " . ($chained ? 'the merged write applied' : 'the conflicting write wrote nothing'));
}

$node->stop;
done_testing();
