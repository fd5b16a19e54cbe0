-- The history's key index holds a hash of the key (issue 10.2): each
-- recorded change used to compare jsonb keys all the way down the index;
-- now it compares integers. The readers of one key's changes (conditional
-- writes; the check that orders an insert after a concurrent delete)
-- compare the key of each entry the hash finds, and still read a key index
-- of the layout before 0.3.0 (segment 0 of an installation updated with
-- tracked tables keeps it, see the upgrade scripts).
--
-- In a database of its own: it rotates the history, so that the writes go
-- to a segment made by _create_segment() (the other tests read
-- ec_feed.history). Tokens differ on every run: they are kept with \gset
-- and never printed.
CREATE DATABASE ec_kh_test;
\c ec_kh_test
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
\set VERBOSITY default

-- segment 0 of a new install (0.4.0) has the hash too: a key whose jsonb is
-- above btree's largest entry (a 1,440-byte bytea: 2,892 bytes as jsonb text)
-- is recorded from the first write, not only after the first rotation
SELECT pg_get_indexdef('ec_feed.history_rel_key_idx'::regclass);
CREATE TABLE kh_big0 (k bytea PRIMARY KEY, v int);
SELECT ec_feed.track('kh_big0');
INSERT INTO kh_big0 SELECT decode(string_agg(md5(g::text), ''), 'hex'), 1 FROM generate_series(1, 90) g;
SELECT ec_feed.row_token(b) AS tbig FROM kh_big0 b \gset
UPDATE kh_big0 SET v = 2;
SELECT op, length(key::text) AS key_jsonb_bytes FROM ec_feed.history
WHERE relid = 'kh_big0'::regclass ORDER BY seq;
-- a stale token of it conflicts on v (its history is found through the hash)
SELECT status, current->>'v' AS v FROM ec_feed.update_if('kh_big0', (SELECT key FROM ec_feed.history WHERE relid = 'kh_big0'::regclass LIMIT 1), :'tbig', '{"v":3}');

SET ec_feed.segment_rows = 1;
CREATE TABLE kh_rot (id int PRIMARY KEY);
SELECT ec_feed.track('kh_rot');
INSERT INTO kh_rot VALUES (1), (2);
SELECT ec_feed.prune() >= 0 AS spare_made;
SELECT ec_feed.prune() >= 0 AS rotated;
RESET ec_feed.segment_rows;
SELECT relid::regclass::text AS cur FROM ec_feed.segment
WHERE id = pg_sequence_last_value('ec_feed.segment_current') \gset
SELECT :'cur' AS current_segment;

-- the segments made since: (relid, the key's hash as tokens carry it, seq)
SELECT pg_get_indexdef((:'cur' || '_rel_key_idx')::regclass);
SELECT pg_get_functiondef('ec_feed._create_segment(integer)'::regprocedure)
	   LIKE '%(relid, pg_catalog.jsonb_hash_extended(key, 111477477041529), seq)%' AS new_segments_hashed;

------------------------------------------------------------------------
-- one key's history among many keys and tables with the same keys
------------------------------------------------------------------------
CREATE TABLE kh_a (id int PRIMARY KEY, a text, b text);
CREATE TABLE kh_b (id int PRIMARY KEY, a text, b text);
SELECT ec_feed.track('kh_a'), ec_feed.track('kh_b');
INSERT INTO kh_a SELECT g, 'a', 'b' FROM generate_series(1, 300) g;
INSERT INTO kh_b SELECT g, 'a', 'b' FROM generate_series(1, 300) g;
SELECT ec_feed.token('kh_a', '{"id":7}') AS t7 \gset
UPDATE kh_a SET a = 'x' WHERE id <> 7;		-- every other key changes a
UPDATE kh_b SET a = 'x';					-- and key 7 of another table
UPDATE kh_a SET b = 'y' WHERE id = 7;
-- merged: for this key only b changed since the token
SELECT status, current, changed_since
FROM ec_feed.update_if('kh_a', '{"id":7}', :'t7', '{"a":"z"}');
-- keys equal as jsonb (8.0 and 8) have the same hash
CREATE TABLE kh_n (id numeric PRIMARY KEY, a text, b text);
SELECT ec_feed.track('kh_n');
INSERT INTO kh_n VALUES (8.0, 'a', 'b');
SELECT key FROM :cur WHERE relid = 'kh_n'::regclass;
SELECT ec_feed.token('kh_n', '{"id":8.0}') AS t8 \gset
UPDATE kh_n SET b = 'y';
SELECT status, changed_since FROM ec_feed.update_if('kh_n', '{"id":8}', :'t8', '{"a":"z"}');
SELECT status, conflicts FROM ec_feed.update_if('kh_n', '{"id":8}', :'t8', '{"b":"z"}');
-- a deleted row: the key's history says so (deleted, not not_found)
SELECT ec_feed.token('kh_a', '{"id":9}') AS t9 \gset
DELETE FROM kh_a WHERE id = 9;
SELECT status FROM ec_feed.update_if('kh_a', '{"id":9}', :'t9', '{"a":"z"}');
-- deleted and inserted again since the token: every column changed
INSERT INTO kh_a VALUES (9, 'a', 'b');
SELECT status, changed_since FROM ec_feed.update_if('kh_a', '{"id":9}', :'t9', '{"a":"z"}');

------------------------------------------------------------------------
-- the current segment with a key index of the layout before 0.3.0 (a
-- database not yet updated): it is written and read as before
------------------------------------------------------------------------
BEGIN;
SELECT relid::regclass::text AS seg FROM ec_feed.segment
WHERE id = coalesce(pg_sequence_last_value('ec_feed.segment_current'), 0) \gset
SELECT format('DROP INDEX ec_feed.%I; CREATE INDEX %I ON %s (relid, key, seq)',
			  split_part(:'seg', '.', 2) || '_rel_key_idx', split_part(:'seg', '.', 2) || '_rel_key_idx', :'seg') \gexec
SELECT ec_feed.token('kh_a', '{"id":10}') AS t10 \gset
UPDATE kh_a SET b = 'y' WHERE id = 10;
SELECT status, changed_since FROM ec_feed.update_if('kh_a', '{"id":10}', :'t10', '{"a":"z"}');
SELECT status, conflicts FROM ec_feed.update_if('kh_a', '{"id":10}', :'t10', '{"b":"z"}');
INSERT INTO kh_a VALUES (1000, 'a', 'b');
SELECT count(*) AS entries FROM :cur WHERE relid = 'kh_a'::regclass AND key = '{"id":1000}';
ROLLBACK;

------------------------------------------------------------------------
-- a key near btree's limit: as jsonb, with relid and seq, it exceeded the
-- old index's largest entry, and every write of the row failed
------------------------------------------------------------------------
CREATE TABLE kh_big (k text PRIMARY KEY, v int, w int);
SELECT ec_feed.track('kh_big');
SELECT string_agg(md5(i::text), '') AS bigk FROM generate_series(1, 84) i \gset
INSERT INTO kh_big VALUES (:'bigk', 0, 0);
SELECT ec_feed.token('kh_big', jsonb_build_object('k', :'bigk')) AS t0 \gset
UPDATE kh_big SET w = 1;
-- the stale token merges: the key's history is found through its hash
SELECT status, current->'v' AS v, current->'w' AS w, conflicts, changed_since
FROM ec_feed.update_if('kh_big', jsonb_build_object('k', :'bigk'), :'t0', '{"v":2}');
SELECT status, conflicts, changed_since
FROM ec_feed.update_if('kh_big', jsonb_build_object('k', :'bigk'), :'t0', '{"w":3}');
DELETE FROM kh_big;
SELECT op, length(key->>'k') AS key_length, changed FROM :cur
WHERE relid = 'kh_big'::regclass ORDER BY seq;

DROP TABLE kh_big0, kh_big, kh_a, kh_b, kh_n, kh_rot;

\c contrib_regression
DROP DATABASE ec_kh_test;
