-- Guardrails (issue 15.5).

CREATE TABLE adg_items (id int CONSTRAINT adg_items_pkey PRIMARY KEY, code text NOT NULL UNIQUE, v text);
SELECT ec_feed.track('adg_items');
INSERT INTO adg_items VALUES (1, 'a', 'x');

-- 1. ec_feed.allow_truncate takes effect only for the table's owner (or a
-- member of the owning role, or a superuser): a role that was granted
-- TRUNCATE cannot overrule the guard the owner set up
CREATE ROLE adg_truncator;
CREATE ROLE adg_owner_member;
CREATE TABLE adg_owned (id int PRIMARY KEY);
ALTER TABLE adg_owned OWNER TO adg_owner_member;
SELECT ec_feed.track('adg_owned');
GRANT TRUNCATE ON adg_items, adg_owned TO adg_truncator;
CREATE ROLE adg_member IN ROLE adg_owner_member;

SET ROLE adg_truncator;
TRUNCATE adg_items;						-- refused: the guard
SET ec_feed.allow_truncate = on;		-- any session may set it
TRUNCATE adg_items;						-- still refused: not the owner
TRUNCATE adg_owned;
RESET ROLE;
SELECT count(*) AS rows_left FROM adg_items;

SET ROLE adg_member;					-- a member of the owning role
SET ec_feed.allow_truncate = on;
TRUNCATE adg_owned;
RESET ROLE;
RESET ec_feed.allow_truncate;
TRUNCATE adg_owned;						-- the owner without the setting: refused
SET ec_feed.allow_truncate = on;
TRUNCATE adg_owned;						-- a superuser with it: allowed
RESET ec_feed.allow_truncate;

-- 2. cursor_now() warns where a copy in the same transaction cannot match
-- the cursor; the cursor itself is the same as without the warning
SELECT ec_feed.cursor_now() IS NOT NULL AS autocommit_no_warning;
-- a single statement whose function runs it in a subtransaction: no warning
CREATE FUNCTION adg_in_subxact() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RETURN ec_feed.cursor_now() IS NOT NULL;
EXCEPTION WHEN OTHERS THEN
	RETURN false;
END $$;
SELECT adg_in_subxact() AS in_a_subtransaction_no_warning;
DROP FUNCTION adg_in_subxact();
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT ec_feed.cursor_now() IS NOT NULL AS handover_no_warning;
COMMIT;
BEGIN;
SELECT ec_feed.cursor_now() IS NOT NULL AS read_committed_block;
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO adg_items VALUES (2, 'b', 'y');
SELECT ec_feed.cursor_now() IS NOT NULL AS after_a_write;
COMMIT;
BEGIN;
UPDATE adg_items SET v = 'z' WHERE id = 2;
SELECT ec_feed.cursor_now() IS NOT NULL AS read_committed_after_a_write;
ROLLBACK;
-- writes the feed does not return do not count: an untracked table (a
-- copy kept in a table), a table tracked without history, a write rolled
-- back to a savepoint
CREATE TABLE adg_copy (id int, v text);
CREATE TABLE adg_quiet (id int PRIMARY KEY);
SELECT ec_feed.track('adg_quiet', history => false);
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO adg_copy SELECT id, v FROM adg_items;
INSERT INTO adg_quiet VALUES (1);
SAVEPOINT s;
INSERT INTO adg_items VALUES (5, 'e', 'u');
ROLLBACK TO SAVEPOINT s;
SELECT ec_feed.cursor_now() IS NOT NULL AS copy_kept_in_a_table;
COMMIT;
-- a read-only REPEATABLE READ transaction that read before: no warning
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM adg_items;
SELECT ec_feed.cursor_now() IS NOT NULL AS repeatable_read;
COMMIT;

-- 3. a tracked table keeps a primary key that track() accepts
ALTER TABLE adg_items DROP CONSTRAINT adg_items_pkey;
ALTER TABLE adg_items DROP COLUMN id;
ALTER TABLE adg_items DROP CONSTRAINT adg_items_pkey, ADD PRIMARY KEY (id) DEFERRABLE;
ALTER TABLE adg_items DROP CONSTRAINT adg_items_pkey, ADD PRIMARY KEY (ec_version);
-- nothing changed: the key, the listing and writes are as before
SELECT rel, key_columns FROM ec_feed.tracked WHERE rel = 'adg_items'::regclass;
INSERT INTO adg_items VALUES (3, 'c', 'w');
-- replacing the key by one of other columns is refused too (issue 8.4:
-- keys recorded after would match none before; schema_changes tests it);
-- untrack, change, track again
ALTER TABLE adg_items DROP CONSTRAINT adg_items_pkey, ADD CONSTRAINT adg_items_code_pkey PRIMARY KEY (code);
SELECT ec_feed.untrack('adg_items');
ALTER TABLE adg_items DROP CONSTRAINT adg_items_pkey, ADD CONSTRAINT adg_items_code_pkey PRIMARY KEY (code);
SELECT ec_feed.track('adg_items');
SELECT rel, key_columns FROM ec_feed.tracked WHERE rel = 'adg_items'::regclass;
INSERT INTO adg_items VALUES (4, 'd', 'v');
SELECT op, key FROM ec_feed.read(NULL, 1000, ARRAY['adg_items'::regclass]) WHERE op <> 'progress' ORDER BY version DESC LIMIT 1;
-- other ALTER TABLEs of tracked tables and any of untracked ones are not concerned
ALTER TABLE adg_items ADD COLUMN extra int;
CREATE TABLE adg_plain (id int CONSTRAINT adg_plain_pkey PRIMARY KEY);
ALTER TABLE adg_plain DROP CONSTRAINT adg_plain_pkey;
-- untracked first, the key may go
SELECT ec_feed.untrack('adg_items');
ALTER TABLE adg_items DROP CONSTRAINT adg_items_code_pkey;

-- a restore (pg_restore -j) may enable the triggers of a tracked table
-- before it adds the table's key: allowed; the key added next is checked
CREATE TABLE adg_restored (id int NOT NULL, v text);
CREATE TRIGGER zz_ec_feed_stamp BEFORE INSERT OR UPDATE OR DELETE ON adg_restored
	FOR EACH ROW EXECUTE FUNCTION ec_feed.stamp();
ALTER TABLE adg_restored ENABLE ALWAYS TRIGGER zz_ec_feed_stamp;
ALTER TABLE adg_restored ADD CONSTRAINT adg_restored_pkey PRIMARY KEY (id);
-- and dropping that key is refused, replacing it in one statement is not
ALTER TABLE adg_restored DROP CONSTRAINT adg_restored_pkey;
ALTER TABLE adg_restored DROP CONSTRAINT adg_restored_pkey, ADD CONSTRAINT adg_restored_pkey2 PRIMARY KEY (id);
DROP TABLE adg_restored;

DROP TABLE adg_items, adg_owned, adg_plain, adg_copy, adg_quiet;
DROP ROLE adg_truncator;
DROP ROLE adg_member;
DROP ROLE adg_owner_member;
