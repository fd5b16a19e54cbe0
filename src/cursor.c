/*
 * cursor.c
 *		The cursor codec, and the sealed envelope that cursors and tokens share.
 *
 * Envelope: kind byte, format byte, the cluster's system identifier, the
 * database OID, the payload, and a 32-bit check value over all of it; then
 * base64url without padding, so it is safe in a URL and an HTTP header.
 * Integers in the payload are LEB128 varints; xids are stored as deltas.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xlog.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"

#include "ec_feed.h"

#define EC_FORMAT			1
#define EC_CHECK_SEED		UINT64CONST(0x65635f66656564)	/* "ec_feed" */
#define EC_HEADER_LEN		(1 + 1 + 8)
#define EC_CHECK_LEN		4
/*
 * Claims no real mark makes. A snapshot lists at most one xid per proc array
 * entry (at most MAX_BACKENDS backends and as many prepared transactions,
 * whatever the settings were when the cursor was made), plus the reader's
 * own; xids more than 2^31 apart cannot be told apart.
 */
#define EC_MAX_XIP			(2 * (uint64) MAX_BACKENDS + 1)
#define EC_MAX_XID_SPAN		(UINT64CONST(1) << 31)

static const char b64url[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
ec_put_varint(StringInfo buf, uint64 value)
{
	while (value >= 0x80)
	{
		appendStringInfoCharMacro(buf, (char) ((value & 0x7F) | 0x80));
		value >>= 7;
	}
	appendStringInfoCharMacro(buf, (char) value);
}

bool
ec_get_varint(const uint8 **pos, const uint8 *end, uint64 *value)
{
	uint64		result = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8		byte;

		if (*pos >= end)
			return false;
		byte = *(*pos)++;
		if (shift == 63 && byte > 1)
			return false;
		result |= (uint64) (byte & 0x7F) << shift;
		if ((byte & 0x80) == 0)
		{
			*value = result;
			return true;
		}
	}
	return false;
}

static uint32
check_value(const uint8 *data, int len)
{
	return (uint32) hash_bytes_extended(data, len, EC_CHECK_SEED);
}

static void
put_uint(StringInfo buf, uint64 value, int nbytes)
{
	for (int i = 0; i < nbytes; i++)
		appendStringInfoCharMacro(buf, (char) ((value >> (8 * i)) & 0xFF));
}

static uint64
get_uint(const uint8 *data, int nbytes)
{
	uint64		value = 0;

	for (int i = 0; i < nbytes; i++)
		value |= (uint64) data[i] << (8 * i);
	return value;
}

/*
 * Write data as base64url, no padding, to dst (room for (len * 4 + 2) / 3
 * characters); len must be a multiple of 3 unless last. Returns the length.
 */
static int
encode_b64url(char *dst, const uint8 *data, int len)
{
	char	   *out = dst;
	int			i = 0;

	for (; i + 3 <= len; i += 3)
	{
		uint32		acc = ((uint32) data[i] << 16) | ((uint32) data[i + 1] << 8) | data[i + 2];

		*out++ = b64url[(acc >> 18) & 0x3F];
		*out++ = b64url[(acc >> 12) & 0x3F];
		*out++ = b64url[(acc >> 6) & 0x3F];
		*out++ = b64url[acc & 0x3F];
	}
	if (len - i == 1)
	{
		*out++ = b64url[data[i] >> 2];
		*out++ = b64url[(data[i] & 0x03) << 4];
	}
	else if (len - i == 2)
	{
		uint32		acc = ((uint32) data[i] << 8) | data[i + 1];

		*out++ = b64url[(acc >> 10) & 0x3F];
		*out++ = b64url[(acc >> 4) & 0x3F];
		*out++ = b64url[(acc << 2) & 0x3F];
	}
	return out - dst;
}

#define B64URL_LEN(len)		(((len) * 4 + 2) / 3)

/* Append data as base64url, no padding; len must be a multiple of 3 unless last. */
static void
append_b64url(StringInfo text, const uint8 *data, int len)
{
	enlargeStringInfo(text, B64URL_LEN(len));
	text->len += encode_b64url(text->data + text->len, data, len);
	text->data[text->len] = '\0';
}

/* The envelope's header: kind, format, system identifier, database. */
static void
put_header(StringInfo raw, char kind)
{
	appendStringInfoChar(raw, kind);
	appendStringInfoChar(raw, EC_FORMAT);
	put_uint(raw, GetSystemIdentifier(), 8);
	ec_put_varint(raw, MyDatabaseId);
}

/* Append the check value and return the whole as text. */
static char *
finish_seal(StringInfo raw)
{
	StringInfoData text;

	put_uint(raw, check_value((uint8 *) raw->data, raw->len), EC_CHECK_LEN);
	initStringInfo(&text);
	append_b64url(&text, (uint8 *) raw->data, raw->len);
	return text.data;
}

char *
ec_seal(char kind, StringInfo payload)
{
	StringInfoData raw;
	char	   *text;

	initStringInfo(&raw);
	put_header(&raw, kind);
	appendBinaryStringInfo(&raw, payload->data, payload->len);
	text = finish_seal(&raw);
	pfree(raw.data);
	return text;
}

static int
b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

static void
malformed(const char *what, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid %s", what),
			 errdetail("%s", detail),
			 errhint("Pass a %s exactly as ec_feed returned it.", what)));
}

/*
 * Check and open an envelope of the given kind. Returns the payload length
 * and sets *payload. Malformed text: 22P02. Another cluster or database: EC002.
 */
int
ec_unseal(char kind, const char *text, const char *what, uint8 **payload)
{
	size_t		textlen = strlen(text);
	uint8	   *raw = palloc(textlen);
	int			len = 0;
	int			bits = 0;
	uint32		acc = 0;
	const uint8 *pos;
	uint64		dboid;

	for (size_t i = 0; i < textlen; i++)
	{
		int			v = b64url_value(text[i]);

		if (v < 0)
			malformed(what, "It contains a character that is not in the base64url alphabet.");
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			raw[len++] = (acc >> bits) & 0xFF;
		}
	}
	/* what is left must be zero padding of the last character */
	if (bits >= 6 || (acc & ((1 << bits) - 1)) != 0)
		malformed(what, "Its length or last character is wrong.");
	if (len < EC_HEADER_LEN + 1 + EC_CHECK_LEN)
		malformed(what, "It is too short.");
	if (get_uint(raw + len - EC_CHECK_LEN, EC_CHECK_LEN) !=
		check_value(raw, len - EC_CHECK_LEN))
		malformed(what, "Its check value does not match its contents.");
	if (raw[0] != (uint8) kind)
		malformed(what, kind == EC_KIND_CURSOR ?
				  "It is not a cursor (a row token, perhaps)." :
				  "It is not a row token (a cursor, perhaps).");
	if (raw[1] != EC_FORMAT)
		malformed(what, "Its format version is not one this ec_feed reads.");

	if (get_uint(raw + 2, 8) != GetSystemIdentifier())
		ereport(ERROR,
				(errcode(ERRCODE_EC_FOREIGN_CURSOR),
				 errmsg("%s is from another database cluster", what),
				 errdetail("Its system identifier is %llu; this cluster's is %llu.",
						   (unsigned long long) get_uint(raw + 2, 8),
						   (unsigned long long) GetSystemIdentifier()),
				 errhint("Start again from ec_feed.cursor_now() or a fresh read on this cluster.")));
	pos = raw + EC_HEADER_LEN;
	if (!ec_get_varint(&pos, raw + len - EC_CHECK_LEN, &dboid))
		malformed(what, "It is truncated.");
	if (dboid != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_EC_FOREIGN_CURSOR),
				 errmsg("%s is from another database", what),
				 errdetail("It was made in the database with OID %llu; this is %u.",
						   (unsigned long long) dboid, MyDatabaseId),
				 errhint("Use it in the database it came from.")));

	*payload = (uint8 *) pos;
	return (raw + len - EC_CHECK_LEN) - pos;
}

static void
put_mark(StringInfo buf, const EcMark *mark)
{
	uint64		prev;

	ec_put_varint(buf, mark->lo);
	ec_put_varint(buf, mark->hi - mark->lo);
	ec_put_varint(buf, mark->nxt);
	ec_put_varint(buf, mark->nxt - mark->xmax);
	ec_put_varint(buf, mark->xmax - mark->xmin);
	ec_put_varint(buf, mark->nxip);
	prev = mark->xmin;
	for (int i = 0; i < mark->nxip; i++)
	{
		ec_put_varint(buf, mark->xip[i] - prev);
		prev = mark->xip[i];
	}
}

static bool
get_mark(const uint8 **pos, const uint8 *end, EcMark *mark)
{
	uint64		lo,
				span,
				gap,
				width,
				nxip,
				prev;

	if (!ec_get_varint(pos, end, &lo) || !ec_get_varint(pos, end, &span) ||
		!ec_get_varint(pos, end, &mark->nxt) || !ec_get_varint(pos, end, &gap) ||
		!ec_get_varint(pos, end, &width) || !ec_get_varint(pos, end, &nxip))
		return false;
	if (lo > PG_INT64_MAX || span > PG_INT64_MAX - lo ||
		gap > mark->nxt || gap > EC_MAX_XID_SPAN || width > mark->nxt - gap ||
		width > EC_MAX_XID_SPAN ||
		nxip > EC_MAX_XIP || nxip > (uint64) (end - *pos))
		return false;
	mark->lo = lo;
	mark->hi = lo + span;
	mark->xmax = mark->nxt - gap;
	mark->xmin = mark->xmax - width;
	mark->nxip = 0;
	mark->xip = nxip ? palloc(sizeof(uint64) * nxip) : NULL;
	prev = mark->xmin;
	for (uint64 i = 0; i < nxip; i++)
	{
		uint64		delta;

		/* increasing, within [xmin, xmax) */
		if (!ec_get_varint(pos, end, &delta) || delta >= mark->xmax - prev)
			return false;
		prev += delta;

		/*
		 * Cursors made before 0.2.0 may list an xid twice (one being
		 * prepared while the snapshot was taken); consumers keep them.
		 */
		if (i > 0 && delta == 0)
			continue;
		mark->xip[mark->nxip++] = prev;
	}
	return true;
}

static void
put_cursor(StringInfo raw, const EcCursor *cursor, bool with_last)
{
	put_header(raw, EC_KIND_CURSOR);
	appendStringInfoChar(raw, cursor->pending ? 1 : 0);
	put_mark(raw, &cursor->prev);
	if (cursor->pending)
	{
		put_mark(raw, &cursor->cur);
		if (with_last)
			ec_put_varint(raw, cursor->last);
	}
}

char *
ec_cursor_encode(const EcCursor *cursor)
{
	StringInfoData raw;
	char	   *text;

	initStringInfo(&raw);
	put_cursor(&raw, cursor, true);
	text = finish_seal(&raw);
	pfree(raw.data);
	return text;
}

/*
 * The rows of one delta have cursors that differ only in `last`, which comes
 * after both marks. Encode the marks once; per row only the tail is encoded
 * (the base64 of the prefix is reused up to its last whole 3-byte group),
 * into one text buffer that every row rewrites: no allocation per row.
 */
void
ec_cursor_rows_begin(EcCursorRows *rows, const EcCursor *cursor)
{
	Assert(cursor->pending);
	initStringInfo(&rows->raw);
	put_cursor(&rows->raw, cursor, false);
	rows->prefix_len = rows->raw.len;
	rows->text_bytes = rows->prefix_len - rows->prefix_len % 3;
	/* the tail: the rest of the prefix, `last` and the check value */
	rows->out = palloc(VARHDRSZ + B64URL_LEN(rows->raw.len + 2 + 10 + EC_CHECK_LEN));
	rows->prefix_chars = encode_b64url(VARDATA(rows->out), (uint8 *) rows->raw.data,
									   rows->text_bytes);
}

text *
ec_cursor_rows_encode(EcCursorRows *rows, int64 last)
{
	int			len;

	rows->raw.len = rows->prefix_len;
	ec_put_varint(&rows->raw, last);
	put_uint(&rows->raw, check_value((uint8 *) rows->raw.data, rows->raw.len), EC_CHECK_LEN);
	len = rows->prefix_chars +
		encode_b64url(VARDATA(rows->out) + rows->prefix_chars,
					  (uint8 *) rows->raw.data + rows->text_bytes,
					  rows->raw.len - rows->text_bytes);
	SET_VARSIZE(rows->out, VARHDRSZ + len);
	return rows->out;
}

void
ec_cursor_rows_end(EcCursorRows *rows)
{
	pfree(rows->raw.data);
	pfree(rows->out);
}

void
ec_cursor_decode(const char *text, EcCursor *cursor)
{
	uint8	   *payload;
	int			len = ec_unseal(EC_KIND_CURSOR, text, "cursor", &payload);
	const uint8 *pos = payload;
	const uint8 *end = payload + len;
	uint64		last = 0;
	const EcMark *newest;

	if (len < 1 || payload[0] > 1)
		malformed("cursor", "Its flags are unknown.");
	cursor->pending = payload[0] == 1;
	pos++;
	if (!get_mark(&pos, end, &cursor->prev))
		malformed("cursor", "It is truncated or its snapshot is inconsistent.");
	if (cursor->pending)
	{
		if (!get_mark(&pos, end, &cursor->cur) || !ec_get_varint(&pos, end, &last) ||
			last > PG_INT64_MAX)
			malformed("cursor", "It is truncated or its snapshot is inconsistent.");
		cursor->last = last;
		/*
		 * Marks are taken in order, so the later one's horizon and versions
		 * are not behind the earlier one's. Its nxt may be: after a crash the
		 * xid counter restarts above the horizon (mark.c makes that durable)
		 * but can be below xids that were running and had written no WAL.
		 */
		if (cursor->cur.xmax < cursor->prev.xmax || cursor->cur.hi < cursor->prev.lo ||
			cursor->last > cursor->cur.hi)
			malformed("cursor", "Its two snapshots are out of order.");
	}
	if (pos != end)
		malformed("cursor", "It has trailing bytes.");

	/*
	 * A cursor names only what this cluster has made durable (mark.c): its
	 * horizon (the xids that had completed) and the versions handed out up
	 * to hi. One that is ahead of either was made before a restore from an
	 * older backup or a dump, or on another cluster. (Its nxt alone may be
	 * ahead after a crash: running xids that had written nothing are
	 * assigned again, and the cursor already treats them as open.) A hot
	 * standby's counters trail the primary's: there a cursor that is ahead
	 * waits until the standby has replayed its marks (publish.c).
	 */
	if (RecoveryInProgress())
		return;
	newest = cursor->pending ? &cursor->cur : &cursor->prev;
	if (newest->xmax > U64FromFullTransactionId(ReadNextFullTransactionId()))
		ereport(ERROR,
				(errcode(ERRCODE_EC_FOREIGN_CURSOR),
				 errmsg("cursor is ahead of this cluster's transaction counter"),
				 errdetail("It names transaction ids that this cluster has not assigned yet: it was made before a restore or on another cluster."),
				 errhint("Start again from ec_feed.cursor_now() after copying the tables again.")));
	if (newest->hi > ec_feed_last_version())
		ereport(ERROR,
				(errcode(ERRCODE_EC_FOREIGN_CURSOR),
				 errmsg("cursor is ahead of this database's versions"),
				 errdetail("It names version %lld, above the last version this database has handed out: it was made before a restore.",
						   (long long) newest->hi),
				 errhint("Start again from ec_feed.cursor_now() after copying the tables again.")));
}
