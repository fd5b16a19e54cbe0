-- A stale token merges only when the history proves it saw every version of
-- the row between the token's and the current one (issue 11, 16.4-16.6),
-- and track() refuses keys it cannot identify rows by (issue 14.5, 14.6).
--
-- Tokens differ on every run: they are kept with \gset and never printed.
\set VERBOSITY default

------------------------------------------------------------------------
-- history switched off and on again between the token and the write
------------------------------------------------------------------------
CREATE TABLE hc_p (id int PRIMARY KEY, a text, b text);
SELECT ec_feed.track('hc_p');
INSERT INTO hc_p VALUES (1, 'a0', 'b0');
SELECT ec_feed.token('hc_p', '{"id":1}') AS t0 \gset
SELECT ec_feed.track('hc_p', history => false);
UPDATE hc_p SET a = 'a1' WHERE id = 1;		-- not recorded
SELECT ec_feed.track('hc_p', history => true);
UPDATE hc_p SET b = 'b1' WHERE id = 1;		-- recorded: changed {b}
-- conflict, changed_since NULL: 'a1' is not overwritten
SELECT status, current->>'a' AS a, conflicts, changed_since
FROM ec_feed.update_if('hc_p', '{"id":1}', :'t0', '{"a":"a2"}');
SELECT a, b FROM hc_p;
-- the history links each update to the version it replaced; the first
-- recorded update names a version that has no entry: a hole
SELECT op, prev_version IS NULL AS no_prev, changed,
	   prev_version = lag(seq) OVER (ORDER BY seq) AS follows
FROM ec_feed.history WHERE relid = 'hc_p'::regclass ORDER BY seq;
-- delete_if needs the same proof: only a no-op update is recorded after the hole
SELECT ec_feed.token('hc_p', '{"id":1}') AS t1 \gset
SELECT ec_feed.track('hc_p', history => false);
UPDATE hc_p SET a = 'a3' WHERE id = 1;		-- not recorded
SELECT ec_feed.track('hc_p', history => true);
UPDATE hc_p SET b = b WHERE id = 1;			-- recorded: changed {}
SELECT status, conflicts, changed_since FROM ec_feed.delete_if('hc_p', '{"id":1}', :'t1');
SELECT count(*) AS rows_left FROM hc_p;

-- with the chain intact, a stale token still merges
SELECT ec_feed.token('hc_p', '{"id":1}') AS t2 \gset
UPDATE hc_p SET b = 'b2' WHERE id = 1;
UPDATE hc_p SET b = 'b3' WHERE id = 1;
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('hc_p', '{"id":1}', :'t2', '{"a":"a4"}');
-- and delete_if merges over updates that changed nothing
SELECT ec_feed.token('hc_p', '{"id":1}') AS t3 \gset
UPDATE hc_p SET a = a WHERE id = 1;
SELECT status, conflicts, changed_since FROM ec_feed.delete_if('hc_p', '{"id":1}', :'t3');

-- calling track() again does not cut the history: it stays idempotent
INSERT INTO hc_p VALUES (2, 'a0', 'b0');
SELECT ec_feed.token('hc_p', '{"id":2}') AS t4 \gset
SELECT history_since AS since FROM ec_feed.tracked_rel WHERE relid = 'hc_p'::regclass \gset
SELECT ec_feed.track('hc_p');
SELECT ec_feed.track('hc_p', history => true);
SELECT history_since = :since AS since_unchanged FROM ec_feed.tracked_rel WHERE relid = 'hc_p'::regclass;
UPDATE hc_p SET b = 'b1' WHERE id = 2;
SELECT status, changed_since FROM ec_feed.update_if('hc_p', '{"id":2}', :'t4', '{"a":"a1"}');

------------------------------------------------------------------------
-- untracked in between: the row's version stands still while it changes
------------------------------------------------------------------------
CREATE TABLE hc_u (id int PRIMARY KEY, a text, b text);
SELECT ec_feed.track('hc_u');
INSERT INTO hc_u VALUES (1, 'a0', 'b0');
SELECT ec_feed.token('hc_u', '{"id":1}') AS u0 \gset
SELECT ec_feed.untrack('hc_u');
UPDATE hc_u SET a = 'a1' WHERE id = 1;		-- nothing stamps or records it
SELECT ec_feed.track('hc_u');
UPDATE hc_u SET b = 'b1' WHERE id = 1;		-- recorded, prev = the token's version
SELECT status, current->>'a' AS a, changed_since
FROM ec_feed.update_if('hc_u', '{"id":1}', :'u0', '{"a":"a2"}');

------------------------------------------------------------------------
-- ec_feed's triggers disabled by hand in between
------------------------------------------------------------------------
SELECT ec_feed.token('hc_u', '{"id":1}') AS u1 \gset
ALTER TABLE hc_u DISABLE TRIGGER USER;
UPDATE hc_u SET a = 'a3' WHERE id = 1;		-- neither stamped nor recorded
ALTER TABLE hc_u ENABLE ALWAYS TRIGGER zz_ec_feed_stamp, ENABLE ALWAYS TRIGGER zz_ec_feed_record,
	ENABLE TRIGGER zz_ec_feed_truncate_guard;
UPDATE hc_u SET b = 'b3' WHERE id = 1;
SELECT status, current->>'a' AS a, changed_since
FROM ec_feed.update_if('hc_u', '{"id":1}', :'u1', '{"a":"a4"}');

------------------------------------------------------------------------
-- a column renamed between the token and the write (issue 16.5)
------------------------------------------------------------------------
CREATE TABLE hc_n (id int PRIMARY KEY, note text, other text);
SELECT ec_feed.track('hc_n');
INSERT INTO hc_n VALUES (1, 'n0', 'o0');
SELECT ec_feed.token('hc_n', '{"id":1}') AS n0 \gset
UPDATE hc_n SET note = 'n1' WHERE id = 1;	-- recorded as changed {note}
ALTER TABLE hc_n RENAME note TO remark;
SELECT status, current->>'remark' AS remark, changed_since
FROM ec_feed.update_if('hc_n', '{"id":1}', :'n0', '{"remark":"n2"}');
-- a token of a version written before the ALTER TABLE never merges again,
-- even if it was read after it
SELECT ec_feed.token('hc_n', '{"id":1}') AS n1 \gset
UPDATE hc_n SET other = 'o1' WHERE id = 1;
SELECT status, changed_since FROM ec_feed.update_if('hc_n', '{"id":1}', :'n1', '{"remark":"n2"}');
-- once the row is written again, its new tokens merge
SELECT ec_feed.token('hc_n', '{"id":1}') AS n2 \gset
UPDATE hc_n SET other = 'o2' WHERE id = 1;
SELECT status, current->>'remark' AS remark, changed_since
FROM ec_feed.update_if('hc_n', '{"id":1}', :'n2', '{"remark":"n2"}');
-- any ALTER TABLE cuts the history of stale tokens, an added column too
SELECT ec_feed.token('hc_n', '{"id":1}') AS n3 \gset
UPDATE hc_n SET other = 'o3' WHERE id = 1;
ALTER TABLE hc_n ADD COLUMN extra int;
SELECT status, changed_since FROM ec_feed.update_if('hc_n', '{"id":1}', :'n3', '{"remark":"n4"}');

------------------------------------------------------------------------
-- ABA: deleted and inserted again with the same key (issue 16.4)
------------------------------------------------------------------------
CREATE TABLE hc_link (item int, tag text, PRIMARY KEY (item, tag));
SELECT ec_feed.track('hc_link');
INSERT INTO hc_link VALUES (1, 'x');
SELECT ec_feed.token('hc_link', '{"item":1,"tag":"x"}') AS l0 \gset
DELETE FROM hc_link;
INSERT INTO hc_link VALUES (1, 'x');
-- every column changed, key columns included: the new row stays
SELECT status, conflicts, changed_since FROM ec_feed.delete_if('hc_link', '{"item":1,"tag":"x"}', :'l0');
SELECT count(*) AS rows_left FROM hc_link;
-- an allowed TRUNCATE ends the chain: it is recorded (truncate_feed.sql),
-- but names no version of the row it removed
SELECT ec_feed.token('hc_link', '{"item":1,"tag":"x"}') AS l1 \gset
SET ec_feed.allow_truncate = on;
TRUNCATE hc_link;
RESET ec_feed.allow_truncate;
INSERT INTO hc_link VALUES (1, 'x');
SELECT status, conflicts, changed_since FROM ec_feed.delete_if('hc_link', '{"item":1,"tag":"x"}', :'l1');
SELECT count(*) AS rows_left FROM hc_link;
-- with other columns: a replaced row conflicts unless the value asked for is already there
CREATE TABLE hc_r (id int PRIMARY KEY, a text, b text);
SELECT ec_feed.track('hc_r');
INSERT INTO hc_r VALUES (1, 'a0', 'b0');
SELECT ec_feed.token('hc_r', '{"id":1}') AS r0 \gset
DELETE FROM hc_r;
INSERT INTO hc_r VALUES (1, 'a0', 'b1');
SELECT status, conflicts, changed_since FROM ec_feed.update_if('hc_r', '{"id":1}', :'r0', '{"a":"a1"}');
SELECT status, conflicts, changed_since FROM ec_feed.update_if('hc_r', '{"id":1}', :'r0', '{"a":"a0"}');

------------------------------------------------------------------------
-- AFTER triggers that write the same row (issue 16.6)
------------------------------------------------------------------------
CREATE TABLE hc_order (id int PRIMARY KEY, qty int, price int, total int);
CREATE FUNCTION hc_order_total() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE hc_order SET total = NEW.qty * NEW.price
	WHERE id = NEW.id AND total IS DISTINCT FROM NEW.qty * NEW.price;
	RETURN NULL;
END;
$$;
CREATE TRIGGER hc_order_total AFTER UPDATE ON hc_order FOR EACH ROW EXECUTE FUNCTION hc_order_total();
SELECT ec_feed.track('hc_order');
INSERT INTO hc_order VALUES (1, 1, 10, 10);
SELECT ec_feed.token('hc_order', '{"id":1}') AS o0 \gset
-- current is the row after the trigger, the token its newest
SELECT status, current->>'total' AS total, token AS o1
FROM ec_feed.update_if('hc_order', '{"id":1}', :'o0', '{"qty":2}') \gset
\echo :status :total
SELECT :'o1' = ec_feed.token('hc_order', '{"id":1}') AS newest;
-- so the caller's token does not conflict with the caller's own write
SELECT status, current->>'total' AS total, token AS o2
FROM ec_feed.update_if('hc_order', '{"id":1}', :'o1', '{"qty":3}', merge => false) \gset
\echo :status :total
SELECT :'o2' = ec_feed.token('hc_order', '{"id":1}') AS newest;
-- the merged path too
UPDATE hc_order SET price = 5 WHERE id = 1;
SELECT status, current->>'total' AS total, token AS o3
FROM ec_feed.update_if('hc_order', '{"id":1}', :'o2', '{"qty":4}') \gset
\echo :status :total
SELECT :'o3' = ec_feed.token('hc_order', '{"id":1}') AS newest;
SELECT qty, price, total FROM hc_order;

------------------------------------------------------------------------
-- the event trigger works for any role that may alter its table
------------------------------------------------------------------------
CREATE ROLE hc_owner;
GRANT CREATE ON SCHEMA public TO hc_owner;
SET ROLE hc_owner;
CREATE TABLE hc_own (id int PRIMARY KEY, v int);
SELECT ec_feed.track('hc_own');
SELECT history_since AS since FROM ec_feed.tracked_rel WHERE relid = 'hc_own'::regclass \gset
ALTER TABLE hc_own RENAME v TO w;
SELECT history_since > :since AS moved FROM ec_feed.tracked_rel WHERE relid = 'hc_own'::regclass;
SELECT ec_feed._schema_changed();	-- not callable directly
RESET ROLE;
DROP TABLE hc_own;
REVOKE CREATE ON SCHEMA public FROM hc_owner;
DROP ROLE hc_owner;

------------------------------------------------------------------------
-- keys track() refuses (issues 14.5, 14.6)
------------------------------------------------------------------------
CREATE TABLE hc_deferred (id int PRIMARY KEY DEFERRABLE, v int);
SELECT ec_feed.track('hc_deferred');
CREATE TABLE hc_deferred2 (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v int);
SELECT ec_feed.track('hc_deferred2');
CREATE COLLATION hc_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE hc_ci_key (region text, name text COLLATE hc_ci, v int, PRIMARY KEY (region, name));
SELECT ec_feed.track('hc_ci_key');
-- a nondeterministic collation elsewhere than in the key is fine
CREATE TABLE hc_ci_other (id text COLLATE "C" PRIMARY KEY, label text COLLATE hc_ci);
SELECT ec_feed.track('hc_ci_other');
INSERT INTO hc_ci_other VALUES ('a', 'Label');
-- INCLUDE columns of the primary key index are not key columns
CREATE TABLE hc_inc (id int, x int, PRIMARY KEY (id) INCLUDE (x));
SELECT ec_feed.track('hc_inc');
SELECT rel, key_columns FROM ec_feed.tracked WHERE rel::text LIKE 'hc_%' ORDER BY rel::text;

DROP TABLE hc_p, hc_u, hc_n, hc_link, hc_r, hc_order, hc_deferred, hc_deferred2, hc_ci_key, hc_ci_other, hc_inc;
DROP FUNCTION hc_order_total();
DROP COLLATION hc_ci;
