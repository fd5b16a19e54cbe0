/*
 * consumer.c
 *		Registered consumers of the feed (contract section 5): register,
 *		acknowledge, unregister, and "has this consumer processed a write?"
 *		(token_status and require_visible with a consumer).
 *
 * A consumer is a row of ec_feed.consumer: a name, the role that registered
 * it, and the newest cursor it acknowledged. Only that role, its members and
 * the extension's owner may move or remove it. The functions run as the
 * caller (a SECURITY DEFINER function could not tell who called it: inside
 * it current_user is the definer) and write the table, which PUBLIC may not
 * touch, as the table's owner through SPI, with fixed query texts.
 *
 * Cursors are ordered by their position (cursor_position()): first by how
 * many transactions the prev mark sees, then a pending delta after the mark
 * it starts from, then by `last`. The marks one reader takes one after the
 * other see ever more transactions (a fresh snapshot never sees fewer), and
 * a mark sees exactly xmax - nxip xids, so that count orders them, and
 * strictly so whenever a later mark sees a transaction an earlier did not.
 * Hence:
 *	- the row cursors of one delta share prev and cur and differ in last;
 *	- a progress cursor in the middle of a delta is one of them;
 *	- the progress cursor after a drained delta has prev = that delta's cur,
 *	  which sees more than its prev (a delta with rows has a transaction that
 *	  cur sees and prev did not): it is after every cursor of the delta.
 * Two marks that see the same transactions are the same position.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "ec_feed.h"
#include "feed.h"
#include "segment.h"
#include "visibility.h"

#define EC_CONSUMER_REL			"consumer"
#define EC_CONSUMER_PKEY		"consumer_pkey"		/* (name) */

/* Where a cursor stands; see the comment at the top of the file. */
typedef struct EcPosition
{
	uint64		horizon;		/* prev mark's xmin: the oldest xid it may still need */
	int64		seen;			/* how many xids prev sees */
	bool		pending;
	int64		last;
	int64		version;		/* versions up to this are read, but for open writers' */
} EcPosition;

static void
cursor_position(const EcCursor *cursor, EcPosition *pos)
{
	pos->horizon = cursor->prev.xmin;
	pos->seen = (int64) Min(cursor->prev.xmax - cursor->prev.nxip, (uint64) PG_INT64_MAX);
	pos->pending = cursor->pending;
	pos->last = cursor->pending ? cursor->last : 0;
	pos->version = cursor->pending ? Max(cursor->prev.hi, cursor->last) : cursor->prev.hi;
}

/* Is position a after position b? */
static bool
position_after(const EcPosition *a, const EcPosition *b)
{
	if (a->seen != b->seen)
		return a->seen > b->seen;
	if (a->pending != b->pending)
		return a->pending;
	return a->last > b->last;
}

PG_FUNCTION_INFO_V1(ec_feed_cursor_position);

/*
 * ec_feed._cursor_position(cursor text) returns record: where a cursor
 * stands, after validating it as ec_feed.read() does.
 */
Datum
ec_feed_cursor_position(PG_FUNCTION_ARGS)
{
	EcCursor	cursor;
	EcPosition	pos;
	TupleDesc	desc;
	Datum		values[9];
	bool		nulls[9] = {false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	ec_cursor_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &cursor);
	cursor_position(&cursor, &pos);
	values[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(cursor.prev.xmin));
	values[1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(cursor.prev.xmax));
	values[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(cursor.prev.nxt));
	values[3] = Int64GetDatum(cursor.prev.lo);
	values[4] = Int64GetDatum(cursor.prev.hi);
	values[5] = Int64GetDatum(pos.seen);
	values[6] = BoolGetDatum(pos.pending);
	values[7] = Int64GetDatum(pos.last);
	nulls[7] = !pos.pending;
	values[8] = Int64GetDatum(pos.version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

static char *
role_name(Oid roleid)
{
	char	   *name = GetUserNameFromId(roleid, true);

	return name ? name : psprintf("%u", roleid);
}

/* The caller may acknowledge and unregister the consumers of this owner. */
static void
check_manage(const char *name, Oid owner, Oid caller)
{
	if (has_privs_of_role(caller, owner) || has_privs_of_role(caller, ec_extension_owner()))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for consumer \"%s\"", name),
			 errdetail("Only the role that registered it (%s), the roles that have its privileges, and the owner of the extension may acknowledge or unregister it.",
					   role_name(owner)),
			 errhint("Run the call as role %s.", role_name(owner))));
}

static void
unknown_consumer(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("consumer \"%s\" does not exist", name),
			 errdetail("No consumer of that name is registered in this database."),
			 errhint("Register it with ec_feed.register_consumer(); ec_feed.consumers lists the registered ones.")));
}

static char *
name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer name must not be NULL"),
				 errdetail("A consumer is named when it is registered."),
				 errhint("Pass the name given to ec_feed.register_consumer().")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer name must not be empty"),
				 errdetail("A consumer is named by a non-empty text."),
				 errhint("Pass a name such as 'indexer'.")));
	return name;
}

/*
 * SPI on ec_feed.consumer as the table's owner. The query texts are fixed
 * and schema-qualified, and the functions set search_path, so running them
 * with the owner's rights lets the caller do only what these functions do.
 * An error restores the caller's identity when the (sub)transaction aborts.
 */
typedef struct OwnerSpi
{
	Oid			save_userid;
	int			save_sec_context;
} OwnerSpi;

static void
spi_as_owner_begin(OwnerSpi *state)
{
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(ec_feed_relid(EC_CONSUMER_REL)));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for ec_feed.consumer");
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(owner, state->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
}

static void
spi_as_owner_end(OwnerSpi *state)
{
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * The pruning that is due, run as the caller at the end of register and
 * ack (the caller's SPI connection must be open).
 */
static void
auto_prune(void)
{
	if (SPI_execute("SELECT ec_feed._auto_prune()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "ec_feed._auto_prune() failed");
}

/* EC001 when the cursor needs changes that were pruned (segment.c). */
static void
check_retained(const EcCursor *cursor)
{
	uint64		horizon;
	int64		max_version;

	ec_pruned(&horizon, &max_version);
	ec_check_retained(cursor, horizon);
}

/* A cursor of the caller's snapshot, as ec_feed.cursor_now() makes it. */
static char *
cursor_now(void)
{
	EcCursor	cursor;

	memset(&cursor, 0, sizeof(cursor));
	ec_take_mark(&cursor.prev, GetActiveSnapshot());
	return ec_cursor_encode(&cursor);
}

PG_FUNCTION_INFO_V1(ec_feed_register_consumer);

/*
 * ec_feed.register_consumer(name text, start_cursor text DEFAULT NULL)
 *		returns text
 *
 * Registers a consumer at start_cursor, validated as ec_feed.read()
 * validates cursors, or, when NULL, at the caller's snapshot (as
 * ec_feed.cursor_now()); returns its cursor.
 */
Datum
ec_feed_register_consumer(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	char	   *cursor_text;
	EcCursor	cursor;
	EcPosition	pos;
	OwnerSpi	owner;
	Oid			argtypes[8] = {TEXTOID, REGROLEOID, TEXTOID, XID8OID,
	INT8OID, BOOLOID, INT8OID, INT8OID};
	Datum		args[8];
	int			rc;

	if (PG_ARGISNULL(1))
		cursor_text = cursor_now();
	else
		cursor_text = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ec_cursor_decode(cursor_text, &cursor);
	cursor_position(&cursor, &pos);

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	args[2] = CStringGetTextDatum(cursor_text);
	args[3] = FullTransactionIdGetDatum(FullTransactionIdFromU64(pos.horizon));
	args[4] = Int64GetDatum(pos.seen);
	args[5] = BoolGetDatum(pos.pending);
	args[6] = Int64GetDatum(pos.last);
	args[7] = Int64GetDatum(pos.version);

	spi_as_owner_begin(&owner);
	check_retained(&cursor);
	rc = SPI_execute_with_args("INSERT INTO ec_feed.consumer AS c "
							   "(name, owner, cursor, horizon, pos_seen, pos_pending, pos_last, pos_version) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
							   "ON CONFLICT (name) DO NOTHING",
							   8, argtypes, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "inserting into ec_feed.consumer failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("consumer \"%s\" already exists", name),
				 errdetail("Consumer names are unique in a database."),
				 errhint("Choose another name, or go on acknowledging under the existing one with ec_feed.ack().")));
	spi_as_owner_end(&owner);

	auto_prune();
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(cursor_text));
}

/* A consumer's row as ack() and unregister_consumer() read it. */
typedef struct StoredConsumer
{
	EcPosition	pos;			/* seen, pending, last */
	bool		dropped;
	bool		refresh_due;	/* acked_at old enough to be renewed */
} StoredConsumer;

/*
 * Read the consumer's row, locked (FOR NO KEY UPDATE) or not, and check
 * that the caller (the user before the switch to the table's owner) may
 * act on it. Runs as the table's owner.
 *
 * acked_at of a consumer that acknowledges its own position again is
 * renewed once it is older than a minute (or half of retention_max, when
 * that is shorter): often enough that retention_max does not drop an idle
 * consumer, rarely enough that an idle polling loop does not write on
 * every ack.
 */
static void
read_consumer(const char *name, Oid caller, bool lock, StoredConsumer *stored)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;

	args[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args(lock ?
							  "SELECT c.owner::oid, c.pos_seen, c.pos_pending, c.pos_last, "
							  "c.dropped_at IS NOT NULL, c.acked_at < pg_catalog.now() - "
							  "LEAST(interval '1 minute', (SELECT s.retention_max FROM ec_feed._settings() s) / 2) "
							  "FROM ec_feed.consumer c WHERE c.name = $1 FOR NO KEY UPDATE" :
							  "SELECT c.owner::oid, c.pos_seen, c.pos_pending, c.pos_last, "
							  "c.dropped_at IS NOT NULL, c.acked_at < pg_catalog.now() - "
							  "LEAST(interval '1 minute', (SELECT s.retention_max FROM ec_feed._settings() s) / 2) "
							  "FROM ec_feed.consumer c WHERE c.name = $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading ec_feed.consumer failed");
	if (SPI_processed == 0)
		unknown_consumer(name);
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	check_manage(name, DatumGetObjectId(SPI_getbinval(tuple, desc, 1, &isnull)), caller);
	if (stored != NULL)
	{
		stored->pos.seen = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		stored->pos.pending = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
		stored->pos.last = DatumGetInt64(SPI_getbinval(tuple, desc, 4, &isnull));
		stored->dropped = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
		stored->refresh_due = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull)) && !isnull;
	}
}

/*
 * What ack() must write: the new cursor (forward), acked_at alone (the
 * same position with nothing newer handed out, due for renewal, or a
 * dropped consumer to resume), or nothing.
 */
typedef enum AckAction
{
	ACK_NOTHING,
	ACK_FORWARD,
	ACK_RENEW
} AckAction;

static AckAction
ack_action(const EcPosition *pos, const StoredConsumer *stored)
{
	if (position_after(pos, &stored->pos))
		return ACK_FORWARD;
	if (stored->dropped ||
		(stored->refresh_due && !position_after(&stored->pos, pos) &&
		 pos->version >= ec_feed_last_version()))
		return ACK_RENEW;
	return ACK_NOTHING;
}

PG_FUNCTION_INFO_V1(ec_feed_ack);

/*
 * ec_feed.ack(name text, cursor text) returns void
 *
 * The consumer has processed everything up to the cursor. Forward only: a
 * cursor not after the stored one changes nothing. An ack that moves the
 * cursor locks the consumer's row and compares again once it holds the
 * lock, so of concurrent acks the older one never overwrites the newer (in
 * READ COMMITTED; REPEATABLE READ fails with a serialization error). One
 * that moves nothing only reads: the stored cursor never moves back, so
 * what it read stays true. A dropped consumer whose cursor is still
 * retained is resumed (EC001 when it is not).
 */
Datum
ec_feed_ack(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	char	   *cursor_text;
	EcCursor	cursor;
	EcPosition	pos;
	StoredConsumer stored;
	OwnerSpi	owner;
	AckAction	action;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cursor must not be NULL"),
				 errdetail("ec_feed.ack() records the cursor up to which the consumer has processed the feed."),
				 errhint("Pass the cursor of the last row processed, or the page's progress cursor.")));
	cursor_text = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ec_cursor_decode(cursor_text, &cursor);
	cursor_position(&cursor, &pos);

	spi_as_owner_begin(&owner);
	read_consumer(name, owner.save_userid, false, &stored);
	if (ack_action(&pos, &stored) != ACK_NOTHING)
	{
		read_consumer(name, owner.save_userid, true, &stored);
		if (stored.dropped)
			check_retained(&cursor);
		action = ack_action(&pos, &stored);
		if (action == ACK_FORWARD)
		{
			Oid			argtypes[7] = {TEXTOID, TEXTOID, XID8OID, INT8OID, BOOLOID, INT8OID, INT8OID};
			Datum		args[7];

			args[0] = CStringGetTextDatum(name);
			args[1] = CStringGetTextDatum(cursor_text);
			args[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(pos.horizon));
			args[3] = Int64GetDatum(pos.seen);
			args[4] = BoolGetDatum(pos.pending);
			args[5] = Int64GetDatum(pos.last);
			args[6] = Int64GetDatum(pos.version);
			if (SPI_execute_with_args("UPDATE ec_feed.consumer SET cursor = $2, horizon = $3, "
									  "pos_seen = $4, pos_pending = $5, pos_last = $6, pos_version = $7, "
									  "acked_at = pg_catalog.now(), dropped_at = NULL, drop_reason = NULL "
									  "WHERE name = $1",
									  7, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "updating ec_feed.consumer failed");
		}
		else if (action == ACK_RENEW)
		{
			Oid			argtypes[1] = {TEXTOID};
			Datum		args[1];

			/* a dropped consumer's own cursor is not older than this one: retained too */
			args[0] = CStringGetTextDatum(name);
			if (SPI_execute_with_args("UPDATE ec_feed.consumer SET acked_at = pg_catalog.now(), "
									  "dropped_at = NULL, drop_reason = NULL WHERE name = $1",
									  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "updating ec_feed.consumer failed");
		}
	}
	spi_as_owner_end(&owner);

	auto_prune();
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(ec_feed_unregister_consumer);

/*
 * ec_feed.unregister_consumer(name text) returns void
 */
Datum
ec_feed_unregister_consumer(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	OwnerSpi	owner;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	spi_as_owner_begin(&owner);
	read_consumer(name, owner.save_userid, true, NULL);
	args[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("DELETE FROM ec_feed.consumer WHERE name = $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "deleting from ec_feed.consumer failed");
	spi_as_owner_end(&owner);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * The stored cursor of a consumer, read with a fresh snapshot (so also in
 * a REPEATABLE READ transaction the newest acknowledgement counts): the
 * table directly, which any caller may ask about. Unknown: 42704; dropped:
 * 55000, as it no longer acknowledges anything.
 */
static void
consumer_cursor(const char *name, EcCursor *cursor)
{
	Relation	rel = table_open(ec_feed_relid(EC_CONSUMER_REL), AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	name_att = get_attnum(RelationGetRelid(rel), "name");
	AttrNumber	cursor_att = get_attnum(RelationGetRelid(rel), "cursor");
	AttrNumber	dropped_att = get_attnum(RelationGetRelid(rel), "dropped_at");
	AttrNumber	reason_att = get_attnum(RelationGetRelid(rel), "drop_reason");
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *cursor_text = NULL;
	bool		dropped = false;
	TimestampTz dropped_at = 0;
	char	   *reason = NULL;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   TupleDescAttr(desc, name_att - 1)->attcollation,
						   F_TEXTEQ, CStringGetTextDatum(name));
	scan = systable_beginscan(rel, ec_feed_relid(EC_CONSUMER_PKEY), true, snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		value;

		cursor_text = TextDatumGetCString(heap_getattr(tuple, cursor_att, desc, &isnull));
		value = heap_getattr(tuple, dropped_att, desc, &isnull);
		dropped = !isnull;
		if (dropped)
			dropped_at = DatumGetTimestampTz(value);
		value = heap_getattr(tuple, reason_att, desc, &isnull);
		if (!isnull)
			reason = TextDatumGetCString(value);
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	if (cursor_text == NULL)
		unknown_consumer(name);
	if (dropped)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("consumer \"%s\" was dropped", name),
				 errdetail("It was dropped at %s (%s) and no longer tells which writes it processed.",
						   timestamptz_to_str(dropped_at), reason ? reason : "no reason given"),
				 errhint("Acknowledge a retained cursor with ec_feed.ack() to resume it, or copy the tables again and register it anew.")));
	ec_cursor_decode(cursor_text, cursor);
}

/*
 * Does the cursor include the write? Its transaction is seen by prev, or it
 * is in the pending delta (seen by cur, not by prev) at a version up to
 * last. (An insert that waited for a concurrent delete of its key is
 * recorded under a later version than the row's, see history.c; between
 * the two, last can count it as included a few rows early.)
 */
static bool
cursor_includes(const EcCursor *cursor, const EcToken *token)
{
	uint64		xid = U64FromFullTransactionId(token->xid);

	if (ec_mark_sees(&cursor->prev, xid))
		return true;
	return cursor->pending && ec_mark_sees(&cursor->cur, xid) &&
		token->version <= cursor->last;
}

typedef struct ConsumerCheck
{
	const char *name;
	const EcToken *token;
	bool		write_visible;	/* the write is visible here (when not processed) */
} ConsumerCheck;

/*
 * Has the consumer processed the write? Raises an error for a write that was
 * rolled back, and for an unknown or dropped consumer.
 */
static bool
consumer_processed(void *arg)
{
	ConsumerCheck *check = (ConsumerCheck *) arg;
	EcCursor	cursor;
	bool		included;

	consumer_cursor(check->name, &cursor);
	included = cursor_includes(&cursor, check->token);
	/* a cursor includes only writes that ended; this also finds rolled-back ones */
	check->write_visible = ec_token_visible_now(check->token);
	return included && check->write_visible;
}

PG_FUNCTION_INFO_V1(ec_feed_token_status_consumer);

/*
 * ec_feed.token_status(token text, consumer text) returns text
 *
 * 'visible' once the consumer has acknowledged a cursor that includes the
 * write the token names, 'pending' before.
 */
Datum
ec_feed_token_status_consumer(PG_FUNCTION_ARGS)
{
	ConsumerCheck check;
	EcToken		token;

	check.name = name_arg(fcinfo, 1);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &token);
	check.token = &token;
	PG_RETURN_TEXT_P(cstring_to_text(consumer_processed(&check) ? "visible" : "pending"));
}

/* EC003: the consumer has not processed the write, or the write is not visible yet. */
static void
consumer_not_consistent(const ConsumerCheck *check, long waited_ms, const char *hint)
{
	if (check->write_visible)
		ec_not_consistent("consumer_behind", check->name,
						  "Retry after retry_after_ms milliseconds, or wait on the server with ec_feed.require_visible(token, wait_ms, consumer): the consumer has not acknowledged a cursor that includes the write yet.",
						  ec_retry_after(waited_ms), hint);
	ec_not_consistent(ec_pending_reason(), check->name,
					  "Retry after retry_after_ms milliseconds: the write is not visible on this server yet, so no consumer has processed it.",
					  ec_retry_after(waited_ms), hint);
}

PG_FUNCTION_INFO_V1(ec_feed_require_visible_consumer);

/*
 * ec_feed.require_visible(token text, wait_ms int, consumer text) returns void
 *
 * Returns once the consumer has acknowledged a cursor that includes the
 * token's write; waits up to wait_ms for it under the rules of the
 * two-argument form (no snapshot held while waiting, only as a statement of
 * its own in READ COMMITTED); else raises EC003. A NULL token names no
 * write: nothing to wait for.
 */
Datum
ec_feed_require_visible_consumer(PG_FUNCTION_ARGS)
{
	ConsumerCheck check;
	EcToken		token;
	int			wait_ms = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	long		waited_ms = 0;

	if (wait_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_ms must not be negative"),
				 errdetail("wait_ms is how many milliseconds to wait for the consumer to process the write."),
				 errhint("Pass 0 to check without waiting.")));
	check.name = name_arg(fcinfo, 2);
	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &token);
	check.token = &token;

	if (consumer_processed(&check))
		PG_RETURN_VOID();
	if (wait_ms > 0)
	{
		if (!ec_can_wait_without_snapshot(fcinfo))
			consumer_not_consistent(&check, 0,
									"ec_feed.require_visible() waits only when it is a statement of its own (SELECT ec_feed.require_visible($1, $2, $3)) in a READ COMMITTED transaction without open cursors; here it checked once.");
		if (ec_wait_until(consumer_processed, &check, wait_ms, 0, &waited_ms))
			PG_RETURN_VOID();
	}
	consumer_not_consistent(&check, waited_ms,
							wait_ms > 0 ?
							"The consumer did not acknowledge a cursor including the write within wait_ms; check its lag in ec_feed.status()." :
							"Retry later, or pass wait_ms to wait on the server.");
	PG_RETURN_VOID();			/* not reached */
}
