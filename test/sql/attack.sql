-- An attacker's suite. Ordinary LOGIN roles, with no grant on anything of
-- ec_feed, try to make ec_feed's functions crash, read or write what plain
-- SQL would not let them, run their code as another role, or corrupt the
-- history. Each attack is stated here; no check relies on how ec_feed is
-- built. Tokens, versions and xids differ between runs: none is printed.
\set SHOW_CONTEXT never
\set VERBOSITY default

SET client_min_messages = warning;
CREATE ROLE regress_atk_mallory LOGIN;		-- the attacker
CREATE ROLE regress_atk_alice LOGIN;		-- an ordinary user, the victim
RESET client_min_messages;

-- SQLSTATE and message of an error (or 'ok')
CREATE FUNCTION atk_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	state text;
	msg text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	RETURN state || ': ' || msg;
END;
$$;

-- The attacker's schema. It stands for any schema a victim has in its
-- search_path that the attacker can create objects in (public was such a
-- schema for every role before PostgreSQL 15).
CREATE SCHEMA atk_evil AUTHORIZATION regress_atk_mallory;

------------------------------------------------------------------------
-- 1. Column names that collide with the aliases of ec_feed's SQL
------------------------------------------------------------------------
-- A table whose columns are named t, ec_feed_row and ec_feed_key (the
-- aliases ec_feed's statements used for the whole row and the key), one
-- whose key column is t, and one with t timestamptz as in a real schema.
-- A bytea in t crafted to look like a row header must come back as data.
SET ROLE regress_atk_mallory;
CREATE TEMP TABLE atk_shadow (id int PRIMARY KEY, t bytea, ec_feed_row int, ec_feed_key text, note text);
SELECT ec_feed.track('atk_shadow');
INSERT INTO atk_shadow (id, t, ec_feed_row, ec_feed_key, note) VALUES
	(1, '\xffffffff000000000000000000000000ffff7f00', 1, 'k1', 'one'),
	(2, '\x01', 2, 'k2', 'two'),
	(3, NULL, NULL, NULL, 'three');
-- update_if, applied (the UPDATE ... RETURNING path)
SELECT status, current, conflicts FROM ec_feed.update_if('atk_shadow', '{"id": 1}',
	(SELECT ec_feed.row_token(s) FROM atk_shadow s WHERE id = 1), '{"note": "changed"}');
-- update_if with a stale token (the path that locks the row first)
CREATE TEMP TABLE atk_kept AS SELECT ec_feed.row_token(s) AS token FROM atk_shadow s WHERE id = 2;
UPDATE atk_shadow SET ec_feed_key = 'k2b' WHERE id = 2;
SELECT status, current, conflicts, changed_since FROM ec_feed.update_if('atk_shadow', '{"id": 2}',
	(SELECT token FROM atk_kept), '{"note": "merged"}');
SELECT status, current->>'ec_feed_key' AS kept, conflicts FROM ec_feed.update_if('atk_shadow', '{"id": 2}',
	(SELECT token FROM atk_kept), '{"ec_feed_key": "mine"}');
-- delete_if, applied and stale
SELECT status, current FROM ec_feed.delete_if('atk_shadow', '{"id": 3}',
	(SELECT ec_feed.row_token(s) FROM atk_shadow s WHERE id = 3));
SELECT status, conflicts FROM ec_feed.delete_if('atk_shadow', '{"id": 2}', (SELECT token FROM atk_kept));
-- get and token
SELECT status, data, token = (SELECT ec_feed.row_token(s) FROM atk_shadow s WHERE id = 1) AS current_token
FROM ec_feed.get('atk_shadow', '{"id": 1}');
SELECT status, data FROM ec_feed.get('atk_shadow', '{"id": 3}');
SELECT ec_feed.token('atk_shadow', '{"id": 2}') = (SELECT ec_feed.row_token(s) FROM atk_shadow s WHERE id = 2) AS token_ok;
-- the feed holds the rows as written
SELECT op, key, data FROM ec_feed.read(NULL, 100, ARRAY['atk_shadow'::regclass]) WHERE op <> 'progress' ORDER BY version;

CREATE TEMP TABLE atk_keyt (t int PRIMARY KEY, ec_feed_key int, ec_feed_row text);
SELECT ec_feed.track('atk_keyt');
INSERT INTO atk_keyt VALUES (7, 70, 'seven');
SELECT status, current FROM ec_feed.update_if('atk_keyt', '{"t": 7}',
	(SELECT ec_feed.row_token(k) FROM atk_keyt k), '{"ec_feed_row": "SEVEN"}');
SELECT status, data FROM ec_feed.get('atk_keyt', '{"t": 7}', (SELECT ec_feed.row_token(k) FROM atk_keyt k));
SELECT status, current FROM ec_feed.delete_if('atk_keyt', '{"t": 7}', (SELECT ec_feed.row_token(k) FROM atk_keyt k));

CREATE TEMP TABLE atk_events (id int PRIMARY KEY, t timestamptz, note text);
SELECT ec_feed.track('atk_events');
INSERT INTO atk_events VALUES (1, '2020-01-01 00:00:00+00', 'first');
SELECT status, current->>'note' AS note FROM ec_feed.update_if('atk_events', '{"id": 1}',
	(SELECT ec_feed.row_token(e) FROM atk_events e), '{"note": "changed"}');
-- a dropped column before the colliding one
ALTER TABLE atk_events DROP COLUMN note;
ALTER TABLE atk_events ADD COLUMN note2 text;
SELECT status, current FROM ec_feed.update_if('atk_events', '{"id": 1}',
	(SELECT ec_feed.row_token(e) FROM atk_events e), '{"note2": "after drop"}');
SELECT status, data FROM ec_feed.get('atk_events', '{"id": 1}');
RESET ROLE;

------------------------------------------------------------------------
-- 2. Objects planted in the caller's search_path
------------------------------------------------------------------------
-- Every planted function records that it ran (and as whom) in atk_evil.ran;
-- the one behind =(varchar, varchar) also tries to make the attacker a
-- superuser. None of them may ever run.
SET ROLE regress_atk_mallory;
CREATE TABLE atk_evil.ran (what text, as_role name);
GRANT USAGE ON SCHEMA atk_evil TO PUBLIC;
GRANT INSERT ON atk_evil.ran TO PUBLIC;
CREATE FUNCTION atk_evil.eq_varchar(varchar, varchar) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO atk_evil.ran VALUES ('=(varchar,varchar)', current_user);
	BEGIN
		ALTER ROLE regress_atk_mallory SUPERUSER;
	EXCEPTION WHEN OTHERS THEN NULL;
	END;
	RETURN $1::text OPERATOR(pg_catalog.=) $2::text;
END $$;
CREATE OPERATOR atk_evil.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = atk_evil.eq_varchar);
CREATE FUNCTION atk_evil.eq_int(int, int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO atk_evil.ran VALUES ('=(int,int)', current_user);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR atk_evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = atk_evil.eq_int);
CREATE FUNCTION atk_evil.eq_int8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO atk_evil.ran VALUES ('=(bigint,bigint)', current_user);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR atk_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = atk_evil.eq_int8);
CREATE FUNCTION atk_evil.eq_jsonb(jsonb, jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO atk_evil.ran VALUES ('=(jsonb,jsonb)', current_user);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR atk_evil.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = atk_evil.eq_jsonb);
-- functions ec_feed might call by name: jsonb_build_object, jsonb_to_record, to_jsonb
CREATE FUNCTION atk_evil.jsonb_build_object(text, varchar) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO atk_evil.ran VALUES ('jsonb_build_object', current_user);
	RETURN pg_catalog.jsonb_build_object($1, $2);
END $$;
CREATE FUNCTION atk_evil.to_jsonb(varchar) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO atk_evil.ran VALUES ('to_jsonb', current_user);
	RETURN pg_catalog.to_jsonb($1::text);
END $$;
-- a type and a table that shadow names in pg_temp (searched first for both)
CREATE TYPE pg_temp.varchar AS (x int);
CREATE TEMP TABLE atk_codes (code int PRIMARY KEY, label text);
RESET ROLE;

-- the victim: a superuser, with the attacker's schema first in its search_path
CREATE TABLE atk_codes (code varchar(10) PRIMARY KEY, label text);
CREATE TABLE atk_nums (id int PRIMARY KEY, label text);
SELECT ec_feed.track('public.atk_codes'), ec_feed.track('public.atk_nums');
INSERT INTO public.atk_codes VALUES ('a', 'alpha'), ('b', 'beta'), ('c', 'gamma');
INSERT INTO public.atk_nums VALUES (1, 'one'), (2, 'two');
-- pg_catalog is searched first unless listed: only an exact type match wins
SET search_path = atk_evil, public;
SELECT status, data FROM ec_feed.get('public.atk_codes', '{"code": "a"}');
SELECT status, data FROM ec_feed.get('public.atk_codes', '{"code": "zz"}');
SELECT status, data FROM ec_feed.get('public.atk_codes', '{"code": "a"}',
	(SELECT ec_feed.row_token(c) FROM public.atk_codes c WHERE code OPERATOR(pg_catalog.=) 'a'));
SELECT ec_feed.token('public.atk_codes', '{"code": "b"}') IS NOT NULL AS token;
SELECT status, current FROM ec_feed.update_if('public.atk_codes', '{"code": "b"}',
	ec_feed.token('public.atk_codes', '{"code": "b"}'), '{"label": "BETA"}');
SELECT status FROM ec_feed.delete_if('public.atk_codes', '{"code": "c"}',
	ec_feed.token('public.atk_codes', '{"code": "c"}'));
-- and with the attacker's schema ahead of pg_catalog: every operator is planted
SET search_path = atk_evil, pg_catalog, pg_temp, public;
SELECT status, data FROM ec_feed.get('public.atk_nums', '{"id": 1}');
CREATE TEMP TABLE atk_stale AS SELECT ec_feed.row_token(n) AS token FROM public.atk_nums n WHERE id OPERATOR(pg_catalog.=) 2;
UPDATE public.atk_nums SET label = 'two!' WHERE id OPERATOR(pg_catalog.=) 2;
SELECT status, current, changed_since FROM ec_feed.update_if('public.atk_nums', '{"id": 2}',
	(SELECT token FROM atk_stale), '{"label": "deux"}');
SELECT status, conflicts FROM ec_feed.delete_if('public.atk_nums', '{"id": 2}', (SELECT token FROM atk_stale));
SELECT status, current FROM ec_feed.update_if('public.atk_nums', '{"id": 1}',
	ec_feed.token('public.atk_nums', '{"id": 1}'), '{"label": "uno"}');
SELECT status, current FROM ec_feed.delete_if('public.atk_nums', '{"id": 1}',
	ec_feed.token('public.atk_nums', '{"id": 1}'));
SELECT count(*) AS feed_rows FROM ec_feed.read(NULL, 100, ARRAY['public.atk_nums'::regclass]) WHERE op <> 'progress';
SELECT ec_feed.token_status(ec_feed.token('public.atk_codes', '{"code": "a"}'));
RESET search_path;
-- nothing planted ran, and the attacker is still no superuser
SELECT * FROM atk_evil.ran;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_atk_mallory';
SELECT code, label FROM public.atk_codes ORDER BY code;
SELECT id, label FROM public.atk_nums ORDER BY id;

-- The attacker's own calls, with the planted objects and pg_temp first, on
-- a table the victim let it update: ec_feed writes the real table.
GRANT SELECT, UPDATE ON public.atk_codes TO regress_atk_mallory;
SET ROLE regress_atk_mallory;
SET search_path = pg_temp, atk_evil, pg_catalog, public;
SELECT status, current FROM ec_feed.update_if('public.atk_codes', '{"code": "a"}',
	ec_feed.token('public.atk_codes', '{"code": "a"}'), '{"label": "ALPHA"}');
SELECT status, data FROM ec_feed.get('public.atk_codes', '{"code": "a"}');
RESET search_path;
RESET ROLE;
SELECT * FROM atk_evil.ran;
SELECT count(*) AS shadow_rows FROM pg_temp.atk_codes;

------------------------------------------------------------------------
-- 3. Triggers that rewrite the managed columns; record() out of place
------------------------------------------------------------------------
SET ROLE regress_atk_alice;
CREATE TEMP TABLE atk_forge (id int PRIMARY KEY, note text);
SELECT ec_feed.track('atk_forge');
INSERT INTO atk_forge VALUES (1, 'one');
RESET ROLE;
SELECT ec_version AS alice_version FROM pg_temp.atk_forge WHERE id = 1 \gset
SET ROLE regress_atk_mallory;
-- the attacker's own table: a BEFORE trigger that sorts after ec_feed's
-- stamp (zz_ec_feed_stamp) sets ec_version to a version of its choosing
CREATE TEMP TABLE atk_own (id bigint PRIMARY KEY, note text);
SELECT ec_feed.track('atk_own');
CREATE FUNCTION atk_evil.forge_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.ec_version := NEW.id;
	RETURN NEW;
END $$;
CREATE FUNCTION atk_evil.forge_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.ec_xid := '3';
	RETURN NEW;
END $$;
CREATE FUNCTION atk_evil.keep_old_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.ec_version := OLD.ec_version;
	RETURN NEW;
END $$;
CREATE TRIGGER zzz_forge BEFORE INSERT OR UPDATE ON atk_own FOR EACH ROW EXECUTE FUNCTION atk_evil.forge_version();
-- the version of alice's row, and one that no cursor could hold
SELECT atk_try(format('INSERT INTO atk_own VALUES (%s, %L)', :alice_version, 'dup'));
SELECT atk_try('INSERT INTO atk_own VALUES (9000000000000000000, ''huge'')');
DROP TRIGGER zzz_forge ON atk_own;
INSERT INTO atk_own VALUES (1, 'one'), (2, 'two');
CREATE TRIGGER zzz_forge BEFORE UPDATE ON atk_own FOR EACH ROW EXECUTE FUNCTION atk_evil.keep_old_version();
SELECT atk_try('UPDATE atk_own SET note = ''again'' WHERE id = 1');
DROP TRIGGER zzz_forge ON atk_own;
CREATE TRIGGER zzz_forge BEFORE INSERT ON atk_own FOR EACH ROW EXECUTE FUNCTION atk_evil.forge_xid();
SELECT atk_try('INSERT INTO atk_own VALUES (3, ''three'')');
DROP TRIGGER zzz_forge ON atk_own;
-- a trigger that sorts before the stamp may assign anything: it is overwritten
CREATE TRIGGER aaa_forge BEFORE INSERT OR UPDATE ON atk_own FOR EACH ROW EXECUTE FUNCTION atk_evil.forge_version();
INSERT INTO atk_own VALUES (4, 'four');
SELECT id, ec_version <> id AS stamped FROM atk_own WHERE id = 4;
-- a later trigger that leaves the managed columns alone changes nothing
CREATE FUNCTION atk_evil.shout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.note := upper(NEW.note);
	RETURN NEW;
END $$;
CREATE TRIGGER zzz_shout BEFORE INSERT OR UPDATE ON atk_own FOR EACH ROW EXECUTE FUNCTION atk_evil.shout();
INSERT INTO atk_own VALUES (5, 'five'), (6, 'six');
UPDATE atk_own SET note = note || '!' WHERE id IN (5, 6);
WITH d AS (DELETE FROM atk_own WHERE id = 6 RETURNING id) INSERT INTO atk_own SELECT id, 'six again' FROM d;
SELECT id, note FROM atk_own ORDER BY id;
DROP TRIGGER aaa_forge ON atk_own;
DROP TRIGGER zzz_shout ON atk_own;

-- its own trigger calling ec_feed.record() on a table ec_feed does not track
CREATE TEMP TABLE atk_fake (id int PRIMARY KEY, ec_version bigint NOT NULL, ec_xid xid8 NOT NULL);
CREATE TRIGGER zz_ec_feed_record AFTER INSERT ON atk_fake FOR EACH ROW EXECUTE FUNCTION ec_feed.record();
SELECT atk_try('INSERT INTO atk_fake VALUES (1, 1, ''1'')');
DROP TRIGGER zz_ec_feed_record ON atk_fake;
CREATE TRIGGER my_record AFTER INSERT ON atk_fake FOR EACH ROW EXECUTE FUNCTION ec_feed.record();
SELECT atk_try('INSERT INTO atk_fake VALUES (2, 2, ''1'')');
DROP TRIGGER my_record ON atk_fake;
CREATE TRIGGER zz_ec_feed_record BEFORE INSERT ON atk_fake FOR EACH ROW EXECUTE FUNCTION ec_feed.record();
SELECT atk_try('INSERT INTO atk_fake VALUES (3, 3, ''1'')');
DROP TRIGGER zz_ec_feed_record ON atk_fake;
-- ec_feed.stamp() under another name, and the trigger functions called directly
CREATE TRIGGER my_stamp BEFORE INSERT ON atk_fake FOR EACH ROW EXECUTE FUNCTION ec_feed.stamp();
SELECT atk_try('INSERT INTO atk_fake VALUES (4, 4, ''1'')');
DROP TRIGGER my_stamp ON atk_fake;
SELECT atk_try('SELECT ec_feed.record()'), atk_try('SELECT ec_feed.stamp()'), atk_try('SELECT ec_feed.truncate_guard()');
-- its tracked table with the stamp trigger disabled: the client's ec_version would be recorded
ALTER TABLE atk_own DISABLE TRIGGER zz_ec_feed_stamp;
SELECT atk_try('INSERT INTO atk_own (id, note, ec_version, ec_xid) VALUES (7, ''seven'', 7, ''1'')');
SELECT atk_try('UPDATE atk_own SET ec_version = 1 WHERE id = 1');
-- enabled for origin sessions only (ENABLE instead of ENABLE ALWAYS) it still fires here
ALTER TABLE atk_own ENABLE TRIGGER zz_ec_feed_stamp;
INSERT INTO atk_own VALUES (8, 'eight');
ALTER TABLE atk_own ENABLE ALWAYS TRIGGER zz_ec_feed_stamp;
RESET ROLE;
-- the history holds each version once, none forged
SELECT count(*) AS duplicated FROM (SELECT seq FROM ec_feed.history GROUP BY seq HAVING count(*) > 1) d;
SELECT count(*) AS huge FROM ec_feed.history WHERE seq >= 9000000000000000000;
SELECT count(*) AS untracked FROM ec_feed.history WHERE relid = 'pg_temp.atk_fake'::regclass;
SELECT op, key, data FROM ec_feed.history WHERE relid = 'pg_temp.atk_own'::regclass ORDER BY seq;
-- and every page of the feed can be read
SELECT count(*) > 0 AS readable FROM ec_feed.read(NULL, 100000) WHERE op = 'progress';

------------------------------------------------------------------------
-- 4. Privileges: no schema USAGE, column-only grants, row-level security
------------------------------------------------------------------------
CREATE SCHEMA atk_hidden;
CREATE TABLE atk_hidden.salaries (id int PRIMARY KEY, amount int);
SELECT ec_feed.track('atk_hidden.salaries');
INSERT INTO atk_hidden.salaries VALUES (1, 100000);
-- SELECT on the table, but no USAGE on its schema
GRANT SELECT ON atk_hidden.salaries TO regress_atk_mallory;
SELECT 'atk_hidden.salaries'::regclass::oid AS salaries_oid \gset
CREATE TABLE atk_people (id int PRIMARY KEY, name text, salary int, owner name);
SELECT ec_feed.track('atk_people');
INSERT INTO atk_people VALUES (1, 'ann', 50000, 'regress_atk_alice'), (2, 'bob', 60000, 'regress_atk_mallory');
-- column-only grants: no salary
GRANT SELECT (id, name), UPDATE (name) ON atk_people TO regress_atk_mallory;
CREATE TABLE atk_secret (id int PRIMARY KEY, owner name, body text);
SELECT ec_feed.track('atk_secret');
INSERT INTO atk_secret VALUES (1, 'regress_atk_alice', 'alice''s'), (2, 'regress_atk_mallory', 'mallory''s');
ALTER TABLE atk_secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY atk_own_rows ON atk_secret USING (owner = current_user);
GRANT SELECT, UPDATE, DELETE ON atk_secret TO regress_atk_mallory;

SET ROLE regress_atk_mallory;
-- what plain SQL says
SELECT atk_try('SELECT * FROM atk_hidden.salaries');
SELECT atk_try('SELECT * FROM atk_people');
SELECT id, body FROM atk_secret ORDER BY id;
-- the feed: none of these tables for a NULL rels, an error when named
SELECT count(*) AS hidden_rows FROM ec_feed.read(NULL, 100000)
WHERE rel::oid IN (:salaries_oid, 'atk_people'::regclass, 'atk_secret'::regclass);
SELECT atk_try(format('SELECT * FROM ec_feed.read(NULL, 10, ARRAY[%s]::regclass[])', :salaries_oid));
SELECT atk_try('SELECT * FROM ec_feed.read(NULL, 10, ARRAY[''atk_people''::regclass])');
SELECT atk_try('SELECT * FROM ec_feed.read(NULL, 10, ARRAY[''atk_secret''::regclass])');
-- rows by key
SELECT atk_try(format('SELECT * FROM ec_feed.get(%s, ''{"id": 1}'')', :salaries_oid));
SELECT atk_try(format('SELECT ec_feed.token(%s, ''{"id": 1}'')', :salaries_oid));
SELECT atk_try('SELECT * FROM ec_feed.get(''atk_people'', ''{"id": 1}'')');
SELECT atk_try('SELECT ec_feed.token(''atk_people'', ''{"id": 1}'')');
SELECT status, data FROM ec_feed.get('atk_secret', '{"id": 1}');
SELECT status, data FROM ec_feed.get('atk_secret', '{"id": 2}');
SELECT ec_feed.token('atk_secret', '{"id": 1}') IS NULL AS no_token;
-- writes: the column grant allows UPDATE (name), but RETURNING the row needs SELECT on it all
-- (tokens built by hand from rows the attacker cannot read: see section 5)
SELECT atk_try(format('SELECT * FROM ec_feed.update_if(%L, %L, %L, %L)', 'atk_people', '{"id": 1}',
	ec_feed.row_token(ROW(1, 'ann', 0, 'x', 1, '3')::atk_people), '{"name": "x"}'));
CREATE TEMP TABLE atk_alice_token AS
	SELECT ec_feed.row_token(ROW(1, 'regress_atk_alice', 'guess', 1, '3')::atk_secret) AS token;
-- alice's row under RLS: not found (never 'deleted', never her data)
SELECT status, current FROM ec_feed.update_if('atk_secret', '{"id": 1}', (SELECT token FROM atk_alice_token), '{"body": "pwned"}');
SELECT status, current FROM ec_feed.delete_if('atk_secret', '{"id": 1}', (SELECT token FROM atk_alice_token));
-- the owner's helpers refuse another role's table
SELECT atk_try('SELECT ec_feed.track(''atk_people'')');
SELECT atk_try('SELECT ec_feed.untrack(''atk_people'')');
SELECT atk_try('SELECT ec_feed._add_managed_column(''atk_people'', ''evil'', ''int'', ''0'')');
RESET ROLE;
SELECT id, owner, body FROM atk_secret ORDER BY id;
SELECT id, name FROM atk_people ORDER BY id;

------------------------------------------------------------------------
-- 5. The registry, tokens of rows built by hand, malformed tokens
------------------------------------------------------------------------
SET ROLE regress_atk_mallory;
-- a registration of an untracked table, with a made-up key: not listed
CREATE TEMP TABLE atk_claim (id int PRIMARY KEY, other int);
INSERT INTO ec_feed.tracked_rel (relid, key_columns, history) VALUES ('atk_claim', '{other}', true);
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'atk_claim'::regclass;
-- a tracked table's registration rewritten: the view shows what is true
SELECT ec_feed.track('atk_claim', history => false);
UPDATE ec_feed.tracked_rel SET key_columns = '{other}', history = true WHERE relid = 'atk_claim'::regclass;
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'atk_claim'::regclass;
-- another role's registration cannot be touched
SELECT atk_try('DELETE FROM ec_feed.tracked_rel WHERE relid = ''atk_people''::regclass');
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel = 'atk_people'::regclass;

-- row_token of a row built by hand: without versions refused; with them, a
-- token claiming that version, which the conditional writes do not honour
INSERT INTO atk_claim VALUES (1, 10);
SELECT atk_try('SELECT ec_feed.row_token(ROW(1, 10, NULL, NULL)::atk_claim)');
SELECT status, current FROM ec_feed.update_if('atk_claim', '{"id": 1}',
	ec_feed.row_token(ROW(1, 10, 1, '3')::atk_claim), '{"other": 11}');
SELECT status FROM ec_feed.delete_if('atk_claim', '{"id": 1}',
	ec_feed.row_token(ROW(1, 10, 9000000000000000000, '3')::atk_claim));
SELECT other FROM atk_claim;

-- malformed and mutated tokens
SELECT atk_try('SELECT ec_feed.token_status('''')');
SELECT atk_try('SELECT ec_feed.token_status(''not a token'')');
SELECT atk_try(format('SELECT ec_feed.token_status(%L)', ec_feed.cursor_now()));
SELECT atk_try(format('SELECT ec_feed.token_status(%L)',
	left(ec_feed.token('atk_claim', '{"id": 1}'), -2)));
SELECT atk_try(format('SELECT ec_feed.token_status(%L)', t)) AS flipped
FROM (SELECT ec_feed.token('atk_claim', '{"id": 1}') AS tok) s,
	 LATERAL (SELECT overlay(tok placing CASE WHEN substr(tok, 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1) AS t) f;
SELECT atk_try(format('SELECT ec_feed.get(%L, %L, %L)', 'atk_claim', '{"id": 2}',
	ec_feed.token('atk_claim', '{"id": 1}')));
SELECT atk_try(format('SELECT ec_feed.get(%L, %L, %L)', 'atk_own', '{"id": 1}',
	ec_feed.token('atk_claim', '{"id": 1}')));
SELECT atk_try(format('SELECT ec_feed.update_if(%L, %L, %L, %L)', 'atk_own', '{"id": 1}',
	ec_feed.token('atk_claim', '{"id": 1}'), '{"note": "x"}'));
SELECT atk_try(format('SELECT ec_feed.read(%L)', ec_feed.token('atk_claim', '{"id": 1}')));
RESET ROLE;

------------------------------------------------------------------------
-- The statements run with the caller's settings: a trigger of the table
-- that names its audit table without a schema finds it through the
-- caller's search_path under update_if/delete_if, as under a plain UPDATE.
CREATE SCHEMA atk_app;
CREATE TABLE atk_app.audit (what text);
CREATE TABLE atk_app.orders (id int PRIMARY KEY, qty int);
SELECT ec_feed.track('atk_app.orders');
CREATE FUNCTION atk_app.orders_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (TG_OP || ' ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER orders_audit AFTER UPDATE ON atk_app.orders
	FOR EACH ROW EXECUTE FUNCTION atk_app.orders_audit();
INSERT INTO atk_app.orders VALUES (1, 1);
SET search_path = atk_app, public;
SELECT status FROM ec_feed.update_if('orders', '{"id": 1}',
	ec_feed.token('orders', '{"id": 1}'), '{"qty": 2}');
RESET search_path;
SELECT what FROM atk_app.audit;
SELECT ec_feed.untrack('atk_app.orders');
DROP SCHEMA atk_app CASCADE;

------------------------------------------------------------------------
DROP TABLE atk_people, atk_secret, atk_hidden.salaries, public.atk_codes, public.atk_nums;
DROP SCHEMA atk_hidden;
DROP TABLE pg_temp.atk_shadow, pg_temp.atk_kept, pg_temp.atk_keyt, pg_temp.atk_events,
	pg_temp.atk_codes, pg_temp.atk_stale, pg_temp.atk_forge, pg_temp.atk_own, pg_temp.atk_fake,
	pg_temp.atk_alice_token, pg_temp.atk_claim;
DROP TYPE pg_temp.varchar;
DELETE FROM ec_feed.tracked_rel WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relid);
SET client_min_messages = warning;
DROP SCHEMA atk_evil CASCADE;
RESET client_min_messages;
DROP FUNCTION atk_try(text);
DROP ROLE regress_atk_mallory, regress_atk_alice;
