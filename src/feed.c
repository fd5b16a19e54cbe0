/*
 * feed.c
 *		The commit-visible change feed: ec_feed.read() and ec_feed.cursor_now().
 *
 * A cursor holds a mark `prev` (see EcMark in ec_feed.h) whose changes the
 * consumer has read. The next delta is every change whose transaction is
 * visible at a newer mark `cur` but was not at `prev`, returned in version
 * (seq) order, which per row is lock order and so commit order (G3).
 *
 * Readings of a mark, in this order: lo = last version, snapshot, nxt = next
 * xid, hi = last version. The row trigger assigns the xid before it draws a
 * version, hence:
 *	- a transaction with xid >= nxt drew all its versions after lo was read;
 *	- a transaction visible in the snapshot drew all its versions before hi;
 *	- a transaction not visible with xid < nxt was open at the mark: it is in
 *	  the snapshot's xip or in [xmax, nxt) (xmax is latestCompletedXid + 1,
 *	  not the next xid: running transactions can sit at or above it).
 * So the delta prev -> cur is the merge, by seq, of
 *	(a) the rows of each transaction open at prev and visible at cur, read
 *		through the index on (xid, seq); few, bounded by concurrency;
 *	(b) the rows with seq in (prev.lo, cur.hi] whose xid is >= prev.nxt and
 *		visible at cur, read through the primary key on seq.
 * Nothing depends on the size of the history or on the age of the oldest open
 * transaction (G4); an open transaction hides only its own rows (G2); all
 * rows of a transaction enter the same delta (G5) and exactly one (G1).
 *
 * The history is read with a snapshot taken after cur, so rows of aborted
 * transactions and rolled-back subtransactions are invisible; the stored
 * top-level xid is then tested against cur's snapshot.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/binaryheap.h"
#include "miscadmin.h"
#include "storage/procarray.h"
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
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"
#include "token.h"

#define FEED_COLUMNS	8

/* One ordered source of rows for the merge: (a) one open xid, or (b) the range. */
typedef struct FeedStream
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		is_range;
	int64		seq;			/* seq of the row the slot holds */
} FeedStream;

/* The state of one ec_feed.read() call. */
typedef struct FeedScan
{
	Relation	history;
	Relation	seq_index;
	Relation	xid_index;
	Snapshot	snapshot;		/* taken after cur */
	EcCursor   *cursor;
	EcCursorRows row_cursors;	/* of the delta being read */
	HTAB	   *allowed;		/* relid -> may the caller read it? */
	bool		rels_given;
	Tuplestorestate *store;
	TupleDesc	desc;
	MemoryContext row_context;
} FeedScan;

typedef struct AllowedRel
{
	Oid			relid;
	bool		allowed;
} AllowedRel;

static int
compare_xid(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

static void
refuse_in_recovery(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the change feed cannot be read during recovery"),
				 errdetail("A standby's copy of the version sequence runs ahead of the versions handed out, so a cursor taken there could skip changes."),
				 errhint("Read the feed on the primary; use ec_feed.token_status() on standbys.")));
}

/*
 * Take a mark. With snap NULL, a fresh snapshot; otherwise the given one
 * (cursor_now() passes the statement's), which was taken before lo is read.
 */
static void
take_mark(EcMark *mark, Snapshot snap)
{
	FullTransactionId next;
	FullTransactionId own = GetTopFullTransactionIdIfAny();
	int			n = 0;

	mark->lo = ec_feed_last_version();
	if (snap == NULL)
		snap = GetLatestSnapshot();
	next = ReadNextFullTransactionId();
	mark->hi = ec_feed_last_version();

	mark->nxt = U64FromFullTransactionId(next);
	mark->xmin = U64FromFullTransactionId(ec_widen_xid(snap->xmin, next));
	mark->xmax = U64FromFullTransactionId(ec_widen_xid(snap->xmax, next));
	mark->xip = palloc(sizeof(uint64) * (snap->xcnt + 1));
	for (uint32 i = 0; i < snap->xcnt; i++)
		mark->xip[n++] = U64FromFullTransactionId(ec_widen_xid(snap->xip[i], next));

	/*
	 * The caller's own transaction is not in its snapshot's xip, but its
	 * changes are not committed: treat it as open, so they are delivered
	 * after it commits.
	 */
	if (FullTransactionIdIsValid(own) && U64FromFullTransactionId(own) < mark->xmax)
	{
		mark->xip[n++] = U64FromFullTransactionId(own);
		if (U64FromFullTransactionId(own) < mark->xmin)
			mark->xmin = U64FromFullTransactionId(own);
	}
	mark->nxip = n;
	qsort(mark->xip, n, sizeof(uint64), compare_xid);
}

/* Was a committed top-level transaction visible at the mark? */
static bool
mark_sees(const EcMark *mark, uint64 xid)
{
	if (xid >= mark->xmax)
		return false;
	if (xid < mark->xmin)
		return true;
	return bsearch(&xid, mark->xip, mark->nxip, sizeof(uint64), compare_xid) == NULL;
}

/*
 * May the caller use the table's schema? A plain SELECT needs USAGE on it
 * as well as SELECT on the table.
 */
static bool
caller_may_use_schema(Oid relid)
{
	Oid			nspid = get_rel_namespace(relid);

	return OidIsValid(nspid) &&
		pg_namespace_aclcheck(nspid, GetUserId(), ACL_USAGE) == ACLCHECK_OK;
}

/* May the caller read the whole table, as a plain SELECT, without row-level security? */
static bool
caller_may_read(Oid relid)
{
	return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) &&
		caller_may_use_schema(relid) &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED;
}

static bool
rel_allowed(FeedScan *fs, Oid relid)
{
	bool		found;
	AllowedRel *entry = hash_search(fs->allowed, &relid,
									fs->rels_given ? HASH_FIND : HASH_ENTER, &found);

	if (fs->rels_given)
		return found;
	if (!found)
		entry->allowed = caller_may_read(relid);
	return entry->allowed;
}

/* The rels argument: every table must be tracked with history and readable. */
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
		bool		tracked;
		bool		history;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("rels must not contain NULL"),
					 errdetail("Each element of rels names a table whose changes to return."),
					 errhint("Pass the tables to read, or NULL for every table you may read.")));
		relid = DatumGetObjectId(elems[i]);
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", relid),
					 errdetail("rels names a table that was dropped, or an OID that is not a table's."),
					 errhint("Pass tables that exist.")));
		rel = relation_open(relid, AccessShareLock);
		tracked = ec_rel_tracked(rel, &history);
		relation_close(rel, AccessShareLock);
		if (!tracked)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is not tracked", get_rel_name(relid)),
					 errdetail("Only tables tracked by ec_feed have a change feed."),
					 errhint("Call ec_feed.track() on the table first.")));
		if (!history)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is tracked without history", get_rel_name(relid)),
					 errdetail("ec_feed.track() was called with history => false, so no changes are recorded."),
					 errhint("Call ec_feed.track() with history => true.")));
		if (!caller_may_use_schema(relid))
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
		hash_search(fs->allowed, &relid, HASH_ENTER, NULL);
	}
}

static int
compare_streams(Datum a, Datum b, void *arg)
{
	int64		x = ((FeedStream *) DatumGetPointer(a))->seq;
	int64		y = ((FeedStream *) DatumGetPointer(b))->seq;

	/* binaryheap keeps the largest first; we want the smallest seq */
	return (x < y) - (x > y);
}

static FeedStream *
open_stream(FeedScan *fs, bool is_range, uint64 xid, int64 after)
{
	FeedStream *stream = palloc(sizeof(FeedStream));
	ScanKeyData keys[2];

	stream->is_range = is_range;
	stream->slot = table_slot_create(fs->history, NULL);
	if (is_range)
	{
		ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
		stream->scan = index_beginscan(fs->history, fs->seq_index, fs->snapshot, 1, 0);
		index_rescan(stream->scan, keys, 1, NULL, 0);
	}
	else
	{
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(FullTransactionIdFromU64(xid)));
		ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
		stream->scan = index_beginscan(fs->history, fs->xid_index, fs->snapshot, 2, 0);
		index_rescan(stream->scan, keys, 2, NULL, 0);
	}
	return stream;
}

static void
close_stream(FeedStream *stream)
{
	index_endscan(stream->scan);
	ExecDropSingleTupleTableSlot(stream->slot);
	pfree(stream);
}

/* Advance to the stream's next row that belongs in the delta; false at its end. */
static bool
stream_next(FeedScan *fs, FeedStream *stream)
{
	const EcCursor *cursor = fs->cursor;

	while (index_getnext_slot(stream->scan, ForwardScanDirection, stream->slot))
	{
		bool		isnull;
		int64		seq = DatumGetInt64(slot_getattr(stream->slot, Anum_history_seq, &isnull));
		Oid			relid;

		CHECK_FOR_INTERRUPTS();
		if (stream->is_range)
		{
			uint64		xid;

			if (seq > cursor->cur.hi)
				return false;
			xid = U64FromFullTransactionId(DatumGetFullTransactionId(
																	 slot_getattr(stream->slot, Anum_history_xid, &isnull)));
			/* older transactions are in an earlier delta or in an (a) stream */
			if (xid < cursor->prev.nxt || !mark_sees(&cursor->cur, xid))
				continue;
		}
		relid = DatumGetObjectId(slot_getattr(stream->slot, Anum_history_relid, &isnull));
		if (!rel_allowed(fs, relid))
			continue;
		stream->seq = seq;
		return true;
	}
	return false;
}

static text *
op_text(char op)
{
	switch (op)
	{
		case EC_OP_INSERT:
			return cstring_to_text("insert");
		case EC_OP_UPDATE:
			return cstring_to_text("update");
		case EC_OP_DELETE:
			return cstring_to_text("delete");
	}
	elog(ERROR, "unexpected op \"%c\" in ec_feed.history", op);
	return NULL;				/* keep compiler quiet */
}

static void
emit_change(FeedScan *fs, TupleTableSlot *slot)
{
	Datum		values[FEED_COLUMNS];
	bool		nulls[FEED_COLUMNS] = {false};
	bool		isnull;
	MemoryContext old = MemoryContextSwitchTo(fs->row_context);

	values[0] = CStringGetTextDatum(ec_cursor_rows_encode(&fs->row_cursors, fs->cursor->last));
	values[1] = PointerGetDatum(op_text(DatumGetChar(slot_getattr(slot, Anum_history_op, &isnull))));
	values[2] = slot_getattr(slot, Anum_history_relid, &isnull);
	values[3] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(slot_getattr(slot, Anum_history_key, &isnull)));
	values[4] = slot_getattr(slot, Anum_history_seq, &isnull);
	values[5] = slot_getattr(slot, Anum_history_xid, &isnull);
	values[6] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(slot_getattr(slot, Anum_history_data, &isnull)));
	values[7] = slot_getattr(slot, Anum_history_changed, &nulls[7]);
	if (!nulls[7])
		values[7] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(values[7]));
	tuplestore_putvalues(fs->store, fs->desc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(fs->row_context);
}

/*
 * Return up to limit rows of the delta prev -> cur after cursor->last, in seq
 * order. Returns how many; *drained says whether the delta is finished.
 */
static int64
scan_delta(FeedScan *fs, int64 limit, bool *drained)
{
	EcCursor   *cursor = fs->cursor;
	const EcMark *prev = &cursor->prev;
	binaryheap *heap;
	int64		emitted = 0;
	FeedStream *stream;

	/* prev's open transactions: its xip, then [xmax, nxt) */
	heap = binaryheap_allocate(prev->nxip + (prev->nxt - prev->xmax) + 1,
							   compare_streams, NULL);
	for (uint64 i = 0, xid = prev->xmax; i < prev->nxip || xid < prev->nxt;)
	{
		uint64		open = i < prev->nxip ? prev->xip[i++] : xid++;

		CHECK_FOR_INTERRUPTS();
		if (!mark_sees(&cursor->cur, open))
			continue;
		stream = open_stream(fs, false, open, cursor->last);
		if (stream_next(fs, stream))
			binaryheap_add_unordered(heap, PointerGetDatum(stream));
		else
			close_stream(stream);
	}
	ec_cursor_rows_begin(&fs->row_cursors, cursor);
	stream = open_stream(fs, true, 0, Max(prev->lo, cursor->last));
	if (stream_next(fs, stream))
		binaryheap_add_unordered(heap, PointerGetDatum(stream));
	else
		close_stream(stream);
	binaryheap_build(heap);

	while (emitted < limit && !binaryheap_empty(heap))
	{
		stream = (FeedStream *) DatumGetPointer(binaryheap_first(heap));
		cursor->last = stream->seq;
		emit_change(fs, stream->slot);
		emitted++;
		if (stream_next(fs, stream))
			binaryheap_replace_first(heap, PointerGetDatum(stream));
		else
		{
			binaryheap_remove_first(heap);
			close_stream(stream);
		}
	}

	pfree(fs->row_cursors.raw.data);
	pfree(fs->row_cursors.prefix_text.data);
	*drained = binaryheap_empty(heap);
	while (!binaryheap_empty(heap))
	{
		stream = (FeedStream *) DatumGetPointer(binaryheap_remove_first(heap));
		close_stream(stream);
	}
	binaryheap_free(heap);
	return emitted;
}

PG_FUNCTION_INFO_V1(ec_feed_read);

/*
 * ec_feed.read(after text, max_rows int, rels regclass[])
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
	Datum		values[FEED_COLUMNS];
	bool		nulls[FEED_COLUMNS];

	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be at least 1"),
				 errdetail("Every page returns at most max_rows changes and one progress row."),
				 errhint("Pass the most rows one page may return, e.g. 1000.")));
	max_rows = PG_GETARG_INT32(1);
	refuse_in_recovery();

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
	fs.rels_given = !PG_ARGISNULL(2);
	if (fs.rels_given)
		check_rels(&fs, PG_GETARG_ARRAYTYPE_P(2));

	fs.history = table_open(ec_feed_relid(EC_HISTORY_REL), AccessShareLock);
	fs.seq_index = index_open(ec_feed_relid(EC_HISTORY_PKEY), AccessShareLock);
	fs.xid_index = index_open(ec_feed_relid(EC_HISTORY_XID_IDX), AccessShareLock);

	/*
	 * Finish the delta the cursor is in, then take one new mark and read
	 * towards it; a delta that ends with room left on the page moves prev.
	 */
	while (returned < max_rows)
	{
		bool		drained;

		if (!cursor.pending)
		{
			if (took_mark)
				break;			/* caught up with a mark of this call */
			take_mark(&cursor.cur, NULL);
			cursor.pending = true;
			cursor.last = 0;
			took_mark = true;
		}
		fs.snapshot = RegisterSnapshot(GetLatestSnapshot());
		returned += scan_delta(&fs, max_rows - returned, &drained);
		UnregisterSnapshot(fs.snapshot);
		if (drained)
		{
			cursor.prev = cursor.cur;
			cursor.pending = false;
		}
	}

	index_close(fs.xid_index, AccessShareLock);
	index_close(fs.seq_index, AccessShareLock);
	table_close(fs.history, AccessShareLock);

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
 * ec_feed.cursor_now(): a cursor at the caller's snapshot. In a REPEATABLE
 * READ transaction that also copies the tables, the feed from this cursor
 * continues exactly where the copy ends.
 */
Datum
ec_feed_cursor_now(PG_FUNCTION_ARGS)
{
	EcCursor	cursor;

	refuse_in_recovery();
	memset(&cursor, 0, sizeof(cursor));
	take_mark(&cursor.prev, GetActiveSnapshot());
	PG_RETURN_TEXT_P(cstring_to_text(ec_cursor_encode(&cursor)));
}
