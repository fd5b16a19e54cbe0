/*
 * compat.h
 *		Every PostgreSQL version shim ec_feed needs, in one place.
 *
 * ec_feed is built and tested on PostgreSQL 15; the shims keep it compiling
 * on 13 and 14.
 */
#ifndef EC_FEED_COMPAT_H
#define EC_FEED_COMPAT_H

#include "funcapi.h"

/* SetSingleFuncCall() appeared in 15; older releases build the tuplestore by hand. */
#if PG_VERSION_NUM < 150000
static inline void
ec_set_materialized_srf(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext per_query = rsinfo->econtext->ecxt_per_query_memory;
	MemoryContext old = MemoryContextSwitchTo(per_query);
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	MemoryContextSwitchTo(old);
}
#else
#define ec_set_materialized_srf(fcinfo) SetSingleFuncCall((fcinfo), 0)
#endif

/* index_insert() got its indexUnchanged hint in 14. */
#if PG_VERSION_NUM < 140000
#define ec_index_insert(index, values, isnull, tid, heap, check, info) \
	index_insert((index), (values), (isnull), (tid), (heap), (check), (info))
#else
#define ec_index_insert(index, values, isnull, tid, heap, check, info) \
	index_insert((index), (values), (isnull), (tid), (heap), (check), false, (info))
#endif

/* GetFlushRecPtr() reports the timeline too from 15 on. */
#if PG_VERSION_NUM < 150000
#define ec_flushed_upto() GetFlushRecPtr()
#else
#define ec_flushed_upto() GetFlushRecPtr(NULL)
#endif

#endif							/* EC_FEED_COMPAT_H */
