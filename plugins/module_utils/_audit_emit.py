# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What the audit_event module does: check its options, build the event, append it to the log, queue and deliver it.

:func:`emit` takes the module (its parameters, check mode, ``warn`` and ``fail_json``) and returns the
result of a successful run; every failure goes through ``fail_json`` with what was done so far.

Check mode writes and sends nothing, but finds what the real run would refuse: bad paths and options,
a log or lock file that is a symbolic link or not a regular file, a spool path that is not a directory,
invalid sinks. What an earlier task of the real run may still create (the log's directory, the metrics
file's directory) is a warning there, not a failure.
"""

from __future__ import annotations

import os
import socket
import stat
import traceback
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit_delivery import (
    DEFAULT_DELIVERY_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DeliveryResult, forward, preview,
)
from ansible_collections.dihya.ops.plugins.module_utils._audit_event import AuditError, AuditSettings, build_event, check_path
from ansible_collections.dihya.ops.plugins.module_utils._audit_log import AuditLog
from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_config import PlannedSink, plan_sinks
from ansible_collections.dihya.ops.plugins.module_utils._audit_spool import Spool, SpoolError
from ansible_collections.dihya.ops.plugins.module_utils._metrics import MetricsError, preflight

MAX_DELIVERY_TIMEOUT = 3600


class _Module(t.Protocol):
    """The part of ``AnsibleModule`` that :func:`emit` uses."""

    params: dict[str, t.Any]
    check_mode: bool

    def warn(self, warning: str) -> None: ...

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn: ...


def _paths(module: _Module, outcome: dict[str, t.Any]) -> tuple[str, str, str | None]:
    """The log, spool and metrics paths, checked (every path option must be absolute); the sinks' CA paths checked in place."""
    params = module.params
    try:
        path = check_path(outcome['path'], 'path')
        spool_dir = check_path(outcome['spool_dir'], 'spool_dir')
        metrics_path = check_path(params['metrics_path'], 'metrics_path') if params['metrics_path'] is not None else None
        for index, sink in enumerate(params['sinks']):
            if sink.get('ca_path') is not None:
                sink['ca_path'] = check_path(sink['ca_path'], f'sinks[{index}].ca_path')
    except AuditError as exc:
        module.fail_json(msg=str(exc), **outcome)
    return path, spool_dir, metrics_path


def _event(module: _Module, outcome: dict[str, t.Any]) -> tuple[AuditSettings, dict[str, t.Any]]:
    params = module.params
    try:
        settings = AuditSettings(
            key=params['key'].encode('utf-8'),
            pseudonym_key=params['pseudonym_key'].encode('utf-8') if params['pseudonym_key'] else None,
            pseudonymise=not params['allow_clear_values'],
            fsync=params['fsync'],
        )
        event = build_event(
            action=params['action'], category=params['category'], outcome=params['outcome'], settings=settings,
            user=params['user'], tenant=params['tenant'], trace_id=params['trace_id'], correlation_id=params['correlation_id'],
            route=params['route'], host=params['host'] or socket.gethostname(), email=params['email'], source_ip=params['source_ip'],
            labels=params['labels'], details=params['details'],
        )
    except AuditError as exc:
        module.fail_json(msg=str(exc), **outcome)
    return settings, event


def _warn_about(module: _Module, result: DeliveryResult, planned: t.Sequence[PlannedSink], metrics_path: str | None) -> None:
    """The warnings of a delivery: metrics with nothing to report on, records kept for a later run, orphaned spools."""
    if metrics_path and not planned:
        module.warn('metrics_path is ignored: there is no network sink to report on')
    for warning in result.warnings:
        module.warn(warning)
    invalid = {entry.name for entry in planned if entry.error}
    for report in result.reports:
        if report.error and report.pending and report.name not in invalid:
            module.warn(f'sink {report.name}: {report.pending} record(s) kept in the spool for a later run: {report.error}')
    for orphan in result.orphaned:
        module.warn(f"{orphan['pending']} record(s) wait in {orphan['directory']}, the spool of a sink that is no longer configured")


def _check_mode(module: _Module, outcome: dict[str, t.Any], event: dict[str, t.Any], log: AuditLog, spool: Spool,
                planned: list[PlannedSink], metrics_path: str | None) -> dict[str, t.Any]:
    """What the real run would write and queue, and what it would refuse; nothing is written."""
    outcome.update(changed=True, record=event)
    try:
        if not log.check():
            module.warn(f'the directory of {log.path} does not exist (it must exist when the task runs outside check mode)')
        result = preview(spool, planned)
    except (AuditError, SpoolError) as exc:
        module.fail_json(msg=str(exc), **outcome)
    outcome['delivery'] = result.as_dict()
    _warn_about(module, result, planned, metrics_path)
    invalid = [entry.error for entry in planned if entry.error]
    if invalid:
        module.fail_json(msg='; '.join(invalid), **outcome)
    return outcome


def emit(module: _Module) -> dict[str, t.Any]:
    """Run the audit_event module: the result to exit with, or ``fail_json``."""
    params = module.params
    spool_dir = params['spool_dir'] if params['spool_dir'] is not None else params['path'] + '.spool'
    outcome: dict[str, t.Any] = dict(changed=False, record={}, trace_id=None, path=params['path'], spool_dir=spool_dir,
                                     delivery={}, metrics_written=False)
    path, spool_dir, metrics_path = _paths(module, outcome)
    outcome.update(path=path, spool_dir=spool_dir)
    if params['delivery_timeout'] <= 0 or params['delivery_timeout'] > MAX_DELIVERY_TIMEOUT:
        module.fail_json(msg=f'delivery_timeout must be more than 0 and at most {MAX_DELIVERY_TIMEOUT} seconds', **outcome)
    if params['max_attempts'] < 1:
        module.fail_json(msg='max_attempts must be at least 1', **outcome)
    # The outcome's own path key goes to fail_json with the rest of it: that is what the positional-only path is for.
    preflight(module, metrics_path, **outcome)  # pylint: disable=kwarg-superseded-by-positional-arg

    settings, event = _event(module, outcome)
    outcome['trace_id'] = event['trace']['id']
    planned = plan_sinks(params['sinks'])
    spool = Spool(spool_dir)
    log = AuditLog(path, settings)
    if module.check_mode:
        return _check_mode(module, outcome, event, log, spool, planned, metrics_path)

    try:
        # Refuse a spool path that is not a directory before the record is written.
        spool.check()
        record = log.append([event])[0]
    except (AuditError, SpoolError) as exc:
        module.fail_json(msg=str(exc), **outcome)
    outcome.update(changed=True, record=record)
    seq = record['dihya']['audit']['seq']
    try:
        result = forward(
            spool, record, planned, delivery_timeout=params['delivery_timeout'], max_attempts=params['max_attempts'],
            metrics_path=metrics_path, hostname=params['host'],
        )
    except SpoolError as exc:
        module.fail_json(msg=f'the audit record (seq {seq}) was written to {path}, but not queued for the network sinks: {exc}', **outcome)
    except MetricsError as exc:
        module.fail_json(msg=f'the audit record (seq {seq}) was written to {path} and queued, but the metrics were not: {exc}',
                         exception=traceback.format_exc(), **outcome)
    outcome.update(delivery=result.as_dict(), metrics_written=result.metrics_written)
    _warn_about(module, result, planned, metrics_path)
    invalid = [entry.error for entry in planned if entry.error]
    if invalid:
        module.fail_json(
            msg=f'the audit record (seq {seq}) was written to {path} and kept in the spool {spool_dir}, but: ' + '; '.join(invalid),
            **outcome,
        )
    return outcome


# The options of an operation module's ``audit`` parameter: the module records its own start and end events,
# through emit(), as the audit_event module would with these options (docs/architecture.md, "A module that audits itself").
AUDIT_OPTIONS: dict[str, dict[str, t.Any]] = dict(
    path=dict(type='path', required=True),
    key=dict(type='str', required=True, no_log=True),
    pseudonym_key=dict(type='str', no_log=True),
    operation=dict(type='str', required=True),
    user=dict(type='str'),
    tenant=dict(type='str'),
    trace_id=dict(type='str'),
    correlation_id=dict(type='str'),
    route=dict(type='str'),
    host=dict(type='str'),
    labels=dict(type='dict'),
)
# The audit_event options that the operation's events leave at their defaults (no network sink: an operation
# with sinks records its events with the audit_event module).
_EVENT_DEFAULTS: dict[str, t.Any] = dict(
    allow_clear_values=False, category='ops', email=None, source_ip=None, fsync='always', sinks=[], spool_dir=None,
    delivery_timeout=DEFAULT_DELIVERY_TIMEOUT, max_attempts=DEFAULT_MAX_ATTEMPTS, metrics_path=None,
)
MESSAGE_MAX = 1024


class _EventModule:
    """An audit_event run inside another module: its own parameters, the host module's check mode, warnings and failure."""

    def __init__(self, module: _Module, params: dict[str, t.Any], failure: str) -> None:
        self.params = params
        self.check_mode = module.check_mode
        self._module = module
        self._failure = failure

    def warn(self, warning: str) -> None:
        self._module.warn(warning)

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn:
        self._module.fail_json(msg=f'{self._failure}: {msg}. Nothing else was done.', audit=kwargs)


def _message(text: str) -> str:
    """At most about MESSAGE_MAX characters, cut at a word, as the operation role's ``truncate(1024)``."""
    if len(text) <= MESSAGE_MAX + 5:
        return text
    return text[:MESSAGE_MAX - 3].rsplit(' ', 1)[0] + '...'


def ensure_log_dir(module: _Module, path: str) -> None:
    """The audit log's folder, created (mode 0700) when missing, else made 0700, as the operation role's file task does
    (which follows a symbolic link to a folder)."""
    directory = os.path.dirname(path)
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        try:
            os.makedirs(directory, mode=0o700)
            os.chmod(directory, 0o700)
        except OSError as exc:
            module.fail_json(msg=f'the folder of the audit log {directory} cannot be created: {exc.strerror}. Nothing was done.')
        return
    except OSError as exc:
        module.fail_json(msg=f'the folder of the audit log {directory} cannot be read: {exc.strerror}. Nothing was done.')
    if not stat.S_ISDIR(info.st_mode):
        module.fail_json(msg=f'the folder of the audit log {directory} is not a directory. Nothing was done.')
    if stat.S_IMODE(info.st_mode) != 0o700:
        try:
            os.chmod(directory, 0o700)
        except OSError as exc:
            module.fail_json(msg=f'the folder of the audit log {directory} cannot be made 0700: {exc.strerror}. Nothing was done.')


def operation_event(module: _Module, audit: t.Mapping[str, t.Any], event: str, outcome: str = 'success',
                    message: str = '') -> dict[str, t.Any]:
    """Record ``<operation>.<event>`` (``started`` or ``finished``) with the engine of the audit_event module.

    ``audit`` holds the options of :data:`AUDIT_OPTIONS`; a failure to record fails the module (an operation does not
    run unaudited). Nothing is written in check mode. Returns the audit_event result (its ``record``).
    """
    params = dict(_EVENT_DEFAULTS)
    params.update({name: audit.get(name) for name in AUDIT_OPTIONS if name != 'operation'})
    params.update(action=f"{audit['operation']}.{event}", outcome=outcome, sinks=[],
                  details={'message': _message(message)} if message else None)
    if module.check_mode:
        return {}
    ensure_log_dir(module, params['path'])
    return emit(_EventModule(module, params, f"the audit event {params['action']} was not recorded"))
