/*
 * token.c
 *		Row-version tokens: their codec, ec_feed.row_token() and ec_feed.token().
 *
 * A token is an envelope (see cursor.c) of kind 'T' holding the table's OID,
 * a 64-bit hash of the row's primary key, the row's version and the full
 * xid of the transaction that wrote it. Versions come from one sequence and
 * are never reused, so a deleted and re-inserted row never matches an old
 * token (no ABA), and two updates in one transaction give two tokens.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "ec_feed.h"
#include "partition.h"
#include "rowaccess.h"
#include "token.h"

char *
ec_token_encode(const EcToken *token)
{
	StringInfoData payload;
	char	   *text;

	initStringInfo(&payload);
	ec_put_varint(&payload, token->relid);
	ec_put_varint(&payload, token->key_hash);
	ec_put_varint(&payload, token->version);
	ec_put_varint(&payload, U64FromFullTransactionId(token->xid));
	text = ec_seal(EC_KIND_TOKEN, &payload);
	pfree(payload.data);
	return text;
}

void
ec_token_decode(const char *text, EcToken *token)
{
	uint8	   *payload;
	int			len = ec_unseal(EC_KIND_TOKEN, text, "token", &payload);
	const uint8 *pos = payload;
	const uint8 *end = payload + len;
	uint64		relid,
				version,
				xid;

	if (!ec_get_varint(&pos, end, &relid) || !ec_get_varint(&pos, end, &token->key_hash) ||
		!ec_get_varint(&pos, end, &version) || !ec_get_varint(&pos, end, &xid) ||
		pos != end || relid > PG_UINT32_MAX || version > PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid token"),
				 errdetail("Its contents are truncated or out of range."),
				 errhint("Pass a token exactly as ec_feed returned it.")));
	token->relid = (Oid) relid;
	token->version = (int64) version;
	token->xid = FullTransactionIdFromU64(xid);
}

/* Is funcoid the function ec_feed.<name>? */
static bool
is_ec_function(Oid funcoid, Oid nspid, const char *name)
{
	HeapTuple	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	bool		result = false;

	if (HeapTupleIsValid(proctup))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(proctup);

		result = proc->pronamespace == nspid && strcmp(NameStr(proc->proname), name) == 0;
		ReleaseSysCache(proctup);
	}
	return result;
}

/*
 * Is the table tracked, i.e. does ec_feed.track()'s stamping trigger keep its
 * versions? The relcache has the triggers at hand, so this costs no catalog
 * scan. *history (if given) tells whether its changes are recorded.
 */
bool
ec_rel_tracked(Relation rel, bool *history)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	bool		stamped = false;
	bool		recorded = false;
	Oid			nspid;

	if (history)
		*history = false;
	if ((rel->rd_rel->relkind != RELKIND_RELATION &&
		 rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE) || trigdesc == NULL)
		return false;
	nspid = ec_feed_namespace();
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];

		if (trigger->tgenabled == TRIGGER_DISABLED)
			continue;
		if (!stamped && is_ec_function(trigger->tgfoid, nspid, "stamp"))
			stamped = true;
		else if (!recorded && is_ec_function(trigger->tgfoid, nspid, "record"))
			recorded = true;
	}
	if (history)
		*history = stamped && recorded;
	return stamped;
}

/* Is funcoid the function ec_feed.<name>? */
bool
ec_is_feed_function(Oid funcoid, const char *name)
{
	return is_ec_function(funcoid, ec_feed_namespace(), name);
}

void
ec_require_tracked(Relation rel, bool *history)
{
	if (!ec_rel_tracked(rel, history))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not tracked by ec_feed", RelationGetRelationName(rel)),
				 errdetail("Row tokens and conditional writes need the row versions that ec_feed.track() maintains."),
				 errhint("Call ec_feed.track() on the table first.")));
	ec_refuse_partition(rel);
}

/* Open a table that must be tracked; it stays locked until the transaction ends. */
Relation
ec_open_tracked(Oid relid, LOCKMODE lockmode, bool *history)
{
	Relation	rel = try_relation_open(relid, lockmode);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errdetail("It was dropped after the statement named it."),
				 errhint("Name a table that exists.")));
	ec_require_tracked(rel, history);
	return rel;
}

/*
 * Was the row version written in this database, so that its ec_xid names a
 * transaction of this server? Not when it came with a restore: its version
 * is at most the restore fence, or the fence is not set yet (catalog.c).
 * Such a row, visible to the caller who read it, was committed before the
 * dump was taken; its token carries xid 0 instead of ec_xid, like a row
 * that existed before track(): it is visible everywhere (visibility.c), and
 * its ec_xid, a transaction of another database's counter, is never read.
 */
static bool
row_written_here(int64 version)
{
	int64		fence;

	return ec_feed_fence(&fence) && version > fence;
}

/*
 * The token of a row of a tracked table; key is its primary key if known.
 * The row must have been read by the caller (visible to it), see above.
 */
char *
ec_row_token_text(Relation rel, const EcRowShape *shape, HeapTuple tuple, Jsonb *key)
{
	TupleDesc	desc = RelationGetDescr(rel);
	EcToken		token;
	bool		vnull;
	bool		xnull;
	Datum		version = heap_getattr(tuple, shape->version_attnum, desc, &vnull);
	Datum		xid = heap_getattr(tuple, shape->xid_attnum, desc, &xnull);

	/* a row built by hand (ROW(...)::t) rather than read from the table */
	if (vnull || xnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("row of table \"%s\" has no version", RelationGetRelationName(rel)),
				 errdetail("Its ec_version or ec_xid is NULL, so it was not read from the table."),
				 errhint("Pass a row as read from the table, e.g. SELECT ec_feed.row_token(t) FROM tab t.")));
	token.relid = ec_tracked_root(rel);
	token.key_hash = ec_key_hash(key ? key : ec_row_key(rel, shape, tuple));
	token.version = DatumGetInt64(version);
	token.xid = DatumGetFullTransactionId(xid);
	if (!row_written_here(token.version))
		token.xid = InvalidFullTransactionId;
	return ec_token_encode(&token);
}

static void
not_a_tracked_row(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("argument of ec_feed.row_token() is not a row of a tracked table"),
			 errdetail("%s", detail),
			 errhint("Pass the whole row of a table that ec_feed.track() tracks, e.g. SELECT t.*, ec_feed.row_token(t) FROM tab t.")));
}

/*
 * ec_feed.row_token(anyelement): the token of a row as read. The table comes
 * from the row's composite type and the version from its managed columns, so
 * no lookup of the row is needed.
 */
PG_FUNCTION_INFO_V1(ec_feed_row_token);

Datum
ec_feed_row_token(PG_FUNCTION_ARGS)
{
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	HeapTupleHeader td;
	HeapTupleData tuple;
	Oid			relid;
	Relation	rel;
	EcRowShape	shape;
	char	   *token;

	if (!OidIsValid(argtype) || !type_is_rowtype(argtype))
		not_a_tracked_row("It is not a row (a composite value).");
	td = PG_GETARG_HEAPTUPLEHEADER(0);
	relid = get_typ_typrelid(HeapTupleHeaderGetTypeId(td));
	if (!OidIsValid(relid))
		not_a_tracked_row("It is an anonymous record, not a row of a table's type.");

	rel = relation_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		not_a_tracked_row("Its type is not that of a table.");
	/* a row read from a partition is the tracked parent's row too */
	if (!ec_rel_tracked(rel, NULL))
		ec_require_tracked(rel, NULL);
	ec_row_shape(rel, &shape, true);

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = relid;
	tuple.t_data = td;
	token = ec_row_token_text(rel, &shape, &tuple, NULL);
	relation_close(rel, NoLock);

	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/* ec_feed.token(rel regclass, key jsonb): the current token of a row, NULL if absent. */
PG_FUNCTION_INFO_V1(ec_feed_token);

Datum
ec_feed_token(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Jsonb	   *key = PG_GETARG_JSONB_P(1);
	Relation	rel;
	EcRowShape	shape;
	HeapTuple	row;
	char	   *token = NULL;

	rel = ec_open_tracked(relid, AccessShareLock, NULL);
	row = ec_read_token_row(rel, key, &shape);
	if (row != NULL)
		token = ec_row_token_text(rel, &shape, row, NULL);
	relation_close(rel, NoLock);

	if (token == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(token));
}
