"""Task templates that stay inside one app. Each returns a Spec for this world, or None when it does not fit."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

from .db import CITIES, FIRST, LAST, NOTE_TAGS, RELATIONS
from .spec import Spec, SubTask, act, answer, find_contact, fmt, full_name, lookup, money, paged, rows

MAX_ACTS = 5  # keeps every task within 8 sub-tasks


def add_contact(db: sqlite3.Connection, rng: random.Random, today: dt.date) -> Spec | None:
    first, last = rng.choice(FIRST), rng.choice(LAST) + "-" + rng.choice(LAST)
    email, city, rel = f"{first.lower()}@{last.lower()}.org", rng.choice(CITIES), rng.choice(RELATIONS)
    call = f"contacts.create({fmt(first_name=first, last_name=last, email=email, city=city, relation=rel)})"
    return Spec(
        f"Add {first} {last} ({email}, lives in {city}) to my contacts as {rel}.",
        [act(f"Create the contact {first} {last}.", "contacts", call)],
    )


def update_city(db, rng, today) -> Spec | None:
    c = rng.choice(rows(db, "SELECT * FROM contacts"))
    city = rng.choice([x for x in CITIES if x != c["city"]])
    return Spec(
        f"{full_name(c)} moved to {city}. Update their contact.",
        [
            find_contact(c),
            act(
                f"Set contact {c['id']}'s city to {city}.",
                "contacts",
                f"contacts.update({fmt(contact_id=c['id'], city=city)})",
            ),
        ],
    )


def delete_contact(db, rng, today) -> Spec | None:
    c = rng.choice(rows(db, "SELECT * FROM contacts"))
    return Spec(
        f"Remove {full_name(c)} from my contacts.",
        [
            find_contact(c),
            act(f"Delete contact {c['id']}.", "contacts", f"contacts.delete({fmt(contact_id=c['id'])})"),
        ],
    )


def count_relation(db, rng, today) -> Spec | None:
    rel, city = rng.choice(RELATIONS), rng.choice(CITIES)
    found = rows(db, "SELECT id FROM contacts WHERE relation=? AND city=?", (rel, city))
    look = lookup(
        f"List my {rel} contacts in {city}.",
        "contacts",
        paged("contacts.search", len(found), relation=rel, city=city),
        *[r["id"] for r in found],
    )
    return Spec(
        f"How many of my contacts are {rel}s living in {city}?", [look, answer(len(found))], str(len(found))
    )


def create_event(db, rng, today) -> Spec | None:
    date = (today + dt.timedelta(days=rng.randint(1, 14))).isoformat()
    title, time = rng.choice(["Yoga", "Piano lesson", "Haircut", "Gym"]), f"{rng.randint(8, 19):02d}:00"
    call = f"calendar.create_event({fmt(title=title, date=date, time=time, duration_min=60)})"
    return Spec(
        f"Put a one-hour '{title}' in my calendar on {date} at {time}.",
        [act(f"Create the event '{title}'.", "calendar", call)],
    )


def cancel_day(db, rng, today) -> Spec | None:
    days = [
        r["date"]
        for r in rows(db, "SELECT date, COUNT(*) n FROM events GROUP BY date HAVING n <= ?", (MAX_ACTS,))
    ]
    if not days:
        return None
    date = rng.choice(days)
    evs = rows(db, "SELECT * FROM events WHERE date=?", (date,))
    subs = [
        lookup(
            f"List my events on {date}.",
            "calendar",
            [f"calendar.list_events({fmt(date=date)})"],
            *[e["id"] for e in evs],
        )
    ]
    subs += [
        act(
            f"Delete event {e['id']} ({e['title']}).",
            "calendar",
            f"calendar.delete_event({fmt(event_id=e['id'])})",
        )
        for e in evs
    ]
    return Spec(f"Clear my calendar on {date}: cancel every event that day.", subs)


def move_event(db, rng, today) -> Spec | None:
    evs = rows(db, "SELECT * FROM events e WHERE (SELECT COUNT(*) FROM events x WHERE x.date=e.date) = 1")
    if not evs:
        return None
    e = rng.choice(evs)
    new = (dt.date.fromisoformat(e["date"]) + dt.timedelta(days=rng.randint(1, 3))).isoformat()
    return Spec(
        f"Move my {e['title']} on {e['date']} to {new}, same time.",
        [
            lookup(
                f"Find the {e['title']} event on {e['date']}.",
                "calendar",
                [f"calendar.list_events({fmt(date=e['date'])})"],
                e["id"],
            ),
            act(
                f"Change event {e['id']}'s date to {new}.",
                "calendar",
                f"calendar.update_event({fmt(event_id=e['id'], date=new)})",
            ),
        ],
    )


def write_note(db, rng, today) -> Spec | None:
    title = rng.choice(["Weekend plan", "Shopping list", "Ideas for the trip", "Questions for the doctor"])
    body, tag = (
        f"{rng.choice(['buy', 'ask about', 'check'])} {rng.choice(['tickets', 'bread', 'the visa', 'paint'])}",
        rng.choice(NOTE_TAGS),
    )
    return Spec(
        f"Write a note titled '{title}' saying '{body}', tagged {tag}.",
        [
            act(
                f"Create the note '{title}'.",
                "notes",
                f"notes.create_note({fmt(title=title, body=body, tag=tag)})",
            )
        ],
    )


def pin_tag(db, rng, today) -> Spec | None:
    tags = [
        r["tag"]
        for r in rows(
            db, "SELECT tag, COUNT(*) n FROM notes WHERE pinned=0 GROUP BY tag HAVING n <= ?", (MAX_ACTS,)
        )
    ]
    if not tags:
        return None
    tag = rng.choice(tags)
    notes = rows(db, "SELECT * FROM notes WHERE tag=?", (tag,))
    todo = [n for n in notes if not n["pinned"]]
    subs = [
        lookup(
            f"List my notes tagged {tag}.",
            "notes",
            paged("notes.search_notes", len(notes), tag=tag),
            *[n["id"] for n in notes],
        )
    ]
    subs += [
        act(f"Pin note {n['id']}.", "notes", f"notes.update_note({fmt(note_id=n['id'], pinned=True)})")
        for n in todo
    ]
    return Spec(f"Pin every note tagged {tag} that is not pinned yet.", subs)


def balance_question(db, rng, today) -> Spec | None:
    bal = money(db.execute("SELECT balance FROM account").fetchone()[0])
    return Spec(
        "What is my payments account balance?",
        [
            SubTask("Read the account balance.", "lookup", "payments", ["payments.balance()"], [bal]),
            answer(bal),
        ],
        bal,
    )


PENDING_TO_ME = "SELECT * FROM requests WHERE direction='from_me' AND status='pending'"


def pending_lookup(reqs: list[dict]) -> SubTask:
    call = f"payments.list_requests({fmt(direction='from_me', status='pending')})"
    return lookup(
        "List the pending requests that others sent me.", "payments", [call], *[r["id"] for r in reqs]
    )


def pay_pending(db, rng, today) -> Spec | None:
    reqs = rows(db, PENDING_TO_ME)
    bal = db.execute("SELECT balance FROM account").fetchone()[0]
    if not reqs or len(reqs) > MAX_ACTS or sum(r["amount"] for r in reqs) > bal:
        return None
    subs = [pending_lookup(reqs)]
    subs += [
        act(
            f"Pay request {r['id']} ({money(r['amount'])} for {r['note']}).",
            "payments",
            f"payments.pay_request({fmt(request_id=r['id'])})",
        )
        for r in reqs
    ]
    return Spec("Pay every pending money request that people sent me.", subs)


def decline_small(db, rng, today) -> Spec | None:
    limit = rng.choice([20, 30, 40])
    reqs = rows(db, PENDING_TO_ME)
    small = [r for r in reqs if r["amount"] < limit]
    if not small or len(small) > MAX_ACTS:
        return None
    subs = [pending_lookup(reqs)]
    subs += [
        act(
            f"Decline request {r['id']} ({money(r['amount'])}).",
            "payments",
            f"payments.decline_request({fmt(request_id=r['id'])})",
        )
        for r in small
    ]
    return Spec(f"Decline every pending request sent to me that is under ${limit}.", subs)


def _buy(p: dict, qty: int = 1) -> list[SubTask]:
    return [
        lookup(
            f"Find the {p['name']} in the shop.",
            "shopping",
            [f"shopping.search_products({fmt(query=p['name'])})"],
            p["id"],
        ),
        SubTask(
            f"Add {qty} of product {p['id']} to the cart.",
            "act",
            "shopping",
            [
                f"shopping.add_to_cart({fmt(product_id=p['id'], quantity=qty)})"
                if qty > 1
                else f"shopping.add_to_cart({fmt(product_id=p['id'])})"
            ],
        ),
    ]


CHECKOUT = act("Check out the cart.", "shopping", "shopping.checkout()")


def buy_product(db, rng, today) -> Spec | None:
    ps = rows(db, "SELECT * FROM products WHERE stock >= 2 AND price <= (SELECT balance FROM account) / 2")
    if not ps:
        return None
    p, qty = rng.choice(ps), rng.choice([1, 2])
    return Spec(
        f"Buy {'a' if qty == 1 else 'two'} {p['name']}{'' if qty == 1 else 's'} in the shopping app.",
        [*_buy(p, qty), CHECKOUT],
    )


def buy_two(db, rng, today) -> Spec | None:
    ps = rows(db, "SELECT * FROM products WHERE stock > 0")
    bal = db.execute("SELECT balance FROM account").fetchone()[0]
    pairs = [
        (a, b)
        for a in ps
        for b in ps
        if a["id"] < b["id"] and a["category"] != b["category"] and a["price"] + b["price"] <= bal
    ]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    return Spec(
        f"Order a {a['name']} and a {b['name']} together in one order.", [*_buy(a), *_buy(b), CHECKOUT]
    )


def cheapest_in_category(db, rng, today) -> Spec | None:
    cat = rng.choice(["kitchen", "books", "electronics", "garden"])
    all_ = rows(db, "SELECT * FROM products WHERE category=?", (cat,))
    stock = sorted([p for p in all_ if p["stock"] > 0], key=lambda p: (p["price"], p["id"]))
    if not stock or (len(stock) > 1 and stock[0]["price"] == stock[1]["price"]):
        return None
    p = stock[0]
    if p["price"] > db.execute("SELECT balance FROM account").fetchone()[0]:
        return None
    return Spec(
        f"Buy the cheapest {cat} product that is in stock.",
        [
            lookup(
                f"List the {cat} products and pick the cheapest in stock.",
                "shopping",
                paged("shopping.search_products", len(all_), category=cat),
                p["id"],
            ),
            act(
                f"Add product {p['id']} to the cart.",
                "shopping",
                f"shopping.add_to_cart({fmt(product_id=p['id'])})",
            ),
            CHECKOUT,
        ],
    )


def like_artist(db, rng, today) -> Spec | None:
    artists = [
        r["artist"]
        for r in rows(
            db,
            "SELECT artist, SUM(liked=0) n FROM songs GROUP BY artist HAVING n BETWEEN 1 AND ?",
            (MAX_ACTS,),
        )
    ]
    if not artists:
        return None
    artist = rng.choice(artists)
    songs = rows(db, "SELECT * FROM songs WHERE artist=?", (artist,))
    subs = [
        lookup(
            f"List the songs by {artist}.",
            "music",
            paged("music.search_songs", len(songs), artist=artist),
            *[s["id"] for s in songs],
        )
    ]
    subs += [
        act(f"Like song {s['id']}.", "music", f"music.like_song({fmt(song_id=s['id'])})")
        for s in songs
        if not s["liked"]
    ]
    return Spec(f"Like every song by {artist} that I have not liked yet.", subs)


def genre_playlist(db, rng, today) -> Spec | None:
    genres = [
        r["genre"]
        for r in rows(
            db, "SELECT genre, COUNT(*) n FROM songs GROUP BY genre HAVING n BETWEEN 1 AND ?", (MAX_ACTS - 1,)
        )
    ]
    if not genres:
        return None
    genre = rng.choice(genres)
    songs = rows(db, "SELECT * FROM songs WHERE genre=?", (genre,))
    pid = db.execute("SELECT MAX(id) FROM playlists").fetchone()[0] + 1
    name = f"{genre.capitalize()} mix"
    subs = [
        lookup(
            f"List my {genre} songs.",
            "music",
            paged("music.search_songs", len(songs), genre=genre),
            *[s["id"] for s in songs],
        ),
        act(f"Create the playlist '{name}'.", "music", f"music.create_playlist({fmt(name=name)})"),
    ]
    subs += [
        act(
            f"Add song {s['id']} to playlist {pid}.",
            "music",
            f"music.add_to_playlist({fmt(playlist_id=pid, song_id=s['id'])})",
        )
        for s in songs
    ]
    return Spec(f"Make a playlist called '{name}' with all my {genre} songs.", subs)


def count_liked(db, rng, today) -> Spec | None:
    liked = rows(db, "SELECT id FROM songs WHERE liked=1")
    n = str(len(liked))
    return Spec(
        "How many songs have I liked in the music app?",
        [
            lookup(
                "List my liked songs.",
                "music",
                paged("music.search_songs", len(liked), liked=True),
                *[s["id"] for s in liked],
            ),
            answer(n),
        ],
        n,
    )


def read_from_contact(db, rng, today) -> Spec | None:
    cands = rows(
        db,
        "SELECT c.*, COUNT(m.id) n FROM contacts c JOIN messages m ON m.contact_id=c.id "
        "WHERE m.read=0 GROUP BY c.id HAVING n <= ?",
        (MAX_ACTS,),
    )
    if not cands:
        return None
    c = rng.choice(cands)
    msgs = rows(db, "SELECT * FROM messages WHERE contact_id=? AND read=0", (c["id"],))
    subs = [
        find_contact(c),
        lookup(
            f"List unread messages from contact {c['id']}.",
            "messages",
            [f"messages.list_messages({fmt(contact_id=c['id'], unread_only=True)})"],
            *[m["id"] for m in msgs],
        ),
    ]
    subs += [
        act(f"Mark message {m['id']} as read.", "messages", f"messages.mark_read({fmt(message_id=m['id'])})")
        for m in msgs
    ]
    return Spec(f"Mark all unread messages from {full_name(c)} as read.", subs[: 2 + MAX_ACTS])
