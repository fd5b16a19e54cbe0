-- Partitioned tables (issue 8 item 6): track('parent') tracks every
-- partition, also those created or attached later; the feed, the tokens and
-- the conditional writes name the parent. Rows that leave or enter the tree
-- without a row trigger (DROP, DETACH, ATTACH, TRUNCATE of a partition) are
-- recorded as deletes and inserts keyed by the parent. Versions, xids and
-- tokens differ from run to run: only their relations are shown.

CREATE TABLE prt_orders (region text, id int, item text, qty int, PRIMARY KEY (region, id))
	PARTITION BY LIST (region);
CREATE TABLE prt_orders_eu PARTITION OF prt_orders FOR VALUES IN ('eu');
CREATE TABLE prt_orders_us PARTITION OF prt_orders FOR VALUES IN ('us');
INSERT INTO prt_orders VALUES ('eu', 1, 'apple', 1), ('us', 2, 'pear', 2);
SELECT ec_feed.track('prt_orders');
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'prt_orders'::regclass;

-- the row triggers are the parent's, cloned to each partition and firing
-- always there too; every partition has its own TRUNCATE guard
SELECT g.tgrelid::regclass AS rel, g.tgname, g.tgenabled, g.tgparentid <> 0 AS clone
FROM pg_trigger g WHERE g.tgrelid::regclass::text LIKE 'prt_orders%' AND g.tgname LIKE 'zz_ec_feed%'
ORDER BY 1, 2;
-- the managed columns reached the partitions, and the rows there have versions
SELECT count(*) AS rows, bool_and(ec_version > 0) AS versioned FROM prt_orders;

-- a partition created later gets the clones and its guard
CREATE TABLE prt_orders_asia PARTITION OF prt_orders FOR VALUES IN ('asia');
SELECT g.tgname, g.tgenabled, g.tgparentid <> 0 AS clone
FROM pg_trigger g WHERE g.tgrelid = 'prt_orders_asia'::regclass ORDER BY 1;

-- the feed names the parent, whether a row is written through it or
-- straight into a partition
SELECT ec_feed.cursor_now() AS prt_c0 \gset
INSERT INTO prt_orders VALUES ('asia', 3, 'plum', 3);
INSERT INTO prt_orders_eu VALUES ('eu', 4, 'fig', 4);
UPDATE prt_orders SET qty = 10 WHERE region = 'eu' AND id = 1;
DELETE FROM prt_orders_us WHERE id = 2;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'prt_c0', rels => '{prt_orders}') WHERE op <> 'progress';
SELECT count(*) AS rows_named_by_a_partition FROM ec_feed.read(:'prt_c0')
WHERE rel::text LIKE 'prt_orders_%';
-- a partition is not a feed of its own
\set VERBOSITY default
SELECT count(*) FROM ec_feed.read(:'prt_c0', rels => '{prt_orders_eu}');
\set VERBOSITY terse

-- tokens name the parent: a row read from a partition has the same token
SELECT ec_feed.row_token(t) AS prt_tok1 FROM prt_orders t WHERE region = 'eu' AND id = 1 \gset
SELECT ec_feed.row_token(t) = :'prt_tok1' AS same_token_from_partition
FROM prt_orders_eu t WHERE id = 1;
SELECT ec_feed.token('prt_orders', '{"region": "eu", "id": 1}') = :'prt_tok1' AS same_token_by_key;
SELECT ec_feed.token_status(:'prt_tok1');
SELECT ec_feed.require_visible(:'prt_tok1');
SELECT status, data, token = :'prt_tok1' AS same_token
FROM ec_feed.get('prt_orders', '{"region": "eu", "id": 1}', :'prt_tok1');
-- update_if / delete_if through the parent: applied, merged, conflict
SELECT status FROM ec_feed.update_if('prt_orders', '{"region": "eu", "id": 1}', :'prt_tok1', '{"qty": 11}');
SELECT status, current->>'qty' AS qty, current->>'item' AS item
FROM ec_feed.update_if('prt_orders', '{"region": "eu", "id": 1}', :'prt_tok1', '{"item": "apples"}');
SELECT status, conflicts FROM ec_feed.update_if('prt_orders', '{"region": "eu", "id": 1}', :'prt_tok1', '{"qty": 12}');
SELECT status, token AS prt_del4 FROM ec_feed.delete_if('prt_orders', '{"region": "eu", "id": 4}',
									 ec_feed.token('prt_orders', '{"region": "eu", "id": 4}')) \gset
SELECT :'status' AS status;
-- the delete's token names the parent and the delete
SELECT ec_feed.token_status(:'prt_del4'),
	   (SELECT status FROM ec_feed.get('prt_orders', '{"region": "eu", "id": 4}', :'prt_del4'));
-- a partition is named by its parent
\set VERBOSITY default
SELECT status FROM ec_feed.update_if('prt_orders_eu', '{"region": "eu", "id": 1}', :'prt_tok1', '{"qty": 13}');
SELECT ec_feed.token('prt_orders_eu', '{"region": "eu", "id": 1}');
\set VERBOSITY terse

-- row movement: the key holds the partition key, so a row that moves gets
-- a new key: the old key's delete, then the new key's insert
SELECT ec_feed.cursor_now() AS prt_c1 \gset
SELECT ec_feed.token('prt_orders', '{"region": "eu", "id": 1}') AS prt_tok_moved \gset
UPDATE prt_orders SET region = 'us' WHERE region = 'eu' AND id = 1;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'prt_c1', rels => '{prt_orders}') WHERE op <> 'progress';
-- the versions of the move form a chain: the delete replaced the row's last
-- version, the insert starts a new one
SELECT h.op, h.prev_version = (SELECT max(h2.seq) FROM ec_feed.history h2
							   WHERE h2.relid = h.relid AND h2.key = h.key AND h2.seq < h.seq) AS chained,
	   h.prev_version IS NULL AS starts_chain
FROM ec_feed.history h
WHERE h.relid = 'prt_orders'::regclass AND h.key->>'id' = '1' AND h.seq > (SELECT min(h3.seq) FROM ec_feed.history h3
	WHERE h3.relid = 'prt_orders'::regclass AND h3.key = '{"region": "eu", "id": 1}' AND h3.op = 'd')
   OR (h.relid = 'prt_orders'::regclass AND h.key = '{"region": "eu", "id": 1}' AND h.op = 'd')
ORDER BY h.seq;
-- the old key's token: the row is gone; the new key's token works
SELECT status FROM ec_feed.update_if('prt_orders', '{"region": "eu", "id": 1}', :'prt_tok_moved', '{"qty": 20}');
SELECT status, current->>'qty' AS qty FROM ec_feed.update_if('prt_orders', '{"region": "us", "id": 1}',
	ec_feed.token('prt_orders', '{"region": "us", "id": 1}'), '{"qty": 21}');
-- a conditional write keeps the key, so it never moves a row
SELECT status FROM ec_feed.update_if('prt_orders', '{"region": "us", "id": 1}',
	ec_feed.token('prt_orders', '{"region": "us", "id": 1}'), '{"region": "eu"}');

-- a partition of a tracked tree is not tracked on its own; nor is a tree
-- one of whose partitions is
\set VERBOSITY default
SELECT ec_feed.track('prt_orders_eu');
\set VERBOSITY terse
-- (a partition gets no column of its own: the parent carries the managed ones)
CREATE TABLE prt_solo (k int PRIMARY KEY, v text, ec_version bigint NOT NULL DEFAULT 0,
					   ec_xid xid8 NOT NULL DEFAULT '0') PARTITION BY RANGE (k);
CREATE TABLE prt_solo_1 PARTITION OF prt_solo FOR VALUES FROM (0) TO (10);
SELECT ec_feed.track('prt_solo_1');
\set VERBOSITY default
SELECT ec_feed.track('prt_solo');
\set VERBOSITY terse
-- the partition alone is a table of its own in the feed, as before 0.3.0
SELECT ec_feed.cursor_now() AS prt_c2 \gset
INSERT INTO prt_solo VALUES (1, 'one');
SELECT op, rel, key FROM ec_feed.read(:'prt_c2', rels => '{prt_solo_1}') WHERE op <> 'progress';
SELECT ec_feed.untrack('prt_solo_1');
SELECT ec_feed.track('prt_solo');
SELECT rel FROM ec_feed.tracked WHERE rel::text LIKE 'prt_solo%';
DROP TABLE prt_solo;

-- sub-partitions, a column dropped from the parent, a partition attached
-- with its columns in another order: keys and rows by column name, the feed
-- names the tracked root
CREATE TABLE prt_tree (gone int, k int, sub int, v text, PRIMARY KEY (k, sub)) PARTITION BY RANGE (k);
ALTER TABLE prt_tree DROP COLUMN gone;
CREATE TABLE prt_tree_1 PARTITION OF prt_tree FOR VALUES FROM (0) TO (100) PARTITION BY LIST (sub);
CREATE TABLE prt_tree_1a PARTITION OF prt_tree_1 FOR VALUES IN (1);
CREATE TABLE prt_tree_1b (v text, sub int NOT NULL, k int NOT NULL, PRIMARY KEY (k, sub));
ALTER TABLE prt_tree_1 ATTACH PARTITION prt_tree_1b FOR VALUES IN (2);
SELECT ec_feed.track('prt_tree');
SELECT a.attrelid::regclass AS rel, array_agg(a.attname::text ORDER BY a.attnum) AS columns
FROM pg_attribute a WHERE a.attrelid IN ('prt_tree'::regclass, 'prt_tree_1b'::regclass)
  AND a.attnum > 0 AND NOT a.attisdropped GROUP BY 1 ORDER BY 1;
SELECT ec_feed.cursor_now() AS prt_c3 \gset
INSERT INTO prt_tree VALUES (1, 1, 'a'), (2, 2, 'b');
UPDATE prt_tree SET v = 'bb' WHERE k = 2;
UPDATE prt_tree SET sub = 1 WHERE k = 2;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'prt_c3', rels => '{prt_tree}') WHERE op <> 'progress';
SELECT ec_feed.row_token(t) = ec_feed.token('prt_tree', '{"k": 1, "sub": 1}') AS same_token
FROM prt_tree_1a t WHERE k = 1;
SELECT status FROM ec_feed.update_if('prt_tree', '{"k": 1, "sub": 1}',
	ec_feed.token('prt_tree', '{"k": 1, "sub": 1}'), '{"v": "aa"}');
\set VERBOSITY default
SELECT ec_feed.track('prt_tree_1');
\set VERBOSITY terse
-- an ALTER TABLE of a partition moves the tracked root's history_since
SELECT t.history_since AS prt_since FROM ec_feed.tracked_rel t WHERE t.relid = 'prt_tree'::regclass \gset
ALTER TABLE prt_tree_1a SET (fillfactor = 90);
SELECT t.history_since > :prt_since AS since_moved FROM ec_feed.tracked_rel t WHERE t.relid = 'prt_tree'::regclass;
-- TRUNCATE or DROP of a partition that is itself partitioned: every row
-- below it leaves
CREATE TABLE prt_tree_2 PARTITION OF prt_tree FOR VALUES FROM (100) TO (200) PARTITION BY LIST (sub);
CREATE TABLE prt_tree_2a PARTITION OF prt_tree_2 FOR VALUES IN (1);
INSERT INTO prt_tree VALUES (3, 2, 'c'), (150, 1, 'd'), (160, 1, 'e');
SELECT ec_feed.cursor_now() AS prt_c3b \gset
TRUNCATE prt_tree_1;
DROP TABLE prt_tree_2;
-- (in the order of the partitions' scans: sorted here)
SELECT op, rel, key FROM ec_feed.read(:'prt_c3b', rels => '{prt_tree}') WHERE op <> 'progress'
ORDER BY (key->>'k')::int;

-- TRUNCATE of one partition: its rows leave, one delete each (no op
-- truncate: every consumer handles deletes); no setting needed
INSERT INTO prt_orders VALUES ('asia', 5, 'kiwi', 5);
SELECT ec_feed.cursor_now() AS prt_c4 \gset
TRUNCATE prt_orders_asia;
SELECT op, rel, key, data FROM ec_feed.read(:'prt_c4', rels => '{prt_orders}') WHERE op <> 'progress'
ORDER BY (key->>'id')::int;
-- TRUNCATE of the parent: refused unless allowed, then one truncate change
INSERT INTO prt_orders VALUES ('asia', 6, 'lime', 6);
TRUNCATE prt_orders;
SELECT ec_feed.cursor_now() AS prt_c5 \gset
BEGIN;
SET LOCAL ec_feed.allow_truncate = on;
TRUNCATE prt_orders;
COMMIT;
SELECT op, rel, key FROM ec_feed.read(:'prt_c5', rels => '{prt_orders}') WHERE op <> 'progress';
SELECT count(*) AS rows_left FROM prt_orders;
-- a TRUNCATE of the parent that fails after its guard fired leaves no trace
-- for a TRUNCATE of a partition in the same transaction
INSERT INTO prt_orders VALUES ('eu', 7, 'date', 7), ('us', 8, 'nut', 8);
CREATE FUNCTION prt_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'no truncate of %', TG_TABLE_NAME; END $$;
SELECT ec_feed.cursor_now() AS prt_c6 \gset
BEGIN;
SET LOCAL ec_feed.allow_truncate = on;
SAVEPOINT s;
CREATE TRIGGER prt_refuse BEFORE TRUNCATE ON prt_orders_us FOR EACH STATEMENT EXECUTE FUNCTION prt_refuse();
TRUNCATE prt_orders;
ROLLBACK TO SAVEPOINT s;
TRUNCATE prt_orders_eu;
COMMIT;
SELECT op, rel, key FROM ec_feed.read(:'prt_c6', rels => '{prt_orders}') WHERE op <> 'progress';

-- a trigger of a partition that runs (and rolls back) a subtransaction of
-- its own, between the root's guard and the partition's, changes nothing
CREATE FUNCTION prt_sub() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END;
	RETURN NULL;
END $$;
CREATE TRIGGER prt_sub BEFORE TRUNCATE ON prt_orders_us FOR EACH STATEMENT EXECUTE FUNCTION prt_sub();
INSERT INTO prt_orders VALUES ('eu', 7, 'date', 7);
SELECT ec_feed.cursor_now() AS prt_c6b \gset
BEGIN;
SET LOCAL ec_feed.allow_truncate = on;
TRUNCATE prt_orders;
COMMIT;
SELECT op, rel, key FROM ec_feed.read(:'prt_c6b', rels => '{prt_orders}') WHERE op <> 'progress';
DROP TRIGGER prt_sub ON prt_orders_us;
INSERT INTO prt_orders VALUES ('us', 8, 'nut', 8);

-- DETACH: the rows leave the parent (deletes, in the DETACH's transaction);
-- the detached table is left as untrack() leaves one
INSERT INTO prt_orders VALUES ('eu', 9, 'fig', 9);
SELECT ec_feed.cursor_now() AS prt_c7 \gset
BEGIN;
ALTER TABLE prt_orders DETACH PARTITION prt_orders_eu;
ROLLBACK;
SELECT count(*) AS after_rollback FROM ec_feed.read(:'prt_c7', rels => '{prt_orders}') WHERE op <> 'progress';
ALTER TABLE prt_orders DETACH PARTITION prt_orders_eu;
SELECT op, rel, key, data FROM ec_feed.read(:'prt_c7', rels => '{prt_orders}') WHERE op <> 'progress';
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'prt_orders_eu'::regclass;
SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS default_value
FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'prt_orders_eu'::regclass ORDER BY 1;
INSERT INTO prt_orders_eu (region, id, item, qty) VALUES ('eu', 10, 'nut', 1);
TRUNCATE prt_orders_eu;
-- DETACH CONCURRENTLY is refused (it cannot record in one transaction)
\set VERBOSITY default
ALTER TABLE prt_orders DETACH PARTITION prt_orders_us CONCURRENTLY;
\set VERBOSITY terse

-- DROP TABLE of a partition: its rows leave the parent
SELECT ec_feed.cursor_now() AS prt_c8 \gset
DROP TABLE prt_orders_us;
SELECT op, rel, key, data FROM ec_feed.read(:'prt_c8', rels => '{prt_orders}') WHERE op <> 'progress';

-- DROP SCHEMA ... CASCADE of a schema that holds a partition: its rows
-- leave the parent too (a tree all in the schema leaves as an untrack)
CREATE SCHEMA prt_s;
CREATE TABLE prt_s.orders_nz PARTITION OF prt_orders FOR VALUES IN ('nz');
CREATE TABLE prt_s.whole (k int PRIMARY KEY) PARTITION BY RANGE (k);
CREATE TABLE prt_s.whole_1 PARTITION OF prt_s.whole FOR VALUES FROM (0) TO (10);
SELECT ec_feed.track('prt_s.whole');
INSERT INTO prt_orders VALUES ('nz', 20, 'kiwi', 1);
INSERT INTO prt_s.whole VALUES (1);
SELECT ec_feed.cursor_now() AS prt_c8b \gset
DROP SCHEMA prt_s CASCADE;
SELECT op, rel, key FROM ec_feed.read(:'prt_c8b') WHERE op <> 'progress' AND rel IS NOT NULL
  AND rel = 'prt_orders'::regclass;
SELECT op, count(*) FROM ec_feed.read(:'prt_c8b') WHERE op = 'untrack' GROUP BY op;

-- ATTACH of a table with rows: each arrives as an insert with a fresh
-- version written by the ATTACH's transaction
INSERT INTO prt_orders_eu (region, id, item, qty) VALUES ('eu', 11, 'pea', 1), ('eu', 12, 'bean', 2);
SELECT max(ec_version) AS prt_v_before FROM prt_orders_eu \gset
SELECT ec_feed.cursor_now() AS prt_c9 \gset
BEGIN;
ALTER TABLE prt_orders ATTACH PARTITION prt_orders_eu FOR VALUES IN ('eu');
SELECT count(*) AS rows, bool_and(ec_version > :prt_v_before) AS fresh_versions,
	   bool_and(ec_xid = pg_current_xact_id()) AS written_here
FROM prt_orders_eu;
COMMIT;
SELECT op, rel, key, data FROM ec_feed.read(:'prt_c9', rels => '{prt_orders}') WHERE op <> 'progress';
SELECT bool_and(ec_feed.row_token(t) = ec_feed.token('prt_orders', jsonb_build_object('region', region, 'id', id)))
	   AS tokens_match
FROM prt_orders t;
SELECT a.attname, a.atthasdef FROM pg_attribute a
WHERE a.attrelid = 'prt_orders_eu'::regclass AND a.attname LIKE 'ec\_%' ORDER BY 1;
-- an attached table whose own triggers would fire for the stamping UPDATE
CREATE TABLE prt_orders_ca (LIKE prt_orders_eu INCLUDING DEFAULTS);
ALTER TABLE prt_orders_ca ALTER COLUMN ec_version SET DEFAULT 0, ALTER COLUMN ec_xid SET DEFAULT '0';
INSERT INTO prt_orders_ca (region, id, item, qty) VALUES ('ca', 13, 'corn', 1);
CREATE FUNCTION prt_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.qty := NEW.qty + 1; RETURN NEW; END $$;
CREATE TRIGGER prt_touch BEFORE UPDATE ON prt_orders_ca FOR EACH ROW EXECUTE FUNCTION prt_touch();
ALTER TABLE prt_orders_ca ENABLE ALWAYS TRIGGER prt_touch;
\set VERBOSITY default
ALTER TABLE prt_orders ATTACH PARTITION prt_orders_ca FOR VALUES IN ('ca');
\set VERBOSITY terse
ALTER TABLE prt_orders_ca DISABLE TRIGGER prt_touch;
ALTER TABLE prt_orders ATTACH PARTITION prt_orders_ca FOR VALUES IN ('ca');
SELECT region, id, qty FROM prt_orders WHERE region = 'ca';

-- a table tracked on its own does not join a tracked tree
CREATE TABLE prt_orders_mx (LIKE prt_orders_eu INCLUDING INDEXES);
SELECT ec_feed.track('prt_orders_mx');
\set VERBOSITY default
ALTER TABLE prt_orders ATTACH PARTITION prt_orders_mx FOR VALUES IN ('mx');
\set VERBOSITY terse
DROP TABLE prt_orders_mx;

-- the key guard still holds for the tree
ALTER TABLE prt_orders DROP CONSTRAINT prt_orders_pkey;

-- untrack(parent) removes everything from every partition
SELECT ec_feed.cursor_now() AS prt_c10 \gset
SELECT ec_feed.untrack('prt_orders');
SELECT op, rel FROM ec_feed.read(:'prt_c10') WHERE rel = 'prt_orders'::regclass;
SELECT count(*) AS ec_feed_triggers_left FROM pg_trigger g
WHERE g.tgrelid::regclass::text LIKE 'prt_orders%' AND g.tgname LIKE 'zz_ec_feed%';
INSERT INTO prt_orders (region, id, item, qty) VALUES ('asia', 14, 'yam', 1);
SELECT ec_version, ec_xid FROM prt_orders WHERE id = 14;
-- tracked again: the rows written meanwhile get fresh versions
SELECT ec_feed.track('prt_orders');
SELECT count(*) AS rows, bool_and(ec_version > 0) AS versioned FROM prt_orders;

-- adopt(): the rows that predate track() are in the leaf partitions; a
-- partition's own UPDATE trigger is refused before any row is adopted
CREATE TABLE prt_adopt (k int PRIMARY KEY, v text, w text) PARTITION BY RANGE (k);
CREATE TABLE prt_adopt_1 PARTITION OF prt_adopt FOR VALUES FROM (0) TO (100);
CREATE TABLE prt_adopt_2 PARTITION OF prt_adopt FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (k);
CREATE TABLE prt_adopt_2a PARTITION OF prt_adopt_2 FOR VALUES FROM (100) TO (200);
INSERT INTO prt_adopt SELECT g, 'v' || g, 'w' || g FROM generate_series(1, 199) g;
SELECT ec_feed.track('prt_adopt');
UPDATE prt_adopt SET v = 'changed' WHERE k = 6;
CREATE FUNCTION prt_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER prt_own BEFORE UPDATE ON prt_adopt_2a FOR EACH ROW EXECUTE FUNCTION prt_noop();
\set VERBOSITY default
CALL ec_feed.adopt('prt_adopt', 1);
\set VERBOSITY terse
-- (only row 6, written since track(), has a version with history)
SELECT count(*) FILTER (WHERE a.ec_version >= t.history_since) AS in_history
FROM prt_adopt a, ec_feed.tracked_rel t WHERE t.relid = 'prt_adopt'::regclass;
DROP TRIGGER prt_own ON prt_adopt_2a;
SELECT ec_feed.cursor_now() AS prt_c11 \gset
CALL ec_feed.adopt('prt_adopt', 1);
SELECT count(*) AS rows, bool_and(a.ec_version >= t.history_since) AS all_in_history
FROM prt_adopt a, ec_feed.tracked_rel t WHERE t.relid = 'prt_adopt'::regclass;
SELECT op, rel, count(*), bool_and(changed = '{}') AS nothing_changed
FROM ec_feed.read(:'prt_c11', 10000, '{prt_adopt}') WHERE op <> 'progress' GROUP BY 1, 2;
-- a stale token of an adopted row now merges
SELECT ec_feed.token('prt_adopt', '{"k": 150}') AS prt_t150 \gset
UPDATE prt_adopt SET w = 'other' WHERE k = 150;
SELECT status FROM ec_feed.update_if('prt_adopt', '{"k": 150}', :'prt_t150', '{"v": "mine"}');
DROP TABLE prt_adopt;

DROP TABLE prt_orders, prt_tree, prt_orders_eu;
DROP FUNCTION prt_refuse(), prt_touch(), prt_sub(), prt_noop();

-- untrack_all() and DROP EXTENSION ... CASCADE untrack the roots; the
-- partitions' clones and guards go with them. In a database of its own, so
-- that the other tests keep their tracked tables.
SELECT current_database() AS prt_home \gset
CREATE DATABASE partitions_uninstall;
\c partitions_uninstall
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
CREATE TABLE prt_a_2 (k int PRIMARY KEY, v text, ec_version bigint NOT NULL DEFAULT 0, ec_xid xid8 NOT NULL DEFAULT '0');
CREATE TABLE prt_a (k int PRIMARY KEY, v text) PARTITION BY RANGE (k);
CREATE TABLE prt_a_1 PARTITION OF prt_a FOR VALUES FROM (0) TO (10);
CREATE TABLE prt_b (k int PRIMARY KEY, v text) PARTITION BY RANGE (k);
CREATE TABLE prt_b_1 PARTITION OF prt_b FOR VALUES FROM (0) TO (10);
SELECT ec_feed.track('prt_a');
-- attached later, but older than its parent (a lower OID)
ALTER TABLE prt_a ATTACH PARTITION prt_a_2 FOR VALUES FROM (10) TO (20);
SELECT ec_feed.track('prt_b');
SELECT r FROM ec_feed.untrack_all() r ORDER BY 1;
SELECT count(*) AS ec_feed_triggers_left FROM pg_trigger g WHERE g.tgname LIKE 'zz_ec_feed%';
SELECT ec_feed.track('prt_a');
SELECT ec_feed.track('prt_b');
DROP EXTENSION ec_feed CASCADE;
SELECT count(*) AS triggers_left FROM pg_trigger g WHERE g.tgname LIKE 'zz_ec_feed%';
INSERT INTO prt_a (k, v) VALUES (1, 'one'), (11, 'eleven');
INSERT INTO prt_b (k, v) VALUES (1, 'one');
TRUNCATE prt_a_1, prt_b;
\c :prt_home
DROP DATABASE partitions_uninstall;
