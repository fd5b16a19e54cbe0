/*
 * publish.c
 *		Marks published by the primary, so that the feed can be read on hot
 *		standbys.
 *
 * On a standby a mark cannot be taken: its copy of the version sequence runs
 * ahead of the versions handed out (nextval logs 32 ahead), and a
 * transaction it has not replayed yet may hold versions below what it has
 * replayed, so mark.c's argument (an xid at or above nxt drew its versions
 * after lo was read) does not hold there. Instead the primary publishes
 * marks it took into ec_feed.mark. A published mark that a standby has
 * replayed is complete there: every transaction visible at the mark
 * committed before the mark was taken, so before the mark's own commit in
 * the WAL. A standby reads the feed only up to such marks, and the delta
 * between two marks is computed the same way as on the primary (feedscan.c).
 *
 * A delta may only move a cursor forward: the new mark must see everything
 * the cursor's mark saw (mark_covers), or a consumer coming from the primary
 * to a lagging standby would be given changes again. A cursor handed out in
 * the middle of a delta whose end mark this standby has not replayed yet
 * waits (mark_replayed): the page is empty and the cursor unchanged.
 *
 * Who publishes: a writer of tracked rows, from its row trigger, at most once
 * per ec_feed.publish_interval per session (the mark then lists the writer's
 * own transaction as open: its changes need the next mark); a read of the
 * feed on the primary; ec_feed.publish_mark(); and, with ec_feed in
 * shared_preload_libraries, a background worker per database named in
 * ec_feed.publish_databases that publishes whenever something finished since
 * its last mark (publisher.c).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"
#include "feed.h"
#include "publish.h"

#define EC_MARK_REL			"mark"
#define EC_MARK_SEQ			"mark_seq"

/* columns of ec_feed.mark */
#define Natts_mark			8
#define Anum_mark_id		1
#define Anum_mark_lo		2
#define Anum_mark_hi		3
#define Anum_mark_nxt		4	/* next_xid */
#define Anum_mark_xmin		5	/* snap_xmin */
#define Anum_mark_xmax		6	/* snap_xmax */
#define Anum_mark_xip		7	/* snap_xip */
#define Anum_mark_published_at	8

static TimestampTz last_published = 0;

/* Is there a table of published marks (0.3.0)? */
static Oid
mark_relid(void)
{
	return get_relname_relid(EC_MARK_REL, ec_feed_namespace());
}

/* Insert the mark into ec_feed.mark (the caller's transaction commits it). */
static void
insert_mark(const EcMark *mark, Oid relid)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	Datum		values[Natts_mark];
	bool		nulls[Natts_mark] = {false};
	Datum	   *xip = palloc(sizeof(Datum) * Max(mark->nxip, 1));
	HeapTuple	tuple;

	for (int i = 0; i < mark->nxip; i++)
		xip[i] = FullTransactionIdGetDatum(FullTransactionIdFromU64(mark->xip[i]));
	values[Anum_mark_id - 1] = Int64GetDatum(nextval_internal(ec_feed_relid(EC_MARK_SEQ), false));
	values[Anum_mark_lo - 1] = Int64GetDatum(mark->lo);
	values[Anum_mark_hi - 1] = Int64GetDatum(mark->hi);
	values[Anum_mark_nxt - 1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(mark->nxt));
	values[Anum_mark_xmin - 1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(mark->xmin));
	values[Anum_mark_xmax - 1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(mark->xmax));
	values[Anum_mark_xip - 1] = PointerGetDatum(construct_array(xip, mark->nxip, XID8OID, sizeof(uint64),
																FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[Anum_mark_published_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	ec_insert_tuple(rel, tuple);
	heap_freetuple(tuple);
	table_close(rel, RowExclusiveLock);
}

/* Publish this mark now; false when there is nowhere to (before 0.3.0). */
bool
ec_publish(const EcMark *mark)
{
	Oid			relid;

	if (RecoveryInProgress() || XactReadOnly)
		return false;
	relid = mark_relid();
	if (!OidIsValid(relid))
		return false;
	insert_mark(mark, relid);
	last_published = GetCurrentTimestamp();
	return true;
}

/* Has this session not published for publish_interval? */
bool
ec_publish_due(void)
{
	return ec_publish_interval_ms > 0 && !RecoveryInProgress() && !XactReadOnly &&
		TimestampDifferenceExceeds(last_published, GetCurrentTimestamp(), ec_publish_interval_ms);
}

/* The row trigger: publish a mark if this session's is due. */
void
ec_publish_if_due(void)
{
	EcMark		mark;

	if (!ec_publish_due() || !OidIsValid(mark_relid()))
		return;
	ec_take_mark(&mark, NULL);
	ec_publish(&mark);
}

/*
 * Does m see every transaction that p saw? Both are marks of the primary;
 * then moving a cursor from p to m loses and repeats nothing.
 */
bool
ec_mark_covers(const EcMark *m, const EcMark *p)
{
	if (m->xmax < p->xmax || m->nxt < p->nxt || m->lo < p->lo || m->hi < p->hi)
		return false;
	for (int i = 0; i < m->nxip && m->xip[i] < p->xmax; i++)
		if (bsearch(&m->xip[i], p->xip, p->nxip, sizeof(uint64), ec_compare_xid) == NULL)
			return false;
	return true;
}

static void
read_mark(HeapTuple tuple, TupleDesc desc, EcMark *mark)
{
	bool		isnull;
	ArrayType  *xip;
	Datum	   *elems;
	int			n;

	mark->lo = DatumGetInt64(heap_getattr(tuple, Anum_mark_lo, desc, &isnull));
	mark->hi = DatumGetInt64(heap_getattr(tuple, Anum_mark_hi, desc, &isnull));
	mark->nxt = U64FromFullTransactionId(DatumGetFullTransactionId(heap_getattr(tuple, Anum_mark_nxt, desc, &isnull)));
	mark->xmin = U64FromFullTransactionId(DatumGetFullTransactionId(heap_getattr(tuple, Anum_mark_xmin, desc, &isnull)));
	mark->xmax = U64FromFullTransactionId(DatumGetFullTransactionId(heap_getattr(tuple, Anum_mark_xmax, desc, &isnull)));
	xip = DatumGetArrayTypeP(heap_getattr(tuple, Anum_mark_xip, desc, &isnull));
	deconstruct_array(xip, XID8OID, sizeof(uint64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, NULL, &n);
	mark->nxip = n;
	mark->xip = palloc(sizeof(uint64) * Max(n, 1));
	for (int i = 0; i < n; i++)
		mark->xip[i] = U64FromFullTransactionId(DatumGetFullTransactionId(elems[i]));
}

/*
 * The newest mark published and visible in snap that covers prev (NULL:
 * any). Ids are drawn after the mark is taken, so a slightly older mark can
 * carry a newer id: the few newest are tried.
 */
bool
ec_newest_published_mark(EcMark *mark, const EcMark *prev, Snapshot snap)
{
	Oid			relid = mark_relid();
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;
	int			tried = 0;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	index = index_open(get_relname_relid("mark_pkey", ec_feed_namespace()), AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snap, 0, 0);
	index_rescan(scan, NULL, 0, NULL, 0);
	while (!found && tried++ < 16 &&
		   index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		should_free;
		HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);

		read_mark(tuple, RelationGetDescr(rel), mark);
		if (should_free)
			heap_freetuple(tuple);
		found = prev == NULL || ec_mark_covers(mark, prev);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * On a standby: has it replayed every transaction visible at mark m? Then
 * each of them is visible in a snapshot taken now (running xids of a
 * recovery snapshot are in subxip). An overflowed snapshot cannot tell.
 */
bool
ec_mark_replayed(const EcMark *m)
{
	Snapshot	snap = GetLatestSnapshot();
	FullTransactionId next = ReadNextFullTransactionId();

	if (snap->suboverflowed)
		return false;
	if (U64FromFullTransactionId(ec_widen_xid(snap->xmax, next)) < m->xmax)
		return false;
	for (int i = 0; i < snap->subxcnt; i++)
	{
		uint64		x = U64FromFullTransactionId(ec_widen_xid(snap->subxip[i], next));

		if (x < m->xmax &&
			bsearch(&x, m->xip, m->nxip, sizeof(uint64), ec_compare_xid) == NULL)
			return false;
	}
	for (int i = 0; i < snap->xcnt; i++)
	{
		uint64		x = U64FromFullTransactionId(ec_widen_xid(snap->xip[i], next));

		if (x < m->xmax &&
			bsearch(&x, m->xip, m->nxip, sizeof(uint64), ec_compare_xid) == NULL)
			return false;
	}
	return true;
}

PG_FUNCTION_INFO_V1(ec_feed_publish_mark);

/*
 * ec_feed.publish_mark(): publish a mark now, so that hot standbys can read
 * the feed up to here once they replay it. For a scheduler when no
 * background worker publishes.
 */
Datum
ec_feed_publish_mark(PG_FUNCTION_ARGS)
{
	EcMark		mark;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("marks are published on the primary"),
				 errdetail("A standby reads the marks the primary published."),
				 errhint("Call ec_feed.publish_mark() on the primary.")));
	ec_take_mark(&mark, NULL);
	if (!ec_publish(&mark))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot publish a mark in a read-only transaction"),
				 errdetail("Publishing a mark writes a row of ec_feed.mark."),
				 errhint("Call ec_feed.publish_mark() in a read-write transaction.")));
	PG_RETURN_VOID();
}
