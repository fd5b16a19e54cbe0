/*
 * publisher.c
 *		A background worker that publishes marks for hot standbys (publish.c)
 *		whenever something finished since its last mark, so that a standby's
 *		feed trails the primary by ec_feed.publish_interval plus replay lag.
 *
 * It runs when ec_feed is in shared_preload_libraries, one per database
 * named in ec_feed.publish_databases. Without it, marks are published by
 * writers of tracked rows (at most every publish_interval per session), by
 * reads of the feed on the primary and by ec_feed.publish_mark(): a
 * standby's feed then shows a transaction once a later one of these
 * publishes.
 *
 * Idle costs one snapshot per interval and no write: a mark is published
 * only when versions were drawn since the last one or a transaction the last
 * one saw running has ended. The worker takes its mark before its own
 * transaction gets an xid, so its own publishing never counts as news.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "ec_feed.h"
#include "feed.h"
#include "publish.h"

PGDLLEXPORT void ec_feed_publisher_main(Datum arg);

static char *publish_databases = NULL;

/* Checking more xids than this for news is not worth it: publish. */
#define EC_NEWS_SCAN_MAX	1024

void
ec_register_publishers(void)
{
	char	   *names;
	List	   *dbs;
	ListCell   *lc;

	/* a postmaster setting can be defined only while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomStringVariable("ec_feed.publish_databases",
							   "Databases in which a background worker publishes marks for hot standbys.",
							   "Needs ec_feed in shared_preload_libraries; a comma-separated list.",
							   &publish_databases, "",
							   PGC_POSTMASTER, GUC_LIST_INPUT, NULL, NULL, NULL);
	if (publish_databases == NULL)
		return;
	names = pstrdup(publish_databases);
	if (!SplitIdentifierString(names, ',', &dbs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in ec_feed.publish_databases"),
				 errhint("Give database names separated by commas.")));
	foreach(lc, dbs)
	{
		BackgroundWorker worker;
		const char *db = lfirst(lc);

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 10;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "ec_feed");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "ec_feed_publisher_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "ec_feed publisher for %s", db);
		snprintf(worker.bgw_type, BGW_MAXLEN, "ec_feed publisher");
		strlcpy(worker.bgw_extra, db, BGW_EXTRALEN);
		RegisterBackgroundWorker(&worker);
	}
}

/* Has anything finished, or been drawn, since mark last was taken? */
static bool
news_since(const EcMark *last, const EcMark *now)
{
	uint64		end = Min(last->nxt, now->xmax);

	if (now->hi > last->hi)
		return true;
	for (int i = 0; i < last->nxip; i++)
		if (ec_mark_sees(now, last->xip[i]))
			return true;
	if (end > last->xmax + EC_NEWS_SCAN_MAX)
		return true;
	for (uint64 x = last->xmax; x < end; x++)
		if (ec_mark_sees(now, x))
			return true;
	return false;
}

static void
keep_mark(EcMark *dst, const EcMark *src)
{
	if (dst->xip != NULL)
		pfree(dst->xip);
	*dst = *src;
	dst->xip = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * Max(src->nxip, 1));
	memcpy(dst->xip, src->xip, sizeof(uint64) * src->nxip);
}

void
ec_feed_publisher_main(Datum arg)
{
	char		dbname[BGW_EXTRALEN];
	EcMark		last;
	bool		have_last = false;

	memset(&last, 0, sizeof(last));
	strlcpy(dbname, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("ec_feed publisher");

	for (;;)
	{
		int			interval = ec_publish_interval_ms > 0 ? ec_publish_interval_ms : 100;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		/* installed in this database, at 0.3.0 or later? */
		if (OidIsValid(get_namespace_oid(EC_FEED_SCHEMA, true)) &&
			OidIsValid(get_relname_relid("mark", get_namespace_oid(EC_FEED_SCHEMA, true))))
		{
			EcMark		now;

			ec_take_mark(&now, NULL);
			if (!have_last || news_since(&last, &now))
			{
				pgstat_report_activity(STATE_RUNNING, "publishing a mark");
				if (ec_publish(&now))
				{
					keep_mark(&last, &now);
					have_last = true;
				}
			}
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
}
