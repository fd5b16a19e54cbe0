"""An HTTP API over a tracked table, with ec_feed's tokens as ETags.

    DATABASE_URL='dbname=app' python3 -m uvicorn app:app --app-dir examples/api

The table (tracked with ec_feed.track('patients')):
    CREATE TABLE patients (id int PRIMARY KEY, name text NOT NULL, bed text, note text);

GET    /patients/{id}   200 + ETag; If-None-Match with the current tag: 304
POST   /patients        201 + ETag + Location
PATCH  /patients/{id}   If-Match required: update_if (merging)  200 / 409 / 410 / 404
PUT    /patients/{id}   If-Match required: update_if(merge => false)  200 / 412 / 410 / 404
DELETE /patients/{id}   If-Match required: delete_if  204 / 412 / 410 / 404
Every write: no If-Match 428; a malformed tag or one of another row 412; a
body that does not fit the table 422.  See README.md, "Over HTTP".

Needs python3-fastapi, python3-uvicorn and python3-psycopg (Debian 12).  One
connection per request keeps it short; use a pool (psycopg_pool) in production.
"""
import os

import psycopg
from fastapi import Body, FastAPI, Header, Response
from fastapi.responses import JSONResponse
from psycopg.types.json import Jsonb

app = FastAPI()
DSN = os.environ.get("DATABASE_URL", "")
ROW = "to_jsonb(p) - 'ec_version' - 'ec_xid'"    # the row as the API shows it

# SQLSTATE of a failed call -> HTTP status (README, "Over HTTP")
ERRORS = {"EC004": 412, "22P02": 412, "EC002": 412,         # the tag is not this row's
          "EC005": 422, "42703": 422, "22023": 422,         # the body does not fit
          "23502": 422, "23514": 422, "23505": 409, "23503": 409,
          "42501": 403, "22004": 428}


def db():
    return psycopg.connect(DSN, autocommit=True)


def error(e):
    return JSONResponse({"code": e.sqlstate, "message": e.diag.message_primary,
                         "detail": e.diag.message_detail}, ERRORS.get(e.sqlstate, 500))


def etag(token):
    return {"ETag": f'"{token}"'}


def tag_of(header):
    """The token in an If-Match / If-None-Match value; None when malformed
    (a weak tag W/"..." never matches a strong validator)."""
    if header is None or len(header) < 3 or header[0] != '"' or header[-1] != '"':
        return None
    return header[1:-1]


@app.get("/patients/{id}")
def get_patient(id: int, if_none_match: str | None = Header(None)):
    with db() as conn:
        row = conn.execute(f"SELECT {ROW}, ec_feed.row_token(p) FROM patients p WHERE id = %s",
                           [id]).fetchone()
    if row is None:
        return JSONResponse({"code": "not_found"}, 404)
    if if_none_match is not None and row[1] in [tag_of(t.strip()) for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=etag(row[1]))
    return JSONResponse(row[0], headers=etag(row[1]))


@app.post("/patients")
def create_patient(body: dict = Body(...)):
    try:
        with db() as conn:
            data, token = conn.execute(
                f"INSERT INTO patients AS p SELECT * FROM jsonb_populate_record(NULL::patients, %s)"
                f" RETURNING {ROW}, ec_feed.row_token(p)", [Jsonb(body)]).fetchone()
    except psycopg.errors.DataError as e:   # a value that does not convert
        return JSONResponse({"code": e.sqlstate, "message": e.diag.message_primary}, 422)
    except psycopg.Error as e:
        return error(e)
    return JSONResponse(data, 201, {**etag(token), "Location": f"/patients/{data['id']}"})


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
        if "delete_if" in sql:
            return Response(status_code=204)
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
