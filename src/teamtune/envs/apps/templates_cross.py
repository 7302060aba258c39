"""Task templates that cross two or three apps (look a person up, then act on them elsewhere)."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

from .db import CITIES
from .spec import Spec, SubTask, act, answer, find_contact, fmt, full_name, lookup, money, paged, rows, seen
from .templates import CHECKOUT, MAX_ACTS, _buy

GREETINGS = [
    "See you soon!",
    "Running 10 minutes late.",
    "Happy birthday!",
    "Thanks for yesterday.",
    "Call me back?",
]


def _text(c: dict, text: str) -> SubTask:
    return act(
        f"Text contact {c['id']}: '{text}'.",
        "messages",
        f"messages.send({fmt(contact_id=c['id'], text=text)})",
    )


def _contact(db, rng, where: str = "1", args: tuple = ()) -> dict | None:
    cs = rows(db, f"SELECT * FROM contacts WHERE {where}", args)
    return rng.choice(cs) if cs else None


def text_contact(db: sqlite3.Connection, rng: random.Random, today: dt.date) -> Spec | None:
    c, text = _contact(db, rng), rng.choice(GREETINGS)
    return Spec(f"Send {full_name(c)} a message saying '{text}'", [find_contact(c), _text(c, text)])


def pay_and_thank(db, rng, today) -> Spec | None:
    bal = db.execute("SELECT balance FROM account").fetchone()[0]
    reqs = rows(
        db,
        "SELECT r.* FROM requests r WHERE direction='from_me' AND status='pending' AND amount <= ? AND "
        "(SELECT COUNT(*) FROM requests x WHERE x.contact_id=r.contact_id AND x.direction='from_me' "
        "AND x.status='pending') = 1",
        (bal,),
    )
    if not reqs:
        return None
    r = rng.choice(reqs)
    c = rows(db, "SELECT * FROM contacts WHERE id=?", (r["contact_id"],))[0]
    return Spec(
        f"Pay {full_name(c)}'s pending request and text them 'Paid, thanks!'",
        [
            find_contact(c),
            lookup(
                f"Find the pending request from contact {c['id']}.",
                "payments",
                [f"payments.list_requests({fmt(direction='from_me', status='pending')})"],
                r["id"],
            ),
            act(f"Pay request {r['id']}.", "payments", f"payments.pay_request({fmt(request_id=r['id'])})"),
            _text(c, "Paid, thanks!"),
        ],
    )


def schedule_with(db, rng, today) -> Spec | None:
    c = _contact(db, rng)
    date, time = (today + dt.timedelta(days=rng.randint(1, 10))).isoformat(), f"{rng.randint(9, 18):02d}:30"
    title = rng.choice(["Coffee", "Lunch", "Walk"])
    return Spec(
        f"Schedule {title.lower()} with {full_name(c)} on {date} at {time} (30 minutes).",
        [
            find_contact(c),
            SubTask(
                f"Create '{title} with {c['first_name']}' with contact {c['id']}.",
                "act",
                "calendar",
                [
                    f"calendar.create_event({fmt(title=f'{title} with ' + c['first_name'], date=date, time=time, duration_min=30, contact_id=c['id'])})"
                ],
            ),
        ],
    )


def request_from_family(db, rng, today) -> Spec | None:
    city, amount = rng.choice(CITIES), float(rng.choice([10, 15, 25, 40]))
    fam = rows(db, "SELECT * FROM contacts WHERE relation='family' AND city=?", (city,))
    if not fam or len(fam) > MAX_ACTS:
        return None
    subs = [
        lookup(
            f"List my family contacts in {city}.",
            "contacts",
            paged("contacts.search", len(fam), relation="family", city=city),
            *[c["id"] for c in fam],
        )
    ]
    subs += [
        act(
            f"Request {money(amount)} from contact {c['id']}.",
            "payments",
            f"payments.request_money({fmt(contact_id=c['id'], amount=amount, note='dinner')})",
        )
        for c in fam
    ]
    return Spec(f"Ask each of my family members who live in {city} for ${money(amount)} for 'dinner'.", subs)


def note_of_friends(db, rng, today) -> Spec | None:
    city = rng.choice(CITIES)
    fr = rows(db, "SELECT * FROM contacts WHERE relation='friend' AND city=?", (city,))
    if not fr:
        return None
    body = ", ".join(sorted(c["first_name"] for c in fr))
    return Spec(
        f"Write a note titled 'Friends in {city}' whose body is the first names of my friends living in "
        f"{city}, in alphabetical order, separated by ', '.",
        [
            lookup(
                f"List my friends in {city}.",
                "contacts",
                paged("contacts.search", len(fr), relation="friend", city=city),
                *[c["id"] for c in fr],
            ),
            act(
                f"Create the note 'Friends in {city}'.",
                "notes",
                f"notes.create_note({fmt(title=f'Friends in {city}', body=body)})",
            ),
        ],
    )


def message_event_person(db, rng, today) -> Spec | None:
    evs = rows(
        db,
        "SELECT e.* FROM events e WHERE contact_id IS NOT NULL AND "
        "(SELECT COUNT(*) FROM events x WHERE x.date=e.date) = 1",
    )
    if not evs:
        return None
    e, text = rng.choice(evs), rng.choice(GREETINGS)
    c = rows(db, "SELECT * FROM contacts WHERE id=?", (e["contact_id"],))[0]
    return Spec(
        f"Text the person I meet on {e['date']}: '{text}'",
        [
            lookup(
                f"Find my event on {e['date']} and who it is with.",
                "calendar",
                [f"calendar.list_events({fmt(date=e['date'])})"],
                e["id"],
            ),
            _text(c, text),
        ],
    )


def pay_back_friends(db, rng, today) -> Spec | None:
    reqs = rows(
        db,
        "SELECT r.* FROM requests r JOIN contacts c ON c.id=r.contact_id WHERE r.direction='from_me' "
        "AND r.status='pending' AND c.relation='friend'",
    )
    bal = db.execute("SELECT balance FROM account").fetchone()[0]
    if not reqs or len(reqs) > 3 or sum(r["amount"] for r in reqs) > bal:
        return None
    n_friends = db.execute("SELECT COUNT(*) FROM contacts WHERE relation='friend'").fetchone()[0]
    subs = [
        SubTask(
            "List the pending requests that others sent me, and my friends.",
            "lookup",
            "payments",
            [f"payments.list_requests({fmt(direction='from_me', status='pending')})"]
            + paged("contacts.search", n_friends, relation="friend"),
            seen(*[r["id"] for r in reqs]),
        )
    ]
    for r in reqs:
        c = {"id": r["contact_id"]}
        subs += [
            act(f"Pay request {r['id']}.", "payments", f"payments.pay_request({fmt(request_id=r['id'])})"),
            _text(c, "Sent!"),
        ]
    return Spec(
        "Pay back every friend who sent me a pending money request, and text each of them 'Sent!'", subs
    )


def birthday_event(db, rng, today) -> Spec | None:
    c = _contact(db, rng)
    month, day = int(c["birthday"][5:7]), int(c["birthday"][8:10])
    when = dt.date(today.year, month, day)
    if when <= today:
        when = dt.date(today.year + 1, month, day)
    title = f"{c['first_name']}'s birthday"
    return Spec(
        f"Add an event '{title}' at 09:00 on {full_name(c)}'s next birthday.",
        [
            SubTask(
                f"Look up {full_name(c)}'s birthday.",
                "lookup",
                "contacts",
                [f"contacts.search({fmt(query=c['last_name'])})"],
                seen(c["id"]) + [c["birthday"]],
            ),
            SubTask(
                f"Create '{title}' on {when.isoformat()}.",
                "act",
                "calendar",
                [
                    f"calendar.create_event({fmt(title=title, date=when.isoformat(), time='09:00', contact_id=c['id'])})"
                ],
            ),
        ],
    )


def gift_for(db, rng, today) -> Spec | None:
    books = sorted(
        rows(db, "SELECT * FROM products WHERE category='books' AND stock > 0"),
        key=lambda p: (p["price"], p["id"]),
    )
    if not books or (len(books) > 1 and books[0]["price"] == books[1]["price"]):
        return None
    if books[0]["price"] > db.execute("SELECT balance FROM account").fetchone()[0]:
        return None
    c, p = _contact(db, rng), books[0]
    look, add = _buy(p)
    look = lookup(
        "Find the cheapest book in stock.",
        "shopping",
        paged("shopping.search_products", 5, category="books"),
        p["id"],
    )
    return Spec(
        f"Buy the cheapest book in stock as a gift and text {full_name(c)} 'Got you a {p['name']}!'",
        [look, add, CHECKOUT, find_contact(c), _text(c, f"Got you a {p['name']}!")],
    )


def forget_contact(db, rng, today) -> Spec | None:
    cands = rows(
        db,
        "SELECT c.*, COUNT(e.id) n FROM contacts c JOIN events e ON e.contact_id=c.id GROUP BY c.id "
        "HAVING n <= ?",
        (MAX_ACTS - 2,),
    )
    if not cands:
        return None
    c = rng.choice(cands)
    evs = rows(db, "SELECT * FROM events WHERE contact_id=?", (c["id"],))
    subs = [
        find_contact(c),
        lookup(
            f"List my events with contact {c['id']}.",
            "calendar",
            [f"calendar.list_events({fmt(contact_id=c['id'])})"],
            *[e["id"] for e in evs],
        ),
    ]
    subs += [
        act(f"Delete event {e['id']}.", "calendar", f"calendar.delete_event({fmt(event_id=e['id'])})")
        for e in evs
    ]
    subs.append(act(f"Delete contact {c['id']}.", "contacts", f"contacts.delete({fmt(contact_id=c['id'])})"))
    return Spec(f"Cancel all my events with {full_name(c)}, then remove them from my contacts.", subs)


def total_sent_to(db, rng, today) -> Spec | None:
    cands = rows(
        db,
        "SELECT c.* FROM contacts c WHERE EXISTS (SELECT 1 FROM payments p WHERE p.contact_id=c.id AND kind='sent')",
    )
    if not cands:
        return None
    c = rng.choice(cands)
    pays = rows(db, "SELECT * FROM payments WHERE contact_id=? AND kind='sent'", (c["id"],))
    total = money(sum(p["amount"] for p in pays))
    return Spec(
        f"How much money have I sent to {full_name(c)} in total?",
        [
            find_contact(c),
            lookup(
                f"List payments sent to contact {c['id']}.",
                "payments",
                paged("payments.history", len(pays), contact_id=c["id"], kind="sent"),
                *[p["id"] for p in pays],
            ),
            answer(total),
        ],
        total,
    )


def plan_party(db, rng, today) -> Spec | None:
    fr = rows(db, "SELECT * FROM contacts WHERE relation='friend'")
    if not 3 <= len(fr) <= MAX_ACTS:
        return None
    date = (today + dt.timedelta(days=rng.randint(3, 12))).isoformat()
    invite = f"Party at mine on {date} at 19:00!"
    guests = ", ".join(sorted(c["first_name"] for c in fr))
    subs = [
        lookup(
            "List all my friends.",
            "contacts",
            paged("contacts.search", len(fr), relation="friend"),
            *[c["id"] for c in fr],
        ),
        act(
            f"Create the event 'Party' on {date} at 19:00.",
            "calendar",
            f"calendar.create_event({fmt(title='Party', date=date, time='19:00', duration_min=180)})",
        ),
    ]
    subs += [_text(c, invite) for c in fr]
    subs.append(
        act(
            "Write the note 'Party guests'.",
            "notes",
            f"notes.create_note({fmt(title='Party guests', body=guests)})",
        )
    )
    return Spec(
        f"Throw a party on {date} at 19:00 for 3 hours: put 'Party' in my calendar, text each of my friends "
        f"'{invite}', and write a note titled 'Party guests' with their first names in alphabetical order, "
        "separated by ', '.",
        subs,
    )
