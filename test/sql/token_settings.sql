-- Keys are canonical (issue 16.2): a row's key JSON, and so its token, its
-- history and its feed key, are the same whatever the settings of the
-- session that renders them (TimeZone, DateStyle, IntervalStyle,
-- bytea_output, extra_float_digits, search_path).
--
-- How it fails without the fix (canonical rendering in ec_row_key,
-- src/rowjson.c): a token taken under one set of settings is refused (EC004)
-- under another, the history records the same row under several keys (the
-- feed's key changes with the writer's settings), and a stale token merges
-- over a change recorded under another key (a lost update).

-- two sets of settings; "b" differs from "a" in every one that matters
CREATE FUNCTION ts_settings(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF name = 'a' THEN
		PERFORM set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
				set_config('IntervalStyle', 'postgres', true), set_config('bytea_output', 'hex', true),
				set_config('extra_float_digits', '1', true), set_config('search_path', 'public', true);
	ELSE
		PERFORM set_config('TimeZone', 'Europe/Berlin', true), set_config('DateStyle', 'SQL, DMY', true),
				set_config('IntervalStyle', 'sql_standard', true), set_config('bytea_output', 'escape', true),
				set_config('extra_float_digits', '-10', true), set_config('search_path', 'pg_catalog', true);
	END IF;
END $$;

-- The SQLSTATE and message of an error, or the value
CREATE FUNCTION ts_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE q INTO r;
	RETURN r;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- The newest key the feed has for the one row of rel
CREATE FUNCTION ts_feed_key(rel regclass) RETURNS jsonb LANGUAGE sql AS $$
	SELECT key FROM ec_feed.read(NULL, 1000, ARRAY[rel]) WHERE op <> 'progress'
	ORDER BY version DESC LIMIT 1
$$;

-- Takes the token of the one row of rel and its key from the feed under
-- settings a, then, under settings b, uses both: row_token, token, get,
-- update_if (changing v to 2) and delete_if with a stale token. Each
-- column says what it saw.
CREATE FUNCTION ts_check(rel regclass)
RETURNS TABLE (key text, row_token text, token text, get text, update_if text, delete_if text)
LANGUAGE plpgsql AS $$
DECLARE
	k jsonb;
	t_a text;
	t_b text;
BEGIN
	PERFORM public.ts_settings('a');
	k := public.ts_feed_key(rel);
	EXECUTE format('SELECT ec_feed.row_token(ts_row) FROM %s ts_row', rel) INTO t_a;

	PERFORM public.ts_settings('b');
	key := k::text;
	EXECUTE format('SELECT ec_feed.row_token(ts_row) FROM %s ts_row', rel) INTO t_b;
	row_token := CASE WHEN t_b = t_a THEN 'same' ELSE 'differs' END;
	token := public.ts_try(format('SELECT ec_feed.token(%s, %L) = %L', rel::oid, k, t_a));
	get := public.ts_try(format('SELECT status || CASE WHEN token = %L THEN '' same token'' ELSE '' other token'' END FROM ec_feed.get(%s, %L, %L)',
								t_a, rel::oid, k, t_a));
	update_if := public.ts_try(format('SELECT status FROM ec_feed.update_if(%s, %L, %L, ''{"v": 2}'')',
									  rel::oid, k, t_a));
	delete_if := public.ts_try(format('SELECT status || '' '' || conflicts::text FROM ec_feed.delete_if(%s, %L, %L)',
									  rel::oid, k, t_a));
	PERFORM public.ts_settings('a');
	RETURN NEXT;
END $$;

CREATE TYPE ts_pair AS (a int, t timestamptz);
CREATE DOMAIN ts_moment AS timestamptz;
CREATE TABLE ts_timestamptz (k timestamptz PRIMARY KEY, v int);
CREATE TABLE ts_timestamp (k timestamp PRIMARY KEY, v int);
CREATE TABLE ts_date (k date PRIMARY KEY, v int);
CREATE TABLE ts_timetz (k timetz PRIMARY KEY, v int);
CREATE TABLE ts_bytea (k bytea PRIMARY KEY, v int);
CREATE TABLE ts_float4 (k float4 PRIMARY KEY, v int);
CREATE TABLE ts_float8 (k float8 PRIMARY KEY, v int);
CREATE TABLE ts_interval (k interval PRIMARY KEY, v int);
CREATE TABLE ts_numeric (k numeric PRIMARY KEY, v int);
CREATE TABLE ts_text (k text PRIMARY KEY, v int);
CREATE TABLE ts_uuid (k uuid PRIMARY KEY, v int);
CREATE TABLE ts_money (k money PRIMARY KEY, v int);
CREATE TABLE ts_regclass (k regclass PRIMARY KEY, v int);
CREATE TABLE ts_domain (k ts_moment PRIMARY KEY, v int);
CREATE TABLE ts_array (k timestamptz[] PRIMARY KEY, v int);
CREATE TABLE ts_composite (k ts_pair PRIMARY KEY, v int);
CREATE TABLE ts_range (k tstzrange PRIMARY KEY, v int);
CREATE TABLE ts_two (a int, at timestamptz, v int, PRIMARY KEY (a, at));
SELECT count(ec_feed.track(c)) FROM unnest(ARRAY['ts_timestamptz', 'ts_timestamp', 'ts_date',
	'ts_timetz', 'ts_bytea', 'ts_float4', 'ts_float8', 'ts_interval', 'ts_numeric', 'ts_text',
	'ts_uuid', 'ts_money', 'ts_regclass', 'ts_domain', 'ts_array', 'ts_composite', 'ts_range',
	'ts_two']::regclass[]) c;

-- rows written under settings b: their keys are canonical all the same
BEGIN;
SELECT ts_settings('b');
INSERT INTO public.ts_timestamptz VALUES ('2024-03-01 12:30:00.25+00', 1);
INSERT INTO public.ts_timestamp VALUES ('2024-03-01 12:30:00', 1);
INSERT INTO public.ts_date VALUES ('2024-03-01', 1);
INSERT INTO public.ts_timetz VALUES ('12:30:00+02', 1);
INSERT INTO public.ts_bytea VALUES ('\x00ff41', 1);
INSERT INTO public.ts_float4 VALUES (1.1, 1);
INSERT INTO public.ts_float8 VALUES (0.1::float8 + 0.2, 1);
INSERT INTO public.ts_interval VALUES ('-1 day 02:03:04', 1);
INSERT INTO public.ts_numeric VALUES (1.50, 1);
INSERT INTO public.ts_text VALUES ('Zoë ', 1);
INSERT INTO public.ts_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1);
INSERT INTO public.ts_money VALUES (12.5, 1);
INSERT INTO public.ts_regclass VALUES ('public.ts_text', 1);
INSERT INTO public.ts_domain VALUES ('2024-03-01 12:30:00+00', 1);
INSERT INTO public.ts_array VALUES (ARRAY['2024-03-01 12:30:00+00'::timestamptz, 'infinity'], 1);
INSERT INTO public.ts_composite VALUES (ROW(7, '2024-03-01 12:30:00+00'), 1);
INSERT INTO public.ts_range VALUES ('[2024-03-01 00:00+00, 2024-03-02 00:00+00)', 1);
INSERT INTO public.ts_two VALUES (7, '2024-03-01 12:30:00+00', 1);
COMMIT;

-- the feed's keys (rendered in the writer's settings b, read in a)
SELECT rel, key FROM ec_feed.read(NULL, 1000,
	ARRAY(SELECT c::regclass FROM unnest(ARRAY['ts_timestamptz', 'ts_timestamp', 'ts_date',
	'ts_timetz', 'ts_bytea', 'ts_float4', 'ts_float8', 'ts_interval', 'ts_numeric', 'ts_text',
	'ts_uuid', 'ts_money', 'ts_regclass', 'ts_domain', 'ts_array', 'ts_composite', 'ts_range',
	'ts_two']) c)) WHERE op <> 'progress' ORDER BY version;

-- a token taken under settings a works under b: every column reads
-- "same", "true", "found same token", "applied", "conflict {v}"
SELECT c AS rel, r.* FROM unnest(ARRAY['ts_timestamptz', 'ts_timestamp', 'ts_date',
	'ts_timetz', 'ts_bytea', 'ts_float4', 'ts_float8', 'ts_interval', 'ts_numeric', 'ts_text',
	'ts_uuid', 'ts_money', 'ts_regclass', 'ts_domain', 'ts_array', 'ts_composite', 'ts_range',
	'ts_two']) c, ts_check(c::regclass) r;

-- the updates made under settings b are recorded under the same key: one
-- key per table in the feed
SELECT rel, count(*) AS changes, count(DISTINCT key) AS keys
FROM ec_feed.read(NULL, 1000,
	ARRAY(SELECT c::regclass FROM unnest(ARRAY['ts_timestamptz', 'ts_timestamp', 'ts_date',
	'ts_timetz', 'ts_bytea', 'ts_float4', 'ts_float8', 'ts_interval', 'ts_numeric', 'ts_text',
	'ts_uuid', 'ts_money', 'ts_regclass', 'ts_domain', 'ts_array', 'ts_composite', 'ts_range',
	'ts_two']) c)) WHERE op <> 'progress' GROUP BY rel ORDER BY rel::text;

-- a key in the session's own form names the same row: the token matches
SET TimeZone = 'Europe/Berlin';
SELECT ec_feed.token('ts_timestamptz', '{"k": "2024-03-01 13:30:00.25+01"}') =
	   (SELECT ec_feed.row_token(t) FROM ts_timestamptz t) AS same_token;
SET bytea_output = 'escape';
SELECT ec_feed.token('ts_bytea', jsonb_build_object('k', '\x00ff41'::bytea)) =
	   (SELECT ec_feed.row_token(t) FROM ts_bytea t) AS same_token;
RESET TimeZone;
RESET bytea_output;

-- The lost update of the issue: a token taken in UTC, the note changed in a
-- Berlin session, the quantity in a UTC one; the stale token's change of
-- the note must conflict (without the fix: merged, the Berlin change lost)
CREATE TABLE ts_lost (k timestamptz PRIMARY KEY, note text, qty int);
SELECT ec_feed.track('ts_lost');
SET TimeZone = 'UTC';
INSERT INTO ts_lost VALUES ('2024-03-01 12:00+00', 'first', 0);
SELECT ec_feed.row_token(t) AS t0 FROM ts_lost t \gset
SET TimeZone = 'Europe/Berlin';
UPDATE ts_lost SET note = 'from Berlin';
SET TimeZone = 'UTC';
UPDATE ts_lost SET qty = 1;
SELECT status, current, conflicts, changed_since
FROM ec_feed.update_if('ts_lost', '{"k": "2024-03-01T12:00:00+00:00"}', :'t0', '{"note": "stale"}');
RESET TimeZone;

SELECT count(ec_feed.untrack(c)) FROM unnest(ARRAY['ts_timestamptz', 'ts_timestamp', 'ts_date',
	'ts_timetz', 'ts_bytea', 'ts_float4', 'ts_float8', 'ts_interval', 'ts_numeric', 'ts_text',
	'ts_uuid', 'ts_money', 'ts_regclass', 'ts_domain', 'ts_array', 'ts_composite', 'ts_range',
	'ts_two', 'ts_lost']::regclass[]) c;
DROP TABLE ts_timestamptz, ts_timestamp, ts_date, ts_timetz, ts_bytea, ts_float4, ts_float8,
	ts_interval, ts_numeric, ts_text, ts_uuid, ts_money, ts_regclass, ts_domain, ts_array,
	ts_composite, ts_range, ts_two, ts_lost;
DROP TYPE ts_pair;
DROP DOMAIN ts_moment;
DROP FUNCTION ts_check(regclass), ts_feed_key(regclass), ts_try(text), ts_settings(text);
