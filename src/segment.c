/*
 * segment.c
 *		The history in segments: the segment a writer records into, the
 *		segments a reader scans, and what pruning removed (EC001).
 *
 * The history is a series of tables, segment 0 (ec_feed.history) and
 * ec_feed.history_N, listed in ec_feed.segment. The sequence
 * ec_feed.segment_current names the current one. Its value is not
 * transactional: it moves only to a segment whose table a committed
 * transaction created (the pruning functions in SQL keep one ready), so a
 * writer that reads it can always open that table.
 *
 * A transaction records all its changes into the segment that was current at
 * its first change: it reads the sequence after its xid was assigned (the
 * stamp trigger assigns it). Hence, when the sequence moves on from segment
 * n and the next xid is read afterwards (closed_nxt), every transaction that
 * writes into n has an xid below closed_nxt. Once none below it is running,
 * n is complete (frozen): its newest writer's xid (max_xid) is final, and a
 * cursor whose horizon (the oldest transaction its mark still waits for,
 * prev.xmin) is above max_xid needs nothing in n. Pruning drops such a
 * segment whole and raises ec_feed.pruned.horizon above max_xid, so that a
 * cursor with an older horizon gets EC001 instead of a page with holes.
 *
 * Readers list the segments after taking their mark. A transaction visible
 * at the mark wrote into a segment that was current before the mark; the
 * sequence is read after it, and the segment's catalog row was committed
 * before the sequence named it: the list holds it. A segment dropped after
 * the list was read cannot be opened, but then the horizon, read after every
 * segment was locked, tells whether the reader needed it.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/primnodes.h"
#include "parser/parse_func.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "ec_feed.h"
#include "segment.h"

/* extension-owned objects of 0.3.0 */
#define EC_SEGMENT_REL			"segment"
#define EC_SEGMENT_CURRENT_SEQ	"segment_current"
#define EC_PRUNED_REL			"pruned"

/* columns of ec_feed.segment */
#define Anum_segment_id			1
#define Anum_segment_relid		2
#define Anum_segment_max_xid	9
#define Anum_segment_min_version 10
#define Anum_segment_max_version 11

/* columns of ec_feed.pruned */
#define Anum_pruned_horizon		2
#define Anum_pruned_max_version	3

/* The segment list of this backend, in TopMemoryContext. */
static EcSegmentList *segment_cache = NULL;
static bool segment_cache_stale = true;
static Oid	segment_catalog = InvalidOid;
static bool segment_callback = false;

/* the writer's segment for its current top-level transaction */
static FullTransactionId writer_xid;
static Oid	writer_segment = InvalidOid;

/*
 * Pruning sends an invalidation for ec_feed.segment when it changes it: the
 * list is read again. (Correctness does not rest on it; see ec_segments().)
 * So does a segment's own invalidation: the list names its indexes, which
 * the 0.3.0 upgrade script replaces (the key index).
 */
static void
forget_segments(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == segment_catalog)
		segment_cache_stale = true;
	for (int i = 0; segment_cache != NULL && i < segment_cache->n; i++)
		if (segment_cache->segs[i].relid == relid)
			segment_cache_stale = true;
}

/* The current segment's number, or -1 before the 0.3.0 upgrade script ran. */
static int64
current_segment(void)
{
	Oid			seq = get_relname_relid(EC_SEGMENT_CURRENT_SEQ, ec_feed_namespace());
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	if (!OidIsValid(seq))
		return -1;
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seq);
	fcinfo->args[0].isnull = false;
	result = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(result);
}

static char *
segment_relname(int64 id)
{
	return id == 0 ? pstrdup(EC_HISTORY_REL) : psprintf(EC_HISTORY_REL "_" INT64_FORMAT, id);
}

static Oid
segment_index(const char *relname, const char *suffix)
{
	char	   *name = psprintf("%s_%s", relname, suffix);
	Oid			index = get_relname_relid(name, ec_feed_namespace());

	pfree(name);
	return index;
}

/* Is this index expression ec_key_hash(key), i.e. jsonb_hash_extended(key, seed)? */
bool
ec_is_key_hash_expr(Node *expr)
{
	FuncExpr   *func = (FuncExpr *) expr;
	Var		   *var;
	Const	   *seed;

	if (expr == NULL || !IsA(expr, FuncExpr) || func->funcid != F_JSONB_HASH_EXTENDED ||
		list_length(func->args) != 2)
		return false;
	var = linitial(func->args);
	seed = lsecond(func->args);
	return IsA(var, Var) && var->varattno == Anum_history_key &&
		IsA(seed, Const) && !seed->constisnull && DatumGetInt64(seed->constvalue) == EC_KEY_HASH_SEED;
}

/*
 * Does the key index hold (relid, ec_key_hash(key), seq)? Segments made
 * before the 0.3.0 upgrade script ran hold (relid, key, seq).
 */
bool
ec_key_index_hashed(Relation index)
{
	return index->rd_index->indkey.values[1] == InvalidAttrNumber;
}

/*
 * Scan the entries of (relid, key) in one segment with seq from version on
 * (after: above it), in seq order, through the segment's key index. It holds
 * the key's hash (key_hash, ec_key_hash(key): a hash matches other keys too,
 * so ec_key_scan_next compares each entry's key) or, in a segment made
 * before 0.3.0, the key itself.
 */
void
ec_key_scan_begin(EcKeyScan *ks, Relation history, const EcSegment *seg, Snapshot snapshot,
				  Oid relid, Jsonb *key, uint64 key_hash, int64 version, bool after)
{
	ScanKeyData skey[3];

	ks->index = index_open(seg->key_index, AccessShareLock);
	ks->hashed = ec_key_index_hashed(ks->index);
	ks->key = key;
	ks->slot = table_slot_create(history, NULL);
	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	if (ks->hashed)
		ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum((int64) key_hash));
	else
		ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, F_JSONB_EQ, JsonbPGetDatum(key));
	if (after)
		ScanKeyInit(&skey[2], 3, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(version));
	else
		ScanKeyInit(&skey[2], 3, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(version));
	ks->scan = index_beginscan(history, ks->index, snapshot, 3, 0);
	index_rescan(ks->scan, skey, 3, NULL, 0);
}

/* The next entry of the key (in ks->slot), or NULL. */
TupleTableSlot *
ec_key_scan_next(EcKeyScan *ks)
{
	while (index_getnext_slot(ks->scan, ForwardScanDirection, ks->slot))
	{
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (!ks->hashed ||
			DatumGetBool(DirectFunctionCall2(jsonb_eq, slot_getattr(ks->slot, Anum_history_key, &isnull),
											 JsonbPGetDatum(ks->key))))
			return ks->slot;
	}
	return NULL;
}

void
ec_key_scan_end(EcKeyScan *ks)
{
	index_endscan(ks->scan);
	ExecDropSingleTupleTableSlot(ks->slot);
	index_close(ks->index, AccessShareLock);
}

static void
fill_segment(EcSegment *seg, int64 id, Oid relid)
{
	char	   *relname = get_rel_name(relid);

	seg->id = id;
	seg->relid = relid;
	seg->frozen = false;
	if (relname == NULL)
	{
		/* dropped since the catalog row was read */
		seg->relid = InvalidOid;
		return;
	}
	seg->seq_index = segment_index(relname, "pkey");
	seg->xid_index = segment_index(relname, "xid_seq_idx");
	seg->key_index = segment_index(relname, "rel_key_idx");
	seg->rel_index = segment_index(relname, "rel_seq_idx");
	pfree(relname);
}

/*
 * The segments, oldest first. Read again whenever the current segment moved
 * since the last read (a new one may hold changes) or pruning changed the
 * catalog. Entries whose table is gone have relid InvalidOid; a caller that
 * opens a segment must cope with it being dropped meanwhile as well.
 */
const EcSegmentList *
ec_segments(void)
{
	int64		current;
	Relation	catalog;
	SysScanDesc scan;
	Snapshot	snapshot;
	HeapTuple	tuple;
	MemoryContext old;
	EcSegmentList *list;
	int			size = 8;

	if (!segment_callback)
	{
		CacheRegisterRelcacheCallback(forget_segments, (Datum) 0);
		segment_callback = true;
	}
	AcceptInvalidationMessages();
	current = current_segment();
	if (segment_cache != NULL && !segment_cache_stale && segment_cache->current == current)
		return segment_cache;

	old = MemoryContextSwitchTo(TopMemoryContext);
	list = palloc0(sizeof(EcSegmentList));
	list->segs = palloc0(sizeof(EcSegment) * size);
	list->current = current;
	MemoryContextSwitchTo(old);

	if (current < 0)
	{
		/* before the upgrade: the one table */
		fill_segment(&list->segs[0], 0, ec_feed_relid(EC_HISTORY_REL));
		list->n = 1;
	}
	else
	{
		segment_catalog = ec_feed_relid(EC_SEGMENT_REL);
		segment_cache_stale = false;
		catalog = table_open(segment_catalog, AccessShareLock);
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		scan = systable_beginscan(catalog, InvalidOid, false, snapshot, 0, NULL);
		while ((tuple = systable_getnext(scan)) != NULL)
		{
			TupleDesc	desc = RelationGetDescr(catalog);
			bool		isnull;
			int64		id = DatumGetInt32(heap_getattr(tuple, Anum_segment_id, desc, &isnull));
			Oid			relid = DatumGetObjectId(heap_getattr(tuple, Anum_segment_relid, desc, &isnull));
			Datum		max_xid = heap_getattr(tuple, Anum_segment_max_xid, desc, &isnull);
			EcSegment  *seg;

			if (id > current + 1)
				continue;
			if (list->n == size)
			{
				size *= 2;
				list->segs = repalloc(list->segs, sizeof(EcSegment) * size);
			}
			seg = &list->segs[list->n++];
			old = MemoryContextSwitchTo(TopMemoryContext);
			fill_segment(seg, id, relid);
			MemoryContextSwitchTo(old);
			if (!isnull && OidIsValid(seg->relid))
			{
				seg->frozen = true;
				seg->max_xid = U64FromFullTransactionId(DatumGetFullTransactionId(max_xid));
				seg->min_version = DatumGetInt64(heap_getattr(tuple, Anum_segment_min_version, desc, &isnull));
				seg->max_version = DatumGetInt64(heap_getattr(tuple, Anum_segment_max_version, desc, &isnull));
				if (isnull)
					seg->frozen = false;
			}
		}
		systable_endscan(scan);
		UnregisterSnapshot(snapshot);
		table_close(catalog, AccessShareLock);
		/* a heap scan: put them in order */
		for (int i = 1; i < list->n; i++)
			for (int j = i; j > 0 && list->segs[j - 1].id > list->segs[j].id; j--)
			{
				EcSegment	t = list->segs[j];

				list->segs[j] = list->segs[j - 1];
				list->segs[j - 1] = t;
			}
	}

	if (segment_cache != NULL)
	{
		pfree(segment_cache->segs);
		pfree(segment_cache);
	}
	segment_cache = list;
	return list;
}

/*
 * The table the transaction xid records its changes into: the segment that
 * was current at its first change (see the opening comment).
 */
Oid
ec_segment_for_write(FullTransactionId xid)
{
	int64		current;
	char	   *relname;

	if (OidIsValid(writer_segment) && FullTransactionIdEquals(writer_xid, xid))
		return writer_segment;
	current = current_segment();
	relname = segment_relname(Max(current, 0));
	writer_segment = get_relname_relid(relname, ec_feed_namespace());
	if (!OidIsValid(writer_segment))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the current history segment \"%s\" of ec_feed is missing", relname),
				 errdetail("The sequence ec_feed.segment_current names a segment whose table does not exist."),
				 errhint("Do not drop ec_feed's tables by hand; reinstall the extension.")));
	writer_xid = xid;
	pfree(relname);
	return writer_segment;
}

/*
 * What pruning removed: every change of a transaction below *horizon is gone
 * (0 before any prune, and before the upgrade).
 */
void
ec_pruned(uint64 *horizon, int64 *max_version)
{
	Oid			relid = get_relname_relid(EC_PRUNED_REL, ec_feed_namespace());
	Relation	pruned;
	SysScanDesc scan;
	Snapshot	snapshot;
	HeapTuple	tuple;

	*horizon = 0;
	*max_version = 0;
	if (!OidIsValid(relid))
		return;
	pruned = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(pruned, InvalidOid, false, snapshot, 0, NULL);
	if ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;

		*horizon = U64FromFullTransactionId(DatumGetFullTransactionId(
																	   heap_getattr(tuple, Anum_pruned_horizon, RelationGetDescr(pruned), &isnull)));
		*max_version = DatumGetInt64(heap_getattr(tuple, Anum_pruned_max_version,
												  RelationGetDescr(pruned), &isnull));
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(pruned, AccessShareLock);
}

/*
 * The oldest position still served: every change of a transaction at or
 * above the horizon, none below it.
 */
void
ec_oldest_cursor(EcCursor *cursor, uint64 horizon)
{
	memset(cursor, 0, sizeof(EcCursor));
	cursor->prev.xmin = cursor->prev.xmax = cursor->prev.nxt = horizon;
}

/* EC001 unless every change the cursor may still return is retained. */
void
ec_check_retained(const EcCursor *cursor, uint64 horizon)
{
	EcCursor	oldest;
	StringInfoData detail;

	if (cursor->prev.xmin >= horizon)
		return;
	ec_oldest_cursor(&oldest, horizon);
	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"code\":\"cursor_too_old\",\"oldest_cursor\":");
	escape_json(&detail, ec_cursor_encode(&oldest));
	appendStringInfoString(&detail, ",\"suggestion\":");
	escape_json(&detail, "Changes this cursor still needed were pruned. Copy the tables again using the cursor_now() hand-over, then read from that cursor.");
	appendStringInfoChar(&detail, '}');
	ereport(ERROR,
			(errcode(ERRCODE_EC_CURSOR_TOO_OLD),
			 errmsg("cursor is older than the retained history"),
			 errdetail_internal("%s", detail.data),
			 errhint("Register consumers (ec_feed.register_consumer) so that the history they need is kept, or raise ec_feed.retention_min.")));
}

PG_FUNCTION_INFO_V1(ec_feed_check_retained);

/* ec_feed._check_retained(cursor text): EC001 when the cursor needs pruned changes. */
Datum
ec_feed_check_retained(PG_FUNCTION_ARGS)
{
	EcCursor	cursor;
	uint64		horizon;
	int64		max_version;

	ec_cursor_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &cursor);
	ec_pruned(&horizon, &max_version);
	ec_check_retained(&cursor, horizon);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(ec_feed_oldest_cursor);

/* ec_feed._oldest_cursor(): the oldest cursor still served, for status(). */
Datum
ec_feed_oldest_cursor(PG_FUNCTION_ARGS)
{
	EcCursor	cursor;
	uint64		horizon;
	int64		max_version;

	ec_pruned(&horizon, &max_version);
	ec_oldest_cursor(&cursor, horizon);
	PG_RETURN_TEXT_P(cstring_to_text(ec_cursor_encode(&cursor)));
}

PG_FUNCTION_INFO_V1(ec_feed_next_xid);

/* ec_feed._next_xid(): the next xid to be assigned, read now (not a snapshot's). */
Datum
ec_feed_next_xid(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(ReadNextFullTransactionId());
}

PG_FUNCTION_INFO_V1(ec_feed_oldest_running_xid);

/*
 * ec_feed._oldest_running_xid(): no transaction below it is running now, in
 * any database, prepared ones included; the caller's own counts too.
 */
Datum
ec_feed_oldest_running_xid(PG_FUNCTION_ARGS)
{
	FullTransactionId next = ReadNextFullTransactionId();
	Snapshot	snapshot = GetLatestSnapshot();
	uint64		oldest = U64FromFullTransactionId(ec_widen_xid(snapshot->xmin, next));
	FullTransactionId own = GetTopFullTransactionIdIfAny();

	if (FullTransactionIdIsValid(own))
		oldest = Min(oldest, U64FromFullTransactionId(own));
	PG_RETURN_FULLTRANSACTIONID(FullTransactionIdFromU64(oldest));
}

PG_FUNCTION_INFO_V1(ec_feed_segments_changed);

/* ec_feed._segments_changed(): other backends read the segment list again. */
Datum
ec_feed_segments_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(ec_feed_relid(EC_SEGMENT_REL));
	PG_RETURN_VOID();
}

/*
 * May read() or ack() run the pruning now? Only as a statement of its own
 * (the locks it takes end with it), in READ COMMITTED (the pruning functions
 * read the catalog of segments with a fresh snapshot per statement, taken
 * after their lock; with the statement's older one they fail on what another
 * prune changed meanwhile, and the read with them), writable, at most once a
 * second per backend.
 */
bool
ec_maintenance_due(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (IsTransactionBlock() || IsolationUsesXactSnapshot() || XactReadOnly || RecoveryInProgress() ||
		!TimestampDifferenceExceeds(last, now, 1000))
		return false;
	last = now;
	return true;
}

/* Run the pruning that is due (ec_feed._maintain) after ec_maintenance_due(). */
void
ec_auto_prune(void)
{
	Oid			argtypes[1] = {BOOLOID};
	Oid			fn;

	if (!OidIsValid(get_relname_relid(EC_SEGMENT_REL, ec_feed_namespace())))
		return;					/* before the upgrade */
	fn = LookupFuncName(list_make2(makeString(EC_FEED_SCHEMA), makeString("_maintain")),
						1, argtypes, true);
	if (OidIsValid(fn))
		OidFunctionCall1(fn, BoolGetDatum(false));
}

PG_FUNCTION_INFO_V1(ec_feed_maintenance_due);

/* ec_feed._maintenance_due(): see ec_maintenance_due(). */
Datum
ec_feed_maintenance_due(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ec_maintenance_due());
}
