/*
 * rowjson.c
 *		Row images and primary keys of tracked tables as jsonb.
 *
 * Row images are converted exactly as to_jsonb() converts them, so that what
 * the feed returns can be fed back through jsonb_populate_record()
 * unchanged. Keys are too, with one difference: a key names a row in the
 * history, in tokens (by its hash) and in the feed, so it must not depend on
 * the session that renders it. to_jsonb() renders timestamptz in the
 * session's TimeZone, floats with its extra_float_digits, bytea in its
 * bytea_output, interval in its IntervalStyle, money in its lc_monetary,
 * reg* types by its search_path, ranges and composites in its DateStyle.
 * ec_row_key() renders those canonically instead (see key_kind()); every
 * canonical form reads back through jsonb_populate_record() under any
 * settings.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
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

/*
 * How a key column's value becomes JSON. The first kinds are built here
 * directly, as to_jsonb() builds them but without its per-call type lookup;
 * those of settings-dependent types in their canonical form.
 */
typedef enum EcKeyKind
{
	EC_KEY_INT,					/* int2, int4, int8: a number */
	EC_KEY_NUMERIC,				/* a number; NaN and infinities as strings */
	EC_KEY_BOOL,
	EC_KEY_TEXT,				/* text, varchar, bpchar: the string */
	EC_KEY_OUTPUT,				/* the output function's string; it reads no setting */
	EC_KEY_DATETIME,			/* date, timestamp: ISO 8601 as to_jsonb() */
	EC_KEY_TIMESTAMPTZ,			/* ISO 8601 in UTC (+00:00) */
	EC_KEY_FLOAT4,				/* shortest exact digits, as extra_float_digits 1 */
	EC_KEY_FLOAT8,
	EC_KEY_BYTEA,				/* hex, as bytea_output 'hex' */
	EC_KEY_TO_JSONB,			/* to_jsonb(), which reads no setting for this type */
	EC_KEY_FIXED				/* to_jsonb() under the fixed settings below */
} EcKeyKind;

/*
 * The settings a FIXED key renders under: those of a fresh session, with
 * TimeZone UTC. Bit i of a settings mask stands for entry i.
 */
static const struct
{
	const char *name;
	const char *value;
}			fixed_settings[] =
{
	{"TimeZone", "UTC"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"search_path", "pg_catalog"},
};

#define EC_SET_TIMEZONE			(1 << 0)
#define EC_SET_INTERVALSTYLE	(1 << 2)
#define EC_SET_FLOAT			(1 << 3)
#define EC_SET_BYTEA			(1 << 4)
#define EC_SET_MONETARY			(1 << 5)
#define EC_SET_SEARCH_PATH		(1 << 6)
#define EC_SET_ALL				((1 << lengthof(fixed_settings)) - 1)

typedef struct KeyColumn
{
	AttrNumber	attnum;
	Oid			typid;			/* the column's type, to check the cache */
	Oid			base;			/* its base type (through domains) */
	EcKeyKind	kind;
	FmgrInfo	fn;				/* OUTPUT: the output function; TO_JSONB, FIXED: to_jsonb */
} KeyColumn;

/* The key columns of one table and how to render them, kept per session. */
typedef struct KeyShape
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			nkeys;
	int			settings;		/* mask of fixed_settings the FIXED columns need */
	MemoryContext mcxt;			/* the FmgrInfos' memory */
	KeyColumn	cols[INDEX_MAX_KEYS];
} KeyShape;

static HTAB *key_shapes = NULL;
static uint64 key_shape_invals = 0;

static void
key_shapes_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	KeyShape   *entry;

	key_shape_invals++;
	if (OidIsValid(relid))
	{
		entry = hash_search(key_shapes, &relid, HASH_FIND, NULL);
		if (entry)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, key_shapes);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/*
 * How values of type typid (a column's type, or an array's element type)
 * become key JSON; *settings gets the fixed settings a FIXED kind needs.
 */
static EcKeyKind
key_kind(Oid typid, int *settings)
{
	Oid			base = getBaseType(typid);
	Oid			elem;

	*settings = 0;
	switch (base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return EC_KEY_INT;
		case NUMERICOID:
			return EC_KEY_NUMERIC;
		case BOOLOID:
			return EC_KEY_BOOL;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return EC_KEY_TEXT;
		case NAMEOID:
		case UUIDOID:
		case OIDOID:
		case CHAROID:
		case TIMEOID:
		case TIMETZOID:			/* its offset prints alike in every DateStyle */
		case INETOID:
		case CIDROID:
		case MACADDROID:
		case MACADDR8OID:
		case BITOID:
		case VARBITOID:
		case PG_LSNOID:
		case XID8OID:
		case TIDOID:
		case TSVECTOROID:
		case TSQUERYOID:
			return EC_KEY_OUTPUT;
		case DATEOID:
		case TIMESTAMPOID:
			return EC_KEY_DATETIME;
		case TIMESTAMPTZOID:
			return EC_KEY_TIMESTAMPTZ;
		case FLOAT4OID:
			return EC_KEY_FLOAT4;
		case FLOAT8OID:
			return EC_KEY_FLOAT8;
		case BYTEAOID:
			return EC_KEY_BYTEA;
		case JSONOID:
		case JSONBOID:
			return EC_KEY_TO_JSONB;
		case INTERVALOID:
			*settings = EC_SET_INTERVALSTYLE;
			return EC_KEY_FIXED;
		case CASHOID:
			*settings = EC_SET_MONETARY;
			return EC_KEY_FIXED;
		case REGPROCOID:
		case REGPROCEDUREOID:
		case REGOPEROID:
		case REGOPERATOROID:
		case REGCLASSOID:
		case REGCOLLATIONOID:
		case REGTYPEOID:
		case REGROLEOID:
		case REGNAMESPACEOID:
		case REGCONFIGOID:
		case REGDICTIONARYOID:
			*settings = EC_SET_SEARCH_PATH;
			return EC_KEY_FIXED;
	}

	/* an enum's label; a cast to json the type may have is not used */
	if (type_is_enum(base))
		return EC_KEY_OUTPUT;

	/* an array: by its elements, which to_jsonb() renders by their kind */
	elem = get_element_type(base);
	if (OidIsValid(elem))
	{
		switch (key_kind(elem, settings))
		{
			case EC_KEY_TIMESTAMPTZ:
				*settings = EC_SET_TIMEZONE;
				return EC_KEY_FIXED;
			case EC_KEY_FLOAT4:
			case EC_KEY_FLOAT8:
				*settings = EC_SET_FLOAT;
				return EC_KEY_FIXED;
			case EC_KEY_BYTEA:
				*settings = EC_SET_BYTEA;
				return EC_KEY_FIXED;
			case EC_KEY_FIXED:
				return EC_KEY_FIXED;
			default:
				return EC_KEY_TO_JSONB;
		}
	}

	/* composites, ranges, other types: whatever their output may read */
	*settings = EC_SET_ALL;
	return EC_KEY_FIXED;
}

/* to_jsonb() of values of type typid, its argument type in fn_expr */
static void
to_jsonb_info(FmgrInfo *flinfo, Oid typid, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);

	fmgr_info_cxt(F_TO_JSONB, flinfo, mcxt);
	flinfo->fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
											list_make1(makeNullConst(typid, -1, InvalidOid)),
											InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	MemoryContextSwitchTo(old);
}

/* The key shape of rel, built on first use and after invalidations. */
static KeyShape *
key_shape(Relation rel, const EcRowShape *shape)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			relid = RelationGetRelid(rel);
	KeyShape   *entry;
	bool		found;
	uint64		invals;

	if (key_shapes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(KeyShape);
		key_shapes = hash_create("ec_feed key shapes", 64, &ctl, HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(key_shapes_invalidate, (Datum) 0);
	}
	entry = hash_search(key_shapes, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->mcxt = NULL;
	}
	else if (entry->valid && entry->nkeys == shape->nkeys)
	{
		bool		same = true;

		for (int i = 0; same && i < shape->nkeys; i++)
			same = entry->cols[i].attnum == shape->key_attnums[i] &&
				entry->cols[i].typid == TupleDescAttr(desc, shape->key_attnums[i] - 1)->atttypid;
		if (same)
			return entry;
	}

	/* (re)build; after an invalidation while building, again on the next call */
	entry->valid = false;
	invals = key_shape_invals;
	if (entry->mcxt)
		MemoryContextDelete(entry->mcxt);
	entry->mcxt = NULL;
	entry->nkeys = shape->nkeys;
	entry->settings = 0;
	for (int i = 0; i < shape->nkeys; i++)
	{
		KeyColumn  *col = &entry->cols[i];
		int			settings;

		col->attnum = shape->key_attnums[i];
		col->typid = TupleDescAttr(desc, col->attnum - 1)->atttypid;
		col->base = getBaseType(col->typid);
		col->kind = key_kind(col->typid, &settings);
		entry->settings |= settings;
		if ((col->kind == EC_KEY_OUTPUT || col->kind == EC_KEY_TO_JSONB ||
			 col->kind == EC_KEY_FIXED) && entry->mcxt == NULL)
			entry->mcxt = AllocSetContextCreate(CacheMemoryContext, "ec_feed key shape",
												ALLOCSET_SMALL_SIZES);
		if (col->kind == EC_KEY_OUTPUT)
		{
			Oid			outfunc;
			bool		varlena;

			getTypeOutputInfo(col->base, &outfunc, &varlena);
			fmgr_info_cxt(outfunc, &col->fn, entry->mcxt);
		}
		else if (col->kind == EC_KEY_TO_JSONB || col->kind == EC_KEY_FIXED)
			to_jsonb_info(&col->fn, col->typid, entry->mcxt);
	}
	entry->valid = invals == key_shape_invals;
	return entry;
}

static void
string_value(JsonbValue *v, char *str, int len)
{
	v->type = jbvString;
	v->val.string.val = str;
	v->val.string.len = len;
}

/* A rendered number as to_jsonb() takes it: a number, or a string (NaN, Infinity). */
static void
number_value(JsonbValue *v, char *str)
{
	if (strchr(str, 'N') || strchr(str, 'n'))
		string_value(v, str, strlen(str));
	else
	{
		v->type = jbvNumeric;
		v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(str),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
	}
}

/* Push one non-NULL key value in the canonical form of its kind. */
static void
push_key_value(JsonbParseState **state, const KeyColumn *col, Datum value)
{
	JsonbValue	v;
	static const int utc = 0;

	switch (col->kind)
	{
		case EC_KEY_INT:
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(col->base == INT2OID ? DatumGetInt16(value) :
											 col->base == INT4OID ? DatumGetInt32(value) :
											 DatumGetInt64(value));
			break;
		case EC_KEY_NUMERIC:
			{
				Numeric		num = DatumGetNumeric(value);

				if (numeric_is_nan(num) || numeric_is_inf(num))
				{
					char	   *str = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));

					string_value(&v, str, strlen(str));
				}
				else
				{
					v.type = jbvNumeric;
					v.val.numeric = num;
				}
			}
			break;
		case EC_KEY_BOOL:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			break;
		case EC_KEY_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				string_value(&v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			break;
		case EC_KEY_OUTPUT:
			{
				char	   *str = OutputFunctionCall((FmgrInfo *) &col->fn, value);

				string_value(&v, str, strlen(str));
			}
			break;
		case EC_KEY_DATETIME:
			{
				char	   *str = JsonEncodeDateTime(NULL, value, col->base, NULL);

				string_value(&v, str, strlen(str));
			}
			break;
		case EC_KEY_TIMESTAMPTZ:
			{
				char	   *str = JsonEncodeDateTime(NULL, value, TIMESTAMPTZOID, &utc);

				string_value(&v, str, strlen(str));
			}
			break;
		case EC_KEY_FLOAT4:
		case EC_KEY_FLOAT8:
			{
				char	   *str = palloc(32);

				if (col->kind == EC_KEY_FLOAT4)
					float_to_shortest_decimal_buf(DatumGetFloat4(value), str);
				else
					double_to_shortest_decimal_buf(DatumGetFloat8(value), str);
				number_value(&v, str);
			}
			break;
		case EC_KEY_BYTEA:
			{
				bytea	   *b = DatumGetByteaPP(value);
				size_t		len = VARSIZE_ANY_EXHDR(b);
				char	   *str = palloc(len * 2 + 3);

				str[0] = '\\';
				str[1] = 'x';
				hex_encode(VARDATA_ANY(b), len, str + 2);
				str[len * 2 + 2] = '\0';
				string_value(&v, str, len * 2 + 2);
			}
			break;
		case EC_KEY_TO_JSONB:
		case EC_KEY_FIXED:
			push_jsonb(state, DatumGetJsonbP(FunctionCall1((FmgrInfo *) &col->fn, value)));
			return;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * The primary key of a row as a JSON object, in its canonical form: the
 * same for a row whatever the session's settings (see the file header).
 * Runs in the row trigger for every change.
 */
Jsonb *
ec_row_key(Relation rel, const EcRowShape *shape, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	KeyShape   *keys = key_shape(rel, shape);
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			nestlevel = -1;

	/* like a function's SET clauses: undone at the end, or by the (sub)transaction's abort */
	if (keys->settings)
	{
		nestlevel = NewGUCNestLevel();
		for (int i = 0; i < lengthof(fixed_settings); i++)
			if (keys->settings & (1 << i))
				(void) set_config_option(fixed_settings[i].name, fixed_settings[i].value,
										 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
										 true, ERROR, false);
	}

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < keys->nkeys; i++)
	{
		const KeyColumn *col = &keys->cols[i];
		Form_pg_attribute att = TupleDescAttr(desc, col->attnum - 1);
		bool		isnull;
		Datum		value = heap_getattr(tuple, col->attnum, desc, &isnull);

		push_key(&state, NameStr(att->attname), strlen(NameStr(att->attname)));
		if (isnull)
		{
			JsonbValue	null;

			null.type = jbvNull;
			pushJsonbValue(&state, WJB_VALUE, &null);
		}
		else
			push_key_value(&state, col, value);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	if (nestlevel >= 0)
		AtEOXact_GUC(true, nestlevel);
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

/* A hash of a key object that agrees with jsonb equality ({"id":1} = {"id":1.0}). */
uint64
ec_key_hash(Jsonb *key)
{
	return DatumGetUInt64(DirectFunctionCall2(jsonb_hash_extended,
											  JsonbPGetDatum(key),
											  Int64GetDatum(EC_KEY_HASH_SEED)));
}
