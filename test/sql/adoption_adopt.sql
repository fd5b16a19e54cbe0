-- Adopting the rows a table had before track() (issue 15.2): they share one
-- version, older than the table's history_since, so a stale token of one of
-- them always conflicts with changed_since NULL. CALL ec_feed.adopt() gives
-- each a version of its own with a history entry (an update whose changed is
-- empty), in batches of pages each committed on its own; afterwards their
-- stale tokens merge like any other.

CREATE TABLE ada_items (id int PRIMARY KEY, a text, b text);
INSERT INTO ada_items SELECT g, 'a' || g, 'b' || g FROM generate_series(1, 300) g;
SELECT md5(string_agg(format('%s %s %s', id, a, b), ',' ORDER BY id)) AS data_before FROM ada_items \gset
SELECT ec_feed.track('ada_items');
SELECT count(DISTINCT ec_version) AS versions,
	   bool_and(ec_version < t.history_since) AS all_before_history
FROM ada_items, ec_feed.tracked_rel t WHERE t.relid = 'ada_items'::regclass;

-- before: a stale token of such a row conflicts, the history cannot tell
SELECT ec_feed.token('ada_items', '{"id": 6}') AS t6_before \gset
UPDATE ada_items SET b = 'b6-changed' WHERE id = 6;
SELECT status, changed_since FROM ec_feed.update_if('ada_items', '{"id": 6}', :'t6_before', '{"a": "mine"}');
UPDATE ada_items SET b = 'b6' WHERE id = 6;

-- the adoption: row 6, written since track(), needs nothing; batches of one page
SELECT cursor AS ada_cursor FROM ec_feed.read(NULL, 100000, ARRAY['ada_items'::regclass]) WHERE op = 'progress' \gset
SELECT ec_feed.token('ada_items', '{"id": 7}') AS t7_before \gset
CALL ec_feed.adopt('ada_items', 1);
SELECT count(DISTINCT ec_version) AS versions, count(*) AS rows,
	   bool_and(ec_version >= t.history_since) AS all_in_history
FROM ada_items, ec_feed.tracked_rel t WHERE t.relid = 'ada_items'::regclass;
SELECT md5(string_agg(format('%s %s %s', id, a, b), ',' ORDER BY id)) = :'data_before' AS data_unchanged FROM ada_items;
-- what a consumer sees: an update with empty changed per adopted row
SELECT op, changed, count(*) FROM ec_feed.read(:'ada_cursor', 10000, ARRAY['ada_items'::regclass])
GROUP BY op, changed ORDER BY op;
-- resumable: a second run finds nothing left
CALL ec_feed.adopt('ada_items');

-- after: a token read after the adoption merges over a later change
SELECT ec_feed.token('ada_items', '{"id": 7}') AS t7 \gset
UPDATE ada_items SET b = 'b7-changed' WHERE id = 7;
SELECT status, changed_since FROM ec_feed.update_if('ada_items', '{"id": 7}', :'t7', '{"a": "mine"}');
-- a token read before the adoption still cannot be proven: conflict
SELECT status, changed_since FROM ec_feed.update_if('ada_items', '{"id": 7}', :'t7_before', '{"a": "again"}');
-- delete_if: the history shows the adopted row deleted since its token
SELECT ec_feed.token('ada_items', '{"id": 8}') AS t8 \gset
DELETE FROM ada_items WHERE id = 8;
SELECT status FROM ec_feed.delete_if('ada_items', '{"id": 8}', :'t8');

-- refused: a table without history, a table with UPDATE triggers of its own
-- (unless fire_triggers), in a transaction block, by a role that does not
-- own the table, bad arguments
CREATE TABLE ada_quiet (id int PRIMARY KEY);
SELECT ec_feed.track('ada_quiet', history => false);
CALL ec_feed.adopt('ada_quiet');
CREATE TABLE ada_trig (id int PRIMARY KEY, touched int DEFAULT 0);
INSERT INTO ada_trig SELECT generate_series(1, 5);
CREATE FUNCTION ada_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.touched := NEW.touched + 1; RETURN NEW; END $$;
CREATE TRIGGER ada_touch BEFORE UPDATE ON ada_trig FOR EACH ROW EXECUTE FUNCTION ada_touch();
SELECT ec_feed.track('ada_trig');
CALL ec_feed.adopt('ada_trig');
CALL ec_feed.adopt('ada_trig', fire_triggers => true);
SELECT sum(touched) AS touched FROM ada_trig;
BEGIN;
CALL ec_feed.adopt('ada_items');
ROLLBACK;
CREATE ROLE ada_role;
SET ROLE ada_role;
CALL ec_feed.adopt('ada_items');
RESET ROLE;
CALL ec_feed.adopt('ada_items', 0);

DROP TABLE ada_items, ada_quiet, ada_trig;
DROP FUNCTION ada_touch();
DROP ROLE ada_role;
