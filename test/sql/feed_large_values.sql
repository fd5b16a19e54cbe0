-- Large values in the feed: read() returns them whole, and one stored
-- compressed inline in the history is passed on still compressed (whoever
-- reads it decompresses it; a count(*) or a skipped column never does), as
-- a value fetched from the history's TOAST table is.
--
-- How it was before: every value was decompressed into the result, so a
-- 3 kB document that the history holds in about 100 bytes took 3 kB in
-- read()'s tuplestore (its spill to a temporary file beyond work_mem too).
CREATE TABLE flv_docs (id int PRIMARY KEY, body text);
SELECT ec_feed.track('flv_docs');
SELECT ec_feed.cursor_now() AS flv_c \gset
INSERT INTO flv_docs VALUES
	(1, repeat(md5('1'), 100)),		-- compressed, inline
	(2, (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 3000) i)),	-- out of line
	(3, 'small');
SELECT r.key, length(r.data ->> 'body') AS body_length,
	   md5(r.data ->> 'body') = md5(d.body) AS body_whole,
	   pg_column_size(r.data) < octet_length(d.body) AS passed_compressed
FROM ec_feed.read(:'flv_c', 10, ARRAY['flv_docs'::regclass]) r
JOIN flv_docs d ON d.id = (r.key ->> 'id')::int
ORDER BY r.version;
-- (the out-of-line value, md5 text, does not compress: it is stored as it is)
-- whole through the output function too, as COPY and a client read them
SELECT r.key, md5(r.data::text) = md5(jsonb_build_object('id', d.id, 'body', d.body)::text) AS data_whole
FROM ec_feed.read(:'flv_c', 10, ARRAY['flv_docs'::regclass]) r
JOIN flv_docs d ON d.id = (r.key ->> 'id')::int
ORDER BY r.version;
SELECT ec_feed.untrack('flv_docs');
DROP TABLE flv_docs;
