/*
 * rowaccess.h
 *		The per-session plan cache of tracked tables and the reads and writes
 *		of one row by key (rowaccess.c), with the parsing of their arguments
 *		(rowargs.c), used by conditional.c, token.c and visibility.c.
 */
#ifndef EC_ROWACCESS_H
#define EC_ROWACCESS_H

#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#include "ec_feed.h"

typedef struct UpdatePlan
{
	int			ncols;
	AttrNumber *attnums;		/* ascending */
	SPIPlanPtr	plan;
} UpdatePlan;

/* What a conditional write needs to know about one table, kept per session. */
typedef struct RelEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext mcxt;			/* everything below, except the plans */
	EcRowShape	shape;
	char	   *qualname;		/* quoted schema.table */
	const char *only;			/* "ONLY " but for a partitioned table */
	char	   *key_where;		/* key columns = $1 .. $nkeys */
	Oid			argtypes[INDEX_MAX_KEYS + 1];	/* key columns, then ec_version */
	Datum		empty_row;		/* a row of all NULLs: the base for populating */
	FmgrInfo	populate;		/* jsonb_populate_record(tab, jsonb) */
	SPIPlanPtr	token_plan;
	SPIPlanPtr	lock_plan;		/* FOR NO KEY UPDATE, before an update */
	SPIPlanPtr	lock_del_plan;	/* FOR UPDATE, before a delete */
	SPIPlanPtr	delete_plan;
	SPIPlanPtr	get_plan;		/* the whole row by key, for get() */
	List	   *update_plans;	/* of UpdatePlan */
	bool		after_triggers; /* AFTER UPDATE triggers besides ec_feed's */
} RelEntry;

/*
 * The entry of rel, valid, for one call: its plans stay until the matching
 * ec_rel_entry_leave() (or the end of the transaction, after an error).
 */
extern RelEntry *ec_rel_entry_enter(Relation rel);
extern void ec_rel_entry_leave(void);

/* plans of a conditional write; we are connected to SPI */
extern SPIPlanPtr ec_lock_plan(RelEntry *entry, bool for_delete);
extern SPIPlanPtr ec_delete_plan(RelEntry *entry);
extern SPIPlanPtr ec_update_plan(RelEntry *entry, Relation rel, int ncols,
								 const AttrNumber *attnums, bool *temporary);
extern HeapTuple ec_run_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
							 bool read_only, int expected, Oid relid);

/* rowargs.c: the arguments key and changes of the functions that take a row by key */
extern void ec_parse_key(RelEntry *entry, Relation rel, Jsonb *key, Datum *values,
						 Jsonb **canonical);
extern int	ec_parse_changes(RelEntry *entry, Relation rel, Jsonb *changes,
							 AttrNumber *attnums, HeapTuple *tuple);
extern AttrNumber ec_find_column(TupleDesc desc, const char *name);

/* the row with this key as the caller reads it, for get() */
extern HeapTuple ec_read_row(Relation rel, Jsonb *key, Snapshot snap, Jsonb **keyjson);
/* the version, xid and key columns of the row with this key, for token() */
extern HeapTuple ec_read_token_row(Relation rel, Jsonb *key, EcRowShape *shape);

#endif							/* EC_ROWACCESS_H */
