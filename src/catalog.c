/*
 * catalog.c
 *		The extension's own objects: its schema, relations and version sequence.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"

#include "ec_feed.h"

PG_MODULE_MAGIC;

Oid
ec_feed_namespace(void)
{
	Oid			nspid = get_namespace_oid(EC_FEED_SCHEMA, true);

	if (!OidIsValid(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"ec_feed\" is not installed in this database"),
				 errdetail("Its schema ec_feed does not exist."),
				 errhint("Run CREATE EXTENSION ec_feed.")));
	return nspid;
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
