/*
 * ec_feed.h
 *		Declarations shared by the files of ec_feed.
 */
#ifndef EC_FEED_H
#define EC_FEED_H

#include "access/transam.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/relcache.h"

#include "compat.h"

#define EC_FEED_SCHEMA			"ec_feed"
#define EC_VERSION_COLUMN		"ec_version"
#define EC_XID_COLUMN			"ec_xid"

/* extension-owned objects, all in schema ec_feed */
#define EC_HISTORY_REL			"history"
#define EC_HISTORY_PKEY			"history_pkey"			/* (seq) */
#define EC_HISTORY_XID_IDX		"history_xid_seq_idx"	/* (xid, seq) */
#define EC_HISTORY_KEY_IDX		"history_rel_key_idx"	/* (relid, key, seq) */
#define EC_HISTORY_REL_SEQ_IDX	"history_rel_seq_idx"	/* (relid, seq), 0.2.0 */
#define EC_VERSION_SEQ			"change_seq"
#define EC_FENCE_SEQ			"restore_fence"	/* 0.3.0, not dumped */
#define EC_TRACKED_REL			"tracked_rel"
#define EC_TRACKED_REL_PKEY		"tracked_rel_pkey"		/* (relid) */

/* the triggers ec_feed.track() puts on a table */
#define EC_STAMP_TRIGGER		"zz_ec_feed_stamp"		/* BEFORE row: ec_feed.stamp() */
#define EC_RECORD_TRIGGER		"zz_ec_feed_record"		/* AFTER row: ec_feed.record() */
#define EC_TRUNCATE_TRIGGER		"zz_ec_feed_truncate_guard"	/* BEFORE TRUNCATE: ec_feed.truncate_guard() */

/* columns of ec_feed.tracked_rel */
#define Anum_tracked_rel_relid			1
#define Anum_tracked_rel_history_since	5	/* added in 0.2.0 */

/* columns of ec_feed.history */
#define Natts_history			8
#define Anum_history_seq		1	/* bigint: the change's version */
#define Anum_history_xid		2	/* xid8: top-level writer */
#define Anum_history_relid		3	/* oid */
#define Anum_history_op			4	/* "char": EC_OP_* */
#define Anum_history_key		5	/* jsonb; 'null' for a table-level entry */
#define Anum_history_data		6	/* jsonb; 'null' for a table-level entry */
#define Anum_history_changed	7	/* text[], updates only */
#define Anum_history_prev_version	8	/* bigint (0.2.0): the version an update
											 * or delete replaced; NULL for inserts */

#define EC_OP_INSERT			'i'
#define EC_OP_UPDATE			'u'
#define EC_OP_DELETE			'd'
#define EC_OP_TRUNCATE			't'	/* table-level: key and data 'null' */
#define EC_OP_UNTRACK			'x'	/* table-level: untracked or dropped (untrack.c) */

/* SQLSTATEs of the contract, section 6 */
#define ERRCODE_EC_CURSOR_TOO_OLD		MAKE_SQLSTATE('E','C','0','0','1')
#define ERRCODE_EC_FOREIGN_CURSOR		MAKE_SQLSTATE('E','C','0','0','2')
#define ERRCODE_EC_NOT_CONSISTENT		MAKE_SQLSTATE('E','C','0','0','3')
#define ERRCODE_EC_TOKEN_MISMATCH		MAKE_SQLSTATE('E','C','0','0','4')

/* envelope kinds: the first byte of every encoded cursor or token */
#define EC_KIND_CURSOR			'C'
#define EC_KIND_TOKEN			'T'

/* catalog.c: the extension's own objects and the version sequence */
extern Oid	ec_feed_namespace(void);
extern Oid	ec_feed_relid(const char *relname);
extern int64 ec_feed_last_version(void);
extern int64 ec_feed_next_version(void);
extern bool ec_history_since(Oid relid, int64 *since);
extern void ec_insert_tuple(Relation rel, HeapTuple tuple);
extern bool ec_feed_fence(int64 *fence);
extern void ec_feed_fence_adopt(void);

/* settings.c: the operations settings (GUCs), in seconds or rows */
extern int	ec_retention_min_s;
extern int	ec_retention_max_s;	/* -1: off */
extern int	ec_segment_rows;
extern int	ec_segment_period_s;
extern int	ec_pending_warn_s;
extern int	ec_publish_interval_ms;	/* 0: writers do not publish marks */
extern void ec_define_settings(void);

/* rowjson.c: row images as jsonb */
typedef struct EcRowShape
{
	AttrNumber	version_attnum;		/* ec_version, or InvalidAttrNumber */
	AttrNumber	xid_attnum;			/* ec_xid, or InvalidAttrNumber */
	int			nkeys;
	AttrNumber	key_attnums[INDEX_MAX_KEYS];
} EcRowShape;

extern void ec_managed_attnums(TupleDesc desc, AttrNumber *version_attnum, AttrNumber *xid_attnum);
extern void ec_row_shape(Relation rel, EcRowShape *shape, bool require_managed);
extern Jsonb *ec_row_data(Relation rel, const EcRowShape *shape, HeapTuple tuple);
extern Jsonb *ec_row_key(Relation rel, const EcRowShape *shape, HeapTuple tuple);
extern bool ec_is_managed_column(const char *attname);
extern int64 ec_row_version(TupleDesc desc, const EcRowShape *shape, HeapTuple tuple);
extern bool ec_attr_differs(TupleDesc desc, AttrNumber attnum, HeapTuple a, HeapTuple b);

/*
 * The hash of a key: tokens carry it, and the history's key index holds it
 * (jsonb_hash_extended(key, EC_KEY_HASH_SEED); every segment since 0.3.0,
 * and segment 0 of a new install since 0.4.0).
 */
#define EC_KEY_HASH_SEED	INT64CONST(0x65635f6b6579)	/* "ec_key" */
extern uint64 ec_key_hash(Jsonb *key);

/*
 * The full form of a 32-bit xid taken from a snapshot (or the clog horizon)
 * that was read before next: it is at most next, and less than 2^31 behind.
 */
static inline FullTransactionId
ec_widen_xid(TransactionId xid, FullTransactionId next)
{
	uint64		n = U64FromFullTransactionId(next);
	uint32		behind = XidFromFullTransactionId(next) - xid;	/* modulo 2^32 */

	if (!TransactionIdIsNormal(xid) || behind > n)
		return FullTransactionIdFromEpochAndXid(0, xid);
	return FullTransactionIdFromU64(n - behind);
}

/* history.c: one change, as the row trigger records it */
typedef struct EcChange
{
	int64		seq;
	FullTransactionId xid;
	Oid			relid;
	char		op;
	Jsonb	   *key;
	Jsonb	   *data;
	ArrayType  *changed;		/* NULL unless op is EC_OP_UPDATE */
	bool		has_prev_version;	/* false for inserts */
	int64		prev_version;	/* the row's version before an update or delete */
} EcChange;

extern void ec_history_append(EcChange *change);

/* untrack.c */
extern Oid	ec_extension_owner(void);

/* cursor.c: the sealed envelope shared by cursors and tokens */
extern void ec_put_varint(StringInfo buf, uint64 value);
extern bool ec_get_varint(const uint8 **pos, const uint8 *end, uint64 *value);
extern char *ec_seal(char kind, StringInfo payload);
extern int	ec_unseal(char kind, const char *text, const char *what, uint8 **payload);

/*
 * A mark: what a consumer has seen, four readings taken in this order:
 * lo = last version, snapshot (xmin, xmax, xip), nxt = next xid, hi = last
 * version. Xids are full (xid8). xip is sorted and holds only xids in
 * [xmin, xmax); transactions in [xmax, nxt) were running too.
 */
typedef struct EcMark
{
	int64		lo;
	int64		hi;
	uint64		nxt;
	uint64		xmin;
	uint64		xmax;
	int			nxip;
	uint64	   *xip;
} EcMark;

/*
 * A position in the feed: everything visible at prev has been read, and, if
 * pending, the changes between prev and cur up to version last too.
 */
typedef struct EcCursor
{
	EcMark		prev;
	bool		pending;
	EcMark		cur;
	int64		last;
} EcCursor;

extern char *ec_cursor_encode(const EcCursor *cursor);

/* cursors of the rows of one delta, which differ only in `last` */
typedef struct EcCursorRows
{
	StringInfoData raw;			/* sealed bytes up to `last` */
	int			prefix_len;
	int			text_bytes;		/* bytes of raw already in out */
	int			prefix_chars;	/* their base64url, at the start of out's data */
	text	   *out;			/* the last row's cursor, rewritten per row */
} EcCursorRows;

extern void ec_cursor_rows_begin(EcCursorRows *rows, const EcCursor *cursor);
extern text *ec_cursor_rows_encode(EcCursorRows *rows, int64 last);
extern void ec_cursor_rows_end(EcCursorRows *rows);
extern void ec_cursor_decode(const char *text, EcCursor *cursor);

/*
 * token.c: a row-version token names a table, a row (by a hash of its key),
 * the row's version, and the top-level transaction that wrote that version.
 */
typedef struct EcToken
{
	Oid			relid;
	uint64		key_hash;
	int64		version;
	FullTransactionId xid;
} EcToken;

extern char *ec_token_encode(const EcToken *token);
extern void ec_token_decode(const char *text, EcToken *token);

#endif							/* EC_FEED_H */
