-- A token of a write rolled back to a savepoint names a version that never
-- existed (issue 16.3): token_status, require_visible and get raise 22023,
-- as for a transaction that rolled back, although the top-level
-- transaction the token carries committed.
--
-- How it fails without the fix (version_state in src/visibility.c): the
-- token counts as visible, and get() says found with the row as it was
-- before the write.

CREATE FUNCTION tr_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE q INTO r;
	RETURN coalesce(r, 'ok');
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- the three checks of a token, each as value or error
CREATE FUNCTION tr_checks(rel regclass, key jsonb, token text)
RETURNS TABLE (token_status text, require_visible text, get text) LANGUAGE sql AS $$
	SELECT tr_try(format('SELECT ec_feed.token_status(%L)', token)),
		   tr_try(format('SELECT ec_feed.require_visible(%L)', token)),
		   tr_try(format('SELECT status || '' '' || data::text FROM ec_feed.get(%s, %L, %L)', rel::oid, key, token))
$$;

CREATE TABLE tr_items (id int PRIMARY KEY, v text);
SELECT ec_feed.track('tr_items');
INSERT INTO tr_items VALUES (1, 'one');
SELECT ec_feed.row_token(t) AS t1 FROM tr_items t \gset

-- update_if in a savepoint that is rolled back; the transaction commits
BEGIN;
SAVEPOINT s;
SELECT token AS t2 FROM ec_feed.update_if('tr_items', '{"id": 1}', :'t1', '{"v": "rolled back"}') \gset
-- in the writing transaction: visible while the savepoint stands, not after
SELECT * FROM tr_checks('tr_items', '{"id": 1}', :'t2');
ROLLBACK TO s;
SELECT * FROM tr_checks('tr_items', '{"id": 1}', :'t2');
-- an insert rolled back the same way
SAVEPOINT s2;
INSERT INTO tr_items VALUES (2, 'two') RETURNING ec_feed.row_token(tr_items) AS t3 \gset
ROLLBACK TO s2;
UPDATE tr_items SET v = 'one, committed' WHERE id = 1 RETURNING ec_feed.row_token(tr_items) AS t4 \gset
COMMIT;

SELECT 't2 (update rolled back)' AS token, * FROM tr_checks('tr_items', '{"id": 1}', :'t2')
UNION ALL
SELECT 't3 (insert rolled back)', * FROM tr_checks('tr_items', '{"id": 2}', :'t3')
UNION ALL
SELECT 't4 (same transaction, committed)', * FROM tr_checks('tr_items', '{"id": 1}', :'t4')
UNION ALL
SELECT 't1 (before)', * FROM tr_checks('tr_items', '{"id": 1}', :'t1');

-- a write in a PL/pgSQL exception block that caught its error
CREATE FUNCTION tr_write_and_fail() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	t text;
BEGIN
	UPDATE tr_items SET v = 'outer' WHERE id = 1;
	BEGIN
		UPDATE tr_items SET v = 'inner' WHERE id = 1 RETURNING ec_feed.row_token(tr_items) INTO t;
		RAISE EXCEPTION 'undo the inner write';
	EXCEPTION WHEN raise_exception THEN
		RETURN t;
	END;
END $$;
SELECT tr_write_and_fail() AS t5 \gset
SELECT * FROM tr_checks('tr_items', '{"id": 1}', :'t5');

-- a released savepoint's write is there
BEGIN;
SAVEPOINT s;
UPDATE tr_items SET v = 'released' WHERE id = 1 RETURNING ec_feed.row_token(tr_items) AS t6 \gset
RELEASE s;
COMMIT;
SELECT * FROM tr_checks('tr_items', '{"id": 1}', :'t6');

-- Without history the rollback cannot be told: the token counts as visible
-- (documented in the README)
CREATE TABLE tr_nohist (id int PRIMARY KEY, v text);
SELECT ec_feed.track('tr_nohist', history => false);
INSERT INTO tr_nohist VALUES (1, 'one');
BEGIN;
SAVEPOINT s;
UPDATE tr_nohist SET v = 'rolled back' RETURNING ec_feed.row_token(tr_nohist) AS t7 \gset
ROLLBACK TO s;
UPDATE tr_nohist SET v = 'committed';
COMMIT;
SELECT * FROM tr_checks('tr_nohist', '{"id": 1}', :'t7');

SET client_min_messages = warning;
SELECT ec_feed.untrack('tr_items'), ec_feed.untrack('tr_nohist');
RESET client_min_messages;
DROP TABLE tr_items, tr_nohist;
DROP FUNCTION tr_write_and_fail(), tr_checks(regclass, jsonb, text), tr_try(text);
