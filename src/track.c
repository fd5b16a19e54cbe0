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
 * INSERT that turns into ON CONFLICT DO UPDATE records just the update, and a
 * delete that another trigger cancels records nothing. An update or delete
 * records the version it replaced (prev), which chains a row's entries: a
 * conditional write merges a stale token only over an unbroken chain.
 *
 * A delete's version (also the old key's, when an UPDATE changes the key) is
 * drawn by the stamp trigger under the row lock, in statement order, and kept
 * until the AFTER trigger records it. Drawn only at the end of the statement,
 * it would follow the versions of rows the same statement inserts later, e.g.
 * the key's new row in WITH d AS (DELETE ...) INSERT ... .
 *
 * An INSERT draws its version before the unique check, which may then wait
 * for a transaction that writes the same key; if that one deletes the key
 * meanwhile, under a higher version, the feed could return the insert before
 * the delete. So the stamp first waits for whatever the unique check of the
 * primary key would wait for (wait_for_key_writers), then draws. A delete
 * that starts after that probe and before the unique check still leaves the
 * insert with the lower version; the record trigger then records it under a
 * fresh one (history.c), and the row keeps the one drawn here.
 *
 * zz_ec_feed_truncate_guard (BEFORE TRUNCATE, statement) refuses TRUNCATE
 * unless ec_feed.allow_truncate is on and the caller owns the table; then it
 * records the TRUNCATE as one table-level change (record_truncate), which a
 * consumer that does not know op "truncate" would not follow. Like the row
 * triggers it fires in every session_replication_role (ENABLE ALWAYS): on a
 * logical replication subscriber it records a replicated TRUNCATE and never
 * refuses it.
 *
 * The history records only versions the stamp trigger drew. Row triggers
 * fire in name order, so a table's own BEFORE row trigger named after
 * zz_ec_feed_stamp could rewrite ec_version or ec_xid once stamped. Only when
 * a table has such a trigger (rare) does the stamp remember what it wrote,
 * in a per-transaction hash, for the record trigger to check; otherwise
 * nothing can change the row after the stamp and nothing is remembered. The
 * record trigger also refuses to run as anything but ec_feed's own trigger
 * on a table whose stamp trigger fires.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "ec_feed.h"
#include "partition.h"
#include "publish.h"
#include "token.h"

void		_PG_init(void);

static bool allow_truncate = false;

/* versions drawn for deletes by the stamp trigger, until recorded */
typedef struct PendingDeleteKey
{
	Oid			relid;
	ItemPointerData tid;
} PendingDeleteKey;

typedef struct PendingDelete
{
	PendingDeleteKey key;
	int64		seq;
} PendingDelete;

static HTAB *pending_deletes = NULL;	/* in TopTransactionContext */

/*
 * Versions the stamp trigger wrote on tables where a later BEFORE trigger
 * could change them, until recorded.
 */
typedef struct StampedKey
{
	Oid			relid;
	int64		version;
} StampedKey;

typedef struct Stamped
{
	StampedKey	key;
	FullTransactionId xid;
} Stamped;

static HTAB *stamped_rows = NULL;	/* in TopTransactionContext */

static void
forget_pending_deletes(XactEvent event, void *arg)
{
	/* their memory goes with TopTransactionContext */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		pending_deletes = NULL;
		stamped_rows = NULL;
	}
}

/*
 * Can a BEFORE row trigger of the table fire after the stamp trigger on an
 * INSERT or UPDATE, and so change what it wrote? Triggers fire in name order.
 */
static bool
stamp_may_be_changed(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];

		if (TRIGGER_FOR_ROW(trigger->tgtype) && TRIGGER_FOR_BEFORE(trigger->tgtype) &&
			(TRIGGER_FOR_INSERT(trigger->tgtype) || TRIGGER_FOR_UPDATE(trigger->tgtype)) &&
			trigger->tgenabled != TRIGGER_DISABLED &&
			strcmp(trigger->tgname, EC_STAMP_TRIGGER) > 0)
			return true;
	}
	return false;
}

static void
remember_stamp(Relation rel, int64 version, FullTransactionId xid)
{
	StampedKey	key;
	Stamped    *entry;

	if (stamped_rows == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(StampedKey);
		ctl.entrysize = sizeof(Stamped);
		ctl.hcxt = TopTransactionContext;
		stamped_rows = hash_create("ec_feed stamped rows", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.relid = RelationGetRelid(rel);
	key.version = version;
	entry = hash_search(stamped_rows, &key, HASH_ENTER, NULL);
	entry->xid = xid;
}

static void
stamp_changed(Relation rel, const char *column)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
			 errmsg("a trigger of \"%s\" changed %s", RelationGetRelationName(rel), column),
			 errdetail("ec_feed records only the version and transaction id that its trigger zz_ec_feed_stamp wrote; a BEFORE trigger that fires after it (triggers fire in name order) replaced them."),
			 errhint("Do not assign %s in triggers, or give such triggers names that sort before zz_ec_feed_stamp.", column)));
}

/*
 * The row about to be recorded carries the version and xid the stamp trigger
 * wrote for it. Each remembered version is recorded once.
 */
static void
check_stamped(Relation rel, const EcRowShape *shape, HeapTuple newtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StampedKey	key;
	Stamped    *entry = NULL;
	bool		isnull;
	FullTransactionId xid;

	memset(&key, 0, sizeof(key));
	key.relid = RelationGetRelid(rel);
	key.version = DatumGetInt64(heap_getattr(newtup, shape->version_attnum, desc, &isnull));
	if (isnull)
		stamp_changed(rel, EC_VERSION_COLUMN);
	if (stamped_rows != NULL)
		entry = hash_search(stamped_rows, &key, HASH_FIND, NULL);
	if (entry == NULL)
		stamp_changed(rel, EC_VERSION_COLUMN);
	xid = DatumGetFullTransactionId(heap_getattr(newtup, shape->xid_attnum, desc, &isnull));
	if (isnull || !FullTransactionIdEquals(xid, entry->xid))
		stamp_changed(rel, EC_XID_COLUMN);
	hash_search(stamped_rows, &key, HASH_REMOVE, NULL);
}

/* Does the trigger fire in this session (see session_replication_role)? */
static bool
trigger_fires(const Trigger *trigger)
{
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return trigger->tgenabled == TRIGGER_FIRES_ON_REPLICA ||
			trigger->tgenabled == TRIGGER_FIRES_ALWAYS;
	return trigger->tgenabled == TRIGGER_FIRES_ON_ORIGIN ||
		trigger->tgenabled == TRIGGER_FIRES_ALWAYS;
}

/*
 * ec_feed.record() writes history only as ec_feed's own AFTER row trigger on
 * a table whose stamp trigger fires: the versions it records are then the
 * ones ec_feed drew.
 */
static void
check_record_trigger(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	TriggerDesc *trigdesc = rel->trigdesc;
	bool		stamped = false;

	if (strcmp(trigdata->tg_trigger->tgname, EC_RECORD_TRIGGER) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ec_feed.record() fired by trigger \"%s\" of \"%s\"",
						trigdata->tg_trigger->tgname, RelationGetRelationName(rel)),
				 errdetail("It records changes only as the trigger zz_ec_feed_record that ec_feed.track() creates."),
				 errhint("Drop the trigger; call ec_feed.track() to record the table's changes.")));
	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];
		int16		type = trigger->tgtype;

		if (strcmp(trigger->tgname, EC_STAMP_TRIGGER) == 0 &&
			TRIGGER_FOR_ROW(type) && TRIGGER_FOR_BEFORE(type) &&
			TRIGGER_FOR_INSERT(type) && TRIGGER_FOR_UPDATE(type) &&
			trigger_fires(trigger) && ec_is_feed_function(trigger->tgfoid, "stamp"))
			stamped = true;
	}
	if (!stamped)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is recorded but not stamped by ec_feed", RelationGetRelationName(rel)),
				 errdetail("Its trigger zz_ec_feed_stamp, which draws the versions that the history records, is missing or disabled."),
				 errhint("Call ec_feed.track() on the table again, or ALTER TABLE ... ENABLE ALWAYS TRIGGER zz_ec_feed_stamp.")));
}

/* Draw the version of the delete of this row version, to be recorded later. */
static void
draw_delete_version(Relation rel, HeapTuple oldtup)
{
	PendingDeleteKey key;
	PendingDelete *entry;

	if (pending_deletes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PendingDeleteKey);
		ctl.entrysize = sizeof(PendingDelete);
		ctl.hcxt = TopTransactionContext;
		pending_deletes = hash_create("ec_feed pending deletes", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.relid = RelationGetRelid(rel);
	key.tid = oldtup->t_self;
	entry = hash_search(pending_deletes, &key, HASH_ENTER, NULL);
	entry->seq = ec_feed_next_version();
}

/* The version drawn for the delete of this row version; drawn now if none. */
static int64
take_delete_version(Relation rel, HeapTuple oldtup)
{
	PendingDeleteKey key;
	PendingDelete *entry;
	bool		found = false;
	int64		seq = 0;

	if (pending_deletes != NULL)
	{
		memset(&key, 0, sizeof(key));
		key.relid = RelationGetRelid(rel);
		key.tid = oldtup->t_self;
		entry = hash_search(pending_deletes, &key, HASH_FIND, &found);
		if (found)
		{
			seq = entry->seq;
			hash_search(pending_deletes, &key, HASH_REMOVE, NULL);
		}
	}
	return found ? seq : ec_feed_next_version();
}

/* Does the table record history? */
static bool
records_history(Relation rel)
{
	bool		history;

	return ec_rel_tracked(rel, &history) && history;
}

/* Does the update change a primary key column? */
static bool
changes_key(Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *keyattrs = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	int			i = -1;

	while ((i = bms_next_member(keyattrs, i)) >= 0)
	{
		if (ec_attr_differs(desc, i + FirstLowInvalidHeapAttributeNumber, oldtup, newtup))
			return true;
	}
	return false;
}

/*
 * Before an INSERT draws its version: wait for the transactions that the
 * unique check of the primary key would wait for on the new row's key, so
 * that a delete of the key they make is drawn before the insert's version.
 * Without it the insert would wait in the unique check, version in hand,
 * while such a transaction (or the next writer of the key, which gets its
 * turn meanwhile) deletes the key.
 *
 * Mirrors check_exclusion_or_unique_constraint(): a SnapshotDirty probe of
 * the index reports an in-progress inserter (xmin), deleter or updater (xmax;
 * not a mere locker) or speculative insertion, never the own transaction.
 * After a wait the probe starts over. Nothing else is waited for: no INSERT
 * waits where the unique check would not have waited anyway, only earlier.
 */
static void
wait_for_key_writers(Relation rel, HeapTuple newtup)
{
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	Relation	index;
	int			nkeys;
	ScanKeyData keys[INDEX_MAX_KEYS];
	SnapshotData dirty;
	TupleTableSlot *slot;

	if (!OidIsValid(pkoid))
		return;
	/* the executor holds this lock already, for the index insertion */
	index = index_open(pkoid, RowExclusiveLock);
	nkeys = IndexRelationGetNumberOfKeyAttributes(index);
	for (int i = 0; i < nkeys; i++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[i];
		Oid			opfamily = index->rd_opfamily[i];
		Oid			type = index->rd_opcintype[i];
		Oid			eqop = get_opfamily_member(opfamily, type, type, BTEqualStrategyNumber);
		bool		isnull = true;
		Datum		value = (Datum) 0;

		if (attnum != InvalidAttrNumber && OidIsValid(eqop))
			value = heap_getattr(newtup, attnum, desc, &isnull);
		if (isnull)
		{
			/*
			 * A NULL key is a NOT NULL violation, not a conflict. (Primary
			 * key columns are plain columns with a btree equality; were one
			 * not, no probe: the record trigger still keeps the feed ordered.)
			 */
			index_close(index, RowExclusiveLock);
			return;
		}
		ScanKeyEntryInitialize(&keys[i], 0, i + 1, BTEqualStrategyNumber, InvalidOid,
							   index->rd_indcollation[i], get_opcode(eqop), value);
	}

	slot = table_slot_create(rel, NULL);
	for (;;)
	{
		IndexScanDesc scan;
		TransactionId xwait = InvalidTransactionId;
		uint32		token = 0;
		ItemPointerData tid;

		CHECK_FOR_INTERRUPTS();
		InitDirtySnapshot(dirty);
		scan = index_beginscan(rel, index, &dirty, nkeys, 0);
		index_rescan(scan, keys, nkeys, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			if (TransactionIdIsValid(xwait))
			{
				token = dirty.speculativeToken;
				tid = slot->tts_tid;
				break;
			}
		}
		index_endscan(scan);
		if (!TransactionIdIsValid(xwait))
			break;
		if (token != 0)
			SpeculativeInsertionWait(dirty.xmin, token);
		else
			XactLockTableWait(xwait, rel, &tid, XLTW_InsertIndexUnique);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, RowExclusiveLock);
}

void
_PG_init(void)
{
	DefineCustomBoolVariable("ec_feed.allow_truncate",
							 "Allows TRUNCATE of tables tracked by ec_feed.",
							 "A TRUNCATE is recorded in the feed as one change with op truncate, which every consumer must handle.",
							 &allow_truncate,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	ec_define_settings();
	ec_register_publishers();
	MarkGUCPrefixReserved("ec_feed");
	RegisterXactCallback(forget_pending_deletes, NULL);
}

static TriggerData *
check_trigger_call(FunctionCallInfo fcinfo, const char *funcname)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired as a trigger", funcname),
				 errdetail("It stamps or records the rows of a table that ec_feed tracks."),
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
	bool		history;

	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ec_feed.stamp() must be fired as a BEFORE row trigger"),
				 errdetail("It is fired by trigger \"%s\" of \"%s\".",
						   trigdata->tg_trigger->tgname, RelationGetRelationName(rel)),
				 errhint("Drop the trigger; call ec_feed.track() to track the table.")));
	if (strcmp(trigdata->tg_trigger->tgname, EC_STAMP_TRIGGER) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ec_feed.stamp() fired by trigger \"%s\" of \"%s\"",
						trigdata->tg_trigger->tgname, RelationGetRelationName(rel)),
				 errdetail("It stamps rows only as the trigger zz_ec_feed_stamp that ec_feed.track() creates."),
				 errhint("Drop the trigger; call ec_feed.track() to track the table.")));

	/*
	 * The first row write of a restored database marks which versions came
	 * with the restore, before it draws one of its own (catalog.c).
	 */
	ec_feed_fence_adopt();

	/* the trigger scan behind this is the same for every check of this row */
	history = records_history(rel);

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (history)
		{
			(void) GetTopFullTransactionId();
			draw_delete_version(rel, trigdata->tg_trigtuple);
		}
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

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

	/* the unique check's waits, before the version is drawn (see above) */
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && history)
		wait_for_key_writers(rel, tuple);

	/* the xid first: a version drawn later belongs to a known transaction */
	xid = GetTopFullTransactionId();
	/* an update that changes the key deletes the old key first */
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		history && changes_key(rel, trigdata->tg_trigtuple, trigdata->tg_newtuple))
		draw_delete_version(rel, trigdata->tg_trigtuple);
	columns[0] = version_attnum;
	values[0] = Int64GetDatum(ec_feed_next_version());
	columns[1] = xid_attnum;
	values[1] = FullTransactionIdGetDatum(xid);
	if (history && stamp_may_be_changed(rel))
		remember_stamp(rel, DatumGetInt64(values[0]), xid);

	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 2, columns, values, nulls));
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

		if (att->attisdropped || ec_is_managed_column(NameStr(att->attname)))
			continue;
		if (ec_attr_differs(desc, att->attnum, oldtup, newtup))
			names[nchanged++] = CStringGetTextDatum(NameStr(att->attname));
	}
	return construct_array(names, nchanged, TEXTOID, -1, false, TYPALIGN_INT);
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
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ec_feed.record() must be fired as an AFTER row trigger"),
				 errdetail("It records the rows written by the statement that fired it."),
				 errhint("ec_feed.track() installs it; do not call it directly.")));
	check_record_trigger(trigdata);

	ec_row_shape(rel, &shape, true);
	if (!TRIGGER_FIRED_BY_DELETE(event) && stamp_may_be_changed(rel))
		check_stamped(rel, &shape, TRIGGER_FIRED_BY_UPDATE(event) ?
					  trigdata->tg_newtuple : trigdata->tg_trigtuple);
	/* a partition's changes are the tracked parent's (partition.c) */
	change.relid = ec_tracked_root(rel);
	change.xid = GetTopFullTransactionId();
	change.changed = NULL;
	change.has_prev_version = false;
	change.prev_version = 0;

	if (TRIGGER_FIRED_BY_INSERT(event) ||
		(TRIGGER_FIRED_BY_UPDATE(event) && ec_attaching(rel)))
	{
		/* ATTACH stamps the rows it brings with an UPDATE: they arrive */
		HeapTuple	newtup = TRIGGER_FIRED_BY_INSERT(event) ?
			trigdata->tg_trigtuple : trigdata->tg_newtuple;

		change.op = EC_OP_INSERT;
		change.seq = ec_row_version(desc, &shape, newtup);
		change.key = ec_row_key(rel, &shape, newtup);
		change.data = ec_row_data(rel, &shape, newtup);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event))
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;
		HeapTuple	newtup = trigdata->tg_newtuple;

		if (changes_key(rel, oldtup, newtup))
		{
			/*
			 * The key changed: to a consumer that stores rows by key this is
			 * the old key's delete and the new key's insert.
			 */
			change.op = EC_OP_DELETE;
			change.seq = take_delete_version(rel, oldtup);
			change.key = ec_row_key(rel, &shape, oldtup);
			change.data = ec_row_data(rel, &shape, oldtup);
			change.has_prev_version = true;
			change.prev_version = ec_row_version(desc, &shape, oldtup);
			ec_history_append(&change);

			/* the new key's row starts a life of its own */
			change.op = EC_OP_INSERT;
			change.has_prev_version = false;
		}
		else
		{
			change.op = EC_OP_UPDATE;
			change.changed = changed_columns(desc, oldtup, newtup);
			/* links the row's versions into a chain (conditional.c) */
			change.has_prev_version = true;
			change.prev_version = ec_row_version(desc, &shape, oldtup);
		}
		change.seq = ec_row_version(desc, &shape, newtup);
		change.key = ec_row_key(rel, &shape, newtup);
		change.data = ec_row_data(rel, &shape, newtup);
	}
	else
	{
		HeapTuple	oldtup = trigdata->tg_trigtuple;

		change.op = EC_OP_DELETE;
		change.seq = take_delete_version(rel, oldtup);
		change.key = ec_row_key(rel, &shape, oldtup);
		change.data = ec_row_data(rel, &shape, oldtup);
		change.has_prev_version = true;
		change.prev_version = ec_row_version(desc, &shape, oldtup);
	}
	ec_history_append(&change);
	/* hot standbys read the feed up to the marks the primary publishes */
	ec_publish_if_due();

	return PointerGetDatum(NULL);
}

/*
 * Record a TRUNCATE of a table with history: one table-level entry, op
 * EC_OP_TRUNCATE, key and data 'null' (the history's columns are NOT NULL;
 * no real key is a JSON null, keys are objects), no changed, no prev: it
 * stands for the delete of every row the table held, whatever their
 * versions. A consumer empties its copy of the table; the conditional
 * writes count it as a delete of every key that breaks the chain of
 * versions (keyhistory.c).
 *
 * Its place in the feed is its version. The guard fires after TRUNCATE took
 * ACCESS EXCLUSIVE on every table it truncates, held to the end of the
 * transaction: every other transaction that wrote the table (each holds at
 * least ROW EXCLUSIVE on it while it draws its versions) has ended before
 * this version is drawn, and every later one draws after it, once this
 * transaction has ended. So for every key of the table, version order is
 * commit order (G3), as for a delete drawn under the row lock. Changes the
 * truncating transaction made to the table before the TRUNCATE statement
 * precede it, those after it follow (TRUNCATE refuses to run while AFTER
 * trigger events of the table are pending, so none is recorded late).
 *
 * As in the stamp trigger: the restore fence first, then the xid, then the
 * version (a mark's readings rely on a version being drawn after its
 * transaction got its xid). The entry goes into the history in the
 * subtransaction of the TRUNCATE, so a TRUNCATE rolled back (or a savepoint
 * rolled back over it) leaves no visible entry, like its table's data.
 */
static void
record_truncate(Relation rel)
{
	EcChange	change;
	Jsonb	   *null_json;

	ec_feed_fence_adopt();
	null_json = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")));
	change.xid = GetTopFullTransactionId();
	change.seq = ec_feed_next_version();
	change.relid = RelationGetRelid(rel);	/* a root: see the guard */
	change.op = EC_OP_TRUNCATE;
	change.key = null_json;
	change.data = null_json;
	change.changed = NULL;
	change.has_prev_version = false;
	change.prev_version = 0;
	ec_history_append(&change);
	ec_publish_if_due();
}

PG_FUNCTION_INFO_V1(ec_feed_truncate_guard);

Datum
ec_feed_truncate_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger_call(fcinfo, "ec_feed.truncate_guard");
	Relation	rel = trigdata->tg_relation;
	Oid			root;
	bool		replicated;

	/* it records a change of the feed: only as the trigger track() creates */
	if (!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		strcmp(trigdata->tg_trigger->tgname, EC_TRUNCATE_TRIGGER) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ec_feed.truncate_guard() fired by trigger \"%s\" of \"%s\"",
						trigdata->tg_trigger->tgname, RelationGetRelationName(rel)),
				 errdetail("It guards and records TRUNCATE only as the BEFORE TRUNCATE trigger zz_ec_feed_truncate_guard that ec_feed.track() creates."),
				 errhint("Drop the trigger; call ec_feed.track() to track the table.")));

	/*
	 * A partition of a tracked tree: part of the root's TRUNCATE (recorded
	 * there), or its own, whose rows are recorded as deletes keyed by the
	 * root (partition.c). Consumers need not know op "truncate" for that.
	 */
	root = ec_tracked_root(rel);
	if (root != RelationGetRelid(rel))
	{
		ec_truncate_partition(rel, root);
		return PointerGetDatum(NULL);
	}

	/*
	 * A replicated TRUNCATE (session_replication_role = replica: the apply
	 * worker of a subscription, or another replication tool's) already
	 * happened at the origin: refused here, it would only stop the
	 * replication (the worker retries the same transaction forever) and, let
	 * through unrecorded, leave every consumer of this server's feed with
	 * rows that are gone. So it is recorded, never refused. The role alone
	 * decides, not IsLogicalWorker(): other replication tools apply in that
	 * role too, and setting it takes a superuser (or a role granted SET on
	 * it), who could drop this guard anyway.
	 */
	replicated = SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA;

	if (!replicated && !allow_truncate)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot truncate table \"%s\" tracked by ec_feed",
						RelationGetRelationName(rel)),
				 errdetail("A TRUNCATE reaches the feed as one change with op \"truncate\"; a consumer that does not handle it would keep rows that no longer exist."),
				 errhint("Use DELETE, or, as the table's owner, SET ec_feed.allow_truncate = on once every consumer empties its copy of the table on op \"truncate\".")));

	/*
	 * Any session may set the setting. Only the owner could remove this
	 * guard anyway (untrack, DROP TRIGGER); a role that was merely granted
	 * TRUNCATE must not overrule what the owner set up for the consumers.
	 */
	if (!replicated && !has_privs_of_role(GetUserId(), rel->rd_rel->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot truncate table \"%s\" tracked by ec_feed",
						RelationGetRelationName(rel)),
				 errdetail("ec_feed.allow_truncate is on, but it takes effect only for the table's owner (and superusers), who could untrack the table anyway."),
				 errhint("Use DELETE, or ask the table's owner to truncate it.")));

	/*
	 * A table tracked without history records none of its changes, and no
	 * consumer follows it (read() refuses it in rels): nothing to record.
	 * Its rows' tokens then answer not_found, as after a DELETE.
	 */
	if (records_history(rel))
		record_truncate(rel);
	/* a partitioned table: its partitions' guards fire next */
	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		ec_truncate_covers(RelationGetRelid(rel));
	return PointerGetDatum(NULL);
}
