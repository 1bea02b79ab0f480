# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The ``sql`` check: one read-only query on the database of a ``db_url`` (SQLite file or PostgreSQL), within the budget.

The database is named by the collection's one database URL contract (``_db_url``): an absolute path,
``sqlite:///path``, ``postgresql://...`` or libpq ``key=value`` pairs; ``dsn`` is an alias of ``db_url``.
A query must be one ``SELECT``, ``WITH`` or ``VALUES`` statement, and the connection cannot write anyway.
No message shows the URL's password. psycopg is only imported when a PostgreSQL check runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sqlite3
import sys
import time
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._db_url import POSTGRESQL, SQLITE, DbUrl, DbUrlError, parse_db_url, scrub
from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import (
    Budget,
    CheckConfigError,
    DeadlineExceeded,
    Options,
    Outcome,
    as_text,
    bounded_call,
    describe_error,
    option,
)

DEFAULT_QUERY = 'SELECT 1'
# ``dsn`` is the older name of ``db_url``.
SQL_OPTIONS = frozenset(('db_url', 'dsn', 'query', 'expect'))
READ_ONLY_KEYWORDS = ('SELECT', 'WITH', 'VALUES')
_DOLLAR_TAG = re.compile(r'\$([A-Za-z_][A-Za-z0-9_]*)?\$')
# What the missing-library error says needs psycopg.
_PSYCOPG_PURPOSE = 'a sql check on PostgreSQL'


@dataclasses.dataclass(frozen=True)
class SqlConfig:
    db: DbUrl
    query: str
    expect: str | None

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.db.kind


def sql_code(query: str, dialect: str) -> str:
    """``query`` with its comments, string literals and quoted identifiers blanked out, leaving only code.

    Follows the quoting rules of ``dialect`` (``sqlite`` or ``postgresql``: nested block comments,
    ``E''`` strings and dollar quoting). Raise :class:`CheckConfigError` on an unterminated literal or comment.
    """
    out: list[str] = []
    index = 0
    length = len(query)
    while index < length:
        char = query[index]
        two = query[index:index + 2]
        if two == '--':
            end = query.find('\n', index)
            index = length if end < 0 else end
            out.append(' ')
        elif two == '/*':
            depth, index = 1, index + 2
            while depth:
                if index >= length:
                    raise CheckConfigError('query has an unterminated /* comment')
                if dialect == 'postgresql' and query.startswith('/*', index):
                    depth, index = depth + 1, index + 2
                elif query.startswith('*/', index):
                    depth, index = depth - 1, index + 2
                else:
                    index += 1
            out.append(' ')
        elif char in '\'"`' or (char == '[' and dialect == 'sqlite'):
            close = ']' if char == '[' else char
            escapes = dialect == 'postgresql' and char == "'" and index > 0 and query[index - 1] in 'eE' and (
                index < 2 or not (query[index - 2].isalnum() or query[index - 2] == '_'))
            index += 1
            while True:
                if index >= length:
                    raise CheckConfigError('query has an unterminated quoted string or identifier')
                if escapes and query[index] == '\\':
                    index += 2
                elif query[index] == close:
                    if close != ']' and query.startswith(close * 2, index):
                        index += 2
                    else:
                        index += 1
                        break
                else:
                    index += 1
            out.append(' 0 ' if char == "'" else ' x ')
        elif char == '$' and dialect == 'postgresql' and (match := _DOLLAR_TAG.match(query, index)) and not (
                index > 0 and (query[index - 1].isalnum() or query[index - 1] == '_')):
            tag = match.group(0)
            end = query.find(tag, match.end())
            if end < 0:
                raise CheckConfigError('query has an unterminated dollar-quoted string')
            index = end + len(tag)
            out.append(' 0 ')
        else:
            out.append(char)
            index += 1
    return ''.join(out)


def check_read_only_query(query: str, dialect: str) -> None:
    """Refuse anything but one ``SELECT``, ``WITH`` or ``VALUES`` statement (a trailing ``;`` is fine).

    This is the first of several guards: the connection itself is read-only too (see :func:`probe_sql`).
    """
    statements = [part for part in sql_code(query, dialect).split(';') if part.strip()]
    if len(statements) != 1:
        raise CheckConfigError(f'query must be a single statement (found {len(statements)})')
    words = re.findall(r'[A-Za-z_]+', statements[0].lstrip(' \t\r\n('))
    first = words[0].upper() if words else ''
    if first not in READ_ONLY_KEYWORDS:
        raise CheckConfigError(f"query must be a read-only SELECT or WITH statement (got {first or 'none'})")


def parse_sql(options: Options) -> SqlConfig:
    """Validate the options of a ``sql`` check: the database (``db_url``, or its alias ``dsn``), the query and the expected value."""
    given = [key for key in ('db_url', 'dsn') if options.get(key) not in (None, '')]
    if not given:
        raise CheckConfigError('db_url is required for a sql check')
    # Ansible hands a module both an option and its alias, with the same value.
    if len(given) > 1 and options['db_url'] != options['dsn']:
        raise CheckConfigError('give db_url or its alias dsn, not both')
    key = given[0]
    try:
        db = parse_db_url(options[key], name=key)
    except DbUrlError as exc:
        raise CheckConfigError(str(exc)) from None
    query = str(option(options, 'query', DEFAULT_QUERY))
    if not query.strip():
        raise CheckConfigError('query must not be empty')
    expect = options.get('expect')
    check_read_only_query(query, db.kind)
    if db.kind == POSTGRESQL:
        psycopg = optional_library('psycopg', _PSYCOPG_PURPOSE, error=CheckConfigError)
        try:
            psycopg.conninfo.conninfo_to_dict(db.dsn)
        except psycopg.Error as exc:
            raise CheckConfigError(f'invalid postgresql {key}: ' + db.scrub(str(exc))) from exc
    return SqlConfig(db=db, query=query, expect=as_text(expect) if expect is not None else None)


def probe_sql(config: SqlConfig, timeout: float) -> Outcome:
    """Run the query read-only and compare the first column of the first row."""
    details: dict[str, t.Any] = {'backend': config.backend}
    budget = Budget(timeout)
    db = config.db
    try:
        if db.kind == SQLITE:
            path = t.cast(str, db.path)
            if not os.path.isfile(path):
                return Outcome(False, f'database file {path} not found', details)
            row = _query_sqlite(path, config.query, timeout)
        else:
            row = _query_postgresql(t.cast(str, db.dsn), config.query, budget)
    except DeadlineExceeded:
        raise
    except sqlite3.Error as exc:
        text = str(exc)
        if text == 'interrupted':
            raise DeadlineExceeded('while running the query') from None
        message = f'query refused, it does more than read: {text}' if 'authoriz' in text else f'database error: {text}'
        return Outcome(False, db.scrub(message), details)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        psycopg = sys.modules.get('psycopg')
        if psycopg is not None and isinstance(exc, psycopg.Error):
            if isinstance(exc, psycopg.errors.QueryCanceled) and budget.expires - time.monotonic() < 0.5:
                raise DeadlineExceeded('while running the query') from None
            return Outcome(False, _describe_psycopg_error(exc, db.secrets), details)
        return Outcome(False, db.scrub(describe_error(exc)), details)

    if row is None:
        if config.expect is not None:
            return Outcome(False, f'query returned no rows, expected {config.expect!r}', details)
        return Outcome(True, 'query returned no rows', details)
    value = details['value'] = as_text(row[0])[:200] if row else ''
    if config.expect is not None and value != config.expect:
        return Outcome(False, f'query returned {value!r}, expected {config.expect!r}', details)
    return Outcome(True, f'query returned {value!r}', details)


# What a health query may do in SQLite: read tables and call functions; nothing else, whatever the SQL says.
_SQLITE_ALLOWED_ACTIONS = frozenset(
    getattr(sqlite3, name) for name in ('SQLITE_SELECT', 'SQLITE_READ', 'SQLITE_FUNCTION', 'SQLITE_RECURSIVE') if hasattr(sqlite3, name)
)
_SQLITE_DENIED_FUNCTIONS = frozenset(('load_extension', 'readfile', 'writefile', 'edit', 'fts3_tokenizer'))


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _database: str | None, _trigger: str | None) -> int:
    if action not in _SQLITE_ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == getattr(sqlite3, 'SQLITE_FUNCTION', -1) and (arg2 or '').lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _query_sqlite(path: str, query: str, timeout: float) -> tuple[t.Any, ...] | None:
    """Run ``query`` on a connection that cannot write: ``mode=ro``, ``query_only`` and an authorizer that denies all but reads."""
    uri = 'file:' + urllib.parse.quote(path) + '?mode=ro'
    expires = time.monotonic() + timeout
    # ``timeout`` is also the busy timeout: a locked database makes the check wait no longer than that.
    connection = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        # Abort a query that runs past the timeout; a non-zero return interrupts it.
        connection.set_progress_handler(lambda: int(time.monotonic() > expires), 1000)
        # Reading the schema proves the file is a database, which SELECT 1 alone does not.
        connection.execute('PRAGMA schema_version').fetchone()
        connection.execute('PRAGMA query_only = ON')
        connection.set_authorizer(_sqlite_authorizer)
        row: tuple[t.Any, ...] | None = connection.execute(query).fetchone()
        return row
    finally:
        connection.close()


def _query_postgresql(dsn: str, query: str, budget: Budget) -> tuple[t.Any, ...] | None:
    """Run ``query`` in a read-only session, connection and query within ``budget``."""
    psycopg = optional_library('psycopg', _PSYCOPG_PURPOSE, error=CheckConfigError)
    # libpq counts its connect timeout in whole seconds, at least 2, per address: the connection
    # attempt runs in a bounded call, so the check still ends when the budget does.
    connect_timeout = max(2, math.ceil(budget.remaining('while connecting to the database')))
    connection = bounded_call(lambda: psycopg.connect(dsn, connect_timeout=connect_timeout, autocommit=True),
                              budget, 'while connecting to the database', discard=lambda late: late.close())
    try:
        milliseconds = str(max(1, int(budget.remaining('while running the query') * 1000)))
        with connection.cursor() as cursor:
            # The session is read-only, not just this transaction, and no statement outlives the budget.
            cursor.execute(
                "SELECT set_config('default_transaction_read_only', 'on', false),"
                " set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                (milliseconds, milliseconds),
            )
        connection.autocommit = False
        connection.read_only = True
        with connection.cursor() as cursor:
            # prepare=True sends the query with the extended protocol, which runs exactly one statement.
            cursor.execute(query, prepare=True)
            row = cursor.fetchone() if cursor.description is not None else None
        connection.rollback()
        return row
    finally:
        connection.close()


def _describe_psycopg_error(exc: Exception, secrets: t.Sequence[str]) -> str:
    """The first line of a driver error, short and without the password; refused connections and time-outs in plain words."""
    text = str(exc).strip()
    lowered = text.lower()
    if 'connection refused' in lowered:
        return 'connection refused'
    if 'timeout expired' in lowered or 'statement timeout' in lowered:
        return 'timed out'
    first = text.splitlines()[0] if text else type(exc).__name__
    return scrub('database error: ' + first[:300], secrets)
