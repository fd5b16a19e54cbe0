#!/usr/bin/python3
"""Copy tracked tables into another PostgreSQL database, exactly once.

    etl.py SOURCE_DSN SINK_DSN TABLE[,TABLE...] [CONSUMER_NAME]

For each TABLE the sink database has a table of that name with the source's
columns (without ec_xid), the same primary key, and `ec_version bigint NOT
NULL`.  One consumer (default name etl_<tables joined by _>) copies them
all, then follows the feed of all of them with one cursor.  It keeps its
state in tables of its own there (created on start): ec_etl_state (cursor,
copying or following), ec_etl_table (per table: source OID, key columns,
copy position, truncate floor, gone) and ec_etl_tombstone (version of each
deleted key).  See README.md for the rule and why it works.

When a table leaves the feed (op `untrack`: untrack or DROP TABLE in the
source), the consumer drops its copy in the sink, in the transaction that
stores the cursor past it, and follows the other tables (ETL_ON_UNTRACK=keep
keeps the copy, no longer updated).  Once no table is left it unregisters
its consumer in the source and exits.

Needs python3-psycopg (psycopg 3).  Runs until killed; safe to kill at any
moment and start again with the same arguments.
"""
import os
import sys
import time

import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.types.json import Jsonb

CHUNK = int(os.environ.get("ETL_CHUNK", 500))    # rows per copy transaction
PAGE = 500          # feed rows per sink transaction
WAIT_MS = 5000      # read() waits this long for a commit when idle
ON_UNTRACK = os.environ.get("ETL_ON_UNTRACK", "drop")


class OidLoader(Loader):
    """A regclass in binary form is the table's OID (a dropped table has no name)."""
    format = Format.BINARY

    def load(self, data):
        return int.from_bytes(data, "big")


def create_state(conn):
    conn.execute("""CREATE TABLE IF NOT EXISTS ec_etl_state (
        name text PRIMARY KEY, cursor text NOT NULL, copying boolean NOT NULL)""")
    conn.execute("""CREATE TABLE IF NOT EXISTS ec_etl_table (
        name text REFERENCES ec_etl_state ON DELETE CASCADE, tab text, relid oid NOT NULL,
        key_columns text[] NOT NULL, copy_after jsonb, copied boolean NOT NULL DEFAULT false,
        floor bigint NOT NULL DEFAULT 0, gone boolean NOT NULL DEFAULT false,
        PRIMARY KEY (name, tab))""")
    conn.execute("""CREATE TABLE IF NOT EXISTS ec_etl_tombstone (
        name text, tab text, key jsonb, version bigint NOT NULL, PRIMARY KEY (name, tab, key))""")


class Table:
    """One sink table, its copy position, floor and tombstones (sink database)."""

    def __init__(self, conn, name, table, relid, key_columns):
        self.conn, self.name, self.table, self.relid = conn, name, table, relid
        self.t = sql.Identifier(table)
        cols = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", [table])]
        self.pk = sql.SQL(", ").join(map(sql.Identifier, key_columns))
        self.keyobj = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in key_columns))
        # the row of TABLE whose primary key is the JSON key %s
        self.match = sql.SQL("({pk}) = (SELECT {pk} FROM jsonb_populate_record(NULL::{t}, %s))"
                             ).format(pk=self.pk, t=self.t)
        self.upsert = sql.SQL(
            "INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, %s)"
            " ON CONFLICT ({pk}) DO UPDATE SET ({c}) = ROW({x})").format(
            t=self.t, pk=self.pk,
            c=sql.SQL(", ").join(map(sql.Identifier, cols)),
            x=sql.SQL(", ").join(sql.SQL("EXCLUDED.") + sql.Identifier(c) for c in cols))

    def copy_position(self):
        return self.conn.execute(
            "SELECT copy_after, copied FROM ec_etl_table WHERE name = %s AND tab = %s",
            [self.name, self.table]).fetchone()

    def save_position(self, copy_after, copied):
        self.conn.execute(
            "UPDATE ec_etl_table SET copy_after = %s, copied = %s WHERE name = %s AND tab = %s",
            [copy_after and Jsonb(copy_after), copied, self.name, self.table])

    def apply(self, key, version, data):
        """Make the key's state `data` (None: deleted) at `version`, unless the
        sink already holds that version of the key or a newer one."""
        held = self.conn.execute(sql.SQL(
            "SELECT greatest((SELECT ec_version FROM {t} WHERE {m}),"
            " (SELECT version FROM ec_etl_tombstone WHERE name = %s AND tab = %s AND key = %s),"
            " (SELECT floor FROM ec_etl_table WHERE name = %s AND tab = %s))"
            ).format(t=self.t, m=self.match),
            [Jsonb(key), self.name, self.table, Jsonb(key), self.name, self.table]).fetchone()[0]
        if held is not None and version <= held:
            return
        if data is None:    # deleted: keep the version, so no older state comes back
            self.conn.execute(sql.SQL("DELETE FROM {t} WHERE {m}").format(t=self.t, m=self.match),
                              [Jsonb(key)])
            self.conn.execute(
                "INSERT INTO ec_etl_tombstone VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (name, tab, key) DO UPDATE SET version = EXCLUDED.version",
                [self.name, self.table, Jsonb(key), version])
        else:
            self.conn.execute("DELETE FROM ec_etl_tombstone WHERE name = %s AND tab = %s AND key = %s",
                              [self.name, self.table, Jsonb(key)])
            self.conn.execute(self.upsert, [Jsonb(dict(data, ec_version=version))])

    def truncate(self, version):
        """TRUNCATE at `version`: every key was deleted then."""
        self.conn.execute(sql.SQL("DELETE FROM {t} WHERE ec_version < %s").format(t=self.t),
                          [version])
        self.conn.execute("DELETE FROM ec_etl_tombstone WHERE name = %s AND tab = %s AND version < %s",
                          [self.name, self.table, version])
        self.conn.execute("UPDATE ec_etl_table SET floor = greatest(floor, %s) WHERE name = %s AND tab = %s",
                          [version, self.name, self.table])

    def untrack(self):
        """The table left the feed (untrack or DROP TABLE in the source): drop
        the copy (or keep it, no longer updated) and stop following it."""
        if ON_UNTRACK == "drop":
            self.conn.execute(sql.SQL("DROP TABLE {t}").format(t=self.t))
        self.conn.execute("DELETE FROM ec_etl_tombstone WHERE name = %s AND tab = %s",
                          [self.name, self.table])
        self.conn.execute("UPDATE ec_etl_table SET gone = true WHERE name = %s AND tab = %s",
                          [self.name, self.table])
        print(f"etl: {self.table} left the feed: {'dropped' if ON_UNTRACK == 'drop' else 'kept'}"
              " in the sink", file=sys.stderr)

    def key_range(self, after, last):
        """SQL: the primary key is in (after, last]; None: unbounded."""
        cond = [sql.SQL("TRUE")]
        if after is not None:
            cond.append(sql.SQL("({pk}) > (SELECT {pk} FROM jsonb_populate_record(NULL::{t}, {v}))"
                                ).format(pk=self.pk, t=self.t, v=sql.Literal(Jsonb(after))))
        if last is not None:
            cond.append(sql.SQL("({pk}) <= (SELECT {pk} FROM jsonb_populate_record(NULL::{t}, {v}))"
                                ).format(pk=self.pk, t=self.t, v=sql.Literal(Jsonb(last))))
        return sql.SQL(" AND ").join(cond)

    def forget_missing(self, after, last, keys):
        """A chunk of the copy covered the keys in (after, last] and found
        `keys`: the sink's other keys there were deleted in the source, at a
        version above the one the sink holds for them."""
        self.conn.execute(sql.SQL(
            "WITH gone AS (DELETE FROM {t} WHERE NOT %s @> jsonb_build_array({k}) AND {r}"
            " RETURNING {k} AS key, ec_version)"
            " INSERT INTO ec_etl_tombstone SELECT %s, %s, key, ec_version FROM gone"
            " ON CONFLICT (name, tab, key) DO UPDATE"
            " SET version = greatest(ec_etl_tombstone.version, EXCLUDED.version)"
            ).format(t=self.t, k=self.keyobj, r=self.key_range(after, last)),
            [Jsonb(keys), self.name, self.table])


class Consumer:
    def __init__(self, src, sink, name, tables):
        self.src, self.conn, self.name = src, sink, name
        create_state(sink)
        if self.state() is None:
            self.register(tables)
        stored = [r[0] for r in sink.execute(
            "SELECT tab FROM ec_etl_table WHERE name = %s ORDER BY tab", [name])]
        if stored != sorted(tables):
            sys.exit(f"etl: consumer {name} copies {', '.join(stored)}, not {', '.join(tables)}:"
                     " use another consumer name for another set of tables")

    def register(self, tables):
        """First start: the tables' OIDs and keys, from the source."""
        rows = []
        for table in tables:
            r = self.src.execute("SELECT rel::oid, key_columns::text[] FROM ec_feed.tracked"
                                 " WHERE rel = %s::regclass", [table]).fetchone()
            if r is None:
                sys.exit(f"etl: {table} is not tracked in the source")
            rows.append((table, *r))
        with self.conn.transaction():
            self.conn.execute("INSERT INTO ec_etl_state VALUES (%s, '', true)", [self.name])
            for table, relid, key_columns in rows:
                self.conn.execute("INSERT INTO ec_etl_table (name, tab, relid, key_columns)"
                                  " VALUES (%s, %s, %s, %s)", [self.name, table, relid, key_columns])

    def state(self):
        return self.conn.execute("SELECT cursor, copying FROM ec_etl_state WHERE name = %s",
                                 [self.name]).fetchone()

    def save(self, cursor, copying):
        self.conn.execute("UPDATE ec_etl_state SET cursor = %s, copying = %s WHERE name = %s",
                          [cursor, copying, self.name])

    def live(self):
        """The tables still followed, by source OID."""
        return {relid: Table(self.conn, self.name, tab, relid, keys) for tab, relid, keys in self.conn.execute(
            "SELECT tab, relid, key_columns FROM ec_etl_table WHERE name = %s AND NOT gone ORDER BY tab",
            [self.name]).fetchall()}

    def start_copy(self):
        """Take the cursor BEFORE the first chunk: the feed from it has every
        change that a chunk may have missed.  Registering keeps its history.
        A table no longer tracked then is gone: its untrack may precede the
        cursor (one untracked later comes in the feed)."""
        self.src.execute("SELECT ec_feed.unregister_consumer(name) FROM ec_feed.consumers"
                         " WHERE name = %s", [self.name])
        cursor = self.src.execute("SELECT ec_feed.register_consumer(%s)", [self.name]).fetchone()[0]
        live = self.live()
        tracked = {r[0] for r in self.src.execute(
            "SELECT rel::oid FROM ec_feed.tracked WHERE rel::oid = ANY(%s::oid[])", [list(live)])}
        with self.conn.transaction():
            for relid, t in live.items():
                if relid in tracked:
                    t.save_position(None, False)
                else:
                    t.untrack()
            self.save(cursor, True)

    def run(self):
        while True:
            cursor, copying = self.state()
            if cursor == "":                # registered, not started yet
                self.start_copy()
            elif copying:
                for t in self.live().values():
                    copy(self.src, t)
                with self.conn.transaction():
                    self.save(cursor, False)
            elif not self.live():       # no longer holds history back in the source
                self.src.execute("SELECT ec_feed.unregister_consumer(name) FROM ec_feed.consumers"
                                 " WHERE name = %s", [self.name])
                print(f"etl: no table left to follow: {self.name} unregistered", file=sys.stderr)
                return
            else:
                try:
                    self.follow(cursor)
                except psycopg.Error as e:
                    if e.sqlstate != "EC001":
                        raise
                    print(f"etl: {e.diag.message_primary}: copying again", file=sys.stderr)
                    self.start_copy()

    def read(self, cursor, live):
        """A page of the feed of the tables in `live`.  One untracked or
        dropped after `cursor` is still read through `rels` up to its
        untrack row (ec_feed 0.3.0: while its changes are retained, which
        this consumer's registration ensures).  Where `rels` cannot name it
        (55000, 42P01: a source before 0.3.0), read every table instead.
        Plain columns: a source before 0.4.0 waits (wait_ms) only for a
        statement of plain columns, so `rel` comes as is, in binary (its
        OID), not as rel::oid."""
        q = ("SELECT cursor, op, rel, key, version, data FROM ec_feed.read(%s, %s,"
             " %s::oid[]::regclass[], wait_ms => %s)")
        try:
            return self.src.execute(q, [cursor, PAGE, list(live), WAIT_MS], binary=True).fetchall()
        except (psycopg.errors.ObjectNotInPrerequisiteState, psycopg.errors.UndefinedTable):
            pass
        return self.src.execute(q, [cursor, PAGE, None, WAIT_MS], binary=True).fetchall()

    def follow(self, cursor):
        """Follow the feed from the stored cursor; the sink stores the cursor in
        the transaction that applies the page, then the source is acknowledged."""
        live = self.live()
        while live:
            rows = self.read(cursor, live)
            with self.conn.transaction():
                for _, op, relid, key, version, data in rows:
                    t = live.get(relid)
                    if t is None:           # a table this consumer does not copy (or no longer)
                        continue
                    if op == "untrack":
                        t.untrack()
                        del live[relid]
                    elif op == "truncate":
                        t.truncate(version)
                    elif op in ("insert", "update", "delete"):
                        t.apply(key, version, None if op == "delete" else data)
                cursor = rows[-1][0]    # the progress row: resumes after the page
                self.save(cursor, False)
            self.src.execute("SELECT ec_feed.ack(%s, %s)", [self.name, cursor])


def copy(src, t):
    """The initial copy of a table: one short source transaction per chunk of keys."""
    after, copied = t.copy_position()
    while not copied:
        try:
            rows = src.execute(sql.SQL(
                "SELECT {k}, to_jsonb(t) - 'ec_version' - 'ec_xid', coalesce(ec_version, 0)"
                " FROM {t} t WHERE {r} ORDER BY {pk} LIMIT {n}").format(
                k=t.keyobj, t=t.t, r=t.key_range(after, None), pk=t.pk, n=CHUNK)).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            # dropped, or untracked with its columns, after the cursor was
            # taken: the feed brings its untrack
            rows = []
        last = rows[-1][0] if len(rows) == CHUNK else None
        with t.conn.transaction():
            t.forget_missing(after, last, [r[0] for r in rows])
            for key, data, version in rows:
                t.apply(key, version, data)
            t.save_position(last, last is None)
        after, copied = last, last is None


def main():
    source_dsn, sink_dsn, tables = sys.argv[1:4]
    tables = tables.split(",")
    name = sys.argv[4] if len(sys.argv) > 4 else "etl_" + "_".join(tables)
    while True:
        try:
            src = psycopg.connect(source_dsn, autocommit=True)
            src.adapters.register_loader("regclass", OidLoader)
            sink = psycopg.connect(sink_dsn, autocommit=True)
            Consumer(src, sink, name, tables).run()
            return
        except psycopg.OperationalError as e:   # a server restarted: connect again
            print(f"etl: {e}; reconnecting in 1 s", file=sys.stderr)
            time.sleep(1)


if __name__ == "__main__":
    main()
