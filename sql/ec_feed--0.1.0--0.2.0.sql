-- ec_feed 0.1.0 -> 0.2.0: upgrade script
-- A new installation runs ec_feed--0.1.0.sql and then this file.
\echo Use "ALTER EXTENSION ec_feed UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------
-- security (issue 13)
------------------------------------------------------------------------

-- ec_feed.tracked_rel is writable by every role for the tables it owns (so
-- that track() can run as the caller), so its rows are claims, not facts.
-- The view lists a registered table only while it really carries ec_feed's
-- stamp trigger, and takes the key from the live primary key and history
-- from the record trigger. Names in a view are bound when it is created.
CREATE OR REPLACE VIEW ec_feed.tracked AS
	SELECT t.relid AS rel,
		(SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord)
		 FROM pg_catalog.pg_index i
		 CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		 WHERE i.indrelid = t.relid AND i.indisprimary
		   AND k.ord OPERATOR(pg_catalog.<=) i.indnkeyatts) AS key_columns,
		EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
				WHERE g.tgrelid = t.relid AND g.tgname = 'zz_ec_feed_record'
				  AND g.tgfoid = 'ec_feed.record()'::pg_catalog.regprocedure
				  AND g.tgenabled OPERATOR(pg_catalog.<>) 'D') AS history,
		t.tracked_at
	FROM ec_feed.tracked_rel t
	WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
				  WHERE g.tgrelid = t.relid AND g.tgname = 'zz_ec_feed_stamp'
					AND g.tgfoid = 'ec_feed.stamp()'::pg_catalog.regprocedure
					AND g.tgenabled OPERATOR(pg_catalog.<>) 'D');

------------------------------------------------------------------------
-- tracking and the history chain (issues 11, 14.5, 14.6, 16.4, 16.5)
------------------------------------------------------------------------

-- The history of a table records every change whose version is at least
-- history_since (catalog.c: ec_history_since()). Earlier versions may have
-- changed unrecorded (before track(), with history off, while untracked, or
-- pruned): tokens of such versions never merge. A new registration gets a
-- fresh version; tables tracked by 0.1.0 start their proven history now.
CREATE FUNCTION ec_feed._draw_version() RETURNS bigint
AS 'MODULE_PATHNAME', 'ec_feed_draw_version'
LANGUAGE C STRICT VOLATILE;
ALTER TABLE ec_feed.tracked_rel
	ADD COLUMN history_since bigint NOT NULL DEFAULT ec_feed._draw_version();

-- Each update or delete names the version of the row it replaced; inserts
-- leave it NULL. update_if/delete_if merge a stale token only over a chain of
-- entries from the token's version to the row's current one (conditional.c).
-- Entries written by 0.1.0 have none: their tokens are older than
-- history_since anyway.
ALTER TABLE ec_feed.history ADD COLUMN prev_version bigint;

-- Does the table carry ec_version while ec_feed does not keep it, i.e. while
-- it is not registered or has no stamp trigger? Its rows may then have been
-- written unstamped: untracked with drop_columns => false (an UPDATE keeps
-- the version, an INSERT gets 0), columns made by hand, a table restored
-- without its registration, the stamp trigger dropped or disabled by hand
-- (track() creates it ENABLE ALWAYS).
CREATE FUNCTION ec_feed._unstamped(rel regclass) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (SELECT 1 FROM pg_attribute a
				   WHERE a.attrelid = rel AND a.attname = 'ec_version' AND NOT a.attisdropped)
	   AND (NOT EXISTS (SELECT 1 FROM ec_feed.tracked_rel t WHERE t.relid = rel)
			OR NOT EXISTS (SELECT 1 FROM pg_trigger g
						   WHERE g.tgrelid = rel AND g.tgname = 'zz_ec_feed_stamp'
							 AND g.tgfoid = 'ec_feed.stamp()'::pg_catalog.regprocedure
							 AND g.tgenabled OPERATOR(pg_catalog.=) 'A'));
$$;

-- Called by track() before it creates the stamp trigger. The rows of a
-- table that carries the managed columns unstamped get fresh versions (and
-- this transaction as their writer), so that no token read before names a
-- version a row still has. It is no change of the data: the table's own
-- triggers and UPDATE rules are held back for the statement and then put
-- back exactly as they were (ENABLE, REPLICA or ALWAYS; disabled ones stay
-- disabled), nothing is recorded (ec_feed's triggers do not exist yet), and
-- FORCE ROW LEVEL SECURITY is lifted for it, so that the owner's UPDATE
-- reaches every row. Internal triggers stay: the foreign keys' do no work,
-- as no key changes. A registration left over is forgotten, so that track()
-- registers the table anew, with a history_since drawn after these versions:
-- a version at or after it must have a history entry, or its tokens would
-- read as rolled back (visibility.c). The lock keeps writers out from the
-- check to the end of track()'s transaction, which undoes everything if a
-- step fails.
CREATE FUNCTION ec_feed._renumber(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hold text[];
	restore text[];
BEGIN
	PERFORM ec_feed._check_owner(rel);
	IF NOT ec_feed._unstamped(rel) THEN
		RETURN;
	END IF;
	EXECUTE format('LOCK TABLE ONLY %s IN SHARE ROW EXCLUSIVE MODE', rel);
	-- a concurrent track() may have committed meanwhile (a new snapshot now)
	IF NOT ec_feed._unstamped(rel) THEN
		RETURN;
	END IF;
	PERFORM ec_feed._add_managed_column(rel, 'ec_version', 'bigint'::regtype, '0');
	PERFORM ec_feed._add_managed_column(rel, 'ec_xid', 'xid8'::regtype, '0');

	SELECT coalesce(array_agg(h.hold ORDER BY h.ord, h.name), '{}'),
		   coalesce(array_agg(h.restore ORDER BY h.ord, h.name), '{}')
	INTO hold, restore
	FROM (SELECT 1 AS ord, g.tgname AS name,
				 format('DISABLE TRIGGER %I', g.tgname) AS hold,
				 format('ENABLE %sTRIGGER %I',
						CASE g.tgenabled WHEN 'R' THEN 'REPLICA ' WHEN 'A' THEN 'ALWAYS ' ELSE '' END,
						g.tgname) AS restore
		  FROM pg_trigger g
		  WHERE g.tgrelid = rel AND NOT g.tgisinternal AND g.tgenabled <> 'D'
		  UNION ALL
		  SELECT 2, r.rulename, format('DISABLE RULE %I', r.rulename),
				 format('ENABLE %sRULE %I',
						CASE r.ev_enabled WHEN 'R' THEN 'REPLICA ' WHEN 'A' THEN 'ALWAYS ' ELSE '' END,
						r.rulename)
		  FROM pg_rewrite r
		  WHERE r.ev_class = rel AND r.ev_type = '2' AND r.ev_enabled <> 'D'
		  UNION ALL
		  SELECT 3, NULL, 'NO FORCE ROW LEVEL SECURITY', 'FORCE ROW LEVEL SECURITY'
		  FROM pg_class c
		  WHERE c.oid = rel AND c.relrowsecurity AND c.relforcerowsecurity) h;

	IF cardinality(hold) > 0 THEN
		EXECUTE format('ALTER TABLE %s %s', rel, array_to_string(hold, ', '));
	END IF;
	EXECUTE format('UPDATE ONLY %s SET ec_version = ec_feed._draw_version(), '
				   'ec_xid = pg_current_xact_id()', rel);
	IF cardinality(restore) > 0 THEN
		EXECUTE format('ALTER TABLE %s %s', rel, array_to_string(restore, ', '));
	END IF;
	DELETE FROM ec_feed.tracked_rel t WHERE t.relid = rel;
END;
$$;

-- 0.1.0's body, plus: a DEFERRABLE or nondeterministic primary key is
-- refused, history_since moves on whenever recording (re)starts, and the
-- rows of a table that carries the managed columns unstamped get fresh
-- versions first (_renumber, above).
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
	IF kind = 'p' THEN
		RAISE EXCEPTION 'cannot track partitioned table "%"', rel
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'ec_feed 0.1 tracks ordinary tables only.',
				  HINT = 'Track each partition instead.';
	END IF;
	PERFORM ec_feed._check_owner(rel);

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
	PERFORM ec_feed._renumber(rel);
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

-- 0.1.0's body, but a column already in shape is left alone: an ALTER TABLE
-- would move history_since on (below), and track() is idempotent.
CREATE OR REPLACE FUNCTION ec_feed._add_managed_column(rel regclass, col name, typ regtype, init text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	have regtype;
	in_shape boolean;
BEGIN
	SELECT a.atttypid::regtype, a.attnotnull AND NOT a.atthasdef INTO have, in_shape
	FROM pg_attribute a
	WHERE a.attrelid = rel AND a.attname = col AND NOT a.attisdropped;
	IF have IS NULL THEN
		-- existing rows get init (a constant) without a table rewrite
		EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s NOT NULL DEFAULT %L', rel, col, typ, init);
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', rel, col);
	ELSIF have <> typ THEN
		RAISE EXCEPTION 'column "%" of "%" has type %, not %', col, rel, have, typ
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'ec_feed manages this column and needs it to have its own type.',
				  HINT = 'Rename or drop the column, then call ec_feed.track() again.';
	ELSIF NOT in_shape THEN
		-- the trigger writes it (a default left by untrack() would hide a missing trigger)
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL, ALTER COLUMN %I DROP DEFAULT',
					   rel, col, col);
	END IF;
END;
$$;

-- Any ALTER TABLE of a tracked table moves its history_since on: a renamed
-- column makes the names in older entries' changed mean something else, a
-- changed type changes what "the same value" is, a disabled trigger leaves
-- changes unrecorded. Tokens from before no longer merge. SECURITY DEFINER
-- so that it works for any role that may alter a table; it only ever moves
-- the mark of a table the caller has just altered, which PostgreSQL allowed.
CREATE FUNCTION ec_feed._schema_changed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE ec_feed.tracked_rel t SET history_since = ec_feed._draw_version()
	WHERE t.relid = ANY (ARRAY(SELECT c.objid::regclass FROM pg_event_trigger_ddl_commands() c
							   WHERE c.classid = 'pg_class'::regclass));
END;
$$;
REVOKE ALL ON FUNCTION ec_feed._schema_changed() FROM PUBLIC;
CREATE EVENT TRIGGER ec_feed_schema_changed ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION ec_feed._schema_changed();

------------------------------------------------------------------------
-- the feed (issue 14)
------------------------------------------------------------------------

-- read(rels => ...) scans each named table's changes in version order
-- through this index, instead of every table's changes in the range (14.4).
CREATE INDEX history_rel_seq_idx ON ec_feed.history (relid, seq);

------------------------------------------------------------------------
-- tokens and visibility (issue 16)
------------------------------------------------------------------------

-- Keys are rendered in a canonical form, independent of the session's
-- settings (rowjson.c: ec_row_key()); tokens of rolled-back savepoints are
-- recognised (visibility.c). No SQL object changes. History rows recorded
-- by 0.1.0 keep the keys they were recorded with (README, "Keys").
