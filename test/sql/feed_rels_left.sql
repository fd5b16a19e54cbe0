-- read(rels => ...) naming a table that left the feed (untracked, dropped,
-- history switched off): while a change of it is retained, it is read like
-- a tracked table, up to and including its untrack change; the privileges
-- are those of a tracked table (a table that exists) or of rels NULL (a
-- dropped one: its untrack to every caller, its other changes to the
-- extension's owner). A table with no retained change is still an error.
-- track(history => false) on a table that records history records the same
-- untrack change.
--
-- How it failed: check_rels() refused every table not tracked with history
-- (55000, 42P01), so a consumer reading with rels never saw the untrack;
-- track(history => false) recorded nothing.
CREATE TABLE frl_a (id int PRIMARY KEY, v text);
CREATE TABLE frl_b (id int PRIMARY KEY, v text);
CREATE TABLE frl_c (id int PRIMARY KEY, v text);
CREATE TABLE frl_never (id int PRIMARY KEY, v text);
SELECT ec_feed.track('frl_a'), ec_feed.track('frl_b'), ec_feed.track('frl_c');
SELECT ec_feed.cursor_now() AS frl_c0 \gset
INSERT INTO frl_a VALUES (1, 'a1'), (2, 'a2');
INSERT INTO frl_b VALUES (1, 'b1');
INSERT INTO frl_c VALUES (1, 'c1');
UPDATE frl_a SET v = 'a2x' WHERE id = 2;

-- 1. untrack, then read with rels: the changes, then the untrack
SELECT ec_feed.untrack('frl_a');
INSERT INTO frl_a VALUES (3, 'not recorded');
SELECT op, rel, key, data, changed FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_a'::regclass]);
-- with a table still tracked: merged in version order, as rels NULL has them
SELECT (SELECT array_agg(version ORDER BY n) FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_a', 'frl_b']::regclass[])
			WITH ORDINALITY r(cursor, op, rel, key, version, xid, data, changed, n) WHERE op <> 'progress')
	 = (SELECT array_agg(version ORDER BY n) FROM ec_feed.read(:'frl_c0', 100)
			WITH ORDINALITY r(cursor, op, rel, key, version, xid, data, changed, n)
			WHERE rel IN ('frl_a'::regclass, 'frl_b'::regclass)) AS same_as_unfiltered;
-- paging one row at a time reaches the untrack too
WITH RECURSIVE pages(n, c, op) AS (
	SELECT 0, :'frl_c0'::text, NULL::text
	UNION ALL
	SELECT p.n + 1, r.cursor, r.op
	FROM pages p, LATERAL (SELECT * FROM ec_feed.read(p.c, 1, ARRAY['frl_a'::regclass])
						   WHERE op <> 'progress' LIMIT 1) r
	WHERE p.n < 10
)
SELECT array_agg(op ORDER BY n) AS ops FROM pages WHERE n > 0;

-- 2. history switched off: recorded as an untrack, and rels may still name it
SELECT ec_feed.cursor_now() AS frl_c1 \gset
UPDATE frl_c SET v = 'c1x' WHERE id = 1;
SELECT ec_feed.track('frl_c', history => false);
UPDATE frl_c SET v = 'not recorded' WHERE id = 1;
SELECT history FROM ec_feed.tracked WHERE rel = 'frl_c'::regclass;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'frl_c1', 100) WHERE op <> 'progress';
SELECT op, rel, key, data, changed FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_c'::regclass]);
-- switched off again, or tracked without history from the start: nothing
SELECT ec_feed.cursor_now() AS frl_c2 \gset
SELECT ec_feed.track('frl_c', history => false);
SELECT ec_feed.track('frl_never', history => false);
SELECT op, rel FROM ec_feed.read(:'frl_c2', 100);
-- switched on again: recorded after the untrack
SELECT ec_feed.track('frl_c');
UPDATE frl_c SET v = 'c1y' WHERE id = 1;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'frl_c1', 100, ARRAY['frl_c'::regclass]);
-- rolled back: nothing recorded, history still on
BEGIN;
SELECT ec_feed.track('frl_c', history => false);
ROLLBACK;
SELECT op, rel FROM ec_feed.read(:'frl_c2', 100, ARRAY['frl_c'::regclass]) WHERE op <> 'update';

-- 3. privileges: a role that may not read the table gets 42501 as for a
-- tracked one; one that may, reads it
CREATE ROLE frl_reader;
GRANT SELECT ON frl_b TO frl_reader;
SET ROLE frl_reader;
\set VERBOSITY sqlstate
SELECT op FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_a'::regclass]);
\set VERBOSITY default
RESET ROLE;
GRANT SELECT ON frl_a TO frl_reader;
SET ROLE frl_reader;
SELECT op, rel, key FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_a'::regclass]);
RESET ROLE;
-- row-level security on it: refused as for a tracked table
ALTER TABLE frl_a ENABLE ROW LEVEL SECURITY;
SET ROLE frl_reader;
\set VERBOSITY sqlstate
SELECT op FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_a'::regclass]);
\set VERBOSITY default
RESET ROLE;
ALTER TABLE frl_a DISABLE ROW LEVEL SECURITY;

-- 4. DROP, then read with rels by OID: the owner of the history reads its
-- changes and the drop; another role only the drop (its untrack)
SELECT 'frl_b'::regclass::oid AS frl_b_oid \gset
DELETE FROM frl_b WHERE id = 1;
DROP TABLE frl_b;
SELECT op, rel::oid = :frl_b_oid AS is_frl_b, key, data, changed
FROM ec_feed.read(:'frl_c0', 100, ARRAY[:frl_b_oid::regclass]);
SET ROLE frl_reader;
SELECT op, rel::oid = :frl_b_oid AS is_frl_b, key, data, changed
FROM ec_feed.read(:'frl_c0', 100, ARRAY[:frl_b_oid::regclass]);
-- with a table it may read: that table's changes and the drop, in order
SELECT op, rel::oid = :frl_b_oid AS is_frl_b, rel = 'frl_a'::regclass AS is_frl_a, key
FROM ec_feed.read(:'frl_c0', 100, ARRAY[:frl_b_oid::regclass, 'frl_a'::regclass]);
RESET ROLE;

-- 5. no retained change: the errors of before (a typo is not an empty feed)
\set VERBOSITY sqlstate
SELECT op FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_never'::regclass]);
CREATE TABLE frl_untracked (id int PRIMARY KEY);
SELECT op FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_untracked'::regclass]);
SELECT op FROM ec_feed.read(:'frl_c0', 100, ARRAY[4000000001::regclass]);
\set VERBOSITY default
SELECT op FROM ec_feed.read(:'frl_c0', 100, ARRAY['frl_untracked'::regclass]);

SELECT ec_feed.untrack('frl_c');
DROP TABLE frl_a, frl_c, frl_never, frl_untracked;
DROP ROLE frl_reader;
