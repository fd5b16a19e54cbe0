-- When require_visible() waits (issue 15.6): as a top-level SELECT whose
-- other output columns are constants (or parameters), or as the only
-- function of a FROM clause; not inside a larger query. The write stays
-- pending in a prepared transaction; a wait of 1000 ms shows in the time the
-- statement took (a single check returns at once).

\set VERBOSITY terse
CREATE TABLE adw_items (id int PRIMARY KEY, v text);
SELECT ec_feed.track('adw_items');
BEGIN;
INSERT INTO adw_items VALUES (1, 'a');
SELECT ec_feed.row_token(t) AS tok FROM adw_items t \gset
PREPARE TRANSACTION 'adw_pending';

SELECT ec_feed.token_status(:'tok');

SELECT clock_timestamp() AS t0 \gset
SELECT ec_feed.require_visible(:'tok', 1000);
SELECT clock_timestamp() - :'t0' >= interval '1000 ms' AS alone_waited;

SELECT clock_timestamp() AS t0 \gset
SELECT ec_feed.require_visible(:'tok', 1000), 1, 'x';
SELECT clock_timestamp() - :'t0' >= interval '1000 ms' AS with_constants_waited;

SELECT clock_timestamp() AS t0 \gset
SELECT * FROM ec_feed.require_visible(:'tok', 1000);
SELECT clock_timestamp() - :'t0' >= interval '1000 ms' AS from_clause_waited;

-- inside a larger query: checked once, no wait
SELECT clock_timestamp() AS t0 \gset
SELECT ec_feed.require_visible(:'tok', 1000), now() IS NOT NULL;
SELECT clock_timestamp() - :'t0' < interval '1000 ms' AS with_an_expression_checked_once;

COMMIT PREPARED 'adw_pending';
SELECT ec_feed.require_visible(:'tok', 1000), 1;
SELECT ec_feed.token_status(:'tok');
DROP TABLE adw_items;
