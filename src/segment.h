/*
 * segment.h
 *		The history in segments (segment.c).
 */
#ifndef EC_FEED_SEGMENT_H
#define EC_FEED_SEGMENT_H

#include "access/genam.h"
#include "access/transam.h"
#include "executor/tuptable.h"
#include "nodes/nodes.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "ec_feed.h"

/* One table of the history. */
typedef struct EcSegment
{
	int64		id;
	Oid			relid;			/* InvalidOid: dropped */
	Oid			seq_index;		/* (seq) */
	Oid			xid_index;		/* (xid, seq) */
	Oid			key_index;		/* (relid, key hash, seq), or (relid, key, seq) */
	Oid			rel_index;		/* (relid, seq); InvalidOid before 0.2.0 */
	bool		frozen;			/* no writer left: the fields below are final */
	uint64		max_xid;		/* the newest writer's xid */
	int64		min_version;
	int64		max_version;
} EcSegment;

typedef struct EcSegmentList
{
	int			n;
	EcSegment  *segs;			/* oldest first */
	int64		current;		/* the current segment's id when read */
} EcSegmentList;

extern const EcSegmentList *ec_segments(void);
extern Oid	ec_segment_for_write(FullTransactionId xid);
extern void ec_pruned(uint64 *horizon, int64 *max_version);
extern void ec_oldest_cursor(EcCursor *cursor, uint64 horizon);
extern void ec_check_retained(const EcCursor *cursor, uint64 horizon);
extern bool ec_maintenance_due(void);
extern void ec_auto_prune(void);
extern bool ec_key_index_hashed(Relation index);
extern bool ec_is_key_hash_expr(Node *expr);

/* The entries of one key in a segment, through its key index (segment.c). */
typedef struct EcKeyScan
{
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Jsonb	   *key;
	bool		hashed;			/* the index holds the key's hash: compare keys */
} EcKeyScan;

extern void ec_key_scan_begin(EcKeyScan *ks, Relation history, const EcSegment *seg,
							  Snapshot snapshot, Oid relid, Jsonb *key, uint64 key_hash,
							  int64 version, bool after);
extern TupleTableSlot *ec_key_scan_next(EcKeyScan *ks);
extern void ec_key_scan_end(EcKeyScan *ks);

#endif							/* EC_FEED_SEGMENT_H */
