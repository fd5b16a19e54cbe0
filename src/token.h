/*
 * token.h
 *		Declarations shared by token.c and conditional.c (row-version tokens
 *		and conditional writes, contract section 3).
 */
#ifndef EC_TOKEN_H
#define EC_TOKEN_H

#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#include "ec_feed.h"

/* token.c */
extern bool ec_rel_tracked(Relation rel, bool *history);
extern bool ec_is_feed_function(Oid funcoid, const char *name);
extern void ec_require_tracked(Relation rel, bool *history);
extern Relation ec_open_tracked(Oid relid, LOCKMODE lockmode, bool *history);
extern char *ec_row_token_text(Relation rel, const EcRowShape *shape,
							   HeapTuple tuple, Jsonb *key);

/* conditional.c: the current token of the row with this key, NULL if none */
extern char *ec_current_token(Relation rel, Jsonb *key);
/* conditional.c: the row with this key as the caller reads it, for get() */
extern HeapTuple ec_read_row(Relation rel, Jsonb *key, Snapshot snap, Jsonb **keyjson);

#endif							/* EC_TOKEN_H */
