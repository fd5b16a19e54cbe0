/*
 * history.c
 *		Appending changes to the history (its current segment, segment.c).
 *
 * The row trigger is the hot path, so a change is inserted with the heap and
 * index access methods directly instead of through SPI and the executor. The
 * writer needs no privilege on the history table: it is ec_feed's own record
 * of what the writer was allowed to do anyway.
 *
 * Per change: one heap tuple and one entry in each of the four indexes, each
 * used by a reader that cannot do without it: (seq), the primary key, for
 * the feed's range of versions and for uniqueness; (xid, seq) for the
 * changes of the transactions a mark saw open (feed, tokens); (relid, seq)
 * for a read of some tables only; (relid, key hash, seq) for the changes of
 * one key (conditional writes, the insert's check below). The last held the
 * jsonb key itself before 0.3.0: comparing jsonb keys down that index was
 * about a quarter of the cost of the four index inserts.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
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
has_later_change(const EcChange *change, uint64 key_hash)
{
	const EcSegmentList *segments = ec_segments();
	bool		other_later = false;
	bool		own_later = false;

	for (int i = 0; i < segments->n && !(other_later && own_later); i++)
	{
		const EcSegment *seg = &segments->segs[i];
		Relation	history;
		EcKeyScan	ks;
		TupleTableSlot *slot;

		if (!OidIsValid(seg->relid) || (seg->frozen && seg->max_version <= change->seq))
			continue;
		history = try_relation_open(seg->relid, AccessShareLock);
		if (history == NULL)
			continue;			/* pruned: holds nothing this recent */
		ec_key_scan_begin(&ks, history, seg, SnapshotSelf, change->relid, change->key, key_hash,
						  change->seq, true);
		while (!(other_later && own_later) && (slot = ec_key_scan_next(&ks)) != NULL)
		{
			bool		isnull;
			FullTransactionId writer = DatumGetFullTransactionId(slot_getattr(slot, Anum_history_xid, &isnull));

			if (FullTransactionIdEquals(writer, change->xid))
				own_later = true;
			else
				other_later = true;
		}
		ec_key_scan_end(&ks);
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

/*
 * What the insert needs of each index of a segment, kept until the index's
 * relcache entry is invalidated: the IndexInfo, and which column is the key
 * hash (0: none). The rest of an entry is taken from the history row's
 * values as they are, with no executor slot.
 */
typedef struct HistoryIndex
{
	Oid			heap;
	Oid			index;
	IndexInfo  *info;
	AttrNumber	hash_column;
} HistoryIndex;

static MemoryContext history_index_cxt = NULL;
static HistoryIndex *history_indexes = NULL;
static int	history_nindexes = 0;
static int	history_maxindexes = 0;

static void
forget_history_indexes(Datum arg, Oid relid)
{
	if (history_indexes == NULL)
		return;
	for (int i = 0; i < history_nindexes; i++)
		if (!OidIsValid(relid) || history_indexes[i].index == relid ||
			history_indexes[i].heap == relid)
		{
			MemoryContextReset(history_index_cxt);
			history_indexes = NULL;
			history_nindexes = history_maxindexes = 0;
			return;
		}
}

static const HistoryIndex *
history_index(Relation index)
{
	Oid			oid = RelationGetRelid(index);
	HistoryIndex *hi;
	MemoryContext old;

	for (int i = 0; i < history_nindexes; i++)
		if (history_indexes[i].index == oid)
			return &history_indexes[i];

	if (history_index_cxt == NULL)
	{
		history_index_cxt = AllocSetContextCreate(CacheMemoryContext, "ec_feed history indexes",
												  ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(forget_history_indexes, (Datum) 0);
	}
	old = MemoryContextSwitchTo(history_index_cxt);
	if (history_nindexes == history_maxindexes)
	{
		history_maxindexes = Max(8, history_maxindexes * 2);
		history_indexes = history_indexes == NULL ?
			palloc(sizeof(HistoryIndex) * history_maxindexes) :
			repalloc(history_indexes, sizeof(HistoryIndex) * history_maxindexes);
	}
	hi = &history_indexes[history_nindexes];
	hi->heap = index->rd_index->indrelid;
	hi->index = oid;
	hi->info = BuildIndexInfo(index);
	hi->hash_column = 0;
	MemoryContextSwitchTo(old);

	if (hi->info->ii_Predicate != NIL)
		elog(ERROR, "unexpected index \"%s\" of ec_feed's history", RelationGetRelationName(index));
	for (int i = 0; i < hi->info->ii_NumIndexAttrs; i++)
	{
		if (hi->info->ii_IndexAttrNumbers[i] != InvalidAttrNumber)
			continue;
		/* the one expression ec_feed puts on its history */
		if (hi->hash_column != 0 || list_length(hi->info->ii_Expressions) != 1 ||
			!ec_is_key_hash_expr(linitial(hi->info->ii_Expressions)))
			elog(ERROR, "unexpected index \"%s\" of ec_feed's history", RelationGetRelationName(index));
		hi->hash_column = i + 1;
	}
	history_nindexes++;
	return hi;
}

/*
 * Insert the history row: the heap tuple, then an entry in each index built
 * from the row's values (and the key's hash).
 */
static void
history_insert(Relation history, HeapTuple tuple, Datum *values, bool *nulls, uint64 key_hash)
{
	List	   *indexes;
	ListCell   *lc;

	simple_heap_insert(history, tuple);
	indexes = RelationGetIndexList(history);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		const HistoryIndex *hi = history_index(index);
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		for (int i = 0; i < hi->info->ii_NumIndexAttrs; i++)
		{
			AttrNumber	attnum = hi->info->ii_IndexAttrNumbers[i];

			if (i + 1 == hi->hash_column)
			{
				ivalues[i] = Int64GetDatum((int64) key_hash);
				inulls[i] = false;
			}
			else
			{
				ivalues[i] = values[attnum - 1];
				inulls[i] = nulls[attnum - 1];
			}
		}
		ec_index_insert(index, ivalues, inulls, &tuple->t_self, history,
						hi->info->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
						hi->info);
		index_close(index, RowExclusiveLock);
	}
	list_free(indexes);
}

/* Record a change; an insert may get a fresh version (see has_later_change). */
void
ec_history_append(EcChange *change)
{
	Relation	history;
	uint64		key_hash = ec_key_hash(change->key);	/* the probe's and the index's */
	Datum		values[Natts_history];
	bool		nulls[Natts_history] = {false};
	HeapTuple	tuple;

	history = table_open(ec_segment_for_write(change->xid), RowExclusiveLock);
	if (change->op == EC_OP_INSERT && has_later_change(change, key_hash))
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
	history_insert(history, tuple, values, nulls, key_hash);
	heap_freetuple(tuple);
	table_close(history, RowExclusiveLock);
}

