# The feed across a real crash (G1): a consumer's cursor taken before an
# immediate shutdown (no checkpoint, crash recovery on start) still delivers
# every change committed before and after the crash exactly once; the
# changes of a transaction open at the crash never appear; a prepared
# transaction survives the crash and its changes are delivered once it
# commits; versions keep increasing (the sequence restarts above every
# version handed out).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', "max_prepared_transactions = 5\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
SELECT ec_feed.track('items');
-- what the consumer has applied, and where it is
CREATE TABLE copy (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE delivered (n serial, op text, id int, version bigint);
CREATE TABLE pos (c text);
INSERT INTO pos VALUES (NULL);
-- reads one page of at most max_rows, applies it, stores the progress cursor
CREATE FUNCTION follow(max_rows int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n int := 0;
BEGIN
	FOR r IN SELECT * FROM ec_feed.read((SELECT c FROM pos), max_rows) LOOP
		IF r.op = 'progress' THEN
			UPDATE pos SET c = r.cursor;
		ELSE
			n := n + 1;
			INSERT INTO delivered (op, id, version) VALUES (r.op, (r.key->>'id')::int, r.version);
			DELETE FROM copy WHERE id = (r.key->>'id')::int;
			IF r.op <> 'delete' THEN
				INSERT INTO copy VALUES ((r.key->>'id')::int, r.data->>'v');
			END IF;
		END IF;
	END LOOP;
	RETURN n;
END;
$$;
});
# the consumer's own tables are not tracked: its writes are not in the feed

$node->safe_psql('postgres', q{
INSERT INTO items SELECT g, 'before' FROM generate_series(1, 20) g;
UPDATE items SET v = 'updated' WHERE id <= 5;
DELETE FROM items WHERE id = 20;
});
# the consumer reads part of it: its cursor is in the middle of a delta
is($node->safe_psql('postgres', 'SELECT follow(7)'), '7', 'consumer read 7 changes before the crash');

my $version_before = $node->safe_psql('postgres', 'SELECT max(seq) FROM ec_feed.history');

# a prepared transaction and an open transaction, both with tracked writes
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO items VALUES (100, 'prepared');
UPDATE items SET v = 'prepared' WHERE id = 6;
PREPARE TRANSACTION 'p1';
});
my $open = $node->background_psql('postgres');
$open->query_safe(q{BEGIN; INSERT INTO items VALUES (200, 'lost'); UPDATE items SET v = 'lost' WHERE id = 7;});

$node->safe_psql('postgres', q{INSERT INTO items VALUES (21, 'committed before crash');});

$node->stop('immediate');
$open->{run}->kill_kill;
$node->start;

is($node->safe_psql('postgres', q{SELECT count(*) FROM items WHERE id = 200 OR v = 'lost'}),
	'0', 'the transaction open at the crash left nothing in the table');
cmp_ok($node->safe_psql('postgres', q{INSERT INTO items VALUES (22, 'after crash') RETURNING ec_version}),
	'>', $version_before, 'versions after the crash are above every version before it');
$node->safe_psql('postgres', q{UPDATE items SET v = 'after crash' WHERE id = 1;});

# follow to the end while the prepared transaction is still open, then commit it
$node->safe_psql('postgres', 'SELECT follow(5) FROM generate_series(1, 20)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM delivered WHERE id = 100}),
	'0', 'the prepared transaction is not delivered before it commits');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p1';});
$node->safe_psql('postgres', 'SELECT follow(5) FROM generate_series(1, 20)');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM ec_feed.history h
	WHERE h.relid = 'items'::regclass AND NOT EXISTS (SELECT 1 FROM delivered d WHERE d.version = h.seq)}),
	'0', 'every committed change, before and after the crash, was delivered');
is($node->safe_psql('postgres', q{SELECT count(*) - count(DISTINCT version) FROM delivered}),
	'0', 'no change was delivered twice');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM delivered WHERE id IN (100, 6)
	AND version > $version_before}),
	'2', 'the prepared transaction\'s insert and update are each delivered once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM delivered WHERE id = 200}),
	'0', 'the open transaction\'s changes never appear');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT * FROM copy EXCEPT SELECT id, v FROM items) a}) .
	$node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT id, v FROM items EXCEPT SELECT * FROM copy) b}),
	'00', 'the consumer\'s copy equals the table');
# ids 1-19 (20 was deleted), 21, 22 and the prepared 100
is($node->safe_psql('postgres', q{SELECT count(*) FROM copy}), '22', 'the copy has all 22 rows');

$node->stop;
done_testing();
