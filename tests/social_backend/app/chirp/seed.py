"""Create chirp's schema and fill it with fictitious, deterministic data.

    python -m chirp.seed --database-uri sqlite:////path/chirp.sqlite3 [--users N] [--seed N]

The same arguments give the same rows.  A database that already has users is left untouched.
Contact data uses reserved names only (example.org addresses, documentation IP networks).
Password hashes are real werkzeug PBKDF2 hashes (``password-<username>``) with a low iteration
count and salts drawn from the seed, so that seeding stays fast and repeatable.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from datetime import datetime, timedelta, UTC

from flask import Flask

from .models import Comment, Follow, Message, Post, User, db

FIRST = ["Amel", "Yanis", "Lina", "Karim", "Sofia", "Idir", "Maya", "Rayan", "Nora", "Sami", "Ines", "Aksel"]
LAST = ["Haddad", "Mansouri", "Benali", "Kaci", "Ait Ali", "Ferhat", "Zeroual", "Slimani", "Amrani", "Belkacem"]
WORDS = ["sun", "market", "coffee", "river", "book", "train", "garden", "song", "winter", "bread", "mountain", "letter", "music", "city", "tea"]
EPOCH = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ITERATIONS = 1000


def password_hash(password: str, salt: str) -> str:
    """A werkzeug ``pbkdf2:sha256`` hash, which ``check_password_hash`` verifies."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ITERATIONS).hex()
    return f"pbkdf2:sha256:{ITERATIONS}${salt}${digest}"


def _stamp(rng: random.Random) -> str:
    return (EPOCH + timedelta(minutes=rng.randrange(0, 60 * 24 * 300))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for dummy in range(rng.randrange(3, 9))).capitalize() + "."


def seed(users: int, seed_value: int) -> None:
    rng = random.Random(seed_value)
    for number in range(1, users + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        username = f"{first.lower()}{number}"
        db.session.add(User(
            id=number, username=username, email=f"{username}@example.org", display_name=f"{first} {last}",
            about_me=_sentence(rng), password_hash=password_hash(f"password-{username}", rng.randbytes(8).hex()),
            api_token=rng.randbytes(20).hex(), last_seen_ip=f"198.51.100.{number % 250 + 1}",
            member_since=_stamp(rng)))
    db.session.flush()
    pairs = set()
    for follower in range(1, users + 1):
        for followed in rng.sample(range(1, users + 1), k=min(4, users)):
            if followed != follower and (follower, followed) not in pairs:
                pairs.add((follower, followed))
                db.session.add(Follow(follower_id=follower, followed_id=followed))
    post_id = 0
    for author in range(1, users + 1):
        for dummy in range(3):
            post_id += 1
            db.session.add(Post(id=post_id, user_id=author, body=_sentence(rng), timestamp=_stamp(rng)))
    db.session.flush()
    for comment_id in range(1, users * 2 + 1):
        db.session.add(Comment(id=comment_id, post_id=rng.randrange(1, post_id + 1), user_id=rng.randrange(1, users + 1),
                               body=_sentence(rng), timestamp=_stamp(rng)))
    for message_id in range(1, users * 3 + 1):
        sender = rng.randrange(1, users + 1)
        recipient = rng.choice([number for number in range(1, users + 1) if number != sender])
        db.session.add(Message(id=message_id, sender_id=sender, recipient_id=recipient, body=_sentence(rng),
                               timestamp=_stamp(rng)))
    db.session.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-uri", required=True)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20250301)
    args = parser.parse_args(argv)
    app = Flask("chirp.seed")
    app.config["SQLALCHEMY_DATABASE_URI"] = args.database_uri
    db.init_app(app)
    with app.app_context():
        db.create_all()
        if db.session.query(User).count():
            print("already seeded")
            return 0
        seed(args.users, args.seed)
    print(f"seeded {args.users} users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
