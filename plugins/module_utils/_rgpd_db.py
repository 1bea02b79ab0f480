# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Database adapter of the RGPD engine: what the engine needs from a database, SQLite files, and opening a database.

The adapter hides what differs between the two: identifier quoting, the parameter style, transactions,
streaming cursors (a server-side cursor on PostgreSQL) and schema introspection. SQL text given to it is
written with ``?`` placeholders; identifiers are validated with :data:`IDENTIFIER` and double-quoted, values
are always bound parameters. Error messages never hold the DSN password.

PostgreSQL lives in ``_rgpd_pg``, imported (with psycopg) the first time a PostgreSQL database is opened, so SQLite
users do not need it. :func:`open_database` takes the collection's one ``db_url`` contract (``_db_url``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import string
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._db_url import POSTGRESQL, SQLITE, DbUrl, DbUrlError, parse_db_url, scrub
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import IDENTIFIER


STREAM_BATCH = 1000
# Rows per fetch: a number, or a function called before each fetch giving the number of rows to fetch next.
BatchSize: t.TypeAlias = 'int | t.Callable[[], int]'
DEFAULT_TIMEOUT = 10.0
# Columns SQLite builds a row's JSON from (json_object takes two arguments per column; SQLite allows 127 by default).
JSON_MAX_COLUMNS = 48
# SQLite compares identifiers without regard to the case of ASCII letters (and only of those).
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class DbError(Exception):
    """A database could not be opened or a statement failed; the message is safe to show (no password)."""


@dataclasses.dataclass(frozen=True)
class ColumnInfo:
    """One column as the database describes it."""

    name: str
    type: str
    kind: str  # 'integer', 'text' or 'other'
    notnull: bool
    generated: bool  # the database gives it a value when an INSERT leaves it out (auto id, identity, default)
    cast: str | None = None  # PostgreSQL: the column's type as the server spells it, for casts in bulk updates


@dataclasses.dataclass(frozen=True)
class TableInfo:
    """One table: its columns in order, its primary key, the tables it references and its unique keys.

    ``unique`` holds the column sets that the database guarantees to be unique over the whole table: unique
    constraints and unique indexes on plain columns. A partial unique index (``WHERE ...``) or one on an expression
    proves nothing about the column and is left out, and so is an index that is not valid yet (PostgreSQL).
    """

    name: str
    columns: t.Mapping[str, ColumnInfo]
    primary_key: tuple[str, ...]
    references: frozenset[str]
    unique: frozenset[tuple[str, ...]] = frozenset()

    def unique_on(self, column: str) -> bool:
        """Whether ``column`` alone identifies at most one row: the primary key, or a unique key, is that column alone."""
        return self.primary_key == (column,) or (column,) in self.unique

    def key_text(self) -> str:
        """The primary key as shown in messages: ``(id, tenant_id)``, or that there is none."""
        return f'({", ".join(self.primary_key)})' if self.primary_key else 'no primary key'


@dataclasses.dataclass(frozen=True)
class RowText:
    """SQL expressions for one row: its JSON object and its CSV line (no line end) as the database writes them.

    The expressions name the columns as ``<alias>.<column>``; with ``sort_first`` the alias is a subquery holding
    every column of the table, in order. ``csv`` None: the engine writes the CSV line from the column values. A row
    the database leaves to the engine gives NULL for its texts; then ``values`` must give the row's columns in order.
    Empty ``values``: every row has its texts.
    """

    json: str
    csv: str | None
    values: tuple[str, ...]
    # Sort the rows in a subquery of the table's own columns and compute the texts over its sorted result: the sort
    # then moves the narrower rows (PostgreSQL computes the select list below the sort otherwise).
    sort_first: bool = False


def quote(identifier: str) -> str:
    """Double-quote a validated identifier; anything but letters, digits and ``_`` is refused."""
    if not isinstance(identifier, str) or not IDENTIFIER.fullmatch(identifier):
        raise DbError(f'refusing SQL identifier {identifier!r}: only letters, digits and _ are allowed')
    return f'"{identifier}"'


def column_kind(declared: str) -> str:
    """'integer', 'text' or 'other', from a column's declared type."""
    upper = declared.upper()
    if 'INT' in upper or upper in ('SERIAL', 'BIGSERIAL', 'SMALLSERIAL'):
        return 'integer'
    if any(word in upper for word in ('CHAR', 'TEXT', 'CLOB')) or upper == '':
        return 'text'
    return 'other'


def column_sets(rows: t.Iterable[tuple[t.Any, ...]]) -> list[set[str | None]]:
    """The column sets of (index, column) rows, one set per index."""
    sets: dict[str, set[str | None]] = {}
    for index, column in rows:
        sets.setdefault(str(index), set()).add(column)
    return list(sets.values())


def _culprits(violations: t.Iterable[tuple[t.Any, ...]]) -> list[tuple[str, str, int]]:
    """(table, referenced table, rows) from foreign key violations (table, rowid, parent, fkid)."""
    counts: dict[tuple[str, str], int] = {}
    for table, dummy_rowid, parent, dummy_fkid in violations:
        counts[(str(table), str(parent))] = counts.get((str(table), str(parent)), 0) + 1
    return [(table, parent, rows) for (table, parent), rows in sorted(counts.items())]


def _foreign_key_message(culprits: t.Sequence[tuple[str, str, int]]) -> str:
    found = '; '.join(f'table {table!r} still has {rows} row(s) pointing at {parent!r}' for table, parent, rows in culprits)
    return (f'a foreign key still points at the rows being erased: {found}. Add the table to the data map '
            '(a table whose name is not a plain identifier must be renamed first), or give its foreign key ON DELETE CASCADE or SET NULL')


class Database:
    """What the engine needs from a database. Subclasses implement it for one engine."""

    kind = ''
    # Whether an open cursor keeps returning the rows as they were when it was opened, whatever the
    # same transaction changes meanwhile.
    insensitive_cursors = False
    # Whether reading rows from a second thread overlaps with this one's work: true when the database works in
    # another process. SQLite works in this process, so a second thread only helps on an idle machine.
    concurrent_reads = False

    def __init__(self, secrets: t.Sequence[str] = ()) -> None:
        # Longest first, so that a secret holding another one is masked whole.
        self.secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self.in_transaction = False

    # -- names ---------------------------------------------------------------------------------
    def table(self, name: str) -> str:
        """The quoted (and, on PostgreSQL, schema-qualified) name of a table."""
        return quote(name)

    def sql(self, text: str) -> str:
        """Turn ``?`` placeholders into the driver's parameter style."""
        return text

    def fold(self, name: str) -> str:
        """A table name as the database compares it: two names naming the same table fold to the same text."""
        return name

    # -- errors ----------------------------------------------------------------------------------
    def scrub(self, message: str) -> str:
        return scrub(message, self.secrets)

    def error(self, exc: BaseException, doing: str) -> DbError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return DbError(self.scrub(f'{doing}: {first[:400]}'))

    # -- statements --------------------------------------------------------------------------------
    def execute(self, text: str, params: t.Sequence[t.Any] = ()) -> int:
        """Run one statement; return the number of rows it changed (-1 when unknown)."""
        raise NotImplementedError

    def executemany(self, text: str, rows: t.Sequence[t.Sequence[t.Any]]) -> None:
        raise NotImplementedError

    def query(self, text: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        """Run a query whose result is known to be small and return all its rows."""
        raise NotImplementedError

    def stream(self, text: str, params: t.Sequence[t.Any] = (), batch: int = STREAM_BATCH) -> t.Iterator[tuple[t.Any, ...]]:
        """Yield the rows of a query without holding the whole result in memory."""
        for rows in self.stream_batches(text, params, batch):
            yield from rows

    def stream_batches(self, text: str, params: t.Sequence[t.Any] = (), batch: BatchSize = STREAM_BATCH) -> t.Iterator[list[tuple[t.Any, ...]]]:
        """Yield the rows of a query a list of at most ``batch`` rows at a time.

        ``batch`` may also be a function, called before each fetch, giving the number of rows to fetch next.
        """
        raise NotImplementedError

    def prepare_bulk_read(self) -> None:
        """Tune the current (read-only) transaction for reading many rows; nothing by default."""

    def row_text(self, table: TableInfo, alias: str) -> RowText | None:
        """SQL that writes a row of ``table`` (as ``alias``) as JSON and CSV text, or None when this database does not.

        The texts must be what the engine itself writes for the row as the driver returns it (decoded, the same
        JSON values; the same CSV line). A database may leave some rows to the engine (see :class:`RowText`).
        """
        return None

    def update_rows(self, table: TableInfo, columns: t.Sequence[str], key: t.Sequence[str], rows: t.Sequence[t.Sequence[t.Any]]) -> None:
        """Set ``columns`` of the rows identified by ``key``; each row is (new values..., key values...)."""
        statement = self.sql(
            f'UPDATE {self.table(table.name)} SET {", ".join(f"{quote(column)} = ?" for column in columns)} '
            f'WHERE {" AND ".join(f"{quote(column)} = ?" for column in key)}'
        )
        self.executemany(statement, rows)

    def insert_returning(self, text: str, params: t.Sequence[t.Any], column: str) -> t.Any:
        """Run an INSERT and return the value of ``column`` of the new row."""
        rows = self.query(f'{text} RETURNING {quote(column)}', params)
        return rows[0][0]

    # -- transactions ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> t.Iterator[None]:
        """One transaction: committed when the block ends, rolled back when it raises.

        A read-only transaction (``write=False``) gives every query of the block the same snapshot and
        is always rolled back.
        """
        if self.in_transaction:
            raise DbError('nested transactions are not supported')
        self._begin(write)
        self.in_transaction = True
        try:
            yield
        except BaseException:
            self.in_transaction = False
            self._rollback()
            raise
        self.in_transaction = False
        if write:
            self._commit()
        else:
            self._rollback()

    def _begin(self, write: bool) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    # -- schema ------------------------------------------------------------------------------------
    def introspect(self, names: t.Iterable[str]) -> dict[str, TableInfo]:
        """Describe the named tables that exist; missing ones are left out."""
        raise NotImplementedError

    def unique_column_sets(self, name: str) -> list[set[str | None]]:
        """The column sets of every unique index and constraint of the table ``name``, whatever it covers (partial and
        expression indexes too: a tombstone must not collide with any of them); None stands for an expression."""
        raise NotImplementedError

    def referencing_tables(self, name: str) -> set[str]:
        """Every table that holds a foreign key to the table ``name``, whatever its own name (even one no data map can
        name) and, on PostgreSQL, whatever its schema (given as ``schema.table`` outside the adapter's schema)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()


class SQLiteDatabase(Database):
    """A SQLite file, opened in ``rw`` (or ``ro``) URI mode so a missing file is an error, not a new database."""

    kind = 'sqlite'

    def __init__(self, path: str, read_only: bool = False, foreign_keys: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.path = path
        if not os.path.isfile(path):
            raise DbError(f'SQLite database {path} does not exist or is not a file')
        # POSIX keeps a leading '//' in abspath, and 'file://x/...' would name 'x' as the URI authority:
        # the path part always starts with exactly one '/'.
        uri = f'file:{urllib.parse.quote("/" + os.path.abspath(path).lstrip("/"))}?mode={"ro" if read_only else "rw"}'
        try:
            self.connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            self.connection.execute(f'PRAGMA foreign_keys = {"ON" if foreign_keys else "OFF"}')
        except sqlite3.Error as exc:
            raise self.error(exc, f'cannot open SQLite database {path}') from exc

    def fold(self, name: str) -> str:
        return name.translate(_ASCII_LOWER)

    def execute(self, text: str, params: t.Sequence[t.Any] = ()) -> int:
        try:
            return self.connection.execute(text, tuple(params)).rowcount
        except sqlite3.IntegrityError as exc:
            culprits = self._foreign_key_culprits(text, params) if 'FOREIGN KEY' in str(exc) and self.connection.in_transaction else []
            if culprits:
                raise DbError(f'SQLite statement failed: {_foreign_key_message(culprits)}') from exc
            raise self.error(exc, 'SQLite statement failed') from exc
        except sqlite3.Error as exc:
            raise self.error(exc, 'SQLite statement failed') from exc

    def _violations(self) -> list[tuple[t.Any, ...]]:
        try:
            return [tuple(row) for row in self.connection.execute('SELECT "table", rowid, parent, fkid FROM pragma_foreign_key_check').fetchall()]
        except sqlite3.Error:  # e.g. a foreign key to a table that does not exist
            return []

    def _foreign_key_culprits(self, text: str, params: t.Sequence[t.Any]) -> list[tuple[str, str, int]]:
        """(table, referenced table, rows) for the rows that would point at nothing once ``text`` ran.

        SQLite says only "FOREIGN KEY constraint failed". The statement is run again in a savepoint with the foreign
        keys deferred, the violations it adds are listed, and the savepoint is rolled back: nothing changes.
        """
        before = set(self._violations())
        after: set[tuple[t.Any, ...]] = set()
        try:
            self.connection.execute('SAVEPOINT dihya_rgpd_fk')
            try:
                self.connection.execute('PRAGMA defer_foreign_keys = ON')
                self.connection.execute(text, tuple(params))
                after = set(self._violations())
            finally:
                self.connection.execute('ROLLBACK TO dihya_rgpd_fk')
                self.connection.execute('RELEASE dihya_rgpd_fk')
                self.connection.execute('PRAGMA defer_foreign_keys = OFF')
        except sqlite3.Error:
            return []
        return _culprits(after - before)

    def executemany(self, text: str, rows: t.Sequence[t.Sequence[t.Any]]) -> None:
        try:
            self.connection.executemany(text, rows)
        except sqlite3.Error as exc:
            raise self.error(exc, 'SQLite statement failed') from exc

    def query(self, text: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        try:
            return self.connection.execute(text, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc, 'SQLite query failed') from exc

    def stream_batches(self, text: str, params: t.Sequence[t.Any] = (), batch: BatchSize = STREAM_BATCH) -> t.Iterator[list[tuple[t.Any, ...]]]:
        try:
            cursor = self.connection.execute(text, tuple(params))
            try:
                while True:
                    rows = cursor.fetchmany(batch() if callable(batch) else batch)
                    if not rows:
                        return
                    yield rows
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self.error(exc, 'SQLite query failed') from exc

    def row_text(self, table: TableInfo, alias: str) -> RowText | None:
        # json_object writes integers, text and NULL as the engine does. It refuses blobs and writes reals with
        # 15 significant digits only, and any column may hold them whatever its declared type: such a row
        # gives NULL and the engine encodes it from its values.
        names = list(table.columns)
        if not names or len(names) > JSON_MAX_COLUMNS:
            return None
        columns = [f'{alias}.{quote(name)}' for name in names]
        odd = '(' + ' OR '.join(f"typeof({column}) IN ('real', 'blob')" for column in columns) + ')'
        pairs = ', '.join(f"'{name}', {column}" for name, column in zip(names, columns, strict=True))
        # The CSV line is left to the csv module: building it in SQL (quoting each text field) costs SQLite more.
        return RowText(json=f'CASE WHEN {odd} THEN NULL ELSE json_object({pairs}) END', csv=None, values=tuple(columns))

    def _begin(self, write: bool) -> None:
        self.execute('BEGIN IMMEDIATE' if write else 'BEGIN')

    def _commit(self) -> None:
        try:
            self.connection.execute('COMMIT')
        except sqlite3.Error as exc:
            # A deferred foreign key fails the COMMIT and leaves the transaction open: name the tables, then roll back.
            culprits = _culprits(set(self._violations())) if isinstance(exc, sqlite3.IntegrityError) and 'FOREIGN KEY' in str(exc) else []
            self._rollback()
            if culprits:
                raise DbError(f'SQLite commit failed: {_foreign_key_message(culprits)}') from exc
            raise self.error(exc, 'SQLite commit failed') from exc

    def _rollback(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute('ROLLBACK')

    def introspect(self, names: t.Iterable[str]) -> dict[str, TableInfo]:
        result: dict[str, TableInfo] = {}
        for name in names:
            rows = self.query(f'PRAGMA table_info({quote(name)})')
            if not rows:
                continue
            pk = sorted((row[5], row[1]) for row in rows if row[5])
            single_integer_pk = len(pk) == 1 and any(row[1] == pk[0][1] and row[2].upper() == 'INTEGER' for row in rows)
            columns = {}
            for dummy_cid, column, declared, notnull, default, in_pk in rows:
                generated = default is not None or (single_integer_pk and bool(in_pk))
                columns[column] = ColumnInfo(column, declared, column_kind(declared), bool(notnull) or (bool(in_pk) and not single_integer_pk), generated)
            references = frozenset(row[2] for row in self.query(f'PRAGMA foreign_key_list({quote(name)})'))
            primary_key = tuple(column for dummy, column in pk)
            result[name] = TableInfo(name, columns, primary_key, references, self._unique_keys(name, primary_key))
        return result

    def _unique_keys(self, name: str, primary_key: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
        # A single-column INTEGER PRIMARY KEY is the rowid and has no index: it comes from table_info (the primary key).
        keys = {primary_key} if primary_key else set()
        for index, unique, partial in self.query('SELECT name, "unique", partial FROM pragma_index_list(?)', (name,)):
            if not unique or partial:
                continue
            parts = self.query('SELECT cid, name FROM pragma_index_xinfo(?) WHERE "key" = 1 ORDER BY seqno', (index,))
            # cid -2 is an expression, -1 the rowid: neither is a column the data map can name.
            if parts and all(cid >= 0 for cid, dummy in parts):
                keys.add(tuple(column for dummy, column in parts))
        return frozenset(keys)

    def unique_column_sets(self, name: str) -> list[set[str | None]]:
        return column_sets(self.query('SELECT il.name, ii.name FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii'
                                      ' WHERE il."unique" = 1', (name,)))

    def referencing_tables(self, name: str) -> set[str]:
        # Every table, whatever its name ("user-notes" included); the names are bound values, never SQL text. SQLite
        # finds the table of a foreign key whatever the case of its ASCII letters, so the names are compared folded.
        tables = [row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found = set()
        for table in tables:
            if any(self.fold(str(parent)) == self.fold(name) for (parent,) in self.query('SELECT "table" FROM pragma_foreign_key_list(?)', (table,))):
                found.add(table)
        return found

    def close(self) -> None:
        self.connection.close()


def open_database(
    path: str | None = None,
    dsn: str | None = None,
    read_only: bool = False,
    foreign_keys: bool = True,
    schema: str = 'public',
    timeout: float = DEFAULT_TIMEOUT,
    url: DbUrl | str | None = None,
) -> Database:
    """Open a database given exactly one way: a ``db_url`` (``url``, see ``_db_url``), a SQLite file (``path``) or a
    PostgreSQL DSN (``dsn``). Every message is safe to show: none holds the DSN or its password."""
    if sum(given is not None for given in (path, dsn, url)) != 1:
        raise DbError('give either a SQLite database path or a PostgreSQL DSN')
    if path is not None:
        return SQLiteDatabase(path, read_only=read_only, foreign_keys=foreign_keys, timeout=timeout)
    if dsn is not None:
        try:
            parsed = parse_db_url(dsn, 'dsn')
        except DbUrlError as exc:
            raise DbError(f'invalid PostgreSQL DSN: {exc}') from None
        if parsed.kind != POSTGRESQL:
            raise DbError('invalid PostgreSQL DSN: expected postgresql://... or key=value pairs')
    elif isinstance(url, str):
        try:
            parsed = parse_db_url(url)
        except DbUrlError as exc:
            raise DbError(str(exc)) from None
    else:
        parsed = t.cast(DbUrl, url)
    if parsed.kind == SQLITE:
        return SQLiteDatabase(t.cast(str, parsed.path), read_only=read_only, foreign_keys=foreign_keys, timeout=timeout)
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.dihya.ops.plugins.module_utils._rgpd_pg import PostgresDatabase  # psycopg only when it is needed
    return PostgresDatabase(t.cast(str, parsed.dsn), read_only=read_only, schema=schema, timeout=timeout)
