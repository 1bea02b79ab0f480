# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The RGPD engine's check of a data map against the live database schema, before any row is read.

:func:`check_schema` lists every problem at once: missing tables and columns, strategies a column cannot hold, keys
that do not identify one row, unmapped tables whose foreign keys erasure would break, and the tenant proof
(:func:`tenant_proof_errors`): a data map through which a row of another tenant could be read or changed is refused.
:func:`secret_column_errors` and :func:`data_map_warnings` say what is wrong, or only risky, about secret columns
and fingerprints.
"""

from __future__ import annotations

import re
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, DbError, TableInfo, quote
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_ledger import DEFAULT_FINGERPRINT_COLUMNS, LEDGER_TABLE, fingerprint_columns
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import TEXT_STRATEGIES, DataMap, TableMap
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import looks_secret


def _refuse(errors: t.Sequence[str]) -> None:
    if errors:
        raise RgpdError('the data map does not match the database:\n  - ' + '\n  - '.join(errors))


def _plain_name(name: str) -> bool:
    """Whether a table name is one a data map can give (see ``_rgpd_map.IDENTIFIER``)."""
    try:
        quote(name)
    except DbError:
        return False
    return True


def table_key(table: TableMap, info: t.Mapping[str, TableInfo]) -> tuple[str, ...]:
    """The columns identifying a row of ``table``: the data map's ``key``, else the primary key."""
    return table.key or info[table.name].primary_key


def secret_columns(table: TableMap) -> set[str]:
    """The columns of ``table`` the data map marks ``secret``."""
    return {column for column, strategy in table.strategies().items() if strategy == 'secret'}


def tenant_proof_errors(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """Why some rows the data map reaches could belong to another tenant than the one asked for; empty when none can.

    A row is proven to be the requested tenant's through its table's own ``tenant_column``, or through a reference
    that is unique on its own in the referenced table and leads, step by step, to a row whose tenant is proven:
    ``subject_columns`` reference the subject id column, which must then be the subject table's primary key or a
    unique key by itself; a ``parent`` path references ``references``, which must be unique by itself in the parent
    table, and the parent's own tenant must be proven the same way. An id that is unique only together with the tenant
    (``PRIMARY KEY (id, tenant_id)``) proves nothing: the same id names a row of every tenant. Uniqueness is a fact of the
    schema (a partial or expression unique index does not count), so this is checked against the live database.
    Missing tables and columns are left to the other checks.

    A single-tenant data map has no tenant column, so every row is proven by references alone, and the same
    uniqueness is required: ``author_id = 42`` must name one person, and a parent path one parent row.
    """
    reasons: dict[str, str | None] = {}

    def not_unique(table: str, column: str) -> str | None:
        found = info.get(table)
        if found is None or column not in found.columns or found.unique_on(column):
            return None
        return f'{table}.{column} is not unique on its own (the key is {found.key_text()})'

    def reason(name: str, seen: frozenset[str]) -> str | None:
        if name in reasons:
            return reasons[name]
        table = data_map.tables[name]
        result: str | None = None
        if table.tenant_column is None and table.parent is not None:
            parent = table.parent
            if parent.table in data_map.tables and parent.table not in seen:
                result = not_unique(parent.table, parent.references)
                above = reason(parent.table, seen | {name}) if result is None else None
                if above is not None:
                    result = f'its parent path goes through {parent.table!r}, whose tenant cannot be proven: {above}'
        elif table.tenant_column is None:
            result = not_unique(data_map.subject_table, data_map.subject_id_column)
        reasons[name] = result
        return result

    errors = []
    for name in data_map.tables:
        why = reason(name, frozenset((name,)))
        if why is not None and data_map.single_tenant:
            errors.append(f"tables.{name}: cannot prove each row is the subject's: {why}; make it unique, "
                          'or give a parent path through a table whose key is unique')
        elif why is not None:
            errors.append(f"tables.{name}: cannot prove each row's tenant: {why}; add tenant_column to {name}, "
                          'or a parent path through a table whose key is unique')
    consent = data_map.consent
    if consent is not None and consent.tenant_column is None:
        why = not_unique(data_map.subject_table, data_map.subject_id_column)
        if why is not None and data_map.single_tenant:
            errors.append(f"consent: cannot prove each row is the subject's: {why}")
        elif why is not None:
            errors.append(f"consent: cannot prove each row's tenant: {why}; add consent.tenant_column (the tenant column of {consent.table})")
    lookup = data_map.tenant_lookup
    if lookup is not None:
        why = not_unique(lookup.table, lookup.key_column)
        if why is not None:
            errors.append(f'tenant_lookup: {why}, so one tenant key could name two tenants; make {lookup.key_column} unique in {lookup.table}')
    return errors


def _unmapped_referencing_errors(db: Database, data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """Tables outside the data map holding a foreign key to the subject table, or to a mapped table whose rows erasure
    deletes: erasure would fail on them (foreign keys on) or leave their rows pointing at nothing (foreign keys off).

    Names are compared as the database compares them (SQLite ignores the case of ASCII letters), and every table is
    found, even one whose name no data map can give ("user-notes") or, on PostgreSQL, one in another schema.
    """
    mapped = {db.fold(name) for name in data_map.tables}
    errors = []
    for target in data_map.tables.values():
        if target.name not in info or (target.erasure != 'delete' and target.name != data_map.subject_table):
            continue
        what = repr(target.name) if target.name == data_map.subject_table else f'the mapped table {target.name!r}, whose rows erasure deletes,'
        for other in sorted(db.referencing_tables(target.name)):
            if db.fold(other) in mapped:
                continue
            if db.kind == 'postgresql' and '.' in other:
                why = 'and cannot be: it lives in another schema than the one the data map covers; move it, or drop or change its foreign key'
            elif not _plain_name(other):
                why = ('and cannot be: its name is not a plain identifier (letters, digits and _); rename the table so that it can be mapped, '
                       'or drop its foreign key')
            else:
                why = 'add it to the data map'
            errors.append(f'table {other!r} has a foreign key to {what} but is not in the data map ({why}): erasure could leave rows behind')
    return errors


def check_schema(db: Database, data_map: DataMap) -> dict[str, TableInfo]:
    """Check every table and column the data map names against the database; raise listing every problem.

    This includes the tenant proof (:func:`tenant_proof_errors`): a data map through which a row of another tenant
    could be read or changed is refused here, before any row is read.
    """
    names = list(data_map.tables)
    if data_map.consent is not None:
        names.append(data_map.consent.table)
    if data_map.tenant_lookup is not None:
        names.append(data_map.tenant_lookup.table)
    info = db.introspect(dict.fromkeys(names))
    errors: list[str] = []

    def column(table: str, name: str | None, where: str) -> t.Any:
        if name is None or table not in info:
            return None
        found = info[table].columns.get(name)
        if found is None:
            errors.append(f'{where}: table {table!r} has no column {name!r}')
        return found

    for name in dict.fromkeys(names):
        if name not in info:
            errors.append(f'table {name!r} does not exist in the database')
    if LEDGER_TABLE in data_map.tables:
        errors.append(f'tables.{LEDGER_TABLE}: the erasure ledger cannot be mapped')
    subject = data_map.subject
    column(subject.name, data_map.subject_id_column, 'subject.id_column')
    column(subject.name, data_map.subject_tenant_column, 'subject.tenant_column')
    repoint_to_null = subject.erasure == 'delete'
    for table in data_map.tables.values():
        where = f'tables.{table.name}'
        if table.name not in info:
            continue
        for side in table.sides:
            found = column(table.name, side.column, f'{where}.subject_columns')
            if (found is not None and table.erasure == 'anonymise' and table.name != subject.name and repoint_to_null and found.notnull):
                errors.append(
                    f'{where}: erasure anonymise keeps the row, so {side.column!r} must stop pointing at the subject; it is NOT NULL and '
                    f'the subject table is deleted (use erasure anonymise on {subject.name!r} to repoint to a tombstone, or delete these rows)'
                )
        column(table.name, table.tenant_column, f'{where}.tenant_column')
        if table.parent is not None:
            column(table.name, table.parent.column, f'{where}.parent.column')
            column(table.parent.table, table.parent.references, f'{where}.parent.references')
        for name, strategy in table.strategies().items():
            found = column(table.name, name, f'{where}.columns')
            if found is None:
                continue
            if strategy in TEXT_STRATEGIES and found.kind == 'integer':
                errors.append(f'{where}.columns.{name}: strategy {strategy!r} writes text but the column is {found.type}')
            if strategy == 'null' and found.notnull:
                errors.append(f'{where}.columns.{name}: strategy null on a NOT NULL column')
            if any(side.column == name for side in table.sides) or name == table.tenant_column:
                errors.append(f'{where}.columns.{name}: a subject or tenant column cannot be anonymised with a strategy')
        for name in table.key or ():
            column(table.name, name, f'{where}.key')
        if not (table.key or info[table.name].primary_key):
            errors.append(f'{where}: the table has no primary key; give key: [columns identifying a row]')
        elif table.key and all(name in info[table.name].columns for name in table.key):
            # Rows are updated by key: a key that is not unique (an id unique only per tenant) would change the rows of
            # another subject, or another tenant, sharing it.
            unique = {info[table.name].primary_key, *info[table.name].unique} - {()}
            if not any(set(candidate) <= set(table.key) for candidate in unique):
                errors.append(
                    f'{where}.key: ({", ".join(table.key)}) does not identify one row: no primary key or unique key of {table.name} is made of '
                    'these columns, so an update by key could change rows of another subject or tenant; give the primary key or a unique key'
                )
    if subject.name in info and subject.erasure == 'anonymise':
        id_info = info[subject.name].columns.get(data_map.subject_id_column)
        if id_info is not None and not (id_info.generated or id_info.kind == 'text'):
            errors.append(
                f'tables.{subject.name}: erasure anonymise replaces the subject row by a tombstone with a new id, '
                f'but {data_map.subject_id_column!r} has no default and is not text'
            )
    errors.extend(_unmapped_referencing_errors(db, data_map, info))
    errors.extend(tenant_proof_errors(data_map, info))
    consent = data_map.consent
    if consent is not None:
        for attribute in ('subject_column', 'purpose_column', 'granted_column', 'source_column', 'time_column', 'tenant_column'):
            column(consent.table, getattr(consent, attribute), f'consent.{attribute}')
    lookup = data_map.tenant_lookup
    if lookup is not None:
        column(lookup.table, lookup.id_column, 'tenant_lookup.id_column')
        column(lookup.table, lookup.key_column, 'tenant_lookup.key_column')
    _refuse(errors)
    return info


def check_secret_columns(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> None:
    """Refuse secret columns that erasure could not clear (NOT NULL and not text) or that identify rows (key columns)."""
    errors = []
    for table in data_map.tables.values():
        found_table = info[table.name]
        key = set(table_key(table, info))
        for column in sorted(secret_columns(table)):
            found = found_table.columns.get(column)
            if found is None:
                continue
            if found.notnull and found.kind != 'text':
                errors.append(f'tables.{table.name}.columns.{column}: strategy secret on a NOT NULL {found.type} column, which can hold '
                              'neither NULL nor [redacted]; make it nullable')
            if column in key:
                errors.append(f'tables.{table.name}.columns.{column}: a key column cannot be secret (exports order rows by it)')
    _refuse(errors)


def data_map_warnings(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """What the data map leaves to chance without being wrong: secret-looking columns that are exported, fingerprints."""
    found = []
    for table in data_map.tables.values():
        table_info = info.get(table.name)
        if table_info is None:
            continue
        strategies = table.strategies()
        structural = {side.column for side in table.sides} | {table.tenant_column} | set(table_key(table, info))
        if table.parent is not None:
            structural.add(table.parent.column)
        if table.name == data_map.subject_table:
            structural |= {data_map.subject_id_column, data_map.subject_tenant_column}
        for column in table_info.columns:
            if column in structural or strategies.get(column) == 'secret' or not looks_secret(column):
                continue
            how = f'mapped with strategy {strategies[column]!r}' if column in strategies else 'not mapped'
            found.append(f'tables.{table.name}: column {column!r} looks like a secret (password, hash, token, key...) but is {how}, so '
                         'exports include it; give it the strategy secret (never exported, NULL or [redacted] on erasure and anonymisation)')
    found.extend(_shared_parent_warnings(data_map, info))
    if data_map.single_tenant:
        found.extend(_tenant_like_warnings(data_map, info))
    try:
        columns = fingerprint_columns(data_map, info)
    except RgpdError as exc:
        found.append(str(exc))
        columns = ()
    if not columns:
        found.append(f'subject.fingerprint_columns: table {data_map.subject_table!r} has none of the default columns '
                     f'({", ".join(DEFAULT_FINGERPRINT_COLUMNS)}); name stable columns of the subject row, or replay will refuse these erasures')
    subject_strategies = data_map.subject.strategies()
    for column in columns:
        if subject_strategies.get(column, 'keep') != 'keep':
            found.append(f'subject.fingerprint_columns: {column!r} is changed by anonymise ({subject_strategies[column]}); replay will '
                         'report a subject anonymised before its erasure as a mismatch')
    return found


# Column names that usually tell tenants apart: ``tenant``, ``tenant_id``, ``TenantId``, ``org_id``, ``organisation_id``...
_TENANT_LIKE = re.compile(r'(?:^|_)tenant(?:$|_)|^(?:org|organisation|organization|workspace)_?id$')


def _tenant_like_warnings(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """A single-tenant data map on a table with a column named like a tenant column: if the database does hold several
    tenants, each request reads (and erasure changes) the subject's rows of all of them. The name alone proves nothing,
    so this is a warning, not a refusal."""
    found = []
    for table in data_map.tables.values():
        table_info = info.get(table.name)
        if table_info is None:
            continue
        for column in table_info.columns:
            words = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', column).lower()
            if _TENANT_LIKE.search(words):
                found.append(f'tables.{table.name}: column {column!r} looks like a tenant column, but the data map is single-tenant '
                             '(tenancy: single), so every request covers the whole database; if it holds several tenants, declare '
                             'tenancy: column and give tenant_column')
    return found


def _shared_parent_warnings(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """A mapped table with a foreign key to another mapped table whose rows erasure deletes, but that reaches the
    subject some other way (``comment.post_id -> post.id``, comments found through ``comment.user_id``): other
    people's rows may point at the subject's deleted rows. Foreign keys on, the erasure fails and is rolled back;
    SQLite with foreign keys off would leave them pointing at nothing. Whether such rows exist is the data's business,
    so this is a warning."""
    found = []
    for table in data_map.tables.values():
        table_info = info.get(table.name)
        if table_info is None:
            continue
        for name in sorted(table_info.references):
            target = data_map.tables.get(name)
            if (target is None or name in (table.name, data_map.subject_table) or target.erasure != 'delete'
                    or (table.parent is not None and table.parent.table == name)):
                continue
            how = f'parent {table.parent.table!r}' if table.parent is not None else 'its subject columns'
            found.append(f'tables.{table.name}: it has a foreign key to {name!r}, whose rows erasure deletes, but reaches the subject '
                         f'through {how}: rows of other people pointing at the subject\'s {name} rows would stop the erasure (it is rolled '
                         f'back), or be left pointing at nothing with SQLite foreign keys off; keep {name} with erasure: anonymise')
    return found
