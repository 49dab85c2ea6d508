"""The floor: a bare Litestar app doing one raw ``sqlite3`` statement per request.

It is the cost of HTTP + framework + SQLite alone, with no SCIM logic: no validation, no schema, no
audit, no card. It answers the same URLs the benchmark drives (``/scim/v2/Users...``) with documents
close enough to SCIM for the load generator to read them.

Storage is one SQLite file in WAL mode with ``synchronous=NORMAL`` (the same durability the hub is
held to), opened once per process and used directly from the event loop: every statement is a few
microseconds, so a thread hop would cost more than it saves. Autocommit: every 2xx is committed.

The file comes from ``BENCH_FLOOR_DB``. Serve with
``uvicorn bench.floor:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, patch, post

MEDIA_TYPE = "application/scim+json"
LIST_SCHEMA = b'"urn:ietf:params:scim:api:messages:2.0:ListResponse"'
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
_FILTER = re.compile(r'^\s*userName\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")

_encoder = msgspec.json.Encoder()
_decode = msgspec.json.decode


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS users ("
        " id TEXT PRIMARY KEY,"
        " user_name TEXT NOT NULL COLLATE NOCASE UNIQUE,"
        " doc BLOB NOT NULL)"
    )
    return conn


_db = _connect(os.environ.get("BENCH_FLOOR_DB", "floor.db"))


def _error(status: int, detail: str) -> Response[bytes]:
    body = _encoder.encode({"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail})
    return Response(content=body, status_code=status, media_type=MEDIA_TYPE)


def _ok(body: bytes, status: int = 200) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=MEDIA_TYPE)


def _list(total: int, start: int, docs: list[bytes]) -> Response[bytes]:
    head = b'{"schemas":[%s],"totalResults":%d,"startIndex":%d,"itemsPerPage":%d,"Resources":[' % (
        LIST_SCHEMA,
        total,
        start,
        len(docs),
    )
    return _ok(head + b",".join(docs) + b"]}")


@post("/scim/v2/Users")
async def create_user(request: Request[Any, Any, Any]) -> Response[bytes]:
    try:
        doc = _decode(await request.body())
        user_name = doc["userName"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return _error(400, "body must be a JSON object with userName")
    doc["id"] = user_id = uuid.uuid4().hex
    body = _encoder.encode(doc)
    try:
        _db.execute(
            "INSERT INTO users (id, user_name, doc) VALUES (?, ?, ?)", (user_id, user_name, body)
        )
    except sqlite3.IntegrityError:
        return _error(409, "userName taken")
    return _ok(body, 201)


@get("/scim/v2/Users/{user_id:str}")
async def get_user(user_id: str) -> Response[bytes]:
    row = _db.execute("SELECT doc FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        return _error(404, "no such user")
    return _ok(row[0])


@get("/scim/v2/Users")
async def list_users(request: Request[Any, Any, Any]) -> Response[bytes]:
    query = request.query_params
    scim_filter = query.get("filter")
    if scim_filter is not None:
        match = _FILTER.match(scim_filter)
        if match is None:
            return _error(400, "the floor only knows userName eq")
        row = _db.execute("SELECT doc FROM users WHERE user_name = ?", (match[1],)).fetchone()
        return _list(0 if row is None else 1, 1, [] if row is None else [row[0]])
    try:
        start = max(1, int(query.get("startIndex", "1")))
        count = min(1000, max(0, int(query.get("count", "100"))))
    except ValueError:
        return _error(400, "startIndex and count are integers")
    total = _db.execute("SELECT count(*) FROM users").fetchone()[0]
    rows = _db.execute(
        "SELECT doc FROM users ORDER BY rowid LIMIT ? OFFSET ?", (count, start - 1)
    ).fetchall()
    return _list(total, start, [r[0] for r in rows])


@patch("/scim/v2/Users/{user_id:str}")
async def patch_user(user_id: str, request: Request[Any, Any, Any]) -> Response[bytes]:
    try:
        operations = _decode(await request.body())["Operations"]
        expr = "doc"
        args: list[str] = []
        for op in operations:
            path = op["path"]
            if str(op["op"]).lower() != "replace" or not _PATH.match(path):
                return _error(400, "the floor only knows replace with a simple path")
            expr = f"json_set({expr}, ?, json(?))"
            args += ["$." + path, _encoder.encode(op["value"]).decode()]
    except (msgspec.DecodeError, KeyError, TypeError):
        return _error(400, "body must be a PatchOp")
    # One statement: the update and the document sent back.
    row = _db.execute(
        f"UPDATE users SET doc = CAST({expr} AS BLOB) WHERE id = ? RETURNING doc", (*args, user_id)
    ).fetchone()
    if row is None:
        return _error(404, "no such user")
    return _ok(row[0])


@get("/healthz")
async def healthz() -> Response[bytes]:
    return _ok(b"{}")


app = Litestar(
    route_handlers=[create_user, get_user, list_users, patch_user, healthz],
    openapi_config=None,
    logging_config=None,
)
