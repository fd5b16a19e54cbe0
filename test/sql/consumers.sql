-- Registered consumers (contract section 5): register_consumer, ack,
-- unregister_consumer, the consumers view, token_status and
-- require_visible with a consumer, and the shape of ec_feed.status().
-- Two sessions acking at once: test/specs/consumer_ack.spec.

-- SQLSTATE and message of a statement, or 'ok'
CREATE FUNCTION cons_try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- the errdetail of a statement's error, parsed as JSON (fails if it is not JSON)
CREATE FUNCTION cons_detail(q text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	EXECUTE q;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN d::jsonb;
END $$;

-- the stored cursor of a consumer
CREATE FUNCTION cons_cursor(n text) RETURNS text LANGUAGE sql AS $$
	SELECT c.cursor FROM ec_feed.consumer c WHERE c.name = n
$$;

CREATE TABLE cons_items (id int PRIMARY KEY, v text);
SELECT ec_feed.track('cons_items');
GRANT SELECT ON cons_items TO PUBLIC;
CREATE ROLE regress_cons_alice;
CREATE ROLE regress_cons_bob;
CREATE ROLE regress_cons_carol IN ROLE regress_cons_alice;	-- a member of alice

------------------------------------------------------------------------
-- register_consumer
------------------------------------------------------------------------

-- NULL start: the caller's snapshot, as cursor_now(); the cursor is returned and stored
SELECT ec_feed.register_consumer('cons_a') AS cons_a0 \gset
SELECT cons_cursor('cons_a') = :'cons_a0' AS stored;
SELECT op FROM ec_feed.read(:'cons_a0');
-- an explicit start cursor is stored as given
SELECT ec_feed.cursor_now() AS cons_now \gset
SELECT ec_feed.register_consumer('cons_b', :'cons_now') = :'cons_now' AS returned_as_given,
	   cons_cursor('cons_b') = :'cons_now' AS stored;
-- the horizon kept for pruning is the mark's xmin
SELECT c.horizon = p.horizon AS horizon_is_mark_xmin
FROM ec_feed.consumer c, ec_feed._cursor_position(c.cursor) p WHERE c.name = 'cons_b';

-- errors: duplicate name, malformed and foreign cursors, NULL and empty names
SELECT cons_try($$SELECT ec_feed.register_consumer('cons_a')$$);
SELECT cons_try($$SELECT ec_feed.register_consumer('cons_x', 'not a cursor')$$);
SELECT cons_try(format('SELECT ec_feed.register_consumer(%L, %L)', 'cons_x',
	left(:'cons_now', -2) || 'AA'));
SELECT cons_try($$SELECT ec_feed.register_consumer(NULL)$$);
SELECT cons_try($$SELECT ec_feed.register_consumer('')$$);
-- a row token is not a cursor
INSERT INTO cons_items VALUES (100, 'token source');
SELECT cons_try(format('SELECT ec_feed.register_consumer(%L, %L)', 'cons_x',
	(SELECT ec_feed.row_token(t) FROM cons_items t WHERE id = 100)));
-- a cursor of another database: EC002
SELECT current_database() AS cons_home \gset
CREATE DATABASE cons_other;
\connect cons_other
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
SELECT ec_feed.cursor_now() AS cons_foreign \gset
\connect :cons_home
SELECT cons_try(format('SELECT ec_feed.register_consumer(%L, %L)', 'cons_x', :'cons_foreign'));
SELECT cons_try(format('SELECT ec_feed.ack(%L, %L)', 'cons_a', :'cons_foreign'));
DROP DATABASE cons_other;
-- none of them was registered
SELECT count(*) AS registered_x FROM ec_feed.consumer WHERE name = 'cons_x';

------------------------------------------------------------------------
-- ack: forward only, over the cursors of rows, pages and deltas
------------------------------------------------------------------------

SELECT cons_try($$SELECT ec_feed.ack('cons_nobody', ec_feed.cursor_now())$$);
SELECT cons_try($$SELECT ec_feed.ack('cons_a', NULL)$$);
SELECT cons_try($$SELECT ec_feed.ack(NULL, ec_feed.cursor_now())$$);
SELECT cons_try($$SELECT ec_feed.ack('cons_a', 'garbage!')$$);

-- three rows in one transaction, read one row per page
INSERT INTO cons_items VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE cons_page AS
SELECT 1 AS page, r.* FROM ec_feed.read(:'cons_now', 1, '{cons_items}') r;
INSERT INTO cons_page
SELECT 2, r.* FROM ec_feed.read((SELECT cursor FROM cons_page WHERE page = 1 AND op = 'progress'), 1, '{cons_items}') r;
INSERT INTO cons_page
SELECT 3, r.* FROM ec_feed.read((SELECT cursor FROM cons_page WHERE page = 2 AND op = 'progress'), 1000, '{cons_items}') r;
SELECT page, op, key FROM cons_page ORDER BY page, op = 'progress', version;

-- positions: within the delta by last; the page's progress cursor is its
-- last row's; the progress cursor after the drained delta is after all
SELECT q.page, q.op, q.key, p.pending, p.last = q.version AS last_is_version
FROM cons_page q, ec_feed._cursor_position(q.cursor) p ORDER BY q.page, q.op = 'progress', q.version;

-- acks in order move the cursor; older or equal ones change nothing
SELECT ec_feed.ack('cons_b', cursor) FROM cons_page WHERE key = '{"id": 2}';
SELECT cons_cursor('cons_b') = cursor AS at_row_2 FROM cons_page WHERE key = '{"id": 2}';
SELECT ec_feed.ack('cons_b', cursor) FROM cons_page WHERE key = '{"id": 1}';
SELECT cons_cursor('cons_b') = cursor AS still_at_row_2 FROM cons_page WHERE key = '{"id": 2}';
SELECT ec_feed.ack('cons_b', cursor) FROM cons_page WHERE page = 2 AND op = 'progress';
SELECT cons_cursor('cons_b') = cursor AS still_at_row_2 FROM cons_page WHERE key = '{"id": 2}';
SELECT ec_feed.ack('cons_b', :'cons_now');
SELECT cons_cursor('cons_b') = cursor AS still_at_row_2 FROM cons_page WHERE key = '{"id": 2}';
SELECT ec_feed.ack('cons_b', cursor) FROM cons_page WHERE page = 3 AND op = 'progress';
SELECT cons_cursor('cons_b') = cursor AS at_progress_3 FROM cons_page WHERE page = 3 AND op = 'progress';
SELECT ec_feed.ack('cons_b', cursor) FROM cons_page WHERE key = '{"id": 3}';
SELECT ec_feed.ack('cons_b', cursor) FROM cons_page WHERE page = 3 AND op = 'progress';
SELECT cons_cursor('cons_b') = cursor AS still_at_progress_3 FROM cons_page WHERE page = 3 AND op = 'progress';

-- A delta whose marks were taken with no xid or version handed out in
-- between: a prepared transaction wrote before the first mark and commits
-- before the second. Its row cursors and the progress cursor after it
-- have the same next xid and versions; the number of transactions their
-- marks see still orders them.
BEGIN;
INSERT INTO cons_items VALUES (4, 'four'), (5, 'five');
PREPARE TRANSACTION 'cons_prep';
SELECT cursor AS cons_before FROM ec_feed.read(ec_feed.cursor_now(), 1000, '{cons_items}') WHERE op = 'progress' \gset
COMMIT PREPARED 'cons_prep';
-- (plain SELECTs: a statement that writes would take an xid between the marks)
SELECT max(cursor) FILTER (WHERE op = 'insert') AS cons_row4, max(cursor) FILTER (WHERE op = 'progress') AS cons_prog1,
	   string_agg(op || coalesce(' ' || key::text, ''), ', ') AS page1
FROM ec_feed.read(:'cons_before', 1, '{cons_items}') \gset
SELECT max(cursor) FILTER (WHERE op = 'insert') AS cons_row5, max(cursor) FILTER (WHERE op = 'progress') AS cons_prog2,
	   string_agg(op || coalesce(' ' || key::text, ''), ', ') AS page2
FROM ec_feed.read(:'cons_prog1', 1000, '{cons_items}') \gset
\echo :page1 / :page2
SELECT a.nxt = b.nxt AS same_nxt, a.lo = b.lo AS same_lo, a.seen < b.seen AS sees_more,
	   r.pending AS row_pending, r.seen = a.seen AS row_from_before
FROM ec_feed._cursor_position(:'cons_before') a, ec_feed._cursor_position(:'cons_prog2') b,
	 ec_feed._cursor_position(:'cons_row5') r;
SELECT ec_feed.register_consumer('cons_q', :'cons_before') IS NOT NULL AS registered;
SELECT ec_feed.ack('cons_q', :'cons_row4');
SELECT cons_cursor('cons_q') = :'cons_row4' AS at_row_4;
SELECT ec_feed.ack('cons_q', :'cons_prog2');
SELECT cons_cursor('cons_q') = :'cons_prog2' AS at_progress;
SELECT ec_feed.ack('cons_q', :'cons_row5');
SELECT cons_cursor('cons_q') = :'cons_prog2' AS still_at_progress;

------------------------------------------------------------------------
-- who may ack and unregister: the registering role, its members, the
-- extension's owner
------------------------------------------------------------------------

SET ROLE regress_cons_alice;
SELECT ec_feed.register_consumer('cons_alice') IS NOT NULL AS registered;
SELECT owner FROM ec_feed.consumers WHERE name = 'cons_alice';
RESET ROLE;
SET ROLE regress_cons_bob;
SELECT cons_try($$SELECT ec_feed.ack('cons_alice', ec_feed.cursor_now())$$);
SELECT cons_try($$SELECT ec_feed.unregister_consumer('cons_alice')$$);
-- bob sees the consumer, not its cursor; he may not touch the table
SELECT name, owner, cursor IS NULL AS cursor_hidden, state FROM ec_feed.consumers WHERE name = 'cons_alice';
SELECT cons_try($$SELECT * FROM ec_feed.consumer$$);
SELECT cons_try($$UPDATE ec_feed.consumer SET cursor = 'x'$$);
RESET ROLE;
SET ROLE regress_cons_carol;
SELECT cons_try($$SELECT ec_feed.ack('cons_alice', ec_feed.cursor_now())$$);
SELECT name, cursor IS NOT NULL AS cursor_shown FROM ec_feed.consumers WHERE name = 'cons_alice';
RESET ROLE;
-- the extension's owner (here a superuser) may manage every consumer
SELECT ec_feed.ack('cons_alice', ec_feed.cursor_now());
SELECT cons_try($$SELECT ec_feed.unregister_consumer('cons_nobody')$$);
SET ROLE regress_cons_alice;
SELECT ec_feed.unregister_consumer('cons_alice');
RESET ROLE;
SELECT count(*) AS alice_left FROM ec_feed.consumers WHERE name = 'cons_alice';

------------------------------------------------------------------------
-- has the consumer processed this write?
------------------------------------------------------------------------

SELECT ec_feed.register_consumer('cons_indexer') AS cons_i0 \gset
INSERT INTO cons_items VALUES (10, 'ten'), (11, 'eleven');
SELECT ec_feed.row_token(t) AS cons_tok10 FROM cons_items t WHERE id = 10 \gset
SELECT ec_feed.row_token(t) AS cons_tok11 FROM cons_items t WHERE id = 11 \gset
-- visible on the server, not processed yet
SELECT ec_feed.token_status(:'cons_tok10') AS server,
	   ec_feed.token_status(:'cons_tok10', 'cons_indexer') AS indexer;
SELECT cons_detail(format('SELECT ec_feed.require_visible(%L, 0, %L)', :'cons_tok10', 'cons_indexer'))
	- 'retry_after_ms' AS ec003;
SELECT cons_try(format('SELECT ec_feed.require_visible(%L, 0, %L)', :'cons_tok10', 'cons_indexer'));
-- waiting is allowed only as a statement of its own: here it checks once
SELECT cons_detail(format('SELECT ec_feed.require_visible(%L, 50, %L)', :'cons_tok10', 'cons_indexer'))
	->> 'reason' AS reason;
-- as a statement of its own it waits wait_ms, then EC003
SELECT ec_feed.require_visible(:'cons_tok10', 20, 'cons_indexer');
-- the indexer reads one row and acks it: the first write is processed, not the second
CREATE TABLE cons_idx AS SELECT * FROM ec_feed.read(:'cons_i0', 1, '{cons_items}');
SELECT op, key FROM cons_idx;
SELECT ec_feed.ack('cons_indexer', cursor) FROM cons_idx WHERE op = 'progress';
SELECT ec_feed.token_status(:'cons_tok10', 'cons_indexer') AS tok10,
	   ec_feed.token_status(:'cons_tok11', 'cons_indexer') AS tok11;
SELECT ec_feed.require_visible(:'cons_tok10', 0, 'cons_indexer');
SELECT ec_feed.require_visible(:'cons_tok10', 1000, 'cons_indexer');
-- the rest of the page, acked by its progress cursor
SELECT ec_feed.ack('cons_indexer', cursor)
FROM ec_feed.read((SELECT cursor FROM cons_idx WHERE op = 'progress'), 1000, '{cons_items}') WHERE op = 'progress';
SELECT ec_feed.token_status(:'cons_tok11', 'cons_indexer') AS tok11;
SELECT ec_feed.require_visible(:'cons_tok11', 0, 'cons_indexer');
-- the one- and two-argument forms are unchanged
SELECT ec_feed.token_status(:'cons_tok11') AS server;
SELECT ec_feed.require_visible(:'cons_tok11');
-- a write the indexer's start already saw (in its initial copy) counts as processed
SELECT ec_feed.token_status((SELECT ec_feed.row_token(t) FROM cons_items t WHERE id = 1), 'cons_indexer') AS before_start;
-- NULL token: NULL status, nothing to wait for; errors of the arguments
SELECT ec_feed.token_status(NULL, 'cons_indexer') AS null_token;
SELECT ec_feed.require_visible(NULL, 0, 'cons_indexer');
SELECT cons_try(format('SELECT ec_feed.token_status(%L, %L)', :'cons_tok10', 'cons_nobody'));
SELECT cons_try(format('SELECT ec_feed.require_visible(%L, 0, %L)', :'cons_tok10', 'cons_nobody'));
SELECT cons_try(format('SELECT ec_feed.token_status(%L, NULL)', :'cons_tok10'));
SELECT cons_try(format('SELECT ec_feed.require_visible(%L, -1, %L)', :'cons_tok10', 'cons_indexer'));
SELECT cons_try(format('SELECT ec_feed.token_status(%L, %L)', 'bad token', 'cons_indexer'));
-- other roles may ask: tokens are theirs, the answer reveals no data
SET ROLE regress_cons_bob;
SELECT ec_feed.token_status(:'cons_tok11', 'cons_indexer') AS as_bob;
RESET ROLE;

------------------------------------------------------------------------
-- dropped consumers (ec_feed._maintain drops one that did not move for
-- ec_feed.retention_max; marked by hand here)
------------------------------------------------------------------------

UPDATE ec_feed.consumer SET dropped_at = now(), drop_reason = 'test: retention_max exceeded'
WHERE name = 'cons_indexer';
SELECT name, state, dropped_at IS NOT NULL AS has_dropped_at, drop_reason FROM ec_feed.consumers WHERE name = 'cons_indexer';
SELECT cons_try(format('SELECT ec_feed.token_status(%L, %L)', :'cons_tok11', 'cons_indexer'));
SELECT cons_try(format('SELECT ec_feed.require_visible(%L, 0, %L)', :'cons_tok11', 'cons_indexer'));
-- acking a cursor whose changes were pruned: EC001 (a prune simulated in a
-- transaction that is rolled back)
BEGIN;
UPDATE ec_feed.pruned SET horizon = ec_feed._next_xid();
SELECT cons_try(format('SELECT ec_feed.ack(%L, %L)', 'cons_indexer', cons_cursor('cons_indexer')));
SELECT cons_detail(format('SELECT ec_feed.ack(%L, %L)', 'cons_indexer', cons_cursor('cons_indexer')))
	- 'oldest_cursor' AS ec001;
SELECT cons_detail(format('SELECT ec_feed.ack(%L, %L)', 'cons_indexer', cons_cursor('cons_indexer')))
	? 'oldest_cursor' AS names_oldest_cursor;
-- registering at such a cursor is refused the same way
SELECT cons_try(format('SELECT ec_feed.register_consumer(%L, %L)', 'cons_x', cons_cursor('cons_indexer')));
-- an active consumer's ack is not checked: it keeps its history
SELECT cons_try(format('SELECT ec_feed.ack(%L, %L)', 'cons_q', cons_cursor('cons_q')));
ROLLBACK;
-- a dropped consumer acking a retained cursor is active again
SELECT ec_feed.ack('cons_indexer', cons_cursor('cons_indexer'));
SELECT name, state, dropped_at, drop_reason FROM ec_feed.consumers WHERE name = 'cons_indexer';
SELECT ec_feed.token_status(:'cons_tok11', 'cons_indexer') AS tok11;

------------------------------------------------------------------------
-- the consumers view
------------------------------------------------------------------------

SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'ec_feed.consumers'::regclass AND attnum > 0 ORDER BY attnum;
-- changes_behind: versions handed out after the consumer's position; lag
-- only while it is behind
INSERT INTO cons_items VALUES (20, 'twenty'), (21, 'twenty-one');
SELECT c.name, c.changes_behind > 0 AS behind, c.lag > interval '0' OR c.changes_behind = 0 AS lag_ok,
	   c.state
FROM ec_feed.consumers c WHERE c.name LIKE 'cons%' ORDER BY c.name;
SELECT ec_feed.ack('cons_b', ec_feed.cursor_now());
SELECT changes_behind, lag FROM ec_feed.consumers WHERE name = 'cons_b';
-- An idle consumer that is caught up and acks its own position again keeps
-- acked_at fresh (else retention_max would drop it), once it is older than
-- a minute; a consumer with changes waiting does not.
BEGIN;
SELECT ec_feed.cursor_now() AS cons_idle \gset
SELECT ec_feed.ack('cons_b', :'cons_idle');
UPDATE ec_feed.consumer SET acked_at = now() - interval '1 hour' WHERE name = 'cons_b';
SELECT ec_feed.ack('cons_b', :'cons_idle');
SELECT acked_at = now() AS renewed, cursor = :'cons_idle' AS same_cursor FROM ec_feed.consumers WHERE name = 'cons_b';
UPDATE ec_feed.consumer SET acked_at = now() - interval '1 hour' WHERE name = 'cons_b';
INSERT INTO cons_items VALUES (22, 'twenty-two');
SELECT ec_feed.ack('cons_b', :'cons_idle');
SELECT acked_at = now() AS renewed, changes_behind > 0 AS behind FROM ec_feed.consumers WHERE name = 'cons_b';
ROLLBACK;

------------------------------------------------------------------------
-- ec_feed.status(): the shape of the document (its values vary)
------------------------------------------------------------------------

SELECT jsonb_object_keys(ec_feed.status()) AS top ORDER BY 1;
SELECT jsonb_object_keys(ec_feed.status() -> 'history') AS history ORDER BY 1;
SELECT jsonb_object_keys(ec_feed.status() -> 'history' -> 'pruned') AS pruned ORDER BY 1;
SELECT jsonb_object_keys(ec_feed.status() -> 'settings') AS settings ORDER BY 1;
SELECT DISTINCT jsonb_object_keys(s) AS segment
FROM jsonb_array_elements(ec_feed.status() -> 'history' -> 'segments') s ORDER BY 1;
SELECT DISTINCT jsonb_object_keys(c) AS consumer
FROM jsonb_array_elements(ec_feed.status() -> 'consumers') c ORDER BY 1;
-- every segment of the catalog, with a state; totals add up
SELECT jsonb_array_length(ec_feed.status() -> 'history' -> 'segments') = (SELECT count(*) FROM ec_feed.segment) AS all_segments,
	   (SELECT bool_and(s ->> 'state' IN ('current', 'closed', 'frozen', 'spare'))
		FROM jsonb_array_elements(ec_feed.status() -> 'history' -> 'segments') s) AS states,
	   (SELECT count(*) FROM jsonb_array_elements(ec_feed.status() -> 'history' -> 'segments') s
		WHERE s ->> 'state' = 'current') AS current_segments,
	   (ec_feed.status() -> 'history' ->> 'bytes')::bigint > 0 AS has_bytes,
	   (ec_feed.status() -> 'history' ->> 'last_version')::bigint = pg_sequence_last_value('ec_feed.change_seq') AS last_version;
-- the consumers, as in the view
SELECT c ->> 'name' AS name, c ->> 'state' AS state,
	   (c ->> 'changes_behind')::bigint = v.changes_behind AS behind_as_view,
	   (c ->> 'changes_behind')::bigint > 0 AS behind
FROM jsonb_array_elements(ec_feed.status() -> 'consumers') c
JOIN ec_feed.consumers v ON v.name = c ->> 'name' WHERE c ->> 'name' LIKE 'cons%' ORDER BY 1;

-- pending writers: none old enough here; a prepared transaction with a
-- tracked write is listed whatever its age
SELECT jsonb_array_length(ec_feed.status() -> 'pending_writers') AS pending_writers;
BEGIN;
INSERT INTO cons_items VALUES (30, 'thirty');
PREPARE TRANSACTION 'cons_prep30';
SELECT w ->> 'prepared' AS prepared, w ->> 'gid' AS gid, w ->> 'state' AS state, w ->> 'pid' AS pid,
	   w ->> 'tracked_writes' AS tracked_writes, w ->> 'database' = current_database() AS this_db,
	   w ->> 'role' AS role, (w ->> 'age_seconds')::numeric >= 0 AS age
FROM jsonb_array_elements(ec_feed.status() -> 'pending_writers') w;
SELECT w ->> 'xid' AS cons_prep_xid FROM jsonb_array_elements(ec_feed.status() -> 'pending_writers') w \gset
SELECT DISTINCT jsonb_object_keys(w) AS pending_writer
FROM jsonb_array_elements(ec_feed.status() -> 'pending_writers') w ORDER BY 1;
COMMIT PREPARED 'cons_prep30';
-- its xid in full, as the row's ec_xid
SELECT ec_xid = :'cons_prep_xid' AS xid_is_ec_xid FROM cons_items WHERE id = 30;
-- a transaction with tracked writes open longer than pending_warn (0 here):
-- this one, as this session is the one asking
BEGIN;
INSERT INTO cons_items VALUES (31, 'thirty-one');
SET LOCAL ec_feed.pending_warn = 0;
SELECT (w ->> 'pid')::int = pg_backend_pid() AS own_pid, w ->> 'prepared' AS prepared,
	   (w ->> 'xid')::xid8 = pg_current_xact_id() AS xid, w ->> 'state' AS state,
	   left(w ->> 'query', 30) AS query, (w ->> 'age_seconds')::numeric >= 0 AS age
FROM jsonb_array_elements(ec_feed.status() -> 'pending_writers') w;
ROLLBACK;
-- a transaction that only read is no writer
BEGIN;
SELECT count(*) > 0 AS read_some FROM cons_items;
SET LOCAL ec_feed.pending_warn = 0;
SELECT jsonb_array_length(ec_feed.status() -> 'pending_writers') AS pending_writers;
ROLLBACK;
-- a role without pg_read_all_stats sees the document (other roles'
-- sessions as pg_stat_activity shows them to it)
SET ROLE regress_cons_bob;
SELECT jsonb_object_keys(ec_feed.status()) AS top ORDER BY 1;
SELECT c ->> 'name' AS name FROM jsonb_array_elements(ec_feed.status() -> 'consumers') c
WHERE c ->> 'name' LIKE 'cons%' ORDER BY 1;
RESET ROLE;

-- status() does not wait for a segment locked by someone else (a prune
-- dropping it): that segment's bytes are NULL. Locked by a prepared
-- transaction here, which holds its lock with no session.
BEGIN;
LOCK TABLE ec_feed.history IN ACCESS EXCLUSIVE MODE;
PREPARE TRANSACTION 'cons_lock';
SET lock_timeout = '5s';
SELECT s ->> 'bytes' AS bytes, s ->> 'state' IS NOT NULL AS has_state
FROM jsonb_array_elements(ec_feed.status() -> 'history' -> 'segments') s WHERE s ->> 'table' = 'ec_feed.history';
RESET lock_timeout;
ROLLBACK PREPARED 'cons_lock';
SELECT (s ->> 'bytes')::bigint > 0 AS bytes
FROM jsonb_array_elements(ec_feed.status() -> 'history' -> 'segments') s WHERE s ->> 'table' = 'ec_feed.history';
-- _segment_usage reads only ec_feed's tables; a segment dropped after
-- status() read the catalog: NULLs
SELECT cons_try($$SELECT ec_feed._segment_usage('cons_items')$$);
SELECT * FROM ec_feed._segment_usage(0);

------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------

SELECT ec_feed.unregister_consumer(name) FROM ec_feed.consumers WHERE name LIKE 'cons%';
SELECT count(*) AS left_over FROM ec_feed.consumers WHERE name LIKE 'cons%';
SELECT ec_feed.untrack('cons_items');
DROP TABLE cons_items, cons_page, cons_idx;
DROP FUNCTION cons_try(text), cons_detail(text), cons_cursor(text);
DROP ROLE regress_cons_carol, regress_cons_alice, regress_cons_bob;
