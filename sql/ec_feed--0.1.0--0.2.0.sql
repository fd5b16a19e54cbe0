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
		 WHERE i.indrelid = t.relid AND i.indisprimary) AS key_columns,
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

------------------------------------------------------------------------
-- the feed (issue 14)
------------------------------------------------------------------------

------------------------------------------------------------------------
-- tokens and visibility (issue 16)
------------------------------------------------------------------------
