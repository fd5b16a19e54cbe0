-- Every row's cursor resumes right after that row, and it is the cursor a
-- page ending at that row returns in its progress row: the two are encoded
-- by different code (ec_cursor_rows_encode() rewrites only the tail of one
-- text buffer per row; ec_cursor_encode() seals the whole cursor), so they
-- are compared byte for byte, over many deltas and versions. Prepared
-- transactions, open at some marks, give the prefix the marks share other
-- lengths, so the tail that is rewritten per row starts at different bytes.
CREATE TABLE frc_items (id int PRIMARY KEY, v text);
SELECT ec_feed.track('frc_items');
CREATE TEMP TABLE frc_rows (delta int, n bigint, cursor text, op text, version bigint);

-- deltas of 1 to 20 changes, each read by one page as it commits
CREATE TABLE frc_page (c text);
INSERT INTO frc_page SELECT ec_feed.cursor_now();
CREATE PROCEDURE frc_fill(from_delta int, to_delta int) LANGUAGE plpgsql AS $$
DECLARE
	cur text := (SELECT f.c FROM frc_page f);
BEGIN
	FOR d IN from_delta..to_delta LOOP
		INSERT INTO frc_items SELECT 100 * d + g, repeat('x', g) FROM generate_series(1, d) g;
		COMMIT;
		INSERT INTO frc_rows
			SELECT d, r.n, r.cursor, r.op, r.version
			FROM ec_feed.read(cur, 1000, ARRAY['frc_items'::regclass])
				 WITH ORDINALITY AS r(cursor, op, rel, key, version, xid, data, changed, n);
		SELECT f.cursor INTO cur FROM frc_rows f WHERE f.delta = d AND f.op = 'progress';
		UPDATE frc_page SET c = cur;
		COMMIT;
	END LOOP;
END
$$;
CALL frc_fill(1, 7);
BEGIN;
SELECT pg_current_xact_id() IS NOT NULL AS frc_xid;
PREPARE TRANSACTION 'frc_open_1';
CALL frc_fill(8, 14);
BEGIN;
SELECT pg_current_xact_id() IS NOT NULL AS frc_xid;
PREPARE TRANSACTION 'frc_open_2';
CALL frc_fill(15, 20);
ROLLBACK PREPARED 'frc_open_1';
ROLLBACK PREPARED 'frc_open_2';
SELECT count(*) FILTER (WHERE op = 'insert') AS changes,
	   count(*) FILTER (WHERE op = 'progress') AS pages,
	   count(DISTINCT cursor) FILTER (WHERE op = 'insert') AS distinct_row_cursors
FROM frc_rows;

-- resuming at row n returns row n + 1 of the same delta, with the same cursor
SELECT count(*) AS resumed,
	   count(*) FILTER (WHERE nx.version = f2.version AND nx.cursor = f2.cursor) AS same_row_and_cursor
FROM frc_rows f
JOIN frc_rows f2 ON f2.delta = f.delta AND f2.n = f.n + 1 AND f2.op = 'insert'
CROSS JOIN LATERAL (SELECT r.cursor, r.version
					FROM ec_feed.read(f.cursor, 1, ARRAY['frc_items'::regclass]) r
					WHERE r.op <> 'progress') nx
WHERE f.op = 'insert';

-- a page that stops at row n + 2 (max_rows) before the delta's end ends
-- with row n + 2's cursor (at the end, the progress row moves on to the
-- delta's newer mark instead)
SELECT count(*) AS pages,
	   count(*) FILTER (WHERE p.cursor = f2.cursor) AS progress_is_row_cursor
FROM frc_rows f
JOIN frc_rows f2 ON f2.delta = f.delta AND f2.n = f.n + 2 AND f2.op = 'insert'
JOIN frc_rows f3 ON f3.delta = f.delta AND f3.n = f.n + 3 AND f3.op = 'insert'
CROSS JOIN LATERAL (SELECT r.cursor
					FROM ec_feed.read(f.cursor, 2, ARRAY['frc_items'::regclass]) r
					WHERE r.op = 'progress') p
WHERE f.op = 'insert';

-- the last row of a delta resumes at the first change of the next one
SELECT count(*) AS last_rows,
	   count(*) FILTER (WHERE nx.version = f2.version) AS next_delta_first
FROM frc_rows f
JOIN frc_rows f2 ON f2.delta = f.delta + 1 AND f2.n = 1
CROSS JOIN LATERAL (SELECT r.version
					FROM ec_feed.read(f.cursor, 1, ARRAY['frc_items'::regclass]) r
					WHERE r.op <> 'progress') nx
WHERE f.op = 'insert' AND NOT EXISTS (
	SELECT FROM frc_rows f4 WHERE f4.delta = f.delta AND f4.n = f.n + 1 AND f4.op = 'insert');

DROP PROCEDURE frc_fill(int, int);
DROP TABLE frc_page;
SELECT ec_feed.untrack('frc_items');
DROP TABLE frc_items;
