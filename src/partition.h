/*
 * partition.h
 *		Partitioned tables tracked through their parent (partition.c), for
 *		the row triggers, the readers and the event triggers (partddl.c).
 */
#ifndef EC_PARTITION_H
#define EC_PARTITION_H

#include "utils/relcache.h"

extern Oid	ec_tracked_root(Relation rel);
extern Oid	ec_tracked_root_oid(Oid relid);
extern void ec_refuse_partition(Relation rel);
extern bool ec_attaching(Relation rel);
extern void ec_truncate_covers(Oid root);
extern void ec_truncate_partition(Relation rel, Oid root);

/* for the event triggers (partddl.c) */
extern bool ec_carries_stamp(Oid relid);
extern Oid	ec_tree_root(Oid relid);
extern void ec_record_tree_leaving(Oid relid, Oid root);
extern void ec_set_attaching(Oid relid);

#endif							/* EC_PARTITION_H */
