/*
 * uninstall.c
 *		The guard of the uninstall: the event trigger ec_feed_before_drop
 *		(ddl_command_start of DROP EXTENSION and DROP SCHEMA).
 *
 * DROP EXTENSION ec_feed CASCADE would drop the row triggers and leave the
 * managed columns NOT NULL without a default, so every plain INSERT into a
 * formerly tracked table would fail: it untracks every table first
 * (ec_feed.untrack_all()). Without CASCADE it refuses, naming the tracked
 * tables. The statements it runs name every object with its schema: they
 * run under the caller's search_path.
 */
#include "postgres.h"

#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "ec_feed.h"

/* Does a DROP statement name ec_feed (the extension, or its schema)? */
static bool
drops_ec_feed(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION && stmt->removeType != OBJECT_SCHEMA)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *name = lfirst(lc);

		if (IsA(name, String) && strcmp(strVal(name), EC_FEED_SCHEMA) == 0)
			return true;
	}
	return false;
}

PG_FUNCTION_INFO_V1(ec_feed_before_drop);

/*
 * ec_feed._before_drop(), the event trigger ec_feed_before_drop: before
 * DROP EXTENSION ec_feed CASCADE (or DROP SCHEMA ec_feed CASCADE) untrack
 * every table, so that they keep working without the extension; without
 * CASCADE, refuse while tables are tracked, saying how to proceed (the
 * drop would fail anyway, on the triggers that depend on the extension).
 */
Datum
ec_feed_before_drop(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	DropStmt   *stmt;
	int			rc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ec_feed._before_drop() must be called as an event trigger"),
				 errdetail("It is the function of the event trigger ec_feed_before_drop."),
				 errhint("Do not call it directly.")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (trigdata->parsetree == NULL || !IsA(trigdata->parsetree, DropStmt))
		PG_RETURN_VOID();
	stmt = (DropStmt *) trigdata->parsetree;
	if (!drops_ec_feed(stmt))
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (stmt->behavior == DROP_CASCADE)
	{
		rc = SPI_execute("SELECT pg_catalog.count(*) FROM ec_feed.untrack_all()", false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute returned %s", SPI_result_code_string(rc));
	}
	else
	{
		char	   *tables;

		rc = SPI_execute("SELECT pg_catalog.string_agg(r::pg_catalog.text, ', ' ORDER BY r::pg_catalog.text) FROM "
						 "(SELECT DISTINCT t.tgrelid::pg_catalog.regclass AS r FROM pg_catalog.pg_trigger t "
						 " WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY["
						 "'ec_feed.stamp()'::pg_catalog.regprocedure, "
						 "'ec_feed.record()'::pg_catalog.regprocedure, "
						 "'ec_feed.truncate_guard()'::pg_catalog.regprocedure]::pg_catalog.oid[])) s",
						 true, 0);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "SPI_execute returned %s", SPI_result_code_string(rc));
		tables = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (tables != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop extension ec_feed while tables are tracked"),
					 errdetail("Tracked tables: %s.", tables),
					 errhint("Run SELECT ec_feed.untrack_all() first, or use DROP EXTENSION ec_feed CASCADE, which does the same: the tables keep ec_version and ec_xid, with default 0.")));
	}
	SPI_finish();
	PG_RETURN_VOID();
}
