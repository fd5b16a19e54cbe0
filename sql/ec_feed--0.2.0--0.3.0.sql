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
	closed_nxt xid8,				-- next xid, read after closed_by committed:
									-- every writer of the segment is below it
	frozen_at timestamptz,			-- first seen with every writer ended
	max_xid xid8,					-- set when frozen: the newest writer's xid,
	min_version bigint,				-- the lowest and highest version,
	max_version bigint,
	row_count bigint				-- and how many changes it holds
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

-- Runs the pruning that is due when the caller is not inside a transaction
-- block (ack, read); replaced below by the real one.
CREATE FUNCTION ec_feed._auto_prune() RETURNS void
LANGUAGE sql AS $$ SELECT $$;

------------------------------------------------------------------------
-- operations: consumers, status
------------------------------------------------------------------------

-- A registered consumer. xmin is its cursor's horizon (the oldest
-- transaction it may still need changes of): pruning keeps every segment
-- holding a change of a transaction at or above it.
CREATE TABLE ec_feed.consumer (
	name text PRIMARY KEY,
	owner regrole NOT NULL,
	cursor text NOT NULL,
	xmin xid8 NOT NULL,
	registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	acked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	dropped_at timestamptz,
	drop_reason text
);
REVOKE ALL ON ec_feed.consumer FROM PUBLIC;

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

------------------------------------------------------------------------
-- dump and restore
------------------------------------------------------------------------
