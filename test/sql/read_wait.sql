-- read(..., wait_ms): argument checks, and where it does not wait (checks
-- once): inside a larger query, in PL/pgSQL, in REPEATABLE READ. The wait
-- itself is timed in test/t/080_read_wait.pl.
CREATE TABLE rw_items (id int PRIMARY KEY);
SELECT ec_feed.track('rw_items');
SELECT ec_feed.cursor_now() AS c \gset
SELECT * FROM ec_feed.read(:'c', 10, NULL, -1);
-- NULL is 0: no wait
SELECT op FROM ec_feed.read(:'c', 10, NULL, NULL);
-- these would wait 60 s if they waited
SELECT count(*) FROM ec_feed.read(:'c', 10, NULL, 60000);
DO $$
BEGIN
	PERFORM * FROM ec_feed.read(ec_feed.cursor_now(), 10, NULL, 60000);
END;
$$;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT op FROM ec_feed.read(:'c', 10, NULL, 60000);
COMMIT;
-- a change already visible returns at once
INSERT INTO rw_items VALUES (1);
SELECT op, key FROM ec_feed.read(:'c', 10, NULL, 60000);
DROP TABLE rw_items;
