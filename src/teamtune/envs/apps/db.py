"""The apps' state: one in-memory SQLite database generated from a seed, and snapshots to compare states."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

SCHEMA = """
CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT,
                       city TEXT, relation TEXT, birthday TEXT);
CREATE TABLE events (id INTEGER PRIMARY KEY, title TEXT, date TEXT, time TEXT, duration_min INTEGER,
                     location TEXT, contact_id INTEGER);
CREATE TABLE messages (id INTEGER PRIMARY KEY, contact_id INTEGER, direction TEXT, text TEXT, date TEXT,
                       read INTEGER);
CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, tag TEXT, pinned INTEGER);
CREATE TABLE account (id INTEGER PRIMARY KEY, balance REAL);
CREATE TABLE payments (id INTEGER PRIMARY KEY, contact_id INTEGER, amount REAL, kind TEXT, note TEXT, date TEXT);
CREATE TABLE requests (id INTEGER PRIMARY KEY, contact_id INTEGER, amount REAL, note TEXT, date TEXT,
                       direction TEXT, status TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL, stock INTEGER);
CREATE TABLE cart (id INTEGER PRIMARY KEY, product_id INTEGER UNIQUE, quantity INTEGER);
CREATE TABLE orders (id INTEGER PRIMARY KEY, date TEXT, items TEXT, total REAL, status TEXT);
CREATE TABLE songs (id INTEGER PRIMARY KEY, title TEXT, artist TEXT, genre TEXT, seconds INTEGER, liked INTEGER);
CREATE TABLE playlists (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE playlist_songs (id INTEGER PRIMARY KEY, playlist_id INTEGER, song_id INTEGER);
"""

FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Dan",
    "Ella",
    "Finn",
    "Grace",
    "Hugo",
    "Iris",
    "Jack",
    "Kara",
    "Liam",
    "Maya",
    "Noah",
    "Olive",
    "Paul",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Victor",
    "Wren",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Adams",
    "Brown",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Patel",
    "Rossi",
    "Silva",
    "Tanaka",
    "Weber",
]
CITIES = ["Lisbon", "Austin", "Berlin", "Osaka", "Toronto", "Nairobi", "Lyon"]
RELATIONS = ["friend", "family", "coworker"]
NOTE_TAGS = ["work", "home", "travel", "ideas"]
NOTE_TOPICS = [
    "packing list",
    "book ideas",
    "meeting notes",
    "recipes",
    "budget",
    "garden plan",
    "gift ideas",
]
EVENT_TITLES = ["Lunch", "Coffee", "Team sync", "Dentist", "Yoga", "Dinner", "Call", "Movie night"]
PAY_NOTES = ["dinner", "concert tickets", "taxi", "groceries", "rent share", "birthday gift", "coffee"]
PRODUCTS = {
    "kitchen": ["kettle", "frying pan", "chef knife", "coffee grinder", "toaster"],
    "books": ["novel", "cookbook", "atlas", "poetry collection", "biography"],
    "electronics": ["headphones", "charger", "keyboard", "webcam", "speaker"],
    "garden": ["watering can", "shovel", "seed pack", "hose", "planter"],
}
ARTISTS = ["The Tides", "Nova Lane", "Echo Park", "Miles Ray", "Sol Duo", "Juniper"]
GENRES = ["rock", "jazz", "pop", "folk", "electronic"]
WORDS = ["blue", "night", "river", "gold", "summer", "city", "light", "wild", "home", "road", "fire", "rain"]


def today(seed: int) -> dt.date:
    """Each world has its own 'today', so tasks that mention dates vary with the seed."""
    return dt.date(2024, 1, 1) + dt.timedelta(days=random.Random(seed).randrange(0, 330))


def generate(seed: int) -> sqlite3.Connection:
    """A fresh database for `seed`: people, and what they share across apps."""
    rng = random.Random(seed)
    day0 = today(seed)
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)

    def day(lo: int, hi: int) -> str:
        return (day0 + dt.timedelta(days=rng.randint(lo, hi))).isoformat()

    names = rng.sample([(f, la) for f in FIRST for la in LAST], rng.randint(14, 20))
    for i, (first, last) in enumerate(names, 1):
        db.execute(
            "INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?)",
            (
                i,
                first,
                last,
                f"{first.lower()}.{last.lower()}@mail.com",
                f"555-{rng.randint(1000, 9999)}",
                rng.choice(CITIES),
                rng.choice(RELATIONS),
                f"19{rng.randint(60, 99)}-{day(0, 364)[5:]}",
            ),
        )
    n_contacts = len(names)
    for _ in range(rng.randint(8, 14)):
        db.execute(
            "INSERT INTO events (title,date,time,duration_min,location,contact_id) VALUES (?,?,?,?,?,?)",
            (
                rng.choice(EVENT_TITLES),
                day(-10, 20),
                f"{rng.randint(8, 19):02d}:{rng.choice(['00', '30'])}",
                rng.choice([30, 60, 90]),
                rng.choice(["office", "cafe", "home", "park"]),
                rng.choice([None, rng.randint(1, n_contacts)]),
            ),
        )
    for _ in range(rng.randint(15, 25)):
        db.execute(
            "INSERT INTO messages (contact_id,direction,text,date,read) VALUES (?,?,?,?,?)",
            (
                rng.randint(1, n_contacts),
                rng.choice(["in", "out"]),
                f"About the {rng.choice(WORDS)} {rng.choice(['plan', 'trip', 'party', 'photos'])}",
                day(-20, 0),
                rng.choice([0, 1]),
            ),
        )
    for _ in range(rng.randint(5, 9)):
        topic = rng.choice(NOTE_TOPICS)
        db.execute(
            "INSERT INTO notes (title,body,tag,pinned) VALUES (?,?,?,?)",
            (
                topic.capitalize(),
                f"{topic}: {', '.join(rng.sample(WORDS, 3))}",
                rng.choice(NOTE_TAGS),
                rng.choice([0, 0, 1]),
            ),
        )
    db.execute("INSERT INTO account VALUES (1, ?)", (float(rng.randint(400, 2000)),))
    for _ in range(rng.randint(8, 14)):
        db.execute(
            "INSERT INTO payments (contact_id,amount,kind,note,date) VALUES (?,?,?,?,?)",
            (
                rng.randint(1, n_contacts),
                float(rng.randint(5, 120)),
                rng.choice(["sent", "received"]),
                rng.choice(PAY_NOTES),
                day(-40, 0),
            ),
        )
    for _ in range(rng.randint(4, 9)):
        db.execute(
            "INSERT INTO requests (contact_id,amount,note,date,direction,status) VALUES (?,?,?,?,?,?)",
            (
                rng.randint(1, n_contacts),
                float(rng.randint(5, 90)),
                rng.choice(PAY_NOTES),
                day(-20, 0),
                rng.choice(["from_me", "to_me"]),
                rng.choice(["pending", "pending", "paid"]),
            ),
        )
    for cat, items in PRODUCTS.items():
        for item in items:
            db.execute(
                "INSERT INTO products (name,category,price,stock) VALUES (?,?,?,?)",
                (item, cat, float(rng.randint(4, 150)), rng.choice([0, 3, 10, 25])),
            )
    for _ in range(rng.randint(1, 3)):
        db.execute(
            "INSERT INTO orders (date,items,total,status) VALUES (?,?,?,?)",
            (day(-30, -1), "[]", float(rng.randint(10, 200)), rng.choice(["delivered", "shipped"])),
        )
    for _ in range(rng.randint(18, 26)):
        db.execute(
            "INSERT INTO songs (title,artist,genre,seconds,liked) VALUES (?,?,?,?,?)",
            (
                f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS).capitalize()}",
                rng.choice(ARTISTS),
                rng.choice(GENRES),
                rng.randint(140, 320),
                rng.choice([0, 0, 1]),
            ),
        )
    db.execute("INSERT INTO playlists (name) VALUES ('Favourites')")
    db.commit()
    return db


Snapshot = dict[str, dict[int, tuple]]


def snapshot(db: sqlite3.Connection) -> Snapshot:
    """Every table as {id: row}."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return {t: {row[0]: tuple(row) for row in db.execute(f"SELECT * FROM {t}")} for t in tables}


Diff = dict[tuple[str, int], tuple | None]


def diff(before: Snapshot, after: Snapshot) -> Diff:
    """{(table, id): new row, or None when deleted} for every row that changed."""
    out: Diff = {}
    for table, rows in after.items():
        old = before.get(table, {})
        for rid, row in rows.items():
            if old.get(rid) != row:
                out[(table, rid)] = row
        for rid in old.keys() - rows.keys():
            out[(table, rid)] = None
    return out
