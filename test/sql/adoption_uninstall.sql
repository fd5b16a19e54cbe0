-- Uninstall (issue 15.1): DROP EXTENSION ec_feed leaves the tables it
-- tracked fully usable. Without CASCADE it is refused while tables are
-- tracked, naming them; with CASCADE (or after ec_feed.untrack_all()) every
-- table is untracked first: ec_feed's triggers go, the managed columns stay
-- with default 0, and plain INSERTs, COPY and TRUNCATE work. Runs in a
-- database of its own, so that the other tests keep their extension.

SELECT current_database() AS ad_home \gset
CREATE DATABASE adoption_uninstall;
\c adoption_uninstall
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;

CREATE TABLE adu_hist (id int PRIMARY KEY, v text);
CREATE TABLE adu_nohist (id int PRIMARY KEY, v text);
CREATE TABLE adu_own (id int PRIMARY KEY, v text, n int DEFAULT 0);
CREATE FUNCTION adu_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.n := NEW.n + 1; RETURN NEW; END $$;
CREATE TRIGGER adu_bump BEFORE INSERT OR UPDATE ON adu_own FOR EACH ROW EXECUTE FUNCTION adu_bump();
CREATE TABLE adu_gone (id int PRIMARY KEY);
CREATE TABLE adu_plain (id int PRIMARY KEY);
SELECT ec_feed.track('adu_hist');
SELECT ec_feed.track('adu_nohist', history => false);
SELECT ec_feed.track('adu_own');
SELECT ec_feed.track('adu_gone');
DROP TABLE adu_gone;		-- leaves its registration behind
INSERT INTO adu_hist VALUES (1, 'a');
INSERT INTO adu_nohist VALUES (1, 'a');
INSERT INTO adu_own (id, v) VALUES (1, 'a');

-- without CASCADE: refused, the tables named; nothing changes
DROP EXTENSION ec_feed;
DROP SCHEMA ec_feed;
INSERT INTO adu_hist VALUES (2, 'b');
SELECT id, ec_version > 0 AS stamped FROM adu_hist ORDER BY id;
TRUNCATE adu_hist;

-- with CASCADE: untracked first, then dropped
DROP EXTENSION ec_feed CASCADE;
-- the schema ec_feed stays, empty (PostgreSQL does not drop a schema that
-- CREATE EXTENSION made): dropped by hand
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'ec_feed'::regnamespace) AS relations,
	   (SELECT count(*) FROM pg_proc WHERE pronamespace = 'ec_feed'::regnamespace) AS functions,
	   (SELECT count(*) FROM pg_type WHERE typnamespace = 'ec_feed'::regnamespace) AS types,
	   (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'ec_feed%') AS event_triggers;
DROP SCHEMA ec_feed;
SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relname LIKE 'adu%' AND NOT t.tgisinternal ORDER BY 1, 2;
SELECT c.relname, a.attname, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relname LIKE 'adu%' AND a.attname IN ('ec_version', 'ec_xid') ORDER BY 1, 2;

-- the tables work as plain tables: INSERT, UPDATE, DELETE, COPY, TRUNCATE
INSERT INTO adu_hist VALUES (3, 'c');
INSERT INTO adu_nohist VALUES (3, 'c');
INSERT INTO adu_own (id, v) VALUES (3, 'c');
UPDATE adu_hist SET v = 'cc' WHERE id = 3;
DELETE FROM adu_nohist WHERE id = 1;
COPY adu_nohist (id, v) FROM stdin;
4	d
\.
SELECT id, v, ec_version = 0 AS unstamped FROM adu_hist ORDER BY id;
SELECT id, v, ec_version = 0 AS unstamped FROM adu_nohist ORDER BY id;
SELECT id, v, n FROM adu_own ORDER BY id;
TRUNCATE adu_hist, adu_nohist;

-- installed and tracked again: the rows get fresh versions
CREATE EXTENSION ec_feed;
SELECT ec_feed.track('adu_own');
SELECT id, ec_version > 0 AS stamped FROM adu_own ORDER BY id;
INSERT INTO adu_own (id, v) VALUES (4, 'd');
SELECT op, key FROM ec_feed.read() WHERE op <> 'progress';

-- untrack_all() by hand: refused for a table the caller does not own
CREATE ROLE adu_role;
GRANT USAGE ON SCHEMA public TO adu_role;
SET ROLE adu_role;
SELECT * FROM ec_feed.untrack_all();
RESET ROLE;
-- by the owner: returns the tables it untracked; DROP EXTENSION then works
SELECT * FROM ec_feed.untrack_all();
SELECT * FROM ec_feed.untrack_all();
SELECT count(*) FROM ec_feed.tracked_rel;
DROP EXTENSION ec_feed;
INSERT INTO adu_own (id, v) VALUES (5, 'e');

-- DROP SCHEMA ec_feed CASCADE drops the extension with it: the same
CREATE EXTENSION ec_feed;
SELECT ec_feed.track('adu_plain');
DROP SCHEMA ec_feed CASCADE;
INSERT INTO adu_plain VALUES (1);
SELECT id, ec_version, ec_xid FROM adu_plain;

-- other extensions and schemas are dropped as before
CREATE EXTENSION ec_feed;
SELECT ec_feed.track('adu_plain');
CREATE SCHEMA adu_schema;
DROP SCHEMA adu_schema;
SELECT count(*) AS tracked FROM ec_feed.tracked;

\c :ad_home
DROP DATABASE adoption_uninstall;
DROP ROLE adu_role;
