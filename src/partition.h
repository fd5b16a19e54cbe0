/*
 * partition.h
 *		Partitioned tables tracked through their parent (partition.c).
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

#endif							/* EC_PARTITION_H */
