/*
 * history.c
 *		Appending changes to ec_feed.history.
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
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"

void
ec_history_append(const EcChange *change)
{
	Relation	history;
	Datum		values[Natts_history];
	bool		nulls[Natts_history] = {false};
	HeapTuple	tuple;
	TupleTableSlot *slot;
	List	   *indexes;
	ListCell   *lc;

	history = table_open(ec_feed_relid(EC_HISTORY_REL), RowExclusiveLock);

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

	tuple = heap_form_tuple(RelationGetDescr(history), values, nulls);
	simple_heap_insert(history, tuple);

	/* the history has plain column indexes only: no expressions, no predicates */
	slot = MakeSingleTupleTableSlot(RelationGetDescr(history), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tuple, slot, false);
	indexes = RelationGetIndexList(history);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		FormIndexDatum(info, slot, NULL, ivalues, inulls);
		/* seq comes from a sequence: unique by construction, no need to check */
		ec_index_insert(index, ivalues, inulls, &tuple->t_self, history,
						UNIQUE_CHECK_NO, info);
		index_close(index, RowExclusiveLock);
	}
	list_free(indexes);
	ExecDropSingleTupleTableSlot(slot);
	heap_freetuple(tuple);
	table_close(history, RowExclusiveLock);
}
