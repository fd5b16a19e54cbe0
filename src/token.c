/*
 * token.c
 *		Row-version tokens: their codec.
 *
 * A token is an envelope (see cursor.c) of kind 'T' holding the table's OID,
 * a 64-bit hash of the row's primary key, the row's version and the full
 * xid of the transaction that wrote it. Versions come from one sequence and
 * are never reused, so a deleted and re-inserted row never matches an old
 * token (no ABA), and two updates in one transaction give two tokens.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/fmgrprotos.h"

#include "ec_feed.h"

#define EC_KEY_HASH_SEED	INT64CONST(0x65635f6b6579)	/* "ec_key" */

/* A hash of a key object that agrees with jsonb equality ({"id":1} = {"id":1.0}). */
uint64
ec_key_hash(Jsonb *key)
{
	return DatumGetUInt64(DirectFunctionCall2(jsonb_hash_extended,
											  JsonbPGetDatum(key),
											  Int64GetDatum(EC_KEY_HASH_SEED)));
}

char *
ec_token_encode(const EcToken *token)
{
	StringInfoData payload;
	char	   *text;

	initStringInfo(&payload);
	ec_put_varint(&payload, token->relid);
	ec_put_varint(&payload, token->key_hash);
	ec_put_varint(&payload, token->version);
	ec_put_varint(&payload, U64FromFullTransactionId(token->xid));
	text = ec_seal(EC_KIND_TOKEN, &payload);
	pfree(payload.data);
	return text;
}

void
ec_token_decode(const char *text, EcToken *token)
{
	uint8	   *payload;
	int			len = ec_unseal(EC_KIND_TOKEN, text, "token", &payload);
	const uint8 *pos = payload;
	const uint8 *end = payload + len;
	uint64		relid,
				version,
				xid;

	if (!ec_get_varint(&pos, end, &relid) || !ec_get_varint(&pos, end, &token->key_hash) ||
		!ec_get_varint(&pos, end, &version) || !ec_get_varint(&pos, end, &xid) ||
		pos != end || relid > PG_UINT32_MAX || version > PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid token"),
				 errdetail("Its contents are truncated or out of range."),
				 errhint("Pass a token exactly as ec_feed returned it.")));
	token->relid = (Oid) relid;
	token->version = (int64) version;
	token->xid = FullTransactionIdFromU64(xid);
}
