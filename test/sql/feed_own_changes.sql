-- G3 for a row that its own transaction writes again before the row's insert
-- is recorded (issue 14.1): an AFTER trigger of the table that updates or
-- deletes the new row fires before ec_feed's record trigger (trigger names
-- sort), and a multi-row INSERT whose row trigger updates a row inserted
-- earlier in the same statement. The insert must come first in the feed.
--
-- How it failed: the record trigger's re-versioning probe (has_later_change
-- in src/history.c) saw the transaction's own later change of the key and
-- recorded the insert under a fresh version, after it: the feed returned
-- update, insert (a consumer ended with path = null), or delete, insert
-- (the consumer kept a row the table does not have).
--
-- Versions differ between runs: shown as whether each is above the previous
-- one of the key.
\set SHOW_CONTEXT never

-- the feed since a cursor applied to a copy; returns the feed in order
CREATE TABLE foc_copy (rel regclass, key jsonb, data jsonb, PRIMARY KEY (rel, key));
CREATE FUNCTION foc_follow(after text, rels regclass[])
RETURNS TABLE (n bigint, op text, key jsonb, data jsonb, after_previous boolean)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT f.*, f.version > lag(f.version) OVER (PARTITION BY f.key ORDER BY f.ord) AS later
		FROM ec_feed.read(after, 100, rels) WITH ORDINALITY AS f(cursor, op, rel, key, version, xid, data, changed, ord)
		WHERE f.op <> 'progress'
		ORDER BY f.ord
	LOOP
		DELETE FROM foc_copy c WHERE c.rel = r.rel AND c.key = r.key;
		IF r.op <> 'delete' THEN
			INSERT INTO foc_copy VALUES (r.rel, r.key, r.data);
		END IF;
		n := r.ord; op := r.op; key := r.key; data := r.data; after_previous := r.later;
		RETURN NEXT;
	END LOOP;
END;
$$;

-- 1. an AFTER INSERT trigger fills a column of the new row
CREATE TABLE foc_at2 (id int PRIMARY KEY, v text, path text);
SELECT ec_feed.track('foc_at2');
CREATE FUNCTION foc_at2_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE foc_at2 SET path = '/' || NEW.id WHERE id = NEW.id;
	RETURN NULL;
END $$;
CREATE TRIGGER a_fill AFTER INSERT ON foc_at2 FOR EACH ROW EXECUTE FUNCTION foc_at2_fill();
SELECT ec_feed.cursor_now() AS foc_c0 \gset
INSERT INTO foc_at2 (id, v) VALUES (1, 'x');
SELECT * FROM foc_follow(:'foc_c0', ARRAY['foc_at2'::regclass]);
SELECT c.data AS consumer_has, to_jsonb(t) - 'ec_version' - 'ec_xid' AS table_has
FROM foc_copy c JOIN foc_at2 t ON c.key = jsonb_build_object('id', t.id);

-- 2. an AFTER INSERT trigger deletes the new row
CREATE TABLE foc_gone (id int PRIMARY KEY, v text);
SELECT ec_feed.track('foc_gone');
CREATE FUNCTION foc_gone_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM foc_gone WHERE id = NEW.id;
	RETURN NULL;
END $$;
CREATE TRIGGER a_drop AFTER INSERT ON foc_gone FOR EACH ROW EXECUTE FUNCTION foc_gone_drop();
SELECT ec_feed.cursor_now() AS foc_c1 \gset
INSERT INTO foc_gone VALUES (1, 'short-lived');
SELECT * FROM foc_follow(:'foc_c1', ARRAY['foc_gone'::regclass]);
SELECT (SELECT count(*) FROM foc_copy WHERE rel = 'foc_gone'::regclass) AS consumer_rows,
	   (SELECT count(*) FROM foc_gone) AS table_rows;

-- 3. a reply counter, on a multi-row INSERT that lists a reply before its parent
CREATE TABLE foc_posts (id int PRIMARY KEY, parent int, replies int NOT NULL DEFAULT 0);
SELECT ec_feed.track('foc_posts');
CREATE FUNCTION foc_count_reply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE foc_posts SET replies = replies + 1 WHERE id = NEW.parent;
	RETURN NULL;
END $$;
CREATE TRIGGER a_count AFTER INSERT ON foc_posts FOR EACH ROW EXECUTE FUNCTION foc_count_reply();
SELECT ec_feed.cursor_now() AS foc_c2 \gset
INSERT INTO foc_posts (id, parent) VALUES (2, 1), (1, NULL);
SELECT * FROM foc_follow(:'foc_c2', ARRAY['foc_posts'::regclass]);
SELECT c.data AS consumer_has, to_jsonb(t) - 'ec_version' - 'ec_xid' AS table_has
FROM foc_copy c JOIN foc_posts t ON c.rel = 'foc_posts'::regclass AND c.key = jsonb_build_object('id', t.id)
ORDER BY t.id;

-- the same inside one explicit transaction with a later statement
SELECT ec_feed.cursor_now() AS foc_c3 \gset
BEGIN;
INSERT INTO foc_posts (id, parent) VALUES (4, 3), (3, NULL);
UPDATE foc_posts SET replies = replies + 10 WHERE id = 3;
COMMIT;
SELECT * FROM foc_follow(:'foc_c3', ARRAY['foc_posts'::regclass]);
SELECT count(*) AS copy_differs FROM (
	SELECT c.data FROM foc_copy c WHERE c.rel = 'foc_posts'::regclass
	EXCEPT SELECT to_jsonb(t) - 'ec_version' - 'ec_xid' FROM foc_posts t) d;

-- the insert keeps the version its BEFORE trigger drew: the row's first one
SELECT count(*) AS reversioned_inserts
FROM ec_feed.history h JOIN foc_posts t ON h.key = jsonb_build_object('id', t.id)
WHERE h.relid = 'foc_posts'::regclass AND h.op = 'i'
  AND h.seq <> (SELECT min(seq) FROM ec_feed.history h2 WHERE h2.relid = h.relid AND h2.key = h.key);

SELECT ec_feed.untrack('foc_at2'), ec_feed.untrack('foc_gone'), ec_feed.untrack('foc_posts');
DROP TABLE foc_at2, foc_gone, foc_posts, foc_copy;
DROP FUNCTION foc_follow(text, regclass[]), foc_at2_fill(), foc_gone_drop(), foc_count_reply();
