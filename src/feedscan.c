/*
 * feedscan.c
 *		The delta of the change feed between two marks, read from
 *		ec_feed.history for ec_feed.read() (feed.c).
 *
 * A cursor holds a mark `prev` whose changes the consumer has read. The next
 * delta is every change whose transaction is visible at a newer mark `cur`
 * but was not at `prev`, returned in version (seq) order, which per row is
 * lock order and so commit order (G3). From the readings of a mark (mark.c),
 * the delta prev -> cur is the merge, by seq, of
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
 * The history is a series of segments (segment.c), each with the same
 * indexes: each stream reads one segment, and the merge covers every segment
 * that may hold a row of the delta (a frozen one whose newest writer is below
 * prev.xmin holds none; below prev.nxt, none of (b)). A transaction's rows are
 * in one segment, but nothing here relies on it: (a) is probed per segment.
 *
 * The history is read with a snapshot taken after cur, so rows of aborted
 * transactions and rolled-back subtransactions are invisible; the stored
 * top-level xid is then tested against cur's snapshot. Rows of tables the
 * caller may not read as a whole are skipped (rel_allowed); of a dropped
 * table, every caller gets the untrack entry that records the drop.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "lib/binaryheap.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"
#include "feed.h"
#include "segment.h"

/*
 * May the caller use the table's schema? A plain SELECT needs USAGE on it
 * as well as SELECT on the table.
 */
bool
ec_caller_may_use_schema(Oid relid)
{
	Oid			nspid = get_rel_namespace(relid);

	return OidIsValid(nspid) &&
		pg_namespace_aclcheck(nspid, GetUserId(), ACL_USAGE) == ACLCHECK_OK;
}

/*
 * May the caller read the whole table, as a plain SELECT, without row-level
 * security? A dropped table has no privileges left to check: its retained
 * changes are ec_feed's own record, readable by the roles that have the
 * privileges of the extension's owner (superusers too), as the history table.
 */
bool
ec_caller_may_read(Oid relid)
{
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		return has_privs_of_role(GetUserId(), ec_extension_owner());
	return ec_caller_may_use_schema(relid) &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED;
}

/*
 * Does the caller get this change? With rels, of the tables named; else of
 * the tables the caller may read. Either way, a dropped table's untrack entry
 * (table-level, no data) goes to every caller: it tells every consumer that
 * copied the table that it is gone, which no privilege could tell any more.
 * (rels may name a table that left the feed, see feed.c: it is entered with
 * the answer of ec_caller_may_read().)
 */
static bool
rel_allowed(FeedScan *fs, Oid relid, char op)
{
	bool		found;
	AllowedRel *entry;

	/* consecutive changes are mostly of one table: remember the last answer */
	if (relid != fs->last_relid || !OidIsValid(relid))
	{
		entry = hash_search(fs->allowed, &relid, fs->rels_given ? HASH_FIND : HASH_ENTER, &found);
		if (!fs->rels_given && !found)
			entry->allowed = ec_caller_may_read(relid);
		fs->last_relid = relid;
		fs->last_named = found || !fs->rels_given;
		fs->last_allowed = found || !fs->rels_given ? entry->allowed : false;
	}
	if (fs->last_allowed)
		return true;
	return op == EC_OP_UNTRACK && fs->last_named &&
		!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid));
}

/*
 * Open the segments of the history that are not open yet (all of them, on
 * the first call): called after each mark the read takes (see segment.c).
 * They stay locked to the end of the transaction, so that pruning cannot
 * drop one under a cursor's later page of the same transaction.
 */
void
ec_feed_open_segments(FeedScan *fs)
{
	const EcSegmentList *list = ec_segments();

	/* grown only for segments not open yet: a waiting read calls this per look */
	if (fs->segs == NULL)
	{
		fs->segs_size = Max(list->n, 1);
		fs->segs = palloc0(sizeof(FeedSegment) * fs->segs_size);
		fs->seg_ids = palloc0(sizeof(int64) * fs->segs_size);
	}
	else if (fs->segs_size < fs->nsegs + list->n)
	{
		fs->segs_size = fs->nsegs + list->n;
		fs->segs = repalloc(fs->segs, sizeof(FeedSegment) * fs->segs_size);
		fs->seg_ids = repalloc(fs->seg_ids, sizeof(int64) * fs->segs_size);
	}
	for (int i = 0; i < list->n; i++)
	{
		const EcSegment *seg = &list->segs[i];
		FeedSegment *fseg = &fs->segs[fs->nsegs];
		bool		open = false;

		for (int j = 0; j < fs->nsegs; j++)
			open |= fs->seg_ids[j] == seg->id;
		if (open || !OidIsValid(seg->relid))
			continue;
		fseg->heap = try_relation_open(seg->relid, AccessShareLock);
		if (fseg->heap == NULL)
			continue;			/* pruned meanwhile: the horizon says whether it mattered */
		fseg->seq_index = index_open(seg->seq_index, AccessShareLock);
		fseg->xid_index = index_open(seg->xid_index, AccessShareLock);
		fseg->rel_index = OidIsValid(seg->rel_index) ? index_open(seg->rel_index, AccessShareLock) : NULL;
		fseg->frozen = seg->frozen;
		fseg->max_xid = seg->max_xid;
		fs->seg_ids[fs->nsegs++] = seg->id;
	}
}

void
ec_feed_close_segments(FeedScan *fs)
{
	for (int i = 0; i < fs->nsegs; i++)
	{
		if (fs->segs[i].rel_index != NULL)
			index_close(fs->segs[i].rel_index, NoLock);
		index_close(fs->segs[i].xid_index, NoLock);
		index_close(fs->segs[i].seq_index, NoLock);
		relation_close(fs->segs[i].heap, NoLock);
	}
	fs->nsegs = 0;
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
begin_scan(FeedScan *fs, OpenScan *os, int seg, Relation index, int nkeys)
{
	os->seg = seg;
	os->scan = index_beginscan(fs->segs[seg].heap, index, fs->snapshot, nkeys, 0);
	os->slot = table_slot_create(fs->segs[seg].heap, NULL);
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

/* Position an (a) stream's scan before its first row in segment seg with seq > after. */
static void
position_xid(FeedScan *fs, OpenScan *os, int seg, uint64 xid, int64 after)
{
	ScanKeyData keys[2];

	if (os->scan != NULL && os->seg != seg)
		end_scan(os);
	if (os->scan == NULL)
		begin_scan(fs, os, seg, fs->segs[seg].xid_index, 2);
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
			if (xid < cursor->prev.nxt || !ec_mark_sees(&cursor->cur, xid))
				continue;
		}
		relid = DatumGetObjectId(slot_getattr(slot, Anum_history_relid, &isnull));
		if (!rel_allowed(fs, relid, DatumGetChar(slot_getattr(slot, Anum_history_op, &isnull))))
			continue;
		stream->seq = seq;
		return true;
	}
	return false;
}

/* The seq of transaction xid's first row in segment seg after `after`, if any. */
static bool
probe_xid(FeedScan *fs, int seg, uint64 xid, int64 after, int64 *seq)
{
	FeedStream	probe = {false, seg, xid, 0, &fs->probe};

	position_xid(fs, &fs->probe, seg, xid, after);
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
seek_xid(FeedScan *fs, int seg, uint64 from, uint64 to, uint64 *xid, int64 *seq, Oid *relid,
		 char *op)
{
	OpenScan   *os = &fs->seek;
	ScanKeyData keys[2];
	bool		isnull;

	if (os->scan != NULL && os->seg != seg)
		end_scan(os);
	if (os->scan == NULL)
		begin_scan(fs, os, seg, fs->segs[seg].xid_index, 2);
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
	*op = DatumGetChar(slot_getattr(os->slot, Anum_history_op, &isnull));
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
	position_xid(fs, os, stream->seg, stream->xid, stream->seq - 1);
}

/* The candidates for (a) streams, parked; grows by doubling. */
typedef struct Candidates
{
	FeedStream *items;
	int			n;
	int			size;
} Candidates;

static void
add_candidate(Candidates *c, int seg, uint64 xid, int64 seq)
{
	if (c->n == c->size)
	{
		c->size *= 2;
		c->items = repalloc_huge(c->items, sizeof(FeedStream) * c->size);
	}
	c->items[c->n].is_range = false;
	c->items[c->n].seg = seg;
	c->items[c->n].xid = xid;
	c->items[c->n].seq = seq;
	c->items[c->n].open = NULL;
	c->n++;
}

/* May segment seg hold rows of a transaction at or above xid? */
static bool
segment_may_hold(FeedScan *fs, int seg, uint64 xid)
{
	return !fs->segs[seg].frozen || fs->segs[seg].max_xid >= xid;
}

/*
 * The transactions open at prev and visible at cur that have rows after
 * cursor->last, each with the seq of its first such row, per segment (a
 * transaction writes into one segment, but nothing here relies on it). Only
 * xids visible at cur are looked at: rows of transactions still open are
 * never read. The xids of prev's xip are probed one by one (the cursor holds
 * each); the range [prev.xmax, prev.nxt) is searched by index descents that
 * skip xids without rows, so its width costs nothing.
 */
static void
find_candidates(FeedScan *fs, Candidates *c)
{
	const EcCursor *cursor = fs->cursor;
	const EcMark *prev = &cursor->prev;
	const EcMark *cur = &cursor->cur;
	uint64		end = Min(prev->nxt, cur->xmax);	/* cur sees none from cur.xmax on */

	for (int s = 0; s < fs->nsegs; s++)
	{
		uint64		from = prev->xmax;
		int			j = 0;

		if (!segment_may_hold(fs, s, prev->xmin))
			continue;
		for (int i = 0; i < prev->nxip; i++)
		{
			int64		seq;

			CHECK_FOR_INTERRUPTS();
			if (ec_mark_sees(cur, prev->xip[i]) &&
				probe_xid(fs, s, prev->xip[i], cursor->last, &seq))
				add_candidate(c, s, prev->xip[i], seq);
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
			char		op;

			while (from < to && seek_xid(fs, s, from, to, &xid, &seq, &relid, &op))
			{
				CHECK_FOR_INTERRUPTS();
				/* the first row of xid, unless it was read already or is filtered */
				if (seq > cursor->last && rel_allowed(fs, relid, op))
					add_candidate(c, s, xid, seq);
				else if (probe_xid(fs, s, xid, cursor->last, &seq))
					add_candidate(c, s, xid, seq);
				from = xid + 1;
			}
			from = to + 1;			/* past the xid open at cur */
			j++;
		}
	}
}

/* The op column's text; the texts are made once per read (feed.c). */
static Datum
op_text(FeedScan *fs, char op)
{
	switch (op)
	{
		case EC_OP_INSERT:
			return fs->op_texts[0];
		case EC_OP_UPDATE:
			return fs->op_texts[1];
		case EC_OP_DELETE:
			return fs->op_texts[2];
		case EC_OP_TRUNCATE:
			return fs->op_texts[3];
		case EC_OP_UNTRACK:
			return fs->op_texts[4];
	}
	elog(ERROR, "unexpected op \"%c\" in ec_feed.history", op);
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * A varlena of the history row for the result: as it is when inline, even
 * compressed (the result's reader decompresses it if it reads it at all);
 * fetched from the history's TOAST table, still compressed if it was, when
 * stored out of line, so that the result never points into that table.
 */
static Datum
inline_value(Datum value)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(value);

	return VARATT_IS_EXTERNAL(v) ? PointerGetDatum(detoast_external_attr(v)) : value;
}

/*
 * Add the change in the slot to the result. The history row's datums go in
 * as they are (tuplestore_putvalues copies them), so nothing is allocated per
 * row unless a value is stored out of line.
 */
static void
emit_change(FeedScan *fs, TupleTableSlot *slot)
{
	Datum		values[FEED_COLUMNS];
	bool		nulls[FEED_COLUMNS] = {false};
	MemoryContext old = MemoryContextSwitchTo(fs->row_context);
	char		op;
	bool		table_level;

	slot_getsomeattrs(slot, Anum_history_changed);
	op = DatumGetChar(slot->tts_values[Anum_history_op - 1]);
	values[0] = PointerGetDatum(ec_cursor_rows_encode(&fs->row_cursors, fs->cursor->last));
	values[1] = op_text(fs, op);
	values[2] = slot->tts_values[Anum_history_relid - 1];
	values[4] = slot->tts_values[Anum_history_seq - 1];
	values[5] = slot->tts_values[Anum_history_xid - 1];
	/* a truncate or untrack names no row: key and data NULL (stored as JSON null) */
	table_level = op == EC_OP_TRUNCATE || op == EC_OP_UNTRACK;
	nulls[3] = nulls[6] = table_level;
	values[3] = values[6] = (Datum) 0;
	if (!table_level)
	{
		values[3] = inline_value(slot->tts_values[Anum_history_key - 1]);
		values[6] = inline_value(slot->tts_values[Anum_history_data - 1]);
	}
	nulls[7] = slot->tts_isnull[Anum_history_changed - 1];
	values[7] = nulls[7] ? (Datum) 0 : inline_value(slot->tts_values[Anum_history_changed - 1]);
	tuplestore_putvalues(fs->store, fs->desc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(fs->row_context);
}

/*
 * Return up to limit rows of the delta prev -> cur after cursor->last, in seq
 * order. Returns how many; *drained says whether the delta is finished.
 */
int64
ec_scan_delta(FeedScan *fs, int64 limit, bool *drained)
{
	EcCursor   *cursor = fs->cursor;
	Candidates	c;
	int			nranges = 0;
	OpenScan   *range_scans = palloc0(sizeof(OpenScan) * fs->nsegs * Max(fs->nrels, 1));
	FeedStream *ranges = palloc0(sizeof(FeedStream) * fs->nsegs * Max(fs->nrels, 1));
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

	heap = binaryheap_allocate(c.n + fs->nsegs * Max(fs->nrels, 1), compare_streams, NULL);
	for (int i = 0; i < c.n; i++)
		binaryheap_add_unordered(heap, PointerGetDatum(&c.items[i]));

	/*
	 * (b), in each segment that may hold a transaction from prev.nxt on: with
	 * rels, one scan of each table's changes by version, so that other
	 * tables' changes in the range cost nothing; else one scan of all.
	 */
	for (int s = 0; s < fs->nsegs; s++)
	{
		bool		per_rel = fs->range_rels != NULL && fs->segs[s].rel_index != NULL;

		if (!segment_may_hold(fs, s, cursor->prev.nxt))
			continue;
		for (int r = 0; r < (per_rel ? fs->nrels : 1); r++)
		{
			ScanKeyData keys[2];
			OpenScan   *os = &range_scans[nranges];
			FeedStream *stream = &ranges[nranges++];

			stream->is_range = true;
			stream->seg = s;
			stream->xid = 0;
			stream->open = os;
			if (per_rel)
			{
				begin_scan(fs, os, s, fs->segs[s].rel_index, 2);
				ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ,
							ObjectIdGetDatum(fs->range_rels[r]));
				ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
				index_rescan(os->scan, keys, 2, NULL, 0);
			}
			else
			{
				begin_scan(fs, os, s, fs->segs[s].seq_index, 1);
				ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
				index_rescan(os->scan, keys, 1, NULL, 0);
			}
			if (stream_next(fs, stream))
				binaryheap_add_unordered(heap, PointerGetDatum(stream));
		}
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

	ec_cursor_rows_end(&fs->row_cursors);
	*drained = binaryheap_empty(heap);
	binaryheap_free(heap);
	for (int i = 0; i < FEED_OPEN_SCANS; i++)
		end_scan(&fs->pool[i]);
	for (int i = 0; i < nranges; i++)
		end_scan(&range_scans[i]);
	pfree(ranges);
	pfree(range_scans);
	pfree(c.items);
	return emitted;
}
