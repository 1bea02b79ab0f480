# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.


"""The PostgreSQL adapter of the RGPD engine, through psycopg 3 (imported the first time a PostgreSQL database is opened).

It runs the engine's reads in REPEATABLE READ transactions, streams them through server-side cursors, has the server
write the JSON and CSV text of simple rows, and updates a batch of rows in one statement. Every message it gives is
scrubbed of the DSN and of every spelling of its password (``_db_url.dsn_secrets``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._db_url import dsn_secrets
from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import (
    DEFAULT_TIMEOUT, STREAM_BATCH, BatchSize, ColumnInfo, Database, DbError, RowText, TableInfo, column_kind, column_sets, quote,
)

# PostgreSQL type names (as format_type spells them) that bulk updates may cast to; anything else falls back to one
# UPDATE per row.
_SAFE_TYPE = re.compile(r'[A-Za-z_][A-Za-z0-9_ ."]*(\(\d+(,\d+)?\))?(\[\])*')
# work_mem (kB) of a PostgreSQL export transaction, for its sorts.
BULK_WORK_MEM_KB = 65536
# PostgreSQL types (information_schema data_type) that psycopg returns as int, str or bool.
# (Not character(n): its text loses the padding psycopg keeps.)
_PLAIN_TYPES = frozenset(('smallint', 'integer', 'bigint', 'text', 'character varying', 'boolean'))


class PostgresDatabase(Database):
    """A PostgreSQL database reached through psycopg 3; tables live in ``schema`` (default ``public``)."""

    kind = 'postgresql'
    insensitive_cursors = True
    concurrent_reads = True

    def __init__(self, dsn: str, read_only: bool = False, schema: str = 'public', timeout: float = DEFAULT_TIMEOUT) -> None:
        psycopg = optional_library('psycopg', 'a PostgreSQL database', error=DbError)
        self.psycopg = psycopg
        try:
            password = psycopg.conninfo.conninfo_to_dict(dsn).get('password')
        except psycopg.Error as exc:
            raise DbError('invalid PostgreSQL DSN (its text is not shown because it may hold a password)') from exc
        # The whole DSN and every spelling of its password are masked in every message.
        super().__init__([dsn, *dsn_secrets(dsn), *([str(password)] if password else [])])
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

    def stream_batches(self, text: str, params: t.Sequence[t.Any] = (), batch: BatchSize = STREAM_BATCH) -> t.Iterator[list[tuple[t.Any, ...]]]:
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
        # The connection may be gone: then the server rolled back.
        with contextlib.suppress(self.psycopg.Error):
            self.connection.rollback()

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
                column, data_type, column_kind(data_type), nullable == 'NO', default is not None or identity == 'YES',
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

    def unique_column_sets(self, name: str) -> list[set[str | None]]:
        return column_sets(self.query(
            'SELECT i.indexrelid::text, a.attname FROM pg_index i JOIN pg_class cl ON cl.oid = i.indrelid'
            ' JOIN pg_namespace n ON n.oid = cl.relnamespace'
            ' JOIN LATERAL unnest(i.indkey) AS k(attnum) ON true LEFT JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.attnum'
            ' WHERE i.indisunique AND n.nspname = ? AND cl.relname = ?',
            (self.schema, name),
        ))

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
