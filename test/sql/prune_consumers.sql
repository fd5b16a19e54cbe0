-- Retention for registered consumers: a segment a consumer still needs is
-- kept (retention_min 0), and dropped once the consumer acks past it; a
-- consumer whose position did not move for retention_max is dropped by the
-- pruning, its history is then removed and its cursor gets EC001; acking
-- that cursor is EC001 too. In a database of its own, like prune.sql.
CREATE DATABASE ec_prune_cons_test;
\c ec_prune_cons_test
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
SET ec_feed.retention_min = 0;
SET ec_feed.segment_rows = 1;
CREATE TABLE pc (id int PRIMARY KEY, v int);
SELECT ec_feed.track('pc');
SELECT ec_feed.prune();
SELECT ec_feed.register_consumer('pc_live') IS NOT NULL AS registered;
SELECT ec_feed.register_consumer('pc_dead') IS NOT NULL AS registered;
INSERT INTO pc SELECT g, 0 FROM generate_series(1, 4) g;
-- rotate, then freeze the inserts' segment: both consumers need it, it stays
SELECT ec_feed.prune();
SELECT ec_feed.prune();
SELECT id, frozen_at IS NOT NULL AS frozen, row_count FROM ec_feed.segment ORDER BY id;
SELECT min(id) AS seg FROM ec_feed.segment WHERE row_count = 4 \gset

-- the live consumer reads and acks everything; the dead one does not
SELECT cursor AS live_end FROM ec_feed.read((SELECT cursor FROM ec_feed.consumers WHERE name = 'pc_live'), 100)
WHERE op = 'progress' \gset
SELECT ec_feed.ack('pc_live', :'live_end');
SELECT ec_feed.prune() AS removed_while_dead_needs_it;
SELECT count(*) AS inserts_segment_kept FROM ec_feed.segment WHERE id = :seg;

-- retention_max: the dead consumer has not moved for longer: dropped, and
-- then nothing holds the inserts' segment
SET ec_feed.retention_max = '1s';
SELECT pg_sleep(1.2);
-- the live one acks again (its position did not move: acked_at renews at
-- most once a minute, so it is dropped as well unless it moves)
UPDATE pc SET v = 1 WHERE id = 1;
SELECT cursor AS live_end2 FROM ec_feed.read(:'live_end', 100) WHERE op = 'progress' \gset
SELECT ec_feed.ack('pc_live', :'live_end2');
SELECT ec_feed.prune() AS removed;
SELECT name, state, drop_reason IS NOT NULL AS has_reason FROM ec_feed.consumers ORDER BY name;
SELECT count(*) AS inserts_segment_left FROM ec_feed.segment WHERE id = :seg;

-- the dead consumer's cursor needs what was removed
\set VERBOSITY terse
SELECT count(*) FROM ec_feed.read((SELECT cursor FROM ec_feed.consumers WHERE name = 'pc_dead'), 100);
SELECT ec_feed.ack('pc_dead', (SELECT cursor FROM ec_feed.consumers WHERE name = 'pc_dead'));
\set VERBOSITY default
-- the live consumer goes on
SELECT op, key FROM ec_feed.read(:'live_end2', 100) WHERE op <> 'progress';
\c contrib_regression
DROP DATABASE ec_prune_cons_test;
