# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Demo backend databases for the RGPD tests and benchmarks: SQLite (the demo's own seed) and PostgreSQL.

* :func:`seed_sqlite` builds a demo database with the demo app's seed (``tests/demo_backend/app``).
* :data:`PG_SCHEMA` is the demo schema in PostgreSQL terms (identity ids, same constraints and
  the same-tenant triggers; :data:`PG_TABLES` and :data:`PG_TRIGGERS` are its two halves); :func:`copy_sqlite_to_postgres` loads a seeded SQLite file into it
  with COPY and moves the identity sequences past the copied ids.
* :func:`create_pg_database` / :func:`drop_pg_database` make and remove a database on the
  PostgreSQL cluster of the ``postgres`` fixture (optionally from a template database, which is
  a fast file copy on the server).
* :class:`Backend` opens either kind through the engine's adapter, dumps every table for
  before/after comparisons, and runs raw SQL.
* :func:`add_bulk_messages` adds many messages for one user (exports big enough to be interrupted,
  memory measurements).
* :data:`SINGLE_SQLITE` / :data:`SINGLE_PG` are a single-tenant schema (no tenant column; secrets in the user
  table; followers and private messages between two users; SQLite ids reused after deletion), the one
  ``docs/examples/rgpd-datamap-single-tenant.yml`` maps, plus a consent history; :func:`make_single_tenant_fixtures`
  gives a fresh copy of it on each backend kind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import sys
import typing as t

from ansible_collections.dihya.ops.tests.support import demo_schema

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION_ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
DEMO_APP = os.path.join(COLLECTION_ROOT, 'tests', 'demo_backend', 'app')
DEMO_DATA_MAP = os.path.join(COLLECTION_ROOT, 'docs', 'examples', 'rgpd-datamap-demo.yml')
SINGLE_DATA_MAP = os.path.join(COLLECTION_ROOT, 'docs', 'examples', 'rgpd-datamap-single-tenant.yml')

DEMO_TABLES = ('schema_meta', 'tenants', 'users', 'products', 'posts', 'messages', 'follows', 'consents', 'orders', 'order_items', 'uploads')
# Every column that holds a user id in the demo schema.
USER_REFERENCES = (
    ('users', 'id'), ('posts', 'author_id'), ('messages', 'sender_id'), ('messages', 'recipient_id'), ('follows', 'follower_id'),
    ('follows', 'followee_id'), ('consents', 'user_id'), ('orders', 'user_id'), ('uploads', 'user_id'),
)

# The demo's tables and indexes in PostgreSQL terms, made from the demo's own SQLite schema.
PG_TABLES = demo_schema.PG_TABLES

# The demo's same-tenant triggers, as PL/pgSQL. A bulk load can create them after the rows.
PG_TRIGGERS = """
CREATE FUNCTION messages_same_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT tenant_id FROM users WHERE id = NEW.sender_id) IS DISTINCT FROM (SELECT tenant_id FROM users WHERE id = NEW.recipient_id) THEN
        RAISE EXCEPTION 'sender and recipient belong to different tenants';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_same_tenant BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION messages_same_tenant();
CREATE FUNCTION follows_same_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT tenant_id FROM users WHERE id = NEW.follower_id) IS DISTINCT FROM (SELECT tenant_id FROM users WHERE id = NEW.followee_id) THEN
        RAISE EXCEPTION 'follower and followee belong to different tenants';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER follows_same_tenant BEFORE INSERT ON follows FOR EACH ROW EXECUTE FUNCTION follows_same_tenant();
"""
# The demo schema in PostgreSQL terms: tables, indexes and triggers.
PG_SCHEMA = PG_TABLES + PG_TRIGGERS

# Tables whose ids come from an identity sequence, for setval after a copy.
PG_IDENTITY_TABLES = ('tenants', 'users', 'posts', 'messages', 'consents', 'products', 'orders', 'order_items')

# A second, tiny schema where subject ids repeat across tenants (composite key): tenant scoping tests.
ACCOUNTS_SCHEMA = """
CREATE TABLE accounts (tenant TEXT NOT NULL, uid TEXT NOT NULL, email TEXT, PRIMARY KEY (tenant, uid));
CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, uid TEXT NOT NULL, body TEXT NOT NULL);
"""
ACCOUNTS_ROWS: dict[str, list[tuple[t.Any, ...]]] = {
    'accounts': [('a', 'u1', 'u1@a.example'), ('b', 'u1', 'u1@b.example'), ('a', 'u2', 'u2@a.example'),
                 ('a', "'; DROP TABLE notes; --", 'evil@a.example')],
    'notes': [(1, 'a', 'u1', 'note a/u1 #1'), (2, 'a', 'u1', 'note a/u1 #2'), (3, 'b', 'u1', 'note b/u1'), (4, 'a', 'u2', 'note a/u2'),
              (5, 'a', "'; DROP TABLE notes; --", 'note evil')],
}
ACCOUNTS_MAP: dict[str, t.Any] = {
    'version': 'accounts-1',
    'subject': {'table': 'accounts', 'id_column': 'uid', 'tenant_column': 'tenant'},
    'tables': {
        'accounts': {'subject_columns': ['uid'], 'erasure': 'delete', 'columns': {'email': 'hmac'}},
        'notes': {'subject_columns': ['uid'], 'tenant_column': 'tenant', 'erasure': 'delete', 'columns': {'body': 'redact'}},
    },
}


def demo_seed_module() -> t.Any:
    """The demo app's seed module (``dihya_demo.seed``)."""
    if DEMO_APP not in sys.path:
        sys.path.insert(0, DEMO_APP)
    from dihya_demo import seed  # pylint: disable=import-outside-toplevel,import-error
    return seed


def seed_sqlite(path: str, tenants: t.Sequence[str] = ('acme', 'globex', 'initech'), users_per_tenant: int = 12, seed: int = 20240601,
                accounts: bool = True) -> str:
    """A demo database at ``path`` seeded by the demo app, plus (optionally) the accounts/notes tables."""
    demo_seed_module().seed_path(__import__('pathlib').Path(path), tuple(tenants), users_per_tenant, seed)
    if accounts:
        conn = sqlite3.connect(path)
        with conn:
            conn.executescript(ACCOUNTS_SCHEMA)
            for table, rows in ACCOUNTS_ROWS.items():
                conn.executemany(f'INSERT INTO {table} VALUES ({", ".join("?" for dummy in rows[0])})', rows)
        conn.close()
    os.chmod(path, 0o600)
    return path


def seeded_database(directory: t.Any, users_per_tenant: int = 4) -> str:
    """A seeded demo database at ``<directory>/data/app.db``, alone in its folder (the template is seeded beside it)."""
    template = os.path.join(str(directory), 'template.db')
    seed_sqlite(template, users_per_tenant=users_per_tenant)
    os.mkdir(os.path.join(str(directory), 'data'))
    path = os.path.join(str(directory), 'data', 'app.db')
    shutil.copyfile(template, path)
    return path


def pg_connect(dsn: str, autocommit: bool = True) -> t.Any:
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)


def dsn_for(postgres: t.Any, database: str) -> str:
    return str(postgres.dsn(database=database))


def create_pg_database(postgres: t.Any, name: str, template: str | None = None) -> str:
    """(Re)create database ``name`` (from ``template`` if given); return its DSN."""
    with pg_connect(postgres.dsn()) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ''))
    return dsn_for(postgres, name)


def drop_pg_database(postgres: t.Any, name: str) -> None:
    with pg_connect(postgres.dsn()) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_sqlite_to_postgres(sqlite_path: str, dsn: str, accounts: bool = True) -> None:
    """Create :data:`PG_SCHEMA` in the database of ``dsn`` and copy every demo row of the SQLite file into it."""
    source = sqlite3.connect(sqlite_path)
    try:
        with pg_connect(dsn, autocommit=False) as conn:
            conn.execute(PG_SCHEMA)
            if accounts:
                conn.execute(ACCOUNTS_SCHEMA)
            for table in DEMO_TABLES + (('accounts', 'notes') if accounts else ()):
                cursor = source.execute(f'SELECT * FROM "{table}"')
                columns = ', '.join(f'"{item[0]}"' for item in cursor.description)
                with conn.cursor().copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                    for row in cursor:
                        copy.write_row(row)
            for table in PG_IDENTITY_TABLES:
                conn.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM \"{table}\"), false)")
            conn.commit()
    finally:
        source.close()


def add_bulk_messages(backend: Backend, sender: int, recipient: int, count: int) -> None:
    """Add ``count`` messages from ``sender`` to ``recipient`` (one statement, generated by the database)."""
    if backend.kind == 'sqlite':
        backend.execute(
            'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) '
            "INSERT INTO messages (sender_id, recipient_id, body, sent_at) SELECT ?, ?, 'bulk message number ' || i, '2025-01-01T00:00:00Z' FROM n",
            (count, sender, recipient),
        )
    else:
        backend.execute(
            "INSERT INTO messages (sender_id, recipient_id, body, sent_at) SELECT %s, %s, 'bulk message number ' || i, '2025-01-01T00:00:00Z' "
            'FROM generate_series(1, %s) AS i',
            (sender, recipient, count),
        )


@dataclasses.dataclass
class Backend:
    """One test database: a SQLite file (``path``) or a PostgreSQL database (``dsn``)."""

    kind: str
    path: str | None = None
    dsn: str | None = None
    foreign_keys: bool = True
    postgres: t.Any = None

    def open(self, read_only: bool = False) -> t.Any:
        """The engine's adapter on this database."""
        from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import open_database  # pylint: disable=import-outside-toplevel
        return open_database(path=self.path, dsn=self.dsn, read_only=read_only, foreign_keys=self.foreign_keys)

    def module_args(self) -> dict[str, t.Any]:
        return {'database': self.path} if self.kind == 'sqlite' else {'dsn': self.dsn}

    def execute(self, sql: str, params: t.Sequence[t.Any] = ()) -> None:
        if self.kind == 'sqlite':
            conn = sqlite3.connect(str(self.path))
            try:
                with conn:
                    conn.execute(sql, tuple(params))
            finally:
                conn.close()
        else:
            with pg_connect(str(self.dsn)) as conn:
                conn.execute(sql.replace('?', '%s'), tuple(params))

    def script(self, sql: str) -> None:
        if self.kind == 'sqlite':
            conn = sqlite3.connect(str(self.path))
            try:
                conn.executescript(sql)
            finally:
                conn.close()
        else:
            with pg_connect(str(self.dsn)) as conn:
                conn.execute(sql)

    def query(self, sql: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        if self.kind == 'sqlite':
            conn = sqlite3.connect(str(self.path))
            try:
                return conn.execute(sql, tuple(params)).fetchall()
            finally:
                conn.close()
        with pg_connect(str(self.dsn)) as conn:
            return [tuple(row) for row in conn.execute(sql.replace('?', '%s'), tuple(params)).fetchall()]

    def queries(self, statements: t.Sequence[tuple[str, t.Sequence[t.Any]]]) -> list[list[tuple[t.Any, ...]]]:
        """Several queries over one connection."""
        if self.kind == 'sqlite':
            conn = sqlite3.connect(str(self.path))
            try:
                return [conn.execute(sql, tuple(params)).fetchall() for sql, params in statements]
            finally:
                conn.close()
        with pg_connect(str(self.dsn)) as conn:
            return [[tuple(row) for row in conn.execute(sql.replace('?', '%s'), tuple(params)).fetchall()] for sql, params in statements]

    def tables(self) -> list[str]:
        if self.kind == 'sqlite':
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        else:
            rows = self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return sorted(row[0] for row in rows)

    def dump(self) -> dict[str, list[tuple[t.Any, ...]]]:
        """Every row of every table, sorted: equal dumps mean equal databases (for the data)."""
        tables = self.tables()
        results = self.queries([(f'SELECT * FROM "{table}"', ()) for table in tables])
        return {table: sorted(rows, key=repr) for table, rows in zip(tables, results, strict=True)}

    def references_to(self, user_id: int) -> dict[str, int]:
        """How many rows still hold ``user_id`` in a user id column (non-zero entries only)."""
        counts = self.queries([(f'SELECT count(*) FROM "{table}" WHERE "{column}" = ?', (user_id,)) for table, column in USER_REFERENCES])
        return {f'{table}.{column}': rows[0][0] for (table, column), rows in zip(USER_REFERENCES, counts, strict=True) if rows[0][0]}

    def copy_to(self, other: Backend) -> None:
        """Back up this database into ``other`` (a file copy, or CREATE DATABASE ... TEMPLATE)."""
        assert self.kind == other.kind
        if self.kind == 'sqlite':
            shutil.copyfile(str(self.path), str(other.path))


def pg_database_name(dsn: str) -> str:
    return dsn.rsplit('/', 1)[1]


# ---------------------------------------------------------------------------
# pytest fixtures, built per test module:
#     sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('engine')
# ``backend`` is parametrised over SQLite (foreign keys on), SQLite (foreign keys off) and PostgreSQL,
# each test getting a fresh copy of the seeded demo database. The PostgreSQL cluster is the one of
# the ``postgres`` fixture of tests/unit/conftest.py: the PostgreSQL parameter carries the ``services``
# marker, so that collection starts the cluster and the case runs in the integration tier.
# ---------------------------------------------------------------------------

BACKEND_KINDS = ('sqlite', 'sqlite-nofk', 'postgresql')


def make_fixtures(tag: str, users_per_tenant: int = 12, kinds: t.Sequence[str] = BACKEND_KINDS) -> tuple[t.Any, t.Any, t.Any]:
    import uuid  # pylint: disable=import-outside-toplevel

    import pytest  # pylint: disable=import-outside-toplevel

    @pytest.fixture(scope='module', name='sqlite_template')
    def sqlite_template(tmp_path_factory: t.Any) -> str:
        # Seeded once per session and size; every test works on a copy.
        path = os.path.join(str(tmp_path_factory.getbasetemp()), f'rgpd-template-{users_per_tenant}.db')
        if not os.path.exists(path):
            seed_sqlite(path + '.tmp', users_per_tenant=users_per_tenant)
            os.replace(path + '.tmp', path)
        return path

    @pytest.fixture(scope='module', name='pg_template')
    def pg_template(request: t.Any, sqlite_template: str) -> t.Iterator[tuple[t.Any, str]]:
        postgres = request.getfixturevalue('postgres')
        name = f'rgpd_tpl_{tag}'
        copy_sqlite_to_postgres(sqlite_template, create_pg_database(postgres, name))
        yield postgres, name
        drop_pg_database(postgres, name)

    @pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.services('postgres')) if kind == 'postgresql' else kind for kind in kinds],
                    name='backend')
    def backend(request: t.Any, tmp_path: t.Any, sqlite_template: str) -> t.Iterator[Backend]:
        if request.param.startswith('sqlite'):
            path = str(tmp_path / 'demo.db')
            shutil.copyfile(sqlite_template, path)
            yield Backend('sqlite', path=path, foreign_keys=request.param == 'sqlite')
            return
        postgres, template = request.getfixturevalue('pg_template')
        name = f'rgpd_{tag}_{uuid.uuid4().hex[:10]}'
        yield Backend('postgresql', dsn=create_pg_database(postgres, name, template=template), postgres=postgres)
        drop_pg_database(postgres, name)

    return sqlite_template, pg_template, backend


def backup(backend: Backend, tmp_path: t.Any) -> Backend:
    """A copy of the database as it is now (a file copy, or a database created from it as a template)."""
    if backend.kind == 'sqlite':
        copy = Backend('sqlite', path=str(tmp_path / 'backup.db'), foreign_keys=backend.foreign_keys)
        shutil.copyfile(str(backend.path), str(copy.path))
        return copy
    name = pg_database_name(str(backend.dsn)) + '_bak'
    return Backend('postgresql', dsn=create_pg_database(backend.postgres, name, template=pg_database_name(str(backend.dsn))), postgres=backend.postgres)


def restore(backend: Backend, copy: Backend) -> None:
    """Put the backup ``copy`` back in place of ``backend``'s database."""
    if backend.kind == 'sqlite':
        shutil.copyfile(str(copy.path), str(backend.path))
        return
    postgres = backend.postgres
    create_pg_database(postgres, pg_database_name(str(backend.dsn)), template=pg_database_name(str(copy.dsn)))
    drop_pg_database(postgres, pg_database_name(str(copy.dsn)))


# ---------------------------------------------------------------------------
# A single-tenant database: a Flask-SQLAlchemy application's schema, without any tenant column. SQLite ids are
# INTEGER PRIMARY KEY without AUTOINCREMENT (the highest id is handed out again once its row is deleted).
# ---------------------------------------------------------------------------

_SINGLE_COLUMNS = {
    'user': ('id {id}, username VARCHAR(64) NOT NULL UNIQUE, email VARCHAR(120) NOT NULL UNIQUE, display_name VARCHAR(120) NOT NULL, '
             'about_me VARCHAR(280), password_hash VARCHAR(256) NOT NULL, api_token VARCHAR(64) UNIQUE, last_seen_ip VARCHAR(45), '
             'member_since VARCHAR(32) NOT NULL'),
    'followers': ('follower_id INTEGER NOT NULL REFERENCES "user" (id), followed_id INTEGER NOT NULL REFERENCES "user" (id), '
                  'PRIMARY KEY (follower_id, followed_id), CHECK (follower_id <> followed_id)'),
    'post': 'id {id}, user_id INTEGER NOT NULL REFERENCES "user" (id), body VARCHAR(280) NOT NULL, timestamp VARCHAR(32) NOT NULL',
    'comment': ('id {id}, post_id INTEGER NOT NULL REFERENCES post (id), user_id INTEGER NOT NULL REFERENCES "user" (id), '
                'body VARCHAR(280) NOT NULL, timestamp VARCHAR(32) NOT NULL'),
    'message': ('id {id}, sender_id INTEGER NOT NULL REFERENCES "user" (id), recipient_id INTEGER NOT NULL REFERENCES "user" (id), '
                'body TEXT NOT NULL, timestamp VARCHAR(32) NOT NULL'),
    'consent': ('id {id}, user_id INTEGER NOT NULL REFERENCES "user" (id), purpose VARCHAR(40) NOT NULL, granted INTEGER NOT NULL, '
                'source VARCHAR(80) NOT NULL, at VARCHAR(32) NOT NULL'),
}
_SINGLE_INDEXES = ('CREATE INDEX ix_message_sender ON message (sender_id);', 'CREATE INDEX ix_message_recipient ON message (recipient_id);',
                   'CREATE INDEX ix_followers_followed ON followers (followed_id);')
SINGLE_SQLITE = ''.join(f'CREATE TABLE "{name}" ({columns.format(id="INTEGER PRIMARY KEY")});\n' for name, columns in _SINGLE_COLUMNS.items()) \
    + '\n'.join(_SINGLE_INDEXES)
SINGLE_PG = ''.join(f'CREATE TABLE "{name}" ({columns.format(id="INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")});\n'
                    for name, columns in _SINGLE_COLUMNS.items()) + '\n'.join(_SINGLE_INDEXES)
SINGLE_TABLES = tuple(_SINGLE_COLUMNS)
# Every column that holds a user id in the single-tenant schema.
SINGLE_USER_REFERENCES = (
    ('user', 'id'), ('followers', 'follower_id'), ('followers', 'followed_id'), ('post', 'user_id'), ('comment', 'user_id'),
    ('message', 'sender_id'), ('message', 'recipient_id'), ('consent', 'user_id'),
)
# ana (1), bob (2), cleo (3; the highest id, with rows of her own only): ana and bob follow each other, cleo follows
# ana; they exchange messages; bob comments on ana's post.
SINGLE_ROWS: dict[str, list[tuple[t.Any, ...]]] = {
    'user': [
        (1, 'ana', 'ana@example.org', 'Ana Lima', 'gardener', 'pbkdf2:sha256:600000$ana$0a1b', 'tok-ana-7f3c', '192.0.2.10', '2025-01-05T10:00:00Z'),
        (2, 'bob', 'bob@example.org', 'Bob Stone', None, 'pbkdf2:sha256:600000$bob$2c3d', 'tok-bob-9e1a', '2001:db8::2', '2025-02-11T08:30:00Z'),
        (3, 'cleo', 'cleo@example.org', 'Cleo Park', 'hello', 'pbkdf2:sha256:600000$cleo$4e5f', None, '198.51.100.7', '2025-03-20T19:45:00Z'),
    ],
    'followers': [(1, 2), (2, 1), (3, 1)],
    'post': [(1, 1, 'ana first post', '2025-04-01T09:00:00Z'), (2, 2, 'bob post', '2025-04-02T09:00:00Z'),
             (3, 3, 'cleo post', '2025-04-03T09:00:00Z')],
    'comment': [(1, 1, 2, 'bob on ana', '2025-04-01T10:00:00Z'), (2, 2, 1, 'ana on bob', '2025-04-02T10:00:00Z'),
                (3, 3, 3, 'cleo on cleo', '2025-04-03T10:00:00Z')],
    'message': [(1, 1, 2, 'ana to bob: secret plans', '2025-05-01T12:00:00Z'), (2, 2, 1, 'bob to ana: sounds good', '2025-05-01T12:05:00Z'),
                (3, 1, 2, 'ana to bob again', '2025-05-02T12:00:00Z'), (4, 3, 3, 'cleo note to self', '2025-05-03T12:00:00Z')],
    'consent': [(1, 1, 'newsletter', 1, 'signup_form', '2025-01-05T10:00:00Z'), (2, 2, 'newsletter', 0, 'signup_form', '2025-02-11T08:30:00Z'),
                (3, 3, 'analytics', 1, 'settings', '2025-03-20T19:46:00Z')],
}


def single_tenant_map(consent: bool = True) -> dict[str, t.Any]:
    """The example single-tenant data map (as plain data), with the consent history of the test schema when ``consent``."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(SINGLE_DATA_MAP, encoding='utf-8') as handle:
        data: dict[str, t.Any] = yaml.safe_load(handle)
    if consent:
        data['tables']['consent'] = {'subject_columns': ['user_id'], 'erasure': 'delete', 'columns': {'source': 'keep'}}
        data['consent'] = {'table': 'consent', 'subject_column': 'user_id', 'purposes': ['newsletter', 'analytics']}
    return data


def seed_single_tenant(backend: Backend) -> None:
    """Create the single-tenant schema in ``backend``'s (empty) database and insert :data:`SINGLE_ROWS`."""
    backend.script(SINGLE_SQLITE if backend.kind == 'sqlite' else SINGLE_PG)
    for table, rows in SINGLE_ROWS.items():
        for row in rows:
            backend.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" for dummy in row)})', row)
    if backend.kind == 'postgresql':
        for table, columns in _SINGLE_COLUMNS.items():
            if columns.startswith('id '):
                backend.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT max(id) FROM \"{table}\"))")


def make_single_tenant_fixtures(tag: str, kinds: t.Sequence[str] = BACKEND_KINDS) -> t.Any:
    """A ``single_backend`` fixture: a fresh single-tenant database per test, on each of ``kinds``."""
    import uuid  # pylint: disable=import-outside-toplevel

    import pytest  # pylint: disable=import-outside-toplevel

    @pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.services('postgres')) if kind == 'postgresql' else kind for kind in kinds],
                    name='single_backend')
    def single_backend(request: t.Any, tmp_path: t.Any) -> t.Iterator[Backend]:
        if request.param.startswith('sqlite'):
            os.mkdir(tmp_path / 'data')
            found = Backend('sqlite', path=str(tmp_path / 'data' / 'app.db'), foreign_keys=request.param == 'sqlite')
            seed_single_tenant(found)
            yield found
            return
        postgres = request.getfixturevalue('postgres')
        name = f'rgpd_single_{tag}_{uuid.uuid4().hex[:10]}'
        found = Backend('postgresql', dsn=create_pg_database(postgres, name), postgres=postgres)
        seed_single_tenant(found)
        yield found
        drop_pg_database(postgres, name)

    return single_backend
