"""Create and seed the demo database.

    python -m dihya_demo.seed --db PATH [--users-per-tenant N] [--tenant SLUG ...] [--seed N]

The data is realistic but fictitious and deterministic: the same arguments
always give the same rows.  Contact details use reserved ranges (example.*
mail domains, fiction phone ranges, documentation IP networks).  Running the
command against a database that is already seeded changes nothing.

A new database is built next to its final path and renamed into place, so an
interrupted run never leaves a half-seeded file behind.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from .db import CONSENT_PURPOSES, ORDER_STATUSES, SCHEMA, SCHEMA_VERSION

DEFAULT_TENANTS = ("acme", "globex", "initech")
DEFAULT_USERS_PER_TENANT = 50
DEFAULT_SEED = 20240601

TENANT_NAMES = {"acme": "Acme Corporation", "globex": "Globex Corporation", "initech": "Initech"}

FIRST_NAMES = (
    "Dihya",
    "Kahina",
    "Massinissa",
    "Tiziri",
    "Yuba",
    "Amayas",
    "Lounes",
    "Thiziri",
    "Meriem",
    "Yasmine",
    "Karim",
    "Sofiane",
    "Nadia",
    "Samir",
    "Lina",
    "Inès",
    "Hugo",
    "Lucas",
    "Emma",
    "Léa",
    "Noah",
    "Olivia",
    "Liam",
    "Sophie",
    "Thomas",
    "Julia",
    "Mateo",
    "Sara",
    "Omar",
    "Aya",
    "Ibrahim",
    "Fatima",
    "Chloé",
    "Zoé",
    "Mehdi",
    "Anaïs",
    "Élodie",
    "Jonas",
    "Marta",
    "Piotr",
)
LAST_NAMES = (
    "Amrani",
    "Belkacem",
    "Haddad",
    "Meziane",
    "Ait Ali",
    "Ouali",
    "Martin",
    "Bernard",
    "Dubois",
    "Moreau",
    "Laurent",
    "Smith",
    "Johnson",
    "García",
    "Müller",
    "Rossi",
    "Novak",
    "Kowalski",
    "Nguyen",
    "Costa",
    "Benali",
    "Lefèvre",
    "O'Brien",
    "Schmidt",
    "Fernandes",
    "Idir",
    "Saadi",
    "Brahimi",
    "Girard",
    "Roux",
)
MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")
PLACES = (
    ("FR", "Paris", "750{:02d}", ("rue des Lilas", "avenue Victor Hugo", "boulevard Voltaire", "rue de la Paix")),
    ("FR", "Lyon", "6900{:d}", ("rue Mercière", "quai Saint-Antoine", "rue de la République")),
    ("FR", "Marseille", "130{:02d}", ("rue Paradis", "boulevard Longchamp", "rue Sainte")),
    ("GB", "London", "E{:d} 6AN", ("High Street", "Station Road", "Church Lane")),
    ("US", "Springfield", "627{:02d}", ("Main Street", "Maple Avenue", "Oak Street")),
)
POST_TOPICS = (
    "Release notes",
    "Weekly digest",
    "Onboarding tips",
    "Question about invoices",
    "Team offsite",
    "Feature request",
    "Customer story",
    "Maintenance window",
    "Hiring update",
    "Security reminder",
)
POST_SENTENCES = (
    "We rolled this out to a first group of customers last week.",
    "Feedback so far has been positive, with a few rough edges.",
    "Please reply here if you notice anything unusual.",
    "The dashboard now loads noticeably faster on large accounts.",
    "Remember to review your notification settings.",
    "Exports are available in CSV and JSON.",
    "Thanks to everyone who joined the call on Thursday.",
    "Next steps are tracked in the shared planning board.",
)
MESSAGE_BODIES = (
    "Hi, do you have a minute today?",
    "Thanks for the quick answer!",
    "Can you send me the latest invoice?",
    "I've updated the document, have a look when you can.",
    "Are we still on for tomorrow at 10?",
    "The delivery arrived, everything looks good.",
    "Could you check the order status for me?",
    "Great post yesterday, very helpful.",
    "I'll be out of office next week.",
    "Let me know if you need anything else.",
)
PRODUCTS = (
    ("Ergonomic chair", 24900),
    ("Standing desk", 54900),
    ("Monitor arm", 8900),
    ("USB-C dock", 12900),
    ("Noise-cancelling headset", 19900),
    ("Mechanical keyboard", 11900),
    ("Wireless mouse", 3900),
    ("Laptop stand", 4500),
    ("Desk lamp", 5900),
    ("Cable kit", 1900),
    ("Webcam HD", 7900),
    ("Notebook pack", 1200),
)
CONSENT_SOURCES = ("signup_form", "preference_center", "cookie_banner", "support_request", "import")

EPOCH = datetime(2022, 1, 1, tzinfo=UTC)
HORIZON = datetime(2025, 6, 30, tzinfo=UTC)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _between(rng: random.Random, start: datetime, end: datetime = HORIZON) -> datetime:
    span = max(int((end - start).total_seconds()), 1)
    return start + timedelta(seconds=rng.randrange(span))


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _phone(rng: random.Random, country: str) -> str:
    if country == "FR":  # fiction range 06 39 98 xx xx
        return f"+33 6 39 98 {rng.randrange(100):02d} {rng.randrange(100):02d}"
    if country == "GB":  # drama range 07700 900000-900999
        return f"+44 7700 900{rng.randrange(1000):03d}"
    return f"+1 202-555-01{rng.randrange(100):02d}"  # fiction range 555-0100..0199


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
    network = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return f"{network}.{rng.randrange(1, 255)}"


def _address(rng: random.Random) -> tuple[str, str]:
    country, city, postcode, streets = rng.choice(PLACES)
    return country, f"{rng.randrange(1, 180)} {rng.choice(streets)}, {postcode.format(rng.randrange(1, 10))} {city}, {country}"


def is_seeded(conn: sqlite3.Connection) -> bool:
    """True when the database holds a finished seed."""
    try:
        row = conn.execute("SELECT value FROM schema_meta WHERE key = 'seed'").fetchone()
    except sqlite3.OperationalError:
        return False
    return row is not None


class _User(NamedTuple):
    id: int
    joined: datetime
    address: str


def _seed_products(conn: sqlite3.Connection, rng: random.Random, tenant_id: int, slug: str) -> list[int]:
    product_ids = []
    for index, (name, price) in enumerate(PRODUCTS, start=1):
        cursor = conn.execute(
            "INSERT INTO products (tenant_id, sku, name, unit_price_cents) VALUES (?, ?, ?, ?)",
            (tenant_id, f"{slug[:3].upper()}-{index:04d}", name, price + rng.randrange(-500, 500, 100)),
        )
        product_ids.append(int(cursor.lastrowid or 0))
    return product_ids


def _seed_users(conn: sqlite3.Connection, rng: random.Random, tenant_id: int, since: datetime, count: int) -> list[_User]:
    users: list[_User] = []
    emails: set[str] = set()
    for dummy in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{_ascii(first)}.{_ascii(last)}"
        email = f"{local}@{rng.choice(MAIL_DOMAINS)}"
        while email in emails:
            email = f"{local}{rng.randrange(2, 100)}@{rng.choice(MAIL_DOMAINS)}"
        emails.add(email)
        country, address = _address(rng)
        joined = _between(rng, since)
        last_login = _between(rng, joined) if rng.random() < 0.9 else None
        phone = _phone(rng, country) if rng.random() < 0.85 else None
        cursor = conn.execute(
            """INSERT INTO users (tenant_id, name, email, phone, address, last_login_ip, last_login_at, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                tenant_id,
                f"{first} {last}",
                email,
                phone,
                address,
                _ip(rng) if last_login else None,
                _ts(last_login) if last_login else None,
                _ts(joined),
            ),
        )
        users.append(_User(int(cursor.lastrowid or 0), joined, address))
    return users


def _seed_posts(conn: sqlite3.Connection, rng: random.Random, users: Sequence[_User]) -> None:
    for user in users:
        for dummy in range(rng.choice((0, 0, 1, 2, 3, 5))):
            sentences = rng.sample(POST_SENTENCES, k=rng.randrange(2, 5))
            conn.execute(
                "INSERT INTO posts (author_id, title, body, created_at) VALUES (?, ?, ?, ?)",
                (user.id, rng.choice(POST_TOPICS), " ".join(sentences), _ts(_between(rng, user.joined))),
            )


def _seed_social(conn: sqlite3.Connection, rng: random.Random, users: Sequence[_User]) -> None:
    """Follows and direct messages, always between users of the same tenant."""
    for user in users:
        others = [other for other in users if other.id != user.id]
        if not others:
            continue
        for followee in rng.sample(others, k=min(len(others), rng.randrange(0, 9))):
            conn.execute(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)",
                (user.id, followee.id, _ts(_between(rng, max(user.joined, followee.joined)))),
            )
        for dummy in range(rng.randrange(0, 8)):
            recipient = rng.choice(others)
            sent = _between(rng, max(user.joined, recipient.joined))
            read = _ts(sent + timedelta(minutes=rng.randrange(1, 4000))) if rng.random() < 0.7 else None
            conn.execute(
                "INSERT INTO messages (sender_id, recipient_id, body, sent_at, read_at) VALUES (?, ?, ?, ?, ?)",
                (user.id, recipient.id, rng.choice(MESSAGE_BODIES), _ts(sent), read),
            )


def _seed_consents(conn: sqlite3.Connection, rng: random.Random, users: Sequence[_User]) -> None:
    """A consent history per user and purpose: the first choice, then later changes."""
    for user in users:
        for purpose in CONSENT_PURPOSES:
            moment = user.joined
            granted = rng.random() < 0.6
            source = "cookie_banner" if purpose == "analytics" else "signup_form"
            for change in range(rng.choice((1, 1, 1, 2, 3))):
                if change:
                    granted = not granted
                    moment = _between(rng, moment)
                    source = rng.choice(CONSENT_SOURCES[1:])
                conn.execute(
                    "INSERT INTO consents (user_id, purpose, granted, source, at) VALUES (?, ?, ?, ?, ?)",
                    (user.id, purpose, int(granted), source, _ts(moment)),
                )


def _seed_orders(conn: sqlite3.Connection, rng: random.Random, tenant_id: int, users: Sequence[_User], product_ids: Sequence[int]) -> None:
    prices = dict(conn.execute("SELECT id, unit_price_cents FROM products WHERE tenant_id = ?", (tenant_id,)).fetchall())
    for user in users:
        for dummy in range(rng.choice((0, 0, 1, 1, 2, 3, 5))):
            order_id = conn.execute(
                "INSERT INTO orders (tenant_id, user_id, status, currency, shipping_address, created_at) VALUES (?, ?, ?, 'EUR', ?, ?)",
                (tenant_id, user.id, rng.choices(ORDER_STATUSES, weights=(1, 2, 2, 8, 1, 1))[0], user.address, _ts(_between(rng, user.joined))),
            ).lastrowid
            for product_id in rng.sample(product_ids, k=rng.randrange(1, 5)):
                conn.execute(
                    "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (?, ?, ?, ?)",
                    (order_id, product_id, rng.choice((1, 1, 1, 2, 3)), prices[product_id]),
                )


def _seed_tenant(conn: sqlite3.Connection, slug: str, users_per_tenant: int, seed: int) -> None:
    rng = random.Random(f"{seed}/{slug}")
    created = _between(rng, EPOCH, EPOCH + timedelta(days=90))
    tenant_id = int(
        conn.execute("INSERT INTO tenants (slug, name, created_at) VALUES (?, ?, ?)", (slug, TENANT_NAMES.get(slug, slug.title()), _ts(created))).lastrowid or 0
    )
    product_ids = _seed_products(conn, rng, tenant_id, slug)
    users = _seed_users(conn, rng, tenant_id, created, users_per_tenant)
    _seed_posts(conn, rng, users)
    _seed_social(conn, rng, users)
    _seed_consents(conn, rng, users)
    _seed_orders(conn, rng, tenant_id, users, product_ids)


def seed_database(conn: sqlite3.Connection, tenants: Sequence[str], users_per_tenant: int, seed: int) -> None:
    """Create the schema and the rows in one transaction."""
    conn.execute("PRAGMA foreign_keys = ON")
    conn.executescript(SCHEMA)
    with conn:
        for slug in tenants:
            _seed_tenant(conn, slug, users_per_tenant, seed)
        conn.executemany(
            "INSERT INTO schema_meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("seed", str(seed)),
                ("tenants", ",".join(tenants)),
                ("users_per_tenant", str(users_per_tenant)),
            ],
        )
    problems = conn.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise sqlite3.IntegrityError(f"foreign key violations after seeding: {problems[:5]}")


def seed_path(path: Path, tenants: Sequence[str], users_per_tenant: int, seed: int) -> bool:
    """Seed the database at ``path``; False when it already was seeded.

    An existing file is only replaced when it holds no table at all.
    """
    if path.exists():
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            if is_seeded(conn):
                return False
            if conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise FileExistsError(f"{path} holds tables but no finished seed; refusing to replace it")
        finally:
            conn.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        seed_database(conn, tenants, users_per_tenant, seed)
    except BaseException:
        conn.close()
        partial.unlink(missing_ok=True)
        raise
    conn.close()
    os.chmod(partial, 0o640)
    os.replace(partial, path)
    return True


def _counts(path: Path) -> dict[str, int]:
    tables = ("tenants", "users", "posts", "messages", "follows", "consents", "products", "orders", "order_items")
    conn = sqlite3.connect(path)
    try:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m dihya_demo.seed", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--db", required=True, type=Path, help="SQLite database file to create")
    parser.add_argument("--users-per-tenant", type=int, default=DEFAULT_USERS_PER_TENANT, help="users per tenant (default %(default)s)")
    parser.add_argument(
        "--tenant", action="append", dest="tenants", metavar="SLUG", help=f"tenant to create, repeatable (default {', '.join(DEFAULT_TENANTS)})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    tenants = tuple(dict.fromkeys(args.tenants or DEFAULT_TENANTS))
    if args.users_per_tenant < 1:
        parser.error("--users-per-tenant must be at least 1")
    for slug in tenants:
        if not slug.isascii() or not slug.isalnum() or not slug[0].isalpha() or slug != slug.lower():
            parser.error(f"invalid tenant slug {slug!r}: lower-case letters and digits, starting with a letter")
    try:
        seeded = seed_path(args.db, tenants, args.users_per_tenant, args.seed)
    except (OSError, sqlite3.DatabaseError) as exc:
        print(f"{args.db}: {exc}", file=sys.stderr)
        return 1
    if not seeded:
        print(f"{args.db}: already seeded, nothing to do")
        return 0
    summary = ", ".join(f"{count} {table}" for table, count in _counts(args.db).items())
    print(f"{args.db}: seeded {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
