-- read(rels => ...) reads only the named tables' changes (issue 14.4): a
-- page of a quiet table costs nothing for other tables' changes in the same
-- range of versions. The history rows each index scan returned are counted
-- by PostgreSQL's statistics of the current transaction (no flush inside a
-- transaction block, so the differences are exact).
--
-- How it failed: the range of versions was read through the primary key on
-- seq and every row of another table was fetched and skipped: the page of
-- the quiet table read 3,001 rows through history_pkey.
CREATE TABLE frs_busy (id int PRIMARY KEY, v text);
CREATE TABLE frs_quiet (id int PRIMARY KEY, v text);
CREATE TABLE frs_other (id int PRIMARY KEY, v text);
SELECT ec_feed.track('frs_busy'), ec_feed.track('frs_quiet'), ec_feed.track('frs_other');
SELECT ec_feed.cursor_now() AS frs_c0 \gset
INSERT INTO frs_busy SELECT g, 'busy' FROM generate_series(1, 3000) g;
INSERT INTO frs_quiet VALUES (1, 'quiet');
INSERT INTO frs_other VALUES (1, 'a');
INSERT INTO frs_busy VALUES (3001, 'busy');
INSERT INTO frs_other VALUES (2, 'b');
UPDATE frs_quiet SET v = 'again' WHERE id = 1;

CREATE FUNCTION frs_read_count(idx regclass) RETURNS bigint LANGUAGE sql AS $$
	SELECT pg_stat_get_xact_tuples_returned(idx)
$$;

BEGIN;
SELECT frs_read_count('ec_feed.history_pkey') AS pkey0,
	   frs_read_count('ec_feed.history_rel_seq_idx') AS relseq0 \gset
SELECT op, rel, key, data FROM ec_feed.read(:'frs_c0', 100, ARRAY['frs_quiet'::regclass]) WHERE op <> 'progress';
SELECT frs_read_count('ec_feed.history_pkey') - :pkey0 AS rows_read_by_version,
	   frs_read_count('ec_feed.history_rel_seq_idx') - :relseq0 AS rows_read_by_table;
COMMIT;

-- two tables: one scan each, merged in version order, the same changes as
-- the unfiltered feed has for them
SELECT op, rel, key, data FROM ec_feed.read(:'frs_c0', 100, ARRAY['frs_quiet', 'frs_other', 'frs_quiet']::regclass[])
WHERE op <> 'progress';
SELECT (SELECT array_agg(version ORDER BY n) FROM ec_feed.read(:'frs_c0', 100, ARRAY['frs_other', 'frs_quiet']::regclass[])
			WITH ORDINALITY r(cursor, op, rel, key, version, xid, data, changed, n) WHERE op <> 'progress')
	 = (SELECT array_agg(version ORDER BY n) FROM ec_feed.read(:'frs_c0', 10000)
			WITH ORDINALITY r(cursor, op, rel, key, version, xid, data, changed, n)
			WHERE rel IN ('frs_quiet'::regclass, 'frs_other'::regclass)) AS same_as_unfiltered;

-- paging: one row per page through both tables, resuming from row cursors
WITH RECURSIVE pages(n, c, version) AS (
	SELECT 0, :'frs_c0'::text, NULL::bigint
	UNION ALL
	SELECT p.n + 1, r.cursor, r.version
	FROM pages p, LATERAL (SELECT * FROM ec_feed.read(p.c, 1, ARRAY['frs_quiet', 'frs_other']::regclass[])
						   WHERE op <> 'progress' LIMIT 1) r
	WHERE p.n < 10
)
SELECT count(*) AS pages, bool_and(version > prev) AS versions_increase
FROM (SELECT version, lag(version) OVER (ORDER BY n) AS prev FROM pages WHERE n > 0) s
WHERE prev IS NOT NULL OR version IS NOT NULL;

-- an empty rels returns nothing but the progress row
SELECT op FROM ec_feed.read(:'frs_c0', 100, '{}'::regclass[]);

SELECT ec_feed.untrack('frs_busy'), ec_feed.untrack('frs_quiet'), ec_feed.untrack('frs_other');
DROP TABLE frs_busy, frs_quiet, frs_other;
DROP FUNCTION frs_read_count(regclass);
