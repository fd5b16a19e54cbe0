-- ec_feed 0.1.0: install script
\echo Use "CREATE EXTENSION ec_feed" to load this file. \quit

------------------------------------------------------------------------
-- §1 tracking
------------------------------------------------------------------------

-- every role may call the functions; each checks the caller's rights itself
GRANT USAGE ON SCHEMA ec_feed TO PUBLIC;

-- One sequence hands out every version (and orders the feed). CACHE 1, so
-- that its last value is the same for every backend: the feed scan reads it.
CREATE SEQUENCE ec_feed.change_seq CACHE 1;
-- the feed reads last_value through pg_sequence_last_value(), which needs this
GRANT SELECT ON SEQUENCE ec_feed.change_seq TO PUBLIC;
-- versions must keep increasing across a dump and restore
SELECT pg_catalog.pg_extension_config_dump('ec_feed.change_seq', '');

CREATE TABLE ec_feed.tracked_rel (
	relid regclass PRIMARY KEY,
	key_columns name[] NOT NULL,
	history boolean NOT NULL,
	tracked_at timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('ec_feed.tracked_rel', '');
-- track() and untrack() run as the caller (ALTER TABLE checks ownership);
-- the policy lets a role register only the tables it owns.
ALTER TABLE ec_feed.tracked_rel ENABLE ROW LEVEL SECURITY;
CREATE POLICY tracked_rel_read ON ec_feed.tracked_rel FOR SELECT USING (true);
CREATE POLICY tracked_rel_owner ON ec_feed.tracked_rel FOR ALL
	USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = relid), 'USAGE'))
	WITH CHECK (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = relid), 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON ec_feed.tracked_rel TO PUBLIC;

-- Every change of a tracked table. Written by the C triggers only; read by
-- ec_feed.read() after its own privilege checks. Not readable by PUBLIC.
CREATE TABLE ec_feed.history (
	seq bigint NOT NULL,		-- the change's version, from change_seq
	xid xid8 NOT NULL,			-- top-level transaction that wrote it
	relid oid NOT NULL,
	op "char" NOT NULL,			-- i, u, d
	key jsonb NOT NULL,
	data jsonb NOT NULL,		-- row after insert/update, before delete
	changed text[],				-- update: columns whose value changed
	CONSTRAINT history_pkey PRIMARY KEY (seq)
);
CREATE INDEX history_xid_seq_idx ON ec_feed.history (xid, seq);
CREATE INDEX history_rel_key_idx ON ec_feed.history (relid, key, seq);
REVOKE ALL ON ec_feed.history FROM PUBLIC;

-- a dropped table leaves its row behind (no event trigger); hide it
CREATE VIEW ec_feed.tracked AS
	SELECT t.relid AS rel, t.key_columns, t.history, t.tracked_at
	FROM ec_feed.tracked_rel t
	WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.relid);
GRANT SELECT ON ec_feed.tracked TO PUBLIC;

CREATE FUNCTION ec_feed.stamp() RETURNS trigger
	AS 'MODULE_PATHNAME', 'ec_feed_stamp' LANGUAGE C;
CREATE FUNCTION ec_feed.record() RETURNS trigger
	AS 'MODULE_PATHNAME', 'ec_feed_record' LANGUAGE C;
CREATE FUNCTION ec_feed.truncate_guard() RETURNS trigger
	AS 'MODULE_PATHNAME', 'ec_feed_truncate_guard' LANGUAGE C;

CREATE FUNCTION ec_feed.track(rel regclass, history boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keys name[];
	kind "char";
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

	SELECT array_agg(a.attname ORDER BY k.ord) INTO keys
	FROM pg_index i
	CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
	JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
	WHERE i.indrelid = rel AND i.indisprimary;
	IF keys IS NULL THEN
		RAISE EXCEPTION 'table "%" has no primary key', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'The feed, tokens and conditional writes identify rows by their primary key.',
				  HINT = 'Add a primary key, then call ec_feed.track() again.';
	END IF;
	IF keys && ARRAY['ec_version', 'ec_xid']::name[] THEN
		RAISE EXCEPTION 'the primary key of "%" uses a managed column', rel
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'ec_version and ec_xid are written by ec_feed and cannot be part of the key.',
				  HINT = 'Use a primary key of other columns.';
	END IF;

	PERFORM ec_feed._add_managed_column(rel, 'ec_version', 'bigint'::regtype, '0');
	PERFORM ec_feed._add_managed_column(rel, 'ec_xid', 'xid8'::regtype, '0');

	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_stamp') THEN
		EXECUTE format('CREATE TRIGGER zz_ec_feed_stamp BEFORE INSERT OR UPDATE OR DELETE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION ec_feed.stamp()', rel);
		-- also when session_replication_role = replica (logical replication apply)
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
	ELSIF NOT history AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'zz_ec_feed_record') THEN
		EXECUTE format('DROP TRIGGER zz_ec_feed_record ON %s', rel);
	END IF;

	INSERT INTO ec_feed.tracked_rel AS t (relid, key_columns, history)
	VALUES (rel, keys, history)
	ON CONFLICT (relid) DO UPDATE
		SET key_columns = excluded.key_columns, history = excluded.history
		WHERE (t.key_columns, t.history) IS DISTINCT FROM (excluded.key_columns, excluded.history);
END;
$$;

CREATE FUNCTION ec_feed.untrack(rel regclass, drop_columns boolean DEFAULT false)
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

CREATE FUNCTION ec_feed._check_owner(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT pg_catalog.pg_has_role((SELECT relowner FROM pg_class WHERE oid = rel), 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', rel
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Tracking adds columns and triggers, which only the table''s owner may do.',
				  HINT = 'Ask the owner of the table to call this function.';
	END IF;
END;
$$;

CREATE FUNCTION ec_feed._add_managed_column(rel regclass, col name, typ regtype, init text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	have regtype;
BEGIN
	SELECT a.atttypid::regtype INTO have FROM pg_attribute a
	WHERE a.attrelid = rel AND a.attname = col AND NOT a.attisdropped;
	IF have IS NULL THEN
		-- existing rows get version 0 and xid 0 without a table rewrite
		EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s NOT NULL DEFAULT %L', rel, col, typ, init);
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', rel, col);
	ELSIF have <> typ THEN
		RAISE EXCEPTION 'column "%" of "%" has type %, not %', col, rel, have, typ
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'ec_feed manages this column and needs it to have its own type.',
				  HINT = 'Rename or drop the column, then call ec_feed.track() again.';
	ELSE
		-- the trigger writes it (a default left by untrack() would hide a missing trigger)
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL, ALTER COLUMN %I DROP DEFAULT',
					   rel, col, col);
	END IF;
END;
$$;

------------------------------------------------------------------------
-- §2 the change feed
------------------------------------------------------------------------

CREATE FUNCTION ec_feed.read(after text DEFAULT NULL, max_rows int DEFAULT 1000, rels regclass[] DEFAULT NULL)
RETURNS TABLE(cursor text, op text, rel regclass, key jsonb, version bigint, xid xid8, data jsonb, changed text[])
AS 'MODULE_PATHNAME', 'ec_feed_read'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION ec_feed.cursor_now() RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_cursor_now'
LANGUAGE C STRICT VOLATILE;

------------------------------------------------------------------------
-- §3 tokens and conditional writes
------------------------------------------------------------------------

-- The token of a row as read: SELECT t.*, ec_feed.row_token(t) FROM tab t.
CREATE FUNCTION ec_feed.row_token(r anyelement) RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_row_token'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

-- The current token of the row with this primary key (as the caller sees it), NULL if none.
CREATE FUNCTION ec_feed.token(rel regclass, key jsonb) RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_token'
LANGUAGE C STRICT STABLE;

CREATE TYPE ec_feed.write_result AS (
	status text,			-- applied, merged, conflict, not_found, deleted
	token text,				-- the row's newest token after the call
	current jsonb,			-- the row now: after the write, or the conflicting state
	requested jsonb,		-- the changes asked for, in the form current uses
	conflicts text[],		-- columns changed since the token to another value
	changed_since text[]	-- every column changed since the token; NULL if unknown
);

-- Run as the caller (not SECURITY DEFINER): privileges, RLS and triggers apply.
CREATE FUNCTION ec_feed.update_if(rel regclass, key jsonb, token text, changes jsonb,
								  merge boolean DEFAULT true)
RETURNS ec_feed.write_result
AS 'MODULE_PATHNAME', 'ec_feed_update_if'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION ec_feed.delete_if(rel regclass, key jsonb, token text)
RETURNS ec_feed.write_result
AS 'MODULE_PATHNAME', 'ec_feed_delete_if'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

------------------------------------------------------------------------
-- §4 read-your-writes
------------------------------------------------------------------------

-- Is the write a token names visible to a new snapshot on this server?
CREATE FUNCTION ec_feed.token_status(token text) RETURNS text
AS 'MODULE_PATHNAME', 'ec_feed_token_status'
LANGUAGE C STRICT VOLATILE;

-- Returns once the write is visible, else EC003 with a JSON errdetail. Waits
-- up to wait_ms (publishing no xmin) only when it is a statement of its own
-- in READ COMMITTED; a NULL token names no write.
CREATE FUNCTION ec_feed.require_visible(token text, wait_ms int DEFAULT 0) RETURNS void
AS 'MODULE_PATHNAME', 'ec_feed_require_visible'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

-- A row by key as the caller may read it: found / not_found / not_consistent.
CREATE FUNCTION ec_feed.get(rel regclass, key jsonb, min_token text DEFAULT NULL)
RETURNS TABLE(status text, data jsonb, token text)
AS 'MODULE_PATHNAME', 'ec_feed_get'
LANGUAGE C CALLED ON NULL INPUT VOLATILE ROWS 1;
