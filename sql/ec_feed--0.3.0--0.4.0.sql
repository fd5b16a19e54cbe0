-- ec_feed 0.3.0 -> 0.4.0
\echo Use "ALTER EXTENSION ec_feed UPDATE TO '0.4.0'" to load this file. \quit

------------------------------------------------------------------------
-- segment 0's key index on the key's hash, where nothing can be writing
------------------------------------------------------------------------

-- Every segment made from 0.3.0 on indexes (relid, hash of the key, seq);
-- segment 0 (ec_feed.history) kept (relid, key, seq), because a backend
-- that still runs the 0.2.0 library could be writing into it and cannot
-- compute the hash. So a new install paid jsonb comparisons on every write,
-- and refused a key above about 2.7 kB, until its first rotation.
--
-- An empty segment 0 in a database where no table is tracked has no writer
-- of any library: a new install, or one that never tracked a table. There
-- the index is rebuilt (on no rows). Anywhere else it stays as it is, until
-- pruning drops the segment (which it may have done already). Tracking a
-- table waits for this transaction (SHARE on the registry), and so does a
-- writer already inside segment 0.
DO $$
BEGIN
	IF pg_catalog.to_regclass('ec_feed.history') IS NULL THEN
		RETURN;
	END IF;
	LOCK TABLE ec_feed.tracked_rel IN SHARE MODE;
	LOCK TABLE ec_feed.history IN ACCESS EXCLUSIVE MODE;
	IF EXISTS (SELECT FROM ec_feed.tracked_rel) OR EXISTS (SELECT FROM ec_feed.history)
		OR pg_catalog.pg_get_indexdef('ec_feed.history_rel_key_idx'::regclass)
			LIKE '%jsonb_hash_extended%' THEN
		RETURN;
	END IF;
	DROP INDEX ec_feed.history_rel_key_idx;
	-- the seed of ec_key_hash() (rowjson.c), as in _create_segment()
	CREATE INDEX history_rel_key_idx ON ec_feed.history
		(relid, pg_catalog.jsonb_hash_extended(key, 111477477041529), seq);
END;
$$;
