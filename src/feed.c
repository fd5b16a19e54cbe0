/*
 * feed.c
 *		The commit-visible change feed: ec_feed.read() and ec_feed.cursor_now().
 *
 * A cursor holds a mark `prev` (see EcMark in ec_feed.h) whose changes the
 * consumer has read. ec_feed.read() finishes the delta the cursor is in, then
 * takes one new mark `cur` (mark.c) and returns the delta prev -> cur
 * (feedscan.c): every change whose transaction is visible at cur but was not
 * at prev, in version order.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"
#include "feed.h"
#include "partition.h"
#include "publish.h"
#include "segment.h"
#include "token.h"
#include "visibility.h"

/*
 * Does the history retain a change of table relid? One descent of the
 * (relid, seq) index of each segment. A table that left the feed (untracked,
 * dropped, history switched off) keeps its changes there until pruned.
 */
static bool
history_retained(Oid relid)
{
	const EcSegmentList *segments = ec_segments();
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	bool		found = false;

	for (int i = 0; i < segments->n && !found; i++)
	{
		const EcSegment *seg = &segments->segs[i];
		Relation	hist;
		ScanKeyData key;
		SysScanDesc scan;

		if (!OidIsValid(seg->relid))
			continue;
		hist = try_relation_open(seg->relid, AccessShareLock);
		if (hist == NULL)
			continue;			/* pruned meanwhile */
		ScanKeyInit(&key, Anum_history_relid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(relid));
		scan = systable_beginscan(hist, seg->rel_index, OidIsValid(seg->rel_index),
								  snapshot, 1, &key);
		found = HeapTupleIsValid(systable_getnext(scan));
		systable_endscan(scan);
		relation_close(hist, AccessShareLock);
	}
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * The rels argument: every table must be tracked with history and readable,
 * or have left the feed with changes still retained (untracked, dropped,
 * history switched off): those are read up to their untrack entry. A name
 * with no retained change is an error, so that a typo does not read as an
 * empty feed.
 */
static void
check_rels(FeedScan *fs, ArrayType *rels)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(rels, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		Oid			relid;
		Relation	rel;
		bool		tracked = false;
		bool		history = false;
		bool		exists;
		AllowedRel *entry;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("rels must not contain NULL"),
					 errdetail("Each element of rels names a table whose changes to return."),
					 errhint("Pass the tables to read, or NULL for every table you may read.")));
		relid = DatumGetObjectId(elems[i]);
		exists = SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid));
		if (exists)
		{
			rel = relation_open(relid, AccessShareLock);
			tracked = ec_rel_tracked(rel, &history);
			/* a partition's changes are recorded under its tracked parent */
			if (tracked)
				ec_refuse_partition(rel);
			relation_close(rel, AccessShareLock);
		}
		if (!(tracked && history) && !history_retained(relid))
		{
			if (!exists)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("relation with OID %u does not exist", relid),
						 errdetail("rels names a table that was dropped, or an OID that is not a table's."),
						 errhint("Pass tables that exist.")));
			if (!tracked)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("table \"%s\" is not tracked", get_rel_name(relid)),
						 errdetail("Only tables tracked by ec_feed have a change feed."),
						 errhint("Call ec_feed.track() on the table first.")));
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is tracked without history", get_rel_name(relid)),
					 errdetail("ec_feed.track() was called with history => false, so no changes are recorded."),
					 errhint("Call ec_feed.track() with history => true.")));
		}
		entry = hash_search(fs->allowed, &relid, HASH_ENTER, NULL);
		if (!exists)
		{
			/*
			 * A dropped table: its untrack entry to every caller, its other
			 * changes by the rule of rels NULL (rel_allowed, feedscan.c).
			 */
			entry->allowed = ec_caller_may_read(relid);
			continue;
		}
		if (!ec_caller_may_use_schema(relid))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for schema %s",
							get_namespace_name(get_rel_namespace(relid))),
					 errdetail("Reading the feed of a table needs USAGE on its schema, as a SELECT from it does."),
					 errhint("Ask the schema's owner for USAGE, or leave the table out of rels.")));
		if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", get_rel_name(relid)),
					 errdetail("Reading the feed of a table needs SELECT on the whole table."),
					 errhint("Ask the table's owner for SELECT, or leave the table out of rels.")));
		if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("table \"%s\" has row-level security enabled", get_rel_name(relid)),
					 errdetail("The feed returns whole rows, which row-level security policies would filter."),
					 errhint("Read the feed as a role that bypasses row-level security, or leave the table out of rels.")));
		entry->allowed = true;
	}
}

/* Has a transaction ended since the count was read? (a hint: read unlocked) */
static bool
transactions_ended(void *arg)
{
	return ShmemVariableCache->xactCompletionCount != *(uint64 *) arg;
}

/* Copy a mark's list of open transactions into the current memory context. */
static void
copy_mark(EcMark *mark)
{
	uint64	   *xip = palloc(sizeof(uint64) * Max(mark->nxip, 1));

	if (mark->nxip > 0)
		memcpy(xip, mark->xip, sizeof(uint64) * mark->nxip);
	mark->xip = xip;
}

PG_FUNCTION_INFO_V1(ec_feed_read);

/*
 * ec_feed.read(after text, max_rows int, rels regclass[], wait_ms int)
 */
Datum
ec_feed_read(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FeedScan	fs;
	EcCursor	cursor;
	HASHCTL		hashctl;
	int64		max_rows;
	int64		returned = 0;
	bool		took_mark = false;
	bool		recovery = RecoveryInProgress();
	int			wait_ms;
	bool		can_wait;
	TimestampTz deadline;
	uint64		horizon;
	int64		pruned_version;
	MemoryContext look_context;
	MemoryContext call_context;
	Datum		values[FEED_COLUMNS];
	bool		nulls[FEED_COLUMNS];

	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be at least 1"),
				 errdetail("Every page returns at most max_rows changes and one progress row."),
				 errhint("Pass the most rows one page may return, e.g. 1000.")));
	max_rows = PG_GETARG_INT32(1);
	wait_ms = PG_NARGS() > 3 && !PG_ARGISNULL(3) ? PG_GETARG_INT32(3) : 0;
	if (wait_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_ms must not be negative"),
				 errdetail("wait_ms is how long a page with nothing new waits for a change to commit."),
				 errhint("Pass 0 not to wait, or the most milliseconds to wait.")));
	/* the wait withdraws the backend's xmin: only where nothing reads on with it */
	can_wait = wait_ms > 0 && ec_can_wait_without_snapshot(fcinfo);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	memset(&cursor, 0, sizeof(cursor));
	if (!PG_ARGISNULL(0))
		ec_cursor_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &cursor);

	ec_set_materialized_srf(fcinfo);
	fs.store = rsinfo->setResult;
	fs.desc = rsinfo->setDesc;
	fs.cursor = &cursor;
	fs.row_context = AllocSetContextCreate(CurrentMemoryContext, "ec_feed read row",
										   ALLOCSET_DEFAULT_SIZES);
	hashctl.keysize = sizeof(Oid);
	hashctl.entrysize = sizeof(AllowedRel);
	hashctl.hcxt = CurrentMemoryContext;
	fs.allowed = hash_create("ec_feed readable tables", 16, &hashctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	fs.last_relid = InvalidOid;
	fs.last_allowed = false;
	fs.op_texts[0] = CStringGetTextDatum("insert");
	fs.op_texts[1] = CStringGetTextDatum("update");
	fs.op_texts[2] = CStringGetTextDatum("delete");
	fs.op_texts[3] = CStringGetTextDatum("truncate");
	fs.op_texts[4] = CStringGetTextDatum("untrack");
	fs.rels_given = !PG_ARGISNULL(2);
	if (fs.rels_given)
		check_rels(&fs, PG_GETARG_ARRAYTYPE_P(2));

	fs.segs = NULL;
	fs.seg_ids = NULL;
	fs.nsegs = 0;
	fs.nrels = 0;
	fs.range_rels = NULL;
	if (fs.rels_given)
	{
		HASH_SEQ_STATUS status;
		AllowedRel *entry;

		/* the tables of rels, each once (check_rels entered them) */
		fs.range_rels = palloc(sizeof(Oid) * Max(hash_get_num_entries(fs.allowed), 1));
		hash_seq_init(&status, fs.allowed);
		while ((entry = hash_seq_search(&status)) != NULL)
			fs.range_rels[fs.nrels++] = entry->relid;
	}

	/*
	 * The segments are listed after the mark of the delta being read (the
	 * cursor's, or the one taken below); the horizon after they are locked.
	 */
	ec_feed_open_segments(&fs);
	ec_pruned(&horizon, &pruned_version);
	if (PG_ARGISNULL(0))
		ec_oldest_cursor(&cursor, horizon);	/* the oldest change retained */
	else
		ec_check_retained(&cursor, horizon);

	/*
	 * Each look for new changes (the first, and one per wake-up of a wait)
	 * takes a mark and scans in a context of its own; a wake-up starts a new
	 * one holding only the cursor's marks, so that a long wait's memory does
	 * not grow with the transactions ending around it.
	 */
	call_context = CurrentMemoryContext;
	look_context = AllocSetContextCreate(call_context, "ec_feed read look",
										 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(look_context);

	for (;;)
	{
		/* read before the mark: a transaction ending after it wakes the wait */
		uint64		completions = ShmemVariableCache->xactCompletionCount;
		long		remaining;
		long		waited_ms;

		/*
		 * On a standby, a delta ending at a mark this standby has not
		 * replayed yet (the cursor came from the primary or another standby)
		 * waits.
		 */
		bool		blocked = recovery && cursor.pending && !ec_mark_replayed(&cursor.cur);

		/*
		 * Finish the delta the cursor is in, then take one new mark and read
		 * towards it; a delta that ends with room left on the page moves
		 * prev.
		 */
		while (!blocked && returned < max_rows)
		{
			bool		drained;

			if (!cursor.pending)
			{
				if (took_mark)
					break;		/* caught up with a mark of this call */
				if (recovery)
				{
					/* a standby reads up to the newest mark it replayed (publish.c) */
					if (!ec_newest_published_mark(&cursor.cur, &cursor.prev, GetLatestSnapshot()))
						break;
				}
				else
				{
					ec_take_mark(&cursor.cur, NULL);
					/* alone in its transaction, the xid it takes ends with it */
					if (!IsTransactionBlock() && wait_ms == 0 && ec_publish_due())
						ec_publish(&cursor.cur);
				}
				cursor.pending = true;
				cursor.last = 0;
				took_mark = true;
				ec_feed_open_segments(&fs);
			}
			fs.snapshot = RegisterSnapshot(GetLatestSnapshot());
			returned += ec_scan_delta(&fs, max_rows - returned, &drained);
			UnregisterSnapshot(fs.snapshot);
			if (drained)
			{
				cursor.prev = cursor.cur;
				cursor.pending = false;
			}
		}

		/*
		 * Nothing new: wait until some transaction ends (then look again),
		 * with no snapshot held, or until wait_ms is over.
		 */
		if (returned > 0 || !can_wait)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0 ||
			!ec_wait_until(transactions_ended, &completions, remaining, 5, &waited_ms))
			break;
		took_mark = false;

		/* a new look: keep the cursor's marks, drop the rest of the last one */
		{
			MemoryContext next = AllocSetContextCreate(call_context, "ec_feed read look",
													   ALLOCSET_DEFAULT_SIZES);

			MemoryContextSwitchTo(next);
			copy_mark(&cursor.prev);
			if (cursor.pending)
				copy_mark(&cursor.cur);
			MemoryContextDelete(look_context);
			look_context = next;
		}
	}
	MemoryContextSwitchTo(call_context);

	ec_feed_close_segments(&fs);
	if (ec_maintenance_due())
		ec_auto_prune();

	/* the progress row resumes after everything returned */
	memset(nulls, true, sizeof(nulls));
	values[0] = CStringGetTextDatum(ec_cursor_encode(&cursor));
	values[1] = CStringGetTextDatum("progress");
	nulls[0] = nulls[1] = false;
	tuplestore_putvalues(fs.store, fs.desc, values, nulls);

	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(ec_feed_cursor_now);

/*
 * Has the caller's transaction recorded changes that are still there (not
 * rolled back to a savepoint)? It recorded them all into one segment that
 * is not frozen, as it is running: one index probe of each such segment.
 */
static bool
own_changes_recorded(void)
{
	FullTransactionId own = GetTopFullTransactionIdIfAny();
	const EcSegmentList *segments;
	bool		found = false;

	if (!FullTransactionIdIsValid(own))
		return false;
	segments = ec_segments();
	for (int i = 0; i < segments->n && !found; i++)
	{
		const EcSegment *seg = &segments->segs[i];
		Relation	hist;
		ScanKeyData key;
		SysScanDesc scan;
		Snapshot	snapshot;

		if (!OidIsValid(seg->relid) || seg->frozen)
			continue;
		hist = try_relation_open(seg->relid, AccessShareLock);
		if (hist == NULL)
			continue;
		ScanKeyInit(&key, Anum_history_xid, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(own));
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		scan = systable_beginscan(hist, seg->xid_index, true, snapshot, 1, &key);
		found = HeapTupleIsValid(systable_getnext(scan));
		systable_endscan(scan);
		UnregisterSnapshot(snapshot);
		relation_close(hist, AccessShareLock);
	}
	return found;
}

/*
 * ec_feed.cursor_now(): a cursor at the caller's snapshot. In a REPEATABLE
 * READ transaction that also copies the tables, the feed from this cursor
 * continues exactly where the copy ends.
 *
 * The same call also starts a consumer "from now", which is right at any
 * isolation level, so it cannot refuse what would be a wrong hand-over; it
 * warns where a copy in the same transaction cannot match the cursor: a
 * transaction that has recorded changes (the feed returns them after it
 * commits, while its copy sees them already) and a READ COMMITTED
 * transaction that began before this statement, i.e. of several statements
 * (each reads with a snapshot of its own). IsTransactionBlock() would also
 * say so for a single statement that runs a function with an exception
 * block (a subtransaction).
 */
Datum
ec_feed_cursor_now(PG_FUNCTION_ARGS)
{
	EcCursor	cursor;

	if (own_changes_recorded())
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("ec_feed.cursor_now() in a transaction that has written tracked rows"),
				 errdetail("The feed from this cursor returns this transaction's changes of tracked tables once it commits, while a copy made in this transaction already sees them: a hand-over from such a copy gets them twice."),
				 errhint("For a hand-over, call ec_feed.cursor_now() in a transaction that has not written tracked tables: BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY.")));
	else if (!IsolationUsesXactSnapshot() &&
			 GetCurrentTransactionStartTimestamp() != GetCurrentStatementStartTimestamp())
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("ec_feed.cursor_now() in a READ COMMITTED transaction"),
				 errdetail("Each statement of this transaction reads with a new snapshot, so a copy made in it does not end where the cursor starts: a hand-over from such a copy gets changes twice, or misses them."),
				 errhint("For a hand-over, read the cursor and the copy in one REPEATABLE READ transaction: BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY.")));
	memset(&cursor, 0, sizeof(cursor));
	if (RecoveryInProgress())
	{
		/*
		 * A standby's snapshot is no mark (publish.c): the newest mark the
		 * primary published that is visible in it. It sees no more than the
		 * snapshot; a copy in the same transaction may hold changes after
		 * it, which the feed then returns again.
		 */
		if (!ec_newest_published_mark(&cursor.prev, NULL, GetActiveSnapshot()))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no mark published by the primary is visible on this standby yet"),
					 errdetail("A standby reads the feed up to the marks the primary publishes."),
					 errhint("Call ec_feed.publish_mark() on the primary, or write to a tracked table there, then retry.")));
	}
	else
		ec_take_mark(&cursor.prev, GetActiveSnapshot());
	PG_RETURN_TEXT_P(cstring_to_text(ec_cursor_encode(&cursor)));
}
