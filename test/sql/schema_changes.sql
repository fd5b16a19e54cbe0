-- Schema changes of tracked tables (issue 8.4).
--
-- 1. ADD / DROP / RENAME COLUMN and ALTER COLUMN TYPE between writes: the
--    feed's data and changed, update_if (one session writes before and
--    after each change, so its per-session plans must follow), token(),
--    get() and row_token() all follow; a token from before an ALTER TABLE
--    never merges across it (the event trigger moves history_since).
-- 2. A change of the key columns is refused: untrack, change, track again.
-- 3. untrack() and DROP TABLE reach the feed as a change with op untrack;
--    the registration of a dropped table goes; its retained history stays
--    readable (the untrack to everyone, its rows to the extension's owner).
--
-- Versions, xids and OIDs differ between runs: only comparisons are printed.
\set SHOW_CONTEXT never
\set VERBOSITY default

CREATE TABLE sch_pos (cur text);
INSERT INTO sch_pos SELECT ec_feed.cursor_now();
-- the feed of every table since the last call
CREATE FUNCTION sch_feed()
RETURNS TABLE (op text, rel regclass, key jsonb, data jsonb, changed text[])
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	progress text;
BEGIN
	FOR r IN SELECT * FROM ec_feed.read((SELECT cur FROM sch_pos), 10000) AS f LOOP
		IF r.op = 'progress' THEN
			progress := r.cursor;
			CONTINUE;
		END IF;
		op := r.op; rel := r.rel; key := r.key; data := r.data; changed := r.changed;
		RETURN NEXT;
	END LOOP;
	UPDATE sch_pos SET cur = progress;
END;
$$;

CREATE TABLE sch_t (id int PRIMARY KEY, a text, b int, c text);
SELECT ec_feed.track('sch_t');
INSERT INTO sch_t VALUES (1, 'x', 10, '5'), (2, 'y', 20, '6');
-- the plans of this session exist before the first change
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
SELECT status, current FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"a":"x1"}');
SELECT status, data FROM ec_feed.get('sch_t', '{"id":1}');
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
SELECT status, current FROM ec_feed.delete_if('sch_t', '{"id":2}', ec_feed.token('sch_t', '{"id":2}'));
INSERT INTO sch_t VALUES (2, 'y', 20, '6');
SELECT * FROM sch_feed();
SELECT ec_feed.history_since AS since FROM ec_feed.tracked_rel ec_feed WHERE relid = 'sch_t'::regclass \gset

------------------------------------------------------------------------
-- ADD COLUMN
------------------------------------------------------------------------
UPDATE sch_t SET b = 11 WHERE id = 1;	-- tok is stale now
ALTER TABLE sch_t ADD COLUMN d text DEFAULT 'dd';
SELECT history_since > :since AS since_moved,
	history_since > (SELECT max(seq) FROM ec_feed.history WHERE relid = 'sch_t'::regclass) AS after_every_change
FROM ec_feed.tracked_rel WHERE relid = 'sch_t'::regclass;
-- a token from before the ALTER: it would merge (b changed, not a) without
-- the ALTER; across it, never
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"a":"stale"}');
-- a fresh token: the new column is written through a new plan
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
SELECT status, current, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"d":"d1"}');
-- tok was fresh, but names a version written before the ALTER: once
-- stale, it does not merge either (its version predates history_since)
SELECT status, current, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"a":"x2"}');
-- a token of a version written after the ALTER merges as usual
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET b = 12 WHERE id = 1;
SELECT status, current, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"d":"d1m"}');
SELECT * FROM sch_feed();
SELECT status, data, token = ec_feed.token('sch_t', '{"id":1}') AS token_current
FROM ec_feed.get('sch_t', '{"id":1}');
SELECT ec_feed.row_token(t) = ec_feed.token('sch_t', jsonb_build_object('id', t.id)) AS row_token_current, t.d
FROM sch_t t ORDER BY id;

------------------------------------------------------------------------
-- DROP COLUMN
------------------------------------------------------------------------
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET c = '7' WHERE id = 1;
ALTER TABLE sch_t DROP COLUMN b;
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"a":"stale"}');
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
SELECT status, current FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"a":"x3"}');
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET c = '7b' WHERE id = 1;
SELECT status, current, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"a":"x3m"}');
-- the dropped column is unknown now
SELECT status FROM ec_feed.update_if('sch_t', '{"id":1}', ec_feed.token('sch_t', '{"id":1}'), '{"b":1}');
UPDATE sch_t SET a = 'y3' WHERE id = 2;
SELECT * FROM sch_feed();
SELECT status, data FROM ec_feed.get('sch_t', '{"id":2}');

------------------------------------------------------------------------
-- RENAME COLUMN
------------------------------------------------------------------------
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET c = '8' WHERE id = 1;
ALTER TABLE sch_t RENAME COLUMN a TO aa;
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"aa":"stale"}');
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
SELECT status, current FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"aa":"x4"}');
-- changed names the new name; a stale token merges by it
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET aa = 'x5' WHERE id = 1;
SELECT status, current, conflicts, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"aa":"x6"}');
SELECT status, current, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"d":"d2"}');
SELECT status FROM ec_feed.update_if('sch_t', '{"id":1}', ec_feed.token('sch_t', '{"id":1}'), '{"a":"old name"}');
SELECT * FROM sch_feed();

------------------------------------------------------------------------
-- ALTER COLUMN TYPE (text -> int): values, comparisons and the plans'
-- parameter types follow
------------------------------------------------------------------------
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET d = 'd3' WHERE id = 1;
ALTER TABLE sch_t ALTER COLUMN c TYPE int USING c::int;
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"c":9}');
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
SELECT status, current FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"c":10}');
-- stale: c was changed since, to 20; asking for 20 again (given as text,
-- compared as an int) merges, 21 conflicts
SELECT ec_feed.token('sch_t', '{"id":1}') AS tok \gset
UPDATE sch_t SET c = 20 WHERE id = 1;
SELECT status, current, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"c":"20"}');
SELECT status, current, conflicts, changed_since FROM ec_feed.update_if('sch_t', '{"id":1}', :'tok', '{"c":21}');
SELECT status FROM ec_feed.update_if('sch_t', '{"id":1}', ec_feed.token('sch_t', '{"id":1}'), '{"c":"ten"}');
-- a dropped and re-added column of the same name, of another type
ALTER TABLE sch_t DROP COLUMN d;
ALTER TABLE sch_t ADD COLUMN d int;
SELECT status, current FROM ec_feed.update_if('sch_t', '{"id":1}', ec_feed.token('sch_t', '{"id":1}'), '{"d":4, "c":11}');
-- a key column's type: int -> bigint keeps the keys' JSON
ALTER TABLE sch_t ALTER COLUMN id TYPE bigint;
SELECT status, current FROM ec_feed.update_if('sch_t', '{"id":1}', ec_feed.token('sch_t', '{"id":1}'), '{"d":5}');
SELECT status, current FROM ec_feed.delete_if('sch_t', '{"id":2}', ec_feed.token('sch_t', '{"id":2}'));
SELECT * FROM sch_feed();
SELECT status, data, token = ec_feed.token('sch_t', '{"id":1}') AS token_current
FROM ec_feed.get('sch_t', '{"id":1}');
SELECT ec_feed.row_token(t) = ec_feed.token('sch_t', '{"id":1}') AS row_token_current FROM sch_t t;

------------------------------------------------------------------------
-- 2. the key columns stay: another key, or a key column renamed, is
-- refused; the same columns under a new constraint are fine
------------------------------------------------------------------------
CREATE TABLE sch_k (id int CONSTRAINT sch_k_pkey PRIMARY KEY, code text NOT NULL UNIQUE, v text);
SELECT ec_feed.track('sch_k');
INSERT INTO sch_k VALUES (1, 'one', 'a');
ALTER TABLE sch_k DROP CONSTRAINT sch_k_pkey, ADD CONSTRAINT sch_k_code_pkey PRIMARY KEY (code);
ALTER TABLE sch_k DROP CONSTRAINT sch_k_pkey, ADD CONSTRAINT sch_k_two_pkey PRIMARY KEY (id, code);
ALTER TABLE sch_k RENAME COLUMN id TO ident;
ALTER TABLE sch_k DROP CONSTRAINT sch_k_pkey, ADD CONSTRAINT sch_k_pkey2 PRIMARY KEY (id);
SELECT rel, key_columns FROM ec_feed.tracked WHERE rel = 'sch_k'::regclass;
INSERT INTO sch_k VALUES (2, 'two', 'b');
-- the supported way: untrack (the feed says so), change, track again
SELECT ec_feed.untrack('sch_k');
ALTER TABLE sch_k DROP CONSTRAINT sch_k_pkey2, ADD CONSTRAINT sch_k_code_pkey PRIMARY KEY (code);
SELECT ec_feed.track('sch_k');
SELECT rel, key_columns FROM ec_feed.tracked WHERE rel = 'sch_k'::regclass;
UPDATE sch_k SET v = 'c' WHERE code = 'two';
SELECT * FROM sch_feed();

------------------------------------------------------------------------
-- 3. untrack and DROP TABLE in the feed
------------------------------------------------------------------------
CREATE TABLE sch_d (id int PRIMARY KEY, v text);
CREATE TABLE sch_nohist (id int PRIMARY KEY);
SELECT ec_feed.track('sch_d'), ec_feed.track('sch_nohist', history => false);
CREATE ROLE sch_reader;
GRANT SELECT ON sch_d, sch_t TO sch_reader;
SELECT cur AS before_drop FROM sch_pos \gset
INSERT INTO sch_d VALUES (1, 'a'), (2, 'b');
UPDATE sch_t SET c = 12 WHERE id = 1;
SELECT 'sch_d'::regclass::oid AS d_oid \gset
-- a write and the drop in one transaction, then a write of another table
BEGIN;
UPDATE sch_d SET v = 'c' WHERE id = 1;
DROP TABLE sch_d, sch_nohist;
COMMIT;
UPDATE sch_t SET c = 13 WHERE id = 1;
-- the registrations are gone (the view hid them before; the table too now)
SELECT count(*) AS registrations FROM ec_feed.tracked_rel
WHERE relid::oid IN (:d_oid, 'sch_t'::regclass::oid);
-- the extension's owner reads the dropped table's retained changes, then
-- its untrack, in commit order; the table is named by its OID (the
-- regclass prints the number), key and data NULL; the table without
-- history left nothing
SELECT op, rel::oid = :d_oid AS is_sch_d, rel = 'sch_t'::regclass AS is_sch_t,
	key, data, changed, rel::text = :'d_oid' AS named_by_oid
FROM sch_feed();
-- a role that could read it: the untrack, not the rows (a dropped table
-- has no privileges to check); the other table's changes as before
SET ROLE sch_reader;
SELECT op, rel::oid = :d_oid AS is_sch_d, rel = 'sch_t'::regclass AS is_sch_t, key, data, changed
FROM ec_feed.read(:'before_drop') WHERE op <> 'progress';
-- rels may name it by its OID while its changes are retained: the same
-- rule, the untrack only; nor can anyone but the extension's owner record a
-- drop (42501)
SELECT op, rel::oid = :d_oid AS is_sch_d FROM ec_feed.read(:'before_drop', 10, ARRAY[:d_oid::regclass])
WHERE op <> 'progress';
\set VERBOSITY sqlstate
SELECT ec_feed._record_untrack(:d_oid);
\set VERBOSITY default
RESET ROLE;
-- untrack() of a table another role owns: refused, nothing recorded
CREATE TABLE sch_u (id int PRIMARY KEY, v text);
SELECT ec_feed.track('sch_u');
INSERT INTO sch_u VALUES (1, 'a');
SET ROLE sch_reader;
SELECT ec_feed.untrack('sch_u');
SELECT ec_feed._record_untrack('sch_u');
RESET ROLE;
-- untrack(): its changes, then the untrack; writes after it are not recorded;
-- track() again starts anew (a consumer copies again)
SELECT ec_feed.untrack('sch_u');
INSERT INTO sch_u VALUES (2, 'b');
SELECT ec_feed.track('sch_u');
INSERT INTO sch_u VALUES (3, 'c');
SELECT op, rel, key, data FROM sch_feed();
-- a token from before the untrack: its chain ends there
SELECT ec_feed.token('sch_u', '{"id":1}') AS u1 \gset
SELECT ec_feed.untrack('sch_u');
SELECT ec_feed.track('sch_u');
UPDATE sch_u SET v = 'a2' WHERE id = 1;
SELECT status, conflicts, changed_since FROM ec_feed.update_if('sch_u', '{"id":1}', :'u1', '{"v":"a3"}');
-- an untrack rolled back leaves no change
BEGIN;
SELECT ec_feed.untrack('sch_u');
ROLLBACK;
-- DROP SCHEMA ... CASCADE drops a tracked table too
CREATE SCHEMA sch_s;
CREATE TABLE sch_s.t (id int PRIMARY KEY);
SELECT ec_feed.track('sch_s.t');
SELECT 'sch_s.t'::regclass::oid AS s_oid \gset
DROP SCHEMA sch_s CASCADE;
SELECT op, rel::oid = :s_oid AS is_sch_s_t, rel = 'sch_u'::regclass AS is_sch_u, key, data FROM sch_feed();
SELECT count(*) AS registrations FROM ec_feed.tracked_rel WHERE relid::oid = :s_oid;

DROP TABLE sch_t, sch_k, sch_u, sch_pos;
DROP FUNCTION sch_feed();
DROP OWNED BY sch_reader;
DROP ROLE sch_reader;
