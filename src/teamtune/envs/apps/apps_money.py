"""Payments, shopping and music."""

from __future__ import annotations

import json

from .api import ApiError, api, get_row, paginate, search_rows, update_row, where_clause

# payments ---------------------------------------------------------------------------------------------


@api("payments")
def balance(db) -> dict:
    """The account balance."""
    return {"balance": db.execute("SELECT balance FROM account WHERE id = 1").fetchone()[0]}


@api("payments")
def list_requests(db, direction: str | None = None, status: str | None = None, page: int = 0) -> dict:
    """Money requests. direction: from_me (others ask me to pay) or to_me; status: pending/paid/declined."""
    where, args = where_clause({"direction": direction, "status": status})
    return paginate(db, f"SELECT * FROM requests{where}", args, page)


@api("payments")
def history(db, contact_id: int | None = None, kind: str | None = None, page: int = 0) -> dict:
    """Past payments, optionally with one contact or of one kind (sent/received)."""
    where, args = where_clause({"contact_id": contact_id, "kind": kind})
    return paginate(db, f"SELECT * FROM payments{where}", args, page)


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
    return get_row(db, "payments", cur.lastrowid, "payment")


@api("payments")
def pay_request(db, request_id: int) -> dict:
    """Pay a pending request that someone sent me."""
    req = get_row(db, "requests", request_id, "request")
    if req["direction"] != "from_me" or req["status"] != "pending":
        raise ApiError(f"request {request_id} is not a pending request to me")
    payment = _move_money(db, req["contact_id"], req["amount"], req["note"])
    db.execute("UPDATE requests SET status = 'paid' WHERE id = ?", [request_id])
    return payment


@api("payments")
def decline_request(db, request_id: int) -> dict:
    """Decline a pending request that someone sent me."""
    req = get_row(db, "requests", request_id, "request")
    if req["direction"] != "from_me" or req["status"] != "pending":
        raise ApiError(f"request {request_id} is not a pending request to me")
    return update_row(db, "requests", request_id, "request", {"status": "declined"})


@api("payments")
def send_money(db, contact_id: int, amount: float, note: str = "") -> dict:
    """Send money to a contact."""
    get_row(db, "contacts", contact_id, "contact")
    return _move_money(db, contact_id, amount, note)


@api("payments")
def request_money(db, contact_id: int, amount: float, note: str = "") -> dict:
    """Ask a contact to pay me."""
    get_row(db, "contacts", contact_id, "contact")
    if amount <= 0:
        raise ApiError("amount must be positive")
    cur = db.execute(
        "INSERT INTO requests (contact_id,amount,note,date,direction,status) VALUES (?,?,?,?,?,?)",
        [contact_id, float(amount), note, "today", "to_me", "pending"],
    )
    return get_row(db, "requests", cur.lastrowid, "request")


# shopping ---------------------------------------------------------------------------------------------


@api("shopping")
def search_products(db, query: str = "", category: str | None = None, page: int = 0) -> dict:
    """Products whose name contains `query`, optionally in a category (kitchen/books/electronics/garden)."""
    return search_rows(db, "products", ("name",), query, {"category": category}, page)


@api("shopping")
def add_to_cart(db, product_id: int, quantity: int = 1) -> dict:
    """Put a product in the cart (adds to the quantity already there)."""
    prod = get_row(db, "products", product_id, "product")
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
    return get_row(db, "orders", cur.lastrowid, "order")


@api("shopping")
def list_orders(db, status: str | None = None, page: int = 0) -> dict:
    """Orders, optionally by status (placed/shipped/delivered/cancelled)."""
    where, args = where_clause({"status": status})
    return paginate(db, f"SELECT * FROM orders{where}", args, page)


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
    return search_rows(
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
    return update_row(db, "songs", song_id, "song", {"liked": int(liked)})


@api("music")
def create_playlist(db, name: str) -> dict:
    """Make an empty playlist."""
    cur = db.execute("INSERT INTO playlists (name) VALUES (?)", [name])
    return get_row(db, "playlists", cur.lastrowid, "playlist")


@api("music")
def list_playlists(db, page: int = 0) -> dict:
    """All playlists."""
    return paginate(db, "SELECT * FROM playlists", [], page)


@api("music")
def add_to_playlist(db, playlist_id: int, song_id: int) -> dict:
    """Add a song to a playlist."""
    get_row(db, "playlists", playlist_id, "playlist")
    get_row(db, "songs", song_id, "song")
    if db.execute(
        "SELECT 1 FROM playlist_songs WHERE playlist_id=? AND song_id=?", [playlist_id, song_id]
    ).fetchone():
        raise ApiError(f"song {song_id} is already in playlist {playlist_id}")
    db.execute("INSERT INTO playlist_songs (playlist_id, song_id) VALUES (?, ?)", [playlist_id, song_id])
    return playlist_songs(db, playlist_id)


@api("music")
def playlist_songs(db, playlist_id: int, page: int = 0) -> dict:
    """The songs of a playlist."""
    get_row(db, "playlists", playlist_id, "playlist")
    return paginate(
        db,
        "SELECT * FROM songs WHERE id IN (SELECT song_id FROM playlist_songs WHERE playlist_id = ?)",
        [playlist_id],
        page,
    )
