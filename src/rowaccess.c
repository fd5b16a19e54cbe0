/*
 * rowaccess.c
 *		The per-session plan cache of tracked tables, and the reads and writes
 *		of one row by key through it: for ec_feed.update_if(),
 *		ec_feed.delete_if() (conditional.c), ec_feed.token() (token.c) and
 *		ec_feed.get() (visibility.c).
 *
 * Every statement runs as the caller, through SPI, so that privileges,
 * row-level security and the table's other triggers apply exactly as to a
 * plain SELECT, UPDATE or DELETE.
 *
 * Plans are prepared once per table (and per set of columns written) and kept
 * for the session; a relcache invalidation of the table retires them.
 *
 * The SQL text is immune to the caller: the table and every operator are
 * schema-qualified, values are parameters typed by OID, and rows come back
 * as t.* (a bare "t" would name a column called t, if the table has one), to
 * be rebuilt in the table's own row type (result_row). So the text means the
 * same under any search_path: a plan is re-analysed under the caller's
 * search_path when it differs from the one it was made under. The statements
 * themselves run with the caller's settings, so the table's triggers and
 * policies behave as under a plain UPDATE or DELETE.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "ec_feed.h"
#include "rowaccess.h"

/* more distinct column sets than this per table are planned for one call only */
#define MAX_UPDATE_PLANS	32


/*
 * Plans of an invalidated entry may still be running (a trigger of the table
 * can call update_if on it), so they are freed only when no call is active.
 */
typedef struct Retired
{
	MemoryContext mcxt;
	List	   *plans;			/* of SPIPlanPtr */
} Retired;

static HTAB *rel_entries = NULL;
static List *retired = NIL;
static int	active_calls = 0;
static bool some_invalid = false;

static void
rel_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	RelEntry   *entry;

	if (rel_entries == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(rel_entries, &relid, HASH_FIND, NULL);
		if (entry)
		{
			entry->valid = false;
			some_invalid = true;
		}
		return;
	}
	hash_seq_init(&status, rel_entries);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
	some_invalid = true;
}

/* An error inside a call leaves active_calls raised until the transaction ends. */
static void
reset_active_calls(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		active_calls = 0;
}

static void
retire_entry(RelEntry *entry)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Retired    *r = palloc0(sizeof(Retired));
	ListCell   *lc;

	r->mcxt = entry->mcxt;
	if (entry->token_plan)
		r->plans = lappend(r->plans, entry->token_plan);
	if (entry->lock_plan)
		r->plans = lappend(r->plans, entry->lock_plan);
	if (entry->lock_del_plan)
		r->plans = lappend(r->plans, entry->lock_del_plan);
	if (entry->delete_plan)
		r->plans = lappend(r->plans, entry->delete_plan);
	if (entry->get_plan)
		r->plans = lappend(r->plans, entry->get_plan);
	foreach(lc, entry->update_plans)
		r->plans = lappend(r->plans, ((UpdatePlan *) lfirst(lc))->plan);
	retired = lappend(retired, r);
	MemoryContextSwitchTo(old);
}

/*
 * When no call is active: retire the invalidated entries (tables altered or
 * dropped) and free everything retired.
 */
static void
free_retired(void)
{
	ListCell   *lc;

	if (active_calls > 0)
		return;
	if (some_invalid)
	{
		HASH_SEQ_STATUS status;
		RelEntry   *entry;

		hash_seq_init(&status, rel_entries);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			if (entry->valid)
				continue;
			retire_entry(entry);
			hash_search(rel_entries, &entry->relid, HASH_REMOVE, NULL);
		}
		some_invalid = false;
	}
	foreach(lc, retired)
	{
		Retired    *r = lfirst(lc);
		ListCell   *pc;

		foreach(pc, r->plans)
			SPI_freeplan((SPIPlanPtr) lfirst(pc));
		list_free(r->plans);
		if (r->mcxt)
			MemoryContextDelete(r->mcxt);
		pfree(r);
	}
	list_free(retired);
	retired = NIL;
}

/* The btree equality operator of a primary key column, as OPERATOR(schema.name). */
static char *
key_operator(Relation index, int i)
{
	Oid			opfamily = index->rd_opfamily[i];
	Oid			opcintype = index->rd_opcintype[i];
	Oid			opno = get_opfamily_member(opfamily, opcintype, opcintype, BTEqualStrategyNumber);
	HeapTuple	optup;
	Form_pg_operator op;
	char	   *result;

	if (!OidIsValid(opno))
		elog(ERROR, "no equality operator for column %d of index %u", i + 1, RelationGetRelid(index));
	optup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	if (!HeapTupleIsValid(optup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	op = (Form_pg_operator) GETSTRUCT(optup);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(optup);
	return result;
}

/*
 * Has the table AFTER UPDATE triggers of its own? They fire after UPDATE ...
 * RETURNING has produced the row, and may write the row again (a total
 * recomputed), so update_if reads the row again after its write. Internal
 * triggers (foreign keys) never write the row and are left out.
 */
static bool
has_after_update_triggers(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	Oid			nspid = ec_feed_namespace();

	if (trigdesc == NULL ||
		(!trigdesc->trig_update_after_row && !trigdesc->trig_update_after_statement))
		return false;
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];

		if (!TRIGGER_FOR_AFTER(trigger->tgtype) || !TRIGGER_FOR_UPDATE(trigger->tgtype) ||
			trigger->tgisinternal || trigger->tgenabled == TRIGGER_DISABLED)
			continue;
		if (get_func_namespace(trigger->tgfoid) != nspid)
			return true;
	}
	return false;
}

static void
build_entry(RelEntry *entry, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old;
	Relation	index;
	StringInfoData where;
	Datum	   *values;
	bool	   *nulls;
	FuncExpr   *call;

	entry->mcxt = AllocSetContextCreate(CacheMemoryContext, "ec_feed conditional write",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(entry->mcxt);

	ec_row_shape(rel, &entry->shape, true);
	entry->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												 RelationGetRelationName(rel));
	/* a partitioned table's rows are in its partitions */
	entry->only = rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ";

	index = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	initStringInfo(&where);
	for (int i = 0; i < entry->shape.nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, entry->shape.key_attnums[i] - 1);

		appendStringInfo(&where, "%st.%s %s $%d", i > 0 ? " AND " : "",
						 quote_identifier(NameStr(att->attname)), key_operator(index, i), i + 1);
		entry->argtypes[i] = att->atttypid;
	}
	index_close(index, AccessShareLock);
	entry->key_where = where.data;
	entry->argtypes[entry->shape.nkeys] = INT8OID;

	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	memset(nulls, true, sizeof(bool) * desc->natts);
	entry->empty_row = heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls), desc);

	/* jsonb_populate_record() learns the row type from its call expression */
	fmgr_info_cxt(F_JSONB_POPULATE_RECORD, &entry->populate, entry->mcxt);
	call = makeFuncExpr(F_JSONB_POPULATE_RECORD, rel->rd_rel->reltype,
						list_make2(makeNullConst(rel->rd_rel->reltype, -1, InvalidOid),
								   makeNullConst(JSONBOID, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	entry->populate.fn_expr = (Node *) call;
	entry->after_triggers = has_after_update_triggers(rel);

	MemoryContextSwitchTo(old);
	entry->valid = true;
}

static RelEntry *
get_entry(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	RelEntry   *entry;
	bool		found;

	if (rel_entries == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(RelEntry);
		ctl.hcxt = CacheMemoryContext;
		rel_entries = hash_create("ec_feed conditional writes", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(rel_invalidate, (Datum) 0);
		RegisterXactCallback(reset_active_calls, NULL);
	}
	entry = hash_search(rel_entries, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (found)
		retire_entry(entry);
	memset(entry, 0, sizeof(RelEntry));
	entry->relid = relid;
	build_entry(entry, rel);
	return entry;
}

RelEntry *
ec_rel_entry_enter(Relation rel)
{
	RelEntry   *entry;

	free_retired();
	entry = get_entry(rel);
	active_calls++;
	return entry;
}

void
ec_rel_entry_leave(void)
{
	active_calls--;
}

/* Prepare a plan; we are connected to SPI. */
static SPIPlanPtr
prepare_plan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	return plan;
}

/* Prepare and keep a plan; we are connected to SPI. */
static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = prepare_plan(sql, nargs, argtypes);

	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

static SPIPlanPtr
token_plan(RelEntry *entry, Relation rel)
{
	if (entry->token_plan == NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT t.ec_version, t.ec_xid");
		for (int i = 0; i < entry->shape.nkeys; i++)
			appendStringInfo(&sql, ", t.%s",
							 quote_identifier(NameStr(TupleDescAttr(desc, entry->shape.key_attnums[i] - 1)->attname)));
		appendStringInfo(&sql, " FROM %s%s t WHERE %s", entry->only, entry->qualname, entry->key_where);
		entry->token_plan = keep_plan(sql.data, entry->shape.nkeys, entry->argtypes);
	}
	return entry->token_plan;
}

SPIPlanPtr
ec_lock_plan(RelEntry *entry, bool for_delete)
{
	SPIPlanPtr *slot = for_delete ? &entry->lock_del_plan : &entry->lock_plan;

	if (*slot == NULL)
		*slot = keep_plan(psprintf("SELECT t.* FROM %s%s t WHERE %s FOR %s OF t",
								   entry->only, entry->qualname, entry->key_where,
								   for_delete ? "UPDATE" : "NO KEY UPDATE"),
						  entry->shape.nkeys, entry->argtypes);
	return *slot;
}

SPIPlanPtr
ec_delete_plan(RelEntry *entry)
{
	if (entry->delete_plan == NULL)
		entry->delete_plan =
			keep_plan(psprintf("DELETE FROM %s%s t WHERE %s AND t.ec_version OPERATOR(pg_catalog.=) $%d RETURNING t.*",
							   entry->only, entry->qualname, entry->key_where, entry->shape.nkeys + 1),
					  entry->shape.nkeys + 1, entry->argtypes);
	return entry->delete_plan;
}

/*
 * The UPDATE of the columns attnums (ascending): parameters are the key
 * columns, the expected ec_version, then the new values. *temporary is set
 * when the plan is not kept and must be freed by the caller.
 */
SPIPlanPtr
ec_update_plan(RelEntry *entry, Relation rel, int ncols, const AttrNumber *attnums, bool *temporary)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ListCell   *lc;
	StringInfoData sql;
	Oid		   *argtypes;
	int			nkeys = entry->shape.nkeys;
	SPIPlanPtr	plan;
	MemoryContext old;
	UpdatePlan *up;

	*temporary = false;
	foreach(lc, entry->update_plans)
	{
		up = lfirst(lc);
		if (up->ncols == ncols && memcmp(up->attnums, attnums, sizeof(AttrNumber) * ncols) == 0)
			return up->plan;
	}

	argtypes = palloc(sizeof(Oid) * (nkeys + 1 + ncols));
	memcpy(argtypes, entry->argtypes, sizeof(Oid) * (nkeys + 1));
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s%s t SET ", entry->only, entry->qualname);
	for (int i = 0; i < ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);

		appendStringInfo(&sql, "%s%s = $%d", i > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)), nkeys + 2 + i);
		argtypes[nkeys + 1 + i] = att->atttypid;
	}
	appendStringInfo(&sql, " WHERE %s AND t.ec_version OPERATOR(pg_catalog.=) $%d RETURNING t.*",
					 entry->key_where, nkeys + 1);

	if (list_length(entry->update_plans) >= MAX_UPDATE_PLANS)
	{
		*temporary = true;
		return prepare_plan(sql.data, nkeys + 1 + ncols, argtypes);
	}
	plan = keep_plan(sql.data, nkeys + 1 + ncols, argtypes);
	old = MemoryContextSwitchTo(entry->mcxt);
	up = palloc(sizeof(UpdatePlan));
	up->ncols = ncols;
	up->attnums = palloc(sizeof(AttrNumber) * ncols);
	memcpy(up->attnums, attnums, sizeof(AttrNumber) * ncols);
	up->plan = plan;
	entry->update_plans = lappend(entry->update_plans, up);
	MemoryContextSwitchTo(old);
	return plan;
}

/*
 * The row a plan returned as t.* (the table's live columns, in order), in
 * the table's own row type: dropped columns are NULL. Built in the current
 * memory context.
 */
static HeapTuple
result_row(Relation rel, HeapTuple spitup, TupleDesc spidesc)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);
	int			src = 0;
	HeapTuple	tuple;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		values[i] = (Datum) 0;
		nulls[i] = true;
		if (att->attisdropped)
			continue;
		if (src >= spidesc->natts || TupleDescAttr(spidesc, src)->atttypid != att->atttypid)
			elog(ERROR, "row of \"%s\" read by ec_feed does not match the table's columns",
				 RelationGetRelationName(rel));
		values[i] = SPI_getbinval(spitup, spidesc, src + 1, &nulls[i]);
		src++;
	}
	if (src != spidesc->natts)
		elog(ERROR, "row of \"%s\" read by ec_feed does not match the table's columns",
			 RelationGetRelationName(rel));
	tuple = heap_form_tuple(desc, values, nulls);
	tuple->t_tableOid = RelationGetRelid(rel);
	pfree(values);
	pfree(nulls);
	return tuple;
}

/*
 * Run a plan that returns at most one row of rel as t.*, with the given
 * snapshot (InvalidSnapshot: SPI's usual one).
 * Returns the row in the table's row type, in the current memory context,
 * or NULL.
 */
static HeapTuple
execute_one(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
			Snapshot snapshot, int expected, Relation rel)
{
	int			rc;
	HeapTuple	tuple;

	if (snapshot != InvalidSnapshot)
		rc = SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot,
								  read_only, false, 2);
	else
		rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
	if (rc != expected)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return NULL;
	}
	if (SPI_processed > 1)
		elog(ERROR, "more than one row has the same primary key");
	tuple = result_row(rel, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	SPI_freetuptable(SPI_tuptable);
	return tuple;
}

/* Run a plan of a conditional write: the locked, updated or deleted row, or NULL. */
HeapTuple
ec_run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, int expected, Oid relid)
{
	/* the caller holds the table open and locked */
	Relation	rel = RelationIdGetRelation(relid);
	HeapTuple	tuple;

	if (!RelationIsValid(rel))
		elog(ERROR, "could not open relation with OID %u", relid);
	tuple = execute_one(plan, values, nulls, read_only, InvalidSnapshot, expected, rel);
	RelationClose(rel);
	return tuple;
}

static SPIPlanPtr
get_plan(RelEntry *entry)
{
	if (entry->get_plan == NULL)
		entry->get_plan = keep_plan(psprintf("SELECT t.* FROM %s%s t WHERE %s",
											 entry->only, entry->qualname, entry->key_where),
									entry->shape.nkeys, entry->argtypes);
	return entry->get_plan;
}

/*
 * The row of rel with this key as the caller reads it with snapshot snap
 * (privileges and row-level security apply), or NULL; the caller is
 * connected to SPI. *keyjson is the key in the form tokens hash: the row's
 * own (ec_row_key), or for a missing row the key asked for, converted to
 * the key columns' types and normalised the same way. The key is parsed as
 * update_if parses it.
 */
HeapTuple
ec_read_row(Relation rel, Jsonb *key, Snapshot snap, Jsonb **keyjson)
{
	RelEntry   *entry;
	Datum		values[INDEX_MAX_KEYS];
	Jsonb	   *canonical;
	HeapTuple	row;

	entry = ec_rel_entry_enter(rel);
	ec_parse_key(entry, rel, key, values, &canonical);
	row = execute_one(get_plan(entry), values, NULL, true, snap, SPI_OK_SELECT, rel);
	*keyjson = row ? ec_row_key(rel, &entry->shape, row) : canonical;
	ec_rel_entry_leave();
	return row;
}

/*
 * The row with this key as the caller reads it (privileges and row-level
 * security apply), or NULL: only its ec_version, ec_xid and key columns, the
 * others NULL, in the current memory context. *shape is the table's. The
 * row's own key may differ from the argument (say, in case under citext).
 */
HeapTuple
ec_read_token_row(Relation rel, Jsonb *key, EcRowShape *shape)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext outer = CurrentMemoryContext;
	RelEntry   *entry;
	Datum		values[INDEX_MAX_KEYS];
	Jsonb	   *canonical;
	HeapTuple	row = NULL;
	int			rc;

	entry = ec_rel_entry_enter(rel);
	ec_parse_key(entry, rel, key, values, &canonical);
	*shape = entry->shape;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(outer);
	rc = SPI_execute_plan(token_plan(entry, rel), values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(rc));
	if (SPI_processed > 1)
		elog(ERROR, "more than one row has the same primary key");
	if (SPI_processed == 1)
	{
		HeapTuple	found = SPI_tuptable->vals[0];
		TupleDesc	fdesc = SPI_tuptable->tupdesc;
		Datum	   *rvalues = palloc0(sizeof(Datum) * desc->natts);
		bool	   *rnulls = palloc(sizeof(bool) * desc->natts);

		memset(rnulls, true, sizeof(bool) * desc->natts);
		rvalues[shape->version_attnum - 1] = SPI_getbinval(found, fdesc, 1, &rnulls[shape->version_attnum - 1]);
		rvalues[shape->xid_attnum - 1] = SPI_getbinval(found, fdesc, 2, &rnulls[shape->xid_attnum - 1]);
		for (int i = 0; i < shape->nkeys; i++)
		{
			AttrNumber	attnum = shape->key_attnums[i];

			rvalues[attnum - 1] = SPI_getbinval(found, fdesc, 3 + i, &rnulls[attnum - 1]);
		}
		/* SPI calls leave us in SPI's memory, which SPI_finish frees: form it outside */
		MemoryContextSwitchTo(outer);
		row = heap_form_tuple(desc, rvalues, rnulls);
	}
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(outer);
	SPI_finish();
	ec_rel_entry_leave();
	return row;
}
