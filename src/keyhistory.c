/*
 * keyhistory.c
 *		The history of one key after a token's version, as the conditional
 *		writes read it: what changed since the token, and whether the row was
 *		deleted since.
 *
 * A stale token merges only when the history proves it saw every version of
 * the row since the token (history_since and the chain of prev versions, see
 * ec_changed_since()).
 *
 * A TRUNCATE is recorded as one table-level entry (key JSON null, op
 * EC_OP_TRUNCATE, see track.c): for every key it is a delete that names no
 * version, so the entries of a key include the table's truncates in the same
 * range of versions, and a truncate breaks the chain: a stale token never
 * merges across it, and without a row it answers deleted. An untrack entry
 * (untrack.c) is table-level too and breaks the chain the same way (a
 * token from before it is older than the new registration's history_since
 * anyway).
 *
 * The history is read with the index access method, not as the caller, who
 * may have no privilege on ec_feed.history. It is read only for the row the
 * caller has just locked, or, to tell deleted from not_found, when the caller
 * may read the whole table anyway (SELECT privilege and no row-level security
 * in effect), so it never reveals a row the caller could not see.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "ec_feed.h"
#include "keyhistory.h"
#include "segment.h"
#include "rowaccess.h"

typedef struct HistorySince
{
	bool		has_token_version;	/* an entry at the token's version is retained */
	bool		chained;		/* each later entry follows the one before it */
	int64		last;			/* the newest entry's version, 0 if none */
	bool		replaced;		/* deleted (and maybe inserted again) since */
	bool		deleted;		/* a delete or truncate since the token */
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

/* One entry of the key's history, as history_since() needs it. */
typedef struct KeyEntry
{
	int64		seq;
	char		op;
	bool		prev_null;
	int64		prev;
	Datum		changed;		/* text[], or 0 */
} KeyEntry;

static int
compare_entries(const void *a, const void *b)
{
	int64		x = ((const KeyEntry *) a)->seq;
	int64		y = ((const KeyEntry *) b)->seq;

	return (x > y) - (x < y);
}

/* Append the entries of (relid, key) from version on in one segment. */
static void
scan_entries(Relation history, const EcSegment *seg, Snapshot snapshot, Oid relid, Jsonb *key,
			 uint64 key_hash, int64 version, KeyEntry **entries, int *count, int *size)
{
	TupleDesc	desc = RelationGetDescr(history);
	EcKeyScan	ks;
	TupleTableSlot *slot;

	ec_key_scan_begin(&ks, history, seg, snapshot, relid, key, key_hash, version, false);
	while ((slot = ec_key_scan_next(&ks)) != NULL)
	{
		KeyEntry   *e;
		bool		isnull;
		Datum		changed;

		if (*count == *size)
		{
			*size *= 2;
			*entries = repalloc_huge(*entries, sizeof(KeyEntry) * *size);
		}
		e = &(*entries)[(*count)++];
		e->seq = DatumGetInt64(slot_getattr(slot, Anum_history_seq, &isnull));
		e->op = DatumGetChar(slot_getattr(slot, Anum_history_op, &isnull));
		e->prev_null = true;
		e->prev = 0;
		if (desc->natts >= Anum_history_prev_version)
			e->prev = DatumGetInt64(slot_getattr(slot, Anum_history_prev_version, &e->prev_null));
		e->changed = 0;
		changed = slot_getattr(slot, Anum_history_changed, &isnull);
		if (!isnull)
			e->changed = PointerGetDatum(DatumGetArrayTypePCopy(changed));
	}
	ec_key_scan_end(&ks);
}

/*
 * The entries of one key from version on, with the table-level entries
 * (truncates, key JSON null) in the same range, from every segment that may
 * hold one, in version order. Both are probes of the key index. Segments
 * are read with the same snapshot; one that pruning dropped meanwhile holds
 * nothing this recent that a caller with a retained token could need, and
 * the chain shows a hole if it did.
 */
static KeyEntry *
key_entries(Oid relid, Jsonb *key, int64 version, int *count, bool *chained)
{
	const EcSegmentList *segments = ec_segments();
	/* after the row lock: sees every committed change of the row, and our own */
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	int			size = 16;
	KeyEntry   *entries = palloc(sizeof(KeyEntry) * size);
	Jsonb	   *table_level = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")));
	uint64		key_hash = ec_key_hash(key);
	uint64		table_level_hash = ec_key_hash(table_level);

	*count = 0;
	*chained = true;
	for (int i = 0; i < segments->n; i++)
	{
		const EcSegment *seg = &segments->segs[i];
		Relation	history;

		if (!OidIsValid(seg->relid) || (seg->frozen && seg->max_version < version))
			continue;
		history = try_relation_open(seg->relid, AccessShareLock);
		if (history == NULL)
			continue;
		/* entries written before 0.2.0's upgrade script ran name no prev */
		if (RelationGetDescr(history)->natts < Anum_history_prev_version)
			*chained = false;
		scan_entries(history, seg, snapshot, relid, key, key_hash, version,
					 &entries, count, &size);
		scan_entries(history, seg, snapshot, relid, table_level, table_level_hash, version,
					 &entries, count, &size);
		relation_close(history, AccessShareLock);
	}
	UnregisterSnapshot(snapshot);
	qsort(entries, *count, sizeof(KeyEntry), compare_entries);
	return entries;
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
	char		prev_op = '\0';	/* op of the entry before */
	int64		expect = version;	/* its version: the next entry's prev */
	int			count;
	bool		chained;
	KeyEntry   *entries;

	memset(hs, 0, sizeof(HistorySince));
	entries = key_entries(relid, key, version, &count, &chained);
	hs->chained = chained;
	for (int i = 0; i < count; i++)
	{
		const KeyEntry *e = &entries[i];

		if (e->seq == version)
		{
			hs->has_token_version = true;
			prev_op = e->op;
			continue;
		}
		/*
		 * a truncate names no version it removed, an untrack ends the
		 * recording: the chain ends there
		 */
		if (e->op == EC_OP_TRUNCATE || e->op == EC_OP_UNTRACK ||
			(e->op == EC_OP_INSERT ? prev_op != EC_OP_DELETE :
			 e->prev_null || e->prev != expect))
			hs->chained = false;
		prev_op = e->op;
		expect = e->seq;
		hs->last = e->seq;
		if (e->op == EC_OP_UPDATE)
		{
			if (e->changed != 0)
			{
				Datum	   *names;
				int			n;

				deconstruct_array(DatumGetArrayTypeP(e->changed), TEXTOID, -1, false,
								  TYPALIGN_INT, &names, NULL, &n);
				for (int j = 0; j < n; j++)
					add_name(&hs->changed, TextDatumGetCString(names[j]));
			}
		}
		else
		{
			hs->replaced = true;
			if (e->op == EC_OP_DELETE || e->op == EC_OP_TRUNCATE)
				hs->deleted = true;
		}
	}
	pfree(entries);
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
List *
ec_changed_since(Relation rel, bool history_on, Jsonb *key,
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
		if (ec_find_column(desc, lfirst(lc)) == InvalidAttrNumber)
			result = lappend(result, lfirst(lc));
	return result;
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

bool
ec_deleted_since(Relation rel, bool history_on, Jsonb *key, int64 token_version)
{
	HistorySince hs;

	if (!history_on || !may_read_whole_table(RelationGetRelid(rel)))
		return false;
	history_since(RelationGetRelid(rel), key, token_version, &hs);
	return hs.deleted;
}

/*
 * The newest version in the key's history after `version` (0 if none). Just
 * after a delete of the key by this transaction, the delete's own version:
 * the one its token names (ec_feed.delete_if).
 */
int64
ec_key_newest_version(Relation rel, Jsonb *key, int64 version)
{
	HistorySince hs;

	history_since(RelationGetRelid(rel), key, version, &hs);
	return hs.last;
}
