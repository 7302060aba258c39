"""Contacts, calendar, messages and notes."""

from __future__ import annotations

from .api import api, get_row, paginate, search_rows, update_row, where_clause

# contacts ---------------------------------------------------------------------------------------------


@api("contacts")
def search(db, query: str = "", relation: str | None = None, city: str | None = None, page: int = 0) -> dict:
    """Find contacts whose name or email contains `query`, optionally by relation (friend/family/coworker) or city."""
    return search_rows(
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
    return get_row(db, "contacts", contact_id, "contact")


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
    return get_row(db, "contacts", cur.lastrowid, "contact")


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
    return update_row(
        db,
        "contacts",
        contact_id,
        "contact",
        {"email": email, "phone": phone, "city": city, "relation": relation},
    )


@api("contacts")
def delete(db, contact_id: int) -> dict:
    """Remove a contact."""
    get_row(db, "contacts", contact_id, "contact")
    db.execute("DELETE FROM contacts WHERE id = ?", [contact_id])
    return {"deleted": contact_id}


# calendar ---------------------------------------------------------------------------------------------


@api("calendar")
def list_events(db, date: str | None = None, contact_id: int | None = None, page: int = 0) -> dict:
    """Events, optionally on one date (YYYY-MM-DD) or with one contact."""
    where, args = where_clause({"date": date, "contact_id": contact_id})
    return paginate(db, f"SELECT * FROM events{where}", args, page)


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
        get_row(db, "contacts", contact_id, "contact")
    cur = db.execute(
        "INSERT INTO events (title,date,time,duration_min,location,contact_id) VALUES (?,?,?,?,?,?)",
        [title, date, time, duration_min, location, contact_id],
    )
    return get_row(db, "events", cur.lastrowid, "event")


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
    return update_row(
        db, "events", event_id, "event", {"date": date, "time": time, "title": title, "location": location}
    )


@api("calendar")
def delete_event(db, event_id: int) -> dict:
    """Cancel an event."""
    get_row(db, "events", event_id, "event")
    db.execute("DELETE FROM events WHERE id = ?", [event_id])
    return {"deleted": event_id}


# messages ---------------------------------------------------------------------------------------------


@api("messages")
def list_messages(db, contact_id: int | None = None, unread_only: bool = False, page: int = 0) -> dict:
    """Messages, optionally with one contact or only unread ones."""
    where, args = where_clause({"contact_id": contact_id, "read": 0 if unread_only else None})
    return paginate(db, f"SELECT * FROM messages{where}", args, page)


@api("messages")
def send(db, contact_id: int, text: str) -> dict:
    """Send `text` to a contact."""
    get_row(db, "contacts", contact_id, "contact")
    cur = db.execute(
        "INSERT INTO messages (contact_id,direction,text,date,read) VALUES (?,?,?,?,1)",
        [contact_id, "out", text, "today"],
    )
    return get_row(db, "messages", cur.lastrowid, "message")


@api("messages")
def mark_read(db, message_id: int) -> dict:
    """Mark a message as read."""
    return update_row(db, "messages", message_id, "message", {"read": 1})


@api("messages")
def delete_message(db, message_id: int) -> dict:
    """Delete a message."""
    get_row(db, "messages", message_id, "message")
    db.execute("DELETE FROM messages WHERE id = ?", [message_id])
    return {"deleted": message_id}


# notes ------------------------------------------------------------------------------------------------


@api("notes")
def search_notes(db, query: str = "", tag: str | None = None, page: int = 0) -> dict:
    """Notes whose title or body contains `query`, optionally by tag."""
    return search_rows(db, "notes", ("title", "body"), query, {"tag": tag}, page)


@api("notes")
def create_note(db, title: str, body: str, tag: str = "") -> dict:
    """Write a new note."""
    cur = db.execute("INSERT INTO notes (title,body,tag,pinned) VALUES (?,?,?,0)", [title, body, tag])
    return get_row(db, "notes", cur.lastrowid, "note")


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
    return update_row(
        db,
        "notes",
        note_id,
        "note",
        {"title": title, "body": body, "tag": tag, "pinned": None if pinned is None else int(pinned)},
    )


@api("notes")
def delete_note(db, note_id: int) -> dict:
    """Delete a note."""
    get_row(db, "notes", note_id, "note")
    db.execute("DELETE FROM notes WHERE id = ?", [note_id])
    return {"deleted": note_id}
