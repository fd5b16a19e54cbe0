/*
 * feed.h
 *		Declarations shared by the files of the change feed: feed.c (the SQL
 *		entry points), feedscan.c (the delta scan) and mark.c (marks).
 */
#ifndef EC_FEED_FEED_H
#define EC_FEED_FEED_H

#include "access/genam.h"
#include "executor/tuptable.h"
#include "utils/hsearch.h"
#include "utils/snapshot.h"
#include "utils/tuplestore.h"

#include "ec_feed.h"

#define FEED_COLUMNS	8

/*
 * The merge keeps at most this many index scans of (a) streams open; the
 * others are parked at their next row and repositioned when they become the
 * smallest again. So a read's memory does not grow with the number of
 * transactions a cursor names as open (a forged cursor can name millions).
 */
#define FEED_OPEN_SCANS	16

struct FeedStream;

/* One segment of the history (segment.c), opened for the read. */
typedef struct FeedSegment
{
	Relation	heap;
	Relation	seq_index;
	Relation	xid_index;
	Relation	rel_index;		/* (relid, seq); NULL before the 0.2.0 upgrade */
	bool		frozen;			/* no writer left: max_xid is final */
	uint64		max_xid;
} FeedSegment;

/* An index scan with its slot, lent to one stream at a time. */
typedef struct OpenScan
{
	IndexScanDesc scan;			/* NULL until first lent */
	int			seg;			/* the segment it scans */
	TupleTableSlot *slot;
	struct FeedStream *owner;	/* NULL when free */
	uint64		used;			/* when its owner last returned a row */
} OpenScan;

/* One ordered source of rows for the merge: (a) one open xid, or (b) the range. */
typedef struct FeedStream
{
	bool		is_range;
	int			seg;			/* its segment */
	uint64		xid;			/* (a): the transaction */
	int64		seq;			/* seq of the stream's next row */
	OpenScan   *open;			/* its scan, positioned on that row; NULL while parked */
} FeedStream;

/* The state of one ec_feed.read() call. */
typedef struct FeedScan
{
	FeedSegment *segs;			/* every segment, opened after the newest mark */
	int			nsegs;
	int			segs_size;		/* allocated entries of segs and seg_ids */
	int64	   *seg_ids;
	Snapshot	snapshot;		/* taken after cur */
	EcCursor   *cursor;
	EcCursorRows row_cursors;	/* of the delta being read */
	HTAB	   *allowed;		/* relid -> may the caller read it? */
	Oid			last_relid;		/* the table rel_allowed() was last asked about */
	bool		last_allowed;	/* and its answer, before the untrack exception */
	bool		last_named;		/* rels NULL, or that table is in rels */
	Datum		op_texts[5];	/* the op column: insert, update, delete, truncate, untrack */
	bool		rels_given;
	Tuplestorestate *store;
	TupleDesc	desc;
	MemoryContext row_context;
	/* index scans of the delta being read */
	OpenScan	pool[FEED_OPEN_SCANS];	/* lent to (a) streams */
	OpenScan	probe;			/* finds the first row of an (a) stream */
	OpenScan	seek;			/* finds the xids in [prev.xmax, prev.nxt) with rows */
	int			nrels;
	Oid		   *range_rels;		/* with rels: the tables, each a (b) stream per segment */
	uint64		clock;
} FeedScan;

typedef struct AllowedRel
{
	Oid			relid;
	bool		allowed;
} AllowedRel;

/* mark.c */
extern int	ec_compare_xid(const void *a, const void *b);
extern void ec_take_mark(EcMark *mark, Snapshot snap);

/* Was a committed top-level transaction visible at the mark? */
static inline bool
ec_mark_sees(const EcMark *mark, uint64 xid)
{
	if (xid >= mark->xmax)
		return false;
	if (xid < mark->xmin)
		return true;
	return bsearch(&xid, mark->xip, mark->nxip, sizeof(uint64), ec_compare_xid) == NULL;
}

/* feedscan.c */
extern bool ec_caller_may_use_schema(Oid relid);
extern bool ec_caller_may_read(Oid relid);
extern void ec_feed_open_segments(FeedScan *fs);
extern void ec_feed_close_segments(FeedScan *fs);
extern int64 ec_scan_delta(FeedScan *fs, int64 limit, bool *drained);

#endif							/* EC_FEED_FEED_H */
