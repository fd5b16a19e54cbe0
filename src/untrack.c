/*
 * untrack.c
 *		The feed's record that a table left it: ec_feed.untrack() and
 *		DROP TABLE of a tracked table, op EC_OP_UNTRACK.
 *
 * A consumer that copies a table learns from this entry that its copy is
 * void: the table was untracked (its later changes are not recorded) or
 * dropped. Like a TRUNCATE (track.c, record_truncate) it is one table-level
 * entry, key and data JSON null, no changed and no prev; the conditional
 * writes count it as a break of every key's chain (keyhistory.c).
 *
 * Its place in the feed is its version, drawn while the table is locked
 * against every writer: untrack() takes ACCESS EXCLUSIVE here, the lock its
 * DROP TRIGGERs take next (a weaker one first would have to be upgraded: a
 * reader of the table that then writes it would deadlock with the untrack),
 * DROP TABLE holds ACCESS EXCLUSIVE when its sql_drop event trigger runs. Every transaction that wrote the
 * table has ended before the version is drawn, so the entry follows every
 * change of the table in commit order, as a delete drawn under the row lock.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "ec_feed.h"
#include "publish.h"
#include "token.h"

/*
 * Record the entry. As for every change: the restore fence first, then the
 * xid, then the version (a mark's readings rely on a version being drawn
 * after its transaction got its xid).
 */
static void
record_untrack(Oid relid)
{
	EcChange	change;
	Jsonb	   *null_json;

	ec_feed_fence_adopt();
	null_json = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")));
	change.xid = GetTopFullTransactionId();
	change.seq = ec_feed_next_version();
	change.relid = relid;
	change.op = EC_OP_UNTRACK;
	change.key = null_json;
	change.data = null_json;
	change.changed = NULL;
	change.has_prev_version = false;
	change.prev_version = 0;
	ec_history_append(&change);
	ec_publish_if_due();
}

PG_FUNCTION_INFO_V1(ec_feed_record_untrack);

/*
 * ec_feed._record_untrack(rel regclass): records that rel leaves the feed.
 *
 * For a table that exists (untrack(), untrack_all()): as its owner, who may
 * untrack it anyway; recorded only while the table records history (a table
 * tracked without history has no consumer). For a dropped table (the sql_drop
 * event trigger, ec_feed._tables_dropped()): only as the extension's owner,
 * as whom that SECURITY DEFINER function runs; the caller has checked that
 * the table was registered with history.
 */
Datum
ec_feed_record_untrack(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	bool		history = false;

	rel = try_relation_open(relid, AccessExclusiveLock);
	if (rel == NULL)
	{
		if (!has_privs_of_role(GetUserId(), ec_extension_owner()))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to record the drop of relation %u", relid),
					 errdetail("The drop of a tracked table is recorded by ec_feed's event trigger."),
					 errhint("Do not call ec_feed._record_untrack() directly.")));
		record_untrack(relid);
		PG_RETURN_VOID();
	}
	if (!has_privs_of_role(GetUserId(), rel->rd_rel->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", RelationGetRelationName(rel)),
				 errdetail("Only the table's owner may untrack it."),
				 errhint("Ask the owner of the table to call ec_feed.untrack().")));
	if (ec_rel_tracked(rel, &history) && history)
		record_untrack(relid);
	/* the lock stays: writers wait until the untrack commits */
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}
