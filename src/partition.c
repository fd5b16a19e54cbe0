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
 * Rows that leave or enter a tracked tree without a row trigger firing are
 * recorded here, keyed by the root, so that the parent's consumers stay
 * exact:
 * - DROP TABLE of a partition (or DROP SCHEMA ... CASCADE of its schema),
 *   ALTER TABLE ... DETACH PARTITION: one delete per row, recorded by the
 *   event trigger ec_feed._partition_ddl_start() before the command runs,
 *   under the ACCESS EXCLUSIVE locks (parent, then partition: the command's
 *   own order) that the command takes anyway.
 *   DETACH ... CONCURRENTLY cannot run in a transaction block with them: it
 *   is refused.
 * - ATTACH PARTITION of a table with rows: ec_feed._partition_ddl_end()
 *   gives every row a fresh version through an UPDATE that the row triggers
 *   (cloned to it by the ATTACH) stamp and record, as an insert. A table
 *   tracked on its own is refused before the ATTACH, as is one whose own
 *   triggers would fire for that UPDATE.
 * - TRUNCATE of a partition (not of the whole tree): its statement-level
 *   guard, which track() and the ddl_command_end trigger put on every
 *   partition, records one delete per row. TRUNCATE of the root records
 *   one truncate change (track.c); the partitions' guards, which fire after
 *   the root's in the same statement, then record nothing.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

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

static bool
carries_stamp(Oid relid)
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

		if (carries_stamp(ancestor))
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
	return carries_stamp(root) && carries_trigger(root, EC_RECORD_TRIGGER, "record");
}

/* Every row under relid (a partition, itself partitioned or not) leaves. */
static void
record_tree_leaving(Oid relid, Oid root)
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

static void
run_sql(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute returned %s", SPI_result_code_string(rc));
}

/* The table's owner (or a member of its role) is the caller? */
static bool
caller_owns(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		result = false;

	if (HeapTupleIsValid(tuple))
	{
		result = has_privs_of_role(GetUserId(), ((Form_pg_class) GETSTRUCT(tuple))->relowner);
		ReleaseSysCache(tuple);
	}
	return result;
}

/*
 * Rows of the partition relid (DROP or DETACH) leave the tracked tree of
 * root: lock as the command will (its parent, then it), record a delete per
 * row, and, for DETACH, leave the table as untrack() leaves one: no guard,
 * the managed columns defaulting to 0.
 */
static void
partition_leaves(Oid relid, Oid root, bool detach)
{
	Oid			parent = get_partition_parent(relid, false);
	List	   *tree;
	ListCell   *lc;

	LockRelationOid(parent, AccessExclusiveLock);
	LockRelationOid(relid, AccessExclusiveLock);
	record_tree_leaving(relid, root);
	if (!detach)
		return;
	tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	foreach(lc, tree)
	{
		char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(lfirst_oid(lc))),
													  get_rel_name(lfirst_oid(lc)));

		if (OidIsValid(get_trigger_oid(lfirst_oid(lc), EC_TRUNCATE_TRIGGER, true)))
			run_sql(psprintf("DROP TRIGGER %s ON %s", EC_TRUNCATE_TRIGGER, name));
	}
	run_sql(psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT 0, ALTER COLUMN %s SET DEFAULT '0'",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)),
					 EC_VERSION_COLUMN, EC_XID_COLUMN));
}

/* A table of a tracked tree (a partition, or the root itself): its root, else InvalidOid. */
static Oid
tree_root(Oid relid)
{
	Oid			root;

	if (!OidIsValid(relid))
		return InvalidOid;
	root = ec_tracked_root_oid(relid);
	if (root == relid && !carries_stamp(relid))
		return InvalidOid;
	return root;
}

/*
 * DROP SCHEMA ... CASCADE: the partitions in the schema of trees tracked
 * through a table in another schema leave them (a root in the schema is
 * dropped with it: its drop is recorded as an untrack). Returns whether it
 * connected to SPI.
 */
static bool
schema_leaves(Oid nspid, bool connected)
{
	Relation	classrel;
	TableScanDesc scan;
	HeapTuple	tuple;
	ScanKeyData key;
	List	   *parts = NIL;
	ListCell   *lc;

	if (!OidIsValid(nspid))
		return false;
	ScanKeyInit(&key, Anum_pg_class_relnamespace, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(nspid));
	classrel = table_open(RelationRelationId, AccessShareLock);
	scan = table_beginscan_catalog(classrel, 1, &key);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_class form = (Form_pg_class) GETSTRUCT(tuple);

		if (form->relispartition &&
			(form->relkind == RELKIND_RELATION || form->relkind == RELKIND_PARTITIONED_TABLE))
			parts = lappend_oid(parts, form->oid);
	}
	table_endscan(scan);
	table_close(classrel, AccessShareLock);

	foreach(lc, parts)
	{
		Oid			relid = lfirst_oid(lc);
		Oid			root = tree_root(relid);
		Oid			parent;

		CHECK_FOR_INTERRUPTS();
		if (!OidIsValid(root) || root == relid || get_rel_namespace(root) == nspid ||
			!caller_owns(relid))
			continue;
		/* a partition whose parent is in the schema too leaves with that one */
		parent = get_partition_parent(relid, true);
		if (OidIsValid(parent) && parent != root && get_rel_namespace(parent) == nspid &&
			list_member_oid(parts, parent))
			continue;
		if (!connected && SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		connected = true;
		partition_leaves(relid, root, false);
	}
	list_free(parts);
	return connected;
}

static EventTriggerData *
check_event_trigger(FunctionCallInfo fcinfo, const char *funcname)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as an event trigger", funcname),
				 errdetail("It keeps the feed of partitioned tables exact across partition changes."),
				 errhint("Do not call it directly.")));
	return (EventTriggerData *) fcinfo->context;
}

/*
 * A table tracked on its own (or holding one) cannot join a tracked tree:
 * PostgreSQL would fail to clone the parent's triggers onto it by name, and
 * the feed would name its rows twice. Said clearly, before the ATTACH.
 */
static void
refuse_tracked_arrival(Oid relid, Oid root)
{
	List	   *tree;
	ListCell   *lc;

	if (!OidIsValid(relid))
		return;
	tree = find_all_inheritors(relid, NoLock, NULL);
	foreach(lc, tree)
	{
		Oid			member = lfirst_oid(lc);

		if (carries_stamp(member))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot attach \"%s\" to \"%s\": \"%s\" is tracked by ec_feed on its own",
							get_rel_name(relid), get_rel_name(root), get_rel_name(member)),
					 errdetail("A partition of \"%s\" is tracked through it; the feed names its rows \"%s\".",
							   get_rel_name(root), get_rel_name(root)),
					 errhint("Untrack it first (ec_feed.untrack()): its consumers get a change with op untrack; once attached, its rows reach the feed of \"%s\" as inserts.",
							 get_rel_name(root))));
	}
	list_free(tree);
}

PG_FUNCTION_INFO_V1(ec_feed_partition_ddl_start);

/*
 * ec_feed._partition_ddl_start(), event trigger at ddl_command_start of DROP
 * TABLE and ALTER TABLE: the rows of a partition dropped or detached from a
 * tracked tree are recorded as deletes first. Commands the caller may not
 * run are left to fail on their own, without locking anything here.
 */
Datum
ec_feed_partition_ddl_start(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = check_event_trigger(fcinfo, "ec_feed._partition_ddl_start()");
	Node	   *parsetree = trigdata->parsetree;
	ListCell   *lc;
	bool		connected = false;

	if (parsetree == NULL)
		PG_RETURN_VOID();
	if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_SCHEMA &&
		((DropStmt *) parsetree)->behavior == DROP_CASCADE)
	{
		foreach(lc, ((DropStmt *) parsetree)->objects)
			connected |= schema_leaves(get_namespace_oid(strVal(lfirst(lc)), true), connected);
	}
	else if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_TABLE)
	{
		foreach(lc, ((DropStmt *) parsetree)->objects)
		{
			RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
			Oid			relid = RangeVarGetRelid(rv, NoLock, true);
			Oid			root;

			if (!OidIsValid(relid) || !get_rel_relispartition(relid) || !caller_owns(relid))
				continue;
			root = tree_root(relid);
			if (!OidIsValid(root) || root == relid)
				continue;
			if (!connected && SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			connected = true;
			partition_leaves(relid, root, false);
		}
	}
	else if (IsA(parsetree, AlterTableStmt) && ((AlterTableStmt *) parsetree)->objtype == OBJECT_TABLE)
	{
		AlterTableStmt *stmt = (AlterTableStmt *) parsetree;

		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst(lc);
			PartitionCmd *pc;
			Oid			parent;
			Oid			relid;
			Oid			root;

			if (!IsA(cmd, AlterTableCmd) ||
				(cmd->subtype != AT_DetachPartition && cmd->subtype != AT_DetachPartitionFinalize &&
				 cmd->subtype != AT_AttachPartition))
				continue;
			pc = (PartitionCmd *) cmd->def;
			parent = RangeVarGetRelid(stmt->relation, NoLock, true);
			root = tree_root(parent);
			if (!OidIsValid(root))
				continue;
			if (cmd->subtype == AT_AttachPartition)
			{
				refuse_tracked_arrival(RangeVarGetRelid(pc->name, NoLock, true), root);
				continue;
			}
			if (pc->concurrent || cmd->subtype == AT_DetachPartitionFinalize)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot detach a partition of \"%s\" concurrently", get_rel_name(root)),
						 errdetail("ec_feed records the rows leaving the tracked table \"%s\" as deletes in the transaction of the DETACH, which CONCURRENTLY splits in two.",
								   get_rel_name(root)),
						 errhint("Use ALTER TABLE ... DETACH PARTITION without CONCURRENTLY.")));
			relid = RangeVarGetRelid(pc->name, NoLock, true);
			if (!OidIsValid(relid) || !get_rel_relispartition(relid) ||
				get_partition_parent(relid, true) != parent || !caller_owns(parent))
				continue;
			if (!connected && SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			connected = true;
			partition_leaves(relid, root, true);
		}
	}
	if (connected)
		SPI_finish();
	PG_RETURN_VOID();
}

/* Has the table enabled row triggers of its own that fire in replica mode? */
static char *
replica_triggers(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	StringInfoData names;

	initStringInfo(&names);
	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];

		if (trigger->tgisinternal || !TRIGGER_FOR_ROW(trigger->tgtype) ||
			!TRIGGER_FOR_UPDATE(trigger->tgtype) ||
			(trigger->tgenabled != TRIGGER_FIRES_ALWAYS && trigger->tgenabled != TRIGGER_FIRES_ON_REPLICA) ||
			is_feed_function(trigger->tgfoid, "stamp") || is_feed_function(trigger->tgfoid, "record"))
			continue;
		appendStringInfo(&names, "%s%s", names.len > 0 ? ", " : "", trigger->tgname);
	}
	return names.len > 0 ? names.data : NULL;
}

/*
 * The rows of a leaf just attached get a fresh version and this transaction
 * as writer, each recorded as an insert: an UPDATE that the cloned row
 * triggers stamp and record, run with session_replication_role = replica so
 * that only triggers that always fire (ec_feed's) run. No value but the
 * managed columns changes.
 */
static void
stamp_attached(Oid leafid)
{
	Relation	rel = table_open(leafid, AccessExclusiveLock);
	char	   *others = replica_triggers(rel);
	char	   *name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
	int			nestlevel;

	if (others != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot attach \"%s\" with rows to a table tracked by ec_feed", RelationGetRelationName(rel)),
				 errdetail("ec_feed gives the attached rows versions of their own through an UPDATE, and triggers that fire on replicas too would run for each: %s.", others),
				 errhint("Attach the table empty and insert its rows through the parent, or disable those triggers for the ATTACH.")));
	table_close(rel, NoLock);

	register_xact_callbacks();
	nestlevel = NewGUCNestLevel();
	/* the trigger's own business: not subject to the caller's privilege */
	(void) set_config_option("session_replication_role", "replica", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	attaching_relid = leafid;
	run_sql(psprintf("UPDATE ONLY %s SET %s = 0", name, EC_VERSION_COLUMN));
	attaching_relid = InvalidOid;
	AtEOXact_GUC(true, nestlevel);
}

/* Every partition under relid gets the TRUNCATE guard; attached rows a version. */
static void
partition_joins(Oid relid, bool attach)
{
	List	   *tree = find_all_inheritors(relid, AccessExclusiveLock, NULL);
	ListCell   *lc;

	foreach(lc, tree)
	{
		Oid			member = lfirst_oid(lc);
		char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(member)),
													  get_rel_name(member));

		if (!OidIsValid(get_trigger_oid(member, EC_TRUNCATE_TRIGGER, true)))
			run_sql(psprintf("CREATE TRIGGER %s BEFORE TRUNCATE ON %s "
							 "FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard()",
							 EC_TRUNCATE_TRIGGER, name));
		if (attach && get_rel_relkind(member) == RELKIND_RELATION)
			stamp_attached(member);
	}
	if (attach)
		/* defaults a table may have brought for its managed columns */
		run_sql(psprintf("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT, ALTER COLUMN %s DROP DEFAULT",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
													get_rel_name(relid)),
						 EC_VERSION_COLUMN, EC_XID_COLUMN));
}

PG_FUNCTION_INFO_V1(ec_feed_partition_ddl_end);

/*
 * ec_feed._partition_ddl_end(), event trigger at ddl_command_end of CREATE
 * TABLE and ALTER TABLE: a partition created in or attached to a tracked
 * tree gets the TRUNCATE guard (the row triggers PostgreSQL clones itself);
 * the rows of an attached table are recorded as inserts.
 */
Datum
ec_feed_partition_ddl_end(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = check_event_trigger(fcinfo, "ec_feed._partition_ddl_end()");
	Node	   *parsetree = trigdata->parsetree;
	ListCell   *lc;
	bool		connected = false;

	if (parsetree == NULL)
		PG_RETURN_VOID();
	if (IsA(parsetree, CreateStmt) && ((CreateStmt *) parsetree)->partbound != NULL)
	{
		Oid			relid = RangeVarGetRelid(((CreateStmt *) parsetree)->relation, NoLock, true);
		Oid			root = tree_root(relid);

		if (OidIsValid(root) && root != relid)
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			connected = true;
			partition_joins(relid, false);
		}
	}
	else if (IsA(parsetree, AlterTableStmt) && ((AlterTableStmt *) parsetree)->objtype == OBJECT_TABLE)
	{
		AlterTableStmt *stmt = (AlterTableStmt *) parsetree;

		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst(lc);
			Oid			relid;
			Oid			root;

			if (!IsA(cmd, AlterTableCmd) || cmd->subtype != AT_AttachPartition)
				continue;
			relid = RangeVarGetRelid(((PartitionCmd *) cmd->def)->name, NoLock, true);
			root = tree_root(relid);
			if (!OidIsValid(root) || root == relid)
				continue;
			if (!connected && SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			connected = true;
			partition_joins(relid, true);
		}
	}
	if (connected)
		SPI_finish();
	PG_RETURN_VOID();
}
