/*
 * partition.c
 *		Partitioned tables: track('parent') tracks every partition, and the
 *		feed, the tokens and the conditional writes name the parent.
 *
 * The row triggers live on the parent; PostgreSQL clones them to every
 * partition, present and future (CREATE TABLE ... PARTITION OF, ATTACH),
 * so they fire with the partition as tg_relation. ec_tracked_root() maps it
 * to the topmost ancestor that carries ec_feed's stamp trigger (the table
 * track() registered), cached per backend and forgotten on any relcache
 * invalidation of a table it names. A table that is no partition is its own
 * root without a lookup: the plain table's write path does not change.
 *
 * Rows that leave a tracked tree without a row trigger firing are recorded
 * here, one delete per row keyed by the root, so that the parent's
 * consumers stay exact: for DROP TABLE, DROP SCHEMA and DETACH PARTITION
 * the event triggers of partddl.c call ec_record_tree_leaving(); ATTACH
 * stamps the arriving rows with an UPDATE that the record trigger records
 * as inserts while ec_set_attaching() names the table. TRUNCATE of a
 * partition (not of the whole tree): its statement-level guard, which
 * track() and partddl.c put on every partition, records one delete per row.
 * TRUNCATE of the root records one truncate change (track.c); the
 * partitions' guards, which fire after the root's in the same statement,
 * then record nothing.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "ec_feed.h"
#include "partition.h"
#include "publish.h"

/* partition -> tracked root, per backend */
typedef struct RootEntry
{
	Oid			relid;			/* hash key: a partition */
	Oid			root;			/* the topmost ancestor carrying the stamp trigger, or relid */
} RootEntry;

static HTAB *roots = NULL;
static uint64 roots_invalidations = 0;

/* partitions whose rows the root's TRUNCATE, in progress, has recorded */
static List *truncate_covered = NIL;	/* in TopTransactionContext */
static SubTransactionId covered_subid = InvalidSubTransactionId;	/* where it was set */
static bool xact_callbacks = false;

/* the table whose rows ATTACH is stamping: they are recorded as inserts */
static Oid	attaching_relid = InvalidOid;

static void
forget_roots(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	RootEntry  *entry;
	bool		hit = !OidIsValid(relid);

	roots_invalidations++;
	if (roots == NULL)
		return;
	if (!hit)
	{
		hash_seq_init(&status, roots);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			if (entry->relid == relid || entry->root == relid)
			{
				hit = true;
				hash_seq_term(&status);
				break;
			}
		}
	}
	/* a trigger or an ATTACH/DETACH anywhere up the tree may move a root */
	if (hit)
	{
		hash_seq_init(&status, roots);
		while ((entry = hash_seq_search(&status)) != NULL)
			hash_search(roots, &entry->relid, HASH_REMOVE, NULL);
	}
}

static void
forget_xact_state(XactEvent event, void *arg)
{
	/* the list's memory goes with TopTransactionContext */
	truncate_covered = NIL;
	attaching_relid = InvalidOid;
}

static void
forget_subxact_state(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	/*
	 * A TRUNCATE that failed between the root's guard and a partition's: its
	 * subtransaction aborts (a subtransaction begun and aborted within it,
	 * by a trigger of its own, changes nothing).
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB && mySubid == covered_subid)
		truncate_covered = NIL;
	else if (event == SUBXACT_EVENT_COMMIT_SUB && mySubid == covered_subid)
		covered_subid = parentSubid;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		attaching_relid = InvalidOid;
}

static void
register_xact_callbacks(void)
{
	if (xact_callbacks)
		return;
	RegisterXactCallback(forget_xact_state, NULL);
	RegisterSubXactCallback(forget_subxact_state, NULL);
	xact_callbacks = true;
}

/* Is funcoid the function ec_feed.<name>? */
static bool
is_feed_function(Oid funcoid, const char *name)
{
	char	   *proname;

	if (get_func_namespace(funcoid) != ec_feed_namespace())
		return false;
	proname = get_func_name(funcoid);
	return proname != NULL && strcmp(proname, name) == 0;
}

/*
 * Does the table carry ec_feed's trigger trigname (its own or a clone),
 * enabled, with the function ec_feed.<funcname>? Read from pg_trigger rather
 * than the relcache, so that no lock on an ancestor is taken from the row
 * trigger of a partition.
 */
static bool
carries_trigger(Oid relid, const char *trigname, const char *funcname)
{
	Relation	trigrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(trigname));
	scan = systable_beginscan(trigrel, TriggerRelidNameIndexId, true, NULL, 2, keys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_trigger trig = (Form_pg_trigger) GETSTRUCT(tuple);

		found = trig->tgenabled != TRIGGER_DISABLED && is_feed_function(trig->tgfoid, funcname);
	}
	systable_endscan(scan);
	table_close(trigrel, AccessShareLock);
	return found;
}

bool
ec_carries_stamp(Oid relid)
{
	return carries_trigger(relid, EC_STAMP_TRIGGER, "stamp");
}

/* The topmost ancestor (the table itself included) carrying the stamp trigger. */
static Oid
compute_root(Oid relid)
{
	List	   *ancestors = get_partition_ancestors(relid);
	Oid			root = relid;
	ListCell   *lc;

	/* from the parent upwards: the last one found is the topmost */
	foreach(lc, ancestors)
	{
		Oid			ancestor = lfirst_oid(lc);

		if (ec_carries_stamp(ancestor))
			root = ancestor;
	}
	list_free(ancestors);
	return root;
}

Oid
ec_tracked_root_oid(Oid relid)
{
	RootEntry  *entry;
	bool		found;
	Oid			root;
	uint64		seen;

	if (!get_rel_relispartition(relid))
		return relid;
	if (roots == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(RootEntry);
		ctl.hcxt = CacheMemoryContext;
		roots = hash_create("ec_feed partition roots", 16, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(forget_roots, (Datum) 0);
	}
	entry = hash_search(roots, &relid, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->root;
	/*
	 * An invalidation that arrives while the catalogs are read may concern
	 * what was read: the answer is then used once, not kept.
	 */
	seen = roots_invalidations;
	root = compute_root(relid);
	if (seen == roots_invalidations)
	{
		entry = hash_search(roots, &relid, HASH_ENTER, &found);
		entry->root = root;
	}
	return root;
}

/* The table the feed names for rows of rel: rel itself unless a partition. */
Oid
ec_tracked_root(Relation rel)
{
	if (!rel->rd_rel->relispartition)
		return RelationGetRelid(rel);
	return ec_tracked_root_oid(RelationGetRelid(rel));
}

/* For readers: a partition of a tracked tree is named by its root. */
void
ec_refuse_partition(Relation rel)
{
	Oid			root = ec_tracked_root(rel);

	if (root != RelationGetRelid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("table \"%s\" is a partition of \"%s\", which ec_feed tracks",
						RelationGetRelationName(rel), get_rel_name(root)),
				 errdetail("The feed, the tokens and the conditional writes name the partitioned table that ec_feed.track() was called on."),
				 errhint("Pass \"%s\" instead.", get_rel_name(root))));
}

/* ATTACH stamps the rows of relid (InvalidOid: done): record them as inserts. */
void
ec_set_attaching(Oid relid)
{
	register_xact_callbacks();
	attaching_relid = relid;
}

/* Is ATTACH stamping the rows of rel (record them as inserts)? */
bool
ec_attaching(Relation rel)
{
	return OidIsValid(attaching_relid) && attaching_relid == RelationGetRelid(rel);
}

/*
 * One delete change per row of the leaf partition, keyed by the root, with a
 * fresh version each: the rows leave the tree (DROP, DETACH, TRUNCATE of the
 * partition). The caller holds ACCESS EXCLUSIVE on the partition, so every
 * writer of these rows has ended and the latest snapshot sees them all.
 */
static void
record_rows_leaving(Oid leafid, Oid root)
{
	Relation	rel = table_open(leafid, AccessExclusiveLock);
	EcRowShape	shape;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext per_row;
	MemoryContext old;
	FullTransactionId xid;

	ec_row_shape(rel, &shape, true);
	/* as for every change: the restore fence, the xid, then the versions */
	ec_feed_fence_adopt();
	xid = GetTopFullTransactionId();
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	per_row = AllocSetContextCreate(CurrentMemoryContext, "ec_feed rows leaving",
									ALLOCSET_DEFAULT_SIZES);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		HeapTuple	tuple;
		bool		shouldfree;
		EcChange	change;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(per_row);
		tuple = ExecFetchSlotHeapTuple(slot, false, &shouldfree);
		change.xid = xid;
		change.seq = ec_feed_next_version();
		change.relid = root;
		change.op = EC_OP_DELETE;
		change.key = ec_row_key(rel, &shape, tuple);
		change.data = ec_row_data(rel, &shape, tuple);
		change.changed = NULL;
		change.has_prev_version = true;
		change.prev_version = ec_row_version(RelationGetDescr(rel), &shape, tuple);
		ec_history_append(&change);
		if (shouldfree)
			heap_freetuple(tuple);
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_row);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	MemoryContextDelete(per_row);
	table_close(rel, NoLock);
	ec_publish_if_due();
}

/* Does the root record history (its stamp and record triggers are there)? */
static bool
root_records_history(Oid root)
{
	return ec_carries_stamp(root) && carries_trigger(root, EC_RECORD_TRIGGER, "record");
}

/* Every row under relid (a partition, itself partitioned or not) leaves. */
void
ec_record_tree_leaving(Oid relid, Oid root)
{
	List	   *tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	ListCell   *lc;

	if (!root_records_history(root))
		return;
	foreach(lc, tree)
	{
		Oid			leaf = lfirst_oid(lc);

		if (get_rel_relkind(leaf) == RELKIND_RELATION)
			record_rows_leaving(leaf, root);
	}
}

/*
 * TRUNCATE of the root: its partitions' guards, which fire next in the same
 * statement, must not record their rows again.
 */
void
ec_truncate_covers(Oid root)
{
	List	   *tree = find_all_inheritors(root, NoLock, NULL);
	MemoryContext old;

	register_xact_callbacks();
	old = MemoryContextSwitchTo(TopTransactionContext);
	truncate_covered = list_concat_unique_oid(truncate_covered, tree);
	covered_subid = GetCurrentSubTransactionId();
	MemoryContextSwitchTo(old);
	list_free(tree);
}

/*
 * The guard of a partition of a tracked tree fired. Part of a TRUNCATE of
 * the root: nothing to record. A TRUNCATE of this partition: its rows leave,
 * one delete each (a partition that is itself partitioned has no rows; its
 * own partitions' guards record theirs).
 */
void
ec_truncate_partition(Relation rel, Oid root)
{
	Oid			relid = RelationGetRelid(rel);

	if (list_member_oid(truncate_covered, relid))
	{
		truncate_covered = list_delete_oid(truncate_covered, relid);
		return;
	}
	if (rel->rd_rel->relkind == RELKIND_RELATION && root_records_history(root))
		record_rows_leaving(relid, root);
}

/* A table of a tracked tree (a partition, or the root itself): its root, else InvalidOid. */
Oid
ec_tree_root(Oid relid)
{
	Oid			root;

	if (!OidIsValid(relid))
		return InvalidOid;
	root = ec_tracked_root_oid(relid);
	if (root == relid && !ec_carries_stamp(relid))
		return InvalidOid;
	return root;
}
