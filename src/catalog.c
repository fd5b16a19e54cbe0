/*
 * catalog.c
 *		The extension's own objects: its schema, relations and version sequence.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "ec_feed.h"

PG_MODULE_MAGIC;

/*
 * The schema's OID, looked up once per backend: the row trigger asks for it
 * several times per row. Any change to pg_namespace (DROP EXTENSION, say)
 * forgets it.
 */
static Oid	namespace_oid = InvalidOid;
static bool namespace_callback = false;

static void
forget_namespace(Datum arg, int cacheid, uint32 hashvalue)
{
	namespace_oid = InvalidOid;
}

Oid
ec_feed_namespace(void)
{
	if (OidIsValid(namespace_oid))
		return namespace_oid;
	if (!namespace_callback)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, forget_namespace, (Datum) 0);
		namespace_callback = true;
	}
	namespace_oid = get_namespace_oid(EC_FEED_SCHEMA, true);
	if (!OidIsValid(namespace_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"ec_feed\" is not installed in this database"),
				 errdetail("Its schema ec_feed does not exist."),
				 errhint("Run CREATE EXTENSION ec_feed.")));
	return namespace_oid;
}

/* OID of one of the extension's relations; they exist while it is installed */
Oid
ec_feed_relid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, ec_feed_namespace());

	if (!OidIsValid(relid))
		elog(ERROR, "ec_feed relation \"%s\" is missing", relname);
	return relid;
}

/*
 * The last version handed out, 0 if none yet. A sequence that was never
 * called reports last_value 1 with is_called false: pg_sequence_last_value()
 * returns NULL for it, which is 0 here.
 */
int64
ec_feed_last_version(void)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(ec_feed_relid(EC_VERSION_SEQ));
	fcinfo->args[0].isnull = false;
	result = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(result);
}

/* A new version; the writer needs no privilege on the sequence. */
int64
ec_feed_next_version(void)
{
	return nextval_internal(ec_feed_relid(EC_VERSION_SEQ), false);
}

/*
 * The version from which the history of a tracked table is complete: every
 * change with a version at least this is recorded (ec_feed.tracked_rel's
 * history_since). Returns false when the table is not registered. Read with
 * a fresh snapshot, so a call after a row lock sees the newest registration.
 */
bool
ec_history_since(Oid relid, int64 *since)
{
	Relation	tracked = table_open(ec_feed_relid(EC_TRACKED_REL), AccessShareLock);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, Anum_tracked_rel_relid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(tracked, ec_feed_relid(EC_TRACKED_REL_PKEY), true,
							  snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(tracked);
		bool		isnull = true;
		Datum		value = (Datum) 0;

		/* before ALTER EXTENSION UPDATE to 0.2.0 the column is missing: no proof */
		if (desc->natts >= Anum_tracked_rel_history_since)
			value = heap_getattr(tuple, Anum_tracked_rel_history_since, desc, &isnull);
		found = true;
		*since = isnull ? PG_INT64_MAX : DatumGetInt64(value);
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(tracked, AccessShareLock);
	return found;
}

/*
 * ec_feed._draw_version() returns bigint: a fresh version, for the marks
 * that track() keeps. Callers need no right on the sequence, as writers of
 * tracked tables need none.
 */
PG_FUNCTION_INFO_V1(ec_feed_draw_version);

Datum
ec_feed_draw_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ec_feed_next_version());
}
