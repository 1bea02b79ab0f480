# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Database adapter of the RGPD engine: SQLite (a file path) and PostgreSQL (a DSN, through psycopg 3).

The adapter hides what differs between the two: identifier quoting, the parameter style, transactions,
streaming cursors (a server-side cursor on PostgreSQL) and schema introspection. SQL text given to it is
written with ``?`` placeholders; identifiers are validated with :data:`IDENTIFIER` and double-quoted, values
are always bound parameters. Error messages never hold the DSN password.

psycopg is imported the first time a PostgreSQL database is opened, so SQLite users do not need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import sqlite3
import string
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import IDENTIFIER


STREAM_BATCH = 1000
# PostgreSQL type names (as format_type spells them) that bulk updates may cast to; anything else falls back to one
# UPDATE per row.
_SAFE_TYPE = re.compile(r'[A-Za-z_][A-Za-z0-9_ ."]*(\(\d+(,\d+)?\))?(\[\])*')
DEFAULT_TIMEOUT = 10.0
# work_mem (kB) of a PostgreSQL export transaction, for its sorts.
BULK_WORK_MEM_KB = 65536
# Columns SQLite builds a row's JSON from (json_object takes two arguments per column; SQLite allows 127 by default).
JSON_MAX_COLUMNS = 48
# PostgreSQL types (information_schema data_type) that psycopg returns as int, str or bool.
# (Not character(n): its text loses the padding psycopg keeps.)
_PLAIN_TYPES = frozenset(('smallint', 'integer', 'bigint', 'text', 'character varying', 'boolean'))
MASK = '********'
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


def _kind(declared: str) -> str:
    upper = declared.upper()
    if 'INT' in upper or upper in ('SERIAL', 'BIGSERIAL', 'SMALLSERIAL'):
        return 'integer'
    if any(word in upper for word in ('CHAR', 'TEXT', 'CLOB')) or upper == '':
        return 'text'
    return 'other'


def optional_library(name: str, purpose: str) -> t.Any:
    """Import an optional library the first time it is needed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DbError(f'{purpose} needs the {name.split(".", maxsplit=1)[0]} Python library ({exc})') from exc


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
        self.secrets = [secret for secret in secrets if secret]
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
        for secret in self.secrets:
            message = message.replace(secret, MASK)
        return message

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

    def stream_batches(self, text: str, params: t.Sequence[t.Any] = (), batch: int = STREAM_BATCH) -> t.Iterator[list[tuple[t.Any, ...]]]:
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

    def stream_batches(self, text: str, params: t.Sequence[t.Any] = (), batch: int = STREAM_BATCH) -> t.Iterator[list[tuple[t.Any, ...]]]:
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
        pairs = ', '.join(f"'{name}', {column}" for name, column in zip(names, columns))
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
                columns[column] = ColumnInfo(column, declared, _kind(declared), bool(notnull) or (bool(in_pk) and not single_integer_pk), generated)
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


class PostgresDatabase(Database):
    """A PostgreSQL database reached through psycopg 3; tables live in ``schema`` (default ``public``)."""

    kind = 'postgresql'
    insensitive_cursors = True
    concurrent_reads = True

    def __init__(self, dsn: str, read_only: bool = False, schema: str = 'public', timeout: float = DEFAULT_TIMEOUT) -> None:
        psycopg = optional_library('psycopg', 'a PostgreSQL database')
        self.psycopg = psycopg
        try:
            password = psycopg.conninfo.conninfo_to_dict(dsn).get('password')
        except psycopg.Error as exc:
            raise DbError('invalid PostgreSQL DSN (its text is not shown because it may hold a password)') from exc
        # The whole DSN and its password are masked in every message.
        super().__init__([dsn, str(password)] if password else [dsn])
        self.schema = schema
        quote(schema)
        self.cursors = 0
        try:
            self.connection = psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=False)
        except psycopg.Error as exc:
            raise self.error(exc, 'cannot connect to PostgreSQL') from exc
        try:
            # The engine's server-side cursors are always read to the end: plan them for the whole result, as a
            # plain query is, not for its first tenth (which may pick an ordered scan of a whole table over a sort).
            self.connection.execute('SET cursor_tuple_fraction = 1.0')
            self.connection.commit()
        except psycopg.Error as exc:
            self.close()
            raise self.error(exc, 'cannot set up the PostgreSQL session') from exc
        self.connection.read_only = read_only
        # Not in a transaction yet: the read-only flag applies to the next one.
        self.connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def table(self, name: str) -> str:
        return f'{quote(self.schema)}.{quote(name)}'

    def sql(self, text: str) -> str:
        # Identifiers never hold '?' or '%' (see IDENTIFIER) and values are never inlined,
        # so every '?' is a placeholder.
        return text.replace('?', '%s')

    def error(self, exc: BaseException, doing: str) -> DbError:
        error = super().error(exc, doing)
        if isinstance(exc, self.psycopg.errors.ForeignKeyViolation):
            # The server's message names both tables; say what to do about it.
            return DbError(f'{error}; add the referencing table to the data map, or give its foreign key ON DELETE CASCADE or SET NULL')
        return error

    def _run(self, text: str, params: t.Sequence[t.Any], doing: str) -> t.Any:
        try:
            cursor = self.connection.cursor()
            cursor.execute(self.sql(text), tuple(params))
            return cursor
        except self.psycopg.Error as exc:
            raise self.error(exc, doing) from exc

    def execute(self, text: str, params: t.Sequence[t.Any] = ()) -> int:
        cursor = self._run(text, params, 'PostgreSQL statement failed')
        count = cursor.rowcount
        cursor.close()
        return int(count)

    def executemany(self, text: str, rows: t.Sequence[t.Sequence[t.Any]]) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.executemany(self.sql(text), rows)
        except self.psycopg.Error as exc:
            raise self.error(exc, 'PostgreSQL statement failed') from exc

    def query(self, text: str, params: t.Sequence[t.Any] = ()) -> list[tuple[t.Any, ...]]:
        cursor = self._run(text, params, 'PostgreSQL query failed')
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def stream_batches(self, text: str, params: t.Sequence[t.Any] = (), batch: int = STREAM_BATCH) -> t.Iterator[list[tuple[t.Any, ...]]]:
        self.cursors += 1
        try:
            # A named cursor is a server-side cursor: rows come over in batches of ``batch``.
            with self.connection.cursor(name=f'dihya_rgpd_{self.cursors}') as cursor:
                cursor.itersize = batch() if callable(batch) else batch
                cursor.execute(self.sql(text), tuple(params))
                while True:
                    rows = cursor.fetchmany(batch() if callable(batch) else batch)
                    if not rows:
                        return
                    yield rows
        except self.psycopg.Error as exc:
            raise self.error(exc, 'PostgreSQL query failed') from exc

    def row_text(self, table: TableInfo, alias: str) -> RowText | None:
        # Only for tables whose every column psycopg returns as an int, a str or a bool: PostgreSQL writes
        # them as the engine does, and their text is simple. Dates, numerics, bytea... keep the engine's encoding.
        names = list(table.columns)
        if not names or any(info.type not in _PLAIN_TYPES for info in table.columns.values()):
            return None
        fields = []
        for name, info in table.columns.items():
            column = f'{alias}.{quote(name)}'
            if info.type == 'boolean':
                fields.append(f"CASE WHEN {column} THEN 'True' WHEN NOT {column} THEN 'False' ELSE '' END")
            elif info.kind == 'integer':
                fields.append(f"coalesce({column}::text, '')")
            else:
                # Quoted as Python's csv module quotes (QUOTE_MINIMAL), see SQLiteDatabase.row_text.
                special = f"strpos({column}, ',') > 0 OR strpos({column}, '\"') > 0 OR strpos({column}, chr(10)) > 0 OR strpos({column}, chr(13)) > 0"
                if len(names) == 1:
                    special += f" OR {column} = ''"
                fields.append(f"CASE WHEN {column} IS NULL THEN '' WHEN {special} THEN '\"' || replace({column}, '\"', '\"\"') || '\"' ELSE {column} END")
        # row_to_json of the whole row writes {"name":value,...} for every column in order and without spaces, as the
        # engine does (json_build_object puts spaces around the colons).
        return RowText(json=f'row_to_json({alias})::text', csv=" || ',' || ".join(fields), values=(), sort_first=True)

    def prepare_bulk_read(self) -> None:
        # Sorting the subject's rows of a big table spills to disk with the default 4 MB: give this transaction's
        # sorts up to BULK_WORK_MEM_KB of server memory (never less than the server's own setting).
        self.execute(
            "SELECT set_config('work_mem', ?, true) FROM pg_settings WHERE name = 'work_mem' AND setting::bigint < ?",
            (f'{BULK_WORK_MEM_KB}kB', BULK_WORK_MEM_KB),
        )

    def _begin(self, write: bool) -> None:
        # psycopg opens the transaction with the first statement; make sure none is open.
        self._rollback()

    def _commit(self) -> None:
        try:
            self.connection.commit()
        except self.psycopg.Error as exc:
            raise self.error(exc, 'PostgreSQL commit failed') from exc

    def _rollback(self) -> None:
        try:
            self.connection.rollback()
        except self.psycopg.Error:  # the connection is gone: the server rolled back
            pass

    def introspect(self, names: t.Iterable[str]) -> dict[str, TableInfo]:
        wanted = list(names)
        columns: dict[str, dict[str, ColumnInfo]] = {}
        rows = self.query(
            'SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity FROM information_schema.columns'
            ' WHERE table_schema = ? AND table_name = ANY(?) ORDER BY table_name, ordinal_position',
            (self.schema, wanted),
        )
        for table, column, data_type, nullable, default, identity in rows:
            columns.setdefault(table, {})[column] = ColumnInfo(
                column, data_type, _kind(data_type), nullable == 'NO', default is not None or identity == 'YES',
            )
        casts = {
            (table, column): cast for table, column, cast in self.query(
                'SELECT cl.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid'
                ' JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = ? AND cl.relname = ANY(?) AND a.attnum > 0 AND NOT a.attisdropped',
                (self.schema, wanted),
            )
        }
        for table, table_columns in columns.items():
            for column, info in table_columns.items():
                table_columns[column] = dataclasses.replace(info, cast=casts.get((table, column)))
        keys: dict[str, list[str]] = {}
        for table, column in self.query(
            'SELECT cl.relname, a.attname FROM pg_index i JOIN pg_class cl ON cl.oid = i.indrelid'
            ' JOIN pg_namespace n ON n.oid = cl.relnamespace'
            ' JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true'
            ' JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.attnum'
            ' WHERE i.indisprimary AND k.position <= i.indnkeyatts AND n.nspname = ? AND cl.relname = ANY(?) ORDER BY cl.relname, k.position',
            (self.schema, wanted),
        ):
            keys.setdefault(table, []).append(column)
        # Unique constraints and unique indexes on plain columns, valid, not partial, key columns only (not INCLUDE).
        unique: dict[tuple[str, int], list[str]] = {}
        for table, index, column in self.query(
            'SELECT cl.relname, i.indexrelid::bigint, a.attname FROM pg_index i JOIN pg_class cl ON cl.oid = i.indrelid'
            ' JOIN pg_namespace n ON n.oid = cl.relnamespace'
            ' JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true'
            ' JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.attnum'
            ' WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL AND k.position <= i.indnkeyatts'
            ' AND n.nspname = ? AND cl.relname = ANY(?) ORDER BY cl.relname, i.indexrelid, k.position',
            (self.schema, wanted),
        ):
            unique.setdefault((table, index), []).append(column)
        unique_keys: dict[str, set[tuple[str, ...]]] = {}
        for (table, dummy_index), index_columns in unique.items():
            unique_keys.setdefault(table, set()).add(tuple(index_columns))
        references: dict[str, set[str]] = {}
        for table, parent in self.query(
            "SELECT cl.relname, rf.relname FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid"
            " JOIN pg_class rf ON rf.oid = con.confrelid JOIN pg_namespace n ON n.oid = cl.relnamespace"
            " WHERE con.contype = 'f' AND n.nspname = ? AND cl.relname = ANY(?)",
            (self.schema, wanted),
        ):
            references.setdefault(table, set()).add(parent)
        return {
            name: TableInfo(name, columns[name], tuple(keys.get(name, ())), frozenset(references.get(name, ())),
                            frozenset(unique_keys.get(name, ())))
            for name in wanted if name in columns
        }

    def update_rows(self, table: TableInfo, columns: t.Sequence[str], key: t.Sequence[str], rows: t.Sequence[t.Sequence[t.Any]]) -> None:
        # One statement per batch, joining a VALUES list, instead of one UPDATE per row: far fewer
        # round trips and plans. The VALUES columns are cast to the table's own column types.
        casts = [table.columns[column].cast for column in (*columns, *key)]
        if not rows or not all(cast and _SAFE_TYPE.fullmatch(cast) for cast in casts):
            super().update_rows(table, columns, key, rows)
            return
        names = [f'c{index}' for index in range(len(columns))] + [f'k{index}' for index in range(len(key))]
        row_sql = '(' + ', '.join(f'%s::{cast}' for cast in casts) + ')'
        statement = (
            f'UPDATE {self.table(table.name)} AS t SET {", ".join(f"{quote(column)} = v.c{index}" for index, column in enumerate(columns))} '
            f'FROM (VALUES {", ".join(row_sql for dummy in rows)}) AS v ({", ".join(names)}) '
            f'WHERE {" AND ".join(f"t.{quote(column)} = v.k{index}" for index, column in enumerate(key))}'
        )
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(statement, [value for row in rows for value in row])
        except self.psycopg.Error as exc:
            raise self.error(exc, 'PostgreSQL statement failed') from exc

    def referencing_tables(self, name: str) -> set[str]:
        # Names are compared as PostgreSQL does: exactly ("Users" is not users). A table of another schema is given
        # as schema.table, so it never passes for a mapped table of this one. Partitions inherit their parent's
        # foreign key (conparentid): the partitioned table stands for them.
        rows = self.query(
            "SELECT cn.nspname, cl.relname FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid"
            " JOIN pg_namespace cn ON cn.oid = cl.relnamespace"
            " JOIN pg_class rf ON rf.oid = con.confrelid JOIN pg_namespace n ON n.oid = rf.relnamespace"
            " WHERE con.contype = 'f' AND con.conparentid = 0 AND n.nspname = ? AND rf.relname = ?",
            (self.schema, name),
        )
        return {table if schema == self.schema else f'{schema}.{table}' for schema, table in rows}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def open_database(
    path: str | None = None,
    dsn: str | None = None,
    read_only: bool = False,
    foreign_keys: bool = True,
    schema: str = 'public',
    timeout: float = DEFAULT_TIMEOUT,
) -> Database:
    """Open a SQLite file (``path``) or a PostgreSQL database (``dsn``): exactly one of them."""
    if (path is None) == (dsn is None):
        raise DbError('give either a SQLite database path or a PostgreSQL DSN')
    if path is not None:
        return SQLiteDatabase(path, read_only=read_only, foreign_keys=foreign_keys, timeout=timeout)
    if not re.match(r'(postgres|postgresql)://|[a-z_]+\s*=', str(dsn).strip()):
        raise DbError('invalid PostgreSQL DSN: expected postgresql://... or key=value pairs')
    return PostgresDatabase(str(dsn), read_only=read_only, schema=schema, timeout=timeout)
