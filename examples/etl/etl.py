#!/usr/bin/python3
"""Copy one tracked table into another PostgreSQL database, exactly once.

    etl.py SOURCE_DSN SINK_DSN TABLE [CONSUMER_NAME]

The sink database has a table TABLE with the source's columns (without
ec_xid), the same primary key, and `ec_version bigint NOT NULL`.  The
consumer keeps its state in two tables of its own there (created on start):
ec_etl_state (cursor, copy position, truncate floor) and ec_etl_tombstone
(version of each deleted key).  See README.md for the rule and why it works.

Needs python3-psycopg (psycopg 3).  Runs until killed; safe to kill at any
moment and start again.
"""
import os
import sys
import time

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

CHUNK = int(os.environ.get("ETL_CHUNK", 500))    # rows per copy transaction
PAGE = 500          # feed rows per sink transaction
WAIT_MS = 5000      # read() waits this long for a commit when idle


class Sink:
    """The sink table, the consumer's state and tombstones (sink database)."""

    def __init__(self, conn, table, name, key_columns):
        self.conn, self.name = conn, name
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
        conn.execute("""CREATE TABLE IF NOT EXISTS ec_etl_state (
            name text PRIMARY KEY, cursor text NOT NULL,
            copy_after jsonb, copying boolean NOT NULL, floor bigint NOT NULL DEFAULT 0)""")
        conn.execute("""CREATE TABLE IF NOT EXISTS ec_etl_tombstone (
            name text, key jsonb, version bigint NOT NULL, PRIMARY KEY (name, key))""")

    def state(self):
        return self.conn.execute(
            "SELECT cursor, copy_after, copying FROM ec_etl_state WHERE name = %s",
            [self.name]).fetchone()

    def save(self, cursor, copy_after, copying):
        self.conn.execute(
            "INSERT INTO ec_etl_state (name, cursor, copy_after, copying) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET cursor = EXCLUDED.cursor,"
            " copy_after = EXCLUDED.copy_after, copying = EXCLUDED.copying",
            [self.name, cursor, copy_after and Jsonb(copy_after), copying])

    def apply(self, key, version, data):
        """Make the key's state `data` (None: deleted) at `version`, unless the
        sink already holds that version of the key or a newer one."""
        held = self.conn.execute(sql.SQL(
            "SELECT greatest((SELECT ec_version FROM {t} WHERE {m}),"
            " (SELECT version FROM ec_etl_tombstone WHERE name = %s AND key = %s),"
            " (SELECT floor FROM ec_etl_state WHERE name = %s))").format(t=self.t, m=self.match),
            [Jsonb(key), self.name, Jsonb(key), self.name]).fetchone()[0]
        if held is not None and version <= held:
            return
        if data is None:    # deleted: keep the version, so no older state comes back
            self.conn.execute(sql.SQL("DELETE FROM {t} WHERE {m}").format(t=self.t, m=self.match),
                              [Jsonb(key)])
            self.conn.execute(
                "INSERT INTO ec_etl_tombstone VALUES (%s, %s, %s)"
                " ON CONFLICT (name, key) DO UPDATE SET version = EXCLUDED.version",
                [self.name, Jsonb(key), version])
        else:
            self.conn.execute("DELETE FROM ec_etl_tombstone WHERE name = %s AND key = %s",
                              [self.name, Jsonb(key)])
            self.conn.execute(self.upsert, [Jsonb(dict(data, ec_version=version))])

    def truncate(self, version):
        """TRUNCATE at `version`: every key was deleted then."""
        self.conn.execute(sql.SQL("DELETE FROM {t} WHERE ec_version < %s").format(t=self.t),
                          [version])
        self.conn.execute("DELETE FROM ec_etl_tombstone WHERE name = %s AND version < %s",
                          [self.name, version])
        self.conn.execute("UPDATE ec_etl_state SET floor = greatest(floor, %s) WHERE name = %s",
                          [version, self.name])

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
            " INSERT INTO ec_etl_tombstone SELECT %s, key, ec_version FROM gone"
            " ON CONFLICT (name, key) DO UPDATE"
            " SET version = greatest(ec_etl_tombstone.version, EXCLUDED.version)"
            ).format(t=self.t, k=self.keyobj, r=self.key_range(after, last)),
            [Jsonb(keys), self.name])


def run(source_dsn, sink_dsn, table, name):
    src = psycopg.connect(source_dsn, autocommit=True)
    sink = psycopg.connect(sink_dsn, autocommit=True)
    key_columns = src.execute("SELECT key_columns::text[] FROM ec_feed.tracked WHERE rel = %s::regclass",
                              [table]).fetchone()[0]
    s = Sink(sink, table, name, key_columns)
    if s.state() is None:
        start_copy(src, s)
    while True:
        cursor, copy_after, copying = s.state()
        if copying:
            copy(src, s, cursor, copy_after)
        else:
            try:
                follow(src, s, table, cursor)
            except psycopg.Error as e:
                if e.sqlstate != "EC001":
                    raise
                print(f"etl: {e.diag.message_primary}: copying again", file=sys.stderr)
                start_copy(src, s)


def start_copy(src, s):
    """Take the cursor BEFORE the first chunk: the feed from it has every
    change that a chunk may have missed.  Registering keeps its history."""
    src.execute("SELECT ec_feed.unregister_consumer(name) FROM ec_feed.consumers WHERE name = %s",
                [s.name])
    cursor = src.execute("SELECT ec_feed.register_consumer(%s)", [s.name]).fetchone()[0]
    with s.conn.transaction():
        s.save(cursor, None, True)


def copy(src, s, cursor, after):
    """The initial copy: one short source transaction per chunk of keys."""
    while True:
        rows = src.execute(sql.SQL(
            "SELECT {k}, to_jsonb(t) - 'ec_version' - 'ec_xid', coalesce(ec_version, 0)"
            " FROM {t} t WHERE {r} ORDER BY {pk} LIMIT {n}").format(
            k=s.keyobj, t=s.t, r=s.key_range(after, None), pk=s.pk, n=CHUNK)).fetchall()
        last = rows[-1][0] if len(rows) == CHUNK else None
        with s.conn.transaction():
            s.forget_missing(after, last, [r[0] for r in rows])
            for key, data, version in rows:
                s.apply(key, version, data)
            s.save(cursor, last, last is not None)
        if last is None:
            return
        after = last


def follow(src, s, table, cursor):
    """Follow the feed from the stored cursor; the sink stores the cursor in
    the transaction that applies the page, then the source is acknowledged."""
    while True:
        rows = src.execute(
            "SELECT cursor, op, key, version, data FROM ec_feed.read(%s, %s, ARRAY[%s::regclass],"
            " wait_ms => %s)", [cursor, PAGE, table, WAIT_MS]).fetchall()
        with s.conn.transaction():
            for _, op, key, version, data in rows:
                if op == "truncate":
                    s.truncate(version)
                elif op in ("insert", "update", "delete"):
                    s.apply(key, version, None if op == "delete" else data)
            cursor = rows[-1][0]    # the progress row: resumes after the page
            s.save(cursor, None, False)
        src.execute("SELECT ec_feed.ack(%s, %s)", [s.name, cursor])


def main():
    source_dsn, sink_dsn, table = sys.argv[1:4]
    name = sys.argv[4] if len(sys.argv) > 4 else "etl_" + table
    while True:
        try:
            run(source_dsn, sink_dsn, table, name)
        except psycopg.OperationalError as e:   # a server restarted: connect again
            print(f"etl: {e}; reconnecting in 1 s", file=sys.stderr)
            time.sleep(1)


if __name__ == "__main__":
    main()
