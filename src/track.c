/*
 * track.c
 *		The triggers that ec_feed.track() puts on a table.
 *
 * zz_ec_feed_stamp (BEFORE INSERT OR UPDATE, row) writes ec_version and
 * ec_xid. For an update it runs after the row lock is taken, and it assigns
 * the transaction id before it draws the version: the feed's ordering relies
 * on both (see feed.c).
 *
 * zz_ec_feed_record (AFTER INSERT OR UPDATE OR DELETE, row) appends the change
 * to the history. AFTER triggers fire only for rows really written, so an
 * INSERT that turns into ON CONFLICT DO UPDATE records just the update.
 *
 * zz_ec_feed_truncate_guard (BEFORE TRUNCATE) refuses TRUNCATE, which would
 * remove rows without a record a consumer could follow.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "ec_feed.h"

void		_PG_init(void);

static bool allow_truncate = false;

void
_PG_init(void)
{
	DefineCustomBoolVariable("ec_feed.allow_truncate",
							 "Allows TRUNCATE of tables tracked by ec_feed.",
							 "TRUNCATE removes rows without recording their deletion in the feed.",
							 &allow_truncate,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("ec_feed");
#endif
}

static TriggerData *
check_trigger_call(FunctionCallInfo fcinfo, const char *funcname)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired as a trigger", funcname),
				 errhint("ec_feed.track() installs it; do not call it directly.")));
	return (TriggerData *) fcinfo->context;
}

PG_FUNCTION_INFO_V1(ec_feed_stamp);

Datum
ec_feed_stamp(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger_call(fcinfo, "ec_feed.stamp");
	Relation	rel = trigdata->tg_relation;
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTuple	tuple;
	int			columns[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	AttrNumber	version_attnum;
	AttrNumber	xid_attnum;
	FullTransactionId xid;

	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "ec_feed.stamp() must be a BEFORE INSERT OR UPDATE row trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	ec_managed_attnums(desc, &version_attnum, &xid_attnum);
	if (version_attnum == InvalidAttrNumber || xid_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" lacks the managed columns of ec_feed",
						RelationGetRelationName(rel)),
				 errdetail("A tracked table needs the columns ec_version bigint and ec_xid xid8."),
				 errhint("Call ec_feed.track() on the table again.")));

	/* the xid first: a version drawn later belongs to a known transaction */
	xid = GetTopFullTransactionId();
	columns[0] = version_attnum;
	values[0] = Int64GetDatum(ec_feed_next_version());
	columns[1] = xid_attnum;
	values[1] = FullTransactionIdGetDatum(xid);

	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 2, columns, values, nulls));
}

/* Do old and new agree on every primary key column? */
static bool
same_key(TupleDesc desc, const EcRowShape *shape, HeapTuple oldtup, HeapTuple newtup)
{
	for (int i = 0; i < shape->nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, shape->key_attnums[i] - 1);
		bool		oldnull;
		bool		newnull;
		Datum		oldval = heap_getattr(oldtup, att->attnum, desc, &oldnull);
		Datum		newval = heap_getattr(newtup, att->attnum, desc, &newnull);

		if (oldnull != newnull ||
			(!oldnull && !datum_image_eq(oldval, newval, att->attbyval, att->attlen)))
			return false;
	}
	return true;
}

/* The names of the non-managed columns whose stored value differs. */
static ArrayType *
changed_columns(TupleDesc desc, HeapTuple oldtup, HeapTuple newtup)
{
	Datum	   *names = palloc(sizeof(Datum) * desc->natts);
	int			nchanged = 0;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		oldnull;
		bool		newnull;
		Datum		oldval;
		Datum		newval;

		if (att->attisdropped || ec_is_managed_column(NameStr(att->attname)))
			continue;
		oldval = heap_getattr(oldtup, att->attnum, desc, &oldnull);
		newval = heap_getattr(newtup, att->attnum, desc, &newnull);
		if (oldnull != newnull ||
			(!oldnull && !datum_image_eq(oldval, newval, att->attbyval, att->attlen)))
			names[nchanged++] = CStringGetTextDatum(NameStr(att->attname));
	}
	return construct_array(names, nchanged, TEXTOID, -1, false, TYPALIGN_INT);
}

static int64
row_version(TupleDesc desc, const EcRowShape *shape, HeapTuple tuple)
{
	bool		isnull;
	Datum		version = heap_getattr(tuple, shape->version_attnum, desc, &isnull);

	if (isnull)
		elog(ERROR, "tracked row has a NULL ec_version");
	return DatumGetInt64(version);
}

/*
 * A new key's version was drawn before the unique check, which may have
 * waited for a concurrent delete of the same key that drew a higher one.
 * Then record the insert under a fresh version, above the delete's; the
 * row's ec_version keeps the lower value until its next write.
 */
static void
insert_after_delete(EcChange *change)
{
	if (ec_history_has_later(change->relid, change->key, change->seq))
		change->seq = ec_feed_next_version();
}

PG_FUNCTION_INFO_V1(ec_feed_record);

Datum
ec_feed_record(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger_call(fcinfo, "ec_feed.record");
	Relation	rel = trigdata->tg_relation;
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerEvent event = trigdata->tg_event;
	EcRowShape	shape;
	EcChange	change;

	if (!TRIGGER_FIRED_AFTER(event) || !TRIGGER_FIRED_FOR_ROW(event))
		elog(ERROR, "ec_feed.record() must be an AFTER row trigger");

	ec_row_shape(rel, &shape, true);
	change.relid = RelationGetRelid(rel);
	change.xid = GetTopFullTransactionId();
	change.changed = NULL;

	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		HeapTuple	newtup = trigdata->tg_trigtuple;

		change.op = EC_OP_INSERT;
		change.seq = row_version(desc, &shape, newtup);
		change.key = ec_row_key(rel, &shape, newtup);
		change.data = ec_row_data(rel, &shape, newtup);
		insert_after_delete(&change);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		HeapTuple	newtup = trigdata->tg_newtuple;

		if (!same_key(desc, &shape, oldtup, newtup))
		{
			/*
			 * The key changed: to a consumer that stores rows by key this is
			 * the old key's delete and the new key's insert.
			 */
			change.op = EC_OP_DELETE;
			change.seq = ec_feed_next_version();
			change.key = ec_row_key(rel, &shape, oldtup);
			change.data = ec_row_data(rel, &shape, oldtup);
			ec_history_append(&change);

			change.op = EC_OP_INSERT;
		}
		else
		{
			change.op = EC_OP_UPDATE;
			change.changed = changed_columns(desc, oldtup, newtup);
		}
		change.seq = row_version(desc, &shape, newtup);
		change.key = ec_row_key(rel, &shape, newtup);
		change.data = ec_row_data(rel, &shape, newtup);
		if (change.op == EC_OP_INSERT)
			insert_after_delete(&change);
	}
	else
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;

		/* drawn under the row lock, which the deleting transaction holds */
		change.op = EC_OP_DELETE;
		change.seq = ec_feed_next_version();
		change.key = ec_row_key(rel, &shape, oldtup);
		change.data = ec_row_data(rel, &shape, oldtup);
	}
	ec_history_append(&change);

	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(ec_feed_truncate_guard);

Datum
ec_feed_truncate_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger_call(fcinfo, "ec_feed.truncate_guard");

	if (!allow_truncate)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot truncate table \"%s\" tracked by ec_feed",
						RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("TRUNCATE removes rows without recording their deletion, so feed consumers would keep rows that no longer exist."),
				 errhint("Use DELETE, or SET ec_feed.allow_truncate = on if every consumer will copy the table again.")));
	return PointerGetDatum(NULL);
}
