-- ec_feed 0.1.0 -> 0.2.0: upgrade script
-- A new installation runs ec_feed--0.1.0.sql and then this file.
\echo Use "ALTER EXTENSION ec_feed UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------
-- security (issue 13)
------------------------------------------------------------------------

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

-- read(rels => ...) scans each named table's changes in version order
-- through this index, instead of every table's changes in the range (14.4).
CREATE INDEX history_rel_seq_idx ON ec_feed.history (relid, seq);

------------------------------------------------------------------------
-- tokens and visibility (issue 16)
------------------------------------------------------------------------
