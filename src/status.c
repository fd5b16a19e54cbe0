/*
 * status.c
 *		What ec_feed.status() (SQL, in the upgrade script) cannot read in SQL
 *		without waiting: a history segment's size and first version, read
 *		only if its table can be locked at once; and full (xid8) transaction
 *		ids for the 32-bit ones the statistics views show.
 *
 * status() is for monitoring: it must answer while a prune drops a segment
 * (ACCESS EXCLUSIVE) or anyone else holds a lock that a plain
 * pg_total_relation_size() would queue behind. It then reports NULL for
 * that segment instead of waiting.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "catalog/pg_class.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"

PG_FUNCTION_INFO_V1(ec_feed_segment_usage);

/*
 * ec_feed._segment_usage(segment regclass, OUT bytes bigint,
 *		OUT first_version bigint)
 *
 * The segment table's size with its indexes and TOAST, and the lowest
 * version of a committed change in it (NULL when it holds none). Both NULL
 * when the table is locked in a conflicting mode or gone (a prune may drop
 * it between the caller's read of ec_feed.segment and this call). Only
 * tables of schema ec_feed: it reads past the table's privileges.
 */
Datum
ec_feed_segment_usage(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {true, true};
	Relation	rel;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* dropped by a prune after the caller read ec_feed.segment: NULLs */
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
	if (get_rel_namespace(relid) != ec_feed_namespace() ||
		get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a history segment of ec_feed", get_rel_name(relid)),
				 errdetail("ec_feed._segment_usage() reads the tables listed in ec_feed.segment only."),
				 errhint("Call ec_feed.status() instead.")));

	if (ConditionalLockRelationOid(relid, AccessShareLock))
	{
		/* gone (dropped by a prune that committed meanwhile): NULLs */
		rel = try_relation_open(relid, NoLock);
		if (rel != NULL)
		{
			Oid			pkey = RelationGetPrimaryKeyIndex(rel);

			/* holds the lock already, so this does not wait either */
			values[0] = DirectFunctionCall1(pg_total_relation_size, ObjectIdGetDatum(relid));
			nulls[0] = false;
			if (OidIsValid(pkey))
			{
				Relation	index = index_open(pkey, AccessShareLock);
				Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
				SysScanDesc scan;
				HeapTuple	tuple;

				/* the primary key is (seq): its first live entry */
				scan = systable_beginscan_ordered(rel, index, snapshot, 0, NULL);
				tuple = systable_getnext_ordered(scan, ForwardScanDirection);
				if (HeapTupleIsValid(tuple))
				{
					values[1] = heap_getattr(tuple, Anum_history_seq, RelationGetDescr(rel),
											 &nulls[1]);
				}
				systable_endscan_ordered(scan);
				UnregisterSnapshot(snapshot);
				index_close(index, AccessShareLock);
			}
			relation_close(rel, NoLock);
		}
		UnlockRelationOid(relid, AccessShareLock);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

PG_FUNCTION_INFO_V1(ec_feed_widen_xid);

/*
 * ec_feed._xid8(xid) returns xid8: the full id of a transaction that is
 * running or recent (as pg_stat_activity and pg_prepared_xacts show them),
 * comparable with ec_xid and the xids of the feed.
 */
Datum
ec_feed_widen_xid(PG_FUNCTION_ARGS)
{
	TransactionId xid = DatumGetTransactionId(PG_GETARG_DATUM(0));

	PG_RETURN_FULLTRANSACTIONID(ec_widen_xid(xid, ReadNextFullTransactionId()));
}
