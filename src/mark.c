/*
 * mark.c
 *		Marks: what a feed consumer has seen (EcMark in ec_feed.h), taken for
 *		ec_feed.read() and ec_feed.cursor_now(), and made durable before a
 *		cursor holding one leaves the server.
 *
 * Readings of a mark, in this order: lo = last version, snapshot, nxt = next
 * xid, hi = last version. The row trigger assigns the xid before it draws a
 * version, hence:
 *	- a transaction with xid >= nxt drew all its versions after lo was read;
 *	- a transaction visible in the snapshot drew all its versions before hi;
 *	- a transaction not visible with xid < nxt was open at the mark: it is in
 *	  the snapshot's xip or in [xmax, nxt) (xmax is latestCompletedXid + 1,
 *	  not the next xid: running transactions can sit at or above it).
 * feedscan.c reads the delta between two marks on these facts.
 */
#include "postgres.h"

#include "access/clog.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "storage/bufmgr.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "ec_feed.h"
#include "feed.h"

int
ec_compare_xid(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/*
 * The end of the WAL inserted so far, as a flush request. At the start of a
 * page GetXLogInsertRecPtr() points past the page header, where no record
 * ends and which XLogFlush() cannot reach until more is inserted.
 */
static XLogRecPtr
wal_inserted_upto(void)
{
	XLogRecPtr	upto = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(upto, wal_segment_size) == SizeOfXLogLongPHD)
		upto -= SizeOfXLogLongPHD;
	else if (upto % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		upto -= SizeOfXLogShortPHD;
	return upto;
}

/*
 * Make durable what a mark names before a cursor holding it leaves the
 * server, so that a crash cannot take it back:
 *	- the sequence's logged advance past lo and hi: else the sequence hands
 *	  out those versions again after a crash, and the cursor treats the new
 *	  changes as read. The record that logged it last touched the page.
 *	- that no xid the snapshot saw finish is assigned again after a crash:
 *	  else the cursor treats a new transaction with a reused xid as visible
 *	  before it. Recovery advances the next xid past every xid it replays, so
 *	  it is enough that the end record of the latest completed transaction
 *	  (xmax - 1) is durable: a synchronous commit flushed it before it
 *	  became visible, an asynchronous one left its LSN in the commit log, and
 *	  for an abort, whose LSN is not kept, everything inserted is flushed.
 * Under a write load this mostly finds everything flushed already, so a
 * polling consumer rarely waits for a flush of other transactions' WAL.
 */
static void
make_durable(TransactionId xmax)
{
	TransactionId latest = xmax;
	XLogRecPtr	need;
	XLogRecPtr	commit_lsn = InvalidXLogRecPtr;
	Relation	seq = relation_open(ec_feed_relid(EC_VERSION_SEQ), AccessShareLock);
	Buffer		buf = ReadBuffer(seq, 0);

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	need = PageGetLSN(BufferGetPage(buf));
	UnlockReleaseBuffer(buf);
	relation_close(seq, AccessShareLock);

	TransactionIdRetreat(latest);
	if (TransactionIdIsNormal(latest))
	{
		if (TransactionIdGetStatus(latest, &commit_lsn) != TRANSACTION_STATUS_COMMITTED)
			need = wal_inserted_upto();
		else if (commit_lsn > need)
			need = commit_lsn;
	}
	if (need > GetFlushRecPtr(NULL))
		XLogFlush(need);
}

/*
 * Take a mark. With snap NULL, a fresh snapshot; otherwise the given one
 * (cursor_now() passes the statement's), which was taken before lo is read.
 */
void
ec_take_mark(EcMark *mark, Snapshot snap)
{
	FullTransactionId next;
	FullTransactionId own = GetTopFullTransactionIdIfAny();
	int			n = 0;

	/*
	 * A snapshot taken during recovery lists the running xids in subxip, not
	 * xip (and may have overflowed): read from xip alone it would count every
	 * running transaction as seen. cursor_now() in a REPEATABLE READ
	 * transaction begun before a promotion still has one.
	 */
	if (snap != NULL && snap->takenDuringRecovery)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot take a cursor at a snapshot taken during recovery"),
				 errdetail("The transaction's snapshot was taken before this server was promoted."),
				 errhint("Call ec_feed.cursor_now() in a new transaction.")));

	mark->lo = ec_feed_last_version();
	if (snap == NULL)
		snap = GetLatestSnapshot();
	next = ReadNextFullTransactionId();
	mark->hi = ec_feed_last_version();

	mark->nxt = U64FromFullTransactionId(next);
	mark->xmin = U64FromFullTransactionId(ec_widen_xid(snap->xmin, next));
	mark->xmax = U64FromFullTransactionId(ec_widen_xid(snap->xmax, next));
	mark->xip = palloc(sizeof(uint64) * (snap->xcnt + 1));
	for (uint32 i = 0; i < snap->xcnt; i++)
		mark->xip[n++] = U64FromFullTransactionId(ec_widen_xid(snap->xip[i], next));

	/*
	 * The caller's own transaction is not in its snapshot's xip, but its
	 * changes are not committed: treat it as open, so they are delivered
	 * after it commits.
	 */
	if (FullTransactionIdIsValid(own) && U64FromFullTransactionId(own) < mark->xmax)
	{
		mark->xip[n++] = U64FromFullTransactionId(own);
		if (U64FromFullTransactionId(own) < mark->xmin)
			mark->xmin = U64FromFullTransactionId(own);
	}
	qsort(mark->xip, n, sizeof(uint64), ec_compare_xid);

	/*
	 * A transaction being prepared is listed twice in the proc array for a
	 * moment (twophase.c): keep each xid once.
	 */
	mark->nxip = 0;
	for (int i = 0; i < n; i++)
	{
		if (mark->nxip == 0 || mark->xip[mark->nxip - 1] != mark->xip[i])
			mark->xip[mark->nxip++] = mark->xip[i];
	}

	make_durable(snap->xmax);
}
