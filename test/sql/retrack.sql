-- track() after untrack(): writes made while a table was untracked left
-- ec_version as it was (UPDATE) or 0 (INSERT), so a token read before the
-- untrack must not match any row after the table is tracked again. track()
-- gives every row of a table that had the managed columns without being
-- stamped a fresh version, without firing the table's own triggers or rules
-- and without a feed entry.
--
-- Tokens and versions differ on every run: they are kept with \gset and only
-- compared, never printed.
\set VERBOSITY default

------------------------------------------------------------------------
-- the lost update: a token read before untrack, an edit while untracked
------------------------------------------------------------------------
CREATE TABLE rt_p (id int PRIMARY KEY, a text);
SELECT ec_feed.track('rt_p');
INSERT INTO rt_p VALUES (1, 'a0'), (2, 'b0');
SELECT ec_feed.token('rt_p', '{"id":1}') AS t0 \gset
SELECT ec_feed.token('rt_p', '{"id":2}') AS t0b \gset
SELECT max(ec_version) AS vmax FROM rt_p \gset
SELECT ec_feed.untrack('rt_p');
UPDATE rt_p SET a = 'edited' WHERE id = 1;
SELECT ec_feed.track('rt_p');
-- conflict, the history cannot tell what changed: 'edited' stays
SELECT status, current->>'a' AS a, conflicts, changed_since
FROM ec_feed.update_if('rt_p', '{"id":1}', :'t0', '{"a":"mine"}');
SELECT id, a FROM rt_p ORDER BY id;
-- a row not written while untracked is renumbered too: its old token is stale
SELECT status, changed_since FROM ec_feed.update_if('rt_p', '{"id":2}', :'t0b', '{"a":"mine"}');
SELECT count(*) FILTER (WHERE ec_version > :vmax) AS renumbered, count(*) AS rows FROM rt_p;

------------------------------------------------------------------------
-- tokens read after the re-track
------------------------------------------------------------------------
SELECT ec_feed.token('rt_p', '{"id":1}') AS t1 \gset
SELECT ec_feed.token('rt_p', '{"id":2}') AS t1b \gset
-- the renumbering precedes history_since: the fresh versions have no
-- history entry, and their tokens count as visible, not as rolled back
SELECT bool_and(p.ec_version < t.history_since) AS below_history_since
FROM rt_p p, ec_feed.tracked_rel t WHERE t.relid = 'rt_p'::regclass;
SELECT ec_feed.token_status(:'t1') AS t1_status;
SELECT ec_feed.require_visible(:'t1');
SELECT status, data->>'a' AS a FROM ec_feed.get('rt_p', '{"id":1}', :'t1');
-- the current token applies
SELECT status, current->>'a' AS a, conflicts, changed_since
FROM ec_feed.update_if('rt_p', '{"id":1}', :'t1', '{"a":"mine"}');
-- a renumbered token that went stale is older than the history: conflict
UPDATE rt_p SET a = 'b1' WHERE id = 2;
SELECT status, current->>'a' AS a, changed_since
FROM ec_feed.update_if('rt_p', '{"id":2}', :'t1b', '{"a":"b2"}');
-- from the row's next write on, its tokens merge again
SELECT ec_feed.token('rt_p', '{"id":2}') AS t2b \gset
UPDATE rt_p SET a = 'b3' WHERE id = 2;
SELECT status, changed_since FROM ec_feed.update_if('rt_p', '{"id":2}', :'t2b', '{"a":"b3"}');
SELECT ec_feed.token('rt_p', '{"id":1}') AS t2 \gset
SELECT status FROM ec_feed.delete_if('rt_p', '{"id":1}', :'t2');
SELECT count(*) FROM rt_p;

------------------------------------------------------------------------
-- delete_if: a version-0 token, the row re-inserted while untracked
------------------------------------------------------------------------
CREATE TABLE rt_d (id int PRIMARY KEY, v text);
INSERT INTO rt_d VALUES (1, 'old');			-- before track(): version 0
SELECT ec_feed.track('rt_d');
SELECT ec_feed.token('rt_d', '{"id":1}') AS d0 \gset
SELECT ec_feed.untrack('rt_d');
DELETE FROM rt_d WHERE id = 1;
INSERT INTO rt_d (id, v) VALUES (1, 'new');		-- version 0 again (the default)
SELECT ec_feed.track('rt_d');
SELECT ec_version > 0 AS renumbered FROM rt_d;
-- the token of the old row deletes nothing
SELECT status, current->>'v' AS v, changed_since FROM ec_feed.delete_if('rt_d', '{"id":1}', :'d0');
SELECT status, changed_since FROM ec_feed.update_if('rt_d', '{"id":1}', :'d0', '{"v":"mine"}');
SELECT id, v FROM rt_d;

------------------------------------------------------------------------
-- untracked with drop_columns: a token of a row from before the first
-- track() does not match the row once the columns are added again
------------------------------------------------------------------------
CREATE TABLE rt_drop (id int PRIMARY KEY, v text);
INSERT INTO rt_drop VALUES (1, 'old');
SELECT ec_feed.track('rt_drop');
SELECT ec_feed.token('rt_drop', '{"id":1}') AS x0 \gset
SELECT ec_feed.untrack('rt_drop', drop_columns => true);
UPDATE rt_drop SET v = 'edited';
SELECT ec_feed.track('rt_drop');
SELECT status, current->>'v' AS v, changed_since
FROM ec_feed.update_if('rt_drop', '{"id":1}', :'x0', '{"v":"mine"}');
SELECT status FROM ec_feed.delete_if('rt_drop', '{"id":1}', :'x0');
SELECT v FROM rt_drop;
-- a token read now applies
SELECT ec_feed.token('rt_drop', '{"id":1}') AS x1 \gset
SELECT ec_feed.token_status(:'x1') AS x1_status;
SELECT status, current->>'v' AS v FROM ec_feed.update_if('rt_drop', '{"id":1}', :'x1', '{"v":"mine"}');

------------------------------------------------------------------------
-- the table's own triggers and rules do not see the renumbering, and get
-- back exactly the state they had; nothing reaches the feed
------------------------------------------------------------------------
CREATE TABLE rt_audit (what text);
CREATE TABLE rt_t (id int PRIMARY KEY, v text);
CREATE FUNCTION rt_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rt_audit VALUES (TG_NAME || ' ' || TG_OP || ' ' || TG_LEVEL);
	RETURN NULL;
END;
$$;
CREATE FUNCTION rt_log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rt_audit VALUES (TG_NAME || ' ' || TG_OP || ' ' || TG_LEVEL);
	RETURN NEW;
END;
$$;
CREATE TRIGGER rt_before_row BEFORE UPDATE ON rt_t FOR EACH ROW EXECUTE FUNCTION rt_log_row();
CREATE TRIGGER rt_after_stmt AFTER UPDATE ON rt_t FOR EACH STATEMENT EXECUTE FUNCTION rt_log();
CREATE TRIGGER rt_always AFTER UPDATE ON rt_t FOR EACH ROW EXECUTE FUNCTION rt_log();
CREATE TRIGGER rt_replica AFTER UPDATE ON rt_t FOR EACH ROW EXECUTE FUNCTION rt_log();
CREATE TRIGGER rt_off AFTER UPDATE ON rt_t FOR EACH ROW EXECUTE FUNCTION rt_log();
ALTER TABLE rt_t ENABLE ALWAYS TRIGGER rt_always, ENABLE REPLICA TRIGGER rt_replica,
	DISABLE TRIGGER rt_off;
CREATE RULE rt_also AS ON UPDATE TO rt_t DO ALSO INSERT INTO rt_audit VALUES ('rule rt_also');
CREATE RULE rt_always_rule AS ON UPDATE TO rt_t DO ALSO INSERT INTO rt_audit VALUES ('rule rt_always_rule');
ALTER TABLE rt_t ENABLE ALWAYS RULE rt_always_rule;
SELECT ec_feed.track('rt_t');
INSERT INTO rt_t VALUES (1, 'x'), (2, 'y');
SELECT max(ec_version) AS tmax FROM rt_t \gset
SELECT ec_feed.untrack('rt_t');
-- (the untrack itself is recorded: counted from here)
SELECT count(*) AS hist_before FROM ec_feed.history WHERE relid = 'rt_t'::regclass \gset
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'rt_t'::regclass ORDER BY tgname;
SELECT ec_feed.cursor_now() AS cur \gset
BEGIN;
SELECT ec_feed.track('rt_t');
-- every row renumbered, by this transaction
SELECT count(*) FILTER (WHERE ec_version > :tmax) AS renumbered,
	   count(*) FILTER (WHERE ec_xid = pg_current_xact_id()) AS by_track, count(*) AS rows
FROM rt_t;
COMMIT;
-- no trigger or rule fired
SELECT count(*) AS audit_rows FROM rt_audit;
-- the enable states are the ones before (O: enabled, A: always, R: replica, D: disabled)
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'rt_t'::regclass ORDER BY tgname;
SELECT rulename, ev_enabled FROM pg_rewrite WHERE ev_class = 'rt_t'::regclass ORDER BY rulename;
-- nothing recorded, nothing in the feed
SELECT count(*) - :hist_before AS new_history FROM ec_feed.history WHERE relid = 'rt_t'::regclass;
SELECT count(*) AS feed_rows FROM ec_feed.read(:'cur', 100, '{rt_t}') WHERE op <> 'progress';
-- the next plain UPDATE fires them as before, and is recorded
UPDATE rt_t SET v = 'z' WHERE id = 1;
SELECT what FROM rt_audit ORDER BY what;
SELECT op, key, changed FROM ec_feed.read(:'cur', 100, '{rt_t}');

------------------------------------------------------------------------
-- a table referenced by a foreign key: no key changes, nothing cascades
------------------------------------------------------------------------
CREATE TABLE rt_parent (id int PRIMARY KEY, v text);
CREATE TABLE rt_child (id int PRIMARY KEY,
	parent int REFERENCES rt_parent ON UPDATE CASCADE ON DELETE CASCADE);
CREATE TRIGGER rt_child_log AFTER UPDATE ON rt_child FOR EACH ROW EXECUTE FUNCTION rt_log();
TRUNCATE rt_audit;
SELECT ec_feed.track('rt_parent');
INSERT INTO rt_parent VALUES (1, 'p1'), (2, 'p2');
INSERT INTO rt_child VALUES (10, 1), (20, 2);
SELECT max(ec_version) AS pmax FROM rt_parent \gset
SELECT ec_feed.untrack('rt_parent');
SELECT ec_feed.track('rt_parent');
SELECT count(*) FILTER (WHERE ec_version > :pmax) AS renumbered, count(*) AS rows FROM rt_parent;
SELECT count(*) AS audit_rows FROM rt_audit;
SELECT * FROM rt_child ORDER BY id;
-- the foreign key's internal triggers are untouched
SELECT count(*) AS internal, count(*) FILTER (WHERE tgenabled = 'O') AS enabled
FROM pg_trigger WHERE tgrelid = 'rt_parent'::regclass AND tgisinternal;

------------------------------------------------------------------------
-- FORCE ROW LEVEL SECURITY: the owner's UPDATE still reaches every row
------------------------------------------------------------------------
CREATE ROLE regress_rt_owner;
CREATE TABLE rt_rls (id int PRIMARY KEY, v text);
ALTER TABLE rt_rls OWNER TO regress_rt_owner;
ALTER TABLE rt_rls ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY rt_rls_one ON rt_rls USING (id = 1);
SET ROLE regress_rt_owner;
SELECT ec_feed.track('rt_rls');
RESET ROLE;
INSERT INTO rt_rls VALUES (1, 'a'), (2, 'b'), (3, 'c');
SELECT ec_feed.token('rt_rls', '{"id":2}') AS r0 \gset
SELECT max(ec_version) AS rmax FROM rt_rls \gset
SET ROLE regress_rt_owner;
SELECT ec_feed.untrack('rt_rls');
RESET ROLE;
UPDATE rt_rls SET v = 'edited' WHERE id = 2;
SET ROLE regress_rt_owner;
SELECT count(*) AS owner_sees FROM rt_rls;
SELECT ec_feed.track('rt_rls');
RESET ROLE;
SELECT count(*) FILTER (WHERE ec_version > :rmax) AS renumbered, count(*) AS rows FROM rt_rls;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'rt_rls'::regclass;
SELECT status, current->>'v' AS v, changed_since
FROM ec_feed.update_if('rt_rls', '{"id":2}', :'r0', '{"v":"mine"}');

------------------------------------------------------------------------
-- other tables that carry the columns unstamped
------------------------------------------------------------------------
-- columns made by hand, never tracked: the versions are not ec_feed's
CREATE TABLE rt_hand (id int PRIMARY KEY, ec_version bigint NOT NULL, ec_xid xid8 NOT NULL);
INSERT INTO rt_hand VALUES (1, 7, '7'), (2, 0, '0');
SELECT pg_sequence_last_value('ec_feed.change_seq') AS last \gset
SELECT ec_feed.track('rt_hand');
SELECT id, ec_version > :last AS fresh, ec_xid <> '7' AS xid_set FROM rt_hand ORDER BY id;
-- the stamp trigger dropped by hand while registered
SELECT max(ec_version) AS hmax FROM rt_hand \gset
DROP TRIGGER zz_ec_feed_stamp ON rt_hand;
DROP TRIGGER zz_ec_feed_record ON rt_hand;
SELECT ec_feed.track('rt_hand');
SELECT count(*) FILTER (WHERE ec_version > :hmax) AS renumbered FROM rt_hand;
-- track() of a table it already stamps renumbers nothing
SELECT max(ec_version) AS hmax FROM rt_hand \gset
SELECT ec_feed.track('rt_hand');
SELECT ec_feed.track('rt_hand', history => false);
SELECT ec_feed.track('rt_hand');
SELECT count(*) FILTER (WHERE ec_version > :hmax) AS renumbered FROM rt_hand;
-- the stamp trigger set by hand to fire only for replication (or disabled):
-- plain writes went unstamped, so track() renumbers and makes both triggers
-- fire always again; a token from before never applies
ALTER TABLE rt_hand ADD COLUMN v text;
SELECT ec_feed.token('rt_hand', '{"id":1}') AS h0 \gset
ALTER TABLE rt_hand ENABLE REPLICA TRIGGER zz_ec_feed_stamp;
ALTER TABLE rt_hand DISABLE TRIGGER zz_ec_feed_record;
UPDATE rt_hand SET v = 'unstamped' WHERE id = 1;
SELECT ec_feed.track('rt_hand');
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'rt_hand'::regclass
	AND tgname IN ('zz_ec_feed_stamp', 'zz_ec_feed_record') ORDER BY tgname;
SELECT status, current->>'v' AS v, changed_since
FROM ec_feed.update_if('rt_hand', '{"id":1}', :'h0', '{"v":"mine"}');

------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------
SELECT count(ec_feed.untrack(c)) FROM unnest('{rt_p,rt_d,rt_drop,rt_t,rt_parent,rt_hand}'::regclass[]) c;
SET ROLE regress_rt_owner;
SELECT ec_feed.untrack('rt_rls');
RESET ROLE;
DROP TABLE rt_p, rt_d, rt_drop, rt_t, rt_audit, rt_child, rt_parent, rt_rls, rt_hand;
DROP FUNCTION rt_log(), rt_log_row();
DROP ROLE regress_rt_owner;
