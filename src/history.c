/*
 * history.c
 *		Appending changes to the history (its current segment, segment.c).
 *
 * The row trigger is the hot path, so a change is inserted with the heap and
 * index access methods directly instead of through SPI and the executor. The
 * writer needs no privilege on the history table: it is ec_feed's own record
 * of what the writer was allowed to do anyway.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "utils/snapmgr.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"
#include "segment.h"

/*
 * Does the history hold a change of this row, made by another transaction,
 * with a version above `version`?
 *
 * An INSERT draws its version in the BEFORE trigger, ahead of the unique
 * check. If another transaction was deleting the same key, the insert waited
 * for it there and now follows a delete whose version is higher. The insert
 * is then recorded under a fresh version, so that the feed returns the key's
 * changes in the order they were made (G3). The deleter has committed (else
 * the unique check would still wait or have failed), so SnapshotSelf sees its
 * change. (The stamp trigger waits for such deleters before it draws, so this
 * is left for a delete that began in the short window after that wait.)
 *
 * The inserting transaction's own later changes of the key (an AFTER trigger
 * that updates or deletes the new row, fired before this record trigger) do
 * not count: they drew their versions after the insert, in the order they
 * were made, so the insert's own version already orders them. But when both
 * exist, no fresh version can go between the other's delete and our own
 * later change: the transaction must be retried (serialization failure).
 */
static bool
has_later_change(const EcChange *change)
{
	const EcSegmentList *segments = ec_segments();
	bool		other_later = false;
	bool		own_later = false;

	for (int i = 0; i < segments->n && !(other_later && own_later); i++)
	{
		const EcSegment *seg = &segments->segs[i];
		Relation	history;
		Relation	index;
		IndexScanDesc scan;
		ScanKeyData keys[3];
		TupleTableSlot *slot;

		if (!OidIsValid(seg->relid) || (seg->frozen && seg->max_version <= change->seq))
			continue;
		history = try_relation_open(seg->relid, AccessShareLock);
		if (history == NULL)
			continue;			/* pruned: holds nothing this recent */
		index = index_open(seg->key_index, AccessShareLock);
		slot = table_slot_create(history, NULL);
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(change->relid));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_JSONB_EQ, JsonbPGetDatum(change->key));
		ScanKeyInit(&keys[2], 3, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(change->seq));
		scan = index_beginscan(history, index, SnapshotSelf, 3, 0);
		index_rescan(scan, keys, 3, NULL, 0);
		while (!(other_later && own_later) &&
			   index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			FullTransactionId writer;

			writer = DatumGetFullTransactionId(slot_getattr(slot, Anum_history_xid, &isnull));
			if (FullTransactionIdEquals(writer, change->xid))
				own_later = true;
			else
				other_later = true;
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(index, AccessShareLock);
		relation_close(history, AccessShareLock);
	}

	if (other_later && own_later)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not record the insert into \"%s\" in the order of its key's changes",
						get_rel_name(change->relid)),
				 errdetail("A concurrent transaction changed the key after this insert drew its version, and this transaction changed the new row since; no version orders the three."),
				 errhint("Retry the transaction.")));
	return other_later;
}

/* Record a change; an insert may get a fresh version (see has_later_change). */
void
ec_history_append(EcChange *change)
{
	Relation	history;
	Datum		values[Natts_history];
	bool		nulls[Natts_history] = {false};
	HeapTuple	tuple;

	history = table_open(ec_segment_for_write(change->xid), RowExclusiveLock);
	if (change->op == EC_OP_INSERT && has_later_change(change))
	{
		int64		drawn = change->seq;

		change->seq = ec_feed_next_version();
		/* rare (see track.c): tests count it */
		ereport(DEBUG1,
				(errmsg_internal("ec_feed: insert re-versioned from " INT64_FORMAT " to " INT64_FORMAT,
								 drawn, change->seq)));
	}

	values[Anum_history_seq - 1] = Int64GetDatum(change->seq);
	values[Anum_history_xid - 1] = FullTransactionIdGetDatum(change->xid);
	values[Anum_history_relid - 1] = ObjectIdGetDatum(change->relid);
	values[Anum_history_op - 1] = CharGetDatum(change->op);
	values[Anum_history_key - 1] = JsonbPGetDatum(change->key);
	values[Anum_history_data - 1] = JsonbPGetDatum(change->data);
	if (change->changed)
		values[Anum_history_changed - 1] = PointerGetDatum(change->changed);
	else
		nulls[Anum_history_changed - 1] = true;
	values[Anum_history_prev_version - 1] = Int64GetDatum(change->prev_version);
	nulls[Anum_history_prev_version - 1] = !change->has_prev_version;

	/*
	 * seq is a version the stamp trigger drew (track.c checks that no other
	 * trigger replaced it); the primary key still checks it, so that nothing
	 * can ever record a version twice.
	 */
	tuple = heap_form_tuple(RelationGetDescr(history), values, nulls);
	ec_insert_tuple(history, tuple);
	heap_freetuple(tuple);
	table_close(history, RowExclusiveLock);
}

