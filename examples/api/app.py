"""An HTTP API over a tracked table, with ec_feed's tokens as ETags and
consistency tokens, its reads served by a hot standby.

    DATABASE_URL='host=primary dbname=app' READ_DATABASE_URL='host=standby dbname=app' \\
        python3 -m uvicorn app:app --app-dir examples/api

DATABASE_URL is the primary: every write goes there.  READ_DATABASE_URL
(default: DATABASE_URL) serves GET /patients/{id} and GET /status/{token}:
a hot standby, or the primary.  Run as many instances as you like, some
reading from the primary, some from standbys.  READY_CONSUMER (default
indexer) is the consumer that `?info` asks about.

The table (tracked with ec_feed.track('patients')):
    CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL, bed text, note text);

GET    /patients/{id}   200 + ETag; If-None-Match with the current tag: 304; 404
       with Consistency-Token: <token of the client's last write>: 200, a real 404
       (this server has seen the write), or 503 + Retry-After with the
       resource_not_consistent body while it has not; Prefer: wait=N waits up to
       N seconds (at most MAX_WAIT_S) on the server instead.  A malformed,
       foreign or other-row token: 400; a token of a write rolled back: 410.
       ?info: adds info.resource_consistency.is_ready (READY_CONSUMER has
       processed the row's current version).
POST   /patients        201 + ETag + Consistency-Token + Location
       Prefer: respond-async: 202 + Location: /status/<token>; the write commits
       after the answer
GET    /status/{token}  200 {"status": "visible"}, or {"status": "pending"} +
       Retry-After; 410 when the write was rolled back; 400 for a bad token
PATCH  /patients/{id}   If-Match required: update_if (merging)  200 / 409 / 410 / 404
PUT    /patients/{id}   If-Match required: update_if(merge => false)  200 / 412 / 410 / 404
DELETE /patients/{id}   If-Match required: delete_if  204 / 412 / 410 / 404
Every write: no If-Match 428; a malformed tag or one of another row 412; a
body that does not fit the table 422; a 200, 201 or 204 carries the new
Consistency-Token (a 204's names the delete: a GET with it on a standby
that has not replayed the delete answers 503, not the deleted row).  See README.md, "Over HTTP" and "HTTP mapping".

Needs python3-fastapi, python3-uvicorn and python3-psycopg (Debian 12).  One
connection per request keeps it short; use a pool (psycopg_pool) in production.
"""
import json
import math
import os
import re

import psycopg
from fastapi import BackgroundTasks, Body, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from psycopg.types.json import Jsonb

app = FastAPI()
DSN = os.environ.get("DATABASE_URL", "")
READ_DSN = os.environ.get("READ_DATABASE_URL") or DSN
CONSUMER = os.environ.get("READY_CONSUMER", "indexer")
MAX_WAIT_S = 10     # longest server-side wait a client may ask for
ROW = "to_jsonb(p) - 'ec_version' - 'ec_xid'"    # the row as the API shows it

# SQLSTATE of a failed write -> HTTP status (README, "Over HTTP")
ERRORS = {"EC004": 412, "22P02": 412, "EC002": 412,         # the tag is not this row's
          "EC005": 422, "42703": 422, "22023": 422,         # the body does not fit
          "23502": 422, "23514": 422, "23505": 409, "23503": 409,
          "42501": 403, "22004": 428}
# SQLSTATE of a failed read with a consistency token (README, "HTTP mapping")
READ_ERRORS = {"EC004": 400, "22P02": 400, "EC002": 400,    # not a token of this row or server
               "22023": 410,                                # its write was rolled back
               "EC005": 404, "42501": 403}


def db(dsn=DSN):
    return psycopg.connect(dsn, autocommit=True)


def error(e, errors=ERRORS):
    return JSONResponse({"code": e.sqlstate, "message": e.diag.message_primary,
                         "detail": e.diag.message_detail}, errors.get(e.sqlstate, 500))


def etag(token):
    return {"ETag": f'"{token}"', "Consistency-Token": token}


def tag_of(header):
    """The token in an If-Match / If-None-Match value; None when malformed
    (a weak tag W/"..." never matches a strong validator)."""
    if header is None or len(header) < 3 or header[0] != '"' or header[-1] != '"':
        return None
    return header[1:-1]


def prefer(header, name):
    """The value of preference `name` in a Prefer header (RFC 7240), '' when
    it has none, None when absent."""
    for p in (header or "").split(","):
        m = re.fullmatch(r"\s*([\w-]+)\s*(?:=\s*\"?([^\";]*)\"?)?\s*(?:;.*)?", p)
        if m and m.group(1).lower() == name:
            return m.group(2) or ""
    return None


def not_consistent(payload):
    """503 with Retry-After and the EC003 payload (require_visible's errdetail)."""
    retry_ms = payload.get("retry_after_ms", 1000)
    return JSONResponse({"error": 503, **payload}, 503,
                        {"Retry-After": str(max(1, math.ceil(retry_ms / 1000)))})


@app.get("/patients/{id}")
def get_patient(id: int, request: Request, if_none_match: str | None = Header(None),
                consistency_token: str | None = Header(None), prefer_: str | None = Header(None, alias="Prefer")):
    wait = prefer(prefer_, "wait")
    wait_ms = 0
    if wait is not None:
        try:
            wait_ms = int(min(float(wait), MAX_WAIT_S) * 1000)
        except ValueError:
            pass
    headers = {}
    try:
        with db(READ_DSN) as conn:
            if consistency_token is not None:
                # A statement of its own in READ COMMITTED (autocommit): it
                # waits without a snapshot, so it holds back neither replay
                # nor vacuum.  With wait_ms 0 it only checks.
                try:
                    conn.execute("SELECT ec_feed.require_visible(%s, %s)", [consistency_token, wait_ms])
                except psycopg.Error as e:
                    if e.sqlstate != "EC003":
                        raise
                    return not_consistent(json.loads(e.diag.message_detail))
                if wait_ms:
                    headers["Preference-Applied"] = f"wait={wait}"
            status, data, token = conn.execute(
                "SELECT status, data, token FROM ec_feed.get('patients', %s, %s)",
                [Jsonb({"id": id}), consistency_token]).fetchone()
            if status == "found" and "info" in request.query_params:
                ready = conn.execute("SELECT ec_feed.token_status(%s, %s) = 'visible'",
                                     [token, CONSUMER]).fetchone()[0]
                data["info"] = {"resource_consistency": {"consumer": CONSUMER, "is_ready": ready}}
    except psycopg.Error as e:
        return error(e, READ_ERRORS)
    if status == "not_consistent":      # cannot happen after require_visible; be safe
        return not_consistent({"code": "resource_not_consistent", "reason": "replica_behind",
                               "suggestion": "Retry after retry_after_ms milliseconds.",
                               "retry_after_ms": 1000})
    if status == "not_found":   # without a token, this server may not have seen the row yet
        return JSONResponse({"code": "not_found"}, 404, headers)
    headers.update(etag(token))
    if if_none_match is not None and token in [tag_of(t.strip()) for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    return JSONResponse(data, headers=headers)


def commit_later(conn):
    with conn:      # commits (or rolls back on error) and closes
        pass


@app.post("/patients")
def create_patient(background: BackgroundTasks, body: dict = Body(...),
                   prefer_: str | None = Header(None, alias="Prefer")):
    asynchronous = prefer(prefer_, "respond-async") is not None
    conn = psycopg.connect(DSN, autocommit=not asynchronous)
    try:
        data, token = conn.execute(
            f"INSERT INTO patients AS p SELECT * FROM jsonb_populate_record(NULL::patients, %s)"
            f" RETURNING {ROW}, ec_feed.row_token(p)", [Jsonb(body)]).fetchone()
    except psycopg.Error as e:
        conn.close()
        if isinstance(e, psycopg.errors.DataError):     # a value that does not convert
            return JSONResponse({"code": e.sqlstate, "message": e.diag.message_primary}, 422)
        return error(e)
    if asynchronous:
        # Accepted, not yet committed: the token is pending everywhere until
        # the commit (after this answer) and its replay; /status/<token>
        # tells, on any server.
        background.add_task(commit_later, conn)
        return JSONResponse({"status": "pending", "token": token}, 202,
                            {"Location": f"/status/{token}", "Consistency-Token": token})
    conn.close()
    return JSONResponse(data, 201, {**etag(token), "Location": f"/patients/{data['id']}"})


@app.get("/status/{token}")
def write_status(token: str):
    try:
        with db(READ_DSN) as conn:
            status = conn.execute("SELECT ec_feed.token_status(%s)", [token]).fetchone()[0]
    except psycopg.Error as e:
        if e.sqlstate == "22023":
            return JSONResponse({"status": "rolled_back", "message": e.diag.message_primary}, 410)
        return error(e, READ_ERRORS)
    if status == "visible":
        return JSONResponse({"status": status})
    return JSONResponse({"status": status}, headers={"Retry-After": "1"})


def conditional(id, if_match, sql, params, conflict_status):
    """Run update_if / delete_if with the token of If-Match; answer by its status."""
    if if_match is None:
        return JSONResponse({"code": "precondition_required"}, 428)
    token = tag_of(if_match)
    if token is None:
        return JSONResponse({"code": "malformed_tag"}, 412)
    try:
        with db() as conn:
            r = conn.execute(f"SELECT to_jsonb(r) FROM {sql} r",
                             [Jsonb({"id": id}), token, *params]).fetchone()[0]
    except psycopg.Error as e:
        return error(e)
    if r["status"] in ("applied", "merged"):
        if "delete_if" in sql:     # the delete's token: a GET with it waits for the delete
            return Response(status_code=204, headers={"Consistency-Token": r["token"]})
        return JSONResponse(r["current"], headers=etag(r["token"]))
    if r["status"] == "conflict":     # the body tells what changed; the tag is the row's now
        return JSONResponse(r, conflict_status, etag(r["token"]))
    return JSONResponse(r, 410 if r["status"] == "deleted" else 404)


@app.patch("/patients/{id}")
def patch_patient(id: int, body: dict = Body(...), if_match: str | None = Header(None)):
    return conditional(id, if_match, "ec_feed.update_if('patients', %s, %s, %s)",
                       [Jsonb(body)], 409)


@app.put("/patients/{id}")
def put_patient(id: int, body: dict = Body(...), if_match: str | None = Header(None)):
    body = {k: v for k, v in body.items() if k != "id"}
    return conditional(id, if_match, "ec_feed.update_if('patients', %s, %s, %s, merge => false)",
                       [Jsonb(body)], 412)


@app.delete("/patients/{id}")
def delete_patient(id: int, if_match: str | None = Header(None)):
    return conditional(id, if_match, "ec_feed.delete_if('patients', %s, %s)", [], 412)
