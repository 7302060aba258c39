"""The apps' APIs: typed functions over the database, registered as `app.function`, with readable docs."""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable

PAGE = 5  # items per page of every list/search call

API: dict[str, Callable] = {}


class ApiError(Exception):
    """A call the app refuses (unknown id, bad value); the agent sees the message and may try again."""


def api(app: str):
    def register(fn: Callable) -> Callable:
        API[f"{app}.{fn.__name__}"] = fn
        return fn

    return register


def paginate(db: sqlite3.Connection, sql: str, args: list, page: int) -> dict:
    if page < 0:
        raise ApiError("page must be 0 or more")
    rows = db.execute(f"{sql} ORDER BY id LIMIT ? OFFSET ?", [*args, PAGE + 1, page * PAGE])
    cols = [c[0] for c in rows.description]
    items = [dict(zip(cols, r, strict=True)) for r in rows.fetchall()]
    return {"items": items[:PAGE], "page": page, "has_more": len(items) > PAGE}


def get_row(db: sqlite3.Connection, table: str, rid: int, what: str) -> dict:
    cur = db.execute(f"SELECT * FROM {table} WHERE id = ?", [rid])
    row = cur.fetchone()
    if row is None:
        raise ApiError(f"no {what} with id {rid}")
    return dict(zip([c[0] for c in cur.description], row, strict=True))


def where_clause(filters: dict) -> tuple[str, list]:
    conds, args = [], []
    for col, val in filters.items():
        if val is None:
            continue
        if col == "query":
            continue
        conds.append(f"{col} = ?")
        args.append(val)
    return (" WHERE " + " AND ".join(conds)) if conds else "", args


def update_row(db: sqlite3.Connection, table: str, rid: int, what: str, fields: dict) -> dict:
    get_row(db, table, rid, what)
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise ApiError("nothing to update: give at least one field")
    db.execute(
        f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ?", [*changes.values(), rid]
    )
    return get_row(db, table, rid, what)


def search_rows(db, table: str, text_cols: tuple[str, ...], query: str, filters: dict, page: int) -> dict:
    where, args = where_clause(filters)
    if query:
        like = " OR ".join(f"{c} LIKE ?" for c in text_cols)
        where += (" AND " if where else " WHERE ") + f"({like})"
        args += [f"%{query}%"] * len(text_cols)
    return paginate(db, f"SELECT * FROM {table}{where}", args, page)


# documentation ----------------------------------------------------------------------------------------


def signature(name: str) -> inspect.Signature:
    sig = inspect.signature(API[name])
    return sig.replace(parameters=list(sig.parameters.values())[1:])  # without db


def docs(apps: list[str] | None = None) -> str:
    """The API docs an agent reads: one line per function, `app.function(args) -- what it does`."""
    lines = []
    for name, fn in API.items():
        if apps is None or name.split(".")[0] in apps:
            params = ", ".join(_param(p) for p in signature(name).parameters.values())
            lines.append(f"{name}({params}) -- {inspect.getdoc(fn)}")
    lines.append(
        "supervisor.complete(answer=None) -- finish the task, giving the answer when the task asks a question."
    )
    return "\n".join(lines)


def _param(p: inspect.Parameter) -> str:
    text = f"{p.name}: {p.annotation}"  # annotations are strings here (postponed evaluation)
    return text if p.default is inspect.Parameter.empty else f"{text} = {p.default!r}"
