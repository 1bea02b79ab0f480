# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""RGPD operations on one data subject: inventory, export, anonymise, erase, consent, and replay of erasures.

The engine knows nothing about Ansible. A caller opens a database (``_rgpd_db.open_database``), loads a data
map (``_rgpd_map.load_data_map``) and builds an :class:`Engine`; the constructor checks every mapped table and
column against the live schema before any row is read (``_rgpd_schema.check_schema``), and raises
:class:`RgpdError` listing all problems.

Every query is scoped to one tenant: a row is the subject's only when it points at the subject (directly,
through the subject row, or through a join path) *and* belongs to the requested tenant (``_rgpd_query``). A
single-tenant data map (``tenancy: single``) has no tenant column: the whole database is its one tenant's.
The archive of an export is written by ``_rgpd_archive``, the erasure ledger by ``_rgpd_ledger``, and the values
anonymise writes come from ``_rgpd_values``.

Each operation returns a plain dict (see ``docs/rgpd.md``). In check mode every operation counts what it would
read or change and changes nothing.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import secrets
import typing as t
import uuid

from ansible_collections.dihya.ops.plugins.module_utils._ids import is_trace_id, new_trace_id
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_archive import (
    TEMP_MARKER, ArchiveTable, EncryptingWriter, Spool, check_dest, clean_stale_temp_files, decrypt_archive, file_sha256,
    parse_encryption_key, write_archive,
)
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, DbError, quote
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_ledger import (
    LEDGER_TABLE, REPLAY_ABSENT, REPLAY_ERASED, REPLAY_MISMATCH, REPLAY_UNVERIFIED, REPLAY_WOULD_ERASE, append_ledger_file,
    fingerprint, fingerprint_columns, read_ledger_file, replay_entries, write_ledger_row,
)
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import ConsentMap, DataMap, Side, TableMap
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_query import DEFAULT_BATCH, Subject, SubjectQuery
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_schema import (
    check_schema, check_secret_columns, data_map_warnings, secret_columns, table_key, tenant_proof_errors,
)
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, atomic_write
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import (
    CONSTANT_STRATEGIES, REDACTED, anonymise_value, json_value, looks_secret, pseudonym_of, tombstone_value, utcnow,
)

# The pseudonym of a subject id, as results, ledgers and the pseudonym filter give it.
pseudonym = pseudonym_of

OPERATIONS = ('inventory', 'export', 'anonymise', 'erase', 'consent', 'replay')
CONSENT_ACTIONS = ('grant', 'withdraw', 'status')
MIN_KEY_BYTES = 16


class Engine:
    """RGPD operations on one database with one data map."""

    def __init__(
        self,
        db: Database,
        data_map: DataMap,
        pseudonym_key: bytes,
        check_mode: bool = False,
        trace_id: str | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if not isinstance(pseudonym_key, bytes) or len(pseudonym_key) < MIN_KEY_BYTES:
            raise RgpdError(f'the pseudonym key must be at least {MIN_KEY_BYTES} bytes')
        self.db = db
        self.map = data_map
        self.key = pseudonym_key
        self.check_mode = check_mode
        self.trace_id = trace_id or new_trace_id()
        if not is_trace_id(self.trace_id):
            raise RgpdError('trace_id must be 32 lowercase hexadecimal characters')
        self.batch = batch
        self.info = check_schema(db, data_map)
        self.query = SubjectQuery(db, data_map, self.info, pseudonym_key, batch)
        # Foreign keys between mapped tables, under the data map's names (SQLite finds "Users" for users).
        mapped = {db.fold(name): name for name in data_map.tables}
        self.foreign_keys = sorted({
            (table, mapped[db.fold(parent)]) for table, table_info in self.info.items() if table in data_map.tables
            for parent in table_info.references if db.fold(parent) in mapped
        })
        self._order: list[str] | None = None

    @property
    def order(self) -> list[str]:
        """The erasure order (children first). Only erasure needs it: a foreign-key cycle between mapped tables fails
        erase and replay here, with the cycle named, and leaves inventory, export, anonymise and consent working."""
        if self._order is None:
            try:
                self._order = self.map.erase_order(self.foreign_keys)
            except ValueError as exc:  # DataMapError
                raise RgpdError(f'{exc}; inventory, export, anonymise and consent work, erasure cannot '
                                '(make one of these foreign keys ON DELETE CASCADE or SET NULL, or keep one table with erasure: anonymise)') from exc
        return self._order

    # -- helpers -----------------------------------------------------------------------------------
    def subject(self, tenant: t.Any, subject_id: t.Any) -> Subject:
        """Resolve the tenant and coerce the subject id to the id column's type (the subject may not exist)."""
        return self.query.subject(tenant, subject_id)

    def _result(self, operation: str, subject: Subject | None, **extra: t.Any) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {'operation': operation, 'changed': False, 'check_mode': self.check_mode, 'trace_id': self.trace_id}
        if subject is not None:
            result.update(subject=subject.pseudonym, tenant=subject.tenant_given)
        result['data_map_version'] = self.map.version
        result.update(extra)
        return result

    def _strategies(self, table: TableMap, side: str | None = None) -> dict[str, str]:
        """The strategies of ``table`` for ``side``, ``secret`` resolved per column: NULL when nullable, else ``[redacted]``."""
        strategies = table.strategies(side)
        columns = self.info[table.name].columns
        for column, strategy in strategies.items():
            if strategy == 'secret' and column in columns:
                strategies[column] = 'redact' if columns[column].notnull else 'null'
        return strategies

    def check_secrets(self) -> None:
        """Refuse secret columns that erasure could not clear (NOT NULL and not text) or that identify rows (key columns)."""
        check_secret_columns(self.map, self.info)

    def warnings(self) -> list[str]:
        """What the data map leaves to chance without being wrong: secret-looking columns that are exported, fingerprints."""
        return data_map_warnings(self.map, self.info)

    def _subject_fingerprint(self, subject: Subject, columns: t.Sequence[str]) -> str | None:
        if not columns:
            return None
        rows = self.query.select(self.map.subject, subject, columns)
        return fingerprint(self.key, columns, rows[0]) if rows else None

    # -- inventory ---------------------------------------------------------------------------------
    def inventory(self, tenant: t.Any, subject_id: t.Any) -> dict[str, t.Any]:
        """Rows held about the subject, per table."""
        subject = self.subject(tenant, subject_id)
        with self.db.transaction(write=False):
            found = self.query.exists(subject)
            tables = self.query.counts(subject)
        return self._result('inventory', subject, subject_found=found, tables=tables, total_rows=sum(entry['rows'] for entry in tables.values()))

    # -- export ------------------------------------------------------------------------------------
    def export(self, tenant: t.Any, subject_id: t.Any, dest: str, encryption_key: str | bytes | None = None,
               force: bool = False) -> dict[str, t.Any]:
        """Write the subject's rows to a zip archive at ``dest`` (atomically, mode 0600), optionally encrypted.

        Nothing may be at ``dest``, except a regular file with ``force`` (replaced atomically); anything else is refused.
        In check mode nothing is written: the result says which rows the archive would hold, and where.
        """
        subject = self.subject(tenant, subject_id)
        check_dest(dest, self.check_mode, force)
        key = parse_encryption_key(encryption_key) if encryption_key is not None else None
        if self.check_mode:
            with self.db.transaction(write=False):
                found = self.query.exists(subject)
                tables = self.query.counts(subject)
            return self._result('export', subject, changed=True, subject_found=found, tables=tables,
                                archive={'path': dest, 'encrypted': key is not None})
        removed = clean_stale_temp_files(dest)
        directory, base = os.path.split(dest)
        spool: Spool | None = None
        try:
            # A temporary file next to dest, fsynced, then put in place only if dest is still as checked.
            with atomic_write(dest, mode=0o600, force=force, temp_marker=TEMP_MARKER) as handle:
                sink: t.Any = EncryptingWriter(handle, key) if key is not None else handle
                spool = Spool(directory, f'.{base}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}-spool', encrypted=key is not None)
                with self.db.transaction(write=False):
                    self.db.prepare_bulk_read()
                    found = self.query.exists(subject)
                    tables, files = write_archive(sink, spool, self.db, self._archive_tables(subject), {
                        'subject': subject.pseudonym, 'tenant': subject.tenant_given, 'data_map_version': self.map.version,
                        'created_at': utcnow(), 'trace_id': self.trace_id, 'retention': self.map.retention_notes(),
                    })
                spool.close()
                if isinstance(sink, EncryptingWriter):
                    sink.finish()
        except UnsafeDestination as exc:
            raise RgpdError(f'dest {exc}') from None
        finally:
            if spool is not None:
                spool.close()
        return self._result(
            'export', subject, changed=True, subject_found=found, tables=tables,
            archive={'path': dest, 'sha256': file_sha256(dest), 'size': os.path.getsize(dest), 'encrypted': key is not None, 'files': files},
            stale_temp_files_removed=len(removed),
        )

    def _archive_tables(self, subject: Subject) -> t.Iterator[ArchiveTable]:
        """Each mapped table as the archive holds it. Secret columns (password hashes, tokens) never leave the database:
        not in the JSON, the CSV or the manifest."""
        for name, table in self.map.tables.items():
            secret = secret_columns(table)
            info = dataclasses.replace(self.info[name], columns={column: found for column, found in self.info[name].columns.items()
                                                                 if column not in secret})
            where, params = self.query.match(table, subject)
            yield ArchiveTable(name, info, where, tuple(params), table_key(table, self.info))

    # -- anonymise ---------------------------------------------------------------------------------
    def _rewrite(self, table: TableMap, side: str | None, strategies: dict[str, str], subject: Subject,
                 replace: tuple[str, t.Any] | None = None) -> int:
        """Apply strategies (and optionally replace the side column) to the subject's rows; return how many rows change."""
        columns = [column for column, strategy in strategies.items() if strategy != 'keep']
        if replace is not None:
            columns = [column for column in columns if column != replace[0]]
        key = table_key(table, self.info)
        assignments = [*columns, *([replace[0]] if replace is not None else [])]
        if not assignments:
            return 0
        if all(strategies[column] in CONSTANT_STRATEGIES for column in columns):
            return self._rewrite_in_sql(table, side, strategies, columns, subject, replace)
        changed = 0
        for rows in self.query.batches(table, side, columns, subject):
            updates = []
            for row in rows:
                old = row[len(key):]
                new = [anonymise_value(strategies[column], value, self.key) for column, value in zip(columns, old, strict=True)]
                if replace is None and list(old) == new:
                    continue
                updates.append((*new, *([replace[1]] if replace is not None else []), *row[:len(key)]))
            changed += len(updates)
            if updates and not self.check_mode:
                self.db.update_rows(self.info[table.name], assignments, key, updates)
        return changed

    def _rewrite_in_sql(self, table: TableMap, side: str | None, strategies: dict[str, str], columns: list[str], subject: Subject,
                        replace: tuple[str, t.Any] | None) -> int:
        """One UPDATE for strategies that do not depend on the value (null, redact): no row goes through Python.

        The result is the same as row by row: NULL stays NULL, and only rows that change are counted.
        """
        where, params = self.query.match(table, subject, side)
        sets: list[str] = []
        set_params: list[t.Any] = []
        differs: list[str] = []
        differs_params: list[t.Any] = []
        for column in columns:
            name = f't0.{quote(column)}'
            if strategies[column] == 'null':
                sets.append(f'{quote(column)} = NULL')
                differs.append(f'{name} IS NOT NULL')
            else:
                sets.append(f'{quote(column)} = CASE WHEN {name} IS NULL THEN NULL ELSE ? END')
                set_params.append(REDACTED)
                differs.append(f'({name} IS NOT NULL AND {name} <> ?)')
                differs_params.append(REDACTED)
        if replace is not None:
            sets.append(f'{quote(replace[0])} = ?')
            set_params.append(replace[1])
        else:
            # Anonymising again changes nothing: only rows holding a value to hide are touched.
            where = f'({where}) AND ({" OR ".join(differs)})'
            params = [*params, *differs_params]
        if self.check_mode:
            return self.query.count_where(table, where, params)
        return self.db.execute(self.db.sql(f'UPDATE {self.db.table(table.name)} AS t0 SET {", ".join(sets)} WHERE {where}'), [*set_params, *params])

    def _side_names(self, table: TableMap) -> list[str | None]:
        return [side.column for side in table.sides] if table.sides else [None]

    def anonymise(self, tenant: t.Any, subject_id: t.Any) -> dict[str, t.Any]:
        """Pseudonymise the subject's personal columns in place (ids and references are kept)."""
        subject = self.subject(tenant, subject_id)
        self.check_secrets()
        tables: dict[str, dict[str, t.Any]] = {}
        with self.db.transaction(write=not self.check_mode):
            found = self.query.exists(subject)
            # Anonymise changes no key: only the join paths order it (a table before the parent it is found through).
            for name in self.map.erase_order():
                table = self.map.tables[name]
                changed = 0
                for side in self._side_names(table):
                    changed += self._rewrite(table, side, self._strategies(table, side), subject)
                tables[name] = {'rows': self.query.count(table, subject), 'anonymised': changed}
        changed_any = any(entry['anonymised'] for entry in tables.values())
        return self._result('anonymise', subject, changed=changed_any, subject_found=found, tables=tables)

    # -- erase -------------------------------------------------------------------------------------
    def _tombstone(self, subject: Subject) -> t.Any:
        """Insert a copy of the subject row with its personal columns anonymised and a new id; return the new id."""
        table = self.map.subject
        columns = list(self.info[table.name].columns)
        row = self.query.select(table, subject, columns)[0]
        strategies = self._strategies(table)
        values = {column: anonymise_value(strategies.get(column, 'keep'), value, self.key) for column, value in zip(columns, row, strict=True)}
        id_column = self.map.subject_id_column
        token = uuid.uuid4().hex
        if self.info[table.name].columns[id_column].generated:
            del values[id_column]
        else:
            values[id_column] = f'erased-{token}'
        # The subject row still exists (kept rows point at it until they are repointed), and earlier tombstones too: a column
        # under a unique constraint that does not hold the id gets a value of this tombstone's own.
        for unique in self.db.unique_column_sets(table.name):
            if id_column in unique:
                continue
            candidates = [column for column in columns if (None in unique or column in unique)
                          and column not in (id_column, self.map.subject_tenant_column)]
            changed = False
            for column in candidates:
                value = tombstone_value(strategies.get(column, 'keep'), values[column], token, self.key,
                                        nullable=not self.info[table.name].columns[column].notnull)
                changed = changed or value is None or value != values[column]
                values[column] = value
            if not changed:
                raise RgpdError(f'tables.{table.name}: a unique constraint on {", ".join(sorted(str(c) for c in unique))} leaves the tombstone '
                                'no column it can make its own (NOT NULL and not text); use erasure delete for the subject table')
        statement = self.db.sql(
            f'INSERT INTO {self.db.table(table.name)} ({", ".join(quote(c) for c in values)}) VALUES ({", ".join("?" for dummy in values)})'
        )
        return self.db.insert_returning(statement, list(values.values()), id_column)

    def _erase_rows(self, subject: Subject) -> dict[str, dict[str, t.Any]]:
        tables: dict[str, dict[str, t.Any]] = {}
        subject_table = self.map.subject
        replacement: t.Any = None
        # A tombstone is only needed when kept rows point at the subject.
        tombstone = subject_table.erasure == 'anonymise' and any(
            table.erasure == 'anonymise' and table.sides and table is not subject_table and self.query.count(table, subject)
            for table in self.map.tables.values()
        )
        if tombstone and not self.check_mode:
            replacement = self._tombstone(subject)
        for name in self.order:
            table = self.map.tables[name]
            entry: dict[str, t.Any] = {'rows': self.query.count(table, subject), 'deleted': 0, 'anonymised': 0}
            if table.erasure == 'delete' or table is subject_table:
                where, params = self.query.match(table, subject)
                if self.check_mode:
                    entry['deleted'] = entry['rows']
                else:
                    entry['deleted'] = self.db.execute(self.db.sql(f'DELETE FROM {self.db.table(name)} AS t0 WHERE {where}'), params)
                if table is subject_table:
                    entry['tombstone'] = tombstone
            else:
                for side in self._side_names(table):
                    replace = (side, replacement) if side is not None else None
                    entry['anonymised'] += self._rewrite(table, side, self._strategies(table, side), subject, replace)
            tables[name] = entry
        return tables

    def erase(self, tenant: t.Any, subject_id: t.Any, ledger_file: str | None = None, replay_of: str | None = None,
              ledger_table: bool = False, expected_fingerprint: str | None = None) -> dict[str, t.Any]:
        """Delete or anonymise every row of the subject in one transaction, children first, and record it in the ledger.

        The ledger file (and, with ``ledger_table``, the table ``dihya_rgpd_erasure_ledger`` of the same database) records the
        subject's pseudonym and the fingerprint of its row (a keyed hash of its fingerprint columns). With
        ``expected_fingerprint`` (replay) nothing is erased unless the row still has that fingerprint.
        """
        subject = self.subject(tenant, subject_id)
        self.check_secrets()
        columns = fingerprint_columns(self.map, self.info)
        entry_id = uuid.uuid4().hex
        record: dict[str, t.Any] = {
            'entry_id': entry_id, 'tenant': subject.tenant_given, 'subject': subject.pseudonym, 'data_map_version': self.map.version,
            'erased_at': utcnow(), 'trace_id': self.trace_id, 'replay_of': replay_of, 'fingerprint': None,
            'fingerprint_columns': list(columns),
        }

        def mismatch(found: str | None) -> bool:
            return expected_fingerprint is not None and not (found is not None and hmac.compare_digest(found, expected_fingerprint))

        if self.check_mode:
            with self.db.transaction(write=False):
                found = self.query.exists(subject)
                if found and mismatch(self._subject_fingerprint(subject, columns)):
                    return self._result('erase', subject, subject_found=True, fingerprint_mismatch=True, tables={})
                tables = self._erase_rows(subject) if found else {}
            return self._result('erase', subject, changed=found, subject_found=found, tables=tables)
        pending = False
        try:
            with self.db.transaction(write=True):
                found = self.query.exists(subject)
                if not found:
                    return self._result('erase', subject, subject_found=False, tables={})
                record['fingerprint'] = self._subject_fingerprint(subject, columns)
                if mismatch(record['fingerprint']):
                    return self._result('erase', subject, subject_found=True, fingerprint_mismatch=True, tables={})
                tables = self._erase_rows(subject)
                if ledger_table:
                    write_ledger_row(self.db, record, tables)
                if ledger_file is not None:
                    # Written before the commit: an erasure that commits is always in the file.
                    append_ledger_file(ledger_file, {**record, 'state': 'pending'})
                    pending = True
        except BaseException:
            if pending and ledger_file is not None:
                append_ledger_file(ledger_file, {'entry_id': entry_id, 'state': 'aborted'})
            raise
        if ledger_file is not None:
            append_ledger_file(ledger_file, {'entry_id': entry_id, 'state': 'committed'})
        return self._result('erase', subject, changed=True, subject_found=True, tables=tables, ledger_entry_id=entry_id,
                            fingerprint_recorded=record['fingerprint'] is not None)

    # -- replay ------------------------------------------------------------------------------------
    def _find_subject(self, tenant: t.Any, wanted: str, columns: t.Sequence[str] = ()) -> tuple[t.Any, str | None]:
        """The id of the subject of ``tenant`` whose pseudonym is ``wanted`` (every id of the tenant is tried) and the
        fingerprint of its row over ``columns``; (None, None) when there is none."""
        resolved = self.query.resolve_tenant(tenant)
        id_column = quote(self.map.subject_id_column)
        selected = ', '.join([id_column, *(quote(column) for column in columns)])
        query = f'SELECT {selected} FROM {self.db.table(self.map.subject_table)}'
        params: tuple[t.Any, ...] = ()
        if self.map.subject_tenant_column is not None:
            query, params = f'{query} WHERE {quote(self.map.subject_tenant_column)} = ?', (resolved,)
        with self.db.transaction(write=False):
            for row in self.db.stream(self.db.sql(query), params):
                if hmac.compare_digest(pseudonym_of(row[0], self.key), wanted):
                    return row[0], (fingerprint(self.key, columns, row[1:]) if columns else None)
        return None, None

    def find_by_pseudonym(self, tenant: t.Any, wanted: str) -> t.Any:
        """The id of the subject of ``tenant`` whose pseudonym is ``wanted``, or None."""
        return self._find_subject(tenant, wanted)[0]

    def replay(self, ledger_file: str, tenant: t.Any = None, allow_unverified: bool = False, ledger_table: bool = False) -> dict[str, t.Any]:
        """Erase again every subject of the ledger file found in the database (after a backup restore).

        A row is erased again only when it has the erased subject's pseudonym *and* fingerprint: a person who got the
        same id later is reported as ``mismatch`` and left alone. Entries written without a fingerprint are reported as
        ``unverified`` and left alone, unless ``allow_unverified``. In check mode each entry to erase lists its rows.
        """
        entries = read_ledger_file(ledger_file)
        subject_columns = self.info[self.map.subject_table].columns
        if self.map.single_tenant and tenant is not None and tenant != '':
            tenant = self.query.resolve_tenant(tenant)  # refuses a tenant that is not this database's
        replayed = []
        for candidate in replay_entries(entries, tenant or None):
            entry, recorded, columns = candidate.entry, candidate.recorded, candidate.columns
            item = candidate.item()
            missing = [column for column in columns if column not in subject_columns]
            # A single-tenant database is its one tenant's, whatever name the entry was written under.
            entry_tenant = (self.map.tenant or entry['tenant']) if self.map.single_tenant else entry['tenant']
            subject_id, found = self._find_subject(entry_tenant, entry['subject'], columns if not missing else ())
            item['found'] = subject_id is not None
            if subject_id is None:
                item['status'] = REPLAY_ABSENT
            elif recorded is None and not allow_unverified:
                item.update(status=REPLAY_UNVERIFIED, reason='the ledger entry has no fingerprint: nothing proves this row is the erased person')
            elif recorded is not None and missing:
                item.update(status=REPLAY_MISMATCH, reason=f'the subject table no longer has the fingerprint columns {", ".join(missing)}')
            elif recorded is not None and not (found is not None and hmac.compare_digest(found, recorded)):
                item.update(status=REPLAY_MISMATCH, reason='the row with this id is not the erased person (its fingerprint differs)')
            else:
                outcome = self.erase(entry_tenant, subject_id, ledger_file=ledger_file, replay_of=entry['entry_id'], ledger_table=ledger_table,
                                     expected_fingerprint=recorded)
                if outcome.get('fingerprint_mismatch'):
                    item.update(status=REPLAY_MISMATCH, reason='the row changed while replay looked at it (its fingerprint differs)')
                else:
                    item.update(status=REPLAY_WOULD_ERASE if self.check_mode else REPLAY_ERASED, tables=outcome['tables'],
                                ledger_entry_id=outcome.get('ledger_entry_id'))
            replayed.append(item)
        erased = sum(1 for item in replayed if item['status'] in (REPLAY_ERASED, REPLAY_WOULD_ERASE))
        return self._result('replay', None, changed=erased > 0, entries=len(entries), replayed=replayed, erased=erased,
                            mismatched=sum(1 for item in replayed if item['status'] == REPLAY_MISMATCH),
                            unverified=sum(1 for item in replayed if item['status'] == REPLAY_UNVERIFIED))

    # -- consent -----------------------------------------------------------------------------------
    def consent_status(self, consent: ConsentMap, subject: Subject) -> dict[str, dict[str, t.Any]]:
        """The latest decision per purpose (the rows are read oldest first)."""
        table = TableMap(consent.table, (Side(consent.subject_column, {}),), None, consent.tenant_column, 'delete', {}, None, None)
        where, params = self.query.match(table, subject)
        order = ', '.join(f't0.{quote(column)}' for column in (consent.time_column, *self._key_of(consent.table)))
        query = self.db.sql(
            f'SELECT t0.{quote(consent.purpose_column)}, t0.{quote(consent.granted_column)}, t0.{quote(consent.source_column)}, '
            f't0.{quote(consent.time_column)} FROM {self.db.table(consent.table)} t0 WHERE {where} ORDER BY {order}'
        )
        status: dict[str, dict[str, t.Any]] = {}
        for row_purpose, granted, source, at in self.db.stream(query, params):
            status[str(row_purpose)] = {'granted': bool(granted), 'source': source, 'at': json_value(at) if at is not None else None}
        return status

    def _key_of(self, name: str) -> tuple[str, ...]:
        table = self.map.tables.get(name)
        return (table.key if table is not None and table.key else None) or self.info[name].primary_key

    def consent(self, tenant: t.Any, subject_id: t.Any, action: str, purpose: str | None = None, source: str | None = None,
                at: str | None = None) -> dict[str, t.Any]:
        """Grant or withdraw a consent (a new row in the consent history), or report the current status."""
        consent = self.map.consent
        if consent is None:
            raise RgpdError('the data map has no consent section')
        if action not in CONSENT_ACTIONS:
            raise RgpdError(f'consent action must be one of {", ".join(CONSENT_ACTIONS)}')
        if action != 'status' and not purpose:
            raise RgpdError(f'consent {action} needs a purpose')
        if purpose is not None and consent.purposes and purpose not in consent.purposes:
            raise RgpdError(f'unknown consent purpose {purpose[:64]!r} (expected one of {", ".join(consent.purposes)})')
        subject = self.subject(tenant, subject_id)
        with self.db.transaction(write=action != 'status' and not self.check_mode):
            if not self.query.exists(subject):
                raise RgpdError(f'no such subject in tenant {subject.tenant_given[:64]!r}')
            status = self.consent_status(consent, subject)
            changed = False
            if action != 'status' and purpose is not None:
                want = action == 'grant'
                current = status.get(purpose)
                changed = current is None or current['granted'] != want
                if changed:
                    moment = at or utcnow()
                    given_source = source or 'dihya.ops.rgpd'
                    entry = {'granted': want, 'source': given_source, 'at': moment}
                    if not self.check_mode:
                        self._insert_consent(consent, subject, purpose, want, given_source, moment)
                    status[purpose] = entry
        result = self._result('consent', subject, changed=changed, subject_found=True, consents=status)
        if purpose is not None:
            result['consent'] = {'purpose': purpose, **status.get(purpose, {'granted': False, 'source': None, 'at': None})}
        return result

    def _insert_consent(self, consent: ConsentMap, subject: Subject, purpose: str, want: bool, source: str, moment: str) -> None:
        granted_info = self.info[consent.table].columns[consent.granted_column]
        values: dict[str, t.Any] = {
            consent.subject_column: subject.id,
            consent.purpose_column: purpose,
            consent.granted_column: int(want) if granted_info.kind == 'integer' else want,
            consent.source_column: source,
            consent.time_column: moment,
        }
        if consent.tenant_column is not None:
            values[consent.tenant_column] = subject.tenant
        self.db.execute(
            self.db.sql(f'INSERT INTO {self.db.table(consent.table)} ({", ".join(quote(c) for c in values)}) '
                        f'VALUES ({", ".join("?" for dummy in values)})'),
            list(values.values()),
        )


# The engine's API, for callers that import it from here.
__all__ = [
    'CONSENT_ACTIONS', 'LEDGER_TABLE', 'OPERATIONS', 'TEMP_MARKER', 'DbError', 'Engine', 'RgpdError', 'Subject', 'anonymise_value',
    'append_ledger_file', 'check_schema', 'clean_stale_temp_files', 'decrypt_archive', 'file_sha256', 'looks_secret', 'new_trace_id',
    'parse_encryption_key', 'pseudonym', 'read_ledger_file', 'tenant_proof_errors',
]
