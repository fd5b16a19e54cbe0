-- Every function of ec_feed explains itself in \df+ (issue 15.4): the
-- functions of 0.1.0 and 0.2.0 and those of the uninstall and the guards
-- have a comment. (Functions added by other parts of 0.3.0 are commented
-- where they are created.)
SELECT f AS function_without_comment
FROM unnest(ARRAY[
	'ec_feed.track(regclass, boolean)', 'ec_feed.untrack(regclass, boolean)',
	'ec_feed.untrack_all()', 'ec_feed.read(text, integer, regclass[], integer)',
	'ec_feed.cursor_now()', 'ec_feed.row_token(anyelement)', 'ec_feed.token(regclass, jsonb)',
	'ec_feed.update_if(regclass, jsonb, text, jsonb, boolean)',
	'ec_feed.delete_if(regclass, jsonb, text)', 'ec_feed.token_status(text)',
	'ec_feed.require_visible(text, integer)', 'ec_feed.get(regclass, jsonb, text)',
	'ec_feed.stamp()', 'ec_feed.record()', 'ec_feed.truncate_guard()',
	'ec_feed._check_owner(regclass)', 'ec_feed._add_managed_column(regclass, name, regtype, text)',
	'ec_feed._draw_version()', 'ec_feed._unstamped(regclass)', 'ec_feed._renumber(regclass)',
	'ec_feed._schema_changed()', 'ec_feed._before_drop()', 'ec_feed._key_guard()',
	'ec_feed.adopt(regclass, integer, boolean)'
]::regprocedure[]) f
WHERE obj_description(f, 'pg_proc') IS NULL;

-- and the view and the result type
SELECT obj_description('ec_feed.tracked'::regclass, 'pg_class') IS NOT NULL AS tracked_view,
	   obj_description('ec_feed.write_result'::regtype, 'pg_type') IS NOT NULL AS write_result_type;

-- and every other function of the extension, whichever part added it
SELECT p.oid::regprocedure AS member_function_without_comment
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ec_feed') AND d.deptype = 'e'
  AND obj_description(p.oid, 'pg_proc') IS NULL
ORDER BY 1;
