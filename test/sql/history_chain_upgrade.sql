-- 0.1.0 -> 0.2.0 for the history chain: a table tracked under 0.1.0 keeps
-- working; tokens from before the upgrade never merge (its history has no
-- prev versions), tokens after it do.
\set VERBOSITY default
\set regdb :DBNAME
CREATE DATABASE hcu_db;
\c hcu_db
CREATE EXTENSION ec_feed VERSION '0.1.0';
CREATE TABLE hcu_t (id int PRIMARY KEY, a text, b text);
SELECT ec_feed.track('hcu_t');
INSERT INTO hcu_t VALUES (1, 'a0', 'b0');
SELECT ec_feed.token('hcu_t', '{"id":1}') AS old \gset
UPDATE hcu_t SET a = 'a1' WHERE id = 1;
ALTER EXTENSION ec_feed UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'ec_feed';
SELECT evtname, evtevent, evttags FROM pg_event_trigger WHERE evtname LIKE 'ec_feed%';
UPDATE hcu_t SET b = 'b1' WHERE id = 1;
-- the old token's version is older than the table's history_since
SELECT status, changed_since FROM ec_feed.update_if('hcu_t', '{"id":1}', :'old', '{"a":"a2"}');
SELECT ec_feed.token('hcu_t', '{"id":1}') AS new \gset
UPDATE hcu_t SET b = 'b2' WHERE id = 1;
SELECT status, current, changed_since FROM ec_feed.update_if('hcu_t', '{"id":1}', :'new', '{"a":"a2"}');
SELECT op, prev_version IS NOT NULL AS has_prev, changed FROM ec_feed.history ORDER BY seq;
\c :regdb
DROP DATABASE hcu_db;
