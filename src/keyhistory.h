/*
 * keyhistory.h
 *		The history of one key after a token's version (keyhistory.c), for
 *		the conditional writes.
 */
#ifndef EC_KEYHISTORY_H
#define EC_KEYHISTORY_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

extern List *ec_changed_since(Relation rel, bool history_on, Jsonb *key,
							  int64 token_version, int64 current_version, bool *known);
extern bool ec_deleted_since(Relation rel, bool history_on, Jsonb *key, int64 token_version);
extern int64 ec_key_newest_version(Relation rel, Jsonb *key, int64 version);

#endif							/* EC_KEYHISTORY_H */
