/*
 * conditional.c
 *		ec_feed.update_if(), ec_feed.delete_if(), and the row lookup behind
 *		ec_feed.token().
 *
 * A conditional write runs as the caller, through SPI, so that privileges,
 * row-level security and the table's other triggers apply exactly as to a
 * plain UPDATE or DELETE. The applied path is one statement,
 *		UPDATE ONLY tab t SET ... WHERE <key> AND t.ec_version = $v RETURNING t.*
 * whose WHERE clause PostgreSQL rechecks against the newest row version if it
 * had to wait for a concurrent writer. Only when that writes nothing does the
 * slow path lock the row (SELECT ... FOR NO KEY UPDATE), read the history of
 * that one key to learn which columns changed since the token, and then write
 * (merged) or answer with the conflict. The row lock is held from the check
 * to the write, and to the end of the transaction. A stale token merges only
 * when the history proves it saw every version of the row since the token
 * (history_since and the chain of prev versions, see changed_since()).
 *
 * The history is read with the index access method, not as the caller, who
 * may have no privilege on ec_feed.history. It is read only for the row the
 * caller has just locked, or, to tell deleted from not_found, when the caller
 * may read the whole table anyway (SELECT privilege and no row-level security
 * in effect), so it never reveals a row the caller could not see.
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
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "ec_feed.h"
#include "token.h"

/* more distinct column sets than this per table are planned for one call only */
#define MAX_UPDATE_PLANS	32

typedef struct UpdatePlan
{
	int			ncols;
	AttrNumber *attnums;		/* ascending */
	SPIPlanPtr	plan;
} UpdatePlan;

/* What a conditional write needs to know about one table, kept per session. */
typedef struct RelEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext mcxt;			/* everything below, except the plans */
	EcRowShape	shape;
	char	   *qualname;		/* quoted schema.table */
	char	   *key_where;		/* key columns = $1 .. $nkeys */
	Oid			argtypes[INDEX_MAX_KEYS + 1];	/* key columns, then ec_version */
	Datum		empty_row;		/* a row of all NULLs: the base for populating */
	FmgrInfo	populate;		/* jsonb_populate_record(tab, jsonb) */
	SPIPlanPtr	token_plan;
	SPIPlanPtr	lock_plan;		/* FOR NO KEY UPDATE, before an update */
	SPIPlanPtr	lock_del_plan;	/* FOR UPDATE, before a delete */
	SPIPlanPtr	delete_plan;
	SPIPlanPtr	get_plan;		/* the whole row by key, for get() */
	List	   *update_plans;	/* of UpdatePlan */
	bool		after_triggers; /* AFTER UPDATE triggers besides ec_feed's */
} RelEntry;

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
		appendStringInfo(&sql, " FROM ONLY %s t WHERE %s", entry->qualname, entry->key_where);
		entry->token_plan = keep_plan(sql.data, entry->shape.nkeys, entry->argtypes);
	}
	return entry->token_plan;
}

static SPIPlanPtr
lock_plan(RelEntry *entry, bool for_delete)
{
	SPIPlanPtr *slot = for_delete ? &entry->lock_del_plan : &entry->lock_plan;

	if (*slot == NULL)
		*slot = keep_plan(psprintf("SELECT t.* FROM ONLY %s t WHERE %s FOR %s OF t",
								   entry->qualname, entry->key_where,
								   for_delete ? "UPDATE" : "NO KEY UPDATE"),
						  entry->shape.nkeys, entry->argtypes);
	return *slot;
}

static SPIPlanPtr
delete_plan(RelEntry *entry)
{
	if (entry->delete_plan == NULL)
		entry->delete_plan =
			keep_plan(psprintf("DELETE FROM ONLY %s t WHERE %s AND t.ec_version OPERATOR(pg_catalog.=) $%d RETURNING t.*",
							   entry->qualname, entry->key_where, entry->shape.nkeys + 1),
					  entry->shape.nkeys + 1, entry->argtypes);
	return entry->delete_plan;
}

/*
 * The UPDATE of the columns attnums (ascending): parameters are the key
 * columns, the expected ec_version, then the new values. *temporary is set
 * when the plan is not kept and must be freed by the caller.
 */
static SPIPlanPtr
update_plan(RelEntry *entry, Relation rel, int ncols, const AttrNumber *attnums, bool *temporary)
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
	appendStringInfo(&sql, "UPDATE ONLY %s t SET ", entry->qualname);
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

static void
make_tuple(HeapTuple tuple, HeapTupleHeader td, Oid relid)
{
	tuple->t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = relid;
	tuple->t_data = td;
}

/* jsonb_populate_record(<row of NULLs>, obj): obj's values converted to the columns' types */
static HeapTuple
populate(RelEntry *entry, Jsonb *obj)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;
	HeapTuple	tuple = palloc(sizeof(HeapTupleData));

	InitFunctionCallInfoData(*fcinfo, &entry->populate, 2, InvalidOid, NULL, NULL);
	/* a non-NULL base row: absent columns stay NULL without domain checks */
	fcinfo->args[0].value = entry->empty_row;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = JsonbPGetDatum(obj);
	fcinfo->args[1].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "jsonb_populate_record returned NULL");
	make_tuple(tuple, DatumGetHeapTupleHeader(result), entry->relid);
	return tuple;
}

static void
require_object(Jsonb *value, const char *what, const char *hint)
{
	if (!JB_ROOT_IS_OBJECT(value) || JB_ROOT_IS_SCALAR(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what),
				 errdetail("It maps column names to values."),
				 errhint("%s", hint)));
}

/* A live column by name, 0 if none. */
static AttrNumber
find_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

static int
key_position(const EcRowShape *shape, AttrNumber attnum)
{
	for (int i = 0; i < shape->nkeys; i++)
		if (shape->key_attnums[i] == attnum)
			return i;
	return -1;
}

/* The names of the top-level fields of an object, in its order. */
static List *
object_fields(Jsonb *obj)
{
	JsonbIterator *it = JsonbIteratorInit(&obj->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *names = NIL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			names = lappend(names, pnstrdup(v.val.string.val, v.val.string.len));
	}
	return names;
}

static void
no_such_column(Relation rel, const char *name, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of relation \"%s\" does not exist", name, RelationGetRelationName(rel)),
			 errdetail("The %s names it.", what),
			 errhint("Use the table's column names as the object's keys.")));
}

/*
 * The key argument: an object naming exactly the primary key columns, none
 * NULL. Sets the key columns' values (for the plans' parameters) and the key
 * in the canonical form that the history and the tokens use.
 */
static void
parse_key(RelEntry *entry, Relation rel, Jsonb *key, Datum *values, Jsonb **canonical)
{
	TupleDesc	desc = RelationGetDescr(rel);
	const EcRowShape *shape = &entry->shape;
	bool		seen[INDEX_MAX_KEYS] = {false};
	ListCell   *lc;
	HeapTuple	tuple;

	require_object(key, "key", "Pass the primary key as an object, e.g. {\"id\": 1}.");
	foreach(lc, object_fields(key))
	{
		char	   *name = lfirst(lc);
		AttrNumber	attnum = find_column(desc, name);
		int			pos;

		if (attnum == InvalidAttrNumber)
			no_such_column(rel, name, "key");
		pos = key_position(shape, attnum);
		if (pos < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" is not part of the primary key of \"%s\"",
							name, RelationGetRelationName(rel)),
					 errdetail("The key must name the primary key columns and nothing else."),
					 errhint("Pass only the primary key columns in the key.")));
		seen[pos] = true;
	}
	for (int i = 0; i < shape->nkeys; i++)
		if (!seen[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key lacks primary key column \"%s\"",
							NameStr(TupleDescAttr(desc, shape->key_attnums[i] - 1)->attname)),
					 errdetail("The key must name every primary key column of \"%s\".",
							   RelationGetRelationName(rel)),
					 errhint("Pass the key as ec_feed returns it, e.g. in the feed's key column.")));

	tuple = populate(entry, key);
	for (int i = 0; i < shape->nkeys; i++)
	{
		bool		isnull;

		values[i] = heap_getattr(tuple, shape->key_attnums[i], desc, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key column \"%s\" is null",
							NameStr(TupleDescAttr(desc, shape->key_attnums[i] - 1)->attname)),
					 errdetail("Primary key columns are never NULL."),
					 errhint("Pass the key as ec_feed returns it.")));
	}
	*canonical = ec_row_key(rel, shape, tuple);
}

static int
cmp_attnum(const void *a, const void *b)
{
	return (int) *(const AttrNumber *) a - (int) *(const AttrNumber *) b;
}

/*
 * The changes argument: an object of ordinary columns. Returns their number,
 * sets attnums (ascending) and the row holding their new values.
 */
static int
parse_changes(RelEntry *entry, Relation rel, Jsonb *changes, AttrNumber *attnums, HeapTuple *tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			ncols = 0;
	ListCell   *lc;

	require_object(changes, "changes", "Pass the columns to change and their new values, e.g. {\"name\": \"Ann\"}.");
	foreach(lc, object_fields(changes))
	{
		char	   *name = lfirst(lc);
		AttrNumber	attnum = find_column(desc, name);

		if (attnum == InvalidAttrNumber)
			no_such_column(rel, name, "changes argument");
		if (attnum == entry->shape.version_attnum || attnum == entry->shape.xid_attnum)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" is managed by ec_feed", name),
					 errdetail("ec_version and ec_xid are written by ec_feed on every change."),
					 errhint("Leave them out of the changes; the token carries the version.")));
		if (key_position(&entry->shape, attnum) >= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" is part of the primary key of \"%s\"",
							name, RelationGetRelationName(rel)),
					 errdetail("A conditional write changes the row that the key and the token name, not its key."),
					 errhint("Change a primary key with a plain UPDATE.")));
		attnums[ncols++] = attnum;
	}
	if (ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("changes must name at least one column"),
				 errdetail("An empty object would write nothing."),
				 errhint("Pass the columns to change and their new values.")));
	qsort(attnums, ncols, sizeof(AttrNumber), cmp_attnum);
	*tuple = populate(entry, changes);
	return ncols;
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
static HeapTuple
run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, int expected, Oid relid)
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
		entry->get_plan = keep_plan(psprintf("SELECT t.* FROM ONLY %s t WHERE %s",
											 entry->qualname, entry->key_where),
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

	free_retired();
	entry = get_entry(rel);
	active_calls++;
	parse_key(entry, rel, key, values, &canonical);
	row = execute_one(get_plan(entry), values, NULL, true, snap, SPI_OK_SELECT, rel);
	*keyjson = row ? ec_row_key(rel, &entry->shape, row) : canonical;
	active_calls--;
	return row;
}

char *
ec_current_token(Relation rel, Jsonb *key)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext outer = CurrentMemoryContext;
	RelEntry   *entry;
	Datum		values[INDEX_MAX_KEYS];
	Jsonb	   *canonical;
	char	   *result = NULL;
	int			rc;

	free_retired();
	entry = get_entry(rel);
	active_calls++;
	parse_key(entry, rel, key, values, &canonical);

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
		HeapTuple	row;

		/* the row's own key: it may differ from the argument (say, in case under citext) */
		memset(rnulls, true, sizeof(bool) * desc->natts);
		rvalues[entry->shape.version_attnum - 1] = SPI_getbinval(found, fdesc, 1, &rnulls[entry->shape.version_attnum - 1]);
		rvalues[entry->shape.xid_attnum - 1] = SPI_getbinval(found, fdesc, 2, &rnulls[entry->shape.xid_attnum - 1]);
		for (int i = 0; i < entry->shape.nkeys; i++)
		{
			AttrNumber	attnum = entry->shape.key_attnums[i];

			rvalues[attnum - 1] = SPI_getbinval(found, fdesc, 3 + i, &rnulls[attnum - 1]);
		}
		row = heap_form_tuple(desc, rvalues, rnulls);
		result = ec_row_token_text(rel, &entry->shape, row, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	/* SPI calls leave us in SPI's memory, which SPI_finish frees: copy out */
	MemoryContextSwitchTo(outer);
	if (result)
		result = pstrdup(result);
	SPI_finish();
	active_calls--;
	return result;
}

/* ---------------------------------------------------------------------
 * The history of one key after a token's version
 * ---------------------------------------------------------------------
 */
typedef struct HistorySince
{
	bool		has_token_version;	/* an entry at the token's version is retained */
	bool		chained;		/* each later entry follows the one before it */
	int64		last;			/* the newest entry's version, 0 if none */
	bool		replaced;		/* deleted (and maybe inserted again) since */
	bool		deleted;		/* a delete since the token */
	List	   *changed;		/* names from the updates' changed, no duplicates */
} HistorySince;

static void
add_name(List **names, const char *name)
{
	ListCell   *lc;

	foreach(lc, *names)
		if (strcmp(lfirst(lc), name) == 0)
			return;
	*names = lappend(*names, pstrdup(name));
}

/*
 * The entries of one key from the token's version on. They are chained when
 * each update or delete names as its prev the version of the entry before it,
 * and an insert follows only a delete (the row was replaced): then no version
 * of the row between the token's and the last entry's went unrecorded. A
 * change made while nothing recorded it (history off, trigger disabled) leaves
 * a version no entry has, so the next entry's prev matches nothing.
 */
static void
history_since(Oid relid, Jsonb *key, int64 version, HistorySince *hs)
{
	Relation	history;
	SysScanDesc scan;
	ScanKeyData skey[3];
	Snapshot	snapshot;
	HeapTuple	tuple;
	TupleDesc	desc;
	char		prev_op = '\0';	/* op of the entry before */
	int64		expect = version;	/* its version: the next entry's prev */

	memset(hs, 0, sizeof(HistorySince));
	history = table_open(ec_feed_relid(EC_HISTORY_REL), AccessShareLock);
	desc = RelationGetDescr(history);
	/* after the row lock: sees every committed change of the row, and our own */
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	ScanKeyInit(&skey[0], Anum_history_relid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&skey[1], Anum_history_key, BTEqualStrategyNumber, F_JSONB_EQ,
				JsonbPGetDatum(key));
	ScanKeyInit(&skey[2], Anum_history_seq, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(version));
	scan = systable_beginscan(history, ec_feed_relid(EC_HISTORY_KEY_IDX), true,
							  snapshot, 3, skey);
	/* entries written before 0.2.0's upgrade script ran name no prev */
	hs->chained = desc->natts >= Anum_history_prev_version;
	while ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		int64		seq = DatumGetInt64(heap_getattr(tuple, Anum_history_seq, desc, &isnull));
		char		op = DatumGetChar(heap_getattr(tuple, Anum_history_op, desc, &isnull));
		Datum		prev = 0;
		bool		prev_null = true;
		Datum		changed;

		CHECK_FOR_INTERRUPTS();
		if (desc->natts >= Anum_history_prev_version)
			prev = heap_getattr(tuple, Anum_history_prev_version, desc, &prev_null);
		if (seq == version)
		{
			hs->has_token_version = true;
			prev_op = op;
			continue;
		}
		if (op == EC_OP_INSERT ? prev_op != EC_OP_DELETE :
			prev_null || DatumGetInt64(prev) != expect)
			hs->chained = false;
		prev_op = op;
		expect = seq;
		hs->last = seq;
		if (op == EC_OP_UPDATE)
		{
			changed = heap_getattr(tuple, Anum_history_changed, desc, &isnull);
			if (!isnull)
			{
				Datum	   *names;
				int			n;

				deconstruct_array(DatumGetArrayTypeP(changed), TEXTOID, -1, false,
								  TYPALIGN_INT, &names, NULL, &n);
				for (int i = 0; i < n; i++)
					add_name(&hs->changed, TextDatumGetCString(names[i]));
			}
		}
		else
		{
			hs->replaced = true;
			if (op == EC_OP_DELETE)
				hs->deleted = true;
		}
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(history, AccessShareLock);
}

static ArrayType *
text_array(List *names)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(names) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, names)
		elems[n++] = CStringGetTextDatum(lfirst(lc));
	return construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * The columns changed since the token, in the table's column order (names the
 * table no longer has last), or NIL with *known false when the history cannot
 * prove it saw every version of the row from the token's to the current one:
 * the token's version is older than the table's history (history_since: not
 * recorded then, or the table's schema changed since), pruned, never
 * committed, or the chain of versions has a hole. A row replaced since the
 * token (deleted and inserted again) has every column changed, key columns
 * too: a table of key columns only would otherwise show nothing changed.
 */
static List *
changed_since(Relation rel, bool history_on, Jsonb *key,
			  int64 token_version, int64 current_version, bool *known)
{
	TupleDesc	desc = RelationGetDescr(rel);
	HistorySince hs;
	int64		since;
	List	   *result = NIL;
	ListCell   *lc;

	*known = false;
	if (!history_on || token_version > current_version)
		return NIL;
	/* read after the row lock: a track() or ALTER TABLE before it is seen */
	if (!ec_history_since(RelationGetRelid(rel), &since) || token_version < since)
		return NIL;
	history_since(RelationGetRelid(rel), key, token_version, &hs);
	if (!hs.has_token_version || !hs.chained || hs.last != current_version)
		return NIL;
	*known = true;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		bool		listed = hs.replaced;

		if (att->attisdropped || ec_is_managed_column(name))
			continue;
		foreach(lc, hs.changed)
			if (!listed && strcmp(lfirst(lc), name) == 0)
				listed = true;
		if (listed)
			result = lappend(result, pstrdup(name));
	}
	foreach(lc, hs.changed)
		if (find_column(desc, lfirst(lc)) == InvalidAttrNumber)
			result = lappend(result, lfirst(lc));
	return result;
}

static bool
name_listed(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * Without a row to lock, may the history say whether it was deleted? Only if
 * the caller could read any row of the table, so no hidden row is revealed.
 */
static bool
may_read_whole_table(Oid relid)
{
	return pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED;
}

static bool
deleted_since(Relation rel, bool history_on, Jsonb *key, int64 token_version)
{
	HistorySince hs;

	if (!history_on || !may_read_whole_table(RelationGetRelid(rel)))
		return false;
	history_since(RelationGetRelid(rel), key, token_version, &hs);
	return hs.deleted;
}

/* ---------------------------------------------------------------------
 * The result, ec_feed.write_result
 * ---------------------------------------------------------------------
 */
typedef struct WriteResult
{
	const char *status;
	char	   *token;
	Jsonb	   *current;
	Jsonb	   *requested;
	List	   *conflicts;
	bool		conflicts_known;
	List	   *changed_since;
	bool		changed_known;
} WriteResult;

static Datum
result_datum(FunctionCallInfo fcinfo, const WriteResult *r)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = CStringGetTextDatum(r->status);
	nulls[1] = r->token == NULL;
	if (r->token)
		values[1] = CStringGetTextDatum(r->token);
	nulls[2] = r->current == NULL;
	if (r->current)
		values[2] = JsonbPGetDatum(r->current);
	nulls[3] = r->requested == NULL;
	if (r->requested)
		values[3] = JsonbPGetDatum(r->requested);
	nulls[4] = !r->conflicts_known;
	if (r->conflicts_known)
		values[4] = PointerGetDatum(text_array(r->conflicts));
	nulls[5] = !r->changed_known;
	if (r->changed_known)
		values[5] = PointerGetDatum(text_array(r->changed_since));
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* The requested columns of a populated row, as JSON of the same form as current. */
static Jsonb *
requested_json(Relation rel, const EcRowShape *shape, HeapTuple changes_row,
			   int ncols, const AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Jsonb	   *whole = ec_row_data(rel, shape, changes_row);
	JsonbIterator *it = JsonbIteratorInit(&whole->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue *result = NULL;
	bool		keep = false;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);

			keep = false;
			for (int i = 0; i < ncols; i++)
				if (strcmp(NameStr(TupleDescAttr(desc, attnums[i] - 1)->attname), name) == 0)
					keep = true;
			if (keep)
				pushJsonbValue(&state, WJB_KEY, &v);
		}
		else if (tok == WJB_VALUE)
		{
			if (keep)
				pushJsonbValue(&state, WJB_VALUE, &v);
		}
		else
			result = pushJsonbValue(&state, tok, NULL);
	}
	return JsonbValueToJsonb(result);
}

static void
check_not_null(FunctionCallInfo fcinfo, int nargs, const char *const *names)
{
	for (int i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument \"%s\" must not be null", names[i]),
					 errdetail("A conditional write needs the table, the key, the token%s.",
							   nargs > 3 ? " and the changes" : ""),
					 errhint(i == 2 ? "Read the row first (ec_feed.row_token() or ec_feed.token()) to get its token; over HTTP, answer 428 to a request without If-Match." :
							 "Pass a value.")));
}

static void
token_of_other_table(Relation rel, const EcToken *token)
{
	char	   *other = get_rel_name(token->relid);

	ereport(ERROR,
			(errcode(ERRCODE_EC_TOKEN_MISMATCH),
			 errmsg("token belongs to another table"),
			 other ? errdetail("It was issued for table \"%s\", not for \"%s\".",
							   other, RelationGetRelationName(rel)) :
			 errdetail("It was issued for a table that no longer exists, not for \"%s\".",
					   RelationGetRelationName(rel)),
			 errhint("Pass the token of the row you are writing, as read from this table.")));
}

static void
token_of_other_row(Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_EC_TOKEN_MISMATCH),
			 errmsg("token belongs to another row of \"%s\"", RelationGetRelationName(rel)),
			 errdetail("The key passed is not the key of the row the token was issued for."),
			 errhint("Pass the token of the row you are writing, as read from this table.")));
}

/* Key params of a plan, then the version: the first nkeys + 1 parameters. */
static void
set_key_params(const RelEntry *entry, Datum *params, const Datum *keyvals, int64 version)
{
	for (int i = 0; i < entry->shape.nkeys; i++)
		params[i] = keyvals[i];
	params[entry->shape.nkeys] = Int64GetDatum(version);
}

static void
write_skipped(Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
			 errmsg("a trigger of \"%s\" skipped the conditional write", RelationGetRelationName(rel)),
			 errdetail("The row was locked and its version checked, but a BEFORE trigger returned NULL."),
			 errhint("Check the BEFORE UPDATE and BEFORE DELETE triggers of the table.")));
}

/*
 * The path of a token that is not the row's current one: lock the row by
 * key. No row: result->status is deleted or not_found and NULL is returned.
 * Otherwise the token must name this row; *version is the row's, and when it
 * is not the token's, result->changed_since tells what changed since.
 */
static HeapTuple
lock_for_token(Relation rel, RelEntry *entry, bool for_delete, Datum *keyvals,
			   Jsonb *canonical, uint64 arg_hash, const EcToken *token, bool history_on,
			   WriteResult *result, int64 *version, Jsonb **rowkey)
{
	HeapTuple	locked = run_plan(lock_plan(entry, for_delete), keyvals, NULL, false,
								  SPI_OK_SELECT, RelationGetRelid(rel));
	bool		known = true;

	if (locked == NULL)
	{
		if (arg_hash != token->key_hash)
			token_of_other_row(rel);
		result->status = deleted_since(rel, history_on, canonical, token->version) ?
			"deleted" : "not_found";
		return NULL;
	}
	*rowkey = ec_row_key(rel, &entry->shape, locked);
	*version = ec_row_version(RelationGetDescr(rel), &entry->shape, locked);
	if (token->key_hash != arg_hash && token->key_hash != ec_key_hash(*rowkey))
		token_of_other_row(rel);
	result->changed_since = NIL;
	if (*version != token->version)
		result->changed_since = changed_since(rel, history_on, *rowkey,
											  token->version, *version, &known);
	result->changed_known = known;
	return locked;
}

/* No write: the answer is the row as it is now, and its token. */
static void
conflict_result(WriteResult *result, Relation rel, RelEntry *entry, HeapTuple locked,
				Jsonb *rowkey)
{
	result->status = "conflict";
	result->current = ec_row_data(rel, &entry->shape, locked);
	result->token = ec_row_token_text(rel, &entry->shape, locked, rowkey);
}

/*
 * ec_feed.update_if(rel regclass, key jsonb, token text, changes jsonb,
 *					 merge boolean DEFAULT true) → ec_feed.write_result
 */
PG_FUNCTION_INFO_V1(ec_feed_update_if);

Datum
ec_feed_update_if(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"rel", "key", "token", "changes", "merge"};
	Oid			relid;
	Jsonb	   *key;
	Jsonb	   *changes;
	bool		merge;
	EcToken		token;
	Relation	rel;
	bool		history_on;
	RelEntry   *entry;
	TupleDesc	desc;
	int			nkeys;
	Datum		keyvals[INDEX_MAX_KEYS];
	Jsonb	   *canonical;
	uint64		arg_hash;
	AttrNumber *attnums;
	int			ncols;
	HeapTuple	changes_row;
	Datum	   *params;
	char	   *nulls;
	bool		temporary;
	SPIPlanPtr	uplan;
	HeapTuple	row;
	MemoryContext outer = CurrentMemoryContext;
	WriteResult result;
	Datum		datum;

	check_not_null(fcinfo, 5, argnames);
	relid = PG_GETARG_OID(0);
	key = PG_GETARG_JSONB_P(1);
	changes = PG_GETARG_JSONB_P(3);
	merge = PG_GETARG_BOOL(4);
	ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(2)), &token);

	rel = ec_open_tracked(relid, RowExclusiveLock, &history_on);
	if (token.relid != relid)
		token_of_other_table(rel, &token);
	free_retired();
	entry = get_entry(rel);
	active_calls++;
	desc = RelationGetDescr(rel);
	nkeys = entry->shape.nkeys;

	parse_key(entry, rel, key, keyvals, &canonical);
	arg_hash = ec_key_hash(canonical);
	attnums = palloc(sizeof(AttrNumber) * desc->natts);
	ncols = parse_changes(entry, rel, changes, attnums, &changes_row);

	memset(&result, 0, sizeof(result));
	result.requested = requested_json(rel, &entry->shape, changes_row, ncols, attnums);

	params = palloc(sizeof(Datum) * (nkeys + 1 + ncols));
	nulls = palloc(nkeys + 1 + ncols + 1);
	memset(nulls, ' ', nkeys + 1 + ncols);
	nulls[nkeys + 1 + ncols] = '\0';
	for (int i = 0; i < ncols; i++)
	{
		bool		isnull;

		params[nkeys + 1 + i] = heap_getattr(changes_row, attnums[i], desc, &isnull);
		if (isnull)
			nulls[nkeys + 1 + i] = 'n';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(outer);
	uplan = update_plan(entry, rel, ncols, attnums, &temporary);

	/* the applied path: one UPDATE, conditional on the version */
	row = NULL;
	if (arg_hash == token.key_hash)
	{
		set_key_params(entry, params, keyvals, token.version);
		row = run_plan(uplan, params, nulls, false, SPI_OK_UPDATE_RETURNING, relid);
		if (row)
		{
			result.status = "applied";
			result.conflicts_known = result.changed_known = true;
		}
	}

	if (row == NULL)
	{
		int64		version;
		Jsonb	   *rowkey;
		HeapTuple	locked = lock_for_token(rel, entry, false, keyvals, canonical, arg_hash,
											&token, history_on, &result, &version, &rowkey);

		if (locked != NULL)
		{
			List	   *conflicts = NIL;

			/* a requested column changed since, to another value than requested */
			for (int i = 0; version != token.version && i < ncols; i++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);

				if (result.changed_known && !name_listed(result.changed_since, NameStr(att->attname)))
					continue;
				if (ec_attr_differs(desc, attnums[i], locked, changes_row))
					conflicts = lappend(conflicts, pstrdup(NameStr(att->attname)));
			}
			result.conflicts = conflicts;
			result.conflicts_known = true;

			if (version == token.version || (merge && result.changed_known && conflicts == NIL))
			{
				set_key_params(entry, params, keyvals, version);
				row = run_plan(uplan, params, nulls, false, SPI_OK_UPDATE_RETURNING, relid);
				if (row == NULL)
					write_skipped(rel);
				result.status = version == token.version ? "applied" : "merged";
			}
			else
				conflict_result(&result, rel, entry, locked, rowkey);
		}
	}
	if (row && entry->after_triggers)
	{
		/* the row as the table's AFTER triggers left it (we hold its lock) */
		HeapTuple	now = run_plan(lock_plan(entry, false), keyvals, NULL, false,
								   SPI_OK_SELECT, relid);

		if (now)
			row = now;
	}
	if (row)
	{
		result.current = ec_row_data(rel, &entry->shape, row);
		result.token = ec_row_token_text(rel, &entry->shape, row, NULL);
	}

	if (temporary)
		SPI_freeplan(uplan);
	/* SPI calls leave us in SPI's memory, which SPI_finish frees: copy out */
	MemoryContextSwitchTo(outer);
	datum = result_datum(fcinfo, &result);
	SPI_finish();
	active_calls--;
	relation_close(rel, NoLock);
	PG_RETURN_DATUM(datum);
}

/* ec_feed.delete_if(rel regclass, key jsonb, token text) → ec_feed.write_result */
PG_FUNCTION_INFO_V1(ec_feed_delete_if);

Datum
ec_feed_delete_if(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"rel", "key", "token"};
	Oid			relid;
	Jsonb	   *key;
	EcToken		token;
	Relation	rel;
	bool		history_on;
	RelEntry   *entry;
	Datum		params[INDEX_MAX_KEYS + 1];
	Jsonb	   *canonical;
	uint64		arg_hash;
	HeapTuple	row = NULL;
	MemoryContext outer = CurrentMemoryContext;
	WriteResult result;
	Datum		datum;

	check_not_null(fcinfo, 3, argnames);
	relid = PG_GETARG_OID(0);
	key = PG_GETARG_JSONB_P(1);
	ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(2)), &token);

	rel = ec_open_tracked(relid, RowExclusiveLock, &history_on);
	if (token.relid != relid)
		token_of_other_table(rel, &token);
	free_retired();
	entry = get_entry(rel);
	active_calls++;

	parse_key(entry, rel, key, params, &canonical);
	arg_hash = ec_key_hash(canonical);
	memset(&result, 0, sizeof(result));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(outer);

	if (arg_hash == token.key_hash)
	{
		params[entry->shape.nkeys] = Int64GetDatum(token.version);
		row = run_plan(delete_plan(entry), params, NULL, false, SPI_OK_DELETE_RETURNING, relid);
		if (row)
		{
			result.status = "applied";
			result.conflicts_known = result.changed_known = true;
		}
	}
	if (row == NULL)
	{
		int64		version;
		Jsonb	   *rowkey;
		HeapTuple	locked = lock_for_token(rel, entry, true, params, canonical, arg_hash,
											&token, history_on, &result, &version, &rowkey);

		if (locked != NULL)
		{
			/* deleting the row touches every column: each one changed since conflicts */
			result.conflicts = result.changed_since;
			result.conflicts_known = result.changed_known;

			if (version == token.version || (result.changed_known && result.changed_since == NIL))
			{
				params[entry->shape.nkeys] = Int64GetDatum(version);
				row = run_plan(delete_plan(entry), params, NULL, false,
							   SPI_OK_DELETE_RETURNING, relid);
				if (row == NULL)
					write_skipped(rel);
				result.status = version == token.version ? "applied" : "merged";
			}
			else
				conflict_result(&result, rel, entry, locked, rowkey);
		}
	}

	MemoryContextSwitchTo(outer);
	datum = result_datum(fcinfo, &result);
	SPI_finish();
	active_calls--;
	relation_close(rel, NoLock);
	PG_RETURN_DATUM(datum);
}
