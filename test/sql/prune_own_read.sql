-- read()'s own pruning never drops a segment that the same transaction has
-- read: a function reading page after page (not a transaction block, so
-- each read() may prune at its end) keeps getting its pages, no EC001.
-- In a database of its own, like prune.sql.
CREATE DATABASE ec_prune_own_test;
\c ec_prune_own_test
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
CREATE TABLE sp_t (id int PRIMARY KEY, v int);
SELECT ec_feed.track('sp_t');
SET ec_feed.segment_rows = 1;
SET ec_feed.retention_min = '1h';
SELECT ec_feed.prune();
SELECT ec_feed.cursor_now() AS c0 \gset
INSERT INTO sp_t SELECT g, g FROM generate_series(1, 3) g;
-- segment 0 closed, then frozen and kept (retention_min)
SELECT ec_feed.prune();
SELECT ec_feed.prune();
SELECT id, frozen_at IS NOT NULL AS frozen FROM ec_feed.segment ORDER BY id;
SET ec_feed.retention_min = 0;
SELECT pg_sleep(1.1);
SELECT set_config('sp.c0', :'c0', false) IS NOT NULL AS set;
DO $$
DECLARE
	c text;
	n int;
BEGIN
	SELECT cursor INTO c FROM ec_feed.read(current_setting('sp.c0'), 1) WHERE op <> 'progress';
	SELECT count(*) INTO n FROM ec_feed.read(c, 100) WHERE op <> 'progress';
	RAISE NOTICE 'second page: % changes', n;
END;
$$;
-- the next statement's pruning may drop it
SELECT ec_feed.prune();
SELECT id FROM ec_feed.segment ORDER BY id;
\c contrib_regression
DROP DATABASE ec_prune_own_test;
