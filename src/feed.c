#include "postgres.h"
#include "fmgr.h"
PG_FUNCTION_INFO_V1(ec_feed_read);
Datum ec_feed_read(PG_FUNCTION_ARGS) { elog(ERROR, "not yet"); }
PG_FUNCTION_INFO_V1(ec_feed_cursor_now);
Datum ec_feed_cursor_now(PG_FUNCTION_ARGS) { elog(ERROR, "not yet"); }
