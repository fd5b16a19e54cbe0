/*
 * catalog.c
 *		The extension's own objects: its schema, relations and version sequence.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
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

static bool fence_known = false;
static int64 fence_value = 0;

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
	/* DROP EXTENSION (pg_restore --clean, say) drops the fence too */
	fence_known = false;
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

/* The last value of one of the extension's sequences; false if never set. */
static bool
sequence_value(const char *seqname, int64 *value)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(ec_feed_relid(seqname));
	fcinfo->args[0].isnull = false;
	result = pg_sequence_last_value(fcinfo);
	if (fcinfo->isnull)
		return false;
	*value = DatumGetInt64(result);
	return true;
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
	/* no history of this database precedes the restore fence */
	if (found && *since != PG_INT64_MAX)
	{
		int64		fence;

		if (!ec_feed_fence(&fence))
			*since = PG_INT64_MAX;
		else if (*since <= fence)
			*since = fence + 1;
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

/*
 * The restore fence: which row versions were written in this database.
 *
 * A logical dump (pg_dump) carries each row's ec_version and ec_xid as
 * plain values, and ec_feed.change_seq with them (a config-dump sequence),
 * but not the history. Restored into another cluster, or into another
 * database of the same one, ec_xid names a transaction of the old
 * database's counter: a transaction this server never assigned, or, once
 * its counter has passed that value, an unrelated one of its own (running,
 * rolled back, committed). Such an xid must never be interpreted.
 *
 * The fence is ec_feed.restore_fence, a sequence that is a member of the
 * extension but not marked for pg_dump: a restore gets a fresh, unset one
 * from CREATE EXTENSION, whatever the dump holds. The first row write
 * after that sets it (ec_feed_fence_adopt(), called by the stamp trigger
 * before it draws a version): a fresh version F from change_seq, drawn
 * under a lock, stored with setval. Hence:
 *   - every restored row has a version at or below the change_seq value
 *     the dump set. pg_dump reads the sequence after it took its snapshot,
 *     so a row in the dump was committed before that reading, and its
 *     version, drawn before its commit, is at most the value read (also
 *     when a writer was in the middle of a transaction, whose rows are not
 *     in the dump at all). No row write happens during a restore: the
 *     triggers are created after the data (a parallel restore creates a
 *     table's triggers after its own data, and nothing writes that table
 *     afterwards), so F is drawn after the dumped value was set: F is
 *     above every restored version;
 *   - every row version the stamp trigger draws afterwards is above F, and
 *     its ec_xid is a transaction of this database;
 * so a row whose version is at most F, or any row while the fence is not
 * set, carries an ec_xid that is not ours, or that need not be read. Such
 * a row is visible to whoever reads it, so its write committed: its token
 * says so (xid 0, like a row that existed before track(), see token.c)
 * instead of carrying its ec_xid. Rows other paths give versions (track()
 * renumbering rows, ec_feed._draw_version()) may also be below F; they
 * are committed when anyone else reads them, and their tokens lose only
 * the "pending" and "rolled back" answers that a write in progress needs.
 *
 * The fence is not transactional (setval), so every session sees it set
 * as soon as it is, before any version above it exists, whatever becomes
 * of the transaction that set it. A crash may lose it only together with
 * every version drawn after it: a transaction that saw it set wrote its
 * commit record after the setval's WAL record. A standby sees the
 * fence set before it can see any row written after it.
 *
 * A restore into another database of the same cluster, a second restore
 * of a restored database, and pg_restore --clean (which drops and creates
 * the extension) all start with an unset fence. pg_upgrade keeps it: it
 * carries the values of an extension's sequences (pg_dump --binary-upgrade
 * dumps every member object) and the tables' files, so the rows, their
 * ec_xid (the xid counter is carried too) and the fence stay as they were
 * and nothing is taken for restored. So do a file-level copy (CREATE
 * DATABASE ... TEMPLATE, a base backup). ALTER EXTENSION UPDATE from 0.2.0
 * sets the fence to 0 when versions were drawn: every existing row was
 * written in place.
 *
 * ec_feed_fence() returns false while the fence is not set. Once set it
 * does not change, so it is kept per backend (until the schema changes).
 */
bool
ec_feed_fence(int64 *fence)
{
	if (!fence_known)
	{
		/* before ALTER EXTENSION UPDATE to 0.3.0: every row was written here */
		if (!OidIsValid(get_relname_relid(EC_FENCE_SEQ, ec_feed_namespace())))
		{
			*fence = 0;
			return true;
		}
		if (!sequence_value(EC_FENCE_SEQ, &fence_value))
			return false;
		fence_known = true;
	}
	*fence = fence_value;
	return true;
}

/*
 * Set the fence before this backend writes its first row version, if no
 * one has. The writer needs no privilege on the sequence: setval runs as
 * its owner, the extension's, as a restricted operation (it runs no code
 * of anyone's). The lock serialises the first writers; it is released at
 * once, as the setval is not undone by a rollback.
 */
void
ec_feed_fence_adopt(void)
{
	int64		fence;
	Oid			seqid;
	HeapTuple	classtup;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;

	if (fence_known || ec_feed_fence(&fence))
		return;
	seqid = ec_feed_relid(EC_FENCE_SEQ);
	LockRelationOid(seqid, ShareUpdateExclusiveLock);
	if (!ec_feed_fence(&fence))
	{
		classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(seqid));
		if (!HeapTupleIsValid(classtup))
			elog(ERROR, "cache lookup failed for relation %u", seqid);
		owner = ((Form_pg_class) GETSTRUCT(classtup))->relowner;
		ReleaseSysCache(classtup);

		fence = ec_feed_next_version();
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seqid), Int64GetDatum(fence),
							BoolGetDatum(true));
		SetUserIdAndSecContext(save_userid, save_sec_context);
		fence_value = fence;
		fence_known = true;
	}
	UnlockRelationOid(seqid, ShareUpdateExclusiveLock);
}

/*
 * Insert a tuple into one of ec_feed's own tables (the history's segments,
 * the published marks) with the heap and index access methods directly: the
 * row trigger is the hot path. Their indexes are on plain columns, no
 * expressions or predicates; unique ones are checked.
 */
void
ec_insert_tuple(Relation rel, HeapTuple tuple)
{
	TupleTableSlot *slot;
	List	   *indexes;
	ListCell   *lc;

	simple_heap_insert(rel, tuple);
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tuple, slot, false);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		FormIndexDatum(info, slot, NULL, ivalues, inulls);
		ec_index_insert(index, ivalues, inulls, &tuple->t_self, rel,
						info->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, info);
		index_close(index, RowExclusiveLock);
	}
	list_free(indexes);
	ExecDropSingleTupleTableSlot(slot);
}

/* The owner of the extension ec_feed: it owns the history and may manage every consumer. */
Oid
ec_extension_owner(void)
{
	Oid			extoid = get_extension_oid("ec_feed", false);
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		elog(ERROR, "extension ec_feed not found");
	return owner;
}
