-- TRUNCATE of a tracked table (issue 8.5): with ec_feed.allow_truncate on,
-- it reaches the feed as one change with op 'truncate' (rel set; key, data
-- and changed NULL), in version order with the table's other changes, so
-- that a consumer empties its copy; tokens of the truncated rows answer as
-- after a DELETE, and a stale token never merges across a truncate.
--
-- Versions, xids and cursors differ between runs: only comparisons are
-- printed. trf_feed() reads the feed from where it last stopped and applies
-- it to a replica (trf_replica); trf_check(table) lists the keys where the
-- replica differs from the table: it must return no rows.
\set SHOW_CONTEXT never
\set VERBOSITY default

CREATE TABLE trf_pos (cur text);
INSERT INTO trf_pos SELECT ec_feed.cursor_now();
CREATE TABLE trf_replica (rel regclass, key jsonb, data jsonb, PRIMARY KEY (rel, key));

CREATE FUNCTION trf_feed(rels regclass[] DEFAULT NULL)
RETURNS TABLE (n int, op text, rel regclass, key jsonb, data jsonb, changed text[],
			   version bigint, xid xid8)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	progress text;
BEGIN
	n := 0;
	FOR r IN SELECT * FROM ec_feed.read((SELECT cur FROM trf_pos), 10000, rels) AS f LOOP
		IF r.op = 'progress' THEN
			progress := r.cursor;
			CONTINUE;
		END IF;
		n := n + 1;
		op := r.op; rel := r.rel; key := r.key; data := r.data;
		changed := r.changed; version := r.version; xid := r.xid;
		IF r.op = 'truncate' THEN
			DELETE FROM trf_replica p WHERE p.rel = r.rel;
		ELSIF r.op = 'delete' THEN
			DELETE FROM trf_replica p WHERE p.rel = r.rel AND p.key = r.key;
		ELSE
			INSERT INTO trf_replica AS p VALUES (r.rel, r.key, r.data)
			ON CONFLICT ON CONSTRAINT trf_replica_pkey DO UPDATE SET data = excluded.data;
		END IF;
		RETURN NEXT;
	END LOOP;
	UPDATE trf_pos SET cur = progress;
END;
$$;

-- the table's own rows (not its children's) as the feed shows them
-- (single-column key "id")
CREATE FUNCTION trf_check(tab regclass)
RETURNS TABLE (key jsonb, problem text)
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT coalesce(t.key, r.key),
			CASE WHEN t.key IS NULL THEN ''in the replica, not in the table''
				 WHEN r.key IS NULL THEN ''in the table, not in the replica''
				 ELSE ''data differs'' END
		 FROM (SELECT jsonb_build_object(''id'', x.id) AS key,
					  to_jsonb(x) - ''ec_version'' - ''ec_xid'' AS data FROM ONLY %s x) t
		 FULL JOIN (SELECT * FROM trf_replica WHERE rel = $1) r ON t.key = r.key
		 WHERE t.key IS NULL OR r.key IS NULL OR t.data <> r.data
		 ORDER BY 1', tab) USING tab;
END;
$$;

CREATE TABLE trf_a (id serial PRIMARY KEY, v text);
CREATE TABLE trf_b (id int PRIMARY KEY, a_id int REFERENCES trf_a);
SELECT ec_feed.track('trf_a'), ec_feed.track('trf_b');
INSERT INTO trf_a (v) VALUES ('a1'), ('a2'), ('a3');
INSERT INTO trf_b VALUES (10, 1), (20, 2);
SELECT n, op, rel, key, data FROM trf_feed();
SELECT ec_feed.token('trf_a', '{"id":1}') AS a1_token,
	ec_feed.token('trf_a', '{"id":2}') AS a2_token,
	ec_feed.token('trf_b', '{"id":10}') AS b10_token \gset

------------------------------------------------------------------------
-- the guard still refuses without the setting; a refused TRUNCATE records
-- nothing
------------------------------------------------------------------------
TRUNCATE trf_a CASCADE;
SELECT count(*) AS rows_left FROM trf_a;
SELECT count(*) AS changes FROM trf_feed();

------------------------------------------------------------------------
-- TRUNCATE ... RESTART IDENTITY CASCADE of two tracked tables: one change
-- each, in version order, key/data/changed NULL, xid the truncating
-- transaction's; the replica is empty
------------------------------------------------------------------------
SET ec_feed.allow_truncate = on;
BEGIN;
TRUNCATE trf_a RESTART IDENTITY CASCADE;
SELECT pg_current_xact_id() AS trunc_xid \gset
COMMIT;
SELECT n, op, rel, key, data, changed, xid = :'trunc_xid' AS truncating_xid,
	version > (SELECT max(seq) FROM ec_feed.history h
			   WHERE h.relid IN ('trf_a'::regclass, 'trf_b'::regclass) AND h.op <> 't') AS after_every_row_change
FROM trf_feed();
SELECT * FROM trf_check('trf_a');
SELECT * FROM trf_check('trf_b');
-- the history holds one table-level entry per table: key and data JSON null
SELECT relid::regclass, op, key, data, changed, prev_version
FROM ec_feed.history WHERE relid IN ('trf_a'::regclass, 'trf_b'::regclass) AND op = 't'
ORDER BY seq;

------------------------------------------------------------------------
-- tokens of truncated rows: like deleted rows
------------------------------------------------------------------------
SELECT status, token IS NULL AS no_token, current, conflicts, changed_since
FROM ec_feed.update_if('trf_a', '{"id":2}', :'a2_token', '{"v":"x"}');
SELECT status FROM ec_feed.delete_if('trf_b', '{"id":10}', :'b10_token');
-- the write the token names stays visible; the row is gone
SELECT ec_feed.token_status(:'a2_token');
SELECT status, data, token FROM ec_feed.get('trf_a', '{"id":2}', :'a2_token');
SELECT ec_feed.require_visible(:'a2_token');
-- a role under row-level security learns nothing from the history
CREATE ROLE trf_writer;
GRANT USAGE ON SCHEMA public TO trf_writer;
GRANT SELECT, UPDATE ON trf_a TO trf_writer;
ALTER TABLE trf_a ENABLE ROW LEVEL SECURITY;
CREATE POLICY trf_all ON trf_a USING (true);
SET ROLE trf_writer;
SELECT status FROM ec_feed.update_if('trf_a', '{"id":2}', :'a2_token', '{"v":"x"}');
RESET ROLE;
DROP POLICY trf_all ON trf_a;
ALTER TABLE trf_a DISABLE ROW LEVEL SECURITY;

------------------------------------------------------------------------
-- RESTART IDENTITY gave the key 1 again: an old token of key 1 never
-- merges across the truncate, not even with the value already there (a
-- DELETE and INSERT instead would merge that: below)
------------------------------------------------------------------------
INSERT INTO trf_a (v) VALUES ('a1');
SELECT id FROM trf_a;
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('trf_a', '{"id":1}', :'a1_token', '{"v":"a1"}');
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('trf_a', '{"id":1}', :'a1_token', '{"v":"other"}');
SELECT status, conflicts, changed_since FROM ec_feed.delete_if('trf_a', '{"id":1}', :'a1_token');
-- the same with DELETE and INSERT: the history proves the row replaced
SELECT ec_feed.token('trf_a', '{"id":1}') AS a1_new \gset
DELETE FROM trf_a WHERE id = 1;
INSERT INTO trf_a VALUES (1, 'a1');
SELECT status, conflicts, changed_since
FROM ec_feed.update_if('trf_a', '{"id":1}', :'a1_new', '{"v":"a1"}');
-- a token taken after the truncate merges as usual
SELECT ec_feed.token('trf_a', '{"id":1}') AS a1_after \gset
UPDATE trf_a SET v = v WHERE id = 1;
SELECT status, current, changed_since FROM ec_feed.update_if('trf_a', '{"id":1}', :'a1_after', '{"v":"a1c"}');
SELECT n, op, rel, key, data, changed FROM trf_feed();
SELECT * FROM trf_check('trf_a');

------------------------------------------------------------------------
-- a TRUNCATE rolled back, or in a savepoint rolled back: no change
------------------------------------------------------------------------
BEGIN;
TRUNCATE trf_b;
ROLLBACK;
BEGIN;
INSERT INTO trf_b VALUES (30, 1);
SAVEPOINT s;
TRUNCATE trf_b;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT n, op, rel, key, data FROM trf_feed();
SELECT * FROM trf_check('trf_b');

------------------------------------------------------------------------
-- one transaction: a write before the TRUNCATE, the TRUNCATE, writes after
-- it: the feed returns them in that order, the replica ends equal
------------------------------------------------------------------------
BEGIN;
UPDATE trf_a SET v = 'before' WHERE id = 1;
TRUNCATE trf_b;
TRUNCATE ONLY trf_a CASCADE;
INSERT INTO trf_a (v) VALUES ('after');
INSERT INTO trf_b VALUES (40, (SELECT max(id) FROM trf_a));
UPDATE trf_a SET v = 'after2';
COMMIT;
SELECT n, op, rel, key, data, changed FROM trf_feed();
SELECT * FROM trf_check('trf_a');
SELECT * FROM trf_check('trf_b');

------------------------------------------------------------------------
-- rels: only the named table's truncate; the other is filtered out
------------------------------------------------------------------------
SELECT cur AS before_rels FROM trf_pos \gset
TRUNCATE trf_a CASCADE;
SELECT op, rel, key, data FROM ec_feed.read(:'before_rels', 100, '{trf_b}') WHERE op <> 'progress';
SELECT op, rel, key, data FROM ec_feed.read(:'before_rels', 100, '{trf_a,trf_b}') WHERE op <> 'progress';
SELECT n, op, rel FROM trf_feed();

------------------------------------------------------------------------
-- TRUNCATE ONLY of an inheritance parent: the child keeps its rows and
-- gets no change; without ONLY both do
------------------------------------------------------------------------
CREATE TABLE trf_parent (id int PRIMARY KEY, v text);
CREATE TABLE trf_child (id int PRIMARY KEY, v text) INHERITS (trf_parent);
SELECT ec_feed.track('trf_parent'), ec_feed.track('trf_child');
INSERT INTO trf_parent VALUES (1, 'p');
INSERT INTO trf_child VALUES (2, 'c');
TRUNCATE ONLY trf_parent;
SELECT n, op, rel FROM trf_feed();
SELECT count(*) AS child_rows FROM ONLY trf_child;
INSERT INTO trf_parent VALUES (3, 'p');
TRUNCATE trf_parent;
SELECT n, op, rel FROM trf_feed();
SELECT * FROM trf_check('trf_parent');
SELECT * FROM trf_check('trf_child');

------------------------------------------------------------------------
-- a tracked partition: TRUNCATE of the partitioned table records it
------------------------------------------------------------------------
-- (the managed columns come from the partitioned table: a partition
-- cannot get columns of its own)
CREATE TABLE trf_part (id int PRIMARY KEY, v text,
	ec_version bigint NOT NULL DEFAULT 0, ec_xid xid8 NOT NULL DEFAULT '0') PARTITION BY RANGE (id);
CREATE TABLE trf_part_1 PARTITION OF trf_part FOR VALUES FROM (0) TO (100);
SELECT ec_feed.track('trf_part_1');
INSERT INTO trf_part VALUES (5, 'x');
TRUNCATE trf_part;
SELECT n, op, rel FROM trf_feed();
SELECT * FROM trf_check('trf_part_1');

------------------------------------------------------------------------
-- logical replication applies a TRUNCATE with session_replication_role =
-- replica: the guard fires there too (ENABLE ALWAYS) and records it,
-- without the setting and never refusing (a refusal would stop the
-- subscription); test/t/077_logical_subscriber.pl has a real subscriber
------------------------------------------------------------------------
INSERT INTO trf_b VALUES (50, NULL);
SELECT n, op, rel, key FROM trf_feed();
RESET ec_feed.allow_truncate;
SET session_replication_role = replica;
TRUNCATE trf_b;
RESET session_replication_role;
SELECT n, op, rel, key FROM trf_feed();
SELECT * FROM trf_check('trf_b');
SET ec_feed.allow_truncate = on;

------------------------------------------------------------------------
-- a table tracked without history: allowed with the setting, nothing
-- recorded (nothing records its other changes either, and read() refuses
-- it in rels); its tokens answer not_found
------------------------------------------------------------------------
CREATE TABLE trf_nohist (id int PRIMARY KEY, v text);
SELECT ec_feed.track('trf_nohist', history => false);
INSERT INTO trf_nohist VALUES (1, 'a');
SELECT ec_feed.token('trf_nohist', '{"id":1}') AS nh_token \gset
TRUNCATE trf_nohist;
SELECT count(*) AS history_entries FROM ec_feed.history WHERE relid = 'trf_nohist'::regclass;
SELECT count(*) AS changes FROM trf_feed();
SELECT status FROM ec_feed.update_if('trf_nohist', '{"id":1}', :'nh_token', '{"v":"b"}');
RESET ec_feed.allow_truncate;
TRUNCATE trf_nohist;

------------------------------------------------------------------------
-- the guard function records only as ec_feed's own BEFORE TRUNCATE trigger
------------------------------------------------------------------------
CREATE TRIGGER trf_fake BEFORE INSERT ON trf_a
	FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard();
INSERT INTO trf_a (v) VALUES ('fake');
DROP TRIGGER trf_fake ON trf_a;
CREATE TRIGGER trf_fake AFTER TRUNCATE ON trf_a
	FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard();
SET ec_feed.allow_truncate = on;
TRUNCATE trf_a CASCADE;
RESET ec_feed.allow_truncate;
DROP TRIGGER trf_fake ON trf_a;
SELECT count(*) AS changes FROM trf_feed();

DROP TABLE trf_b, trf_a, trf_child, trf_parent, trf_part, trf_nohist, trf_pos, trf_replica;
DROP FUNCTION trf_feed(regclass[]), trf_check(regclass);
DROP OWNED BY trf_writer;
DROP ROLE trf_writer;
