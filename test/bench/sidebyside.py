#!/usr/bin/python3
"""ec_feed side by side with PgQ, wal2json and (updated_at, id) paging.

Run by test/bench/run.sh (which installs the peers, builds ec_feed and starts
a throwaway cluster with wal_level = logical and wal2json allowed); not by CI.

  sidebyside.py measure --out DIR [...]   against PGHOST/PGPORT/PGUSER
  sidebyside.py report --in DIR --results DIR

measure writes DIR/results.json with three phases, each in a database of its
own (one extension set per database, so the phases do not see each other's
history, queue or slot):

  write   pgbench, CLIENTS clients of single-row UPDATEs, per method a table of
          its own, conditions interleaved, REPS rounds, medians; tps against
          the untracked table. synchronous_commit=off: the CPU cost of
          capture is the point, not the fsync.
  read    ROWS inserted into each method's table (transactions of 1000 rows,
          a PgQ tick every PAGE rows), then drained by a Python client in
          pages of PAGE (wal2json: streamed by pg_recvlogical to a pipe),
          every row decoded (jsonb, wal2json's JSON, PgQ's urlencoded
          ev_data); REPS rounds, each method's drains interleaved (PgQ: one
          consumer, wal2json: one slot per round); rows/s, median.
  demo    the demo's load (test/demo/demo.py): WRITERS writer threads insert
          and update one table, 0-30 ms between the write and COMMIT, 1 in
          200 transactions held open 1.5 s. That one table is captured by all
          methods at once (ec_feed tracks it, pgq.logutriga queues it, a
          wal2json slot decodes it, an (updated_at, id) index pages it); each
          consumer is a process of its own, each in its usual way: ec_feed's
          read() waits on the server for a commit (wait_ms), wal2json's
          changes are pushed by pg_recvlogical, PgQ (ticking the queue
          itself) and the paging consumer poll every POLL ms. Commit ->
          seen is the consumer's monotonic clock when a row version arrived
          minus the writer's right after COMMIT returned (CLOCK_MONOTONIC is
          system-wide). After the writes, CATCH_UP seconds; then every
          consumer's copy is compared with the table: a key missing from it
          or holding another version is a change lost. The change feeds must
          also deliver every committed row version: those that never arrived
          are counted too (paging cannot see a version overwritten before
          its next page, so that count is not a loss for it).

report turns results.json into RESULTS/<date>.md (the table, the machine, the
settings) and RESULTS/<date>.png (gnuplot), keeps the figures as
RESULTS/<date>.json and prints the Markdown. To redraw a committed result:
  sidebyside.py report --in test/bench/results/<date>.json \
      --results test/bench/results --work /tmp
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import random
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import psycopg

METHODS = ["untracked", "ec_feed", "pgq", "wal2json", "paging"]
LABEL = {
    "untracked": "untracked",
    "ec_feed": "ec_feed",
    "pgq": "PgQ (logutriga + batches)",
    "wal2json": "wal2json (logical decoding)",
    "paging": "(updated_at, id) paging",
}


def connect(db, autocommit=True):
    return psycopg.connect(dbname=db, autocommit=autocommit, application_name="ec_bench")


def admin(sql):
    with connect("postgres") as c:
        c.execute(sql)


def fresh_db(db):
    admin("DROP DATABASE IF EXISTS " + db)
    admin("CREATE DATABASE " + db)


def table_ddl(name, method):
    """One table per method, same user columns; what each method needs."""
    sql = ["CREATE TABLE %s (id bigint PRIMARY KEY, val int NOT NULL, note text NOT NULL, "
           "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())" % name]
    if method == "ec_feed":
        sql.append("SELECT ec_feed.track('%s')" % name)
    elif method == "pgq":
        sql.append("CREATE TRIGGER %s_pgq AFTER INSERT OR UPDATE OR DELETE ON %s "
                   "FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('%s_q')" % (name, name, name))
    elif method == "paging":
        sql.append("CREATE INDEX ON %s (updated_at, id)" % name)
    return sql


def pgq_queue(cur, queue, consumers):
    cur.execute("SELECT pgq.create_queue(%s)", (queue,))
    # tick on every call (pgqd's ticker_period is what bounds PgQ's freshness;
    # the consumers here tick themselves before each poll: PgQ at its best)
    cur.execute("SELECT pgq.set_queue_config(%s, 'ticker_max_lag', '0')", (queue,))
    cur.execute("SELECT pgq.set_queue_config(%s, 'ticker_idle_period', '0')", (queue,))
    for c in consumers:
        cur.execute("SELECT pgq.register_consumer(%s, %s)", (queue, c))


def w2j_options(table):
    return ("'format-version', '2', 'include-transaction', 'false', "
            "'add-tables', 'public.%s'" % table)


def recvlogical(pgbin, db, slot, table, endpos=None):
    """wal2json's changes streamed by pg_recvlogical (the replication
    protocol: pushed at commit) to a pipe, one JSON document per line."""
    cmd = [os.path.join(pgbin, "pg_recvlogical"), "-d", db, "-S", slot, "--start", "-f", "-",
           "-F", "0", "-s", "1", "-o", "format-version=2", "-o", "include-transaction=false",
           "-o", "add-tables=public." + table]
    if endpos:
        cmd += ["-E", str(endpos)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def w2j_row(line):
    ch = json.loads(line)
    if ch["action"] not in ("I", "U"):
        return None
    return {c["name"]: c["value"] for c in ch["columns"]}


# --------------------------------------------------------------------------
# write phase

def phase_write(args):
    db = "bench_write"
    fresh_db(db)
    with connect(db) as c:
        c.execute("CREATE EXTENSION ec_feed")
        c.execute("CREATE EXTENSION pgq")
        pgq_queue(c, "w_pgq_q", ["c"])
        for m in METHODS:
            for s in table_ddl("w_" + m, m):
                c.execute(s)
            c.execute("INSERT INTO w_%s (id, val, note) SELECT g, 0, 'x' FROM generate_series(1, %d) g"
                      % (m, args.write_rows))
        c.execute("SELECT pg_create_logical_replication_slot('bench_write', 'wal2json')")
        c.execute("VACUUM ANALYZE")
    scripts = {}
    for m in METHODS:
        f = os.path.join(args.out, "update_%s.sql" % m)
        extra = ", updated_at = clock_timestamp()" if m == "paging" else ""
        with open(f, "w") as fh:
            fh.write("\\set id random(1, %d)\n" % args.write_rows)
            fh.write("UPDATE w_%s SET val = val + 1%s WHERE id = :id;\n" % (m, extra))
        scripts[m] = f

    def drain():
        # decode what the slot holds (every run's WAL passes through it), so
        # that each run starts with an empty slot; not timed
        with connect(db) as c:
            c.execute("SELECT count(*) FROM pg_logical_slot_get_changes('bench_write', NULL, NULL, %s)"
                      % w2j_options("w_wal2json"))
            c.execute("CHECKPOINT")

    samples = {m: [] for m in METHODS}
    env = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
    for rep in range(args.reps):
        for m in METHODS:
            drain()
            out = subprocess.run(
                [os.path.join(args.pgbin, "pgbench"), "-n", "-M", "prepared", "-c", str(args.clients),
                 "-j", str(min(args.clients, os.cpu_count() or 2)), "-T", str(args.write_seconds),
                 "-f", scripts[m], db],
                env=env, capture_output=True, text=True, check=True).stdout
            tps = [float(line.split()[2]) for line in out.splitlines() if line.startswith("tps = ")][0]
            samples[m].append(tps)
            print("  write round %d %-10s %9.0f tps" % (rep + 1, m, tps), flush=True)
    drain()
    with connect(db) as c:
        c.execute("SELECT pg_drop_replication_slot('bench_write')")
    return samples


# --------------------------------------------------------------------------
# read phase

def drain_ec_feed(cur, table, page, expect):
    n, cursor = 0, None
    while True:
        cur.execute("SELECT cursor, op, key, data FROM ec_feed.read(%s, %s, %s::regclass[])",
                    (cursor, page, [table]))
        rows = cur.fetchall()
        got = 0
        for cursor_, op, key, data in rows:
            if op == "progress":
                cursor = cursor_
            else:
                got += 1
                _ = (key["id"], data["val"])
        n += got
        if got == 0 and n >= expect:
            return n
        if got == 0:
            time.sleep(0.01)


def drain_pgq(cur, queue, consumer, expect):
    n = 0
    while True:
        cur.execute("SELECT pgq.next_batch(%s, %s)", (queue, consumer))
        batch = cur.fetchone()[0]
        if batch is None:
            if n >= expect:
                return n
            cur.execute("SELECT pgq.ticker(%s)", (queue,))
            continue
        cur.execute("SELECT ev_type, ev_data FROM pgq.get_batch_events(%s)", (batch,))
        for ev_type, ev_data in cur.fetchall():
            row = dict(urllib.parse.parse_qsl(ev_data, keep_blank_values=True))
            _ = (ev_type, row["id"], row["val"])
            n += 1
        cur.execute("SELECT pgq.finish_batch(%s)", (batch,))


def drain_wal2json(pgbin, db, slot, table, upto):
    n = 0
    p = recvlogical(pgbin, db, slot, table, endpos=upto)
    for line in p.stdout:
        r = w2j_row(line)
        if r is not None:
            _ = (r["id"], r["val"])
            n += 1
    err = p.stderr.read().decode(errors="replace").strip()
    if p.wait() != 0:
        raise RuntimeError("pg_recvlogical failed: " + err)
    return n


def drain_paging(cur, table, page, expect, order="updated_at, id"):
    n, last = 0, None
    cols = "SELECT id, val, note, updated_at FROM %s" % table
    while True:
        if order == "id":
            if last is None:
                cur.execute(cols + " ORDER BY id LIMIT %s", (page,))
            else:
                cur.execute(cols + " WHERE id > %s ORDER BY id LIMIT %s", (last[1], page))
        elif last is None:
            cur.execute(cols + " ORDER BY updated_at, id LIMIT %s", (page,))
        else:
            cur.execute(cols + " WHERE (updated_at, id) > (%s, %s) ORDER BY updated_at, id LIMIT %s",
                        (last[0], last[1], page))
        rows = cur.fetchall()
        n += len(rows)
        if rows:
            last = (rows[-1][3], rows[-1][0])
        if len(rows) < page:
            return n


def phase_read(args):
    db = "bench_read"
    fresh_db(db)
    rows, page, reps = args.read_rows, args.page, args.reps
    with connect(db) as c:
        c.execute("CREATE EXTENSION ec_feed")
        c.execute("CREATE EXTENSION pgq")
        for m in METHODS:
            for s in table_ddl("r_" + m, m):
                c.execute(s)
        pgq_queue(c, "r_pgq_q", ["c%d" % i for i in range(reps)])
        c.execute("SELECT pgq.ticker('r_pgq_q')")
    print("  loading %d rows into each table" % rows, flush=True)
    # one method after the other: the wal2json slots, made just before their
    # table's load, then decode only the WAL of that load (up to endpos); a
    # slot in production decodes every change of its database, captured or not
    upto = None
    with connect(db, autocommit=False) as c:
        for m in METHODS:
            if m == "wal2json":
                for i in range(reps):
                    c.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", ("bench_read_%d" % i,))
                    c.commit()
            for start in range(0, rows, 1000):
                k = min(1000, rows - start)
                c.execute("INSERT INTO r_%s (id, val, note) SELECT g, g, 'note ' || g "
                          "FROM generate_series(%d, %d) g" % (m, start + 1, start + k))
                c.commit()
                if m == "pgq" and ((start + k) % page == 0 or start + k == rows):
                    c.execute("SELECT pgq.ticker('r_pgq_q')")
                    c.commit()
            if m == "wal2json":
                upto = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                c.commit()
    with connect(db) as c:
        c.execute("VACUUM ANALYZE")
    samples = {m: [] for m in METHODS}
    with connect(db) as c:
        cur = c.cursor()
        for rep in range(reps):
            for m in METHODS:
                t0 = time.monotonic()
                if m == "untracked":
                    n = drain_paging(cur, "r_untracked", page, rows, order="id")
                elif m == "ec_feed":
                    n = drain_ec_feed(cur, "r_ec_feed", page, rows)
                elif m == "pgq":
                    n = drain_pgq(cur, "r_pgq_q", "c%d" % rep, rows)
                elif m == "wal2json":
                    n = drain_wal2json(args.pgbin, db, "bench_read_%d" % rep, "r_wal2json", upto)
                else:
                    n = drain_paging(cur, "r_paging", page, rows)
                dt = time.monotonic() - t0
                if n != rows:
                    raise RuntimeError("read phase: %s delivered %d rows, expected %d" % (m, n, rows))
                samples[m].append(rows / dt)
                print("  read round %d %-10s %9.0f rows/s" % (rep + 1, m, rows / dt), flush=True)
        for i in range(reps):
            cur.execute("SELECT pg_drop_replication_slot(%s)", ("bench_read_%d" % i,))
    return samples


# --------------------------------------------------------------------------
# demo phase

DEMO = "d_item"


def demo_writer(idx, seed, stop_at, args, shared):
    rng = random.Random(seed * 1000 + idx)
    conn = connect("bench_demo", autocommit=False)
    cur = conn.cursor()
    hold_every, hold_s, max_delay = args.hold_every, args.hold_ms / 1000.0, args.max_delay_ms / 1000.0
    while time.monotonic() < stop_at:
        plan = []
        with shared["lock"]:
            for _ in range(rng.randint(1, 3)):
                if len(shared["keys"]) < 50 or rng.random() < 0.25:
                    plan.append(("i", shared["next_id"]))
                    shared["next_id"] += 1
                else:
                    plan.append(("u", rng.choice(shared["keys"])))
        seen = set()
        plan = sorted(p for p in plan if not (p[1] in seen or seen.add(p[1])))
        wrote = []
        try:
            for op, key in plan:
                if op == "i":
                    cur.execute("INSERT INTO " + DEMO + " (id, val, note, updated_at) "
                                "VALUES (%s, 0, %s, clock_timestamp()) RETURNING ec_version",
                                (key, "w%d" % idx))
                else:
                    cur.execute("UPDATE " + DEMO + " SET val = val + 1, note = %s, "
                                "updated_at = clock_timestamp() WHERE id = %s RETURNING ec_version",
                                ("w%d" % idx, key))
                wrote.append((op, key, cur.fetchone()[0]))
            held = rng.random() < 1.0 / hold_every
            time.sleep(hold_s if held else rng.uniform(0, max_delay))
            conn.commit()
            now = time.monotonic()
        except psycopg.Error as e:
            conn.rollback()
            with shared["lock"]:
                shared["errors"] += 1
            print("writer %d: %s" % (idx, str(e).strip()), file=sys.stderr)
            continue
        with shared["lock"]:
            shared["txns"] += 1
            shared["held"] += held
            for op, key, version in wrote:
                shared["commit"][(key, version)] = now
                if op == "i":
                    shared["keys"].append(key)
    conn.close()


class Copy:
    """A consumer's copy of the table and when each row version arrived."""

    def __init__(self):
        self.copy = {}      # id -> (ec_version, val, note)
        self.seen = {}      # (id, ec_version) -> monotonic time first seen
        self.delivered = 0

    def apply(self, key, version, val, note, now):
        key, version, val = int(key), int(version), int(val)
        self.delivered += 1
        self.seen.setdefault((key, version), now)
        old = self.copy.get(key)
        if old is None or old[0] < version:
            self.copy[key] = (version, val, note)


def consumer_ec_feed(cur, copy, state, page):
    # when nothing is new, the call waits on the server for the next commit
    # (up to 1 s), as a consumer of ec_feed would
    cur.execute("SELECT cursor, op, key, version, data FROM ec_feed.read(%s, %s, %s::regclass[], 1000)",
                (state.get("cursor"), page, [DEMO]))
    rows = cur.fetchall()
    now = time.monotonic()
    n = 0
    for cursor, op, key, version, data in rows:
        if op == "progress":
            state["cursor"] = cursor
        elif op != "delete":
            n += 1
            copy.apply(key["id"], version, data["val"], data["note"], now)
    return True         # no client-side sleep: read() waited


def consumer_pgq(cur, copy, state, page):
    cur.execute("SELECT pgq.ticker('d_q')")
    while True:
        cur.execute("SELECT pgq.next_batch('d_q', 'c')")
        batch = cur.fetchone()[0]
        if batch is None:
            return False
        cur.execute("SELECT ev_data FROM pgq.get_batch_events(%s)", (batch,))
        rows = cur.fetchall()
        now = time.monotonic()
        for (ev_data,) in rows:
            r = dict(urllib.parse.parse_qsl(ev_data, keep_blank_values=True))
            copy.apply(r["id"], r["ec_version"], r["val"], r["note"], now)
        cur.execute("SELECT pgq.finish_batch(%s)", (batch,))


def stream_wal2json(pgbin, copy, stop):
    """wal2json's consumer: lines from pg_recvlogical as they arrive."""
    p = recvlogical(pgbin, "bench_demo", "bench_demo", DEMO)
    fd, buf, n = p.stdout.fileno(), b"", 0
    try:
        while not stop.is_set():
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError("pg_recvlogical exited: " + p.stderr.read().decode(errors="replace").strip())
            now = time.monotonic()
            lines = (buf + chunk).split(b"\n")
            buf = lines.pop()
            for line in lines:
                r = w2j_row(line) if line.strip() else None
                if r is not None:
                    copy.apply(r["id"], r["ec_version"], r["val"], r["note"], now)
            n += 1
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(30)
    return n


def consumer_paging(cur, copy, state, page):
    cols = "SELECT id, ec_version, val, note, updated_at FROM " + DEMO
    if "last" not in state:
        cur.execute(cols + " ORDER BY updated_at, id LIMIT %s", (page,))
    else:
        cur.execute(cols + " WHERE (updated_at, id) > (%s, %s) ORDER BY updated_at, id LIMIT %s",
                    state["last"] + (page,))
    rows = cur.fetchall()
    now = time.monotonic()
    for key, version, val, note, updated_at in rows:
        copy.apply(key, version, val, note, now)
    if rows:
        state["last"] = (rows[-1][4], rows[-1][0])
    return len(rows) >= page


CONSUMERS = {"ec_feed": consumer_ec_feed, "pgq": consumer_pgq,
             "wal2json": None, "paging": consumer_paging}


def consumer_process(method, poll_s, page, pgbin, stop, out):
    copy, state, queries, error = Copy(), {}, 0, None
    try:
        if method == "wal2json":
            queries = stream_wal2json(pgbin, copy, stop)
        else:
            with connect("bench_demo") as conn:
                cur = conn.cursor()
                step = CONSUMERS[method]
                while not stop.is_set():
                    full = step(cur, copy, state, page)
                    queries += 1
                    if not full:
                        time.sleep(poll_s)
    except Exception as e:  # reported in the results
        error = "%s: %s" % (type(e).__name__, str(e).strip())
    out.put((method, {"copy": {k: list(v) for k, v in copy.copy.items()},
                      "seen": [[k, v, t] for (k, v), t in copy.seen.items()],
                      "delivered": copy.delivered, "queries": queries, "error": error}))


def percentile(values, p):
    if not values:
        return None
    i = min(len(values) - 1, max(0, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[i]


def phase_demo(args):
    db = "bench_demo"
    fresh_db(db)
    with connect(db) as c:
        c.execute("CREATE EXTENSION ec_feed")
        c.execute("CREATE EXTENSION pgq")
        c.execute("CREATE TABLE " + DEMO + " (id bigint PRIMARY KEY, val int NOT NULL, "
                  "note text NOT NULL, updated_at timestamptz NOT NULL)")
        c.execute("CREATE INDEX ON " + DEMO + " (updated_at, id)")
        c.execute("SELECT ec_feed.track('%s')" % DEMO)
        pgq_queue(c, "d_q", ["c"])
        c.execute("CREATE TRIGGER d_pgq AFTER INSERT OR UPDATE OR DELETE ON " + DEMO +
                  " FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('d_q')")
        c.execute("SELECT pg_create_logical_replication_slot('bench_demo', 'wal2json')")
    ctx = multiprocessing.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=consumer_process, args=(m, args.poll_ms / 1000.0, args.demo_page, args.pgbin, stop, out),
                         daemon=True) for m in CONSUMERS]
    for p in procs:
        p.start()
    time.sleep(0.5)
    shared = {"lock": threading.Lock(), "next_id": 1, "keys": [], "commit": {},
              "txns": 0, "held": 0, "errors": 0}
    print("  %d writers for %.0f s (seed %d), then %.1f s to catch up"
          % (args.writers, args.seconds, args.seed, args.catch_up), flush=True)
    start = time.monotonic()
    writers = [threading.Thread(target=demo_writer, args=(i, args.seed, start + args.seconds, args, shared),
                                daemon=True) for i in range(args.writers)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(args.seconds + 30)
    time.sleep(args.catch_up)
    stop.set()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    with connect(db) as c:
        table = {r[0]: (r[1], r[2], r[3]) for r in
                 c.execute("SELECT id, ec_version, val, note FROM " + DEMO).fetchall()}
        c.execute("SELECT pg_drop_replication_slot('bench_demo')")
    commit = shared["commit"]
    res = {"transactions": shared["txns"], "held": shared["held"], "failed": shared["errors"],
           "versions_written": len(commit), "keys": len(table), "methods": {}}
    for m, r in got.items():
        copy = {int(k): tuple(v) for k, v in r["copy"].items()}
        seen = {(k, v): t for k, v, t in r["seen"]}
        missed = sum(1 for k in table if k not in copy)
        stale = sum(1 for k, row in table.items() if k in copy and copy[k] != row)
        extra = sum(1 for k in copy if k not in table)
        lat = sorted(max(0.0, t - commit[kv]) * 1000.0 for kv, t in seen.items() if kv in commit)
        res["methods"][m] = {
            "delivered": r["delivered"], "queries": r["queries"], "error": r["error"],
            "keys_missed": missed, "keys_stale": stale + extra,
            "versions_not_delivered": sum(1 for kv in commit if kv not in seen),
            "versions_unknown": sum(1 for kv in seen if kv not in commit),
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": lat[-1] if lat else None,
        }
    return res


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_kb / 1048576), "kernel": platform.release()}


def cmd_measure(args):
    os.makedirs(args.out, exist_ok=True)
    res = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": machine(), "load_start": os.getloadavg(), "settings": vars(args).copy()}
    with connect("postgres") as c:
        res["server"] = c.execute("SELECT version()").fetchone()[0]
        res["versions"] = dict(c.execute(
            "SELECT name, default_version FROM pg_available_extensions "
            "WHERE name IN ('ec_feed', 'pgq')").fetchall())
        res["versions"]["wal2json"] = "2.5 (Debian package)"
    print("==> write: pgbench, %d clients, %d s per run, %d rounds" % (args.clients, args.write_seconds, args.reps),
          flush=True)
    res["write_tps"] = phase_write(args)
    print("==> read: %d changes per method to a Python client, pages of %d" % (args.read_rows, args.page), flush=True)
    res["read_rows_s"] = phase_read(args)
    print("==> demo load, all methods capturing one table", flush=True)
    res["demo"] = phase_demo(args)
    res["load_end"] = os.getloadavg()
    res["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    bad = [m for m, r in res["demo"]["methods"].items() if r["error"]]
    for m in bad:
        print("consumer %s failed: %s" % (m, res["demo"]["methods"][m]["error"]), file=sys.stderr)
    return 1 if bad else 0


# --------------------------------------------------------------------------
# report

def median(v):
    v = sorted(v)
    return v[(len(v) - 1) // 2] if v else None


def cmd_report(args):
    src = args.input if os.path.isfile(args.input) else os.path.join(args.input, "results.json")
    with open(src) as f:
        res = json.load(f)
    day = res["started"][:10]
    os.makedirs(args.results, exist_ok=True)
    # the raw figures beside the table, to redraw it (report --in FILE)
    json_path = os.path.join(args.results, day + ".json")
    if os.path.abspath(src) != os.path.abspath(json_path):
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
    work = args.work or os.path.dirname(os.path.abspath(src))
    md_path = os.path.join(args.results, day + ".md")
    png_path = os.path.join(args.results, day + ".png")
    s = res["settings"]
    tps = {m: median(v) for m, v in res["write_tps"].items()}
    rps = {m: median(v) for m, v in res["read_rows_s"].items()}
    demo = res["demo"]
    dm = demo["methods"]
    mach = res["machine"]
    load = "%.1f at the start, %.1f at the end (1-minute load average)" % (res["load_start"][0], res["load_end"][0])

    def fmt(x, f="%.0f"):
        return "—" if x is None else f % x

    rows = []
    for m in METHODS:
        d = dm.get(m)
        lost = None if d is None else d["keys_missed"] + d["keys_stale"]
        rows.append({
            "method": m,
            "ratio": tps[m] / tps["untracked"],
            "tps": tps[m],
            "rows_s": rps[m],
            "p50": None if d is None else d["p50_ms"],
            "p99": None if d is None else d["p99_ms"],
            "lost": lost,
            "missed": None if d is None else d["keys_missed"],
            "stale": None if d is None else d["keys_stale"],
            "not_delivered": None if d is None else d["versions_not_delivered"],
        })
    lines = []
    lines.append("# ec_feed side by side: %s" % res["started"])
    lines.append("")
    lines.append("Made by `bash test/bench/run.sh` on %s (%d cores, %d GiB, Linux %s); load %s. %s."
                 % (mach["cpu"], mach["cores"], mach["mem_gib"], mach["kernel"], load,
                    res["server"].split(" on ")[0]))
    lines.append("ec_feed %s, PgQ %s, wal2json %s." % (res["versions"].get("ec_feed"), res["versions"].get("pgq"),
                                                     res["versions"].get("wal2json")))
    lines.append("")
    lines.append("| method | write tps (× untracked) | rows/s to a client | commit→seen p50 / p99 | "
                 "changes lost (keys missed + stale) | committed versions never delivered |")
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        m = r["method"]
        if m == "untracked":
            lat = lost = nd = "—"
            rs = "%s (keyset by id: the ceiling)" % fmt(r["rows_s"])
        else:
            lat = "%s / %s ms" % (fmt(r["p50"], "%.1f"), fmt(r["p99"], "%.1f"))
            lost = "**%d** (%d + %d)" % (r["lost"], r["missed"], r["stale"])
            nd = "%d" % r["not_delivered"]
            if m == "paging":
                nd += " (overwritten before a page: not a loss)"
            rs = fmt(r["rows_s"])
        lines.append("| %s | %.0f (%.2f×) | %s | %s | %s | %s |"
                     % (LABEL[m], r["tps"], r["ratio"], rs, lat, lost, nd))
    lines.append("")
    lines.append("- Write: pgbench, %d clients, single-row UPDATE of %d rows, %d s per run, %d rounds "
                 "interleaved, median tps; synchronous_commit=off (the capture's CPU cost, not the fsync). "
                 "The whole cluster runs with wal_level = logical (wal2json needs it), the untracked baseline "
                 "too. wal2json adds no work to the writer beyond that WAL: the decoding runs in the backend "
                 "that reads the slot (see the rows/s); the paging table has the (updated_at, id) index and its UPDATE sets "
                 "updated_at, which makes it non-HOT." % (s["clients"], s["write_rows"], s["write_seconds"],
                                                            s["reps"]))
    lines.append("- Read: %d inserted changes per method (transactions of 1,000 rows), drained by one Python "
                 "(psycopg 3) client in pages of %d, every row decoded; median of %d rounds, interleaved. "
                 "`ec_feed.read(cursor, %d, rels)` pages the history of that table only; PgQ: batches of %d "
                 "events (one tick per %d rows); wal2json: `pg_recvlogical` (format-version 2) writes to a pipe "
                 "the client reads, up to the LSN where its table's load ended (the tables are loaded one after "
                 "the other, its slot made just before its load: a slot decodes every change of its database, "
                 "captured or not)." % (s["read_rows"], s["page"], s["reps"], s["page"], s["page"], s["page"]))
    lines.append("- Demo load: %d writers for %.0f s (seed %d), 0–%.0f ms between the write and COMMIT, "
                 "1 in %d transactions held open %.1f s; %d transactions committed (%d held), %d failed, "
                 "%d row versions, %d keys. One table captured by every method at once; each consumer a "
                 "process of its own, each in its usual way: ec_feed's `read(cursor, %d, rels, wait_ms => 1000)` "
                 "waits on the server for the next commit; wal2json's changes are pushed by `pg_recvlogical`; "
                 "PgQ and the paging consumer poll every %.0f ms, PgQ's calling `pgq.ticker()` itself before "
                 "each poll (pgqd would tick every `ticker_period`, 1 s by default). %.1f s to catch up after the "
                 "writes, then every copy is compared with the table: a key missing from a copy or holding "
                 "another version than the table is a change lost."
                 % (s["writers"], s["seconds"], s["seed"], s["max_delay_ms"], s["hold_every"],
                    s["hold_ms"] / 1000.0, demo["transactions"], demo["held"], demo["failed"],
                    demo["versions_written"], demo["keys"], s["demo_page"], s["poll_ms"], s["catch_up"]))
    span = s["seconds"] + s["catch_up"]
    lines.append("- Consumers during the demo load (%.0f s): ec_feed %d `read()` calls; PgQ %d polls (each a "
                 "tick, `next_batch`, `get_batch_events`, `finish_batch` per batch: %.0f ms a poll, its "
                 "10 ms pause included; a change waits for the next poll's tick); wal2json %d reads of the pipe; paging %d pages. "
                 "Slowest change seen: ec_feed %s, PgQ %s, wal2json %s, paging %s ms."
                 % (span, dm["ec_feed"]["queries"], dm["pgq"]["queries"],
                    1000.0 * span / max(1, dm["pgq"]["queries"]), dm["wal2json"]["queries"],
                    dm["paging"]["queries"], fmt(dm["ec_feed"]["max_ms"], "%.0f"), fmt(dm["pgq"]["max_ms"], "%.0f"),
                    fmt(dm["wal2json"]["max_ms"], "%.0f"), fmt(dm["paging"]["max_ms"], "%.0f")))
    lines.append("- Every sample: write tps %s; read rows/s %s."
                 % ("; ".join("%s %s" % (m, ", ".join("%.0f" % x for x in res["write_tps"][m])) for m in METHODS),
                    "; ".join("%s %s" % (m, ", ".join("%.0f" % x for x in res["read_rows_s"][m])) for m in METHODS)))
    if max(res["load_start"][0], res["load_end"][0]) > mach["cores"]:
        def spread(d):
            return max(max(v) / min(v) for v in d.values() if v and min(v) > 0)
        lines.append("- The machine was shared (a load average above its %d cores): one method's rounds differ "
                     "by up to %.1f× in writes and %.1f× in reads (every sample above); the counts of changes "
                     "lost do not depend on it." % (mach["cores"], spread(res["write_tps"]),
                                                   spread(res["read_rows_s"])))
    lines.append("")
    lines.append("![side by side](%s)" % os.path.basename(png_path))
    lines.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(lines))

    dat = os.path.join(work, "plot.dat")
    with open(dat, "w") as f:
        for i, r in enumerate(rows):
            name = {"untracked": "untracked", "ec_feed": "ec_feed", "pgq": "PgQ",
                    "wal2json": "wal2json", "paging": "(updated_at, id)"}[r["method"]]
            f.write('%d "%s" %s %s %s %s %s\n' % (
                i, name, "%.4f" % r["ratio"], fmt(r["rows_s"], "%.0f").replace("—", "-"),
                fmt(r["p50"], "%.2f").replace("—", "-"), fmt(r["p99"], "%.2f").replace("—", "-"),
                fmt(r["lost"], "%d").replace("—", "-")))
    gp = os.path.join(work, "plot.gp")
    title = "ec_feed side by side, %s: %s, %d cores, load %.1f-%.1f" % (
        res["started"], mach["cpu"], mach["cores"], res["load_start"][0], res["load_end"][0])
    with open(gp, "w") as f:
        f.write("""set terminal pngcairo noenhanced size 1400,900 font ",11"
set output "%(png)s"
set datafile missing "-"
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set xtics nomirror
set key off
set multiplot layout 2,2 title "%(title)s"
set title "write tps, relative to untracked (pgbench, %(clients)d clients, 1-row UPDATE)"
set yrange [0:%(wmax).2f]
plot "%(dat)s" using 1:3:xtic(2) with boxes lc rgb "#4477aa", "" using 1:3:(sprintf("%%.2f", $3)) with labels offset 0,0.8
set title "rows/s to a Python client (%(rows)d changes, pages of %(page)d)"
set yrange [0:%(rmax).0f]
plot "%(dat)s" using 1:4:xtic(2) with boxes lc rgb "#228833", "" using 1:4:(sprintf("%%.0f", $4)) with labels offset 0,0.8
set title "commit -> seen under the demo load (ms, log scale)"
set logscale y
set yrange [*:%(pmax).1f]
set key top left
set boxwidth 0.3
set xrange [0.5:4.5]
plot "%(dat)s" using 1:(NaN):xtic(2) notitle, \\
     "" using ($1-0.15):5 with boxes lc rgb "#66ccee" title "p50", \\
     "" using ($1+0.15):6 with boxes lc rgb "#ee6677" title "p99", \\
     "" using ($1-0.15):5:(sprintf("%%.1f", $5)) with labels offset 0,0.8 notitle, \\
     "" using ($1+0.15):6:(sprintf("%%.1f", $6)) with labels offset 0,0.8 notitle
unset logscale y
set xrange [*:*]
set key off
set boxwidth 0.6
set yrange [0:%(lmax).0f]
set title "changes lost: keys missing or stale at the end (of %(keys)d)"
plot "%(dat)s" using 1:7:xtic(2) with boxes lc rgb "#aa3377", "" using 1:7:(sprintf("%%d", $7)) with labels offset 0,0.8
unset multiplot
""" % {"png": png_path, "dat": dat, "title": title, "clients": s["clients"], "rows": s["read_rows"],
            "page": s["page"], "wmax": 1.15 * max(r["ratio"] for r in rows),
            "rmax": 1.15 * max(r["rows_s"] for r in rows),
            "lmax": 1.15 * max(r["lost"] or 0 for r in rows) + 2, "keys": demo["keys"],
            "pmax": 2.5 * max(r["p99"] or 0 for r in rows)})
    subprocess.run(["gnuplot", gp], check=True)
    print("\n".join(lines))
    print("wrote %s and %s" % (md_path, png_path))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", required=True)
    m.add_argument("--pgbin", required=True)
    m.add_argument("--seconds", type=float, default=20.0, help="demo load's writes")
    m.add_argument("--write-seconds", type=int, default=5)
    m.add_argument("--write-rows", type=int, default=10000)
    m.add_argument("--clients", type=int, default=4)
    m.add_argument("--reps", type=int, default=3)
    m.add_argument("--read-rows", type=int, default=100000)
    m.add_argument("--page", type=int, default=10000)
    m.add_argument("--writers", type=int, default=10)
    m.add_argument("--catch-up", type=float, default=3.0)
    m.add_argument("--poll-ms", type=float, default=10.0)
    m.add_argument("--demo-page", type=int, default=1000)
    m.add_argument("--hold-every", type=int, default=200)
    m.add_argument("--hold-ms", type=float, default=1500.0)
    m.add_argument("--max-delay-ms", type=float, default=30.0)
    m.add_argument("--seed", type=int, default=int(time.time()))
    r = sub.add_parser("report")
    r.add_argument("--in", dest="input", required=True, help="measure's --out, or a results .json")
    r.add_argument("--work", help="where to put the gnuplot files (default: beside the input)")
    r.add_argument("--results", required=True)
    args = ap.parse_args()
    return cmd_measure(args) if args.cmd == "measure" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
