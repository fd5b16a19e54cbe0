/*
 * visibility.c
 *		Read-your-writes across servers: is the write a token names visible
 *		on this server (primary or hot standby) yet?
 *
 * A token carries the full xid (xid8) of the top-level transaction that
 * wrote the row version. The write is visible when that xid is committed
 * and not in progress in a fresh snapshot taken on this server. Comparing
 * with the snapshot's xmin alone is wrong: a transaction above xmin may
 * well have committed, and one below xmax may still run.
 *
 * On a hot standby the snapshot is built from the xids replayed so far
 * (KnownAssignedXids): every running xid is in subxip, xip stays empty. A
 * top-level xid is always listed itself, also when the snapshot's subxid
 * lists overflowed, so no pg_subtrans lookup is needed (and the token holds
 * only top-level xids); see top_xid_running().
 *
 * ec_feed.require_visible() can wait. While it sleeps it must not hold back
 * vacuum on a primary or replay on a standby: a backend's published xmin
 * (MyProc->xmin) does both, through recovery conflicts on a standby. A
 * function runs inside a statement whose snapshot stays registered, so the
 * wait withdraws the published xmin while it sleeps. That is only sound
 * when nothing reads with an older snapshot afterwards; see
 * ec_can_wait_without_snapshot() for when that is so. Elsewhere it checks once.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "compat.h"
#include "ec_feed.h"
#include "rowaccess.h"
#include "segment.h"
#include "token.h"
#include "visibility.h"

/* retry_after_ms suggested to clients: at least, and at most */
#define EC_RETRY_MIN_MS			100
#define EC_RETRY_MAX_MS			5000

typedef enum EcWriteState
{
	EC_WRITE_VISIBLE,			/* committed and not running in the snapshot */
	EC_WRITE_PENDING			/* running, or not replayed here yet */
} EcWriteState;

static bool
xid_listed(TransactionId xid, const TransactionId *xids, int n)
{
	for (int i = 0; i < n; i++)
		if (TransactionIdEquals(xids[i], xid))
			return true;
	return false;
}

/*
 * Is top-level transaction xid, within [xmin, xmax) of snap, listed as
 * running in it? XidInMVCCSnapshot() without the pg_subtrans lookup, which
 * a top-level xid never needs. On a primary xip lists every running
 * top-level transaction; subxip holds only subtransactions, and once they
 * overflowed (suboverflowed) it is incomplete and a registered copy does not
 * keep it at all: subxip is NULL while subxcnt stays positive. During
 * recovery every running xid, top-level ones included, is in subxip, and a
 * copy keeps it even when it overflowed.
 */
static bool
top_xid_running(TransactionId xid, Snapshot snap)
{
	if (xid_listed(xid, snap->xip, snap->xcnt))
		return true;
	return snap->takenDuringRecovery &&
		xid_listed(xid, snap->subxip, snap->subxcnt);
}

/* a scan for an insert recorded under a later version gives up after this many entries */
#define EC_VERSION_SCAN_MAX		10000

typedef enum EcVersionState
{
	EC_VERSION_EXISTED,
	EC_VERSION_ROLLED_BACK,
	EC_VERSION_UNKNOWN			/* the history cannot tell */
} EcVersionState;

/*
 * Did the history entry's writer commit? Its xmin is the token's
 * transaction or one of its subtransactions; that transaction committed
 * (or, with own, is ours), so this tells whether the subtransaction did.
 * The caller holds the buffer pin, so the tuple cannot be frozen and the
 * clog truncated under the lookup.
 */
static bool
entry_committed(HeapTuple tuple, bool own)
{
	HeapTupleHeader htup = tuple->t_data;
	TransactionId xmin = HeapTupleHeaderGetXmin(htup);

	if (own)
		return TransactionIdIsCurrentTransactionId(xmin);
	if (HeapTupleHeaderXminCommitted(htup))
		return true;
	if (HeapTupleHeaderXminInvalid(htup))
		return false;
	return TransactionIdDidCommit(xmin);
}

/*
 * Did the row version a token names exist? The token carries the top-level
 * xid, which committed (or is ours); the version may have been written in
 * a subtransaction that rolled back. The evidence is the version's history
 * entry, inserted in the same subtransaction: found through the index on
 * (xid, seq) at seq = version, its xmin tells. An insert that waited for a
 * concurrent delete of its key is recorded under a later version than the
 * row's (has_later_change in history.c): then an insert entry of the
 * transaction at a later version, with the token's key hash, shows it. An
 * aborted entry may also have been removed by vacuum already; with none of
 * these found, the version was rolled back.
 *
 * Only a table that records history, for a version at or after its
 * ec_history_since(), can tell; otherwise (and for our own transaction
 * when the entry is not there: its AFTER trigger may not have run yet) the
 * answer is UNKNOWN. The entries are read with SnapshotAny, aborted ones
 * included; a rolled-back entry is one whose xmin did not commit.
 */
static EcVersionState
version_state(const EcToken *token, bool own)
{
	Relation	rel;
	bool		tracked;
	bool		history = false;
	int64		since;
	Relation	hist;
	TupleDesc	desc;
	ScanKeyData skey[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	EcVersionState state = own ? EC_VERSION_UNKNOWN : EC_VERSION_ROLLED_BACK;
	int			scanned = 0;
	MemoryContext per_entry;
	const EcSegmentList *segments;
	bool		found = false;

	rel = try_relation_open(token->relid, AccessShareLock);
	if (rel == NULL)
		return EC_VERSION_UNKNOWN;
	tracked = ec_rel_tracked(rel, &history);
	relation_close(rel, AccessShareLock);
	if (!tracked || !history || !ec_history_since(token->relid, &since) ||
		token->version < since)
		return EC_VERSION_UNKNOWN;

	/* a transaction's entries are in one segment: the first that has any */
	segments = ec_segments();
	per_entry = AllocSetContextCreate(CurrentMemoryContext, "ec_feed version check",
									  ALLOCSET_SMALL_SIZES);
	for (int i = 0; i < segments->n && !found; i++)
	{
		const EcSegment *seg = &segments->segs[i];

		if (!OidIsValid(seg->relid) ||
			(seg->frozen && seg->max_xid < U64FromFullTransactionId(token->xid)))
			continue;
		hist = try_relation_open(seg->relid, AccessShareLock);
		if (hist == NULL)
			continue;
		desc = RelationGetDescr(hist);
		ScanKeyInit(&skey[0], Anum_history_xid, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(token->xid));
		ScanKeyInit(&skey[1], Anum_history_seq, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(token->version));
		scan = systable_beginscan(hist, seg->xid_index, true, SnapshotAny, 2, skey);
		while ((tuple = systable_getnext(scan)) != NULL)
		{
			bool		isnull;
			int64		seq = DatumGetInt64(heap_getattr(tuple, Anum_history_seq, desc, &isnull));
			Oid			relid = DatumGetObjectId(heap_getattr(tuple, Anum_history_relid, desc, &isnull));
			char		op = DatumGetChar(heap_getattr(tuple, Anum_history_op, desc, &isnull));

			CHECK_FOR_INTERRUPTS();
			found = true;
			if (seq == token->version)
			{
				if (relid != token->relid)
					state = EC_VERSION_UNKNOWN;
				else
					state = entry_committed(tuple, own) ? EC_VERSION_EXISTED : EC_VERSION_ROLLED_BACK;
				break;
			}
			if (own)
				break;
			if (++scanned > EC_VERSION_SCAN_MAX)
			{
				state = EC_VERSION_UNKNOWN;
				break;
			}
			if (op == EC_OP_INSERT && relid == token->relid && entry_committed(tuple, false))
			{
				MemoryContext old = MemoryContextSwitchTo(per_entry);
				uint64		key_hash = ec_key_hash(DatumGetJsonbP(heap_getattr(tuple, Anum_history_key,
																			   desc, &isnull)));

				MemoryContextSwitchTo(old);
				MemoryContextReset(per_entry);
				if (key_hash == token->key_hash)
				{
					state = EC_VERSION_EXISTED;
					break;
				}
			}
		}
		systable_endscan(scan);
		relation_close(hist, AccessShareLock);
	}
	if (!found)
	{
		uint64		horizon;
		int64		pruned_version;

		/* entries pruned: nothing to tell from */
		ec_pruned(&horizon, &pruned_version);
		if (U64FromFullTransactionId(token->xid) < horizon)
			state = EC_VERSION_UNKNOWN;
	}
	MemoryContextDelete(per_entry);
	return state;
}

static void
version_rolled_back(const EcToken *token)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("token names a write that was rolled back"),
			 errdetail("Transaction %llu committed, but the subtransaction that wrote the row version the token names was rolled back (ROLLBACK TO SAVEPOINT, or an exception block): that version never existed.",
					   (unsigned long long) U64FromFullTransactionId(token->xid)),
			 errhint("Read the row again to get a current token.")));
}

/*
 * Is the write a token names visible in snapshot snap? The snapshot must
 * have been taken before the call: the next xid, read here, is the reference
 * for widening its 32-bit xids. Raises an error for a write that will never
 * become visible here: its transaction, or the subtransaction that wrote
 * it, rolled back.
 */
static EcWriteState
write_state(const EcToken *token, Snapshot snap)
{
	FullTransactionId fxid = token->xid;
	TransactionId xid = XidFromFullTransactionId(fxid);
	FullTransactionId next;
	bool		committed;
	bool		ancient;

	/* rows that existed before tracking carry xid 0; special xids committed */
	if (U64FromFullTransactionId(fxid) < FirstNormalTransactionId)
		return EC_WRITE_VISIBLE;

	next = ReadNextFullTransactionId();
	if (FullTransactionIdFollowsOrEquals(fxid, next))
	{
		/* a standby has not replayed that far yet */
		if (snap->takenDuringRecovery)
			return EC_WRITE_PENDING;

		/*
		 * A primary never assigned it: the token comes from a history this
		 * server does not share (a restore from an older backup, or writes
		 * lost in a failover).
		 */
		ereport(ERROR,
				(errcode(ERRCODE_EC_FOREIGN_CURSOR),
				 errmsg("token is ahead of this server's transaction counter"),
				 errdetail("It names transaction %llu, which this server has not assigned: the token was made before a restore from a backup, or its write was lost in a failover.",
						   (unsigned long long) U64FromFullTransactionId(fxid)),
				 errhint("Read the row again on this server to get a current token.")));
	}

	/* our own transaction's writes are visible to us, unless rolled back to a savepoint */
	if (FullTransactionIdEquals(fxid, GetTopFullTransactionIdIfAny()))
	{
		if (version_state(token, true) == EC_VERSION_ROLLED_BACK)
			version_rolled_back(token);
		return EC_WRITE_VISIBLE;
	}

	/*
	 * Not finished when the snapshot was taken: at or after its xmax
	 * (running transactions can have xids above xmax, and they are not
	 * listed), or listed as in progress.
	 */
	if (FullTransactionIdFollowsOrEquals(fxid, ec_widen_xid(snap->xmax, next)))
		return EC_WRITE_PENDING;
	if (FullTransactionIdFollowsOrEquals(fxid, ec_widen_xid(snap->xmin, next)) &&
		top_xid_running(xid, snap))
		return EC_WRITE_PENDING;

	/*
	 * It ended before the snapshot: committed or rolled back, as the clog
	 * says. The clog is kept back to oldestClogXid only; the lock keeps it
	 * from being truncated under the lookup. An xid older than that is older
	 * than every database's datfrozenxid: each row version it wrote has been
	 * frozen (it committed) or removed (it aborted). Either way nothing about
	 * it will change any more, so reading now shows its final outcome: it
	 * counts as visible. (A token of a write rolled back that long ago is
	 * then not recognised as such.)
	 */
	LWLockAcquire(XactTruncationLock, LW_SHARED);
	ancient = FullTransactionIdPrecedes(fxid, ec_widen_xid(ShmemVariableCache->oldestClogXid, next));
	committed = ancient || TransactionIdDidCommit(xid);
	LWLockRelease(XactTruncationLock);

	if (!committed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token names a write that was rolled back"),
				 errdetail("Transaction %llu, which wrote the row version the token names, did not commit: that version never existed.",
						   (unsigned long long) U64FromFullTransactionId(fxid)),
				 errhint("Read the row again to get a current token.")));

	/* the transaction committed; the subtransaction that wrote the version too? */
	if (!ancient && version_state(token, false) == EC_VERSION_ROLLED_BACK)
		version_rolled_back(token);
	return EC_WRITE_VISIBLE;
}

/* The write's state in a snapshot taken now. */
static EcWriteState
write_state_now(const EcToken *token)
{
	return write_state(token, GetLatestSnapshot());
}

static bool
token_needs_check(const EcToken *token)
{
	return token->version != 0 && FullTransactionIdIsValid(token->xid);
}

/*
 * Raise EC003. The errdetail is a JSON object for API servers to pass on
 * to their clients (see the README): reason is a stable keyword, consumer
 * (only when one was named) the consumer waited for, suggestion a sentence,
 * retry_after_ms a delay worth waiting before a retry.
 */
void
ec_not_consistent(const char *reason, const char *consumer, const char *suggestion,
				  int retry_after_ms, const char *hint)
{
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"code\":\"resource_not_consistent\",\"reason\":");
	escape_json(&detail, reason);
	if (consumer != NULL)
	{
		appendStringInfoString(&detail, ",\"consumer\":");
		escape_json(&detail, consumer);
	}
	appendStringInfoString(&detail, ",\"suggestion\":");
	escape_json(&detail, suggestion);
	appendStringInfo(&detail, ",\"retry_after_ms\":%d}", retry_after_ms);
	ereport(ERROR,
			(errcode(ERRCODE_EC_NOT_CONSISTENT),
			 errmsg("resource not consistent"),
			 errdetail_internal("%s", detail.data),
			 errhint("%s", hint)));
}

static void
not_consistent(const char *reason, const char *suggestion, int retry_after_ms,
			   const char *hint)
{
	ec_not_consistent(reason, NULL, suggestion, retry_after_ms, hint);
}

/* Why a write is pending here: replay has not reached it, or it runs. */
const char *
ec_pending_reason(void)
{
	return RecoveryInProgress() ? "replica_behind" : "write_in_progress";
}

static const char *
pending_suggestion(void)
{
	return RecoveryInProgress() ?
		"Retry after retry_after_ms milliseconds, wait on the server with ec_feed.require_visible(token, wait_ms), or read from the primary." :
		"Retry after retry_after_ms milliseconds: the write becomes visible when its transaction commits.";
}

int
ec_retry_after(long waited_ms)
{
	return (int) Min(Max(waited_ms, EC_RETRY_MIN_MS), EC_RETRY_MAX_MS);
}

static bool
write_visible_check(void *arg)
{
	return write_state_now((const EcToken *) arg) == EC_WRITE_VISIBLE;
}

/*
 * Is the write the token names visible to a new snapshot on this server?
 * Raises an error for a write that was rolled back.
 */
bool
ec_token_visible_now(const EcToken *token)
{
	return !token_needs_check(token) || write_state_now(token) == EC_WRITE_VISIBLE;
}

/*
 * ec_feed.token_status(token text) returns text
 *
 * 'visible' when the write the token names is visible to a new snapshot on
 * this server, 'pending' when not yet. In a REPEATABLE READ transaction a
 * 'visible' write may still be invisible to that transaction's snapshot.
 */
PG_FUNCTION_INFO_V1(ec_feed_token_status);
Datum
ec_feed_token_status(PG_FUNCTION_ARGS)
{
	EcToken		token;
	bool		visible;

	ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &token);
	visible = !token_needs_check(&token) ||
		write_state_now(&token) == EC_WRITE_VISIBLE;
	PG_RETURN_TEXT_P(cstring_to_text(visible ? "visible" : "pending"));
}

/*
 * ec_feed.require_visible(token text, wait_ms int DEFAULT 0) returns void
 *
 * Returns once the token's write is visible to the statements that follow
 * (a new snapshot in READ COMMITTED, the transaction's snapshot in
 * REPEATABLE READ and SERIALIZABLE); waits up to wait_ms for it where it
 * can do so without holding back vacuum or replay; else raises EC003. A
 * NULL token names no write: nothing to wait for.
 */
PG_FUNCTION_INFO_V1(ec_feed_require_visible);
Datum
ec_feed_require_visible(PG_FUNCTION_ARGS)
{
	EcToken		token;
	int			wait_ms = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	long		waited_ms = 0;

	if (wait_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_ms must not be negative"),
				 errdetail("wait_ms is how many milliseconds to wait for the write to become visible."),
				 errhint("Pass 0 to check without waiting.")));
	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &token);
	if (!token_needs_check(&token))
		PG_RETURN_VOID();

	if (IsolationUsesXactSnapshot())
	{
		/* the rest of this transaction reads with its first snapshot */
		if (write_state(&token, GetTransactionSnapshot()) == EC_WRITE_VISIBLE)
			PG_RETURN_VOID();
		if (write_state_now(&token) == EC_WRITE_VISIBLE)
			not_consistent("transaction_snapshot",
						   "Retry in a new transaction: this one reads with a snapshot taken before the write became visible here.",
						   0,
						   "A REPEATABLE READ or SERIALIZABLE transaction keeps the snapshot it started with; start a new transaction to see the write.");
		not_consistent(ec_pending_reason(),
					   "Retry in a new transaction after retry_after_ms milliseconds.",
					   ec_retry_after(0),
					   "ec_feed.require_visible() does not wait in a REPEATABLE READ or SERIALIZABLE transaction: that transaction could not see the write anyway.");
	}

	if (write_state_now(&token) == EC_WRITE_VISIBLE)
		PG_RETURN_VOID();
	if (wait_ms > 0)
	{
		if (!ec_can_wait_without_snapshot(fcinfo))
			not_consistent(ec_pending_reason(), pending_suggestion(), ec_retry_after(0),
						   "ec_feed.require_visible() waits only when it is a statement of its own (SELECT ec_feed.require_visible($1, $2)) in a READ COMMITTED transaction without open cursors; here it checked once.");
		if (ec_wait_until(write_visible_check, &token, wait_ms, 0, &waited_ms))
			PG_RETURN_VOID();
	}
	not_consistent(ec_pending_reason(), pending_suggestion(), ec_retry_after(waited_ms),
				   wait_ms > 0 ?
				   "The write did not become visible on this server within wait_ms; retry later or read from the primary." :
				   "Retry later, pass wait_ms to wait on the server, or read from the primary.");
	PG_RETURN_VOID();			/* not reached */
}

/*
 * Check that key is a JSON object whose members are exactly the primary key
 * columns of rel.
 */
static void
check_key(Relation rel, const EcRowShape *shape, Jsonb *key)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (!JB_ROOT_IS_OBJECT(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key must be a JSON object"),
				 errdetail("A key names a row by its primary key columns, as in {\"id\": 1}."),
				 errhint("Pass the key as ec_feed.read() returns it.")));
	for (int i = 0; i < shape->nkeys; i++)
	{
		const char *name = NameStr(TupleDescAttr(desc, shape->key_attnums[i] - 1)->attname);

		if (getKeyJsonValueFromContainer(&key->root, name, strlen(name), NULL) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key lacks primary key column \"%s\" of table \"%s\"",
							name, RelationGetRelationName(rel)),
					 errdetail("A key names a row by all of its primary key columns."),
					 errhint("Pass the key as ec_feed.read() returns it.")));
	}
	if (JsonContainerSize(&key->root) != shape->nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key has members that are not primary key columns of table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("A key names a row by its primary key columns only."),
				 errhint("Pass the key as ec_feed.read() returns it.")));
}

static void
token_mismatch(Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_EC_TOKEN_MISMATCH),
			 errmsg("token belongs to another row or table"),
			 errdetail("min_token was not made for this row of table \"%s\".",
					   RelationGetRelationName(rel)),
			 errhint("Pass the token of the row that is read.")));
}

/*
 * ec_feed.get(rel regclass, key jsonb, min_token text DEFAULT NULL)
 *		returns TABLE(status text, data jsonb, token text)
 *
 * One row: 'found' with the row (managed columns left out) and its current
 * token; 'not_found' when there is no such row and min_token's write (if
 * any) is visible; 'not_consistent' when min_token's write is not visible
 * yet. The row is read as the caller (privileges and row-level security
 * apply), with the snapshot the visibility check used. NULL rel or key:
 * no row, as for a strict function.
 */
PG_FUNCTION_INFO_V1(ec_feed_get);
Datum
ec_feed_get(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	Jsonb	   *key;
	bool		have_token = !PG_ARGISNULL(2);
	EcToken		token;
	Relation	rel;
	EcRowShape	shape;
	Snapshot	snap;
	Datum		values[3];
	bool		nulls[3] = {false, true, true};
	const char *status;
	HeapTuple	row;
	Jsonb	   *rowkey;

	ec_set_materialized_srf(fcinfo);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return (Datum) 0;
	relid = PG_GETARG_OID(0);
	key = PG_GETARG_JSONB_P(1);
	if (have_token)
		ec_token_decode(text_to_cstring(PG_GETARG_TEXT_PP(2)), &token);

	/*
	 * The query below checks privileges and row-level security in full;
	 * this only keeps a caller who may read nothing of the table from
	 * locking it.
	 */
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(relid, GetUserId(), ACL_SELECT, ACLMASK_ANY) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));

	rel = relation_open(relid, AccessShareLock);
	ec_require_tracked(rel, NULL);
	ec_row_shape(rel, &shape, true);
	check_key(rel, &shape, key);
	if (have_token && token.relid != relid)
		token_mismatch(rel);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * One snapshot for the check and the read: a new one in READ COMMITTED,
	 * the transaction's in REPEATABLE READ, whose later reads see no more.
	 * The row is read as the caller, through the plan update_if uses to find
	 * a row by key (rowaccess.c): no column name or search_path entry can
	 * change what it reads.
	 */
	snap = RegisterSnapshot(GetTransactionSnapshot());
	row = ec_read_row(rel, key, snap, &rowkey);

	/*
	 * The token names the row by the hash of its key as stored, which can
	 * differ from the key asked for (say, in case under citext); for a row
	 * that is not there, the key asked for, normalised.
	 */
	if (have_token && token.key_hash != ec_key_hash(rowkey))
		token_mismatch(rel);

	if (have_token && token_needs_check(&token) &&
		write_state(&token, snap) == EC_WRITE_PENDING)
		status = "not_consistent";
	else if (row == NULL)
		status = "not_found";
	else
	{
		status = "found";
		values[1] = JsonbPGetDatum(ec_row_data(rel, &shape, row));
		/* the token ec_feed.row_token() gives for this row */
		values[2] = CStringGetTextDatum(ec_row_token_text(rel, &shape, row, rowkey));
		nulls[1] = nulls[2] = false;
	}
	values[0] = CStringGetTextDatum(status);
	/* the tuplestore copies the values out of SPI's memory */
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	UnregisterSnapshot(snap);
	SPI_finish();
	relation_close(rel, NoLock);
	return (Datum) 0;
}
