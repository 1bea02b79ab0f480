# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""RGPD data map: which rows of a database belong to a data subject, and what erasure does to them.

The data map is plain data (the YAML format is described in ``docs/rgpd.md``). :func:`load_data_map`
validates its shape and returns a frozen :class:`DataMap`; every problem found is reported at once in a
:class:`DataMapError`. Whether the tables and columns exist is checked later, against the live schema,
by the operations engine (``_rgpd.py``) before any row is read.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing as t


FORMAT_VERSION = 1

# ``secret``: a password hash, token or key: never exported; NULL on erasure and anonymisation ([redacted] when NOT NULL).
STRATEGIES = ('hmac', 'mask', 'null', 'redact', 'fake', 'keep', 'secret')
# Strategies that write a text value, so they need a text column.
TEXT_STRATEGIES = frozenset(('hmac', 'mask', 'redact', 'fake'))
ERASURES = ('delete', 'anonymise')

# SQL identifiers: letters, digits and underscores, not starting with a digit, at most 63 characters
# (the PostgreSQL limit). Quotes, semicolons, comment markers and spaces are never accepted.
IDENTIFIER = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,62}')

# ``tenancy``: ``column`` (the default) for a database holding several tenants, told apart by a tenant column the data
# map names; ``single`` for a database that is one tenant's as a whole (no tenant column anywhere).
TENANCY_COLUMN = 'column'
TENANCY_SINGLE = 'single'
TENANCIES = (TENANCY_COLUMN, TENANCY_SINGLE)
# The tenant name a single-tenant database goes by when neither the data map nor the request names one.
DEFAULT_SINGLE_TENANT = 'default'
# A tenant name of a single-tenant database (carried by requests, audit events, metrics, archive and folder names):
# letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters, never '..'.
TENANT_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,62}')

_TOP_KEYS = frozenset(('version', 'subject', 'tables', 'consent', 'retention', 'tenant_lookup', 'format', 'tenancy', 'tenant'))
_SUBJECT_KEYS = frozenset(('table', 'id_column', 'tenant_column', 'fingerprint_columns'))
_TABLE_KEYS = frozenset(('subject_columns', 'parent', 'tenant_column', 'erasure', 'columns', 'key', 'retention'))
_SIDE_KEYS = frozenset(('columns',))
_PARENT_KEYS = frozenset(('table', 'column', 'references'))
_CONSENT_KEYS = frozenset(('table', 'subject_column', 'purpose_column', 'granted_column', 'source_column', 'time_column',
                           'tenant_column', 'purposes'))
_LOOKUP_KEYS = frozenset(('table', 'id_column', 'key_column'))


class DataMapError(ValueError):
    """The data map is malformed; the message lists every problem found."""


def tenant_name_problem(value: t.Any) -> str | None:
    """Why ``value`` cannot name the tenant of a single-tenant database, or None when it can."""
    if not isinstance(value, str):
        return f'must be a string, not {type(value).__name__}'
    if not TENANT_NAME.fullmatch(value) or '..' in value:
        return (f'{value[:64]!r}{"..." if len(value) > 64 else ""} is not a valid tenant name (letters, digits, ".", "_" and "-", '
                'starting with a letter or digit, at most 63 characters, no "..")')
    return None


@dataclasses.dataclass(frozen=True)
class Side:
    """One column through which a row points at the subject, and what erasure does on that side only."""

    column: str
    columns: t.Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Parent:
    """A join path step: ``column`` of this table references ``references`` of the mapped table ``table``."""

    table: str
    column: str
    references: str


@dataclasses.dataclass(frozen=True)
class TableMap:
    """How the rows of one table relate to the subject."""

    name: str
    sides: tuple[Side, ...]
    parent: Parent | None
    tenant_column: str | None
    erasure: str
    columns: t.Mapping[str, str]
    key: tuple[str, ...] | None
    retention: str | None

    def strategies(self, side: str | None = None) -> dict[str, str]:
        """Personal columns and their strategies for rows where the subject is on ``side`` (all sides when None)."""
        merged = dict(self.columns)
        for entry in self.sides:
            if side is None or entry.column == side:
                merged.update(entry.columns)
        return merged

    def personal_columns(self) -> list[str]:
        """Every column with a strategy other than ``keep``, on any side."""
        return [column for column, strategy in self.strategies().items() if strategy != 'keep']


@dataclasses.dataclass(frozen=True)
class ConsentMap:
    """Where the consent history of a subject is kept: one row per decision, the newest one wins."""

    table: str
    subject_column: str
    purpose_column: str
    granted_column: str
    source_column: str
    time_column: str
    tenant_column: str | None
    purposes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TenantLookup:
    """Turns the tenant given by the caller (``key_column``, e.g. a slug) into the tenant id (``id_column``)."""

    table: str
    id_column: str
    key_column: str


@dataclasses.dataclass(frozen=True)
class DataMap:
    """A validated data map."""

    version: str
    subject_table: str
    subject_id_column: str
    # None in a single-tenant data map (``tenancy: single``), which has no tenant column anywhere.
    subject_tenant_column: str | None
    tables: t.Mapping[str, TableMap]
    consent: ConsentMap | None
    tenant_lookup: TenantLookup | None
    retention: str | None
    # Stable columns of the subject row (its creation time...) whose keyed hash the erasure ledger keeps, so that a
    # replay recognises the erased person and not someone who got the same id later. None: the engine's default.
    subject_fingerprint_columns: tuple[str, ...] | None = None
    # ``column`` (several tenants, told apart by tenant columns) or ``single`` (the whole database is one tenant's).
    tenancy: str = TENANCY_COLUMN
    # The fixed tenant name of a single-tenant database, when the data map gives one (``tenant: main``).
    tenant: str | None = None

    @property
    def single_tenant(self) -> bool:
        """Whether the whole database is one tenant's (no tenant column anywhere)."""
        return self.tenancy == TENANCY_SINGLE

    @property
    def subject(self) -> TableMap:
        return self.tables[self.subject_table]

    def retention_notes(self) -> dict[str, t.Any]:
        """The free-text retention notes, as exported in an archive manifest."""
        return {
            'data_map': self.retention,
            'tables': {name: table.retention for name, table in self.tables.items() if table.retention},
        }

    def parent_edges(self) -> list[tuple[str, str]]:
        """(child, parent) pairs given by the join paths."""
        return [(table.name, table.parent.table) for table in self.tables.values() if table.parent is not None]

    def erase_order(self, foreign_keys: t.Iterable[tuple[str, str]] = ()) -> list[str]:
        """Mapped tables, children first: a table comes before every table it references, the subject table last.

        Only erasure needs this order (inventory, export and consent read; anonymise changes no key and follows the
        join paths only, which never loop). ``foreign_keys`` adds (child, parent) pairs found in the database schema;
        pairs naming an unmapped table and self references are ignored, and so is a foreign key to a table whose
        rows erasure keeps (``erasure: anonymise``, the subject table excepted): no row it points at goes away, so it
        does not constrain the order. A join path always does: a table is found through its parent's rows, so it
        is processed before them. Raise :class:`DataMapError` naming a cycle when no order exists.
        """
        edges: dict[str, set[str]] = {name: set() for name in self.tables}
        for child, parent in self.parent_edges():
            if child in edges and parent in edges and child != parent:
                edges[child].add(parent)
        for child, parent in foreign_keys:
            if child in edges and parent in edges and child != parent:
                if self.tables[parent].erasure == 'anonymise' and parent != self.subject_table:
                    continue
                edges[child].add(parent)
        for name in self.tables:
            if name != self.subject_table:
                edges[name].add(self.subject_table)
        # A table is processed only once every table referencing it is done.
        children: dict[str, set[str]] = {name: set() for name in self.tables}
        for child, parents in edges.items():
            for parent in parents:
                children[parent].add(child)
        order: list[str] = []
        done: set[str] = set()
        pending = list(self.tables)
        while pending:
            ready = [name for name in pending if children[name] <= done]
            if not ready:
                raise DataMapError('data map: the tables reference each other in a cycle, no erasure order exists: '
                                   + _cycle(children, set(pending)) + ' (each table holds a foreign key to, or a join path into, the next)')
            for name in ready:
                order.append(name)
                done.add(name)
            pending = [name for name in pending if name not in done]
        return order


def _cycle(children: t.Mapping[str, set[str]], pending: set[str]) -> str:
    """One cycle among ``pending`` tables, each of which has a pending child, as ``a -> b -> a`` (a references b)."""
    walk = [min(pending)]
    while True:
        following = min(children[walk[-1]] & pending)
        if following in walk:
            loop = walk[walk.index(following):]
            return ' -> '.join([*reversed(loop), loop[-1]])
        walk.append(following)


class _Collector:
    """Gathers validation problems so that a data map is reported in one go."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.errors.append(f'{where}: {message}')

    def identifier(self, where: str, value: t.Any) -> str:
        if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
            self.add(where, f'{value!r} is not a valid SQL identifier (letters, digits and _, not starting with a digit, at most 63 characters)')
            return ''
        return value

    def optional_identifier(self, where: str, value: t.Any) -> str | None:
        return None if value is None else self.identifier(where, value)

    def mapping(self, where: str, value: t.Any, allowed: frozenset[str] | None = None) -> dict[str, t.Any]:
        if not isinstance(value, dict):
            self.add(where, f'must be a mapping, not {type(value).__name__}')
            return {}
        for key in value:
            if not isinstance(key, str):
                self.add(where, f'key {key!r} must be a string')
            elif allowed is not None and key not in allowed:
                self.add(where, f'unknown key {key!r} (expected one of {", ".join(sorted(allowed))})')
        return value

    def text(self, where: str, value: t.Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(where, 'must be a string')
            return None
        return value

    def strategies(self, where: str, value: t.Any) -> dict[str, str]:
        result: dict[str, str] = {}
        for column, given in self.mapping(where, {} if value is None else value).items():
            name = self.identifier(f'{where}.{column}', column)
            # YAML reads a bare null as None: accept it as the strategy "null".
            strategy = 'null' if given is None else given
            if strategy not in STRATEGIES:
                self.add(f'{where}.{column}', f'unknown strategy {strategy!r} (expected one of {", ".join(STRATEGIES)})')
            elif name:
                result[name] = strategy
        return result


def _load_sides(check: _Collector, where: str, value: t.Any) -> list[Side]:
    sides: list[Side] = []
    if isinstance(value, list):
        entries: list[tuple[t.Any, t.Any]] = [(item, None) for item in value]
    elif isinstance(value, dict):
        entries = list(value.items())
    else:
        check.add(where, 'must be a list of column names or a mapping of column name to side options')
        return sides
    if not entries:
        check.add(where, 'must name at least one column')
    for column, given in entries:
        name = check.identifier(f'{where}.{column}' if isinstance(column, str) else where, column)
        options = check.mapping(f'{where}.{name}', {} if given is None else given, _SIDE_KEYS)
        side = Side(name, check.strategies(f'{where}.{name}.columns', options.get('columns')))
        if name and any(existing.column == name for existing in sides):
            check.add(where, f'column {name!r} is listed twice')
        sides.append(side)
    return sides


def _load_table(check: _Collector, name: str, value: t.Any) -> TableMap:
    where = f'tables.{name}'
    entry = check.mapping(where, value, _TABLE_KEYS)
    sides: list[Side] = []
    parent: Parent | None = None
    if 'subject_columns' in entry and 'parent' in entry:
        check.add(where, 'give either subject_columns or parent, not both')
    elif 'subject_columns' in entry:
        sides = _load_sides(check, f'{where}.subject_columns', entry['subject_columns'])
    elif 'parent' in entry:
        raw = check.mapping(f'{where}.parent', entry['parent'], _PARENT_KEYS)
        for wanted in _PARENT_KEYS:
            if wanted not in raw:
                check.add(f'{where}.parent', f'missing key {wanted!r}')
        parent = Parent(
            check.identifier(f'{where}.parent.table', raw.get('table')),
            check.identifier(f'{where}.parent.column', raw.get('column')),
            check.identifier(f'{where}.parent.references', raw.get('references')),
        )
    else:
        check.add(where, 'needs subject_columns (columns holding the subject id) or parent (a join path to a mapped table)')
    erasure = entry.get('erasure', 'delete')
    if erasure not in ERASURES:
        check.add(f'{where}.erasure', f'unknown erasure {erasure!r} (expected one of {", ".join(ERASURES)})')
    key: tuple[str, ...] | None = None
    if entry.get('key') is not None:
        raw_key = entry['key'] if isinstance(entry['key'], list) else [entry['key']]
        key = tuple(check.identifier(f'{where}.key', column) for column in raw_key)
        if not key:
            check.add(f'{where}.key', 'must name at least one column')
    return TableMap(
        name=name,
        sides=tuple(sides),
        parent=parent,
        tenant_column=check.optional_identifier(f'{where}.tenant_column', entry.get('tenant_column')),
        erasure=erasure,
        columns=check.strategies(f'{where}.columns', entry.get('columns')),
        key=key,
        retention=check.text(f'{where}.retention', entry.get('retention')),
    )


def _load_consent(check: _Collector, value: t.Any) -> ConsentMap:
    entry = check.mapping('consent', value, _CONSENT_KEYS)
    defaults = {'purpose_column': 'purpose', 'granted_column': 'granted', 'source_column': 'source', 'time_column': 'at'}
    for key in ('table', 'subject_column'):
        if key not in entry:
            check.add('consent', f'missing key {key!r}')
    purposes = entry.get('purposes') or []
    if not isinstance(purposes, list) or not all(isinstance(item, str) and item for item in purposes):
        check.add('consent.purposes', 'must be a list of non-empty strings')
        purposes = []
    return ConsentMap(
        table=check.identifier('consent.table', entry.get('table')),
        subject_column=check.identifier('consent.subject_column', entry.get('subject_column')),
        purpose_column=check.identifier('consent.purpose_column', entry.get('purpose_column', defaults['purpose_column'])),
        granted_column=check.identifier('consent.granted_column', entry.get('granted_column', defaults['granted_column'])),
        source_column=check.identifier('consent.source_column', entry.get('source_column', defaults['source_column'])),
        time_column=check.identifier('consent.time_column', entry.get('time_column', defaults['time_column'])),
        tenant_column=check.optional_identifier('consent.tenant_column', entry.get('tenant_column')),
        purposes=tuple(purposes),
    )


def _check_relations(check: _Collector, tables: dict[str, TableMap], subject_table: str, id_column: str, tenant_column: str | None) -> None:
    subject = tables.get(subject_table)
    if subject is None:
        if subject_table:
            check.add('tables', f'the subject table {subject_table!r} must be mapped too (its personal columns and erasure)')
        return
    if subject.parent is not None or [side.column for side in subject.sides] != [id_column]:
        check.add(f'tables.{subject_table}.subject_columns', f'the subject table relates to the subject through its id column only: [{id_column}]')
    if tenant_column is not None and subject.tenant_column not in (None, tenant_column):
        check.add(f'tables.{subject_table}.tenant_column', f'must be the subject tenant column {tenant_column!r}')
    for table in tables.values():
        if table.parent is None:
            continue
        if table.parent.table not in tables:
            check.add(f'tables.{table.name}.parent.table', f'{table.parent.table!r} is not a mapped table')
        # Follow the join path: it must end at a table holding subject columns.
        seen = {table.name}
        current: TableMap | None = table
        while current is not None and current.parent is not None:
            if current.parent.table in seen:
                check.add(f'tables.{table.name}.parent', 'the join path loops back on itself')
                break
            seen.add(current.parent.table)
            current = tables.get(current.parent.table)


def load_data_map(data: t.Any) -> DataMap:
    """Validate a data map (as loaded from YAML or JSON) and return it; raise :class:`DataMapError` listing every problem."""
    check = _Collector()
    top = check.mapping('data map', data, _TOP_KEYS)
    if not top:
        raise DataMapError('data map: ' + ('; '.join(check.errors) or 'is empty'))
    if top.get('format', FORMAT_VERSION) != FORMAT_VERSION:
        check.add('format', f'unsupported data map format {top.get("format")!r} (this engine reads format {FORMAT_VERSION})')
    version = top.get('version')
    if isinstance(version, bool) or not isinstance(version, (str, int, float)) or str(version).strip() == '':
        check.add('version', 'is required: the revision of this data map (a string or number), exported in every manifest')
        version = ''
    subject = check.mapping('subject', top.get('subject'), _SUBJECT_KEYS)
    subject_table = check.identifier('subject.table', subject.get('table'))
    id_column = check.identifier('subject.id_column', subject.get('id_column', 'id'))
    tenancy = top.get('tenancy', TENANCY_COLUMN)
    if tenancy not in TENANCIES:
        check.add('tenancy', f'unknown tenancy {str(tenancy)[:64]!r} (expected {TENANCY_COLUMN}: several tenants told apart by a tenant column, '
                  f'or {TENANCY_SINGLE}: the whole database is one tenant\'s)')
        tenancy = ''
    tenant_column: str | None = None
    fixed_tenant: str | None = None
    if tenancy == TENANCY_SINGLE:
        _check_single_tenant(check, top, subject)
        if top.get('tenant') is not None:
            problem = tenant_name_problem(top['tenant'])
            if problem is not None:
                check.add('tenant', problem)
            else:
                fixed_tenant = top['tenant']
    else:
        if top.get('tenant') is not None:
            check.add('tenant', f'a fixed tenant name is only for a single-tenant data map (tenancy: {TENANCY_SINGLE}); in a multi-tenant '
                      'map each request names its tenant')
        if subject.get('tenant_column') is None and tenancy:
            check.add('subject.tenant_column', 'is required: a multi-tenant data map (tenancy: column, the default) names the subject table\'s '
                      'tenant column; for a database without tenants, declare tenancy: single at the top of the data map instead '
                      '(and give no tenant_column anywhere)')
        elif tenancy:
            tenant_column = check.identifier('subject.tenant_column', subject.get('tenant_column'))
    fingerprint_columns: tuple[str, ...] | None = None
    if subject.get('fingerprint_columns') is not None:
        raw_fingerprint = subject['fingerprint_columns']
        if not isinstance(raw_fingerprint, list):
            check.add('subject.fingerprint_columns', 'must be a list of column names of the subject table')
        else:
            fingerprint_columns = tuple(check.identifier('subject.fingerprint_columns', column) for column in raw_fingerprint)
    tables: dict[str, TableMap] = {}
    raw_tables = check.mapping('tables', top.get('tables'))
    if not raw_tables:
        check.add('tables', 'must map at least the subject table')
    for name, value in raw_tables.items():
        if check.identifier(f'tables.{name}', name):
            tables[name] = _load_table(check, name, value)
    _check_relations(check, tables, subject_table, id_column, tenant_column)
    consent = _load_consent(check, top['consent']) if top.get('consent') is not None else None
    lookup: TenantLookup | None = None
    if top.get('tenant_lookup') is not None:
        raw = check.mapping('tenant_lookup', top['tenant_lookup'], _LOOKUP_KEYS)
        lookup = TenantLookup(
            check.identifier('tenant_lookup.table', raw.get('table')),
            check.identifier('tenant_lookup.id_column', raw.get('id_column', 'id')),
            check.identifier('tenant_lookup.key_column', raw.get('key_column')),
        )
    retention = check.text('retention', top.get('retention'))
    if check.errors:
        raise DataMapError('invalid data map:\n  - ' + '\n  - '.join(check.errors))
    if tenant_column is not None and subject_table in tables and tables[subject_table].tenant_column is None:
        tables[subject_table] = dataclasses.replace(tables[subject_table], tenant_column=tenant_column)
    return DataMap(
        version=str(version),
        subject_table=subject_table,
        subject_id_column=id_column,
        subject_tenant_column=tenant_column,
        tables=tables,
        consent=consent,
        tenant_lookup=lookup,
        retention=retention,
        subject_fingerprint_columns=fingerprint_columns,
        tenancy=tenancy,
        tenant=fixed_tenant,
    )


def _check_single_tenant(check: _Collector, top: t.Mapping[str, t.Any], subject: t.Mapping[str, t.Any]) -> None:
    """A single-tenant data map names no tenant column anywhere: a map that mixes both is refused, never half-read."""
    way_out = f'remove it, or declare tenancy: {TENANCY_COLUMN} if this database holds several tenants'
    if subject.get('tenant_column') is not None:
        check.add('subject.tenant_column', f'a single-tenant data map (tenancy: {TENANCY_SINGLE}) has no tenant column; {way_out}')
    tables = top.get('tables')
    for name, value in (tables.items() if isinstance(tables, dict) else ()):
        if isinstance(value, dict) and value.get('tenant_column') is not None:
            check.add(f'tables.{name}.tenant_column', f'a single-tenant data map (tenancy: {TENANCY_SINGLE}) has no tenant column; {way_out}')
    consent = top.get('consent')
    if isinstance(consent, dict) and consent.get('tenant_column') is not None:
        check.add('consent.tenant_column', f'a single-tenant data map (tenancy: {TENANCY_SINGLE}) has no tenant column; {way_out}')
    if top.get('tenant_lookup') is not None:
        check.add('tenant_lookup', f'a single-tenant data map (tenancy: {TENANCY_SINGLE}) has no tenants to look up; {way_out}')


def parse_data_map_text(text: str) -> DataMap:
    """Parse YAML (when PyYAML is available) or JSON text, then validate it."""
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
        yaml = None
    try:
        data = yaml.safe_load(text) if yaml is not None else json.loads(text)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        raise DataMapError(f'data map: cannot parse the file: {exc}') from exc
    return load_data_map(data)


def load_data_map_file(path: str) -> DataMap:
    """Read and validate a data map file (YAML or JSON)."""
    try:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    except OSError as exc:
        raise DataMapError(f'data map: cannot read {path}: {exc.strerror}') from exc
    return parse_data_map_text(text)
