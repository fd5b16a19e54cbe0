/*
 * keyguard.c
 *		For the event trigger ec_feed._key_guard(): was a relation (the primary
 *		key's index) created by the current transaction?
 *
 * A tracked table keeps the key columns that track() registered. The guard
 * compares them with the live primary key only when that key's index is new
 * in this transaction, i.e. the key was (re)made by the ALTER TABLE at hand
 * or an earlier one of the transaction: the registration is a claim its
 * table's owner may write (ec_feed.tracked_rel), and track()'s own ALTER
 * TABLEs must not trip over a stale one. pg_class.xmin cannot tell this in
 * SQL once a subtransaction created the row.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ec_feed_created_here);

/* ec_feed._created_here(rel regclass) returns boolean */
Datum
ec_feed_created_here(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		result;

	if (!HeapTupleIsValid(tuple))
		PG_RETURN_NULL();
	result = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tuple->t_data));
	ReleaseSysCache(tuple);
	PG_RETURN_BOOL(result);
}
