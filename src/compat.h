/*
 * compat.h
 *		Every PostgreSQL version difference ec_feed deals with, in one place.
 *
 * Built and tested on PostgreSQL 15, 17 and 18 (test/run_all.sh with
 * EC_PG=15|17|18); 16 lies between them and is expected to build. Code calls
 * the spelling of 15 or the ec_ name defined here; this file maps it to the
 * API of the major it is compiled for. ec_feed.h includes it; it includes the
 * headers whose functions it redefines first, so their prototypes are read
 * before the macros exist.
 */
#ifndef EC_FEED_COMPAT_H
#define EC_FEED_COMPAT_H

#include "access/genam.h"
#include "access/transam.h"
#include "funcapi.h"
#include "utils/relcache.h"

#if PG_VERSION_NUM < 150000
#error "ec_feed needs PostgreSQL 15 or later"
#endif

/*
 * A set-returning function that fills a tuplestore in one call:
 * SetSingleFuncCall() in 15.0, renamed InitMaterializedSRF() in 15.1 and
 * removed in 16.
 */
#if PG_VERSION_NUM < 160000
#define ec_set_materialized_srf(fcinfo) SetSingleFuncCall((fcinfo), 0)
#else
#define ec_set_materialized_srf(fcinfo) InitMaterializedSRF((fcinfo), 0)
#endif

/* Index insertion of a tuple that is not a HOT update (no "unchanged" hint). */
#define ec_index_insert(index, values, isnull, tid, heap, check, info) \
	index_insert((index), (values), (isnull), (tid), (heap), (check), false, (info))

/*
 * 18 added an instrumentation argument to index_beginscan(); ec_feed collects
 * none. The macro keeps the spelling of 15 (a macro does not expand itself).
 */
#if PG_VERSION_NUM >= 180000
#define index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#endif

/* 17 renamed the shared transaction counters. */
#if PG_VERSION_NUM >= 170000
#define ShmemVariableCache TransamVariables
#endif

/*
 * 18 lets a caller accept a deferrable primary key; before, the relcache
 * never reported one. A key whose uniqueness is checked only at commit cannot
 * identify a row during the transaction, so ec_feed accepts none.
 */
#if PG_VERSION_NUM >= 180000
#define RelationGetPrimaryKeyIndex(relation) RelationGetPrimaryKeyIndex((relation), false)
#endif

/*
 * 16 replaced the per-object-type ACL checks with object_aclcheck(); the
 * macro keeps the spelling of 15.
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_namespace.h"
#include "utils/acl.h"
#define pg_namespace_aclcheck(nsp_oid, roleid, mode) \
	object_aclcheck(NamespaceRelationId, (nsp_oid), (roleid), (mode))
#endif

/* PostgreSQL 18 replaced the pg_attribute_noreturn() suffix by a pg_noreturn prefix */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

#endif							/* EC_FEED_COMPAT_H */
