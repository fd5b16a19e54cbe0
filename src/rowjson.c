/*
 * rowjson.c
 *		Row images and primary keys of tracked tables as jsonb.
 *
 * Values are converted exactly as to_jsonb() converts them, so that what the
 * feed returns can be fed back through jsonb_populate_record() unchanged.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "ec_feed.h"

bool
ec_is_managed_column(const char *attname)
{
	return strcmp(attname, EC_VERSION_COLUMN) == 0 ||
		strcmp(attname, EC_XID_COLUMN) == 0;
}

/* The managed columns' numbers, InvalidAttrNumber where absent or mistyped. */
void
ec_managed_attnums(TupleDesc desc, AttrNumber *version_attnum, AttrNumber *xid_attnum)
{
	*version_attnum = InvalidAttrNumber;
	*xid_attnum = InvalidAttrNumber;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (att->atttypid == INT8OID && strcmp(NameStr(att->attname), EC_VERSION_COLUMN) == 0)
			*version_attnum = att->attnum;
		else if (att->atttypid == XID8OID && strcmp(NameStr(att->attname), EC_XID_COLUMN) == 0)
			*xid_attnum = att->attnum;
	}
}

/*
 * Where the managed columns and the primary key of a tracked table are.
 * Errors if the table has no primary key, or (with require_managed) lacks a
 * managed column: then it was not set up by ec_feed.track().
 */
void
ec_row_shape(Relation rel, EcRowShape *shape, bool require_managed)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	indtup;
	Form_pg_index index;

	ec_managed_attnums(desc, &shape->version_attnum, &shape->xid_attnum);
	if (require_managed &&
		(shape->version_attnum == InvalidAttrNumber || shape->xid_attnum == InvalidAttrNumber))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" lacks the managed columns of ec_feed",
						RelationGetRelationName(rel)),
				 errdetail("A tracked table needs the columns ec_version bigint and ec_xid xid8."),
				 errhint("Call ec_feed.track() on the table again.")));

	if (!OidIsValid(pkey))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no primary key", RelationGetRelationName(rel)),
				 errdetail("ec_feed identifies rows by their primary key."),
				 errhint("Add a primary key to the table.")));
	indtup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkey));
	if (!HeapTupleIsValid(indtup))
		elog(ERROR, "cache lookup failed for index %u", pkey);
	index = (Form_pg_index) GETSTRUCT(indtup);
	shape->nkeys = index->indnkeyatts;
	for (int i = 0; i < shape->nkeys; i++)
		shape->key_attnums[i] = index->indkey.values[i];
	ReleaseSysCache(indtup);
}

/* The row's ec_version. */
int64
ec_row_version(TupleDesc desc, const EcRowShape *shape, HeapTuple tuple)
{
	bool		isnull;
	Datum		version = heap_getattr(tuple, shape->version_attnum, desc, &isnull);

	if (isnull)
		elog(ERROR, "tracked row has a NULL ec_version");
	return DatumGetInt64(version);
}

/* Do two rows of the table store different values in this column? */
bool
ec_attr_differs(TupleDesc desc, AttrNumber attnum, HeapTuple a, HeapTuple b)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	bool		anull;
	bool		bnull;
	Datum		aval = heap_getattr(a, attnum, desc, &anull);
	Datum		bval = heap_getattr(b, attnum, desc, &bnull);

	if (anull || bnull)
		return anull != bnull;
	return !datum_image_eq(aval, bval, att->attbyval, att->attlen);
}

/* to_jsonb() of one value of type typid */
static Jsonb *
value_to_jsonb(Datum value, Oid typid)
{
	FmgrInfo	flinfo;
	FuncExpr   *call;

	/* to_jsonb() finds its argument's type through fn_expr */
	call = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(typid, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info(F_TO_JSONB, &flinfo);
	flinfo.fn_expr = (Node *) call;
	return DatumGetJsonbP(FunctionCall1(&flinfo, value));
}

static void
push_key(JsonbParseState **state, const char *name, int len)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = len;
	pushJsonbValue(state, WJB_KEY, &k);
}

static void
push_jsonb(JsonbParseState **state, Jsonb *value)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &value->root;
	v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* The primary key of a row as a JSON object. */
Jsonb *
ec_row_key(Relation rel, const EcRowShape *shape, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	JsonbParseState *state = NULL;
	JsonbValue *result;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < shape->nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, shape->key_attnums[i] - 1);
		bool		isnull;
		Datum		value = heap_getattr(tuple, att->attnum, desc, &isnull);

		push_key(&state, NameStr(att->attname), strlen(NameStr(att->attname)));
		if (isnull)
		{
			JsonbValue	null;

			null.type = jbvNull;
			pushJsonbValue(&state, WJB_VALUE, &null);
		}
		else
			push_jsonb(&state, value_to_jsonb(value, att->atttypid));
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/* The row as a JSON object without the managed columns. */
Jsonb *
ec_row_data(Relation rel, const EcRowShape *shape, HeapTuple tuple)
{
	Jsonb	   *whole;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbParseState *state = NULL;
	JsonbValue *result = NULL;
	Datum		row = heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel));

	whole = value_to_jsonb(row, rel->rd_rel->reltype);
	if (shape->version_attnum == InvalidAttrNumber && shape->xid_attnum == InvalidAttrNumber)
		return whole;

	/* copy the top-level pairs, leaving out the managed columns */
	it = JsonbIteratorInit(&whole->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);

			if (ec_is_managed_column(name))
			{
				/* skip its value */
				tok = JsonbIteratorNext(&it, &v, true);
				continue;
			}
			pushJsonbValue(&state, WJB_KEY, &v);
		}
		else if (tok == WJB_VALUE)
			pushJsonbValue(&state, WJB_VALUE, &v);
		else
			result = pushJsonbValue(&state, tok, NULL);
	}
	return JsonbValueToJsonb(result);
}
