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
