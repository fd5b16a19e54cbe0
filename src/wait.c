/*
 * wait.c
 *		Waiting inside a function call without holding back vacuum or
 *		replay: when a call may withdraw its backend's xmin, and the wait
 *		itself (require_visible, read's wait_ms, the consumer checks).
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ec_feed.h"
#include "visibility.h"

/* the wait polls in steps growing from 1 ms to this (or the caller's) */
#define EC_WAIT_STEP_MAX_MS		10

static bool
not_immutable(Oid funcid, void *context)
{
	return func_volatile(funcid) != PROVOLATILE_IMMUTABLE;
}

/*
 * Could evaluating this output column read a table with the statement's
 * snapshot? Not if it is built of columns, constants, parameters and
 * immutable functions and operators (rel->>'id', key->>'id', op = 'delete',
 * CASE, COALESCE, ...), and of I/O conversions between built-in types
 * (rel::text, version::text): their functions read at most the catalogs,
 * through the catalog snapshot. Anything else (a subquery, a stable or
 * volatile function, an aggregate) might, so it counts as reading.
 */
static bool
may_read_with_snapshot(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
		case T_Const:
		case T_List:
		case T_RelabelType:
		case T_BoolExpr:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CoalesceExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_ArrayExpr:
		case T_RowExpr:
		case T_FieldSelect:
			break;
		case T_Param:
			if (((Param *) node)->paramkind != PARAM_EXTERN)
				return true;
			break;
		case T_CoerceViaIO:
			{
				Oid			from = exprType((Node *) ((CoerceViaIO *) node)->arg);
				Oid			to = exprType(node);

				/* a record's I/O runs its fields' types' functions, of any type */
				if (from >= FirstGenbkiObjectId || to >= FirstGenbkiObjectId ||
					type_is_rowtype(from) || type_is_rowtype(to))
					return true;
				break;
			}
		case T_FuncExpr:
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
		case T_ScalarArrayOpExpr:
			if (check_functions_in_node(node, not_immutable, NULL))
				return true;
			break;
		default:
			return true;
	}
	return expression_tree_walker(node, may_read_with_snapshot, context);
}

/*
 * May this call sleep with its backend's xmin withdrawn?
 *
 * Withdrawing it lets vacuum (or replay on a standby) remove row versions
 * that snapshots taken before the wait still need. That is harmless only if
 * none of those snapshots is used to read after the wait, so this allows it
 * only when
 *   - the isolation level is READ COMMITTED: a REPEATABLE READ or
 *     SERIALIZABLE transaction keeps reading with its first snapshot (and
 *     could not see a write that becomes visible during the wait anyway);
 *   - the call is evaluated directly by the top-level statement, and that
 *     statement reads nothing afterwards: a SELECT without FROM (or FROM
 *     this function alone) whose other output columns read no table (see
 *     may_read_with_snapshot), with no data-modifying WITH;
 *   - apart from that statement's own snapshot no snapshot is registered
 *     (an open cursor, an exported snapshot).
 * Arguments are evaluated before the call, so they may be anything.
 * In PL/pgSQL, inside a larger query, or in REPEATABLE READ the function
 * checks once and does not wait.
 */
bool
ec_can_wait_without_snapshot(FunctionCallInfo fcinfo)
{
	Node	   *self = fcinfo->flinfo ? fcinfo->flinfo->fn_expr : NULL;
	Portal		portal = ActivePortal;
	PlannedStmt *stmt;
	Plan	   *plan;
	bool		found = false;
	ListCell   *lc;

	if (IsolationUsesXactSnapshot() || self == NULL || portal == NULL ||
		portal->status != PORTAL_ACTIVE || portal->strategy != PORTAL_ONE_SELECT ||
		list_length(portal->stmts) != 1)
		return false;
	stmt = linitial_node(PlannedStmt, portal->stmts);
	if (stmt->commandType != CMD_SELECT || stmt->hasModifyingCTE)
		return false;
	plan = stmt->planTree;
	if (plan == NULL || outerPlan(plan) != NULL || innerPlan(plan) != NULL ||
		plan->qual != NIL)
		return false;

	if (IsA(plan, Result))
	{
		if (((Result *) plan)->resconstantqual != NULL)
			return false;
		foreach(lc, plan->targetlist)
		{
			Node	   *expr = (Node *) lfirst_node(TargetEntry, lc)->expr;

			if (expr == self)
				found = true;
			else if (may_read_with_snapshot(expr, NULL))
				return false;
		}
	}
	else if (IsA(plan, FunctionScan))
	{
		List	   *functions = ((FunctionScan *) plan)->functions;

		if (list_length(functions) != 1 ||
			linitial_node(RangeTblFunction, functions)->funcexpr != self)
			return false;
		found = true;
		foreach(lc, plan->targetlist)
			if (may_read_with_snapshot((Node *) lfirst_node(TargetEntry, lc)->expr, NULL))
				return false;
	}
	if (!found)
		return false;

	/* the catalog snapshot is rebuilt on demand; only the statement's may remain */
	InvalidateCatalogSnapshot();
	return ThereAreNoPriorRegisteredSnapshots();
}

/*
 * Wait up to wait_ms until check(arg) is true, in short steps on the process
 * latch; check takes a fresh snapshot (or none) each time. Between the
 * checks the backend publishes no xmin: callers first make sure that is
 * sound (ec_can_wait_without_snapshot). Returns whether check came true;
 * *waited_ms tells how long it waited.
 */
bool
ec_wait_until(EcWaitCheck check, void *arg, int wait_ms, int max_step_ms, long *waited_ms)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, wait_ms);
	long		step = 1;
	bool		done = false;

	for (;;)
	{
		long		remaining;
		int			rc;

		/*
		 * Withdraw the xmin this backend publishes: vacuum and, on a
		 * standby, replay of cleanup records need not wait for us. The next
		 * check's snapshot publishes a fresh one for a moment (in
		 * GetSnapshotData, under ProcArrayLock); being fresh, it is newer
		 * than what vacuum may remove or replay may clean up at that time.
		 */
		MyProc->xmin = InvalidTransactionId;

		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(step, remaining), PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		step = Min(step * 2, max_step_ms > 0 ? max_step_ms : EC_WAIT_STEP_MAX_MS);

		if (check(arg))
		{
			done = true;
			break;
		}
	}
	*waited_ms = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
	return done;
}
