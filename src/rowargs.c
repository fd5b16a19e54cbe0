/*
 * rowargs.c
 *		The arguments that name a row by key and the values to write: the
 *		`key` and `changes` objects of update_if(), delete_if(), token() and
 *		get(), checked against the table and converted to its columns' types.
 *
 * Values are converted by jsonb_populate_record() into the table's row type,
 * as a plain INSERT of the same JSON would convert them; the key is then put
 * in the canonical form that the history and the tokens use (ec_row_key).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "ec_feed.h"
#include "rowaccess.h"

/*
 * A value of the key or changes argument that does not convert to its
 * column's type (any data exception, or a domain's constraint). One code of
 * its own: PostgreSQL's codes for these (22P02, 22003, 22007, ...) overlap
 * those of malformed tokens, and an API must tell a bad request body (422)
 * from a bad ETag (412) by the SQLSTATE alone.
 */
#define ERRCODE_EC_INVALID_VALUE	MAKE_SQLSTATE('E','C','0','0','5')

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

/*
 * Called in PG_CATCH() after converting the value of column att failed: a
 * data exception or a domain's constraint becomes EC005 naming the column;
 * anything else (out of memory, a cancel) is rethrown as it is. Nothing runs
 * between the failure and the new error, so no state of the failed
 * conversion is used.
 */
pg_noreturn static void
invalid_value(MemoryContext cxt, Relation rel, Form_pg_attribute att, const char *what)
{
	ErrorData  *edata;
	int			category;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	if (category != ERRCODE_DATA_EXCEPTION &&
		category != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
		PG_RE_THROW();
	FlushErrorState();
	ereport(ERROR,
			(errcode(ERRCODE_EC_INVALID_VALUE),
			 errmsg("invalid value for column \"%s\" of \"%s\" in %s",
					NameStr(att->attname), RelationGetRelationName(rel), what),
			 errdetail("Converting it to type %s failed: %s (SQLSTATE %s).%s%s",
					   format_type_with_typemod(att->atttypid, att->atttypmod),
					   edata->message, unpack_sql_state(edata->sqlerrcode),
					   edata->detail ? " " : "", edata->detail ? edata->detail : ""),
			 strcmp(what, "key") == 0 ?
			 errhint("Pass the key as ec_feed shows it, e.g. in the feed's key column.") :
			 errhint("Send a value of the column's type, in the form ec_feed shows the row (update_if's current, get's data).")));
}

/* populate(), with a failure to convert att's value reported as EC005 */
static HeapTuple
convert(RelEntry *entry, Relation rel, Jsonb *member, Form_pg_attribute att, const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	HeapTuple	tuple = NULL;

	PG_TRY();
	{
		tuple = populate(entry, member);
	}
	PG_CATCH();
	{
		invalid_value(cxt, rel, att, what);
	}
	PG_END_TRY();
	return tuple;
}

/* {name: obj->name}: one member of an object */
static Jsonb *
one_member(Jsonb *obj, const char *name)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue *v = getKeyJsonValueFromContainer(&obj->root, name, strlen(name), NULL);

	if (v == NULL)
		elog(ERROR, "member \"%s\" vanished from the object", name);
	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(&state, WJB_KEY, &k);
	pushJsonbValue(&state, WJB_VALUE, v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * The object's values (its members name the columns attnums) converted to
 * the columns' types, as a row of the table with every other column NULL.
 * Each member is converted on its own, so that a value that does not
 * convert is reported with its column (EC005); an object of one member, the
 * common case, costs one conversion as before.
 */
static HeapTuple
populate_columns(RelEntry *entry, Relation rel, Jsonb *obj, int n,
				 const AttrNumber *attnums, const char *what)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = NULL;
	bool	   *nulls = NULL;
	HeapTuple	tuple = NULL;

	if (n > 1)
	{
		values = palloc0(sizeof(Datum) * desc->natts);
		nulls = palloc(sizeof(bool) * desc->natts);
		memset(nulls, true, sizeof(bool) * desc->natts);
	}
	for (int i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);

		tuple = convert(entry, rel, n == 1 ? obj : one_member(obj, NameStr(att->attname)),
						att, what);
		if (n > 1)
			values[attnums[i] - 1] = heap_getattr(tuple, attnums[i], desc, &nulls[attnums[i] - 1]);
	}
	if (n > 1)
	{
		tuple = heap_form_tuple(desc, values, nulls);
		tuple->t_tableOid = entry->relid;
	}
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
AttrNumber
ec_find_column(TupleDesc desc, const char *name)
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
void
ec_parse_key(RelEntry *entry, Relation rel, Jsonb *key, Datum *values, Jsonb **canonical)
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
		AttrNumber	attnum = ec_find_column(desc, name);
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

	tuple = populate_columns(entry, rel, key, shape->nkeys, shape->key_attnums, "key");
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
int
ec_parse_changes(RelEntry *entry, Relation rel, Jsonb *changes, AttrNumber *attnums, HeapTuple *tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			ncols = 0;
	ListCell   *lc;

	require_object(changes, "changes", "Pass the columns to change and their new values, e.g. {\"name\": \"Ann\"}.");
	foreach(lc, object_fields(changes))
	{
		char	   *name = lfirst(lc);
		AttrNumber	attnum = ec_find_column(desc, name);

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
	*tuple = populate_columns(entry, rel, changes, ncols, attnums, "changes");
	return ncols;
}
