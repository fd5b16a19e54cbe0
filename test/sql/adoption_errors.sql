-- Errors an API can map (issue 15.3). A value of the changes (the request
-- body) or of the key that does not convert to its column's type is EC005,
-- naming the column and the argument, whatever PostgreSQL's own code for the
-- conversion was (22P02, 22003, 22007, 22008, 22001, a domain's 23514 or
-- 23502): a malformed token keeps 22P02, so 422 (body) and 412 (ETag) are
-- told apart by the SQLSTATE alone.

CREATE FUNCTION ad_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
	st text;
	msg text;
	det text;
BEGIN
	EXECUTE q INTO r;
	RETURN r;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN st || ': ' || msg || coalesce(' | ' || det, '');
END $$;

CREATE DOMAIN ad_pos AS int CHECK (VALUE > 0);
CREATE DOMAIN ad_nn AS text NOT NULL;
CREATE TABLE ad_items (id int PRIMARY KEY, qty int, name varchar(3), d date,
					   ts timestamptz, p ad_pos, n numeric(4,2), tags int[], nn ad_nn DEFAULT 'x',
					   m int NOT NULL DEFAULT 0);
SELECT ec_feed.track('ad_items');
INSERT INTO ad_items (id, qty, name) VALUES (1, 1, 'a');
SELECT ec_feed.row_token(t) AS t1 FROM ad_items t \gset

-- each bad value, alone and after a good one (the column named is the bad one)
SELECT c AS changes, ad_try(format('SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": 1}'', %L, %L)',
								   :'t1', c)) AS update_if
FROM unnest(ARRAY['{"qty": "abc"}', '{"qty": 1.5}', '{"qty": 99999999999}', '{"name": "abcdef"}',
				  '{"d": "2024-13-01"}', '{"d": "yesterday-ish"}', '{"ts": "2024-02-30 10:00"}',
				  '{"p": -1}', '{"n": 12345}', '{"tags": ["a"]}',
				  '{"nn": null}', '{"qty": 5, "name": "abcdef"}', '{"name": "ok", "p": 0}']) c;

-- nothing was written
SELECT id, qty, name, ec_feed.row_token(t) = :'t1' AS same_token FROM ad_items t;

-- valid values of several columns still convert together
SELECT status, current - 'ts' AS current, requested
FROM ec_feed.update_if('ad_items', '{"id": 1}', :'t1',
					   '{"qty": 5, "name": "xyz", "n": 1.5, "tags": [1, 2], "p": 3, "d": "2024-01-02"}');

-- a NOT NULL column of the table (not a domain) is checked by the UPDATE:
-- PostgreSQL's own 23502, a constraint of the write, not of the conversion
SELECT split_part(ad_try(format('SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": 1}'', %L, ''{"m": null}'')',
								ec_feed.token('ad_items', '{"id": 1}'))), ' | ', 1) AS not_null;

-- the key: EC005 from every function that takes one
SELECT f AS function, ad_try(q) AS error
FROM (VALUES ('token', 'SELECT ec_feed.token(''ad_items'', ''{"id": "x"}'')'),
			 ('get', 'SELECT status FROM ec_feed.get(''ad_items'', ''{"id": "x"}'')'),
			 ('update_if', format('SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": "x"}'', %L, ''{"qty": 1}'')', :'t1')),
			 ('delete_if', format('SELECT status FROM ec_feed.delete_if(''ad_items'', ''{"id": 99999999999}'', %L)', :'t1'))) v(f, q);

-- a composite key: the column named is the one that does not convert
CREATE TABLE ad_pairs (region text, num int, day date, v text, PRIMARY KEY (region, num, day));
SELECT ec_feed.track('ad_pairs');
INSERT INTO ad_pairs VALUES ('eu', 1, '2024-01-01', 'a');
SELECT ad_try('SELECT ec_feed.token(''ad_pairs'', ''{"region": "eu", "num": 1, "day": "2024-01-32"}'')');
SELECT ad_try('SELECT ec_feed.token(''ad_pairs'', ''{"region": "eu", "num": "one", "day": "2024-01-01"}'')');
SELECT ec_feed.token('ad_pairs', '{"region": "eu", "num": 1, "day": "2024-01-01"}')
	 = (SELECT ec_feed.row_token(p) FROM ad_pairs p) AS composite_key_ok;

-- the token's own errors keep their codes: 22P02 (malformed), EC004, and the
-- shape of the arguments 42703 / 22023 (the contract's)
SELECT f AS case, ad_try(q) AS error
FROM (VALUES ('malformed token', 'SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": 1}'', ''garbage'', ''{"qty": 1}'')'),
			 ('token of another table', format('SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": 1}'', %L, ''{"qty": 1}'')',
											   (SELECT ec_feed.row_token(p) FROM ad_pairs p))),
			 ('unknown column', format('SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": 1}'', %L, ''{"nope": 1}'')', :'t1')),
			 ('empty changes', format('SELECT status FROM ec_feed.update_if(''ad_items'', ''{"id": 1}'', %L, ''{}'')', :'t1'))) v(f, q);

-- errors of other classes raised while converting pass through as they are
-- (here a domain's check function that raises 55000)
CREATE FUNCTION ad_check(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF v = 13 THEN
		RAISE EXCEPTION 'unlucky' USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	RETURN true;
END $$;
CREATE DOMAIN ad_lucky AS int CHECK (ad_check(VALUE));
CREATE TABLE ad_luck (id int PRIMARY KEY, l ad_lucky);
SELECT ec_feed.track('ad_luck');
INSERT INTO ad_luck VALUES (1, 1);
SELECT ad_try(format('SELECT status FROM ec_feed.update_if(''ad_luck'', ''{"id": 1}'', %L, ''{"l": 13}'')',
					 ec_feed.token('ad_luck', '{"id": 1}')));
SELECT status FROM ec_feed.update_if('ad_luck', '{"id": 1}', ec_feed.token('ad_luck', '{"id": 1}'), '{"l": 7}');

DROP TABLE ad_items, ad_pairs, ad_luck;
DROP DOMAIN ad_pos;
DROP DOMAIN ad_lucky;
DROP FUNCTION ad_check(int);
DROP DOMAIN ad_nn;
DROP FUNCTION ad_try(text);
