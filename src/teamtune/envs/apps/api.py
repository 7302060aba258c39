"""The apps' APIs: typed functions over the database, registered as `app.function`, with readable docs."""

from __future__ import annotations

import inspect
import json
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


def _page(db: sqlite3.Connection, sql: str, args: list, page: int) -> dict:
    if page < 0:
        raise ApiError("page must be 0 or more")
    rows = db.execute(f"{sql} ORDER BY id LIMIT ? OFFSET ?", [*args, PAGE + 1, page * PAGE])
    cols = [c[0] for c in rows.description]
    items = [dict(zip(cols, r, strict=True)) for r in rows.fetchall()]
    return {"items": items[:PAGE], "page": page, "has_more": len(items) > PAGE}


def _one(db: sqlite3.Connection, table: str, rid: int, what: str) -> dict:
    cur = db.execute(f"SELECT * FROM {table} WHERE id = ?", [rid])
    row = cur.fetchone()
    if row is None:
        raise ApiError(f"no {what} with id {rid}")
    return dict(zip([c[0] for c in cur.description], row, strict=True))


def _where(filters: dict) -> tuple[str, list]:
    conds, args = [], []
    for col, val in filters.items():
        if val is None:
            continue
        if col == "query":
            continue
        conds.append(f"{col} = ?")
        args.append(val)
    return (" WHERE " + " AND ".join(conds)) if conds else "", args


def _update(db: sqlite3.Connection, table: str, rid: int, what: str, fields: dict) -> dict:
    _one(db, table, rid, what)
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise ApiError("nothing to update: give at least one field")
    db.execute(
        f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ?", [*changes.values(), rid]
    )
    return _one(db, table, rid, what)


def _search(db, table: str, text_cols: tuple[str, ...], query: str, filters: dict, page: int) -> dict:
    where, args = _where(filters)
    if query:
        like = " OR ".join(f"{c} LIKE ?" for c in text_cols)
        where += (" AND " if where else " WHERE ") + f"({like})"
        args += [f"%{query}%"] * len(text_cols)
    return _page(db, f"SELECT * FROM {table}{where}", args, page)


# contacts ---------------------------------------------------------------------------------------------


@api("contacts")
def search(db, query: str = "", relation: str | None = None, city: str | None = None, page: int = 0) -> dict:
    """Find contacts whose name or email contains `query`, optionally by relation (friend/family/coworker) or city."""
    return _search(
        db,
        "contacts",
        ("first_name", "last_name", "email"),
        query,
        {"relation": relation, "city": city},
        page,
    )


@api("contacts")
def get(db, contact_id: int) -> dict:
    """One contact by id."""
    return _one(db, "contacts", contact_id, "contact")


@api("contacts")
def create(
    db,
    first_name: str,
    last_name: str,
    email: str = "",
    phone: str = "",
    city: str = "",
    relation: str = "friend",
) -> dict:
    """Add a contact; returns it with its new id."""
    cur = db.execute(
        "INSERT INTO contacts (first_name,last_name,email,phone,city,relation,birthday) "
        "VALUES (?,?,?,?,?,?,?)",
        [first_name, last_name, email, phone, city, relation, ""],
    )
    return _one(db, "contacts", cur.lastrowid, "contact")


@api("contacts")
def update(
    db,
    contact_id: int,
    email: str | None = None,
    phone: str | None = None,
    city: str | None = None,
    relation: str | None = None,
) -> dict:
    """Change a contact's email, phone, city or relation."""
    return _update(
        db,
        "contacts",
        contact_id,
        "contact",
        {"email": email, "phone": phone, "city": city, "relation": relation},
    )


@api("contacts")
def delete(db, contact_id: int) -> dict:
    """Remove a contact."""
    _one(db, "contacts", contact_id, "contact")
    db.execute("DELETE FROM contacts WHERE id = ?", [contact_id])
    return {"deleted": contact_id}


# calendar ---------------------------------------------------------------------------------------------


@api("calendar")
def list_events(db, date: str | None = None, contact_id: int | None = None, page: int = 0) -> dict:
    """Events, optionally on one date (YYYY-MM-DD) or with one contact."""
    where, args = _where({"date": date, "contact_id": contact_id})
    return _page(db, f"SELECT * FROM events{where}", args, page)


@api("calendar")
def create_event(
    db,
    title: str,
    date: str,
    time: str,
    duration_min: int = 60,
    location: str = "",
    contact_id: int | None = None,
) -> dict:
    """Add an event on `date` (YYYY-MM-DD) at `time` (HH:MM), optionally with a contact."""
    if contact_id is not None:
        _one(db, "contacts", contact_id, "contact")
    cur = db.execute(
        "INSERT INTO events (title,date,time,duration_min,location,contact_id) VALUES (?,?,?,?,?,?)",
        [title, date, time, duration_min, location, contact_id],
    )
    return _one(db, "events", cur.lastrowid, "event")


@api("calendar")
def update_event(
    db,
    event_id: int,
    date: str | None = None,
    time: str | None = None,
    title: str | None = None,
    location: str | None = None,
) -> dict:
    """Move or rename an event."""
    return _update(
        db, "events", event_id, "event", {"date": date, "time": time, "title": title, "location": location}
    )


@api("calendar")
def delete_event(db, event_id: int) -> dict:
    """Cancel an event."""
    _one(db, "events", event_id, "event")
    db.execute("DELETE FROM events WHERE id = ?", [event_id])
    return {"deleted": event_id}


# messages ---------------------------------------------------------------------------------------------


@api("messages")
def list_messages(db, contact_id: int | None = None, unread_only: bool = False, page: int = 0) -> dict:
    """Messages, optionally with one contact or only unread ones."""
    where, args = _where({"contact_id": contact_id, "read": 0 if unread_only else None})
    return _page(db, f"SELECT * FROM messages{where}", args, page)


@api("messages")
def send(db, contact_id: int, text: str) -> dict:
    """Send `text` to a contact."""
    _one(db, "contacts", contact_id, "contact")
    cur = db.execute(
        "INSERT INTO messages (contact_id,direction,text,date,read) VALUES (?,?,?,?,1)",
        [contact_id, "out", text, "today"],
    )
    return _one(db, "messages", cur.lastrowid, "message")


@api("messages")
def mark_read(db, message_id: int) -> dict:
    """Mark a message as read."""
    return _update(db, "messages", message_id, "message", {"read": 1})


@api("messages")
def delete_message(db, message_id: int) -> dict:
    """Delete a message."""
    _one(db, "messages", message_id, "message")
    db.execute("DELETE FROM messages WHERE id = ?", [message_id])
    return {"deleted": message_id}


# notes ------------------------------------------------------------------------------------------------


@api("notes")
def search_notes(db, query: str = "", tag: str | None = None, page: int = 0) -> dict:
    """Notes whose title or body contains `query`, optionally by tag."""
    return _search(db, "notes", ("title", "body"), query, {"tag": tag}, page)


@api("notes")
def create_note(db, title: str, body: str, tag: str = "") -> dict:
    """Write a new note."""
    cur = db.execute("INSERT INTO notes (title,body,tag,pinned) VALUES (?,?,?,0)", [title, body, tag])
    return _one(db, "notes", cur.lastrowid, "note")


@api("notes")
def update_note(
    db,
    note_id: int,
    title: str | None = None,
    body: str | None = None,
    tag: str | None = None,
    pinned: bool | None = None,
) -> dict:
    """Edit a note, or pin/unpin it."""
    return _update(
        db,
        "notes",
        note_id,
        "note",
        {"title": title, "body": body, "tag": tag, "pinned": None if pinned is None else int(pinned)},
    )


@api("notes")
def delete_note(db, note_id: int) -> dict:
    """Delete a note."""
    _one(db, "notes", note_id, "note")
    db.execute("DELETE FROM notes WHERE id = ?", [note_id])
    return {"deleted": note_id}


# payments ---------------------------------------------------------------------------------------------


@api("payments")
def balance(db) -> dict:
    """The account balance."""
    return {"balance": db.execute("SELECT balance FROM account WHERE id = 1").fetchone()[0]}


@api("payments")
def list_requests(db, direction: str | None = None, status: str | None = None, page: int = 0) -> dict:
    """Money requests. direction: from_me (others ask me to pay) or to_me; status: pending/paid/declined."""
    where, args = _where({"direction": direction, "status": status})
    return _page(db, f"SELECT * FROM requests{where}", args, page)


@api("payments")
def history(db, contact_id: int | None = None, kind: str | None = None, page: int = 0) -> dict:
    """Past payments, optionally with one contact or of one kind (sent/received)."""
    where, args = _where({"contact_id": contact_id, "kind": kind})
    return _page(db, f"SELECT * FROM payments{where}", args, page)


def _move_money(db, contact_id: int, amount: float, note: str) -> dict:
    if amount <= 0:
        raise ApiError("amount must be positive")
    bal = balance(db)["balance"]
    if amount > bal:
        raise ApiError(f"insufficient balance ({bal})")
    db.execute("UPDATE account SET balance = ? WHERE id = 1", [round(bal - amount, 2)])
    cur = db.execute(
        "INSERT INTO payments (contact_id,amount,kind,note,date) VALUES (?,?,?,?,?)",
        [contact_id, float(amount), "sent", note, "today"],
    )
    return _one(db, "payments", cur.lastrowid, "payment")


@api("payments")
def pay_request(db, request_id: int) -> dict:
    """Pay a pending request that someone sent me."""
    req = _one(db, "requests", request_id, "request")
    if req["direction"] != "from_me" or req["status"] != "pending":
        raise ApiError(f"request {request_id} is not a pending request to me")
    payment = _move_money(db, req["contact_id"], req["amount"], req["note"])
    db.execute("UPDATE requests SET status = 'paid' WHERE id = ?", [request_id])
    return payment


@api("payments")
def decline_request(db, request_id: int) -> dict:
    """Decline a pending request that someone sent me."""
    req = _one(db, "requests", request_id, "request")
    if req["direction"] != "from_me" or req["status"] != "pending":
        raise ApiError(f"request {request_id} is not a pending request to me")
    return _update(db, "requests", request_id, "request", {"status": "declined"})


@api("payments")
def send_money(db, contact_id: int, amount: float, note: str = "") -> dict:
    """Send money to a contact."""
    _one(db, "contacts", contact_id, "contact")
    return _move_money(db, contact_id, amount, note)


@api("payments")
def request_money(db, contact_id: int, amount: float, note: str = "") -> dict:
    """Ask a contact to pay me."""
    _one(db, "contacts", contact_id, "contact")
    if amount <= 0:
        raise ApiError("amount must be positive")
    cur = db.execute(
        "INSERT INTO requests (contact_id,amount,note,date,direction,status) VALUES (?,?,?,?,?,?)",
        [contact_id, float(amount), note, "today", "to_me", "pending"],
    )
    return _one(db, "requests", cur.lastrowid, "request")


# shopping ---------------------------------------------------------------------------------------------


@api("shopping")
def search_products(db, query: str = "", category: str | None = None, page: int = 0) -> dict:
    """Products whose name contains `query`, optionally in a category (kitchen/books/electronics/garden)."""
    return _search(db, "products", ("name",), query, {"category": category}, page)


@api("shopping")
def add_to_cart(db, product_id: int, quantity: int = 1) -> dict:
    """Put a product in the cart (adds to the quantity already there)."""
    prod = _one(db, "products", product_id, "product")
    if quantity < 1:
        raise ApiError("quantity must be at least 1")
    if prod["stock"] < quantity:
        raise ApiError(f"only {prod['stock']} of product {product_id} in stock")
    db.execute(
        "INSERT INTO cart (product_id, quantity) VALUES (?, ?) "
        "ON CONFLICT(product_id) DO UPDATE SET quantity = quantity + excluded.quantity",
        [product_id, quantity],
    )
    return view_cart(db)


@api("shopping")
def remove_from_cart(db, product_id: int) -> dict:
    """Take a product out of the cart."""
    if db.execute("DELETE FROM cart WHERE product_id = ?", [product_id]).rowcount == 0:
        raise ApiError(f"product {product_id} is not in the cart")
    return view_cart(db)


@api("shopping")
def view_cart(db) -> dict:
    """The cart's items and total."""
    rows = db.execute(
        "SELECT p.id, p.name, p.price, c.quantity FROM cart c JOIN products p ON p.id = c.product_id "
        "ORDER BY c.id"
    ).fetchall()
    items = [{"product_id": r[0], "name": r[1], "price": r[2], "quantity": r[3]} for r in rows]
    return {"items": items, "total": round(sum(i["price"] * i["quantity"] for i in items), 2)}


@api("shopping")
def checkout(db) -> dict:
    """Buy everything in the cart, paid from the account balance."""
    cart = view_cart(db)
    if not cart["items"]:
        raise ApiError("the cart is empty")
    bal = balance(db)["balance"]
    if cart["total"] > bal:
        raise ApiError(f"insufficient balance ({bal}) for {cart['total']}")
    for i in cart["items"]:
        db.execute("UPDATE products SET stock = stock - ? WHERE id = ?", [i["quantity"], i["product_id"]])
    db.execute("UPDATE account SET balance = ? WHERE id = 1", [round(bal - cart["total"], 2)])
    items = json.dumps([[i["product_id"], i["quantity"]] for i in cart["items"]])
    cur = db.execute(
        "INSERT INTO orders (date,items,total,status) VALUES ('today',?,?,'placed')", [items, cart["total"]]
    )
    db.execute("DELETE FROM cart")
    return _one(db, "orders", cur.lastrowid, "order")


@api("shopping")
def list_orders(db, status: str | None = None, page: int = 0) -> dict:
    """Orders, optionally by status (placed/shipped/delivered/cancelled)."""
    where, args = _where({"status": status})
    return _page(db, f"SELECT * FROM orders{where}", args, page)


# music ------------------------------------------------------------------------------------------------


@api("music")
def search_songs(
    db,
    query: str = "",
    artist: str | None = None,
    genre: str | None = None,
    liked: bool | None = None,
    page: int = 0,
) -> dict:
    """Songs whose title contains `query`, optionally by artist, genre or liked."""
    return _search(
        db,
        "songs",
        ("title",),
        query,
        {"artist": artist, "genre": genre, "liked": None if liked is None else int(liked)},
        page,
    )


@api("music")
def like_song(db, song_id: int, liked: bool = True) -> dict:
    """Like (or with liked=False, unlike) a song."""
    return _update(db, "songs", song_id, "song", {"liked": int(liked)})


@api("music")
def create_playlist(db, name: str) -> dict:
    """Make an empty playlist."""
    cur = db.execute("INSERT INTO playlists (name) VALUES (?)", [name])
    return _one(db, "playlists", cur.lastrowid, "playlist")


@api("music")
def list_playlists(db, page: int = 0) -> dict:
    """All playlists."""
    return _page(db, "SELECT * FROM playlists", [], page)


@api("music")
def add_to_playlist(db, playlist_id: int, song_id: int) -> dict:
    """Add a song to a playlist."""
    _one(db, "playlists", playlist_id, "playlist")
    _one(db, "songs", song_id, "song")
    if db.execute(
        "SELECT 1 FROM playlist_songs WHERE playlist_id=? AND song_id=?", [playlist_id, song_id]
    ).fetchone():
        raise ApiError(f"song {song_id} is already in playlist {playlist_id}")
    db.execute("INSERT INTO playlist_songs (playlist_id, song_id) VALUES (?, ?)", [playlist_id, song_id])
    return playlist_songs(db, playlist_id)


@api("music")
def playlist_songs(db, playlist_id: int, page: int = 0) -> dict:
    """The songs of a playlist."""
    _one(db, "playlists", playlist_id, "playlist")
    return _page(
        db,
        "SELECT * FROM songs WHERE id IN (SELECT song_id FROM playlist_songs WHERE playlist_id = ?)",
        [playlist_id],
        page,
    )


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
