-- The change feed (contract section 2): ec_feed.read() and ec_feed.cursor_now(),
-- paging, per-row cursors, the rels filter, privileges, every error.
--
-- Cursors, versions and xids differ between runs (other test files write
-- before this one): none is printed. Versions are shown as their rank, xids
-- as the rank of their transaction, cursors only by what reading from them
-- returns.
\set SHOW_CONTEXT never
\set VERBOSITY default

-- SQLSTATE, message and hint of an error whose detail differs between runs
CREATE FUNCTION fd_err(q text) RETURNS TABLE (state text, message text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	state := 'no error';
	RETURN NEXT;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN NEXT;
END;
$$;

-- the versions read from a cursor (max_rows rows at most), without the progress row
CREATE FUNCTION fd_after(after text, rels regclass[], max_rows int DEFAULT 1000)
RETURNS bigint[] LANGUAGE sql AS $$
	SELECT coalesce(array_agg(version ORDER BY ord), '{}')
	FROM ec_feed.read(after, max_rows, rels) WITH ORDINALITY AS r(cursor, op, rel, key, version, xid, data, changed, ord)
	WHERE op <> 'progress'
$$;

CREATE TABLE fd_a (id int PRIMARY KEY, v text);
CREATE TABLE fd_b (id int PRIMARY KEY, v text);
SELECT ec_feed.track('fd_a'), ec_feed.track('fd_b');
SELECT ec_feed.cursor_now() AS fd_c0 \gset

-- five transactions, seven changes; one rolled back
INSERT INTO fd_a VALUES (1, 'a1'), (2, 'a2');
INSERT INTO fd_b VALUES (1, 'b1');
BEGIN;
UPDATE fd_a SET v = 'a1*' WHERE id = 1;
INSERT INTO fd_b VALUES (2, 'b2');
COMMIT;
BEGIN;
INSERT INTO fd_a VALUES (99, 'rolled back');
UPDATE fd_b SET v = 'rolled back';
ROLLBACK;
DELETE FROM fd_a WHERE id = 2;
INSERT INTO fd_a VALUES (3, 'a3');

------------------------------------------------------------------------
-- read(NULL): from the oldest change; the last row is the one progress row
------------------------------------------------------------------------
CREATE TABLE fd_full AS
SELECT ord AS n, r.* FROM ec_feed.read(NULL, 1000, '{fd_a,fd_b}')
	WITH ORDINALITY AS r(cursor, op, rel, key, version, xid, data, changed, ord);
SELECT n, op, rel, key, data, changed,
	CASE WHEN version IS NOT NULL THEN dense_rank() OVER (ORDER BY version) END AS version_rank,
	CASE WHEN xid IS NOT NULL THEN dense_rank() OVER (ORDER BY xid) END AS txn_rank,
	cursor IS NOT NULL AS has_cursor
FROM fd_full ORDER BY n;
-- versions strictly increase along the page; they are the versions the rows have
SELECT bool_and(version > prev) AS increasing
FROM (SELECT version, lag(version) OVER (ORDER BY n) AS prev FROM fd_full WHERE op <> 'progress') s;
SELECT f.key, f.version = t.ec_version AS version_of_row, f.xid = t.ec_xid AS xid_of_row
FROM fd_full f JOIN fd_a t ON f.key = jsonb_build_object('id', t.id)
WHERE f.rel = 'fd_a'::regclass AND f.op <> 'delete'
	AND f.version = (SELECT max(version) FROM fd_full g WHERE g.key = f.key AND g.rel = f.rel)
ORDER BY f.key;
-- the same as the history holds
SELECT count(*) FILTER (WHERE op <> 'progress') AS feed_rows,
	(SELECT count(*) FROM ec_feed.history WHERE relid IN ('fd_a'::regclass, 'fd_b'::regclass)) AS history_rows
FROM fd_full;
-- read from the cursor taken before the writes: the same rows
SELECT fd_after(:'fd_c0', '{fd_a,fd_b}') = fd_after(NULL, '{fd_a,fd_b}') AS same_as_from_start,
	fd_after(:'fd_c0', NULL) = fd_after(NULL, '{fd_a,fd_b}') AS rels_null_same;
-- the defaults: after NULL, max_rows 1000, rels NULL
SELECT count(*) FILTER (WHERE op = 'progress') AS progress_rows,
	(array_agg(op ORDER BY ord DESC))[1] AS last_op,
	count(*) <= 1001 AS at_most_1000_changes
FROM ec_feed.read() WITH ORDINALITY AS r(cursor, op, rel, key, version, xid, data, changed, ord);

------------------------------------------------------------------------
-- paging: follow the progress cursor; every row's cursor resumes right after it
------------------------------------------------------------------------
CREATE TABLE fd_pages (page int, n int, op text, rel regclass, key jsonb, version bigint, cursor text);
CREATE FUNCTION fd_follow(start text, page_size int, rels regclass[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	cur text := start;
	page int := 0;
	got int;
	n int := 0;
	r record;
BEGIN
	DELETE FROM fd_pages;
	LOOP
		page := page + 1;
		got := 0;
		FOR r IN SELECT * FROM ec_feed.read(cur, page_size, rels) LOOP
			IF r.op = 'progress' THEN
				cur := r.cursor;
				INSERT INTO fd_pages VALUES (page, NULL, r.op, NULL, NULL, NULL, r.cursor);
			ELSE
				got := got + 1;
				n := n + 1;
				INSERT INTO fd_pages VALUES (page, n, r.op, r.rel, r.key, r.version, r.cursor);
			END IF;
		END LOOP;
		EXIT WHEN got = 0 OR page >= 50;
	END LOOP;
END;
$$;
-- the rows of fd_pages that follow a row of it
CREATE FUNCTION fd_rest(after_page int, after_n int) RETURNS bigint[] LANGUAGE sql AS $$
	SELECT coalesce(array_agg(version ORDER BY n), '{}') FROM fd_pages
	WHERE n > coalesce(after_n, (SELECT coalesce(max(n), 0) FROM fd_pages WHERE page <= after_page))
$$;

SELECT fd_follow(:'fd_c0', 2, '{fd_a,fd_b}');
SELECT page, n, op, rel, key,
	fd_after(cursor, '{fd_a,fd_b}') = fd_rest(page, n) AS resumes_right_after
FROM fd_pages ORDER BY page, n NULLS LAST;
-- the pages together are the full read
SELECT array_agg(version ORDER BY n) = (SELECT array_agg(version ORDER BY n) FROM fd_full WHERE op <> 'progress') AS same_rows
FROM fd_pages WHERE op <> 'progress';
-- one row a page, from the start, and with the rows' cursors read one at a time
SELECT fd_follow(NULL, 1, '{fd_a,fd_b}');
SELECT page, n, op, rel, key,
	fd_after(cursor, '{fd_a,fd_b}') = fd_rest(page, n) AS resumes_right_after,
	fd_after(cursor, '{fd_a,fd_b}', 1) = (fd_rest(page, n))[1:1] AS next_one_right
FROM fd_pages ORDER BY page, n NULLS LAST;
-- reading on from the fourth row's cursor returns the fifth to the seventh
SELECT cursor AS fd_mid FROM fd_full WHERE n = 4 \gset
SELECT op, rel, key, data, changed FROM ec_feed.read(:'fd_mid', 1000, '{fd_a,fd_b}');

------------------------------------------------------------------------
-- an empty page: exactly one progress row, whose cursor works
------------------------------------------------------------------------
SELECT cursor AS fd_end FROM fd_full WHERE op = 'progress' \gset
SELECT op, cursor IS NOT NULL AS has_cursor, rel, key, version, xid, data, changed
FROM ec_feed.read(:'fd_end', 10, '{fd_a,fd_b}');
SELECT cursor AS fd_empty FROM ec_feed.read(:'fd_end', 10, '{fd_a,fd_b}') \gset
SELECT cursor AS fd_empty_all FROM ec_feed.read(:'fd_end', 10) \gset
INSERT INTO fd_a VALUES (4, 'a4');
SELECT op, rel, key, data FROM ec_feed.read(:'fd_empty', 10, '{fd_a,fd_b}');
SELECT op, rel, key, data FROM ec_feed.read(:'fd_empty_all', 10);
SELECT op, rel, key, data FROM ec_feed.read(:'fd_end', 10, '{fd_a,fd_b}');

------------------------------------------------------------------------
-- cursor_now(): only later changes
------------------------------------------------------------------------
SELECT ec_feed.cursor_now() AS fd_now \gset
SELECT op, rel, key FROM ec_feed.read(:'fd_now');
INSERT INTO fd_b VALUES (3, 'b3');
UPDATE fd_a SET v = 'a4*' WHERE id = 4;
SELECT op, rel, key, data, changed FROM ec_feed.read(:'fd_now');
-- taken by a transaction that has written: its own changes follow the cursor
BEGIN;
INSERT INTO fd_a VALUES (5, 'a5');
SELECT ec_feed.cursor_now() AS fd_own \gset
-- a read inside the writing transaction does not return its uncommitted
-- change; the cursor it returns delivers it once committed
SELECT op, rel, key FROM ec_feed.read(:'fd_now');
SELECT cursor AS fd_inside FROM ec_feed.read(:'fd_now') WHERE op = 'progress' \gset
COMMIT;
SELECT op, rel, key FROM ec_feed.read(:'fd_own');
SELECT op, rel, key FROM ec_feed.read(:'fd_inside');
-- in a REPEATABLE READ transaction (the handover itself is an isolation test)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM fd_a;
SELECT ec_feed.cursor_now() AS fd_rr \gset
COMMIT;
INSERT INTO fd_a VALUES (6, 'a6');
SELECT op, rel, key FROM ec_feed.read(:'fd_rr');

------------------------------------------------------------------------
-- rels: only the tables named
------------------------------------------------------------------------
SELECT op, rel, key FROM ec_feed.read(:'fd_c0', 1000, '{fd_b}');
SELECT op, rel, key FROM ec_feed.read(:'fd_c0', 1000, '{fd_a}') WHERE op <> 'progress';
SELECT fd_after(:'fd_c0', '{fd_b,fd_a}') = fd_after(:'fd_c0', '{fd_a,fd_b}') AS order_of_rels_irrelevant,
	fd_after(:'fd_c0', '{fd_a,fd_a,fd_b}') = fd_after(:'fd_c0', '{fd_a,fd_b}') AS duplicates_irrelevant,
	fd_after(:'fd_c0', '{fd_a,fd_b}') = fd_after(:'fd_c0', NULL) AS all_of_them;
-- an empty list: nothing but the progress row
SELECT op FROM ec_feed.read(:'fd_c0', 1000, '{}');
-- paging with a filter: small pages of one table
SELECT fd_follow(:'fd_c0', 2, '{fd_b}');
SELECT page, n, op, rel, key, fd_after(cursor, '{fd_b}') = fd_rest(page, n) AS resumes_right_after
FROM fd_pages ORDER BY page, n NULLS LAST;

------------------------------------------------------------------------
-- errors
------------------------------------------------------------------------
-- max_rows
SELECT * FROM ec_feed.read(NULL, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(NULL, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
-- rels
SELECT * FROM ec_feed.read(NULL, 10, ARRAY['fd_a', NULL]::regclass[]);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE fd_untracked (id int PRIMARY KEY);
SELECT * FROM ec_feed.read(NULL, 10, '{fd_a,fd_untracked}');
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW fd_view AS SELECT * FROM fd_a;
SELECT * FROM ec_feed.read(NULL, 10, '{fd_view}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE fd_nohist (id int PRIMARY KEY);
SELECT ec_feed.track('fd_nohist', history => false);
SELECT * FROM ec_feed.read(NULL, 10, '{fd_nohist}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(NULL, 10, '{4000000000}');
\echo :LAST_ERROR_SQLSTATE
-- malformed cursors: 22P02, with what is wrong in the detail
SELECT * FROM ec_feed.read('');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read('not a cursor!');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read('AAAAA');
\echo :LAST_ERROR_SQLSTATE
-- truncated: its first 16 characters; all but the last few
SELECT * FROM ec_feed.read(left(:'fd_end', 16));
\echo :LAST_ERROR_SQLSTATE
SELECT length(:'fd_end') > 24 AS long_enough;
SELECT * FROM ec_feed.read(left(:'fd_end', (length(:'fd_end') - 1) / 4 * 4));
\echo :LAST_ERROR_SQLSTATE
-- lengthened
SELECT * FROM ec_feed.read(:'fd_end' || 'AAAA');
\echo :LAST_ERROR_SQLSTATE
-- random bytes in the right alphabet
SELECT * FROM ec_feed.read(translate(encode(substr(sha512('fd'), 1, 45), 'base64'), '+/', '-_'));
\echo :LAST_ERROR_SQLSTATE
-- one character changed: the check value does not match
SELECT * FROM ec_feed.read(overlay(:'fd_end' PLACING
	CASE substr(:'fd_end', 12, 1) WHEN 'A' THEN 'B' ELSE 'A' END FROM 12 FOR 1));
\echo :LAST_ERROR_SQLSTATE
-- a row token is not a cursor
SELECT ec_feed.row_token(t) AS fd_token FROM fd_a t WHERE id = 1 \gset
SELECT * FROM ec_feed.read(:'fd_token');
\echo :LAST_ERROR_SQLSTATE
-- nor a cursor a token
SELECT ec_feed.token_status(:'fd_end');
\echo :LAST_ERROR_SQLSTATE

-- Forged cursors, with a valid check value, reach every check behind it.
-- A cursor is base64url (no padding) of: kind 'C', format 1,
-- the system identifier (8 bytes, little-endian), the database OID (varint),
-- the payload, and a 32-bit check value: PostgreSQL's hash_bytes_extended()
-- (Bob Jenkins' lookup3) of the bytes before it, with ec_feed's seed; this
-- port of it assumes a little-endian machine. The payload: a flags byte
-- (1: pending), the mark prev, and when pending the mark cur and the last
-- version read; a mark is the varints lo, hi - lo, nxt, nxt - xmax,
-- xmax - xmin, nxip, then each running xid as a delta from the previous (the
-- first from xmin).
CREATE FUNCTION fd_rot(x bigint, k int) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
	SELECT ((x << k) | (x >> (32 - k))) & 4294967295
$$;
CREATE FUNCTION fd_check(data bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	m constant bigint := 4294967295;
	len int := length(data);
	a bigint;
	b bigint;
	c bigint;
	pos int := 0;
	round int;
	w bigint[];
BEGIN
	a := (x'9e3779b9'::bigint + len + 3923095) & m;
	b := a;
	c := a;
	-- the seed is the first block: its high half to a, its low half to b
	a := (a + x'0065635f'::bigint) & m;
	b := (b + x'66656564'::bigint) & m;
	round := 0;
	LOOP
		IF round > 0 THEN
			-- a 12-byte block, three little-endian words
			EXIT WHEN len - pos < 12;
			w := ARRAY(SELECT get_byte(data, pos + 4 * i)::bigint
						 + (get_byte(data, pos + 4 * i + 1)::bigint << 8)
						 + (get_byte(data, pos + 4 * i + 2)::bigint << 16)
						 + (get_byte(data, pos + 4 * i + 3)::bigint << 24)
					   FROM generate_series(0, 2) i ORDER BY i);
			a := (a + w[1]) & m;
			b := (b + w[2]) & m;
			c := (c + w[3]) & m;
			pos := pos + 12;
		END IF;
		round := round + 1;
		a := (a - c) & m; a := a # fd_rot(c, 4); c := (c + b) & m;
		b := (b - a) & m; b := b # fd_rot(a, 6); a := (a + c) & m;
		c := (c - b) & m; c := c # fd_rot(b, 8); b := (b + a) & m;
		a := (a - c) & m; a := a # fd_rot(c, 16); c := (c + b) & m;
		b := (b - a) & m; b := b # fd_rot(a, 19); a := (a + c) & m;
		c := (c - b) & m; c := c # fd_rot(b, 4); b := (b + a) & m;
	END LOOP;
	-- the last 0 to 11 bytes: a gets bytes 0-3, b 4-7, c 8-10 shifted by one byte
	FOR i IN 0 .. len - pos - 1 LOOP
		IF i < 4 THEN
			a := (a + (get_byte(data, pos + i)::bigint << (8 * i))) & m;
		ELSIF i < 8 THEN
			b := (b + (get_byte(data, pos + i)::bigint << (8 * (i - 4)))) & m;
		ELSE
			c := (c + (get_byte(data, pos + i)::bigint << (8 * (i - 7)))) & m;
		END IF;
	END LOOP;
	c := c # b; c := (c - fd_rot(b, 14)) & m;
	a := a # c; a := (a - fd_rot(c, 11)) & m;
	b := b # a; b := (b - fd_rot(a, 25)) & m;
	c := c # b; c := (c - fd_rot(b, 16)) & m;
	a := a # c; a := (a - fd_rot(c, 4)) & m;
	b := b # a; b := (b - fd_rot(a, 14)) & m;
	c := c # b; c := (c - fd_rot(b, 24)) & m;
	RETURN c;
END;
$$;
-- n bytes of v, little-endian
CREATE FUNCTION fd_le(v numeric, n int) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(string_agg(set_byte('\x00'::bytea, 0, (trunc(v / 256::numeric ^ i) % 256)::int), '' ORDER BY i), '')
	FROM generate_series(0, n - 1) i
$$;
CREATE FUNCTION fd_varint(v numeric) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	out bytea := '';
BEGIN
	WHILE v >= 128 LOOP
		out := out || set_byte('\x00'::bytea, 0, (v % 128)::int + 128);
		v := trunc(v / 128);
	END LOOP;
	RETURN out || set_byte('\x00'::bytea, 0, v::int);
END;
$$;
CREATE FUNCTION fd_varints(VARIADIC v numeric[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(string_agg(fd_varint(x), '' ORDER BY i), '') FROM unnest(v) WITH ORDINALITY u(x, i)
$$;
CREATE FUNCTION fd_b64url(raw bytea) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT rtrim(translate(encode(raw, 'base64'), E'+/\n', '-_'), '=')
$$;
CREATE FUNCTION fd_unb64url(t text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
	SELECT decode(translate(t, '-_', '+/') || repeat('=', (4 - length(t) % 4) % 4), 'base64')
$$;
-- the envelope of this cluster and database around a payload
CREATE FUNCTION fd_seal(payload bytea, kind text DEFAULT 'C', format int DEFAULT 1,
	sysid numeric DEFAULT NULL, dboid numeric DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	raw bytea;
BEGIN
	raw := convert_to(kind, 'SQL_ASCII') || set_byte('\x00'::bytea, 0, format)
		|| fd_le(coalesce(sysid, (SELECT system_identifier FROM pg_control_system())::numeric), 8)
		|| fd_varint(coalesce(dboid, (SELECT oid FROM pg_database WHERE datname = current_database())::int8))
		|| payload;
	RETURN fd_b64url(raw || fd_le(fd_check(raw), 4));
END;
$$;
-- a mark: lo, hi, nxt, xmax, xmin, running xids
CREATE FUNCTION fd_mark(lo numeric, hi numeric, nxt numeric, xmax numeric, xmin numeric,
	VARIADIC xip numeric[] DEFAULT '{}') RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
	SELECT fd_varints(lo, hi - lo, nxt, nxt - xmax, xmax - xmin, cardinality(xip))
		|| coalesce((SELECT string_agg(fd_varint(d), '' ORDER BY i)
				FROM (SELECT i, x - coalesce(lag(x) OVER (ORDER BY i), xmin) AS d
					  FROM unnest(xip) WITH ORDINALITY u(x, i)) s), '')
$$;

-- the port agrees with PostgreSQL's own use of the function (hashtextextended)
SELECT bool_and(fd_check(convert_to(t, 'UTF8')) = (hashtextextended(t, x'0065635f66656564'::bigint) & 4294967295)) AS check_port_agrees
FROM (SELECT left(repeat(md5('ec'), 3), n) AS t FROM generate_series(0, 60) n) s;
-- ... and seals a real cursor's payload into that very cursor
SELECT length(fd_varint((SELECT oid FROM pg_database WHERE datname = current_database())::int8)) AS fd_dblen \gset
SELECT fd_seal(substr(r, 11 + :fd_dblen, length(r) - 14 - :fd_dblen)) = :'fd_end' AS reseals_real_cursor
FROM fd_unb64url(:'fd_end') r;
-- a forged cursor at the present: reads like cursor_now()
SELECT coalesce(pg_sequence_last_value('ec_feed.change_seq'), 0) AS fd_l,
	pg_snapshot_xmax(pg_current_snapshot())::text::numeric AS fd_x \gset
SELECT fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)) AS fd_forged \gset
SELECT fd_seal('\x01' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x) || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)
	|| fd_varint(:fd_l)) AS fd_forged_pending \gset
INSERT INTO fd_b VALUES (5, 'b5');
SELECT op, rel, key FROM ec_feed.read(:'fd_forged', 10, '{fd_a,fd_b}');
SELECT op, rel, key FROM ec_feed.read(:'fd_forged_pending', 10, '{fd_a,fd_b}');
-- well sealed, badly formed: 22P02
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x), format => 2));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x), kind => 'T'));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(fd_seal(''));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(fd_seal('\x02' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x) || '\x00'));
\echo :LAST_ERROR_SQLSTATE
-- a mark cut short
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_varints(:fd_l, 0, :fd_x)));
\echo :LAST_ERROR_SQLSTATE
-- a varint longer than 64 bits
SELECT * FROM ec_feed.read(fd_seal('\x00ffffffffffffffffff7f'));
\echo :LAST_ERROR_SQLSTATE
-- a version above the bigint range
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_mark(9223372036854775808, 9223372036854775808, :fd_x, :fd_x, :fd_x)));
\echo :LAST_ERROR_SQLSTATE
-- xmax above the next xid
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_varints(:fd_l, 0, 5, 10, 0, 0)));
\echo :LAST_ERROR_SQLSTATE
-- a running xid at or above xmax
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x - 5, :fd_x)));
\echo :LAST_ERROR_SQLSTATE
-- two equal running xids: accepted (0.1.0 made such marks while an xid was
-- being prepared; consumers stored them)
SELECT count(*) FILTER (WHERE op = 'progress') AS progress_rows
FROM ec_feed.read(fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x - 5, :fd_x - 3, :fd_x - 3)), 1, ARRAY['fd_a'::regclass]);
-- more running xids than bytes left
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_varints(:fd_l, 0, :fd_x, 0, 5, 100) || '\x01'));
\echo :LAST_ERROR_SQLSTATE
-- the second mark older than the first; the last version read beyond it
SELECT * FROM ec_feed.read(fd_seal('\x01' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)
	|| fd_mark(:fd_l, :fd_l, :fd_x - 1, :fd_x - 1, :fd_x - 1) || fd_varint(:fd_l)));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(fd_seal('\x01' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)
	|| fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x) || fd_varint(:fd_l + 1)));
\echo :LAST_ERROR_SQLSTATE
-- a pending cursor without its second mark
SELECT * FROM ec_feed.read(fd_seal('\x01' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)));
\echo :LAST_ERROR_SQLSTATE
-- foreign: EC002. Transaction ids this cluster has not handed out yet (a
-- cursor from before a restore)
SELECT * FROM ec_feed.read(fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x + 1000000, :fd_x + 1000000, :fd_x + 1000000)));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec_feed.read(fd_seal('\x01' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x)
	|| fd_mark(:fd_l, :fd_l, :fd_x + 1000000, :fd_x + 1000000, :fd_x + 1000000) || fd_varint(:fd_l)));
\echo :LAST_ERROR_SQLSTATE
-- another cluster; another database
SELECT * FROM fd_err(format('SELECT * FROM ec_feed.read(%L)',
	fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x),
			sysid => (SELECT system_identifier FROM pg_control_system())::numeric + 1)));
SELECT * FROM fd_err(format('SELECT * FROM ec_feed.read(%L)',
	fd_seal('\x00' || fd_mark(:fd_l, :fd_l, :fd_x, :fd_x, :fd_x), dboid => 1)));

-- nothing was read or changed by the errors: the feed goes on where it was
SELECT op, rel, key FROM ec_feed.read(:'fd_now', 1000, '{fd_a,fd_b}');

-- a cursor from another database: EC002
SELECT current_database() AS fd_home \gset
CREATE DATABASE fd_other;
\connect fd_other
SET client_min_messages = warning;
CREATE EXTENSION ec_feed;
RESET client_min_messages;
SELECT ec_feed.cursor_now() AS fd_foreign \gset
SELECT op FROM ec_feed.read(:'fd_foreign');
\connect :fd_home
SELECT * FROM fd_err(format('SELECT * FROM ec_feed.read(%L)', :'fd_foreign'));
SELECT * FROM fd_err(format('SELECT * FROM ec_feed.read(%L, 10, %L)', :'fd_foreign', '{fd_a}'));
DROP DATABASE fd_other;

------------------------------------------------------------------------
-- privileges
------------------------------------------------------------------------
CREATE ROLE fd_reader;
GRANT SELECT ON fd_b TO fd_reader;
-- SELECT on some columns is not enough: the feed returns whole rows
GRANT SELECT (id) ON fd_a TO fd_reader;
-- row-level security: readable rows are filtered, so the feed refuses the table
CREATE TABLE fd_rls (id int PRIMARY KEY, owner text);
SELECT ec_feed.track('fd_rls');
ALTER TABLE fd_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY fd_rls_mine ON fd_rls USING (owner = current_user);
GRANT SELECT ON fd_rls TO fd_reader;
SELECT ec_feed.cursor_now() AS fd_p0 \gset
INSERT INTO fd_rls VALUES (1, 'fd_reader'), (2, 'someone else');
INSERT INTO fd_a VALUES (7, 'a7');
INSERT INTO fd_b VALUES (7, 'b7');
-- the owner (here a superuser) reads all
SELECT op, rel, key FROM ec_feed.read(:'fd_p0');
SET ROLE fd_reader;
SELECT id, owner FROM fd_rls;
-- rels NULL: none of the rows of fd_a and fd_rls
SELECT op, rel, key FROM ec_feed.read(:'fd_p0');
SELECT op, rel, key FROM ec_feed.read(:'fd_p0', 1000, '{fd_b}');
SELECT op, rel, key FROM ec_feed.read(:'fd_p0', 1000, '{fd_a}');
\echo :LAST_ERROR_SQLSTATE
SELECT op, rel, key FROM ec_feed.read(:'fd_p0', 1000, '{fd_b,fd_rls}');
\echo :LAST_ERROR_SQLSTATE
-- the history itself is not readable
SELECT count(*) FROM ec_feed.history;
\echo :LAST_ERROR_SQLSTATE
-- the list of tracked tables is
SELECT rel, key_columns, history FROM ec_feed.tracked WHERE rel::text LIKE 'fd%' ORDER BY rel::text;
-- cursor_now() needs no privilege on any table
SELECT ec_feed.cursor_now() IS NOT NULL AS has_cursor;
RESET ROLE;
-- a role that bypasses row-level security reads fd_rls
CREATE ROLE fd_bypass BYPASSRLS;
GRANT SELECT ON fd_rls TO fd_bypass;
SET ROLE fd_bypass;
SELECT op, rel, key FROM ec_feed.read(:'fd_p0', 1000, '{fd_rls}');
SELECT op, rel, key FROM ec_feed.read(:'fd_p0');
RESET ROLE;

------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------
SELECT ec_feed.untrack('fd_a'), ec_feed.untrack('fd_b'), ec_feed.untrack('fd_nohist'), ec_feed.untrack('fd_rls');
DROP VIEW fd_view;
DROP TABLE fd_a, fd_b, fd_nohist, fd_rls, fd_untracked, fd_full, fd_pages;
DROP FUNCTION fd_err, fd_after, fd_follow, fd_rest, fd_rot, fd_check, fd_le, fd_varint, fd_varints,
	fd_b64url, fd_unb64url, fd_seal, fd_mark;
DROP ROLE fd_reader, fd_bypass;
