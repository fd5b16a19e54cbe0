-- The history in segments: rotation, freezing, pruning by whole segments,
-- EC001 for a cursor that needs pruned changes, read(NULL) from the oldest
-- retained change, tokens and conditional writes across segments and a
-- prune. In a database of its own: the other tests read ec_feed.history.
CREATE DATABASE ec_prune_test;
\c ec_prune_test
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
SET ec_feed.retention_min = 0;
SET ec_feed.segment_rows = 3;
CREATE TABLE pr (id int PRIMARY KEY, v text, w text);
SELECT ec_feed.track('pr');

CREATE VIEW pr_segments AS
	SELECT id, relid, closed_at IS NOT NULL AS closed, closed_nxt IS NOT NULL AS closed_nxt,
		   frozen_at IS NOT NULL AS frozen, row_count,
		   coalesce(pg_sequence_last_value('ec_feed.segment_current'), 0) AS current
	FROM ec_feed.segment ORDER BY id;

-- nothing to remove; a spare segment is made ready
SELECT ec_feed.prune();
SELECT * FROM pr_segments;

SELECT cursor AS c_start FROM ec_feed.read(NULL, 100) WHERE op = 'progress' \gset
INSERT INTO pr SELECT g, 'a' FROM generate_series(1, 5) g;
SELECT ec_feed.token('pr', '{"id":1}') AS tok1 \gset
SELECT ec_feed.token('pr', '{"id":2}') AS tok2 \gset
UPDATE pr SET v = 'b' WHERE id = 2;
SELECT ec_feed.token('pr', '{"id":2}') AS tok2b \gset
-- segment 0 holds 6 versions (>= segment_rows): the spare becomes current
SELECT ec_feed.prune();
SELECT * FROM pr_segments;
-- a cursor in the middle: read one change of the five
SELECT cursor AS c_mid FROM ec_feed.read(:'c_start', 1) WHERE op <> 'progress' \gset

-- new transactions write into segment 1
INSERT INTO pr VALUES (6, 'a');
UPDATE pr SET v = 'c' WHERE id = 1;
SELECT (SELECT count(*) FROM ec_feed.history) AS in_0, (SELECT count(*) FROM ec_feed.history_1) AS in_1;

-- the feed reads across both segments, in version order
SELECT op, key, data->>'v' AS v FROM ec_feed.read(:'c_start', 100) WHERE op <> 'progress';

-- segment 0 is frozen (no writer left) and, with retention_min 0 and no
-- consumer, dropped whole; segment 1 is current
SELECT ec_feed.prune();
SELECT * FROM pr_segments;
SELECT to_regclass('ec_feed.history') AS segment_0_table;
SELECT horizon > '0'::xid8 AS horizon_moved, max_version > 0 AS max_version_set, rows_pruned FROM ec_feed.pruned;

-- a cursor that needs pruned changes: EC001 with the oldest cursor served
SELECT set_config('pr.c_mid', :'c_mid', false) IS NOT NULL AS set;
DO $$
DECLARE
	d text;
	m text;
BEGIN
	PERFORM * FROM ec_feed.read(current_setting('pr.c_mid'), 100);
EXCEPTION WHEN SQLSTATE 'EC001' THEN
	GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
	RAISE NOTICE 'EC001: %', m;
	RAISE NOTICE 'detail keys: %, code: %, oldest_cursor is _oldest_cursor(): %',
		(SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(d::jsonb) k),
		d::jsonb->>'code', d::jsonb->>'oldest_cursor' = ec_feed._oldest_cursor();
END;
$$;
\set VERBOSITY terse
SELECT ec_feed._check_retained(:'c_start');
\set VERBOSITY default

-- the oldest cursor and read(NULL) return what is retained: the changes of
-- transactions above the horizon (the two written into segment 1)
SELECT op, key, data->>'v' AS v FROM ec_feed.read(ec_feed._oldest_cursor(), 100) WHERE op <> 'progress';
SELECT op, key, data->>'v' AS v FROM ec_feed.read(NULL, 100) WHERE op <> 'progress';
-- and a page of one from NULL continues from its row cursor, also after
-- another prune that removes nothing
SELECT cursor AS c_null FROM ec_feed.read(NULL, 1) WHERE op <> 'progress' \gset
SELECT ec_feed.prune();
SELECT op, key FROM ec_feed.read(:'c_null', 100) WHERE op <> 'progress';

-- tokens: a token of a pruned version is still visible (its transaction
-- committed); a stale one can no longer prove what changed since: conflict,
-- changed_since NULL, never a merge
SELECT ec_feed.token_status(:'tok2b') AS tok2b_status;
SELECT status, changed_since FROM ec_feed.update_if('pr', '{"id":2}', :'tok2', '{"v":"x"}');
SELECT status FROM ec_feed.update_if('pr', '{"id":2}', :'tok2b', '{"v":"y"}');
-- the token of id 1 predates its update in segment 1: the history of the key
-- since it is gone with segment 0
SELECT status, changed_since FROM ec_feed.update_if('pr', '{"id":1}', :'tok1', '{"v":"z"}');
-- a stale token merges across segments: written in 1, changed in 2
SELECT ec_feed.token('pr', '{"id":6}') AS tok6 \gset
SET ec_feed.segment_rows = 1;
SELECT ec_feed.prune();
UPDATE pr SET w = 'w6' WHERE id = 6;
SELECT (SELECT count(*) FROM ec_feed.history_1) AS in_1, (SELECT count(*) FROM ec_feed.history_2) AS in_2;
SELECT status, changed_since, current->>'w' AS w FROM ec_feed.update_if('pr', '{"id":6}', :'tok6', '{"v":"m"}');
SELECT * FROM pr_segments;

-- retention_min keeps a frozen segment for readers that did not register
SET ec_feed.retention_min = '1h';
UPDATE pr SET v = 'r' WHERE id = 3;
SELECT ec_feed.prune();
UPDATE pr SET v = 's' WHERE id = 3;
SELECT ec_feed.prune();
SELECT ec_feed.prune();
SELECT * FROM pr_segments;

\c contrib_regression
DROP DATABASE ec_prune_test;
