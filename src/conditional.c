/*
 * conditional.c
 *		ec_feed.update_if() and ec_feed.delete_if(), and their result,
 *		ec_feed.write_result.
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
 * (keyhistory.c).
 *
 * The plans, and the parsing of the key and changes arguments, are those of
 * the per-session plan cache (rowaccess.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "ec_feed.h"
#include "keyhistory.h"
#include "partition.h"
#include "rowaccess.h"
#include "token.h"

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

static bool
name_listed(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
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
	HeapTuple	locked = ec_run_plan(ec_lock_plan(entry, for_delete), keyvals, NULL, false,
								  SPI_OK_SELECT, RelationGetRelid(rel));
	bool		known = true;

	if (locked == NULL)
	{
		if (arg_hash != token->key_hash)
			token_of_other_row(rel);
		result->status = ec_deleted_since(rel, history_on, canonical, token->version) ?
			"deleted" : "not_found";
		return NULL;
	}
	*rowkey = ec_row_key(rel, &entry->shape, locked);
	*version = ec_row_version(RelationGetDescr(rel), &entry->shape, locked);
	if (token->key_hash != arg_hash && token->key_hash != ec_key_hash(*rowkey))
		token_of_other_row(rel);
	result->changed_since = NIL;
	if (*version != token->version)
		result->changed_since = ec_changed_since(rel, history_on, *rowkey,
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
	entry = ec_rel_entry_enter(rel);
	desc = RelationGetDescr(rel);
	nkeys = entry->shape.nkeys;

	ec_parse_key(entry, rel, key, keyvals, &canonical);
	arg_hash = ec_key_hash(canonical);
	attnums = palloc(sizeof(AttrNumber) * desc->natts);
	ncols = ec_parse_changes(entry, rel, changes, attnums, &changes_row);

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
	uplan = ec_update_plan(entry, rel, ncols, attnums, &temporary);

	/* the applied path: one UPDATE, conditional on the version */
	row = NULL;
	if (arg_hash == token.key_hash)
	{
		set_key_params(entry, params, keyvals, token.version);
		row = ec_run_plan(uplan, params, nulls, false, SPI_OK_UPDATE_RETURNING, relid);
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
				row = ec_run_plan(uplan, params, nulls, false, SPI_OK_UPDATE_RETURNING, relid);
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
		HeapTuple	now = ec_run_plan(ec_lock_plan(entry, false), keyvals, NULL, false,
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
	ec_rel_entry_leave();
	relation_close(rel, NoLock);
	PG_RETURN_DATUM(datum);
}

/*
 * The token of a delete this transaction just made through delete_if: the
 * delete's version and our xid. Passed to ec_feed.get() or require_visible()
 * on another server, it answers not_consistent (pending) until that server
 * has the delete, so a read after one's own delete does not find the row
 * there (read-your-writes for deletes). Where no history is recorded, the
 * delete has no version of its own and the deleted row's version stands in:
 * the xid alone decides visibility for such a table (visibility.c).
 */
static char *
delete_token_text(Relation rel, RelEntry *entry, HeapTuple deleted, bool history_on)
{
	EcToken		token;
	Jsonb	   *rowkey = ec_row_key(rel, &entry->shape, deleted);
	bool		isnull;
	int64		old_version = DatumGetInt64(heap_getattr(deleted, entry->shape.version_attnum,
														 RelationGetDescr(rel), &isnull));

	if (isnull)
		return NULL;
	token.relid = ec_tracked_root(rel);
	token.key_hash = ec_key_hash(rowkey);
	token.version = history_on ? ec_key_newest_version(rel, rowkey, old_version) : old_version;
	token.xid = GetTopFullTransactionId();
	return token.version == 0 ? NULL : ec_token_encode(&token);
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
	entry = ec_rel_entry_enter(rel);

	ec_parse_key(entry, rel, key, params, &canonical);
	arg_hash = ec_key_hash(canonical);
	memset(&result, 0, sizeof(result));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(outer);

	if (arg_hash == token.key_hash)
	{
		params[entry->shape.nkeys] = Int64GetDatum(token.version);
		row = ec_run_plan(ec_delete_plan(entry), params, NULL, false, SPI_OK_DELETE_RETURNING, relid);
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
				row = ec_run_plan(ec_delete_plan(entry), params, NULL, false,
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
	if (row != NULL)
		result.token = delete_token_text(rel, entry, row, history_on);
	datum = result_datum(fcinfo, &result);
	SPI_finish();
	ec_rel_entry_leave();
	relation_close(rel, NoLock);
	PG_RETURN_DATUM(datum);
}
