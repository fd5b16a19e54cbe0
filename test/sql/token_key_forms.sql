-- The forms a key's values may take (issue 16.7): every function that takes
-- a key converts it as jsonb_populate_record() does, so token(), get(),
-- update_if() and delete_if() agree. For an integer column a JSON number
-- written with a fraction part or a scale ({"id": 1.0}, 10e-1) is not
-- integer input (EC005 naming the column; 22P02 from
-- jsonb_populate_record() itself), while 1e0 and 0.1e1 are the number 1 and "1" is
-- read as integer input: the number's text as numeric_out() shows it is
-- what the integer type reads.

CREATE FUNCTION tkf_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE q INTO r;
	RETURN r;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE TABLE tkf_items (id int PRIMARY KEY, v text);
SELECT ec_feed.track('tkf_items');
INSERT INTO tkf_items VALUES (1, 'one');
SELECT ec_feed.row_token(t) AS t1 FROM tkf_items t \gset

SELECT k AS key,
	   tkf_try(format('SELECT ec_feed.token(''tkf_items'', %L) = %L', k, :'t1')) AS token,
	   tkf_try(format('SELECT status FROM ec_feed.get(''tkf_items'', %L, %L)', k, :'t1')) AS get,
	   tkf_try(format('SELECT status FROM ec_feed.update_if(''tkf_items'', %L, %L, ''{"v": "x"}'', merge => false)', k, :'t1')) AS update_if,
	   tkf_try(format('SELECT status FROM ec_feed.delete_if(''tkf_items'', %L, %L)', k, :'t1')) AS delete_if,
	   tkf_try(format('SELECT (jsonb_populate_record(NULL::tkf_items, %L)).id', k)) AS populate
FROM unnest(ARRAY['{"id": 1.0}', '{"id": 10e-1}', '{"id": 1.5}', '{"id": "x"}']) k;

-- the accepted forms name the same row: the token matches, and each write
-- with the current token applies (update_if, then delete_if with its token)
SELECT k AS key,
	   ec_feed.token('tkf_items', k::jsonb) = :'t1' AS token,
	   (SELECT status FROM ec_feed.get('tkf_items', k::jsonb, :'t1')) AS get
FROM unnest(ARRAY['{"id": 1}', '{"id": 1e0}', '{"id": 0.1e1}', '{"id": "1"}', '{"id": " 1 "}']) k;
SELECT status FROM ec_feed.update_if('tkf_items', '{"id": 1e0}', :'t1', '{"v": "y"}');
SELECT status FROM ec_feed.delete_if('tkf_items', '{"id": "1"}', ec_feed.token('tkf_items', '{"id": 1}'));

SELECT ec_feed.untrack('tkf_items');
DROP TABLE tkf_items;
DROP FUNCTION tkf_try(text);
