-- Tracking (contract section 1): track(), untrack(), the tracked view, the
-- managed columns, the history of every write path, the TRUNCATE guard
-- (truncate_feed.sql tests the recorded TRUNCATE in full).
--
-- Versions, xids, cursors and timestamps differ between runs (other test
-- files write before this one): none is printed, only comparisons.
--
-- Every change is checked by replaying the feed: trk_feed() reads the feed
-- from where it last stopped, prints each change and applies it to a
-- replica (trk_replica, keyed by table and primary key). Its column "note"
-- is empty unless the change cannot follow the previous one of its key (an
-- insert of a live key, an update or delete of an absent key, a version not
-- above the key's previous one). trk_check(table) lists every key whose row
-- in the replica differs from the table (data or ec_version): it must
-- return no rows.
\set SHOW_CONTEXT never
\set VERBOSITY default

-- the last version handed out before this test
SELECT coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0) AS trk_base \gset

CREATE TABLE trk_pos (cur text);
INSERT INTO trk_pos SELECT ec_feed.cursor_now();
-- data NULL: the key was deleted at that version
CREATE TABLE trk_replica (rel regclass, key jsonb, data jsonb, version bigint NOT NULL,
	PRIMARY KEY (rel, key));

CREATE FUNCTION trk_feed(rels regclass[] DEFAULT NULL)
RETURNS TABLE (n int, op text, rel regclass, key jsonb, data jsonb, changed text[],
			   version bigint, xid xid8, note text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	prior trk_replica;
	progress text;
BEGIN
	n := 0;
	FOR r IN SELECT * FROM ec_feed.read((SELECT cur FROM trk_pos), 10000, rels) AS f LOOP
		IF r.op = 'progress' THEN
			progress := r.cursor;
			CONTINUE;
		END IF;
		n := n + 1;
		op := r.op; rel := r.rel; key := r.key; data := r.data;
		changed := r.changed; version := r.version; xid := r.xid; note := NULL;
		IF r.op = 'untrack' THEN
			-- the table left the feed (untracked or dropped): the copy goes
			DELETE FROM trk_replica p WHERE p.rel = r.rel;
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF r.op = 'truncate' THEN
			-- every key of the table is deleted at this version
			IF EXISTS (SELECT FROM trk_replica p WHERE p.rel = r.rel AND p.version >= r.version) THEN
				note := 'version not above a key''s previous one';
			END IF;
			UPDATE trk_replica p SET data = NULL, version = r.version WHERE p.rel = r.rel;
			RETURN NEXT;
			CONTINUE;
		END IF;
		SELECT * INTO prior FROM trk_replica p WHERE p.rel = r.rel AND p.key = r.key;
		IF r.op = 'insert' AND prior.data IS NOT NULL THEN
			note := 'insert of a live key';
		ELSIF r.op <> 'insert' AND prior.data IS NULL THEN
			note := r.op || ' of an absent key';
		END IF;
		IF r.version <= prior.version THEN
			note := concat_ws(', ', note, 'version not above the previous one');
		END IF;
		INSERT INTO trk_replica AS p
		VALUES (r.rel, r.key, CASE WHEN r.op = 'delete' THEN NULL ELSE r.data END, r.version)
		ON CONFLICT ON CONSTRAINT trk_replica_pkey
			DO UPDATE SET data = excluded.data, version = excluded.version;
		RETURN NEXT;
	END LOOP;
	IF progress IS NULL THEN
		RAISE EXCEPTION 'the feed returned no progress row';
	END IF;
	UPDATE trk_pos SET cur = progress;
END;
$$;

-- the rows of a table as the feed shows them: key, data without the managed
-- columns, and ec_version (NULL when the table has none)
CREATE FUNCTION trk_rows(tab regclass)
RETURNS TABLE (key jsonb, data jsonb, version bigint)
LANGUAGE plpgsql AS $$
DECLARE
	keys text[];
BEGIN
	SELECT array_agg(a.attname::text ORDER BY k.ord) INTO keys
	FROM pg_index i
	CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
	JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
	WHERE i.indrelid = tab AND i.indisprimary;
	RETURN QUERY EXECUTE format(
		'SELECT (SELECT jsonb_object_agg(k, j -> k) FROM unnest($1) k),
				j - ''ec_version'' - ''ec_xid'', (j ->> ''ec_version'')::bigint
		 FROM (SELECT to_jsonb(t) AS j FROM %s t) s', tab) USING keys;
END;
$$;

-- rows that exist before tracking never appear in the feed: copy them
CREATE FUNCTION trk_seed(tab regclass) RETURNS void LANGUAGE sql AS $$
	INSERT INTO trk_replica SELECT tab, key, data, version FROM trk_rows(tab)
$$;

CREATE FUNCTION trk_check(tab regclass)
RETURNS TABLE (key jsonb, problem text)
LANGUAGE sql AS $$
	SELECT coalesce(t.key, r.key),
		CASE WHEN t.key IS NULL THEN 'in the replica, not in the table'
			 WHEN r.key IS NULL THEN 'in the table, not in the replica'
			 WHEN t.data <> r.data THEN 'data differs'
			 ELSE 'ec_version differs from the version of its last change' END
	FROM trk_rows(tab) t
	FULL JOIN (SELECT * FROM trk_replica WHERE rel = tab AND data IS NOT NULL) r
		ON t.key = r.key
	WHERE t.key IS NULL OR r.key IS NULL OR t.data <> r.data
		OR t.version IS DISTINCT FROM r.version
	ORDER BY 1
$$;

-- triggers and columns that tracking adds
CREATE FUNCTION trk_triggers(tab regclass) RETURNS TABLE (tgname name, tgenabled "char")
LANGUAGE sql AS $$
	SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = tab ORDER BY tgname
$$;
CREATE FUNCTION trk_columns(tab regclass)
RETURNS TABLE (attname name, type text, not_null boolean, has_default boolean)
LANGUAGE sql AS $$
	SELECT attname, format_type(atttypid, atttypmod), attnotnull, atthasdef
	FROM pg_attribute WHERE attrelid = tab AND attnum > 0 AND NOT attisdropped
	ORDER BY attnum
$$;

------------------------------------------------------------------------
-- track()
------------------------------------------------------------------------
CREATE TABLE trk_items (id int PRIMARY KEY, name text, qty int);
-- rows from before tracking get one version, drawn by track(), and xid 0
INSERT INTO trk_items VALUES (1, 'one', 10), (2, 'two', 20), (3, 'three', 30);
SELECT coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0) AS trk_before \gset
SELECT ec_feed.track('trk_items');
SELECT id, name, qty, ec_version > :trk_before AS fresh_version, ec_xid FROM trk_items ORDER BY id;
SELECT count(DISTINCT ec_version) AS versions FROM trk_items;
SELECT * FROM trk_columns('trk_items');
SELECT * FROM trk_triggers('trk_items');
SELECT rel, key_columns, history, tracked_at <= now() AS tracked_at_set
FROM ec_feed.tracked WHERE rel = 'trk_items'::regclass;
SELECT tracked_at AS trk_tracked_at FROM ec_feed.tracked WHERE rel = 'trk_items'::regclass \gset
SELECT trk_seed('trk_items');
-- tracking writes no history
SELECT * FROM trk_feed();

-- idempotent: a second call changes nothing
SELECT ec_feed.track('trk_items');
SELECT ec_feed.track('trk_items', true);
SELECT * FROM trk_columns('trk_items');
SELECT * FROM trk_triggers('trk_items');
SELECT rel, key_columns, history, tracked_at = :'trk_tracked_at' AS same_tracked_at
FROM ec_feed.tracked WHERE rel = 'trk_items'::regclass;
SELECT * FROM trk_feed();

-- a composite primary key, in key order; a quoted schema and names
CREATE TABLE trk_pair (a int, b text, v text, PRIMARY KEY (b, a));
SELECT ec_feed.track('trk_pair');
CREATE SCHEMA "trk Sch";
CREATE TABLE "trk Sch"."trk Tab" ("Id" int PRIMARY KEY, "Val ue" text);
SELECT ec_feed.track('"trk Sch"."trk Tab"');
SELECT rel, key_columns, history FROM ec_feed.tracked
WHERE rel IN ('trk_pair'::regclass, '"trk Sch"."trk Tab"'::regclass) ORDER BY rel::text;
SELECT * FROM trk_triggers('"trk Sch"."trk Tab"');
INSERT INTO trk_pair VALUES (1, 'x', 'first'), (2, 'x', 'second');
INSERT INTO "trk Sch"."trk Tab" VALUES (7, 'seven');
UPDATE "trk Sch"."trk Tab" SET "Val ue" = 'SEVEN';
SELECT n, op, rel, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_pair');
SELECT * FROM trk_check('"trk Sch"."trk Tab"');

-- what cannot be tracked
CREATE TABLE trk_nopk (id int UNIQUE, v text);
SELECT ec_feed.track('trk_nopk');
\echo :LAST_ERROR_SQLSTATE
-- nothing was added
SELECT * FROM trk_columns('trk_nopk');
SELECT * FROM trk_triggers('trk_nopk');
CREATE VIEW trk_view AS SELECT * FROM trk_items;
SELECT ec_feed.track('trk_view');
\echo :LAST_ERROR_SQLSTATE
CREATE SEQUENCE trk_seq;
SELECT ec_feed.track('trk_seq');
\echo :LAST_ERROR_SQLSTATE
-- (a partitioned table is tracked since 0.3.0, see partitions.sql; it too needs a key)
CREATE TABLE trk_parted (id int) PARTITION BY RANGE (id);
SELECT ec_feed.track('trk_parted');
\echo :LAST_ERROR_SQLSTATE
SELECT ec_feed.track('trk_no_such_table');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE trk_keyed_by_version (ec_version bigint PRIMARY KEY, v text);
SELECT ec_feed.track('trk_keyed_by_version');
\echo :LAST_ERROR_SQLSTATE
-- a managed column of the wrong type
CREATE TABLE trk_badcol (id int PRIMARY KEY, ec_version int);
INSERT INTO trk_badcol VALUES (1, 5);
SELECT ec_feed.track('trk_badcol');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE trk_badxid (id int PRIMARY KEY, ec_xid xid);
SELECT ec_feed.track('trk_badxid');
\echo :LAST_ERROR_SQLSTATE
-- the failed calls left nothing behind
SELECT * FROM trk_columns('trk_badcol');
SELECT * FROM trk_triggers('trk_badcol');
SELECT count(*) FROM ec_feed.tracked
WHERE rel::text IN ('trk_nopk', 'trk_view', 'trk_seq', 'trk_parted', 'trk_badcol', 'trk_badxid', 'trk_keyed_by_version');

-- managed columns that already exist with the right types are kept, made NOT NULL;
-- their values were not written by ec_feed: each row gets a fresh version
CREATE TABLE trk_premade (id int PRIMARY KEY, ec_version bigint, ec_xid xid8);
INSERT INTO trk_premade VALUES (1, 5, '6');
SELECT ec_feed.track('trk_premade');
SELECT * FROM trk_columns('trk_premade');
SELECT id, ec_version > 5 AS fresh_version, ec_xid <> '6' AS xid_set FROM trk_premade;
-- ... unless a row has NULL in them
CREATE TABLE trk_premade_null (id int PRIMARY KEY, ec_version bigint, ec_xid xid8);
INSERT INTO trk_premade_null VALUES (1, NULL, NULL);
SELECT ec_feed.track('trk_premade_null');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ec_feed.tracked WHERE rel = 'trk_premade_null'::regclass;

-- only the owner tracks and untracks; a role may track a table it owns
CREATE ROLE trk_alice;
GRANT CREATE ON SCHEMA public TO trk_alice;
GRANT SELECT, INSERT, UPDATE, DELETE ON trk_items TO trk_alice;
SET ROLE trk_alice;
SELECT ec_feed.track('trk_items');
\echo :LAST_ERROR_SQLSTATE
SELECT ec_feed.untrack('trk_items');
\echo :LAST_ERROR_SQLSTATE
SELECT ec_feed.track('trk_nopk');
\echo :LAST_ERROR_SQLSTATE
-- nor by writing the registry directly
INSERT INTO ec_feed.tracked_rel (relid, key_columns, history) VALUES ('trk_nopk', '{id}', true);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ec_feed.tracked_rel WHERE relid = 'trk_items'::regclass;
UPDATE ec_feed.tracked_rel SET history = false WHERE relid = 'trk_items'::regclass;
-- the history is not hers to read or write
SELECT count(*) FROM ec_feed.history;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ec_feed.history VALUES (1, '1', 1, 'i', '{}', '{}', NULL);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE trk_alices (id int PRIMARY KEY, v text);
SELECT ec_feed.track('trk_alices');
-- her writes are stamped and recorded (she needs no right on the history)
INSERT INTO trk_alices VALUES (1, 'a');
UPDATE trk_alices SET v = 'b';
-- her writes to someone else's tracked table too
UPDATE trk_items SET qty = 11 WHERE id = 1;
RESET ROLE;
-- her DELETE and UPDATE of the registry found no row of hers to change
SELECT rel, key_columns, history FROM ec_feed.tracked
WHERE rel IN ('trk_items'::regclass, 'trk_alices'::regclass) ORDER BY rel::text;
SELECT n, op, rel, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_alices');
SELECT * FROM trk_check('trk_items');
SET ROLE trk_alice;
SELECT ec_feed.untrack('trk_alices', drop_columns => true);
DROP TABLE trk_alices;
RESET ROLE;

------------------------------------------------------------------------
-- write paths
------------------------------------------------------------------------
-- INSERT: data without the managed columns, changed NULL
INSERT INTO trk_items VALUES (4, 'four', 40), (5, 'five', 50);
SELECT n, op, key, data, changed, note FROM trk_feed();
-- UPDATE: changed lists exactly the columns whose value changed
UPDATE trk_items SET name = 'FOUR' WHERE id = 4;
SELECT n, op, key, data, changed, note FROM trk_feed();
UPDATE trk_items SET name = 'Five', qty = 55 WHERE id = 5;
SELECT n, op, key, data, changed, note FROM trk_feed();
UPDATE trk_items SET qty = NULL WHERE id = 5;
UPDATE trk_items SET qty = 50 WHERE id = 5;
SELECT n, op, key, data, changed, note FROM trk_feed();
-- an update to the same values is still a change (a new version), of no column
UPDATE trk_items SET name = name, qty = qty WHERE id = 4;
SELECT n, op, key, data, changed, note FROM trk_feed();
-- DELETE: data is the row before the delete
DELETE FROM trk_items WHERE id = 5;
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- values written into the managed columns are overwritten; ec_xid is the
-- writer's top-level transaction
BEGIN;
INSERT INTO trk_items (id, name, qty, ec_version, ec_xid) VALUES (6, 'six', 60, 1, '1');
SELECT id, ec_version <> 1 AND ec_version > :trk_base AS version_stamped,
	ec_xid = pg_current_xact_id() AS xid_of_writer
FROM trk_items WHERE id = 6;
UPDATE trk_items SET ec_version = 9223372036854775807, ec_xid = '12345' WHERE id = 6;
SELECT id, ec_version < 9223372036854775807 AS version_stamped,
	ec_xid = pg_current_xact_id() AS xid_of_writer
FROM trk_items WHERE id = 6;
SAVEPOINT s;
-- in a subtransaction: still the top-level xid
UPDATE trk_items SET qty = 66 WHERE id = 6;
SELECT id, ec_xid = pg_current_xact_id() AS xid_of_writer FROM trk_items WHERE id = 6;
RELEASE SAVEPOINT s;
SELECT pg_current_xact_id() AS trk_x6 \gset
COMMIT;
-- an update of the managed columns alone changes no column
SELECT n, op, key, data, changed, xid = :'trk_x6' AS xid_of_writer, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- INSERT ... ON CONFLICT DO UPDATE: the conflicting row is an update, the other an insert
INSERT INTO trk_items VALUES (1, 'uno', 10), (7, 'seven', 70)
ON CONFLICT (id) DO UPDATE SET name = excluded.name;
SELECT op, key, data, changed, note FROM trk_feed() ORDER BY key, n;
-- ... DO UPDATE writing the managed columns: overwritten
INSERT INTO trk_items VALUES (7, 'seven', 77, 1, '1')
ON CONFLICT (id) DO UPDATE SET qty = excluded.qty, ec_version = excluded.ec_version, ec_xid = excluded.ec_xid;
SELECT n, op, key, data, changed, note FROM trk_feed();
-- ... DO UPDATE ... WHERE false, and DO NOTHING: only the rows written
INSERT INTO trk_items VALUES (1, 'not written', 0)
ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE false;
INSERT INTO trk_items VALUES (1, 'not written', 0), (8, 'eight', 80) ON CONFLICT DO NOTHING;
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- MERGE: delete, update and insert in one statement
MERGE INTO trk_items t
USING (VALUES (2, 'deleted by merge'), (3, 'THREE'), (9, 'nine')) AS s(id, name)
ON t.id = s.id
WHEN MATCHED AND s.name = 'deleted by merge' THEN DELETE
WHEN MATCHED THEN UPDATE SET name = s.name
WHEN NOT MATCHED THEN INSERT (id, name, qty) VALUES (s.id, s.name, 90);
SELECT op, key, data, changed, note FROM trk_feed() ORDER BY key, n;
SELECT * FROM trk_check('trk_items');

-- COPY, also with values for the managed columns (overwritten)
COPY trk_items (id, name, qty) FROM STDIN;
10	ten	100
11	eleven	\N
\.
COPY trk_items (id, name, qty, ec_version, ec_xid) FROM STDIN (FORMAT csv);
12,twelve,120,1,1
\.
SELECT id, ec_version <> 1 AS version_stamped, ec_xid <> '1' AS xid_stamped
FROM trk_items WHERE id = 12;
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- a trigger of another table writes into a tracked table
CREATE TABLE trk_orders (id int PRIMARY KEY, item int, amount int);
CREATE FUNCTION trk_orders_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE trk_items SET qty = qty - NEW.amount WHERE id = NEW.item;
	IF NOT FOUND THEN
		INSERT INTO trk_items VALUES (NEW.item, 'ordered', -NEW.amount);
	END IF;
	RETURN NEW;
END;
$$;
CREATE TRIGGER trk_orders_apply AFTER INSERT ON trk_orders
	FOR EACH ROW EXECUTE FUNCTION trk_orders_apply();
BEGIN;
INSERT INTO trk_orders VALUES (1, 10, 5), (2, 13, 1);
SELECT id, ec_xid = pg_current_xact_id() AS xid_of_writer FROM trk_items WHERE id IN (10, 13) ORDER BY id;
SELECT pg_current_xact_id() AS trk_xo \gset
COMMIT;
SELECT n, op, key, data, changed, xid = :'trk_xo' AS xid_of_writer, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- rolled-back subtransactions leave nothing in the feed
BEGIN;
INSERT INTO trk_items VALUES (20, 'kept', 1);
SAVEPOINT s1;
INSERT INTO trk_items VALUES (21, 'rolled back', 1);
UPDATE trk_items SET name = 'rolled back' WHERE id IN (1, 20);
DELETE FROM trk_items WHERE id = 4;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
UPDATE trk_items SET qty = 2 WHERE id = 20;
RELEASE SAVEPOINT s2;
-- an error caught in PL/pgSQL rolls back the block's writes
DO $$
BEGIN
	INSERT INTO trk_items VALUES (22, 'rolled back', 1);
	UPDATE trk_items SET name = 'rolled back' WHERE id = 20;
	RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN
	NULL;
END;
$$;
COMMIT;
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- a rolled-back transaction, and a statement that failed, leave nothing
BEGIN;
INSERT INTO trk_items VALUES (30, 'rolled back', 1);
UPDATE trk_items SET name = 'rolled back' WHERE id = 1;
DELETE FROM trk_items WHERE id = 3;
ROLLBACK;
INSERT INTO trk_items VALUES (31, 'failed', 1), (1, 'duplicate', 1);
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- a key deleted and inserted again gets a version above all it had before
SELECT ec_version AS trk_v3 FROM trk_items WHERE id = 3 \gset
DELETE FROM trk_items WHERE id = 3;
INSERT INTO trk_items VALUES (3, 'three again', 33);
SELECT ec_version > :trk_v3 AS above_old_version,
	(SELECT count(*) FROM ec_feed.history h
	 WHERE h.relid = 'trk_items'::regclass AND h.key = '{"id": 3}' AND h.seq >= t.ec_version) AS changes_at_or_above
FROM trk_items t WHERE id = 3;
-- ... also in one transaction
BEGIN;
DELETE FROM trk_items WHERE id = 3;
INSERT INTO trk_items VALUES (3, 'three once more', 333);
COMMIT;
SELECT (SELECT count(*) FROM ec_feed.history h
	 WHERE h.relid = 'trk_items'::regclass AND h.key = '{"id": 3}' AND h.seq >= t.ec_version) AS changes_at_or_above
FROM trk_items t WHERE id = 3;
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- two updates of a row in one transaction: two versions
BEGIN;
UPDATE trk_items SET qty = 1 WHERE id = 1;
SELECT ec_version AS trk_v1 FROM trk_items WHERE id = 1 \gset
UPDATE trk_items SET qty = 2 WHERE id = 1;
SELECT ec_version > :trk_v1 AS second_version_higher FROM trk_items WHERE id = 1;
COMMIT;
-- insert, update, delete of one key in one transaction: all three, in order
BEGIN;
INSERT INTO trk_items VALUES (40, 'forty', 40);
UPDATE trk_items SET qty = 41 WHERE id = 40;
DELETE FROM trk_items WHERE id = 40;
COMMIT;
SELECT n, op, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_items');

-- an UPDATE of the primary key: a delete of the old key, an insert of the new
UPDATE trk_items SET id = 100 WHERE id = 8;
SELECT op, key, data, changed, note FROM trk_feed() ORDER BY key, n;
SELECT * FROM trk_check('trk_items');
-- keys moved by one statement: the row stored first moves 2 -> 3, then 1 -> 2
CREATE TABLE trk_keys (id int PRIMARY KEY, v text);
SELECT ec_feed.track('trk_keys');
INSERT INTO trk_keys VALUES (2, 'b');
INSERT INTO trk_keys VALUES (1, 'a');
SELECT n, op, key, data, changed, note FROM trk_feed();
UPDATE trk_keys SET id = id + 1;
SELECT id, v FROM trk_keys ORDER BY id;
SELECT op, key, data, changed, note FROM trk_feed() ORDER BY key, n;
SELECT * FROM trk_check('trk_keys');
-- a key deleted and inserted again by one statement
WITH d AS (DELETE FROM trk_keys WHERE id = 3 RETURNING id, v)
INSERT INTO trk_keys SELECT id, v || '!' FROM d;
SELECT (SELECT count(*) FROM ec_feed.history h
	 WHERE h.relid = 'trk_keys'::regclass AND h.key = '{"id": 3}' AND h.seq >= t.ec_version) AS changes_at_or_above
FROM trk_keys t WHERE id = 3;
SELECT op, key, data, changed, note FROM trk_feed() ORDER BY key, n;
SELECT * FROM trk_check('trk_keys');

-- the row image: dropped columns left out, added ones included, large
-- (TOASTed) values whole; an unchanged large value is not in changed
CREATE TABLE trk_shape (id int PRIMARY KEY, gone int, small int, big text);
ALTER TABLE trk_shape DROP COLUMN gone;
SELECT ec_feed.track('trk_shape');
INSERT INTO trk_shape SELECT 1, 1, string_agg(md5(i::text), '') FROM generate_series(1, 3000) i;
UPDATE trk_shape SET small = 2;
ALTER TABLE trk_shape ADD COLUMN extra text DEFAULT 'x';
UPDATE trk_shape SET small = 3;
UPDATE trk_shape SET big = big || '.';
SELECT md5(string_agg(md5(i::text), '')) AS trk_big_md5 FROM generate_series(1, 3000) i \gset
SELECT n, op, key, data - 'big' AS data, changed, length(data ->> 'big') AS big_length,
	CASE md5(data ->> 'big') WHEN :'trk_big_md5' THEN 'as inserted'
		WHEN md5((SELECT big FROM trk_shape)) THEN 'as updated' END AS big, note
FROM trk_feed();
SELECT * FROM trk_check('trk_shape');

------------------------------------------------------------------------
-- TRUNCATE
------------------------------------------------------------------------
TRUNCATE trk_items;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE trk_orders, trk_items;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM trk_orders;
SELECT * FROM trk_check('trk_items');
BEGIN;
SET LOCAL ec_feed.allow_truncate = on;
TRUNCATE trk_keys;
SELECT pg_current_xact_id() AS trk_trunc_xid \gset
COMMIT;
SHOW ec_feed.allow_truncate;
SELECT count(*) FROM trk_keys;
-- one change in the feed, op truncate, key and data NULL: the replica
-- empties its copy of the table
SELECT n, op, rel, key, data, changed, xid = :'trk_trunc_xid' AS xid_of_truncate, note FROM trk_feed();
SELECT * FROM trk_check('trk_keys');
SET ec_feed.allow_truncate = on;
TRUNCATE trk_pair;
RESET ec_feed.allow_truncate;
SELECT count(*) FROM trk_pair;
SELECT n, op, rel, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_pair');
TRUNCATE trk_pair;
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------
-- history => false
------------------------------------------------------------------------
CREATE TABLE trk_nohist (id int PRIMARY KEY, v text);
SELECT ec_feed.track('trk_nohist', history => false);
SELECT * FROM trk_triggers('trk_nohist');
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'trk_nohist'::regclass;
BEGIN;
INSERT INTO trk_nohist VALUES (1, 'a'), (2, 'b');
SELECT id, ec_version > :trk_base AS version_stamped, ec_xid = pg_current_xact_id() AS xid_of_writer
FROM trk_nohist ORDER BY id;
COMMIT;
UPDATE trk_nohist SET v = 'c' WHERE id = 1;
SELECT count(*) FROM ec_feed.history WHERE relid = 'trk_nohist'::regclass;
SELECT * FROM trk_feed();
SELECT count(*) FROM ec_feed.read(NULL, 10, '{trk_nohist}');
\echo :LAST_ERROR_SQLSTATE
TRUNCATE trk_nohist;
\echo :LAST_ERROR_SQLSTATE
-- history switched on, then off again
SELECT ec_feed.track('trk_nohist');
SELECT * FROM trk_triggers('trk_nohist');
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'trk_nohist'::regclass;
SELECT trk_seed('trk_nohist');
UPDATE trk_nohist SET v = 'd' WHERE id = 2;
SELECT n, op, rel, key, data, changed, note FROM trk_feed();
SELECT * FROM trk_check('trk_nohist');
SELECT ec_feed.track('trk_nohist', false);
SELECT * FROM trk_triggers('trk_nohist');
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'trk_nohist'::regclass;
DELETE FROM trk_nohist WHERE id = 1;
-- switching history off left the feed an untrack (the copy goes); the
-- delete after it is not recorded
SELECT n, op, rel, key, data, changed, note FROM trk_feed();

------------------------------------------------------------------------
-- untrack()
------------------------------------------------------------------------
CREATE TABLE trk_gone (id int PRIMARY KEY, v text);
SELECT ec_feed.track('trk_gone');
SELECT cur AS trk_gone_from FROM trk_pos \gset
INSERT INTO trk_gone VALUES (1, 'a'), (2, 'b');
UPDATE trk_gone SET v = 'B' WHERE id = 2;
SELECT n, op, rel, key, data, changed, note FROM trk_feed();
SELECT ec_feed.untrack('trk_gone');
SELECT * FROM trk_triggers('trk_gone');
SELECT * FROM trk_columns('trk_gone');
SELECT count(*) FROM ec_feed.tracked WHERE rel = 'trk_gone'::regclass;
-- writes are no longer stamped or recorded; plain INSERTs get version 0
UPDATE trk_gone SET v = 'A', ec_version = 1 WHERE id = 1;
SELECT id, v, ec_version FROM trk_gone WHERE id = 1;
INSERT INTO trk_gone (id, v) VALUES (3, 'c');
SELECT id, v, ec_version, ec_xid FROM trk_gone WHERE id = 3;
DELETE FROM trk_gone WHERE id = 3;
-- the feed: the untrack (key and data NULL), nothing after it
SELECT n, op, rel, key, data, changed, note FROM trk_feed();
-- the recorded history stays: readable with rels NULL, and with rels naming
-- the table while a change of it is retained (up to its untrack)
SELECT count(*) FROM ec_feed.history WHERE relid = 'trk_gone'::regclass;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'trk_gone_from', 100);
SELECT op, rel, key, data, changed FROM ec_feed.read(:'trk_gone_from', 100, '{trk_gone}');
-- NULL
SELECT ec_feed.track(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ec_feed.untrack(NULL);
\echo :LAST_ERROR_SQLSTATE
-- untrack of a table not tracked
SELECT ec_feed.untrack('trk_gone');
\echo :LAST_ERROR_SQLSTATE
SELECT ec_feed.untrack('trk_nopk');
\echo :LAST_ERROR_SQLSTATE
-- TRUNCATE is allowed again
TRUNCATE trk_gone;
-- tracked again (the default untrack() set is gone), then untracked with drop_columns
INSERT INTO trk_gone VALUES (5, 'e', 0, '0');
SELECT ec_feed.track('trk_gone');
SELECT attname, pg_get_expr(d.adbin, d.adrelid) AS default_expr
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'trk_gone'::regclass AND a.attname IN ('ec_version', 'ec_xid') ORDER BY attname;
SELECT * FROM trk_triggers('trk_gone');
SELECT ec_feed.untrack('trk_gone', drop_columns => true);
SELECT * FROM trk_columns('trk_gone');
SELECT * FROM trk_triggers('trk_gone');
SELECT * FROM trk_gone;
SELECT count(*) FROM ec_feed.tracked WHERE rel = 'trk_gone'::regclass;

------------------------------------------------------------------------
-- logical replication apply runs with session_replication_role = replica:
-- the triggers are ENABLE ALWAYS, so its writes are stamped and recorded
------------------------------------------------------------------------
SET session_replication_role = replica;
INSERT INTO trk_items VALUES (70, 'replicated', 70);
UPDATE trk_items SET qty = 71 WHERE id = 70;
DELETE FROM trk_items WHERE id = 70;
RESET session_replication_role;
SELECT op, key, data, changed, note FROM trk_feed();

------------------------------------------------------------------------
-- the whole run: the replica equals every table it follows
------------------------------------------------------------------------
SELECT * FROM trk_feed();
SELECT rel, key_columns, history FROM ec_feed.tracked
WHERE rel::text LIKE 'trk%' OR rel::text LIKE '"trk%' ORDER BY rel::text;
SELECT t.rel, c.* FROM unnest('{trk_items,"\"trk Sch\".\"trk Tab\"",trk_shape}'::regclass[]) t(rel)
CROSS JOIN LATERAL trk_check(t.rel) c;

------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------
SELECT count(*) FROM (SELECT ec_feed.untrack(rel) FROM ec_feed.tracked
	WHERE rel::text LIKE 'trk%' OR rel::text LIKE '"trk%') s;
SELECT count(*) FROM ec_feed.tracked WHERE rel::text LIKE 'trk%' OR rel::text LIKE '"trk%';
DROP SEQUENCE trk_seq;
DROP TABLE trk_items, trk_pair, trk_nopk, trk_parted, trk_keyed_by_version,
	trk_badcol, trk_badxid, trk_premade, trk_premade_null, trk_orders, trk_keys,
	trk_shape, trk_nohist, trk_gone, trk_pos, trk_replica CASCADE;
DROP SCHEMA "trk Sch" CASCADE;
DROP FUNCTION trk_feed, trk_rows, trk_seed, trk_check, trk_triggers, trk_columns, trk_orders_apply;
REVOKE CREATE ON SCHEMA public FROM trk_alice;
DROP ROLE trk_alice;
