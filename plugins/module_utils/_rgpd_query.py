# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The RGPD engine's SQL that finds one subject's rows: each table's rows that are the subject's, in the subject's tenant.

A :class:`SubjectQuery` resolves the tenant and the subject id given by the caller (:meth:`SubjectQuery.subject`),
then writes the WHERE clause selecting a table's rows of that subject (:meth:`SubjectQuery.match`), counts them and
reads them a batch at a time. Values are always bound parameters; identifiers come from the validated data map and
are quoted by the adapter.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, TableInfo, quote
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import DEFAULT_SINGLE_TENANT, DataMap, TableMap, tenant_name_problem
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_schema import table_key
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import pseudonym_of

DEFAULT_BATCH = 500
_INTEGER = re.compile(r'-?\d{1,19}')


def single_tenant_name(data_map: DataMap, tenant: t.Any) -> str:
    """The tenant name of a single-tenant database for a request naming ``tenant`` (None or '' when it names none).

    The data map's fixed name (``tenant: main``) is the only one accepted; without one, the request's name is taken
    as given (a plain name: it ends up in archive and folder names), ``default`` when the request names none.
    """
    if tenant is None or tenant == '':
        return data_map.tenant or DEFAULT_SINGLE_TENANT
    problem = tenant_name_problem(tenant if isinstance(tenant, str) else str(tenant))
    if problem is not None:
        raise RgpdError(f'tenant {problem}')
    if data_map.tenant is not None and str(tenant) != data_map.tenant:
        raise RgpdError(f'tenant {str(tenant)!r} is not the tenant of this database: the data map is single-tenant (tenancy: single) '
                        f'and names its tenant {data_map.tenant!r}; give {data_map.tenant!r} or no tenant')
    return str(tenant)


@dataclasses.dataclass
class Subject:
    """A subject resolved in one tenant (in a single-tenant database, ``tenant`` is the database's tenant name)."""

    given: str
    id: t.Any
    tenant_given: str
    tenant: t.Any
    pseudonym: str


class SubjectQuery:
    """The queries of one data map on one database (whose schema ``info`` was checked): a subject's rows, table by table."""

    def __init__(self, db: Database, data_map: DataMap, info: t.Mapping[str, TableInfo], key: bytes, batch: int = DEFAULT_BATCH) -> None:
        self.db = db
        self.map = data_map
        self.info = info
        self.key = key
        self.batch = batch

    # -- the subject ---------------------------------------------------------------------------------
    def coerce(self, value: t.Any, table: str, column: str, what: str) -> t.Any:
        """``value`` as the column holds it: an integer for an integer column, else non-empty text."""
        info = self.info[table].columns[column]
        if info.kind == 'integer':
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            text = str(value).strip()
            if not _INTEGER.fullmatch(text):
                raise RgpdError(f'{what} must be an integer ({table}.{column} is {info.type}); got {len(str(value))} characters that are not')
            return int(text)
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == '':
            raise RgpdError(f'{what} must be a non-empty string')
        return str(value)

    def resolve_tenant(self, tenant: t.Any) -> t.Any:
        """The tenant as the subject table holds it (through the data map's ``tenant_lookup``, when it has one); in a
        single-tenant database, the database's tenant name."""
        if self.map.single_tenant:
            return single_tenant_name(self.map, tenant)
        if tenant is None or tenant == '':
            raise RgpdError('tenant is required: the data map is multi-tenant (tenancy: column), every request names its tenant')
        lookup = self.map.tenant_lookup
        if lookup is None:
            return self.coerce(tenant, self.map.subject_table, t.cast(str, self.map.subject_tenant_column), 'tenant')
        key = self.coerce(tenant, lookup.table, lookup.key_column, 'tenant')
        rows = self.db.query(
            self.db.sql(f'SELECT {quote(lookup.id_column)} FROM {self.db.table(lookup.table)} WHERE {quote(lookup.key_column)} = ? LIMIT 2'), (key,),
        )
        if not rows:
            raise RgpdError(f'tenant {str(tenant)[:64]!r} not found in {lookup.table}.{lookup.key_column}')
        if len(rows) > 1:  # the schema check makes the key unique; never guess between two tenants
            raise RgpdError(f'tenant {str(tenant)[:64]!r} names several rows of {lookup.table}')
        return rows[0][0]

    def subject(self, tenant: t.Any, subject_id: t.Any) -> Subject:
        """Resolve the tenant and coerce the subject id to the id column's type (the subject may not exist)."""
        resolved = self.resolve_tenant(tenant)
        value = self.coerce(subject_id, self.map.subject_table, self.map.subject_id_column, 'subject_id')
        given = resolved if self.map.single_tenant else str(tenant)
        return Subject(str(subject_id), value, given, resolved, pseudonym_of(value, self.key))

    # -- the subject's rows ---------------------------------------------------------------------------
    def match(self, table: TableMap, subject: Subject, side: str | None = None, alias: str = 't0', depth: int = 0) -> tuple[str, list[t.Any]]:
        """WHERE clause (on ``alias``) selecting the rows of ``table`` that are the subject's, in the subject's tenant.

        The SQL carries the tenant proof that ``_rgpd_schema.tenant_proof_errors`` checked on the schema: a subject column
        is matched against the subject row found by its id *and* tenant; a parent path against the parent rows matched
        the same way, step by step; a table's own tenant column is always filtered on too. A single-tenant data map has
        no tenant column: the same SQL, without the tenant conditions.
        """
        params: list[t.Any] = []
        if table.parent is not None:
            parent = self.map.tables[table.parent.table]
            inner = f't{depth + 1}'
            where, inner_params = self.match(parent, subject, None, inner, depth + 1)
            clause = (f'{alias}.{quote(table.parent.column)} IN (SELECT {inner}.{quote(table.parent.references)} '
                      f'FROM {self.db.table(parent.name)} {inner} WHERE {where})')
            params.extend(inner_params)
        elif table.name == self.map.subject_table and [entry.column for entry in table.sides] == [self.map.subject_id_column]:
            # The subject row itself: its id and its tenant (added below).
            clause = f'({alias}.{quote(self.map.subject_id_column)} = ?)'
            params.append(subject.id)
        else:
            parts = []
            inner = f's{depth}'
            id_column = quote(self.map.subject_id_column)
            in_tenant, tenant_params = '', []
            if self.map.subject_tenant_column is not None:
                in_tenant, tenant_params = f' AND {inner}.{quote(self.map.subject_tenant_column)} = ?', [subject.tenant]
            for entry in table.sides:
                if side is not None and entry.column != side:
                    continue
                # Through the subject row, found by its id and tenant. The equality lets the planner use an index on the
                # column (SQLite would otherwise prefer one on the table's tenant column and read the whole tenant).
                column = f'{alias}.{quote(entry.column)}'
                parts.append(
                    f'({column} = ? AND {column} IN (SELECT {inner}.{id_column} FROM {self.db.table(self.map.subject_table)} {inner} '
                    f'WHERE {inner}.{id_column} = ?{in_tenant}))'
                )
                params.extend((subject.id, subject.id, *tenant_params))
            clause = '(' + ' OR '.join(parts) + ')'
        if table.tenant_column is not None:
            clause += f' AND {alias}.{quote(table.tenant_column)} = ?'
            params.append(subject.tenant)
        return clause, params

    def select(self, table: TableMap, subject: Subject, columns: t.Sequence[str]) -> list[tuple[t.Any, ...]]:
        """``columns`` of the subject's rows of ``table`` (a small result: the subject row)."""
        where, params = self.match(table, subject)
        selected = ', '.join(f't0.{quote(column)}' for column in columns)
        return self.db.query(self.db.sql(f'SELECT {selected} FROM {self.db.table(table.name)} t0 WHERE {where}'), params)

    def count_where(self, table: TableMap, where: str, params: t.Sequence[t.Any]) -> int:
        """How many rows of ``table`` (as ``t0``) ``where`` selects."""
        return int(self.db.query(self.db.sql(f'SELECT count(*) FROM {self.db.table(table.name)} t0 WHERE {where}'), params)[0][0])

    def exists(self, subject: Subject) -> bool:
        """Whether the subject row exists in the subject's tenant."""
        return bool(self.select(self.map.subject, subject, [self.map.subject_id_column]))

    def count(self, table: TableMap, subject: Subject, side: str | None = None) -> int:
        """How many rows of ``table`` are the subject's (on ``side`` only, when given)."""
        return self.count_where(table, *self.match(table, subject, side))

    def counts(self, subject: Subject) -> dict[str, dict[str, t.Any]]:
        """The subject's rows per table, and per side for tables with several subject columns."""
        counts: dict[str, dict[str, t.Any]] = {}
        for name, table in self.map.tables.items():
            entry: dict[str, t.Any] = {'rows': self.count(table, subject)}
            if len(table.sides) > 1:
                entry['sides'] = {side.column: self.count(table, subject, side.column) for side in table.sides}
            counts[name] = entry
        return counts

    def batches(self, table: TableMap, side: str | None, columns: t.Sequence[str], subject: Subject) -> t.Iterator[list[tuple[t.Any, ...]]]:
        """The subject's rows of ``table`` as (key..., columns...) in key order, a batch at a time.

        The rows are updated while they are read. A PostgreSQL cursor does not see changes made after it
        was opened, so one streamed query is enough; SQLite gives no such promise, so there each batch is a
        new query starting after the last key seen (keyset pagination).
        """
        key = table_key(table, self.info)
        selected = ', '.join(f't0.{quote(name)}' for name in (*key, *columns))
        key_list = ', '.join(f't0.{quote(name)}' for name in key)
        source = self.db.table(table.name)
        if self.db.insensitive_cursors:
            where, params = self.match(table, subject, side)
            batch: list[tuple[t.Any, ...]] = []
            for row in self.db.stream(self.db.sql(f'SELECT {selected} FROM {source} t0 WHERE {where} ORDER BY {key_list}'), params):
                batch.append(tuple(row))
                if len(batch) >= self.batch:
                    yield batch
                    batch = []
            if batch:
                yield batch
            return
        last: tuple[t.Any, ...] | None = None
        while True:
            where, params = self.match(table, subject, side)
            if last is not None:
                where += f' AND ({key_list}) > ({", ".join("?" for dummy in key)})'
                params.extend(last)
            rows = self.db.query(self.db.sql(f'SELECT {selected} FROM {source} t0 WHERE {where} ORDER BY {key_list} LIMIT {int(self.batch)}'), params)
            if not rows:
                return
            yield rows
            last = tuple(rows[-1][:len(key)])
