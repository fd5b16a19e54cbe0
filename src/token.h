/*
 * token.h
 *		Tracked tables and the tokens of their rows (token.c), for the files
 *		that read or write rows of tracked tables (contract section 3).
 */
#ifndef EC_TOKEN_H
#define EC_TOKEN_H

#include "storage/lockdefs.h"
#include "utils/relcache.h"

#include "ec_feed.h"

/* token.c */
extern bool ec_rel_tracked(Relation rel, bool *history);
extern bool ec_is_feed_function(Oid funcoid, const char *name);
extern void ec_require_tracked(Relation rel, bool *history);
extern Relation ec_open_tracked(Oid relid, LOCKMODE lockmode, bool *history);
extern char *ec_row_token_text(Relation rel, const EcRowShape *shape,
							   HeapTuple tuple, Jsonb *key);

#endif							/* EC_TOKEN_H */
