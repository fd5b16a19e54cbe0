-- ec_feed 0.2.0 -> 0.3.0
\echo Use "ALTER EXTENSION ec_feed UPDATE TO '0.3.0'" to load this file. \quit

------------------------------------------------------------------------
-- settings (GUCs defined by the library; typed here for the SQL functions)
------------------------------------------------------------------------

CREATE FUNCTION ec_feed._settings(OUT retention_min interval, OUT retention_max interval,
	OUT segment_rows bigint, OUT segment_period interval, OUT pending_warn interval)
AS 'MODULE_PATHNAME', 'ec_feed_settings'
LANGUAGE C STABLE;

------------------------------------------------------------------------
-- operations: the history in segments, pruning, EC001
------------------------------------------------------------------------

-- The history is a series of segments, each a table like ec_feed.history
-- (which is segment 0). A transaction writes all its changes into the
-- segment that was current when it recorded its first one. A segment stops
-- taking new transactions when the next one becomes current (closed), has
-- no writer left once every transaction below closed_nxt has ended (frozen),
-- and is dropped whole once no consumer needs it.
CREATE TABLE ec_feed.segment (
	id integer PRIMARY KEY,
	relid regclass NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	start_version bigint NOT NULL,	-- last version handed out when it became current
	closed_at timestamptz,			-- when the next segment became current
	closed_by xid8,					-- the transaction that made it so
	closed_nxt xid8,				-- next xid, read after the sequence moved on:
									-- every writer of the segment is below it
	frozen_at timestamptz,			-- first seen with every writer ended
	max_xid xid8,					-- set when frozen: the newest writer's xid,
	min_version bigint,				-- the lowest and highest version,
	max_version bigint,
	row_count bigint,				-- and how many changes it holds
	created_by xid8					-- the transaction that created its table
);
REVOKE ALL ON ec_feed.segment FROM PUBLIC;
GRANT SELECT ON ec_feed.segment TO PUBLIC;
INSERT INTO ec_feed.segment (id, relid, start_version)
SELECT 0, 'ec_feed.history'::regclass,
	   coalesce(pg_catalog.pg_sequence_last_value('ec_feed.change_seq'), 0);

-- What pruning removed: cursors whose horizon is below `horizon` need
-- changes that are gone (EC001).
CREATE TABLE ec_feed.pruned (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	horizon xid8 NOT NULL DEFAULT '0',	-- every dropped change's xid is below it
	max_version bigint NOT NULL DEFAULT 0,	-- the highest version dropped
	rows_pruned bigint NOT NULL DEFAULT 0,
	pruned_at timestamptz
);
REVOKE ALL ON ec_feed.pruned FROM PUBLIC;
GRANT SELECT ON ec_feed.pruned TO PUBLIC;
INSERT INTO ec_feed.pruned DEFAULT VALUES;

-- Names the current segment. Not transactional: it moves only to a segment
-- whose table a committed transaction created (see src/segment.c).
CREATE SEQUENCE ec_feed.segment_current MINVALUE 0 START 0 CACHE 1;
-- every writer reads it (pg_sequence_last_value() needs SELECT)
GRANT SELECT ON SEQUENCE ec_feed.segment_current TO PUBLIC;

CREATE FUNCTION ec_feed._next_xid() RETURNS xid8
AS 'MODULE_PATHNAME', 'ec_feed_next_xid' LANGUAGE C VOLATILE;
CREATE FUNCTION ec_feed._oldest_running_xid() RETURNS xid8
AS 'MODULE_PATHNAME', 'ec_feed_oldest_running_xid' LANGUAGE C VOLATILE;
CREATE FUNCTION ec_feed._segments_changed() RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_segments_changed' LANGUAGE C VOLATILE;
CREATE FUNCTION ec_feed._maintenance_due() RETURNS boolean
AS 'MODULE_PATHNAME', 'ec_feed_maintenance_due' LANGUAGE C VOLATILE;
CREATE FUNCTION ec_feed._check_retained(cursor text) RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_check_retained' LANGUAGE C STRICT STABLE;
CREATE FUNCTION ec_feed._oldest_cursor() RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_oldest_cursor' LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION ec_feed._next_xid(), ec_feed._oldest_running_xid(),
	ec_feed._segments_changed(), ec_feed._maintenance_due() FROM PUBLIC;

-- A new segment table, like ec_feed.history, member of the extension (so
-- that pg_dump leaves it out, as it does the history).
CREATE FUNCTION ec_feed._create_segment(id integer) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	name text := 'history_' || id;
	rel regclass;
BEGIN
	EXECUTE format('CREATE TABLE ec_feed.%I (seq bigint NOT NULL, xid xid8 NOT NULL, relid oid NOT NULL, '
				   'op "char" NOT NULL, key jsonb NOT NULL, data jsonb NOT NULL, changed text[], '
				   'prev_version bigint, CONSTRAINT %I PRIMARY KEY (seq))', name, name || '_pkey');
	EXECUTE format('CREATE INDEX %I ON ec_feed.%I (xid, seq)', name || '_xid_seq_idx', name);
	EXECUTE format('CREATE INDEX %I ON ec_feed.%I (relid, key, seq)', name || '_rel_key_idx', name);
	EXECUTE format('CREATE INDEX %I ON ec_feed.%I (relid, seq)', name || '_rel_seq_idx', name);
	EXECUTE format('REVOKE ALL ON ec_feed.%I FROM PUBLIC', name);
	rel := format('ec_feed.%I', name)::regclass;
	EXECUTE format('ALTER EXTENSION ec_feed ADD TABLE %s', rel);
	INSERT INTO ec_feed.segment (id, relid, start_version, created_by)
	VALUES (id, rel, 0, pg_current_xact_id());
	RETURN rel;
END;
$$;
REVOKE ALL ON FUNCTION ec_feed._create_segment(integer) FROM PUBLIC;

-- The whole life of the segments, step by step; each step is cheap when
-- nothing is due. Returns the number of changes removed.
CREATE FUNCTION ec_feed._maintain(force boolean) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg record;
	cur integer;
	seg record;
	stats record;
	removed bigint := 0;
	changed boolean := false;
	last_version bigint;
	read_here oid[];
BEGIN
	-- one at a time; another caller skips, nothing waits
	BEGIN
		LOCK TABLE ec_feed.segment IN SHARE ROW EXCLUSIVE MODE NOWAIT;
	EXCEPTION WHEN lock_not_available THEN
		RETURN 0;
	END;
	cfg := ec_feed._settings();
	cur := coalesce(pg_sequence_last_value('ec_feed.segment_current'), 0);
	-- the segments this transaction read before (freezing below reads some)
	read_here := ARRAY(SELECT l.relation FROM pg_catalog.pg_locks l
					   WHERE l.locktype = 'relation' AND l.pid = pg_catalog.pg_backend_pid()
						 AND l.relation IN (SELECT s.relid FROM ec_feed.segment s));

	-- a consumer whose position has not moved for retention_max is dropped
	IF cfg.retention_max IS NOT NULL THEN
		UPDATE ec_feed.consumer c
		SET dropped_at = now(),
			drop_reason = format('its acknowledged position did not advance for longer than ec_feed.retention_max (%s)',
								 cfg.retention_max)
		WHERE c.name IN (SELECT d.name FROM ec_feed.consumer d
						 WHERE d.dropped_at IS NULL AND d.acked_at < now() - cfg.retention_max
						 -- one being acked right now is not stale
						 FOR UPDATE SKIP LOCKED);
	END IF;

	-- published marks: a standby needs only the newest it has replayed
	DELETE FROM ec_feed.mark m
	WHERE m.published_at < now() - interval '1 minute'
	  AND m.id < (SELECT max(n.id) FROM ec_feed.mark n);

	-- closed: the sequence moved past it before this next xid was read, so
	-- every transaction that writes into it has a lower xid
	UPDATE ec_feed.segment s SET closed_at = coalesce(s.closed_at, now()), closed_nxt = ec_feed._next_xid()
	WHERE s.id < cur AND s.closed_nxt IS NULL;

	-- frozen: no transaction below closed_nxt is running, so a new snapshot
	-- (one per statement: READ COMMITTED only) sees all its rows
	IF current_setting('transaction_isolation') = 'read committed' THEN
		FOR seg IN SELECT s.id, s.relid FROM ec_feed.segment s
				   WHERE s.frozen_at IS NULL AND s.closed_nxt IS NOT NULL
					 AND s.closed_nxt <= ec_feed._oldest_running_xid()
				   ORDER BY s.id LOOP
			EXECUTE format('SELECT (SELECT h.xid FROM %1$s h ORDER BY h.xid DESC LIMIT 1) AS max_xid, '
						   'min(seq) AS min_version, max(seq) AS max_version, count(*) AS row_count FROM %1$s',
						   seg.relid) INTO stats;
			-- the time it was seen frozen, not this transaction's start:
			-- retention_min counts from it (a cursor taken before needs it)
			UPDATE ec_feed.segment s
			SET frozen_at = clock_timestamp(), max_xid = coalesce(stats.max_xid, '0'),
				min_version = coalesce(stats.min_version, 0), max_version = coalesce(stats.max_version, 0),
				row_count = stats.row_count
			WHERE s.id = seg.id;
			changed := true;
		END LOOP;
	END IF;

	-- dropped: frozen for retention_min (a cursor taken since needs none of
	-- it), and below every registered consumer's horizon
	FOR seg IN SELECT s.* FROM ec_feed.segment s
			   WHERE s.frozen_at IS NOT NULL AND s.id < cur
				 AND s.frozen_at <= clock_timestamp() - cfg.retention_min
				 AND NOT EXISTS (SELECT 1 FROM ec_feed.consumer c
								 WHERE c.dropped_at IS NULL AND c.horizon <= s.max_xid)
				 -- read earlier in this very transaction (a function that reads
				 -- page after page): its next page may need it
				 AND s.relid::oid <> ALL (read_here)
			   ORDER BY s.id LOOP
		BEGIN
			-- a reader still on it: next time
			EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', seg.relid);
		EXCEPTION WHEN lock_not_available THEN
			CONTINUE;
		END;
		EXECUTE format('ALTER EXTENSION ec_feed DROP TABLE %s', seg.relid);
		EXECUTE format('DROP TABLE %s', seg.relid);
		UPDATE ec_feed.pruned p
		SET horizon = greatest(p.horizon, ((seg.max_xid::text::numeric + 1)::text)::xid8),
			max_version = greatest(p.max_version, seg.max_version),
			rows_pruned = p.rows_pruned + seg.row_count,
			pruned_at = now();
		DELETE FROM ec_feed.segment s WHERE s.id = seg.id;
		removed := removed + seg.row_count;
		changed := true;
	END LOOP;

	-- the next segment becomes current when this one is due: it holds
	-- segment_rows versions, or is segment_period old and not empty
	last_version := coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0);
	SELECT * INTO seg FROM ec_feed.segment s WHERE s.id = cur;
	IF last_version > seg.start_version
	   AND (force OR last_version - seg.start_version >= cfg.segment_rows
			OR seg.created_at <= now() - cfg.segment_period)
	   -- the spare's row is visible: its creator committed, unless it is
	   -- this transaction ('in progress'); NULL is a creator too old for
	   -- the commit log (a long quiet spell), committed long ago
	   AND EXISTS (SELECT 1 FROM ec_feed.segment s
				   WHERE s.id = cur + 1 AND coalesce(pg_xact_status(s.created_by), 'committed') = 'committed') THEN
		PERFORM setval('ec_feed.segment_current', cur + 1);
		UPDATE ec_feed.segment s SET created_at = now(), start_version = last_version WHERE s.id = cur + 1;
		UPDATE ec_feed.segment s SET closed_at = now(), closed_by = pg_current_xact_id(), closed_nxt = ec_feed._next_xid()
		WHERE s.id = cur;
		cur := cur + 1;
		changed := true;
	END IF;

	-- a spare, committed before the sequence may name it
	IF NOT EXISTS (SELECT 1 FROM ec_feed.segment s WHERE s.id = cur + 1) THEN
		PERFORM ec_feed._create_segment(cur + 1);
		changed := true;
	END IF;
	IF changed THEN
		PERFORM ec_feed._segments_changed();
	END IF;
	RETURN removed;
END;
$$;
REVOKE ALL ON FUNCTION ec_feed._maintain(boolean) FROM PUBLIC;

-- Removes the history no one needs; the extension owner may GRANT it.
CREATE FUNCTION ec_feed.prune() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT ec_feed._maintain(false) $$;
REVOKE ALL ON FUNCTION ec_feed.prune() FROM PUBLIC;

-- ack() and register_consumer() run the pruning that is due when they are a
-- statement of their own (at most once a second per backend).
CREATE FUNCTION ec_feed._auto_prune() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF ec_feed._maintenance_due() THEN
		PERFORM ec_feed._maintain(false);
	END IF;
END;
$$;

------------------------------------------------------------------------
-- the feed on hot standbys: marks published by the primary (src/publish.c)
------------------------------------------------------------------------

CREATE SEQUENCE ec_feed.mark_seq;
-- A mark taken on the primary: the readings of EcMark (src/ec_feed.h). A
-- standby that has replayed one reads the feed up to it.
CREATE TABLE ec_feed.mark (
	id bigint PRIMARY KEY,
	lo bigint NOT NULL,
	hi bigint NOT NULL,
	next_xid xid8 NOT NULL,
	snap_xmin xid8 NOT NULL,
	snap_xmax xid8 NOT NULL,
	snap_xip xid8[] NOT NULL,
	published_at timestamptz NOT NULL
);
REVOKE ALL ON ec_feed.mark FROM PUBLIC;
GRANT SELECT ON ec_feed.mark TO PUBLIC;

CREATE FUNCTION ec_feed.publish_mark() RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_publish_mark' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION ec_feed.publish_mark() FROM PUBLIC;

-- read() gets wait_ms: a page with nothing new waits for a commit
DROP FUNCTION ec_feed.read(text, int, regclass[]);
CREATE FUNCTION ec_feed.read(after text DEFAULT NULL, max_rows int DEFAULT 1000,
	rels regclass[] DEFAULT NULL, wait_ms int DEFAULT 0)
RETURNS TABLE(cursor text, op text, rel regclass, key jsonb, version bigint, xid xid8, data jsonb, changed text[])
AS 'MODULE_PATHNAME', 'ec_feed_read'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

COMMENT ON TABLE ec_feed.segment IS
'The segments of the history (ec_feed.history is segment 0, then ec_feed.history_N): when each became current, was closed, frozen (no writer left), and what it holds once frozen. Pruning drops whole segments.';
COMMENT ON TABLE ec_feed.pruned IS
'What pruning removed: every change of a transaction below horizon is gone; a cursor that still needs one gets EC001.';
COMMENT ON TABLE ec_feed.mark IS
'Marks the primary published for hot standbys: a standby reads the feed up to the newest one it has replayed.';
COMMENT ON FUNCTION ec_feed.prune() IS
'Runs the maintenance of the history now: closes the current segment when due, freezes closed ones without writers, drops frozen ones no consumer needs after ec_feed.retention_min; drops consumers idle for ec_feed.retention_max. Returns the number of changes removed.';
COMMENT ON FUNCTION ec_feed.publish_mark() IS
'Publishes a mark for hot standbys now (a standby reads the feed up to the newest published mark it has replayed). For a scheduler when no background worker publishes.';
COMMENT ON FUNCTION ec_feed._maintain(boolean) IS
'Internal: the steps of ec_feed.prune(), as the extension owner.';
COMMENT ON FUNCTION ec_feed._auto_prune() IS
'Internal: runs ec_feed._maintain() when due, from ack() and register_consumer().';
COMMENT ON FUNCTION ec_feed._create_segment(integer) IS
'Internal: creates the table of a new history segment, a member of the extension.';
COMMENT ON FUNCTION ec_feed._settings() IS
'Internal: the operations settings (ec_feed.retention_min, retention_max, segment_rows, segment_period, pending_warn), typed.';
COMMENT ON FUNCTION ec_feed._next_xid() IS
'Internal: the next transaction id, read now.';
COMMENT ON FUNCTION ec_feed._oldest_running_xid() IS
'Internal: no transaction below this one is running, in any database, prepared ones included.';
COMMENT ON FUNCTION ec_feed._segments_changed() IS
'Internal: makes other sessions read the list of segments again.';
COMMENT ON FUNCTION ec_feed._maintenance_due() IS
'Internal: may read() or ack() run the maintenance now (a statement of its own, READ COMMITTED, writable, at most once a second per session)?';
COMMENT ON FUNCTION ec_feed._check_retained(text) IS
'Internal: raises EC001 when the cursor needs changes that were pruned.';
COMMENT ON FUNCTION ec_feed._oldest_cursor() IS
'The oldest cursor still served: every change of a transaction at or above the prune horizon.';

------------------------------------------------------------------------
-- operations: consumers, status
------------------------------------------------------------------------

-- A registered consumer. horizon is its cursor's (the oldest transaction it
-- may still need changes of, the mark's xmin): pruning keeps every segment
-- holding a change of a transaction at or above it.
CREATE TABLE ec_feed.consumer (
	name text PRIMARY KEY,
	owner regrole NOT NULL,
	cursor text NOT NULL,
	horizon xid8 NOT NULL,
	registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	acked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	dropped_at timestamptz,
	drop_reason text
);
REVOKE ALL ON ec_feed.consumer FROM PUBLIC;

-- Where its cursor stands (see src/consumer.c), kept so that ack() can move
-- it forward only and the view can tell how far behind it is without
-- decoding every cursor.
ALTER TABLE ec_feed.consumer
	ADD COLUMN pos_seen bigint NOT NULL DEFAULT 0,		-- transactions the prev mark sees
	ADD COLUMN pos_pending boolean NOT NULL DEFAULT false,	-- inside a delta
	ADD COLUMN pos_last bigint NOT NULL DEFAULT 0,		-- of that delta: read up to this version
	ADD COLUMN pos_version bigint NOT NULL DEFAULT 0;	-- read up to here but for open writers
COMMENT ON COLUMN ec_feed.consumer.pos_seen IS
'How many transactions the mark of the stored cursor sees (its xmax minus the transactions it lists as running): the first key of the order of cursors.';
COMMENT ON COLUMN ec_feed.consumer.pos_pending IS
'The stored cursor is inside a delta (between two marks): after the mark the delta starts from.';
COMMENT ON COLUMN ec_feed.consumer.pos_last IS
'Inside a delta: the version read up to (0 otherwise): the last key of the order of cursors.';
COMMENT ON COLUMN ec_feed.consumer.pos_version IS
'The version up to which the consumer has read everything but changes of transactions open at its mark; changes_behind counts the versions after it.';

CREATE FUNCTION ec_feed._cursor_position(cursor text, OUT horizon xid8, OUT xmax xid8,
	OUT nxt xid8, OUT lo bigint, OUT hi bigint, OUT seen bigint, OUT pending boolean,
	OUT last bigint, OUT version bigint)
AS 'MODULE_PATHNAME', 'ec_feed_cursor_position'
LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION ec_feed._cursor_position(text) IS
'Where a cursor stands, validated as ec_feed.read() validates it: the horizon (its mark''s xmin, the oldest transaction whose changes it may still need), the mark''s xmax, next xid, versions lo and hi, how many transactions the mark sees, and whether it is inside a delta (pending) read up to version last. ec_feed.ack() orders cursors by (seen, pending, last); version is the basis of changes_behind.';

-- These run as the caller, so that they know who calls (current_user
-- inside a SECURITY DEFINER function is its owner); they check the
-- caller's rights themselves and write ec_feed.consumer as its owner.
CREATE FUNCTION ec_feed.register_consumer(name text, start_cursor text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_register_consumer'
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ec_feed.register_consumer(text, text) IS
'Registers a consumer of the feed at start_cursor (validated as ec_feed.read() validates cursors: 22P02 malformed, EC002 foreign, EC001 pruned) or, when NULL, at the caller''s snapshot as ec_feed.cursor_now(); returns its cursor. The history it needs is kept until it acknowledges more. The calling role owns it. 42710 when the name is taken.';

CREATE FUNCTION ec_feed.ack(name text, cursor text) RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_ack'
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ec_feed.ack(text, text) IS
'The consumer has processed the feed up to cursor (a row''s or a page''s progress cursor). Forward only: a cursor that is not after the stored one is ignored. 42704 unknown consumer; 42501 unless called by the role that registered it, a role with its privileges, or the extension owner; EC001 for a dropped consumer whose cursor was pruned (a dropped consumer acknowledging a retained cursor is active again).';

CREATE FUNCTION ec_feed.unregister_consumer(name text) RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_unregister_consumer'
LANGUAGE C CALLED ON NULL INPUT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ec_feed.unregister_consumer(text) IS
'Removes a consumer: the history it needed is no longer kept for it. 42704 unknown consumer; 42501 as for ec_feed.ack().';

CREATE FUNCTION ec_feed.token_status(token text, consumer text) RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_token_status_consumer'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION ec_feed.token_status(text, text) IS
'visible once the consumer has acknowledged a cursor that includes the write the token names (its transaction is seen by the cursor''s mark, or it is in the cursor''s pending delta up to its last version), pending before. 42704 unknown consumer; 55000 dropped consumer.';

CREATE FUNCTION ec_feed.require_visible(token text, wait_ms int, consumer text) RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_require_visible_consumer'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION ec_feed.require_visible(text, int, text) IS
'Returns once the consumer has acknowledged a cursor that includes the token''s write; waits up to wait_ms (publishing no xmin) when it is a statement of its own in READ COMMITTED; else EC003 with reason consumer_behind (or write_in_progress / replica_behind while the write itself is not visible) and the consumer''s name in the JSON errdetail. A NULL token names no write.';

-- Everyone sees every consumer; the cursor only the roles that may
-- acknowledge it.
CREATE VIEW ec_feed.consumers AS
SELECT c.name,
	   c.owner,
	   CASE WHEN pg_catalog.pg_has_role((SELECT e.extowner FROM pg_catalog.pg_extension e
											WHERE e.extname = 'ec_feed'), 'USAGE')
			THEN c.cursor
			-- the owner is a plain column: its role may have been dropped
			WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = c.owner)
			THEN NULL
			WHEN pg_catalog.pg_has_role(c.owner, 'USAGE')
			THEN c.cursor END AS cursor,
	   c.registered_at,
	   c.acked_at,
	   b.changes_behind,
	   CASE WHEN b.changes_behind > 0 THEN pg_catalog.now() - c.acked_at
			ELSE interval '0' END AS lag,
	   CASE WHEN c.dropped_at IS NULL THEN 'active' ELSE 'dropped' END AS state,
	   c.dropped_at,
	   c.drop_reason
FROM ec_feed.consumer c,
	 LATERAL (SELECT GREATEST(coalesce(pg_catalog.pg_sequence_last_value('ec_feed.change_seq'), 0)
										 - c.pos_version, 0) AS changes_behind) b;
GRANT SELECT ON ec_feed.consumers TO PUBLIC;
COMMENT ON VIEW ec_feed.consumers IS
'Registered consumers: name, owner (the registering role), cursor (the newest acknowledged; NULL unless you may acknowledge it), registered_at, acked_at (when the cursor last moved), changes_behind (an estimate: versions handed out after the consumer''s position, counting rolled-back writes and tables tracked without history), lag (time since acked_at while changes_behind > 0, else 0), state (active or dropped), dropped_at and drop_reason (dropped for exceeding ec_feed.retention_max).';

CREATE FUNCTION ec_feed._segment_usage(segment regclass, OUT bytes bigint, OUT first_version bigint)
AS 'MODULE_PATHNAME', 'ec_feed_segment_usage'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ec_feed._segment_usage(regclass) IS
'For ec_feed.status(): a history segment''s size (with indexes and TOAST) and its lowest committed version; both NULL instead of waiting when the segment is locked (a prune dropping it).';

CREATE FUNCTION ec_feed._xid8(xid) RETURNS xid8
AS 'MODULE_PATHNAME', 'ec_feed_widen_xid'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ec_feed._xid8(xid) IS
'The full (xid8) id of a running or recent transaction given its 32-bit id, as pg_stat_activity and pg_prepared_xacts show it.';

-- One document for monitoring; its fields are described in the README
-- ("ec_feed.status()"). Runs as the caller: what it shows of other roles'
-- sessions follows pg_stat_activity's rules.
CREATE FUNCTION ec_feed.status() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	taken_at timestamptz := clock_timestamp();
	cfg record;
	cur bigint := coalesce(pg_sequence_last_value('ec_feed.segment_current'), 0);
	last_version bigint := coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0);
	seg record;
	usage record;
	segments jsonb := '[]';
	total_rows bigint := 0;
	total_bytes bigint := 0;
	rows_est bigint;
	oldest_version bigint;
	oldest_known boolean := true;
	oldest_created timestamptz;
	pruned record;
	consumers jsonb;
	writers jsonb;
	mydb oid := (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
BEGIN
	cfg := ec_feed._settings();
	SELECT * INTO pruned FROM ec_feed.pruned;

	FOR seg IN SELECT s.*, lead(s.start_version) OVER (ORDER BY s.id) AS next_start,
					  c.reltuples
			   FROM ec_feed.segment s LEFT JOIN pg_class c ON c.oid = s.relid
			   ORDER BY s.id LOOP
		usage := ec_feed._segment_usage(seg.relid);
		IF seg.frozen_at IS NOT NULL THEN
			rows_est := seg.row_count;
		ELSIF seg.id > cur THEN
			rows_est := 0;
		ELSE
			-- versions handed out while it took new writers, or the planner's count
			rows_est := greatest(CASE WHEN seg.id < cur THEN coalesce(seg.next_start, last_version)
									  ELSE last_version END - seg.start_version,
								 coalesce(seg.reltuples, 0)::bigint, 0);
		END IF;
		total_rows := total_rows + rows_est;
		total_bytes := total_bytes + coalesce(usage.bytes, 0);
		-- the first segment with a committed change holds the oldest
		IF oldest_version IS NULL AND oldest_known THEN
			IF seg.frozen_at IS NOT NULL THEN
				IF seg.row_count > 0 THEN
					oldest_version := seg.min_version;
					oldest_created := seg.created_at;
				END IF;
			ELSIF usage.bytes IS NULL THEN
				oldest_known := false;		-- locked: do not guess
			ELSIF usage.first_version IS NOT NULL THEN
				oldest_version := usage.first_version;
				oldest_created := seg.created_at;
			END IF;
		END IF;
		segments := segments || jsonb_build_object(
			'id', seg.id,
			'table', seg.relid::text,
			'state', CASE WHEN seg.frozen_at IS NOT NULL THEN 'frozen'
						  WHEN seg.id < cur OR seg.closed_at IS NOT NULL THEN 'closed'
						  WHEN seg.id = cur THEN 'current'
						  ELSE 'spare' END,
			'rows', rows_est,
			'rows_exact', seg.frozen_at IS NOT NULL OR seg.id > cur,
			'bytes', usage.bytes,
			'start_version', CASE WHEN seg.id <= cur THEN seg.start_version END,
			'min_version', seg.min_version,
			'max_version', seg.max_version,
			'created_at', seg.created_at,
			'closed_at', seg.closed_at,
			'frozen_at', seg.frozen_at);
	END LOOP;

	SELECT coalesce(jsonb_agg(jsonb_build_object(
			'name', c.name,
			'owner', c.owner::text,
			'state', c.state,
			'changes_behind', c.changes_behind,
			'lag_seconds', round(extract(epoch FROM c.lag), 3),
			'registered_at', c.registered_at,
			'acked_at', c.acked_at,
			'dropped_at', c.dropped_at,
			'drop_reason', c.drop_reason) ORDER BY c.name), '[]')
	INTO consumers
	FROM ec_feed.consumers c;

	-- Writers of tracked tables hold RowExclusiveLock on them until they
	-- end (a history segment's lock may be released early); a prepared
	-- transaction holds its locks with no backend (pid NULL) under a
	-- virtual transaction that also holds its transactionid lock.
	WITH rels AS (
		SELECT s.relid::oid AS relid FROM ec_feed.segment s
		UNION SELECT t.relid::oid FROM ec_feed.tracked_rel t
	), locks AS (
		SELECT l.pid, l.virtualtransaction
		FROM pg_locks l JOIN rels r ON r.relid = l.relation
		WHERE l.locktype = 'relation' AND l.database = mydb
		  AND l.mode = 'RowExclusiveLock' AND l.granted
	), running AS (
		SELECT a.pid, ec_feed._xid8(a.backend_xid) AS xid, false AS prepared, NULL::text AS gid,
			   a.datname::text AS database, a.usename::text AS role, taken_at - a.xact_start AS age,
			   a.state, a.application_name, a.xact_start, a.query_start,
			   left(a.query, 200) AS query, true AS tracked_writes
		FROM pg_stat_activity a
		WHERE a.pid IN (SELECT k.pid FROM locks k WHERE k.pid IS NOT NULL)
		  AND a.backend_xid IS NOT NULL
		  AND (a.leader_pid IS NULL OR a.leader_pid = a.pid)
		  AND a.xact_start <= taken_at - cfg.pending_warn
	), prepared AS (
		SELECT NULL::integer AS pid, ec_feed._xid8(p.transaction) AS xid, true AS prepared, p.gid,
			   p.database::text AS database, p.owner::text AS role, taken_at - p.prepared AS age,
			   'prepared' AS state, NULL::text AS application_name, NULL::timestamptz AS xact_start,
			   p.prepared AS query_start, NULL::text AS query,
			   EXISTS (SELECT 1 FROM locks k JOIN pg_locks x ON x.virtualtransaction = k.virtualtransaction
					   WHERE k.pid IS NULL AND x.pid IS NULL AND x.locktype = 'transactionid'
						 AND x.transactionid = p.transaction)
				   AS tracked_writes
		FROM pg_prepared_xacts p
	)
	SELECT coalesce(jsonb_agg(jsonb_build_object(
			'pid', w.pid,
			'xid', w.xid,
			'prepared', w.prepared,
			'gid', w.gid,
			'database', w.database,
			'role', w.role,
			'age_seconds', round(extract(epoch FROM w.age), 3),
			'state', w.state,
			'application_name', w.application_name,
			'xact_start', w.xact_start,
			'query_start', w.query_start,
			'query', w.query,
			'tracked_writes', w.tracked_writes) ORDER BY w.age DESC, w.xid), '[]')
	INTO writers
	FROM (SELECT * FROM running UNION ALL SELECT * FROM prepared) w;

	RETURN jsonb_build_object(
		'taken_at', taken_at,
		'settings', jsonb_build_object(
			'retention_min', cfg.retention_min,
			'retention_max', cfg.retention_max,
			'segment_rows', cfg.segment_rows,
			'segment_period', cfg.segment_period,
			'pending_warn', cfg.pending_warn),
		'history', jsonb_build_object(
			'segments', segments,
			'segment_count', jsonb_array_length(segments),
			'rows', total_rows,
			'bytes', total_bytes,
			'last_version', last_version,
			'oldest_version', oldest_version,
			'oldest_segment_created_at', oldest_created,
			'oldest_age_seconds', round(extract(epoch FROM taken_at - oldest_created), 3),
			'oldest_cursor', ec_feed._oldest_cursor(),
			'pruned', jsonb_build_object(
				'horizon', pruned.horizon,
				'max_version', pruned.max_version,
				'rows_pruned', pruned.rows_pruned,
				'pruned_at', pruned.pruned_at)),
		'consumers', consumers,
		'pending_writers', writers);
END;
$$;
COMMENT ON FUNCTION ec_feed.status() IS
'One jsonb document for monitoring (fields in the README): settings; the history segments with state, rows, bytes and times, totals, the oldest retained version and its age, the prune horizon; every consumer with its lag and state; pending writers: transactions with tracked writes open longer than ec_feed.pending_warn, and prepared transactions. Never waits on a lock. Shows other roles'' sessions as pg_stat_activity does to the caller.';

------------------------------------------------------------------------
-- adoption: uninstall, comments, errors, guardrails
------------------------------------------------------------------------

-- Stops tracking every table (uninstall, issue 15.1): for each table that
-- carries one of ec_feed's triggers or is registered, drops those triggers
-- and gives the managed columns the defaults untrack() gives them (0), so
-- that plain INSERTs keep working once the extension is gone; forgets the
-- registrations, those of dropped tables too. Returns the tables untracked.
-- Needs ownership of each (ALTER TABLE).
CREATE FUNCTION ec_feed.untrack_all() RETURNS SETOF regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r regclass;
	g name;
BEGIN
	FOR r IN
		SELECT t.relid FROM ec_feed.tracked_rel t
		WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid)
		UNION
		SELECT t.tgrelid::regclass FROM pg_trigger t
		WHERE t.tgfoid IN ('ec_feed.stamp()'::regprocedure, 'ec_feed.record()'::regprocedure,
						   'ec_feed.truncate_guard()'::regprocedure)
		ORDER BY 1
	LOOP
		PERFORM ec_feed._check_owner(r);
		-- the feed learns it (ec_feed._record_untrack, in "schema changes")
		PERFORM ec_feed._record_untrack(r);
		FOR g IN
			SELECT t.tgname FROM pg_trigger t
			WHERE t.tgrelid = r
			  AND t.tgfoid IN ('ec_feed.stamp()'::regprocedure, 'ec_feed.record()'::regprocedure,
							   'ec_feed.truncate_guard()'::regprocedure)
			ORDER BY t.tgname
		LOOP
			EXECUTE format('DROP TRIGGER %I ON %s', g, r);
		END LOOP;
		IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = r AND a.attname = 'ec_version'
				   AND NOT a.attisdropped AND NOT a.atthasdef) THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN ec_version SET DEFAULT 0', r);
		END IF;
		IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = r AND a.attname = 'ec_xid'
				   AND NOT a.attisdropped AND NOT a.atthasdef) THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN ec_xid SET DEFAULT ''0''', r);
		END IF;
		DELETE FROM ec_feed.tracked_rel t WHERE t.relid = r;
		RETURN NEXT r;
	END LOOP;
	DELETE FROM ec_feed.tracked_rel t
	WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid);
END;
$$;

-- Before DROP EXTENSION ec_feed (or DROP SCHEMA ec_feed): with CASCADE,
-- untrack_all() first, so that the tables keep working without the
-- extension (CASCADE alone would drop the triggers and leave the managed
-- columns NOT NULL without a default: every plain INSERT would fail);
-- without it, a clear error naming the tracked tables instead of a list of
-- dependent triggers. The statement's parse tree is read in C (track.c).
CREATE FUNCTION ec_feed._before_drop() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'ec_feed_before_drop'
LANGUAGE C;
REVOKE ALL ON FUNCTION ec_feed._before_drop() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_before_drop ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
	EXECUTE FUNCTION ec_feed._before_drop();

-- A tracked table keeps a primary key that track() would accept (issue
-- 15.5): the row triggers find rows by it, so without one every write of
-- the table would fail while ec_feed.tracked still lists it. An ALTER TABLE
-- that leaves a table carrying the stamp trigger without such a key (its
-- key dropped, made deferrable, a key column given a nondeterministic
-- collation) is refused; replacing the key within one ALTER TABLE works.
CREATE FUNCTION ec_feed._key_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r regclass;
	keys name[];
	immediate boolean;
	nondet name;
BEGIN
	FOR r IN
		SELECT DISTINCT c.objid::regclass FROM pg_event_trigger_ddl_commands() c
		WHERE c.classid = 'pg_class'::regclass
		  AND EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.objid
					  AND g.tgfoid = 'ec_feed.stamp()'::regprocedure)
	LOOP
		SELECT array_agg(a.attname ORDER BY k.ord), bool_and(i.indimmediate),
			   min(a.attname) FILTER (WHERE NOT co.collisdeterministic)
		INTO keys, immediate, nondet
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey, i.indcollation) WITH ORDINALITY AS k(attnum, coll, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		LEFT JOIN pg_collation co ON co.oid = k.coll
		WHERE i.indrelid = r AND i.indisprimary AND k.ord <= i.indnkeyatts;
		IF keys IS NULL THEN
			RAISE EXCEPTION 'cannot drop the primary key of table "%" tracked by ec_feed', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_feed identifies the rows of a tracked table by its primary key: without one every INSERT, UPDATE and DELETE of the table would fail.',
					  HINT = format('Untrack the table first (SELECT ec_feed.untrack(%L)), or replace the key in one statement: ALTER TABLE %s DROP CONSTRAINT ..., ADD PRIMARY KEY (...).', r::text, r);
		END IF;
		IF NOT immediate THEN
			RAISE EXCEPTION 'the primary key of "%" is deferrable', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_feed identifies rows by a primary key that is checked immediately; a DEFERRABLE one may hold duplicates until commit.',
					  HINT = 'Keep the primary key of a tracked table NOT DEFERRABLE, or untrack the table first.';
		END IF;
		IF nondet IS NOT NULL THEN
			RAISE EXCEPTION 'primary key column "%" of "%" has a nondeterministic collation', nondet, r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_feed compares keys by their exact text; a nondeterministic (e.g. case-insensitive) collation lets different texts be the same key.',
					  HINT = 'Keep a deterministic collation (e.g. COLLATE "C") on the key columns of a tracked table, or untrack the table first.';
		END IF;
		IF keys && ARRAY['ec_version', 'ec_xid']::name[] THEN
			RAISE EXCEPTION 'the primary key of "%" uses a managed column', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_version and ec_xid are written by ec_feed and cannot be part of the key.',
					  HINT = 'Use a primary key of other columns.';
		END IF;
	END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION ec_feed._key_guard() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_key_guard ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION ec_feed._key_guard();

-- Adopting the rows a table had before track() (issue 15.2). They share one
-- version older than the table's history_since, so a stale token of one of
-- them never merges. adopt() gives each such row a version of its own with
-- a history entry, through an ordinary UPDATE that changes no value (the
-- stamp and record triggers do the rest: the feed shows an update whose
-- changed is empty), in batches of pages, each committed on its own: rows
-- are locked for one batch only, a run can be stopped and started again
-- (it takes only the rows still older than history_since), and a row that
-- a concurrent writer changes meanwhile needs nothing (the UPDATE rechecks
-- its version). A procedure, to commit between batches; without a SET
-- clause, which would forbid that: every name below is qualified.
CREATE PROCEDURE ec_feed.adopt(rel regclass, batch_pages integer DEFAULT 64,
							   fire_triggers boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
	since bigint;
	pages bigint;
	first bigint := 0;
	n bigint;
	total bigint := 0;
	tries integer;
	others text;
BEGIN
	IF rel IS NULL OR batch_pages IS NULL OR batch_pages < 1 OR fire_triggers IS NULL THEN
		RAISE EXCEPTION 'invalid argument of ec_feed.adopt()'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'rel must be a table, batch_pages at least 1, fire_triggers not NULL.',
				  HINT = 'Call e.g. CALL ec_feed.adopt(''items'').';
	END IF;
	PERFORM ec_feed._check_owner(rel);
	IF NOT EXISTS (SELECT 1 FROM ec_feed.tracked t WHERE t.rel OPERATOR(pg_catalog.=) adopt.rel AND t.history) THEN
		RAISE EXCEPTION 'table "%" is not tracked with history', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Adopting gives rows versions whose history proves what changed since; a table without history has none.',
				  HINT = 'Call ec_feed.track() on the table (history => true) first.';
	END IF;
	-- the table's own UPDATE triggers and rules would run for every row
	SELECT pg_catalog.string_agg(x.name, ', ' ORDER BY x.name) INTO others
	FROM (SELECT g.tgname::text AS name FROM pg_catalog.pg_trigger g
		  WHERE g.tgrelid OPERATOR(pg_catalog.=) rel AND NOT g.tgisinternal
			AND g.tgenabled OPERATOR(pg_catalog.<>) 'D'
			AND (g.tgtype::integer OPERATOR(pg_catalog.&) 16) OPERATOR(pg_catalog.<>) 0
			AND g.tgfoid OPERATOR(pg_catalog.<>) 'ec_feed.stamp()'::pg_catalog.regprocedure
			AND g.tgfoid OPERATOR(pg_catalog.<>) 'ec_feed.record()'::pg_catalog.regprocedure
		  UNION ALL
		  SELECT 'rule ' || r.rulename::text FROM pg_catalog.pg_rewrite r
		  WHERE r.ev_class OPERATOR(pg_catalog.=) rel AND r.ev_type OPERATOR(pg_catalog.=) '2'
			AND r.ev_enabled OPERATOR(pg_catalog.<>) 'D') x;
	IF others IS NOT NULL AND NOT fire_triggers THEN
		RAISE EXCEPTION 'table "%" has UPDATE triggers or rules of its own: %', rel, others
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Adopting updates every row that predates track(), changing no value, and they would run for each.',
				  HINT = 'Pass fire_triggers => true if they do nothing to a row whose values do not change.';
	END IF;

	pages := pg_catalog.pg_relation_size(rel) OPERATOR(pg_catalog./)
		pg_catalog.current_setting('block_size')::bigint;
	WHILE first OPERATOR(pg_catalog.<) pages LOOP
		tries := 0;
		LOOP
			SELECT t.history_since INTO since FROM ec_feed.tracked_rel t
			WHERE t.relid OPERATOR(pg_catalog.=) rel;
			BEGIN
				EXECUTE pg_catalog.format('UPDATE ONLY %s SET ec_version = 0 '
					'WHERE ctid OPERATOR(pg_catalog.>=) $1 AND ctid OPERATOR(pg_catalog.<) $2 '
					'AND ec_version OPERATOR(pg_catalog.<) $3', rel)
					USING pg_catalog.format('(%s,0)', first)::pg_catalog.tid,
						  pg_catalog.format('(%s,0)', first OPERATOR(pg_catalog.+) batch_pages)::pg_catalog.tid,
						  since;
				GET DIAGNOSTICS n = ROW_COUNT;
				EXIT;
			EXCEPTION WHEN deadlock_detected OR serialization_failure THEN
				tries := tries OPERATOR(pg_catalog.+) 1;
				IF tries OPERATOR(pg_catalog.>=) 5 THEN
					RAISE;
				END IF;
			END;
		END LOOP;
		total := total OPERATOR(pg_catalog.+) n;
		COMMIT;
		first := first OPERATOR(pg_catalog.+) batch_pages;
	END LOOP;
	RAISE NOTICE 'ec_feed.adopt: % rows of "%" got versions of their own', total, rel;
END;
$$;
COMMENT ON PROCEDURE ec_feed.adopt(regclass, integer, boolean) IS
'Gives every row that predates track() a version of its own with a history entry (an update with empty changed in the feed), so that its stale tokens can merge; in batches of pages, each committed (CALL it outside a transaction block). Resumable; owner only.';

-- What \df+ ec_feed.* shows (issue 15.4): every function of 0.1.0 and
-- 0.2.0, and those of this section, described for users. The README has
-- the details.
COMMENT ON FUNCTION ec_feed.track(regclass, boolean) IS
'Starts tracking a table (its owner only; it needs a primary key): adds ec_version bigint and ec_xid xid8, the row triggers and the TRUNCATE guard; history => false keeps tokens but records no feed. Idempotent; called again it switches history on or off.';
COMMENT ON FUNCTION ec_feed.untrack(regclass, boolean) IS
'Stops tracking a table: drops the triggers and, with drop_columns, the managed columns (else they stay NOT NULL with default 0). Recorded history stays readable.';
COMMENT ON FUNCTION ec_feed.untrack_all() IS
'Untracks every tracked table, keeping ec_version and ec_xid with default 0, and returns them; DROP EXTENSION ec_feed CASCADE runs it first. Needs ownership of each table.';
COMMENT ON FUNCTION ec_feed.read(text, integer, regclass[], integer) IS
'The change feed: the changes committed after the cursor (NULL: from the oldest retained), at most max_rows, each once and in per-row order, of the tables in rels (NULL: every tracked table the caller may read), then one progress row whose cursor resumes after the page; with wait_ms, a page with nothing new waits up to that long for a commit.';
COMMENT ON FUNCTION ec_feed.cursor_now() IS
'A cursor at the calling statement''s snapshot. Read in the same REPEATABLE READ transaction as a copy of the tables, the feed from it continues exactly where the copy ends; warns in a READ COMMITTED transaction block and after writes of tracked rows.';
COMMENT ON FUNCTION ec_feed.row_token(anyelement) IS
'The token (ETag) of a row of a tracked table as read, e.g. SELECT t.*, ec_feed.row_token(t) FROM tab t: names the table, the row and its version, and carries the writer''s transaction. No extra lookup.';
COMMENT ON FUNCTION ec_feed.token(regclass, jsonb) IS
'The current token of the row with this primary key (a JSON object of the key columns) as the caller may read it, NULL if there is none.';
COMMENT ON FUNCTION ec_feed.update_if(regclass, jsonb, text, jsonb, boolean) IS
'Conditional update by key and token: applied (current token), merged (stale token, nothing requested changed since), conflict (with the row now, the requested values and the columns in conflict), not_found or deleted; merge => false makes any stale token a conflict. Runs as the caller.';
COMMENT ON FUNCTION ec_feed.delete_if(regclass, jsonb, text) IS
'Conditional delete by key and token: applied, merged (stale token, nothing changed since), conflict (with the row now), not_found or deleted. Runs as the caller.';
COMMENT ON FUNCTION ec_feed.token_status(text) IS
'visible when the write the token names is visible to a new snapshot on this server (primary or hot standby), pending when not yet; 22023 when it was rolled back.';
COMMENT ON FUNCTION ec_feed.require_visible(text, integer) IS
'Returns once the write the token names is visible here; else waits up to wait_ms (only as a statement of its own in READ COMMITTED, holding no snapshot) and raises EC003 with a JSON errdetail (reason, retry_after_ms).';
COMMENT ON FUNCTION ec_feed.get(regclass, jsonb, text) IS
'One row by primary key, as the caller may read it: found (the row and its token), not_found, or not_consistent when min_token''s write is not visible on this server yet (retry, or read from the primary).';
COMMENT ON FUNCTION ec_feed.stamp() IS
'Trigger function of zz_ec_feed_stamp (BEFORE row): writes ec_version and ec_xid. Not to be called otherwise.';
COMMENT ON FUNCTION ec_feed.record() IS
'Trigger function of zz_ec_feed_record (AFTER row): records the change in the history. Not to be called otherwise.';
COMMENT ON FUNCTION ec_feed.truncate_guard() IS
'Trigger function of zz_ec_feed_truncate_guard: refuses TRUNCATE of a tracked table unless its owner set ec_feed.allow_truncate; an allowed TRUNCATE is recorded as one change with op truncate.';
COMMENT ON FUNCTION ec_feed._check_owner(regclass) IS
'Internal (track, untrack): raises 42501 unless the caller owns the table.';
COMMENT ON FUNCTION ec_feed._add_managed_column(regclass, name, regtype, text) IS
'Internal (track): adds a managed column, or brings an existing one into shape (NOT NULL, no default).';
COMMENT ON FUNCTION ec_feed._draw_version() IS
'Internal: a fresh version from ec_feed.change_seq (for the marks track() keeps).';
COMMENT ON FUNCTION ec_feed._unstamped(regclass) IS
'Internal (track): does the table carry ec_version while ec_feed does not stamp it (untracked, columns made by hand, stamp trigger dropped or disabled)?';
COMMENT ON FUNCTION ec_feed._renumber(regclass) IS
'Internal (track): gives every row of a table that was written unstamped a fresh version, so that no token read before applies.';
COMMENT ON FUNCTION ec_feed._schema_changed() IS
'Event trigger function (ALTER TABLE): moves history_since of an altered tracked table, so that tokens from before never merge.';
COMMENT ON FUNCTION ec_feed._before_drop() IS
'Event trigger function (DROP EXTENSION, DROP SCHEMA): untracks every table before ec_feed is dropped with CASCADE; without CASCADE, refuses while tables are tracked.';
COMMENT ON FUNCTION ec_feed._key_guard() IS
'Event trigger function (ALTER TABLE): refuses to leave a tracked table without a primary key that track() accepts.';
COMMENT ON VIEW ec_feed.tracked IS
'The tracked tables: those carrying ec_feed''s stamp trigger, with their primary key as it is now and whether their changes are recorded.';
COMMENT ON TYPE ec_feed.write_result IS
'The result of update_if and delete_if: status (applied, merged, conflict, not_found, deleted), the newest token, the row now, the requested values, the conflicting columns and every column changed since the token (NULL when the history cannot tell).';

------------------------------------------------------------------------
-- dump and restore
------------------------------------------------------------------------

-- The restore fence (src/catalog.c): row versions at or below its value
-- were not written in this database (they came with pg_restore), so their
-- ec_xid names a transaction of another database's counter and is never
-- read; their tokens say so. The first row write after CREATE EXTENSION
-- sets it. It is a member of the extension but deliberately not marked
-- with pg_extension_config_dump: a restore must start with it unset, while
-- pg_upgrade, which carries every member sequence's value, keeps it.
CREATE SEQUENCE ec_feed.restore_fence MINVALUE 0 START 0 CACHE 1;
-- tokens are made by every role (pg_sequence_last_value() needs SELECT)
GRANT SELECT ON SEQUENCE ec_feed.restore_fence TO PUBLIC;
-- Updated in place: every row was written in this database. (A new install
-- runs this script too; it has drawn no version yet, so the fence stays
-- unset until the first write.)
SELECT pg_catalog.setval('ec_feed.restore_fence', 0, true)
WHERE pg_catalog.pg_sequence_last_value('ec_feed.change_seq') IS NOT NULL;

------------------------------------------------------------------------
-- schema changes: untrack and DROP TABLE in the feed, key changes
------------------------------------------------------------------------

-- Records that a table leaves the feed (src/untrack.c): one table-level
-- entry, op 'x', read() returns it as op 'untrack'. For a table that exists
-- only as its owner, under ACCESS EXCLUSIVE; for a dropped one only as the
-- extension's owner (the event trigger below).
CREATE FUNCTION ec_feed._record_untrack(rel regclass) RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_record_untrack'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ec_feed._record_untrack(regclass) IS
'Internal (untrack, untrack_all, the DROP TABLE event trigger): records that the table leaves the feed, a change with op untrack, while every writer of the table is locked out.';

-- 0.2.0's body, plus: the untrack is recorded (before the triggers go, under
-- the lock _record_untrack takes), so that a consumer of the table learns
-- that its copy is void.
CREATE OR REPLACE FUNCTION ec_feed.untrack(rel regclass, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF rel IS NULL THEN
		RAISE EXCEPTION 'rel must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = 'ec_feed.untrack() needs the table to stop tracking.',
				  HINT = 'Pass the table, e.g. ec_feed.untrack(''items'').';
	END IF;
	PERFORM ec_feed._check_owner(rel);
	IF NOT EXISTS (SELECT 1 FROM ec_feed.tracked_rel WHERE relid = rel) THEN
		RAISE EXCEPTION 'table "%" is not tracked', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'ec_feed.untrack() stops tracking a table that ec_feed.track() started.',
				  HINT = 'See ec_feed.tracked for the tracked tables.';
	END IF;
	PERFORM ec_feed._record_untrack(rel);
	EXECUTE format('DROP TRIGGER IF EXISTS zz_ec_feed_stamp ON %s', rel);
	EXECUTE format('DROP TRIGGER IF EXISTS zz_ec_feed_record ON %s', rel);
	EXECUTE format('DROP TRIGGER IF EXISTS zz_ec_feed_truncate_guard ON %s', rel);
	IF drop_columns THEN
		EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS ec_version, DROP COLUMN IF EXISTS ec_xid', rel);
	ELSE
		-- nothing fills the NOT NULL columns any more: plain INSERTs get 0
		EXECUTE format('ALTER TABLE %s ALTER COLUMN ec_version SET DEFAULT 0, '
					   'ALTER COLUMN ec_xid SET DEFAULT ''0''', rel);
	END IF;
	DELETE FROM ec_feed.tracked_rel WHERE relid = rel;
END;
$$;

-- DROP TABLE (or DROP SCHEMA ... CASCADE, DROP OWNED) of a registered table:
-- its registration goes, and, if it recorded history, the drop is recorded
-- as an untrack (the feed names the table by its OID then). SECURITY
-- DEFINER: the registration of a dropped table is no longer the caller's
-- to delete (the policy asks for the table's owner), and only the
-- extension's owner may record the drop of a table that no longer exists.
-- It acts only on tables the statement has just dropped.
CREATE FUNCTION ec_feed._tables_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT t.relid::oid AS relid, t.history FROM ec_feed.tracked_rel t
		WHERE t.relid::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
							   WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0)
		ORDER BY 1
	LOOP
		IF r.history THEN
			PERFORM ec_feed._record_untrack(r.relid::regclass);
		END IF;
		DELETE FROM ec_feed.tracked_rel t WHERE t.relid::oid = r.relid;
	END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION ec_feed._tables_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_tables_dropped ON sql_drop
	EXECUTE FUNCTION ec_feed._tables_dropped();
COMMENT ON FUNCTION ec_feed._tables_dropped() IS
'Event trigger function (sql_drop): forgets the registration of a dropped tracked table and records its drop in the feed as a change with op untrack.';

-- registrations that tables dropped before 0.3.0 left behind
DELETE FROM ec_feed.tracked_rel t
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.relid);

-- A tracked table keeps its key columns (names, in order), not only a usable
-- key: the history, the tokens and the consumers' copies know its rows by
-- them. The adoption section's guard, plus: a key column renamed, or a
-- primary key made in this transaction (src/keyguard.c) of other columns
-- than the registration names, is refused; the supported way is untrack(),
-- change, track() (consumers get the untrack row and copy again).
CREATE FUNCTION ec_feed._created_here(rel regclass) RETURNS boolean
AS 'MODULE_PATHNAME', 'ec_feed_created_here'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ec_feed._created_here(regclass) IS
'Internal (the key guard): was the relation created by the current transaction?';
CREATE OR REPLACE FUNCTION ec_feed._key_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r regclass;
	keys name[];
	immediate boolean;
	nondet name;
	registered name[];
	pkey regclass;
	renamed name;
BEGIN
	FOR r IN
		SELECT DISTINCT c.objid::regclass FROM pg_event_trigger_ddl_commands() c
		WHERE c.classid = 'pg_class'::regclass
		  AND EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.objid
					  AND g.tgfoid = 'ec_feed.stamp()'::regprocedure)
	LOOP
		SELECT array_agg(a.attname ORDER BY k.ord), bool_and(i.indimmediate),
			   min(a.attname) FILTER (WHERE NOT co.collisdeterministic)
		INTO keys, immediate, nondet
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey, i.indcollation) WITH ORDINALITY AS k(attnum, coll, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		LEFT JOIN pg_collation co ON co.oid = k.coll
		WHERE i.indrelid = r AND i.indisprimary AND k.ord <= i.indnkeyatts;
		-- no key (yet): a restore that enables the triggers before it adds
		-- the key (pg_restore -j); a key dropped is refused by _key_dropped
		IF keys IS NULL THEN
			CONTINUE;
		END IF;
		IF NOT immediate THEN
			RAISE EXCEPTION 'the primary key of "%" is deferrable', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_feed identifies rows by a primary key that is checked immediately; a DEFERRABLE one may hold duplicates until commit.',
					  HINT = 'Keep the primary key of a tracked table NOT DEFERRABLE, or untrack the table first.';
		END IF;
		IF nondet IS NOT NULL THEN
			RAISE EXCEPTION 'primary key column "%" of "%" has a nondeterministic collation', nondet, r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_feed compares keys by their exact text; a nondeterministic (e.g. case-insensitive) collation lets different texts be the same key.',
					  HINT = 'Keep a deterministic collation (e.g. COLLATE "C") on the key columns of a tracked table, or untrack the table first.';
		END IF;
		IF keys && ARRAY['ec_version', 'ec_xid']::name[] THEN
			RAISE EXCEPTION 'the primary key of "%" uses a managed column', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_version and ec_xid are written by ec_feed and cannot be part of the key.',
					  HINT = 'Use a primary key of other columns.';
		END IF;
		-- a key column renamed: the history's keys have the old name
		SELECT a.attname INTO renamed
		FROM pg_event_trigger_ddl_commands() c
		JOIN pg_index i ON i.indrelid = c.objid AND i.indisprimary
		JOIN pg_attribute a ON a.attrelid = c.objid AND a.attnum = c.objsubid
		WHERE c.classid = 'pg_class'::regclass AND c.objid = r AND c.objsubid > 0
		  AND c.object_type = 'table column' AND c.objsubid = ANY (i.indkey::int2[])
		LIMIT 1;
		IF renamed IS NOT NULL THEN
			RAISE EXCEPTION 'cannot rename a primary key column of table "%" tracked by ec_feed (to "%")', r, renamed
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'The feed, the tokens and the consumers'' copies know its rows by their keys, JSON objects named by the key columns: keys recorded after the rename would match none recorded before.',
					  HINT = format('Untrack the table (SELECT ec_feed.untrack(%L)), rename the column, then track it again: consumers get a change with op untrack and copy the table anew.', r::text);
		END IF;
		-- a key made in this transaction: of the columns track() registered?
		SELECT i.indexrelid INTO pkey FROM pg_index i WHERE i.indrelid = r AND i.indisprimary;
		IF ec_feed._created_here(pkey) THEN
			SELECT t.key_columns INTO registered FROM ec_feed.tracked_rel t WHERE t.relid = r;
		ELSE
			registered := NULL;
		END IF;
		IF registered IS NOT NULL AND keys IS DISTINCT FROM registered THEN
			RAISE EXCEPTION 'cannot change the primary key columns of table "%" tracked by ec_feed', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = format('The feed, the tokens and the consumers'' copies know its rows by the key (%s); rows recorded after the change would have keys (%s) that match none of them.',
									  array_to_string(registered, ', '), array_to_string(keys, ', ')),
					  HINT = format('Untrack the table (SELECT ec_feed.untrack(%L)), change the key, then track it again: consumers get a change with op untrack and copy the table anew.', r::text);
		END IF;
	END LOOP;
END;
$$;

-- registrations whose key a 0.2.0 ALTER TABLE replaced: the live key
UPDATE ec_feed.tracked_rel t
SET key_columns = k.keys
FROM (SELECT i.indrelid, array_agg(a.attname ORDER BY x.ord) AS keys
	  FROM pg_catalog.pg_index i
	  CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS x(attnum, ord)
	  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = x.attnum
	  WHERE i.indisprimary AND x.ord <= i.indnkeyatts
	  GROUP BY i.indrelid) k
WHERE k.indrelid = t.relid AND t.key_columns IS DISTINCT FROM k.keys;
COMMENT ON FUNCTION ec_feed._key_guard() IS
'Event trigger function (ALTER TABLE): refuses to leave a tracked table without a primary key that track() accepts, or with other key columns than track() registered.';

-- A command that drops the primary key of a tracked table (DROP
-- CONSTRAINT, DROP COLUMN ... CASCADE) and leaves none: refused at its end,
-- where a key added by the same statement already exists. (At ALTER TABLE's
-- end a table without a key may also be one being restored.)
CREATE FUNCTION ec_feed._key_dropped() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r regclass;
BEGIN
	FOR r IN
		SELECT DISTINCT to_regclass(format('%I.%I', d.address_names[1], d.address_names[2]))
		FROM pg_event_trigger_dropped_objects() d
		WHERE d.object_type = 'table constraint'
	LOOP
		CONTINUE WHEN r IS NULL;
		IF EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = r
				   AND g.tgfoid = 'ec_feed.stamp()'::regprocedure)
		   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = r AND i.indisprimary) THEN
			RAISE EXCEPTION 'cannot drop the primary key of table "%" tracked by ec_feed', r
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'ec_feed identifies the rows of a tracked table by its primary key: without one every INSERT, UPDATE and DELETE of the table would fail.',
					  HINT = format('Untrack the table first (SELECT ec_feed.untrack(%L)), change the key, then track it again.', r::text);
		END IF;
	END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION ec_feed._key_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_key_dropped ON sql_drop
	EXECUTE FUNCTION ec_feed._key_dropped();
COMMENT ON FUNCTION ec_feed._key_dropped() IS
'Event trigger function (sql_drop): refuses a command that leaves a tracked table without a primary key.';

------------------------------------------------------------------------
-- write path: the history's key index holds a hash of the key (issue 10.2)
------------------------------------------------------------------------

-- Every recorded change descended the index on (relid, key, seq) comparing
-- jsonb keys, a fifth of the cost of its four index entries. The index now
-- holds (relid, hash of the key, seq), integers: the hash is the one tokens
-- carry (ec_key_hash() in token.c, jsonb_hash_extended with its seed), and
-- readers compare the key of each entry they find (history.c,
-- keyhistory.c). Segments made from now on have it; segment 0
-- (ec_feed.history) keeps its index (relid, key, seq): a backend that still
-- runs the 0.2.0 library (the README says to reconnect them before the
-- update) writes segment 0 and cannot compute an expression index (it would
-- crash), and a rebuild would block the writers. Every reader and writer of
-- this library handles both layouts, per segment.

CREATE OR REPLACE FUNCTION ec_feed._create_segment(id integer) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	name text := 'history_' || id;
	rel regclass;
BEGIN
	EXECUTE format('CREATE TABLE ec_feed.%I (seq bigint NOT NULL, xid xid8 NOT NULL, relid oid NOT NULL, '
				   'op "char" NOT NULL, key jsonb NOT NULL, data jsonb NOT NULL, changed text[], '
				   'prev_version bigint, CONSTRAINT %I PRIMARY KEY (seq))', name, name || '_pkey');
	EXECUTE format('CREATE INDEX %I ON ec_feed.%I (xid, seq)', name || '_xid_seq_idx', name);
	-- the seed of ec_key_hash() (token.c): 0x65635f6b6579
	EXECUTE format('CREATE INDEX %I ON ec_feed.%I (relid, pg_catalog.jsonb_hash_extended(key, 111477477041529), seq)',
				   name || '_rel_key_idx', name);
	EXECUTE format('CREATE INDEX %I ON ec_feed.%I (relid, seq)', name || '_rel_seq_idx', name);
	EXECUTE format('REVOKE ALL ON ec_feed.%I FROM PUBLIC', name);
	rel := format('ec_feed.%I', name)::regclass;
	EXECUTE format('ALTER EXTENSION ec_feed ADD TABLE %s', rel);
	INSERT INTO ec_feed.segment (id, relid, start_version, created_by)
	VALUES (id, rel, 0, pg_current_xact_id());
	RETURN rel;
END;
$$;

------------------------------------------------------------------------
-- partitioned tables (issue 8 item 6)
------------------------------------------------------------------------

-- track('parent') on a partitioned table tracks every partition, present
-- and future: the managed columns and the row triggers go on the parent
-- (PostgreSQL adds the columns to and clones the row triggers onto every
-- partition, also those created or attached later), the statement-level
-- TRUNCATE guard on the parent and on each partition (event trigger below
-- for later ones). The feed, the tokens and the conditional writes name
-- the parent (src/partition.c). A partition of a tracked tree cannot be
-- tracked on its own, nor a tree one of whose partitions is.

-- DROP TABLE of a partition (or DROP SCHEMA ... CASCADE of its schema),
-- ALTER TABLE ... DETACH PARTITION: the rows leaving are recorded as
-- deletes first; DETACH CONCURRENTLY is refused, as is an ATTACH of a table
-- tracked on its own.
CREATE FUNCTION ec_feed._partition_ddl_start() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'ec_feed_partition_ddl_start'
LANGUAGE C;
REVOKE ALL ON FUNCTION ec_feed._partition_ddl_start() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_partition_ddl_start ON ddl_command_start
	WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'ALTER TABLE')
	EXECUTE FUNCTION ec_feed._partition_ddl_start();
COMMENT ON FUNCTION ec_feed._partition_ddl_start() IS
'Event trigger function (DROP TABLE, DROP SCHEMA, ALTER TABLE): records the rows of a partition dropped or detached from a tracked partitioned table as deletes; refuses DETACH PARTITION CONCURRENTLY there, and ATTACH PARTITION of a table tracked on its own.';

-- CREATE TABLE ... PARTITION OF, ALTER TABLE ... ATTACH PARTITION: the new
-- partitions get the TRUNCATE guard; attached rows fresh versions, recorded
-- as inserts.
CREATE FUNCTION ec_feed._partition_ddl_end() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'ec_feed_partition_ddl_end'
LANGUAGE C;
REVOKE ALL ON FUNCTION ec_feed._partition_ddl_end() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_partition_ddl_end ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
	EXECUTE FUNCTION ec_feed._partition_ddl_end();
COMMENT ON FUNCTION ec_feed._partition_ddl_end() IS
'Event trigger function (CREATE TABLE, ALTER TABLE): gives a partition created in or attached to a tracked partitioned table the TRUNCATE guard, and the rows of an attached one fresh versions, recorded as inserts.';

-- Is the table (a partition) part of a tree tracked through an ancestor?
-- That ancestor, else NULL.
CREATE FUNCTION ec_feed._tracked_ancestor(rel regclass) RETURNS regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.relid FROM pg_partition_ancestors(rel) WITH ORDINALITY AS a(relid, ord)
	WHERE a.relid <> rel
	  AND EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = a.relid
				  AND g.tgfoid = 'ec_feed.stamp()'::regprocedure)
	ORDER BY a.ord DESC LIMIT 1;
$$;
COMMENT ON FUNCTION ec_feed._tracked_ancestor(regclass) IS
'Internal (track, untrack_all): the topmost partitioned table above rel that carries ec_feed''s stamp trigger, NULL if none.';

-- The partitions below rel (all levels), rel left out.
CREATE FUNCTION ec_feed._partitions(rel regclass) RETURNS SETOF regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT p.relid FROM pg_partition_tree(rel) p WHERE p.relid <> rel ORDER BY p.level, p.relid;
$$;
COMMENT ON FUNCTION ec_feed._partitions(regclass) IS
'Internal (track, untrack): every partition below a partitioned table, at all levels.';

-- track(), below: 0.2.0's body, plus: a partitioned table is tracked; a
-- partition of a tracked tree, or a tree with a partition tracked on its
-- own, is refused (_check_partitioning); a partitioned table's rows are
-- renumbered in its partitions (_renumber_tree); every partition gets the
-- TRUNCATE guard (_partition_guards).
CREATE FUNCTION ec_feed._check_partitioning(rel regclass, kind "char") RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	above regclass := ec_feed._tracked_ancestor(rel);
	own regclass;
BEGIN
	IF above IS NOT NULL THEN
		RAISE EXCEPTION 'table "%" is a partition of "%", which ec_feed tracks', rel, above
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its rows are tracked through %s: the feed, the tokens and the conditional writes name that table.', above),
				  HINT = format('Pass %s to ec_feed''s functions instead.', above);
	END IF;
	IF kind = 'p' THEN
		SELECT x.p INTO own FROM ec_feed._partitions(rel) AS x(p)
		WHERE EXISTS (SELECT 1 FROM ec_feed.tracked_rel t WHERE t.relid = x.p)
		   OR EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = x.p AND g.tgparentid = 0
					  AND g.tgfoid = 'ec_feed.stamp()'::regprocedure)
		LIMIT 1;
		IF own IS NOT NULL THEN
			RAISE EXCEPTION 'partition "%" of "%" is tracked on its own', own, rel
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = format('The feed names its rows %s; tracked through %s they would be named %s.', own, rel, rel),
					  HINT = format('Untrack the partition first (SELECT ec_feed.untrack(%L)): its consumers get a change with op untrack; then track %s.', own::text, rel);
		END IF;
	END IF;
END;
$$;
COMMENT ON FUNCTION ec_feed._check_partitioning(regclass, "char") IS
'Internal (track): refuses a partition of a tracked partitioned table, and a partitioned table one of whose partitions is tracked on its own.';

-- The rows of a partitioned table are in its leaf partitions: those are
-- renumbered (_renumber) when the tree carries the managed columns
-- unstamped (tracked before, untracked since).
CREATE FUNCTION ec_feed._renumber_tree(rel regclass, kind "char") RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p regclass;
BEGIN
	IF kind <> 'p' THEN
		PERFORM ec_feed._renumber(rel);
		RETURN;
	END IF;
	PERFORM ec_feed._check_owner(rel);
	IF NOT ec_feed._unstamped(rel) THEN
		RETURN;
	END IF;
	EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', rel);
	FOR p IN SELECT x.p FROM ec_feed._partitions(rel) AS x(p)
			 JOIN pg_class c ON c.oid = x.p WHERE c.relkind = 'r' LOOP
		PERFORM ec_feed._renumber(p);
	END LOOP;
	DELETE FROM ec_feed.tracked_rel t WHERE t.relid = rel;
END;
$$;
COMMENT ON FUNCTION ec_feed._renumber_tree(regclass, "char") IS
'Internal (track): ec_feed._renumber() of a table, or of every leaf partition of a partitioned table that carries the managed columns unstamped.';

-- Every partition below rel gets the TRUNCATE guard (add), or loses it.
CREATE FUNCTION ec_feed._partition_guards(rel regclass, add boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p regclass;
	has boolean;
BEGIN
	FOR p IN SELECT x.p FROM ec_feed._partitions(rel) AS x(p) LOOP
		has := EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = p
					   AND g.tgname = 'zz_ec_feed_truncate_guard');
		IF add AND NOT has THEN
			EXECUTE format('CREATE TRIGGER zz_ec_feed_truncate_guard BEFORE TRUNCATE ON %s '
						   'FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard()', p);
		ELSIF NOT add AND has THEN
			EXECUTE format('DROP TRIGGER zz_ec_feed_truncate_guard ON %s', p);
		END IF;
	END LOOP;
END;
$$;
COMMENT ON FUNCTION ec_feed._partition_guards(regclass, boolean) IS
'Internal (track, untrack, untrack_all): puts the TRUNCATE guard on every partition below a partitioned table, or removes it.';

-- track(): the partitioned tables' version, with the untrack record of
-- history switched off, is defined once, in the section "the feed's edges"
-- below.

-- The schema section's body, plus: the partitions' TRUNCATE guards go too
-- (the row triggers' clones go with the parent's triggers; the managed
-- columns' defaults and drops reach the partitions).
CREATE OR REPLACE FUNCTION ec_feed.untrack(rel regclass, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF rel IS NULL THEN
		RAISE EXCEPTION 'rel must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = 'ec_feed.untrack() needs the table to stop tracking.',
				  HINT = 'Pass the table, e.g. ec_feed.untrack(''items'').';
	END IF;
	PERFORM ec_feed._check_owner(rel);
	IF NOT EXISTS (SELECT 1 FROM ec_feed.tracked_rel WHERE relid = rel) THEN
		RAISE EXCEPTION 'table "%" is not tracked', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'ec_feed.untrack() stops tracking a table that ec_feed.track() started.',
				  HINT = 'See ec_feed.tracked for the tracked tables.';
	END IF;
	PERFORM ec_feed._record_untrack(rel);
	EXECUTE format('DROP TRIGGER IF EXISTS zz_ec_feed_stamp ON %s', rel);
	EXECUTE format('DROP TRIGGER IF EXISTS zz_ec_feed_record ON %s', rel);
	EXECUTE format('DROP TRIGGER IF EXISTS zz_ec_feed_truncate_guard ON %s', rel);
	PERFORM ec_feed._partition_guards(rel, false);
	IF drop_columns THEN
		EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS ec_version, DROP COLUMN IF EXISTS ec_xid', rel);
	ELSE
		-- nothing fills the NOT NULL columns any more: plain INSERTs get 0
		EXECUTE format('ALTER TABLE %s ALTER COLUMN ec_version SET DEFAULT 0, '
					   'ALTER COLUMN ec_xid SET DEFAULT ''0''', rel);
	END IF;
	DELETE FROM ec_feed.tracked_rel WHERE relid = rel;
END;
$$;

-- The adoption section's body, plus: a partition of a tree tracked through
-- its parent is untracked with the parent (its row triggers are clones,
-- which cannot be dropped on their own), and the partitions' TRUNCATE
-- guards go with the parent's.
CREATE OR REPLACE FUNCTION ec_feed.untrack_all() RETURNS SETOF regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r regclass;
	g name;
BEGIN
	FOR r IN
		SELECT t.relid FROM ec_feed.tracked_rel t
		WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid)
		UNION
		SELECT t.tgrelid::regclass FROM pg_trigger t
		WHERE t.tgfoid IN ('ec_feed.stamp()'::regprocedure, 'ec_feed.record()'::regprocedure,
						   'ec_feed.truncate_guard()'::regprocedure) AND ec_feed._tracked_ancestor(t.tgrelid) IS NULL
		ORDER BY 1
	LOOP
		PERFORM ec_feed._check_owner(r);
		-- the feed learns it (ec_feed._record_untrack, in "schema changes")
		PERFORM ec_feed._record_untrack(r);
		FOR g IN
			SELECT t.tgname FROM pg_trigger t
			WHERE t.tgrelid = r
			  AND t.tgfoid IN ('ec_feed.stamp()'::regprocedure, 'ec_feed.record()'::regprocedure,
							   'ec_feed.truncate_guard()'::regprocedure)
			ORDER BY t.tgname
		LOOP
			EXECUTE format('DROP TRIGGER %I ON %s', g, r);
		END LOOP;
		PERFORM ec_feed._partition_guards(r, false);
		IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = r AND a.attname = 'ec_version'
				   AND NOT a.attisdropped AND NOT a.atthasdef) THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN ec_version SET DEFAULT 0', r);
		END IF;
		IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = r AND a.attname = 'ec_xid'
				   AND NOT a.attisdropped AND NOT a.atthasdef) THEN
			EXECUTE format('ALTER TABLE %s ALTER COLUMN ec_xid SET DEFAULT ''0''', r);
		END IF;
		DELETE FROM ec_feed.tracked_rel t WHERE t.relid = r;
		RETURN NEXT r;
	END LOOP;
	DELETE FROM ec_feed.tracked_rel t
	WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid);
END;
$$;

-- adopt(): the adoption section's body, plus: a partitioned table's rows
-- are adopted in its leaf partitions (before, it adopted none of them).
CREATE OR REPLACE PROCEDURE ec_feed.adopt(rel regclass, batch_pages integer DEFAULT 64,
							   fire_triggers boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
	since bigint;
	pages bigint;
	first bigint := 0;
	n bigint;
	total bigint := 0;
	tries integer;
	others text;
	leaf regclass;
BEGIN
	IF rel IS NULL OR batch_pages IS NULL OR batch_pages < 1 OR fire_triggers IS NULL THEN
		RAISE EXCEPTION 'invalid argument of ec_feed.adopt()'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'rel must be a table, batch_pages at least 1, fire_triggers not NULL.',
				  HINT = 'Call e.g. CALL ec_feed.adopt(''items'').';
	END IF;
	PERFORM ec_feed._check_owner(rel);
	IF NOT EXISTS (SELECT 1 FROM ec_feed.tracked t WHERE t.rel OPERATOR(pg_catalog.=) adopt.rel AND t.history) THEN
		RAISE EXCEPTION 'table "%" is not tracked with history', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Adopting gives rows versions whose history proves what changed since; a table without history has none.',
				  HINT = 'Call ec_feed.track() on the table (history => true) first.';
	END IF;
	-- the table's own UPDATE triggers and rules would run for every row
	SELECT pg_catalog.string_agg(x.name, ', ' ORDER BY x.name) INTO others
	FROM (SELECT g.tgname::text AS name FROM pg_catalog.pg_trigger g
		  WHERE g.tgrelid OPERATOR(pg_catalog.=) rel AND NOT g.tgisinternal
			AND g.tgenabled OPERATOR(pg_catalog.<>) 'D'
			AND (g.tgtype::integer OPERATOR(pg_catalog.&) 16) OPERATOR(pg_catalog.<>) 0
			AND g.tgfoid OPERATOR(pg_catalog.<>) 'ec_feed.stamp()'::pg_catalog.regprocedure
			AND g.tgfoid OPERATOR(pg_catalog.<>) 'ec_feed.record()'::pg_catalog.regprocedure
		  UNION ALL
		  SELECT 'rule ' || r.rulename::text FROM pg_catalog.pg_rewrite r
		  WHERE r.ev_class OPERATOR(pg_catalog.=) rel AND r.ev_type OPERATOR(pg_catalog.=) '2'
			AND r.ev_enabled OPERATOR(pg_catalog.<>) 'D') x;
	IF others IS NOT NULL AND NOT fire_triggers THEN
		RAISE EXCEPTION 'table "%" has UPDATE triggers or rules of its own: %', rel, others
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Adopting updates every row that predates track(), changing no value, and they would run for each.',
				  HINT = 'Pass fire_triggers => true if they do nothing to a row whose values do not change.';
	END IF;

	-- a partitioned table's rows are in its leaf partitions: their own
	-- triggers (not clones of the table's) count too
	SELECT pg_catalog.string_agg(pg_catalog.format('%s (on %s)', g.tgname, g.tgrelid::pg_catalog.regclass),
								 ', ' ORDER BY g.tgrelid, g.tgname) INTO others
	FROM pg_catalog.pg_trigger g
	WHERE g.tgrelid IN (SELECT x.p FROM ec_feed._partitions(rel) AS x(p))
	  AND NOT g.tgisinternal AND g.tgparentid OPERATOR(pg_catalog.=) 0
	  AND g.tgenabled OPERATOR(pg_catalog.<>) 'D'
	  AND (g.tgtype::integer OPERATOR(pg_catalog.&) 16) OPERATOR(pg_catalog.<>) 0;
	IF others IS NOT NULL AND NOT fire_triggers THEN
		RAISE EXCEPTION 'partitions of "%" have UPDATE triggers of their own: %', rel, others
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Adopting updates every row that predates track(), changing no value, and they would run for each.',
				  HINT = 'Pass fire_triggers => true if they do nothing to a row whose values do not change.';
	END IF;
	-- the leaf partitions one after the other
	FOR leaf IN
		SELECT rel WHERE (SELECT c.relkind FROM pg_catalog.pg_class c
						  WHERE c.oid OPERATOR(pg_catalog.=) rel) OPERATOR(pg_catalog.=) 'r'
		UNION ALL
		SELECT x.p FROM ec_feed._partitions(rel) AS x(p)
		JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) x.p
		WHERE c.relkind OPERATOR(pg_catalog.=) 'r'
	LOOP
		first := 0;
		pages := pg_catalog.pg_relation_size(leaf) OPERATOR(pg_catalog./)
			pg_catalog.current_setting('block_size')::bigint;
		WHILE first OPERATOR(pg_catalog.<) pages LOOP
			tries := 0;
			LOOP
				SELECT t.history_since INTO since FROM ec_feed.tracked_rel t
				WHERE t.relid OPERATOR(pg_catalog.=) rel;
				BEGIN
					EXECUTE pg_catalog.format('UPDATE ONLY %s SET ec_version = 0 '
						'WHERE ctid OPERATOR(pg_catalog.>=) $1 AND ctid OPERATOR(pg_catalog.<) $2 '
						'AND ec_version OPERATOR(pg_catalog.<) $3', leaf)
						USING pg_catalog.format('(%s,0)', first)::pg_catalog.tid,
							  pg_catalog.format('(%s,0)', first OPERATOR(pg_catalog.+) batch_pages)::pg_catalog.tid,
							  since;
					GET DIAGNOSTICS n = ROW_COUNT;
					EXIT;
				EXCEPTION WHEN deadlock_detected OR serialization_failure THEN
					tries := tries OPERATOR(pg_catalog.+) 1;
					IF tries OPERATOR(pg_catalog.>=) 5 THEN
						RAISE;
					END IF;
				END;
			END LOOP;
			total := total OPERATOR(pg_catalog.+) n;
			COMMIT;
			first := first OPERATOR(pg_catalog.+) batch_pages;
		END LOOP;
	END LOOP;
	RAISE NOTICE 'ec_feed.adopt: % rows of "%" got versions of their own', total, rel;
END;
$$;

-- 0.2.0's body, plus: an ALTER TABLE of a partition (a trigger's clone
-- disabled, say) moves the history_since of the tracked table above it.
CREATE OR REPLACE FUNCTION ec_feed._schema_changed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE ec_feed.tracked_rel t SET history_since = ec_feed._draw_version()
	WHERE t.relid = ANY (ARRAY(SELECT c.objid::regclass FROM pg_event_trigger_ddl_commands() c
							   WHERE c.classid = 'pg_class'::regclass
							   UNION
							   -- (no rows for a table that is no partition)
							   SELECT a.relid FROM pg_event_trigger_ddl_commands() c
							   CROSS JOIN LATERAL pg_partition_ancestors(c.objid::regclass) a
							   WHERE c.classid = 'pg_class'::regclass));
END;
$$;

------------------------------------------------------------------------
-- logical replication subscribers: TRUNCATE
------------------------------------------------------------------------

-- The TRUNCATE guard fires in every session_replication_role (ENABLE
-- ALWAYS), like the row triggers: on a subscriber the apply worker runs as
-- replica, and a TRUNCATE it replicates is recorded (op truncate), never
-- refused (src/track.c). track() calls _partition_guards(rel, true) right
-- after it created the table's own guard: that now sets the table's guard
-- and every partition's to fire always (partitions created or attached
-- later get theirs in src/partddl.c). A guard disabled or set to one role
-- by hand is set back, as track() does with the stamp trigger.
CREATE OR REPLACE FUNCTION ec_feed._partition_guards(rel regclass, add boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p regclass;
	has boolean;
BEGIN
	FOR p IN SELECT x.p FROM ec_feed._partitions(rel) AS x(p) LOOP
		has := EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = p
					   AND g.tgname = 'zz_ec_feed_truncate_guard');
		IF add AND NOT has THEN
			EXECUTE format('CREATE TRIGGER zz_ec_feed_truncate_guard BEFORE TRUNCATE ON %s '
						   'FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard()', p);
		ELSIF NOT add AND has THEN
			EXECUTE format('DROP TRIGGER zz_ec_feed_truncate_guard ON %s', p);
		END IF;
	END LOOP;
	IF add THEN
		-- also when session_replication_role = replica (logical replication apply)
		FOR p IN SELECT g.tgrelid::regclass FROM pg_trigger g
				 WHERE g.tgrelid IN (SELECT rel UNION ALL SELECT x.p FROM ec_feed._partitions(rel) AS x(p))
				   AND g.tgname = 'zz_ec_feed_truncate_guard' AND g.tgenabled <> 'A'
				 ORDER BY 1 LOOP
			EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_ec_feed_truncate_guard', p);
		END LOOP;
	END IF;
END;
$$;
COMMENT ON FUNCTION ec_feed._partition_guards(regclass, boolean) IS
'Internal (track, untrack, untrack_all): puts the TRUNCATE guard on every partition below a partitioned table, or removes it; when it puts them, it makes them and the table''s own guard fire in every session_replication_role.';

COMMENT ON FUNCTION ec_feed.truncate_guard() IS
'Trigger function of zz_ec_feed_truncate_guard: refuses TRUNCATE of a tracked table unless its owner set ec_feed.allow_truncate; an allowed TRUNCATE is recorded as one change with op truncate, and so is a replicated one (session_replication_role = replica, e.g. on a logical replication subscriber), which is never refused.';

-- The guards of the tables tracked before this version fire on origin
-- only: set to fire always too. ec_feed_schema_changed is held back
-- meanwhile: it would move each table's history_since, though no change of
-- theirs goes unrecorded by this.
DO $$
DECLARE
	g record;
	schema_changed "char";
BEGIN
	SELECT e.evtenabled INTO schema_changed FROM pg_catalog.pg_event_trigger e
	WHERE e.evtname OPERATOR(pg_catalog.=) 'ec_feed_schema_changed';
	IF schema_changed IS DISTINCT FROM 'D' THEN
		ALTER EVENT TRIGGER ec_feed_schema_changed DISABLE;
	END IF;
	FOR g IN SELECT t.tgrelid::pg_catalog.regclass AS rel FROM pg_catalog.pg_trigger t
			 WHERE t.tgname OPERATOR(pg_catalog.=) 'zz_ec_feed_truncate_guard'
			   AND t.tgfoid OPERATOR(pg_catalog.=) 'ec_feed.truncate_guard()'::pg_catalog.regprocedure
			   AND t.tgenabled OPERATOR(pg_catalog.=) 'O'
			 ORDER BY t.tgrelid LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_ec_feed_truncate_guard', g.rel);
	END LOOP;
	IF schema_changed = 'O' THEN
		ALTER EVENT TRIGGER ec_feed_schema_changed ENABLE;
	ELSIF schema_changed = 'R' THEN
		ALTER EVENT TRIGGER ec_feed_schema_changed ENABLE REPLICA;
	ELSIF schema_changed = 'A' THEN
		ALTER EVENT TRIGGER ec_feed_schema_changed ENABLE ALWAYS;
	END IF;
END;
$$;

-- the feed's edges: track(history => false) records an untrack
--
-- A table whose history is switched off leaves the feed as by untrack():
-- consumers get a change with op untrack (ec_feed._record_untrack, which
-- takes ACCESS EXCLUSIVE first, as untrack() does, and records only while
-- the table records history). The one definition of track() in 0.3.0:
-- 0.2.0's body, plus the partitioned tables' checks (_check_partitioning,
-- _partition_guards) and that one statement, put where the lines of the
-- errors below it stay.
CREATE OR REPLACE FUNCTION ec_feed.track(rel regclass, history boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keys name[];
	kind "char";
	immediate boolean;
	nondet name;
BEGIN
	IF rel IS NULL THEN
		RAISE EXCEPTION 'rel must not be NULL'
			USING ERRCODE = 'null_value_not_allowed',
				  DETAIL = 'ec_feed.track() needs the table to track.',
				  HINT = 'Pass the table, e.g. ec_feed.track(''items'').';
	END IF;
	SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = rel;
	IF kind IS DISTINCT FROM 'r' AND kind IS DISTINCT FROM 'p' THEN
		RAISE EXCEPTION 'cannot track "%"', rel
			USING ERRCODE = 'wrong_object_type',
				  DETAIL = 'Only ordinary and partitioned tables can be tracked.',
				  HINT = 'Track the table that stores the rows.';
	END IF;
	PERFORM ec_feed._check_owner(rel);
	-- history switched off: the feed gets an untrack change, as from untrack()
	PERFORM ec_feed._record_untrack(rel) WHERE NOT history AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_record');
	-- a partition of a tracked tree is not tracked on its own, nor a tree one
	-- of whose partitions is; in functions of their own, so that the lines of
	-- this one (shown in the CONTEXT of its errors) stay where 0.2.0 had them
	PERFORM ec_feed._check_partitioning(rel, kind);

	SELECT array_agg(a.attname ORDER BY k.ord), bool_and(i.indimmediate),
		   min(a.attname) FILTER (WHERE NOT co.collisdeterministic)
	INTO keys, immediate, nondet
	FROM pg_index i
	CROSS JOIN LATERAL unnest(i.indkey, i.indcollation) WITH ORDINALITY AS k(attnum, coll, ord)
	JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
	LEFT JOIN pg_collation co ON co.oid = k.coll
	WHERE i.indrelid = rel AND i.indisprimary AND k.ord <= i.indnkeyatts;
	IF keys IS NULL THEN
		RAISE EXCEPTION 'table "%" has no primary key', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'The feed, tokens and conditional writes identify rows by their primary key.',
				  HINT = 'Add a primary key, then call ec_feed.track() again.';
	END IF;
	-- PostgreSQL does not treat a deferrable key as the table's identity
	-- (the row triggers would find no primary key)
	IF NOT immediate THEN
		RAISE EXCEPTION 'the primary key of "%" is deferrable', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'ec_feed identifies rows by a primary key that is checked immediately; a DEFERRABLE one may hold duplicates until commit.',
				  HINT = 'Recreate the primary key without DEFERRABLE, then call ec_feed.track() again.';
	END IF;
	-- keys are compared as JSON text (history, tokens, the re-insert check):
	-- two keys one collation calls equal would be two rows there
	IF nondet IS NOT NULL THEN
		RAISE EXCEPTION 'primary key column "%" of "%" has a nondeterministic collation', nondet, rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'ec_feed compares keys by their exact text; a nondeterministic (e.g. case-insensitive) collation lets different texts be the same key.',
				  HINT = 'Give the key column a deterministic collation (e.g. COLLATE "C"), then call ec_feed.track() again.';
	END IF;
	IF keys && ARRAY['ec_version', 'ec_xid']::name[] THEN
		RAISE EXCEPTION 'the primary key of "%" uses a managed column', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'ec_version and ec_xid are written by ec_feed and cannot be part of the key.',
				  HINT = 'Use a primary key of other columns.';
	END IF;

	-- rows get versions no token read before can name: renumbered, or, when
	-- the column is new, one fresh version for all (a constant: no rewrite)
	PERFORM ec_feed._renumber_tree(rel, kind);
	PERFORM ec_feed._add_managed_column(rel, 'ec_version', 'bigint'::regtype, ec_feed._draw_version()::text);
	PERFORM ec_feed._add_managed_column(rel, 'ec_xid', 'xid8'::regtype, '0');

	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_stamp') THEN
		EXECUTE format('CREATE TRIGGER zz_ec_feed_stamp BEFORE INSERT OR UPDATE OR DELETE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION ec_feed.stamp()', rel);
		-- also when session_replication_role = replica (logical replication apply)
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_ec_feed_stamp', rel);
	ELSIF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_stamp'
				  AND tgenabled <> 'A') THEN
		-- disabled or set to fire in one replication role by hand: every write
		-- must be stamped again (the rows were renumbered above)
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_ec_feed_stamp', rel);
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_truncate_guard') THEN
		EXECUTE format('CREATE TRIGGER zz_ec_feed_truncate_guard BEFORE TRUNCATE ON %s '
					   'FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard()', rel);
	END IF;
	-- statement triggers are not cloned: each partition gets its own guard
	-- (CREATE TRIGGER and ENABLE ALWAYS of the row triggers reach the clones)
	PERFORM ec_feed._partition_guards(rel, true);
	IF history AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_record') THEN
		EXECUTE format('CREATE TRIGGER zz_ec_feed_record AFTER INSERT OR UPDATE OR DELETE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION ec_feed.record()', rel);
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_ec_feed_record', rel);
	ELSIF history AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_record'
							  AND tgenabled <> 'A') THEN
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_ec_feed_record', rel);
	ELSIF NOT history AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_record') THEN
		EXECUTE format('DROP TRIGGER zz_ec_feed_record ON %s', rel);
	END IF;

	-- history_since (a fresh version, drawn now: CREATE TRIGGER has locked
	-- out every writer) is new for a new registration (after _renumber too)
	-- and when history is switched on; changes before it were not recorded
	INSERT INTO ec_feed.tracked_rel AS t (relid, key_columns, history)
	VALUES (rel, keys, history)
	ON CONFLICT (relid) DO UPDATE
		SET key_columns = excluded.key_columns, history = excluded.history,
			history_since = CASE WHEN excluded.history AND NOT t.history
								 THEN excluded.history_since ELSE t.history_since END
		WHERE (t.key_columns, t.history) IS DISTINCT FROM (excluded.key_columns, excluded.history);
END;
$$;
