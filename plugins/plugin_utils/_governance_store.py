# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The governance store of the controller: quota counts, concurrency locks, denials, lock-outs and approvals.

Two back ends with one schema and one behaviour: a SQLite file (the default, WAL, ``BEGIN IMMEDIATE`` transactions,
a bounded busy timeout, file 0600 in a folder 0700, never through a symlink) and PostgreSQL through psycopg 3 (the DSN
from Vault, never shown; each transaction takes a transaction-scoped advisory lock so concurrent runs are serialised).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import typing as t

SCHEMA_VERSION = 1
DEFAULT_PATH = '~/.ansible/dihya-ops-governance.sqlite3'
DEFAULT_BUSY_TIMEOUT = 30.0
MAX_BUSY_TIMEOUT = 300.0
_KEYS = {'sqlite': {'kind', 'path', 'busy_timeout'}, 'postgresql': {'kind', 'dsn', 'busy_timeout'}}
#: The key of the advisory lock every PostgreSQL transaction of the store takes.
_PG_LOCK = 0x6469687961

SCHEMA = (
    'CREATE TABLE IF NOT EXISTS governance_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)',
    ('CREATE TABLE IF NOT EXISTS governance_runs (scope TEXT NOT NULL, trace_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,'
     ' PRIMARY KEY (scope, trace_id))'),
    ('CREATE TABLE IF NOT EXISTS governance_locks (scope TEXT NOT NULL, trace_id TEXT NOT NULL, user_name TEXT NOT NULL,'
     ' since DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, trace_id))'),
    ('CREATE TABLE IF NOT EXISTS governance_denials (user_name TEXT NOT NULL, trace_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,'
     ' PRIMARY KEY (user_name, trace_id))'),
    ('CREATE TABLE IF NOT EXISTS governance_lockouts (user_name TEXT PRIMARY KEY, since DOUBLE PRECISION NOT NULL,'
     ' until DOUBLE PRECISION NOT NULL)'),
    ('CREATE TABLE IF NOT EXISTS governance_approvals (approval_id TEXT PRIMARY KEY, record TEXT NOT NULL, signature TEXT NOT NULL,'
     ' expires DOUBLE PRECISION NOT NULL, consumed_by TEXT, consumed_at DOUBLE PRECISION)'),
)


class StoreError(Exception):
    """The governance store cannot be opened or used; the message never contains a DSN or a password."""


class Transaction:
    """One transaction: ``execute`` with ``?`` placeholders on both back ends."""

    def __init__(self, cursor: t.Any, placeholder: str) -> None:
        self._cursor = cursor
        self._placeholder = placeholder

    def execute(self, sql: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        self._cursor.execute(sql.replace('?', self._placeholder), tuple(params))
        if self._cursor.description is None:
            return []
        return [tuple(row) for row in self._cursor.fetchall()]

    def changed(self, sql: str, params: t.Sequence[t.Any] = ()) -> int:
        """Run a write and return the number of rows it changed."""
        self._cursor.execute(sql.replace('?', self._placeholder), tuple(params))
        return int(self._cursor.rowcount)


class Store:
    """An opened governance store; every read-and-write goes through one ``transaction()``."""

    kind: str = ''

    def transaction(self) -> t.ContextManager[Transaction]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_schema(self) -> None:
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)
            rows = tx.execute('SELECT value FROM governance_meta WHERE name = ?', ('schema_version',))
            if not rows:
                tx.execute('INSERT INTO governance_meta (name, value) VALUES (?, ?)', ('schema_version', str(SCHEMA_VERSION)))
            elif rows[0][0] != str(SCHEMA_VERSION):
                raise StoreError(f'the governance store has schema version {rows[0][0]!s:.20}; this collection knows version {SCHEMA_VERSION}')


def _refuse_symlinks(path: str) -> None:
    """Refuse a path any of whose existing components is a symlink (never write through what we did not create)."""
    current = os.sep
    for part in [p for p in path.split(os.sep) if p]:
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            raise StoreError(f'the governance store path {path} goes through the symlink {current}; give a real path')


class SqliteStore(Store):
    kind = 'sqlite'

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        _refuse_symlinks(path)
        folder = os.path.dirname(path)
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700)
            if not os.path.lexists(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f'cannot create the governance store {path}: {exc.strerror}') from None
        _refuse_symlinks(path)
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f'the governance store {path} is not a regular file')
        if info.st_uid != os.geteuid():
            raise StoreError(f'the governance store {path} belongs to another user')
        if info.st_mode & 0o077:
            os.chmod(path, 0o600)
        try:
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._db.execute('PRAGMA journal_mode=WAL')
            self._db.execute('PRAGMA synchronous=NORMAL')
            self._init_schema()
        except sqlite3.Error as exc:
            raise StoreError(f'the governance store {path} cannot be used: {exc}') from None

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[Transaction]:
        cursor = self._db.cursor()
        try:
            cursor.execute('BEGIN IMMEDIATE')
        except sqlite3.Error as exc:
            raise StoreError(f'the governance store {self.path} is busy or broken: {exc}') from None
        try:
            yield Transaction(cursor, '?')
        except BaseException:
            self._db.rollback()
            raise
        else:
            try:
                cursor.execute('COMMIT')
            except sqlite3.Error as exc:
                self._db.rollback()
                raise StoreError(f'the governance store {self.path} could not commit: {exc}') from None
        finally:
            cursor.close()

    def close(self) -> None:
        self._db.close()


class PostgresStore(Store):
    kind = 'postgresql'

    def __init__(self, dsn: str, busy_timeout: float) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError('the governance store kind postgresql needs the Python package psycopg (3) on the controller') from None
        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(dsn, connect_timeout=max(1, int(busy_timeout)), autocommit=False)
            self._db.execute(f"SET lock_timeout = '{int(busy_timeout * 1000)}ms'")
            self._db.commit()
        except psycopg.Error as exc:
            raise StoreError(f'cannot connect to the PostgreSQL governance store ({type(exc).__name__}); check the DSN (not shown)') from None
        try:
            self._init_schema()
        except psycopg.Error as exc:
            raise StoreError(f'the PostgreSQL governance store cannot be used ({type(exc).__name__}: {exc.sqlstate})') from None

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[Transaction]:
        cursor = self._db.cursor()
        try:
            cursor.execute('SELECT pg_advisory_xact_lock(%s)', (_PG_LOCK,))
            yield Transaction(cursor, '%s')
        except self._psycopg.Error as exc:
            self._db.rollback()
            raise StoreError(f'the PostgreSQL governance store failed ({type(exc).__name__}: {exc.sqlstate})') from None
        except BaseException:
            self._db.rollback()
            raise
        else:
            self._db.commit()
        finally:
            cursor.close()

    def close(self) -> None:
        self._db.close()


def open_store(config: t.Mapping[str, t.Any] | None) -> Store:
    """Open the store ``config`` describes (``{kind: sqlite, path}`` by default, or ``{kind: postgresql, dsn}``)."""
    if config is None:
        config = {}
    if not isinstance(config, t.Mapping):
        raise StoreError(f'dihya_ops_governance_store must be a mapping (kind, path or dsn), not {type(config).__name__}')
    kind = config.get('kind', 'sqlite')
    if kind not in _KEYS:
        raise StoreError(f'dihya_ops_governance_store.kind must be sqlite or postgresql, not {str(kind)[:40]!r}')
    unknown = sorted(str(key)[:40] for key in config if key not in _KEYS[kind])
    if unknown:
        raise StoreError(f'dihya_ops_governance_store: unknown key {", ".join(unknown)}; expected {", ".join(sorted(_KEYS[kind]))}')
    timeout = config.get('busy_timeout', DEFAULT_BUSY_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_BUSY_TIMEOUT:
        raise StoreError(f'dihya_ops_governance_store.busy_timeout must be a number of seconds in ]0, {MAX_BUSY_TIMEOUT:g}]')
    if kind == 'postgresql':
        dsn = config.get('dsn')
        if not isinstance(dsn, str) or not dsn.strip() or len(dsn) > 4096 or '\0' in dsn:
            raise StoreError('dihya_ops_governance_store.dsn must be a non-empty connection string (from Vault)')
        return PostgresStore(dsn, float(timeout))
    path = config.get('path', DEFAULT_PATH)
    if not isinstance(path, str) or not path.strip() or len(path) > 4096 or '\0' in path:
        raise StoreError('dihya_ops_governance_store.path must be a non-empty file path')
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        raise StoreError(f'dihya_ops_governance_store.path must be absolute, not {path[:200]!r}')
    if '..' in path.split(os.sep):
        raise StoreError(f'dihya_ops_governance_store.path must not contain "..": {path[:200]!r}')
    return SqliteStore(os.path.normpath(path), float(timeout))
