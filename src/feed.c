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
 *		visible at cur, read through the primary key on seq, or, when rels
 *		names the tables, through the index on (relid, seq), one scan per
 *		table, so that other tables' changes cost nothing.
 * Nothing depends on the size of the history or on the age of the oldest open
 * transaction (G4); an open transaction hides only its own rows (G2); all
 * rows of a transaction enter the same delta (G5) and exactly one (G1).
 *
 * The history is read with a snapshot taken after cur, so rows of aborted
 * transactions and rolled-back subtransactions are invisible; the stored
 * top-level xid is then tested against cur's snapshot.
 */
#include "postgres.h"

#include "access/clog.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/binaryheap.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
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

/*
 * The merge keeps at most this many index scans of (a) streams open; the
 * others are parked at their next row and repositioned when they become the
 * smallest again. So a read's memory does not grow with the number of
 * transactions a cursor names as open (a forged cursor can name millions).
 */
#define FEED_OPEN_SCANS	16

struct FeedStream;

/* An index scan with its slot, lent to one stream at a time. */
typedef struct OpenScan
{
	IndexScanDesc scan;			/* NULL until first lent */
	TupleTableSlot *slot;
	struct FeedStream *owner;	/* NULL when free */
	uint64		used;			/* when its owner last returned a row */
} OpenScan;

/* One ordered source of rows for the merge: (a) one open xid, or (b) the range. */
typedef struct FeedStream
{
	bool		is_range;
	uint64		xid;			/* (a): the transaction */
	int64		seq;			/* seq of the stream's next row */
	OpenScan   *open;			/* its scan, positioned on that row; NULL while parked */
} FeedStream;

/* The state of one ec_feed.read() call. */
typedef struct FeedScan
{
	Relation	history;
	Relation	seq_index;
	Relation	xid_index;
	Relation	rel_index;		/* (relid, seq); NULL before the 0.2.0 upgrade */
	Snapshot	snapshot;		/* taken after cur */
	EcCursor   *cursor;
	EcCursorRows row_cursors;	/* of the delta being read */
	HTAB	   *allowed;		/* relid -> may the caller read it? */
	bool		rels_given;
	Tuplestorestate *store;
	TupleDesc	desc;
	MemoryContext row_context;
	/* index scans of the delta being read */
	OpenScan	pool[FEED_OPEN_SCANS];	/* lent to (a) streams */
	OpenScan	probe;			/* finds the first row of an (a) stream */
	OpenScan	seek;			/* finds the xids in [prev.xmax, prev.nxt) with rows */
	int			nranges;
	Oid		   *range_rels;		/* with rels: the table of each (b) stream */
	OpenScan   *ranges;			/* the (b) streams: one, or one per table of rels */
	uint64		clock;
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
 * The end of the WAL inserted so far, as a flush request. At the start of a
 * page GetXLogInsertRecPtr() points past the page header, where no record
 * ends and which XLogFlush() cannot reach until more is inserted.
 */
static XLogRecPtr
wal_inserted_upto(void)
{
	XLogRecPtr	upto = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(upto, wal_segment_size) == SizeOfXLogLongPHD)
		upto -= SizeOfXLogLongPHD;
	else if (upto % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		upto -= SizeOfXLogShortPHD;
	return upto;
}

/*
 * Make durable what a mark names before a cursor holding it leaves the
 * server, so that a crash cannot take it back:
 *	- the sequence's logged advance past lo and hi: else the sequence hands
 *	  out those versions again after a crash, and the cursor treats the new
 *	  changes as read. The record that logged it last touched the page.
 *	- that no xid the snapshot saw finish is assigned again after a crash:
 *	  else the cursor treats a new transaction with a reused xid as visible
 *	  before it. Recovery advances the next xid past every xid it replays, so
 *	  it is enough that the end record of the latest completed transaction
 *	  (xmax - 1) is durable: a synchronous commit flushed it before it
 *	  became visible, an asynchronous one left its LSN in the commit log, and
 *	  for an abort, whose LSN is not kept, everything inserted is flushed.
 * Under a write load this mostly finds everything flushed already, so a
 * polling consumer rarely waits for a flush of other transactions' WAL.
 */
static void
make_durable(TransactionId xmax)
{
	TransactionId latest = xmax;
	XLogRecPtr	need;
	XLogRecPtr	commit_lsn = InvalidXLogRecPtr;
	Relation	seq = relation_open(ec_feed_relid(EC_VERSION_SEQ), AccessShareLock);
	Buffer		buf = ReadBuffer(seq, 0);

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	need = PageGetLSN(BufferGetPage(buf));
	UnlockReleaseBuffer(buf);
	relation_close(seq, AccessShareLock);

	TransactionIdRetreat(latest);
	if (TransactionIdIsNormal(latest))
	{
		if (TransactionIdGetStatus(latest, &commit_lsn) != TRANSACTION_STATUS_COMMITTED)
			need = wal_inserted_upto();
		else if (commit_lsn > need)
			need = commit_lsn;
	}
	if (need > GetFlushRecPtr(NULL))
		XLogFlush(need);
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
	qsort(mark->xip, n, sizeof(uint64), compare_xid);

	/*
	 * A transaction being prepared is listed twice in the proc array for a
	 * moment (twophase.c): keep each xid once.
	 */
	mark->nxip = 0;
	for (int i = 0; i < n; i++)
	{
		if (mark->nxip == 0 || mark->xip[mark->nxip - 1] != mark->xip[i])
			mark->xip[mark->nxip++] = mark->xip[i];
	}

	make_durable(snap->xmax);
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

static void
begin_scan(FeedScan *fs, OpenScan *os, Relation index, int nkeys)
{
	os->scan = index_beginscan(fs->history, index, fs->snapshot, nkeys, 0);
	os->slot = table_slot_create(fs->history, NULL);
}

static void
end_scan(OpenScan *os)
{
	if (os->scan == NULL)
		return;
	index_endscan(os->scan);
	ExecDropSingleTupleTableSlot(os->slot);
	os->scan = NULL;
}

/* Position an (a) stream's scan before its first row with seq > after. */
static void
position_xid(FeedScan *fs, OpenScan *os, uint64 xid, int64 after)
{
	ScanKeyData keys[2];

	if (os->scan == NULL)
		begin_scan(fs, os, fs->xid_index, 2);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(xid)));
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
	index_rescan(os->scan, keys, 2, NULL, 0);
}

/* Advance to the stream's next row that belongs in the delta; false at its end. */
static bool
stream_next(FeedScan *fs, FeedStream *stream)
{
	const EcCursor *cursor = fs->cursor;
	TupleTableSlot *slot = stream->open->slot;

	while (index_getnext_slot(stream->open->scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int64		seq = DatumGetInt64(slot_getattr(slot, Anum_history_seq, &isnull));
		Oid			relid;

		CHECK_FOR_INTERRUPTS();
		if (stream->is_range)
		{
			uint64		xid;

			if (seq > cursor->cur.hi)
				return false;
			xid = U64FromFullTransactionId(DatumGetFullTransactionId(
																	 slot_getattr(slot, Anum_history_xid, &isnull)));
			/* older transactions are in an earlier delta or in an (a) stream */
			if (xid < cursor->prev.nxt || !mark_sees(&cursor->cur, xid))
				continue;
		}
		relid = DatumGetObjectId(slot_getattr(slot, Anum_history_relid, &isnull));
		if (!rel_allowed(fs, relid))
			continue;
		stream->seq = seq;
		return true;
	}
	return false;
}

/* The seq of transaction xid's first row in the delta after `after`, if any. */
static bool
probe_xid(FeedScan *fs, uint64 xid, int64 after, int64 *seq)
{
	FeedStream	probe = {false, xid, 0, &fs->probe};

	position_xid(fs, &fs->probe, xid, after);
	if (!stream_next(fs, &probe))
		return false;
	*seq = probe.seq;
	return true;
}

/*
 * The smallest xid in [from, to) that has a row visible to the scan's
 * snapshot, with that row's seq and table. One index descent, however many
 * xids of the range have no rows.
 */
static bool
seek_xid(FeedScan *fs, uint64 from, uint64 to, uint64 *xid, int64 *seq, Oid *relid)
{
	OpenScan   *os = &fs->seek;
	ScanKeyData keys[2];
	bool		isnull;

	if (os->scan == NULL)
		begin_scan(fs, os, fs->xid_index, 2);
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_XID8GE,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(from)));
	ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_XID8LT,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(to)));
	index_rescan(os->scan, keys, 2, NULL, 0);
	if (!index_getnext_slot(os->scan, ForwardScanDirection, os->slot))
		return false;
	*xid = U64FromFullTransactionId(DatumGetFullTransactionId(
															  slot_getattr(os->slot, Anum_history_xid, &isnull)));
	*seq = DatumGetInt64(slot_getattr(os->slot, Anum_history_seq, &isnull));
	*relid = DatumGetObjectId(slot_getattr(os->slot, Anum_history_relid, &isnull));
	return true;
}

/* Lend a scan of the pool to a parked stream: a free one, or the least recently used. */
static void
unpark(FeedScan *fs, FeedStream *stream)
{
	OpenScan   *os = &fs->pool[0];

	for (int i = 0; i < FEED_OPEN_SCANS; i++)
	{
		if (fs->pool[i].owner == NULL)
		{
			os = &fs->pool[i];
			break;
		}
		if (fs->pool[i].used < os->used)
			os = &fs->pool[i];
	}
	if (os->owner != NULL)
		os->owner->open = NULL; /* parked at its next row, os->owner->seq */
	os->owner = stream;
	stream->open = os;
	position_xid(fs, os, stream->xid, stream->seq - 1);
}

/* The candidates for (a) streams, parked; grows by doubling. */
typedef struct Candidates
{
	FeedStream *items;
	int			n;
	int			size;
} Candidates;

static void
add_candidate(Candidates *c, uint64 xid, int64 seq)
{
	if (c->n == c->size)
	{
		c->size *= 2;
		c->items = repalloc_huge(c->items, sizeof(FeedStream) * c->size);
	}
	c->items[c->n].is_range = false;
	c->items[c->n].xid = xid;
	c->items[c->n].seq = seq;
	c->items[c->n].open = NULL;
	c->n++;
}

/*
 * The transactions open at prev and visible at cur that have rows after
 * cursor->last, each with the seq of its first such row. Only xids visible
 * at cur are looked at: rows of transactions still open are never read. The
 * xids of prev's xip are probed one by one (the cursor holds each); the
 * range [prev.xmax, prev.nxt) is searched by index descents that skip xids
 * without rows, so its width costs nothing.
 */
static void
find_candidates(FeedScan *fs, Candidates *c)
{
	const EcCursor *cursor = fs->cursor;
	const EcMark *prev = &cursor->prev;
	const EcMark *cur = &cursor->cur;
	uint64		from = prev->xmax;
	uint64		end = Min(prev->nxt, cur->xmax);	/* cur sees none from cur.xmax on */
	int			j = 0;

	for (int i = 0; i < prev->nxip; i++)
	{
		int64		seq;

		CHECK_FOR_INTERRUPTS();
		if (mark_sees(cur, prev->xip[i]) &&
			probe_xid(fs, prev->xip[i], cursor->last, &seq))
			add_candidate(c, prev->xip[i], seq);
	}

	/* [prev.xmax, end) in segments between the xids open at cur */
	while (j < cur->nxip && cur->xip[j] < from)
		j++;
	while (from < end)
	{
		uint64		to = (j < cur->nxip && cur->xip[j] < end) ? cur->xip[j] : end;
		uint64		xid;
		int64		seq;
		Oid			relid;

		while (from < to && seek_xid(fs, from, to, &xid, &seq, &relid))
		{
			CHECK_FOR_INTERRUPTS();
			/* the first row of xid, unless it was read already or is filtered */
			if (seq > cursor->last && rel_allowed(fs, relid))
				add_candidate(c, xid, seq);
			else if (probe_xid(fs, xid, cursor->last, &seq))
				add_candidate(c, xid, seq);
			from = xid + 1;
		}
		from = to + 1;			/* past the xid open at cur */
		j++;
	}
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
	Candidates	c;
	FeedStream *ranges = palloc(sizeof(FeedStream) * fs->nranges);
	binaryheap *heap;
	int64		emitted = 0;
	int64		after = Max(cursor->prev.lo, cursor->last);

	memset(fs->pool, 0, sizeof(fs->pool));
	memset(&fs->probe, 0, sizeof(OpenScan));
	memset(&fs->seek, 0, sizeof(OpenScan));
	fs->clock = 0;

	c.n = 0;
	c.size = 16;
	c.items = palloc(sizeof(FeedStream) * c.size);
	find_candidates(fs, &c);
	end_scan(&fs->probe);
	end_scan(&fs->seek);

	heap = binaryheap_allocate(c.n + fs->nranges, compare_streams, NULL);
	for (int i = 0; i < c.n; i++)
		binaryheap_add_unordered(heap, PointerGetDatum(&c.items[i]));

	/*
	 * (b): with rels, one scan of each table's changes by version, so that
	 * other tables' changes in the range cost nothing; else one scan of all.
	 */
	for (int i = 0; i < fs->nranges; i++)
	{
		ScanKeyData keys[2];
		OpenScan   *os = &fs->ranges[i];

		ranges[i].is_range = true;
		ranges[i].xid = 0;
		ranges[i].open = os;
		if (fs->range_rels != NULL)
		{
			begin_scan(fs, os, fs->rel_index, 2);
			ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ,
						ObjectIdGetDatum(fs->range_rels[i]));
			ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
			index_rescan(os->scan, keys, 2, NULL, 0);
		}
		else
		{
			begin_scan(fs, os, fs->seq_index, 1);
			ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
			index_rescan(os->scan, keys, 1, NULL, 0);
		}
		if (stream_next(fs, &ranges[i]))
			binaryheap_add_unordered(heap, PointerGetDatum(&ranges[i]));
	}
	binaryheap_build(heap);
	ec_cursor_rows_begin(&fs->row_cursors, cursor);

	while (emitted < limit && !binaryheap_empty(heap))
	{
		FeedStream *stream = (FeedStream *) DatumGetPointer(binaryheap_first(heap));

		if (stream->open == NULL)
		{
			int64		seq = stream->seq;

			unpark(fs, stream);
			if (!stream_next(fs, stream))
				elog(ERROR, "ec_feed: row %lld of transaction %llu is gone from the history",
					 (long long) seq, (unsigned long long) stream->xid);
			if (stream->seq != seq)
				elog(ERROR, "ec_feed: row %lld of transaction %llu moved in the history",
					 (long long) seq, (unsigned long long) stream->xid);
		}
		stream->open->used = ++fs->clock;
		cursor->last = stream->seq;
		emit_change(fs, stream->open->slot);
		emitted++;
		if (stream_next(fs, stream))
			binaryheap_replace_first(heap, PointerGetDatum(stream));
		else
		{
			binaryheap_remove_first(heap);
			if (!stream->is_range)
				stream->open->owner = NULL;
			stream->open = NULL;
		}
	}

	pfree(fs->row_cursors.raw.data);
	pfree(fs->row_cursors.prefix_text.data);
	*drained = binaryheap_empty(heap);
	binaryheap_free(heap);
	for (int i = 0; i < FEED_OPEN_SCANS; i++)
		end_scan(&fs->pool[i]);
	for (int i = 0; i < fs->nranges; i++)
		end_scan(&fs->ranges[i]);
	pfree(ranges);
	pfree(c.items);
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
	Oid			rel_index;
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
	rel_index = get_relname_relid(EC_HISTORY_REL_SEQ_IDX, ec_feed_namespace());
	fs.rel_index = OidIsValid(rel_index) ? index_open(rel_index, AccessShareLock) : NULL;
	fs.nranges = 1;
	fs.range_rels = NULL;
	if (fs.rels_given && fs.rel_index != NULL)
	{
		HASH_SEQ_STATUS status;
		AllowedRel *entry;

		/* the tables of rels, each once (check_rels entered them) */
		fs.nranges = 0;
		fs.range_rels = palloc(sizeof(Oid) * Max(hash_get_num_entries(fs.allowed), 1));
		hash_seq_init(&status, fs.allowed);
		while ((entry = hash_seq_search(&status)) != NULL)
			fs.range_rels[fs.nranges++] = entry->relid;
	}
	fs.ranges = palloc0(sizeof(OpenScan) * Max(fs.nranges, 1));

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

	if (fs.rel_index != NULL)
		index_close(fs.rel_index, AccessShareLock);
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
