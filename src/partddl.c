/*
 * partddl.c
 *		The event triggers that keep the feed of a tracked partitioned table
 *		exact when partitions come and go (the rows are recorded by
 *		partition.c).
 *
 * - DROP TABLE of a partition (or DROP SCHEMA ... CASCADE of its schema),
 *   ALTER TABLE ... DETACH PARTITION: ec_feed._partition_ddl_start(), at
 *   ddl_command_start, reads the statement's parse tree and records one
 *   delete per row before the command runs, under the ACCESS EXCLUSIVE
 *   locks (parent, then partition: the command's own order) that the
 *   command takes anyway. DETACH ... CONCURRENTLY cannot run in a
 *   transaction block with them: it is refused. So is ATTACH of a table
 *   tracked on its own.
 * - CREATE TABLE ... PARTITION OF, ATTACH PARTITION: ec_feed.
 *   _partition_ddl_end(), at ddl_command_end, gives the new partitions the
 *   TRUNCATE guard (a statement trigger, which PostgreSQL does not clone;
 *   ENABLE ALWAYS, as on the parent, so that it fires on a subscriber too),
 *   and every row of an attached table a fresh version through an UPDATE
 *   that the row triggers (cloned to it by the ATTACH) stamp and record, as
 *   an insert. A table whose own triggers would fire for that UPDATE is
 *   refused.
 *
 * The statements they run name every object with its schema: they run
 * under the caller's search_path.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
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
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "ec_feed.h"
#include "partition.h"
#include "token.h"

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
	ec_record_tree_leaving(relid, root);
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
		Oid			root = ec_tree_root(relid);
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

		if (ec_carries_stamp(member))
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
			root = ec_tree_root(relid);
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
			root = ec_tree_root(parent);
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
			ec_is_feed_function(trigger->tgfoid, "stamp") || ec_is_feed_function(trigger->tgfoid, "record"))
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

	nestlevel = NewGUCNestLevel();
	/* the trigger's own business: not subject to the caller's privilege */
	(void) set_config_option("session_replication_role", "replica", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ec_set_attaching(leafid);
	run_sql(psprintf("UPDATE ONLY %s SET %s = 0", name, EC_VERSION_COLUMN));
	ec_set_attaching(InvalidOid);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * The guard just created on relid fires in every session_replication_role,
 * as track() sets it up (see track.c): a TRUNCATE replicated to this
 * partition is recorded. Set in the catalog here, as ALTER TABLE ... ENABLE
 * ALWAYS TRIGGER does, but without that command: its event trigger
 * (ec_feed._schema_changed) would move the tracked table's history_since,
 * though no change goes unrecorded.
 */
static void
guard_fires_always(Oid relid)
{
	Relation	tgrel = table_open(TriggerRelationId, RowExclusiveLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;

	/* the CREATE TRIGGER that SPI just ran */
	CommandCounterIncrement();
	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(EC_TRUNCATE_TRIGGER));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 2, keys);
	tuple = systable_getnext(scan);
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "trigger %s of relation %u not found", EC_TRUNCATE_TRIGGER, relid);
	if (((Form_pg_trigger) GETSTRUCT(tuple))->tgenabled != TRIGGER_FIRES_ALWAYS)
	{
		HeapTuple	copy = heap_copytuple(tuple);
		Form_pg_trigger form = (Form_pg_trigger) GETSTRUCT(copy);

		form->tgenabled = TRIGGER_FIRES_ALWAYS;
		CatalogTupleUpdate(tgrel, &copy->t_self, copy);
		InvokeObjectPostAlterHook(TriggerRelationId, form->oid, 0);
		/* the relcache entry's trigger list carries tgenabled */
		CacheInvalidateRelcacheByRelid(relid);
		heap_freetuple(copy);
	}
	systable_endscan(scan);
	table_close(tgrel, RowExclusiveLock);
	CommandCounterIncrement();
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
		{
			run_sql(psprintf("CREATE TRIGGER %s BEFORE TRUNCATE ON %s "
							 "FOR EACH STATEMENT EXECUTE FUNCTION ec_feed.truncate_guard()",
							 EC_TRUNCATE_TRIGGER, name));
			guard_fires_always(member);
		}
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
		Oid			root = ec_tree_root(relid);

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
			root = ec_tree_root(relid);
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
