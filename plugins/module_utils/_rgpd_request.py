# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""One call of the ``rgpd`` module, from its parameters to its result: open, check, run, audit, warn.

:class:`RgpdRequest` is one operation with its typed parameters and :func:`run` dispatches it to an :class:`Engine`.
:func:`handle` does the whole call: it parses the database URL (``db_url``, or its older spellings ``database`` and
``dsn``, all through ``_db_url.parse_db_url``), loads the data map, opens the database, runs the request, appends the
audit event (``_audit``) and collects the warnings, and returns what the module exits with. Every message it returns
is safe to show: none holds the URL's password.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditError, AuditLog, AuditSettings, build_event
from ansible_collections.dihya.ops.plugins.module_utils._db_url import POSTGRESQL, SQLITE, DbUrl, DbUrlError, parse_db_url
from ansible_collections.dihya.ops.plugins.module_utils._ids import new_trace_id
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import OPERATIONS, Engine
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, DbError, open_database
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import DataMapError, load_data_map, load_data_map_file

# Operations that never write (SQLite opens the file read-only; PostgreSQL runs read-only transactions).
READ_ONLY = ('inventory', 'export')
# The options naming the database: the one contract, and its older spellings (each of one kind only).
DB_OPTIONS: dict[str, str | None] = {'db_url': None, 'database': SQLITE, 'dsn': POSTGRESQL}
# What of a result goes into the audit event.
_AUDITED = ('subject', 'ledger_entry_id', 'erased', 'mismatched', 'unverified', 'total_rows')


@dataclasses.dataclass(frozen=True)
class RgpdRequest:
    """One operation for one subject (or, for ``replay``, one ledger file) and its parameters."""

    operation: str
    tenant: str | None = None
    subject_id: str | None = None
    dest: str | None = None
    force: bool = False
    encryption_key: str | None = dataclasses.field(default=None, repr=False)
    ledger_file: str | None = None
    ledger_table: bool = False
    replay_unverified: bool = False
    consent_action: str = 'status'
    purpose: str | None = None
    source: str | None = None
    at: str | None = None


def run(engine: Engine, request: RgpdRequest) -> dict[str, t.Any]:
    """Run one request on ``engine``."""
    operation = request.operation
    if operation == 'inventory':
        return engine.inventory(request.tenant, request.subject_id)
    if operation == 'export':
        if not request.dest:
            raise RgpdError('export needs dest, the absolute path of the archive')
        return engine.export(request.tenant, request.subject_id, request.dest, request.encryption_key, force=request.force)
    if operation == 'anonymise':
        return engine.anonymise(request.tenant, request.subject_id)
    if operation == 'erase':
        if not request.ledger_file and not request.ledger_table:
            raise RgpdError('erase needs the erasure ledger file (ledger_file), or ledger_table: true for the ledger table in the database')
        return engine.erase(request.tenant, request.subject_id, request.ledger_file or None, ledger_table=request.ledger_table)
    if operation == 'consent':
        return engine.consent(request.tenant, request.subject_id, request.consent_action or 'status', request.purpose, request.source, request.at)
    if operation == 'replay':
        if not request.ledger_file:
            raise RgpdError('replay needs the erasure ledger file (ledger_file)')
        return engine.replay(request.ledger_file, request.tenant, allow_unverified=request.replay_unverified, ledger_table=request.ledger_table)
    raise RgpdError(f'unknown operation {operation!r} (expected one of {", ".join(OPERATIONS)})')


def database_url(params: t.Mapping[str, t.Any]) -> DbUrl:
    """The database of the call: ``db_url``, ``database`` (a SQLite path) or ``dsn`` (a PostgreSQL DSN), exactly one."""
    given = [name for name in DB_OPTIONS if params.get(name) is not None]
    if len(given) != 1:
        raise DbUrlError('give the database as db_url (or its older spellings database or dsn), exactly one of them')
    name = given[0]
    url = parse_db_url(params[name], name)
    wanted = DB_OPTIONS[name]
    if wanted is not None and url.kind != wanted:
        raise DbUrlError(f'{name} must be {"a SQLite file path" if wanted == SQLITE else "a PostgreSQL DSN"}; '
                         'give any database as db_url')
    return url


def request_of(params: t.Mapping[str, t.Any]) -> RgpdRequest:
    """The request given by the module's parameters."""
    return RgpdRequest(
        operation=params['operation'], tenant=params.get('tenant'), subject_id=params.get('subject_id'), dest=params.get('dest'),
        force=bool(params.get('force')), encryption_key=params.get('encryption_key'), ledger_file=params.get('ledger_file'),
        ledger_table=bool(params.get('ledger_table')), replay_unverified=bool(params.get('replay_unverified')),
        consent_action=params.get('consent_action') or 'status', purpose=params.get('purpose'), source=params.get('source'),
        at=params.get('consent_time'),
    )


def audit(params: t.Mapping[str, t.Any], outcome: str, result: t.Mapping[str, t.Any], error: str | None = None) -> str | None:
    """Append one ``rgpd`` audit event for the call (with ``audit_log`` and ``audit_key``); an error text when it could not be."""
    if not params.get('audit_log') or not params.get('audit_key'):
        return None
    details: dict[str, t.Any] = {'operation': params['operation'], 'data_map_version': result.get('data_map_version')}
    for name in _AUDITED:
        if result.get(name) is not None:
            details[name] = result[name]
    if isinstance(result.get('tables'), dict):
        details['tables'] = result['tables']
    if isinstance(result.get('archive'), dict) and result['archive'].get('sha256'):
        details['archive_sha256'] = result['archive']['sha256']
    if error:
        details['error'] = error[:500]
    try:
        settings = AuditSettings(key=params['audit_key'].encode('utf-8'), pseudonym_key=params['pseudonym_key'].encode('utf-8'))
        event = build_event(
            action=f'rgpd.{params["operation"]}', category='rgpd', outcome=outcome, settings=settings, user=params.get('audit_user'),
            tenant=result.get('tenant') or params.get('tenant'), trace_id=result.get('trace_id'), host=params.get('audit_host'),
            details=details,
        )
        AuditLog(params['audit_log'], settings).append([event])
    except (AuditError, OSError) as exc:
        return f'audit event not written: {exc}'
    return None


def _ledger_warning(url: DbUrl, ledger_file: str | None) -> list[str]:
    """A ledger file kept with the SQLite database is restored with it."""
    if ledger_file and url.kind == SQLITE and os.path.dirname(os.path.abspath(ledger_file)) == os.path.dirname(os.path.abspath(t.cast(str, url.path))):
        return [('ledger_file is in the folder of the database: a backup of that folder brings an older ledger back with the '
                 'database; keep it in a state folder of its own')]
    return []


@dataclasses.dataclass
class Outcome:
    """What the module exits with: ``result``, ``warnings``, and on failure ``message`` (and ``exception``, a traceback).

    ``shown`` holds the values of no_log options that hold no secret: a ``db_url`` naming a SQLite file is a path,
    shown in messages as the ``database`` option always was; a PostgreSQL URL stays masked.
    """

    result: dict[str, t.Any]
    warnings: list[str] = dataclasses.field(default_factory=list)
    message: str | None = None
    exception: str | None = None
    shown: tuple[str, ...] = ()


def handle(params: t.Mapping[str, t.Any], check_mode: bool = False) -> Outcome:
    """Run the call the module's ``params`` describe; in check mode nothing is written (no archive, ledger or audit event)."""
    operation = params['operation']
    trace_id = params.get('trace_id') or new_trace_id()
    result: dict[str, t.Any] = {'operation': operation, 'changed': False, 'trace_id': trace_id}
    if params.get('consent_time') is not None and params['consent_time'] == '':
        return Outcome(result, message='consent_time must not be empty')
    audited = params if not check_mode else {**params, 'audit_log': None}
    url: DbUrl | None = None
    db: Database | None = None
    shown: tuple[str, ...] = ()
    try:
        url = database_url(params)
        if url.kind == SQLITE and isinstance(params.get('db_url'), str):
            shown = (params['db_url'],)
        data_map = load_data_map(params['data_map']) if params.get('data_map') is not None else load_data_map_file(params['data_map_file'])
        db = open_database(url=url, read_only=operation in READ_ONLY or check_mode, foreign_keys=params.get('sqlite_foreign_keys', True),
                           schema=params.get('pg_schema') or 'public', timeout=params.get('timeout') or 10.0)
        engine = Engine(db, data_map, params['pseudonym_key'].encode('utf-8'), check_mode=check_mode, trace_id=trace_id)
        result = run(engine, request_of(params))
        result['data_map_warnings'] = engine.warnings() + _ledger_warning(url, params.get('ledger_file'))
    except (DataMapError, DbError, DbUrlError, RgpdError) as exc:
        message = url.scrub(str(exc)) if url is not None else str(exc)
        audit_error = audit(audited, 'failure', result, message)
        return Outcome(result, message=f'{message} ({audit_error})' if audit_error else message, shown=shown)
    except OSError as exc:
        message = f'{exc.strerror or exc}: {exc.filename}' if exc.filename else str(exc)
        message = url.scrub(message) if url is not None else message
        audit(audited, 'failure', result, message)
        trace = traceback.format_exc()
        return Outcome(result, message=message, exception=url.scrub(trace) if url is not None else trace, shown=shown)
    finally:
        if db is not None:
            db.close()
    warnings = list(result['data_map_warnings'])
    for item in result.get('replayed') or ():
        if item.get('status') in ('mismatch', 'unverified'):
            warnings.append(f'replay left ledger entry {item["entry_id"]} alone ({item["status"]}): {item.get("reason")}')
    audit_error = audit(audited, 'success', result)
    if audit_error:
        warnings.append(audit_error)
    return Outcome(result, warnings, shown=shown)
