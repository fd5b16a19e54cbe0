/*
 * settings.c
 *		The operations settings (GUCs) of ec_feed: retention of the history,
 *		its segments, and when an open writer is reported.
 *
 * They are PGC_SUSET: one session must not shorten the retention every
 * consumer relies on. A superuser sets them per database or server, or
 * grants SET on them (GRANT SET ON PARAMETER).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "ec_feed.h"

int			ec_retention_min_s = 3600;
int			ec_retention_max_s = 7 * 24 * 3600;
int			ec_segment_rows = 1000000;
int			ec_segment_period_s = 600;
int			ec_pending_warn_s = 60;
int			ec_publish_interval_ms = 100;

void
ec_define_settings(void)
{
	DefineCustomIntVariable("ec_feed.retention_min",
							"History kept at least this long for readers that did not register.",
							"A segment of the history is removed only this long after its last writer ended.",
							&ec_retention_min_s, 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ec_feed.retention_max",
							"A consumer whose acknowledged position is older than this is dropped.",
							"-1 keeps every registered consumer's history however old.",
							&ec_retention_max_s, 7 * 24 * 3600, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ec_feed.segment_rows",
							"The history starts a new segment after about this many versions.",
							NULL,
							&ec_segment_rows, 1000000, 1, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ec_feed.segment_period",
							"The history starts a new segment when the current one is this old and not empty.",
							NULL,
							&ec_segment_period_s, 600, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ec_feed.publish_interval",
							"A writer of tracked rows publishes a mark for hot standbys at most this often.",
							"0 leaves publishing to reads on the primary, ec_feed.publish_mark() and the background worker.",
							&ec_publish_interval_ms, 100, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ec_feed.pending_warn",
							"ec_feed.status() lists writers of tracked tables open longer than this.",
							NULL,
							&ec_pending_warn_s, 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}

static Datum
seconds_interval(int seconds)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = (int64) seconds * USECS_PER_SEC;
	return IntervalPGetDatum(result);
}

PG_FUNCTION_INFO_V1(ec_feed_settings);

/*
 * ec_feed._settings(): the settings, typed, for the SQL functions of
 * operations (calling it also loads the library, which defines them).
 */
Datum
ec_feed_settings(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = seconds_interval(ec_retention_min_s);
	values[1] = seconds_interval(ec_retention_max_s);
	nulls[1] = ec_retention_max_s < 0;
	values[2] = Int64GetDatum(ec_segment_rows);
	values[3] = seconds_interval(ec_segment_period_s);
	values[4] = seconds_interval(ec_pending_warn_s);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
