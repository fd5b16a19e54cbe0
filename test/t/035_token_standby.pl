# Tokens on a hot standby (issue 16.1, 16.3): while a prepared transaction
# with more than 64 subtransactions makes the standby's snapshots
# suboverflowed, its own write stays pending there and a committed one is
# visible; a token of a write rolled back to a savepoint is recognised on
# the standby too (the history it is judged by replicates). The token
# delete_if returns makes a read after one's own delete wait for the
# standby to replay it (0.4.0; before, that token was NULL).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', q{
max_prepared_transactions = 10
lc_messages = 'C'
});
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION ec_feed;
CREATE TABLE tks_t (id int PRIMARY KEY, v text);
SELECT ec_feed.track('tks_t');
INSERT INTO tks_t VALUES (1, 'one'), (2, 'two');
CREATE TABLE tks_scratch (i int);
CREATE TABLE tks_tok (name text PRIMARY KEY, t text);
});
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

# a prepared transaction with 70 subtransactions that writes row 2; its
# token leaves through a file, as it cannot commit
my $file = $primary->basedir . '/tks_token';
$primary->safe_psql(
	'postgres', qq{
BEGIN;
DO \$\$
BEGIN
	FOR i IN 1..70 LOOP
		BEGIN
			INSERT INTO tks_scratch VALUES (i);
		EXCEPTION WHEN division_by_zero THEN
			NULL;
		END;
	END LOOP;
	UPDATE tks_t SET v = 'two, prepared' WHERE id = 2;
	COPY (SELECT ec_feed.row_token(t) FROM tks_t t WHERE id = 2) TO '$file';
END \$\$;
PREPARE TRANSACTION 'tks_many';
});
my $prepared_token = slurp_file($file);
chomp $prepared_token;

# a committed write after it, and one rolled back to a savepoint
$primary->safe_psql(
	'postgres', q{
UPDATE tks_t SET v = 'one, committed' WHERE id = 1;
INSERT INTO tks_tok SELECT 'committed', ec_feed.row_token(t) FROM tks_t t WHERE id = 1;
});
$primary->safe_psql(
	'postgres', q{
DO $$
DECLARE
	tok text;
BEGIN
	BEGIN
		SELECT token INTO tok FROM ec_feed.update_if('tks_t', '{"id": 1}',
			(SELECT t FROM tks_tok WHERE name = 'committed'), '{"v": "rolled back"}');
		RAISE EXCEPTION 'undo the write';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	INSERT INTO tks_tok VALUES ('rolled_back', tok);
END $$;
});
$primary->wait_for_catchup($standby);

sub on_standby
{
	my ($sql) = @_;
	my ($out, $err);
	$standby->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		on_error_stop => 0);
	return $err ne '' ? "error: $err" : $out;
}

my $committed = "(SELECT t FROM tks_tok WHERE name = 'committed')";
is(on_standby("SELECT ec_feed.token_status($committed)"),
	'visible', 'standby, overflowed snapshot: a committed write is visible');
is(on_standby("SELECT ec_feed.token_status('$prepared_token')"),
	'pending', 'standby, overflowed snapshot: the prepared write is pending');
is( on_standby(
		"SELECT status || ' ' || data::text FROM ec_feed.get('tks_t', '{\"id\": 1}', $committed)"),
	'found {"v": "one, committed", "id": 1}',
	'standby: get with a committed token finds the row');
is( on_standby(
		"SELECT status FROM ec_feed.get('tks_t', '{\"id\": 2}', '$prepared_token')"),
	'not_consistent',
	'standby: get with the prepared write\'s token is not consistent');
is( on_standby(
		"BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT ec_feed.require_visible($committed); "
		  . "SELECT status FROM ec_feed.get('tks_t', '{\"id\": 1}', $committed); COMMIT;"),
	"\nfound",
	'standby, REPEATABLE READ: require_visible and get with a committed token');
like(
	on_standby(
		"SELECT ec_feed.token_status((SELECT t FROM tks_tok WHERE name = 'rolled_back'))"),
	qr/token names a write that was rolled back/,
	'standby: a write rolled back in an exception block is recognised');

$primary->safe_psql('postgres', "COMMIT PREPARED 'tks_many'");
$primary->wait_for_catchup($standby);
is(on_standby("SELECT ec_feed.token_status('$prepared_token')"),
	'visible', 'standby: the prepared write is visible after COMMIT PREPARED');

# read-your-deletes: a standby that has not replayed the delete still has
# the row; get() with the delete's token says so instead of finding it
$primary->safe_psql('postgres', q{INSERT INTO tks_t VALUES (3, 'three')});
$primary->wait_for_catchup($standby);
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
my $delete_token = $primary->safe_psql('postgres', q{
SELECT token FROM ec_feed.delete_if('tks_t', '{"id": 3}', ec_feed.token('tks_t', '{"id": 3}'))
	WHERE status = 'applied'});
isnt($delete_token, '', 'delete_if returns a token for the delete');
is(on_standby("SELECT ec_feed.token_status('$delete_token')"),
	'pending', 'standby, replay paused: the delete is pending');
is(on_standby("SELECT status FROM ec_feed.get('tks_t', '{\"id\": 3}')"),
	'found', 'standby, replay paused: without the token the deleted row is found');
is(on_standby("SELECT status FROM ec_feed.get('tks_t', '{\"id\": 3}', '$delete_token')"),
	'not_consistent', 'standby, replay paused: get with the delete\'s token is not consistent');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby);
is(on_standby("SELECT ec_feed.token_status('$delete_token')"),
	'visible', 'standby, replayed: the delete is visible');
is(on_standby("SELECT status FROM ec_feed.get('tks_t', '{\"id\": 3}', '$delete_token')"),
	'not_found', 'standby, replayed: get with the delete\'s token answers not_found');

done_testing();
