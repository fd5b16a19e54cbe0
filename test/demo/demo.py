#!/usr/bin/python3
"""ec_feed demo: the main job in miniature (run by test/demo.sh).

Concurrent writers insert and update rows of a tracked table; each writer sets
updated_at = clock_timestamp() when its statement runs, waits 0-30 ms before
COMMIT, and holds about 1 transaction in 200 open for 1.5 s. Two consumers
copy the table into memory while it is written:

  A follows ec_feed.read(cursor, 1000), storing the last cursor;
  B pages the table by WHERE (updated_at, id) > (last_updated_at, last_id).

After the writes both get a few seconds to catch up; then their copies are
compared with the table. Commit times are taken on the writer side with the
client's monotonic clock right after COMMIT returns; "seen" is when a
consumer's query returned the row version.

Connection: libpq environment (PGHOST, PGPORT, PGUSER), database postgres.
"""

import argparse
import random
import sys
import threading
import time

import psycopg2

TABLE = "ec_demo_item"


def connect(autocommit):
    conn = psycopg2.connect(dbname="postgres", application_name="ec_feed_demo")
    conn.autocommit = autocommit
    return conn


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.next_id = 1
        self.keys = []              # committed keys, for updates
        self.commit_time = {}       # (id, version) -> monotonic time after COMMIT
        self.txns = 0
        self.held = 0
        self.errors = 0
        self.writes_done = threading.Event()
        self.stop_consumers = threading.Event()


def writer(shared, idx, seed, stop_at, hold_every, hold_s, max_delay_s):
    rng = random.Random(seed * 1000 + idx)
    conn = connect(False)
    cur = conn.cursor()
    while time.monotonic() < stop_at:
        plan = []
        with shared.lock:
            for _ in range(rng.randint(1, 3)):
                if len(shared.keys) < 50 or rng.random() < 0.25:
                    plan.append(("i", shared.next_id))
                    shared.next_id += 1
                else:
                    plan.append(("u", rng.choice(shared.keys)))
        # one row once per transaction, updates in key order: no deadlocks
        seen = set()
        plan = [p for p in plan if not (p[1] in seen or seen.add(p[1]))]
        plan.sort(key=lambda p: p[1])
        wrote = []
        try:
            for op, key in plan:
                note = "w%d" % idx
                if op == "i":
                    cur.execute(
                        "INSERT INTO " + TABLE + " (id, val, note, updated_at) "
                        "VALUES (%s, 0, %s, clock_timestamp()) RETURNING ec_version",
                        (key, note))
                else:
                    cur.execute(
                        "UPDATE " + TABLE + " SET val = val + 1, note = %s, "
                        "updated_at = clock_timestamp() WHERE id = %s RETURNING ec_version",
                        (note, key))
                wrote.append((op, key, cur.fetchone()[0]))
            held = rng.random() < 1.0 / hold_every
            time.sleep(hold_s if held else rng.uniform(0, max_delay_s))
            conn.commit()
            now = time.monotonic()
        except psycopg2.Error as e:
            conn.rollback()
            with shared.lock:
                shared.errors += 1
            print("writer %d: %s" % (idx, str(e).strip()), file=sys.stderr)
            continue
        with shared.lock:
            shared.txns += 1
            shared.held += held
            for op, key, version in wrote:
                shared.commit_time[(key, version)] = now
                if op == "i":
                    shared.keys.append(key)
    conn.close()


class Consumer:
    def __init__(self, name):
        self.name = name
        self.copy = {}          # id -> (version, val, note)
        self.seen = {}          # (id, version) -> first time seen
        self.delivered = 0
        self.duplicates = 0
        self.inversions = 0
        self.queries = 0
        self.error = None

    def apply(self, key, version, val, note, now):
        self.delivered += 1
        if (key, version) in self.seen:
            self.duplicates += 1
        else:
            self.seen[(key, version)] = now
        old = self.copy.get(key)
        if old is not None and old[0] >= version:
            self.inversions += 1
        self.copy[key] = (version, val, note)

    def run(self, shared, poll_s):
        try:
            conn = connect(True)
            cur = conn.cursor()
            while not shared.stop_consumers.is_set():
                full = self.page(cur)
                self.queries += 1
                if not full:
                    time.sleep(poll_s)
            conn.close()
        except Exception as e:  # reported in the summary
            self.error = "%s: %s" % (type(e).__name__, str(e).strip())


class FeedConsumer(Consumer):
    """A: follows the ec_feed cursors."""

    def __init__(self):
        super().__init__("ec_feed.read")
        self.cursor = None

    def page(self, cur):
        cur.execute(
            "SELECT cursor, op, key, version, data FROM ec_feed.read(%s, 1000, %s::regclass[])",
            (self.cursor, [TABLE]))
        rows = cur.fetchall()
        now = time.monotonic()
        n = 0
        progress = 0
        for cursor, op, key, version, data in rows:
            if op == "progress":
                progress += 1
                self.cursor = cursor
                continue
            n += 1
            if op == "delete":
                self.copy.pop(key["id"], None)
                continue
            self.apply(key["id"], version, data["val"], data["note"], now)
        if progress != 1 or rows[-1][1] != "progress":
            raise RuntimeError("a page must end with exactly one progress row")
        return n >= 1000


class SeekConsumer(Consumer):
    """B: pages the table by (updated_at, id)."""

    def __init__(self):
        super().__init__("(updated_at, id) paging")
        self.last = None

    def page(self, cur):
        cols = "SELECT id, ec_version, val, note, updated_at FROM " + TABLE
        if self.last is None:
            cur.execute(cols + " ORDER BY updated_at, id LIMIT 1000")
        else:
            cur.execute(cols + " WHERE (updated_at, id) > (%s, %s) ORDER BY updated_at, id LIMIT 1000",
                        self.last)
        rows = cur.fetchall()
        now = time.monotonic()
        for key, version, val, note, updated_at in rows:
            self.apply(key, version, val, note, now)
        if rows:
            self.last = (rows[-1][4], rows[-1][0])
        return len(rows) >= 1000


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--catch-up", type=float, default=2.5)
    ap.add_argument("--poll-ms", type=float, default=10.0)
    ap.add_argument("--hold-every", type=int, default=200)
    ap.add_argument("--hold-ms", type=float, default=1500.0)
    ap.add_argument("--max-delay-ms", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()

    conn = connect(True)
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS ec_feed")
    cur.execute("DROP TABLE IF EXISTS " + TABLE)
    cur.execute("CREATE TABLE " + TABLE + " (id bigint PRIMARY KEY, val int NOT NULL, "
                "note text NOT NULL, updated_at timestamptz NOT NULL)")
    # what consumer B needs to page efficiently
    cur.execute("CREATE INDEX ON " + TABLE + " (updated_at, id)")
    cur.execute("SELECT ec_feed.track(%s)", (TABLE,))

    shared = Shared()
    feed, seek = FeedConsumer(), SeekConsumer()
    consumers = [threading.Thread(target=c.run, args=(shared, args.poll_ms / 1000.0), daemon=True)
                 for c in (feed, seek)]
    for t in consumers:
        t.start()

    print("ec_feed demo: %d writers for %.0f s (seed %d); 0-%.0f ms from write to COMMIT, "
          "1 in %d transactions held open %.1f s; consumers poll every %.0f ms"
          % (args.writers, args.seconds, args.seed, args.max_delay_ms, args.hold_every,
             args.hold_ms / 1000.0, args.poll_ms), flush=True)
    start = time.monotonic()
    stop_at = start + args.seconds
    writers = [threading.Thread(target=writer,
                                args=(shared, i, args.seed, stop_at, args.hold_every,
                                      args.hold_ms / 1000.0, args.max_delay_ms / 1000.0),
                                daemon=True)
               for i in range(args.writers)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(args.seconds + 30)
    writes_end = time.monotonic()
    time.sleep(args.catch_up)
    shared.stop_consumers.set()
    for t in consumers:
        t.join(30)

    cur.execute("SELECT id, ec_version, val, note FROM " + TABLE)
    table = {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}
    conn.close()

    written = len(shared.commit_time)
    results = []
    for c in (feed, seek):
        missed = sum(1 for k in table if k not in c.copy)
        stale = sum(1 for k, row in table.items() if k in c.copy and c.copy[k] != row)
        extra = sum(1 for k in c.copy if k not in table)
        lat = sorted(max(0.0, t - shared.commit_time[kv]) * 1000.0
                     for kv, t in c.seen.items() if kv in shared.commit_time)
        unknown = sum(1 for kv in c.seen if kv not in shared.commit_time)
        never = sum(1 for kv in shared.commit_time if kv not in c.seen)
        results.append(dict(delivered=c.delivered, missed=missed, stale=stale + extra,
                            p50=percentile(lat, 50), p99=percentile(lat, 99),
                            never=never, unknown=unknown))

    print("writes: %d transactions committed (%d held open), %d failed; "
          "%.1f s of writes, then %.1f s to catch up; %d keys in the table"
          % (shared.txns, shared.held, shared.errors, writes_end - start, args.catch_up, len(table)))
    print()
    print("%-34s %16s %24s" % ("", feed.name, seek.name))
    rows = [("changes written", "%d" % written, "%d" % written),
            ("changes delivered", "%d" % results[0]["delivered"], "%d" % results[1]["delivered"]),
            ("keys missed", "%d" % results[0]["missed"], "%d" % results[1]["missed"]),
            ("keys stale (copy differs)", "%d" % results[0]["stale"], "%d" % results[1]["stale"]),
            ("freshness commit->seen p50 (ms)", "%.1f" % results[0]["p50"], "%.1f" % results[1]["p50"]),
            ("freshness commit->seen p99 (ms)", "%.1f" % results[0]["p99"], "%.1f" % results[1]["p99"]),
            ("row versions never seen", "%d" % results[0]["never"], "%d" % results[1]["never"])]
    for label, a, b in rows:
        print("%-34s %16s %24s" % (label, a, b))
    print()
    print("ec_feed.read: %d duplicated, %d per-key inversions, %d queries; "
          "(updated_at, id) paging: %d queries (row versions overwritten before a page "
          "read them are never seen by it)" % (feed.duplicates, feed.inversions, feed.queries, seek.queries))

    ok = True
    for c in (feed, seek):
        if c.error:
            print("consumer %s failed: %s" % (c.name, c.error))
            ok = False
    r = results[0]
    if written == 0:
        print("FAIL: nothing was written")
        ok = False
    if r["missed"] or r["stale"] or r["never"] or r["unknown"] or feed.duplicates or feed.inversions:
        print("FAIL: the ec_feed consumer's copy is not exact")
        ok = False
    if ok:
        print("ec_feed.read delivered every committed change exactly once, in per-key order.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
