-- Read-your-writes on the primary: token_status, require_visible, get
-- (contract section 4). The standby cases are in test/t/010_standby.pl.

-- SQLSTATE and message of a statement, or 'ok'
CREATE FUNCTION vis_try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- the errdetail of a statement's error, parsed as JSON (fails if it is not JSON)
CREATE FUNCTION vis_detail(q text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	EXECUTE q;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN d::jsonb;
END $$;

CREATE TABLE vis_items (id int PRIMARY KEY, name text);
INSERT INTO vis_items VALUES (0, 'before tracking');
SELECT ec_feed.track('vis_items');
INSERT INTO vis_items VALUES (1, 'one'), (2, 'two');
CREATE TABLE vis_other (id int PRIMARY KEY);
SELECT ec_feed.track('vis_other');
INSERT INTO vis_other VALUES (1);
CREATE TABLE vis_untracked (id int PRIMARY KEY);
INSERT INTO vis_untracked VALUES (1);

SELECT ec_feed.row_token(t) AS tok0 FROM vis_items t WHERE id = 0 \gset
SELECT ec_feed.row_token(t) AS tok1 FROM vis_items t WHERE id = 1 \gset
SELECT ec_feed.row_token(t) AS tok2 FROM vis_items t WHERE id = 2 \gset

-- committed writes are visible on the primary; a row from before tracking
-- (version 0, xid 0) always is
SELECT ec_feed.token_status(:'tok0') AS v0, ec_feed.token_status(:'tok1') AS v1;
SELECT ec_feed.require_visible(:'tok1');
SELECT ec_feed.require_visible(:'tok1', 1000);
SELECT ec_feed.require_visible(:'tok0', 0);

-- get: found (managed columns left out, the token as row_token gives it), not_found
SELECT status, data, token = :'tok1' AS same_token FROM ec_feed.get('vis_items', '{"id": 1}');
SELECT status, data, token = :'tok1' AS same_token FROM ec_feed.get('vis_items', '{"id": 1}', :'tok1');
SELECT status, data, token = :'tok0' AS same_token FROM ec_feed.get('vis_items', '{"id": 0}', :'tok0');
SELECT * FROM ec_feed.get('vis_items', '{"id": 42}');
SELECT * FROM ec_feed.get('vis_items', '{"id": "42"}');
-- a deleted row with the token of its last version: not_found
DELETE FROM vis_items WHERE id = 2;
SELECT * FROM ec_feed.get('vis_items', '{"id": 2}', :'tok2');
-- an older token of an updated row: found, with the current version
UPDATE vis_items SET name = 'uno' WHERE id = 1;
SELECT status, data, token <> :'tok1' AS newer_token,
	token = (SELECT ec_feed.row_token(t) FROM vis_items t WHERE id = 1) AS current_token
FROM ec_feed.get('vis_items', '{"id": 1}', :'tok1');

-- NULLs: a NULL token names no write; NULL rel or key gives no row
SELECT ec_feed.token_status(NULL) IS NULL AS null_status;
SELECT ec_feed.require_visible(NULL);
SELECT ec_feed.require_visible(NULL, 1000);
SELECT ec_feed.require_visible(:'tok1', NULL);
SELECT count(*) FROM ec_feed.get(NULL, '{"id": 1}');
SELECT count(*) FROM ec_feed.get('vis_items', NULL);
SELECT status FROM ec_feed.get('vis_items', '{"id": 1}', NULL);

-- malformed tokens: 22P02
SELECT vis_try($$SELECT ec_feed.token_status('not a token')$$);
SELECT vis_try($$SELECT ec_feed.token_status('')$$);
SELECT vis_try(format('SELECT ec_feed.token_status(%L)', left(:'tok1', -2)));
SELECT vis_try(format('SELECT ec_feed.require_visible(%L)', :'tok1' || 'A'));
SELECT vis_try(format('SELECT * FROM ec_feed.get(%L, %L, %L)', 'vis_items', '{"id": 1}', 'x' || :'tok1'));
SELECT ec_feed.token_status('not a token');
-- a negative wait
SELECT ec_feed.require_visible(:'tok1', -1);

-- a token of another table or another row: EC004
SELECT vis_try(format('SELECT * FROM ec_feed.get(%L, %L, %L)', 'vis_other', '{"id": 1}', :'tok1'));
SELECT vis_try(format('SELECT * FROM ec_feed.get(%L, %L, %L)', 'vis_items', '{"id": 0}', :'tok1'));
SELECT vis_try(format('SELECT * FROM ec_feed.get(%L, %L, %L)', 'vis_items', '{"id": 2}', :'tok1'));
SELECT * FROM ec_feed.get('vis_items', '{"id": 0}', :'tok1');

-- keys that do not name a row by its primary key; untracked tables
SELECT * FROM ec_feed.get('vis_items', '[1]');
SELECT * FROM ec_feed.get('vis_items', '{"name": "one"}');
SELECT * FROM ec_feed.get('vis_items', '{"id": 1, "name": "one"}');
SELECT vis_try($$SELECT * FROM ec_feed.get('vis_items', '{"id": "x"}')$$);
SELECT * FROM ec_feed.get('vis_untracked', '{"id": 1}');

-- the caller's own write is visible to it; after a rollback the token
-- names a write that never happened
BEGIN;
INSERT INTO vis_items VALUES (3, 'three');
SELECT ec_feed.row_token(t) AS tok3 FROM vis_items t WHERE id = 3 \gset
SELECT ec_feed.token_status(:'tok3');
SELECT ec_feed.require_visible(:'tok3');
SELECT status, data FROM ec_feed.get('vis_items', '{"id": 3}', :'tok3');
ROLLBACK;
-- (the detail names the transaction id, which varies: the message only)
SELECT vis_try(format('SELECT ec_feed.token_status(%L)', :'tok3'));
SELECT vis_try(format('SELECT ec_feed.require_visible(%L, 1000)', :'tok3'));
SELECT vis_try(format('SELECT * FROM ec_feed.get(%L, %L, %L)', 'vis_items', '{"id": 3}', :'tok3'));

-- a write whose transaction has not committed (a prepared transaction
-- keeps it open): pending, EC003 with a JSON errdetail, not_consistent
BEGIN;
INSERT INTO vis_items VALUES (4, 'four');
SELECT ec_feed.row_token(t) AS tok4 FROM vis_items t WHERE id = 4 \gset
PREPARE TRANSACTION 'vis_p4';
SELECT ec_feed.token_status(:'tok4');
SELECT * FROM ec_feed.get('vis_items', '{"id": 4}', :'tok4');
-- a plain read cannot tell "not yet" from "not there"
SELECT * FROM ec_feed.get('vis_items', '{"id": 4}');
SELECT ec_feed.require_visible(:'tok4');
SELECT d->>'code' AS code, d->>'reason' AS reason, length(d->>'suggestion') > 20 AS suggests,
	jsonb_typeof(d->'retry_after_ms') AS retry_type, (d->>'retry_after_ms')::int BETWEEN 100 AND 5000 AS retry_range,
	(SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(d) k) AS keys
FROM vis_detail(format('SELECT ec_feed.require_visible(%L)', :'tok4')) d;
-- a statement of its own waits (about 50 ms here), then gives up (its
-- retry_after_ms depends on how long it waited)
\set VERBOSITY terse
SELECT ec_feed.require_visible(:'tok4', 50);
\set VERBOSITY default
-- elsewhere (here: in PL/pgSQL) it does not wait: it says so and checks once
SET vis.tok4 = :'tok4';
DO $$
BEGIN
	PERFORM ec_feed.require_visible(current_setting('vis.tok4'), 600000);
END $$;
COMMIT PREPARED 'vis_p4';
SELECT ec_feed.token_status(:'tok4');
SELECT ec_feed.require_visible(:'tok4', 10);
SELECT status, data FROM ec_feed.get('vis_items', '{"id": 4}', :'tok4');
RESET vis.tok4;

-- get reads as the caller: privileges and row-level security apply
CREATE ROLE vis_reader;
GRANT USAGE ON SCHEMA ec_feed TO vis_reader;
SET ROLE vis_reader;
SELECT vis_try($$SELECT * FROM ec_feed.get('vis_items', '{"id": 1}')$$);
RESET ROLE;
GRANT SELECT ON vis_items TO vis_reader;
ALTER TABLE vis_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY vis_only_one ON vis_items FOR SELECT USING (id = 1);
SET ROLE vis_reader;
SELECT status, data FROM ec_feed.get('vis_items', '{"id": 1}');
SELECT status, data FROM ec_feed.get('vis_items', '{"id": 4}', :'tok4');
RESET ROLE;

-- composite and text keys, members in any order
CREATE TABLE vis_pair (a int, b text, v int, PRIMARY KEY (a, b));
SELECT ec_feed.track('vis_pair');
INSERT INTO vis_pair VALUES (1, 'x', 10);
SELECT ec_feed.row_token(t) AS tokp FROM vis_pair t \gset
SELECT status, data, token = :'tokp' AS same_token FROM ec_feed.get('vis_pair', '{"b": "x", "a": 1}', :'tokp');
SELECT vis_try(format('SELECT * FROM ec_feed.get(%L, %L, %L)', 'vis_pair', '{"b": "y", "a": 1}', :'tokp'));

DROP POLICY vis_only_one ON vis_items;
DROP TABLE vis_items, vis_other, vis_untracked, vis_pair;
REVOKE USAGE ON SCHEMA ec_feed FROM vis_reader;
DROP ROLE vis_reader;
DROP FUNCTION vis_try(text), vis_detail(text);
