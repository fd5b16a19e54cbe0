-- retention_min counts from the moment a segment was seen frozen, not from
-- the start of the transaction that saw it: a prune() late in a long
-- transaction must not date the freeze back (else a segment frozen a moment
-- ago is dropped at once, and a cursor taken just before gets EC001 well
-- within retention_min). In a database of its own: pruning drops history.
CREATE DATABASE ec_prune_clock;
\c ec_prune_clock
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
SET ec_feed.segment_rows = 1;
SET ec_feed.retention_min = '3s';
CREATE TABLE prc (id int PRIMARY KEY, v int);
SELECT ec_feed.track('prc');
SELECT ec_feed.prune();				-- a spare segment
INSERT INTO prc VALUES (1, 1);		-- into segment 0
SELECT ec_feed.prune();				-- segment 0 closed
-- a transaction that began 3.5 s before its prune() sees segment 0 frozen
BEGIN;
SELECT pg_sleep(3.5);
SELECT ec_feed.prune();
COMMIT;
SELECT id, frozen_at IS NOT NULL AS frozen,
	   frozen_at > clock_timestamp() - interval '3s' AS frozen_less_than_3s_ago
FROM ec_feed.segment WHERE id = 0;
-- right after: segment 0 froze less than retention_min ago, it stays
SELECT ec_feed.prune() AS removed;
SELECT count(*) AS segment_0_kept FROM ec_feed.segment WHERE id = 0;
\c contrib_regression
DROP DATABASE ec_prune_clock;
