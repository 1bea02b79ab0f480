# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The operations ``run_ops`` knows, the collection they run from, and the validation of a run's context.

An operation is a playbook of the collection (``playbooks/<name>.yml``, run by its FQCN ``dihya.ops.<name>``) or one of
the original toolkit's names mapped onto one (``monitoring`` is ``check_health``). The original names whose playbooks
do not exist yet (``security``, ``plugin``, ``reporting``) are known, and refused with "not available yet".
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import typing as t

import yaml

#: The collection's namespace and name: playbooks run as ``dihya.ops.<operation>``.
COLLECTION = 'dihya.ops'

#: The original toolkit's operation names, and the playbook each one runs (None: not available yet).
ALIASES: dict[str, str | None] = {
    'monitoring': 'check_health',
    'audit': 'audit',
    'rgpd': 'rgpd',
    'security': None,
    'plugin': None,
    'reporting': None,
}

#: What each operation needs from the context, for ``dihya-ops list`` and the errors.
NEEDS: dict[str, str] = {
    'audit': 'context.action and context.user (the event); tenant, route, data (its details) optional',
    'rgpd': 'context.action (inventory, export, anonymise, erase, replay, consent), context.subject, context.tenant',
    'check_health': 'nothing (data: check_health_* variables)',
    'restart_services': 'nothing (data: restart_services_* variables, e.g. restart_services_request_id)',
    'purge_temp_files': 'nothing (data: purge_temp_files_* variables)',
    'rotate_logs': 'nothing (data: rotate_logs_* variables, e.g. rotate_logs_force)',
    'update_dependencies': 'data.update_dependencies_packages (the requirement strings)',
    'approve': 'data: approve_* variables of the approve playbook',
}

#: The keys a context may hold.
CONTEXT_KEYS = ('user', 'tenant', 'route', 'action', 'data', 'plugin', 'subject', 'outcome')

RGPD_ACTIONS = ('inventory', 'export', 'anonymise', 'erase', 'replay', 'consent')
TENANT = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,62}')
ACTION = re.compile(r'[A-Za-z0-9][A-Za-z0-9._:-]{0,127}')
SUBJECT = re.compile(r'[A-Za-z0-9][A-Za-z0-9._@+:-]{0,127}')
ROUTE = re.compile(r'/[\x21-\x7e]{0,1023}')
VARIABLE = re.compile(r'[a-z][a-z0-9_]{0,127}')
OPERATION = re.compile(r'[a-z][a-z0-9_]{0,63}')
CONTROL = re.compile(r'[\x00-\x1f\x7f\u2028\u2029]')
MAX_USER = 256
MAX_DATA_BYTES = 64 * 1024
MAX_DEPTH = 6


class BadInput(ValueError):
    """The operation, its context or the run's options are wrong; nothing ran. The message says what and why."""


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation: the name asked for, the playbook it runs, what it needs."""

    name: str
    playbook: str | None
    needs: str

    @property
    def fqcn(self) -> str:
        if self.playbook is None:
            raise BadInput(f'operation {self.name!r} is not available yet: the collection has no playbook for it')
        return f'{COLLECTION}.{self.playbook}'


def collection_dir() -> pathlib.Path | None:
    """Where the collection ``dihya.ops`` is: ``DIHYA_OPS_COLLECTION_DIR``, the checkout this package sits in, or an installed copy."""
    given = os.environ.get('DIHYA_OPS_COLLECTION_DIR')
    if given:
        return pathlib.Path(given)
    here = pathlib.Path(__file__).resolve()
    for parent in here.parents:
        if (parent / 'galaxy.yml').is_file() and (parent / 'playbooks').is_dir():
            return parent
    paths = os.environ.get('ANSIBLE_COLLECTIONS_PATH', '') or os.environ.get('ANSIBLE_COLLECTIONS_PATHS', '')
    candidates = [pathlib.Path(p) for p in paths.split(os.pathsep) if p]
    candidates += [pathlib.Path.home() / '.ansible' / 'collections', pathlib.Path('/usr/share/ansible/collections')]
    for base in candidates:
        path = base / 'ansible_collections' / 'dihya' / 'ops'
        if (path / 'playbooks').is_dir():
            return path
    return None


def playbooks(root: pathlib.Path | None = None) -> list[str]:
    """The operation playbooks of the collection (names without ``.yml``), sorted."""
    root = root or collection_dir()
    if root is None:
        return []
    return sorted(p.stem for p in (root / 'playbooks').glob('*.yml') if OPERATION.fullmatch(p.stem))


def operations(root: pathlib.Path | None = None) -> dict[str, Operation]:
    """Every operation ``run_ops`` accepts: the collection's playbooks, then the original names."""
    found = playbooks(root)
    known = {name: Operation(name, name, NEEDS.get(name, 'see the playbook')) for name in found}
    for alias, target in ALIASES.items():
        if alias in known:
            continue
        playbook = target or alias
        available = playbook if playbook in found else None
        known[alias] = Operation(alias, available, NEEDS.get(playbook, 'see the playbook') if available else 'not available yet')
    return known


def resolve(name: object, root: pathlib.Path | None = None) -> Operation:
    """The operation called ``name``, or :class:`BadInput` naming the known ones."""
    if not isinstance(name, str) or not OPERATION.fullmatch(name):
        raise BadInput(f'operation must be a lowercase name such as check_health, got {_show(name)}')
    known = operations(root)
    if name not in known:
        raise BadInput(f'unknown operation {name!r}: known operations are {", ".join(sorted(known))}')
    operation = known[name]
    operation.fqcn  # noqa: B018 - raises BadInput when not available yet
    return operation


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _text(context: dict[str, t.Any], key: str, pattern: re.Pattern[str] | None, what: str) -> str | None:
    value = context.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f'context.{key} must be a string, got {type(value).__name__}')
    if CONTROL.search(value):
        raise BadInput(f'context.{key} holds control characters')
    if pattern is not None and not pattern.fullmatch(value):
        raise BadInput(f'context.{key} must be {what}, got {_show(value)}')
    return value


def _check_data(value: object, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise BadInput(f'{where} is nested deeper than {MAX_DEPTH} levels')
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and '\x00' in value:
            raise BadInput(f'{where} holds a NUL character')
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_data(item, f'{where}[{index}]', depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not VARIABLE.fullmatch(key):
                raise BadInput(f'{where} has a key that is not a lowercase identifier: {_show(key)}')
            _check_data(item, f'{where}.{key}', depth + 1)
        return
    raise BadInput(f'{where} must hold JSON values (strings, numbers, booleans, lists, dictionaries), got {type(value).__name__}')


@dataclasses.dataclass(frozen=True)
class Context:
    """A validated context: who asks, for which tenant, what."""

    user: str | None = None
    tenant: str | None = None
    route: str | None = None
    action: str | None = None
    subject: str | None = None
    plugin: str | None = None
    outcome: str | None = None
    data: dict[str, t.Any] = dataclasses.field(default_factory=dict)


def validate_context(context: object) -> Context:
    """Check a context (see :data:`CONTEXT_KEYS`) and return it typed, or raise :class:`BadInput`."""
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise BadInput(f'the context must be a dictionary, got {type(context).__name__}')
    unknown = sorted(str(k) for k in context if k not in CONTEXT_KEYS)
    if unknown:
        raise BadInput(f'unknown context key(s): {", ".join(_show(k) for k in unknown)}; known keys are {", ".join(CONTEXT_KEYS)}')
    user = _text(context, 'user', None, '')
    if user is not None and (not user.strip() or len(user) > MAX_USER):
        raise BadInput(f'context.user must be a non-empty string of at most {MAX_USER} characters')
    data = context.get('data')
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput(f'context.data must be a dictionary, got {type(data).__name__}')
    _check_data(data, 'context.data')
    if len(json.dumps(data)) > MAX_DATA_BYTES:
        raise BadInput(f'context.data is larger than {MAX_DATA_BYTES} bytes')
    outcome = _text(context, 'outcome', None, '')
    if outcome is not None and outcome not in ('success', 'failure', 'denied'):
        raise BadInput(f'context.outcome must be one of success, failure, denied, got {_show(outcome)}')
    return Context(
        user=user,
        tenant=_text(context, 'tenant', TENANT, 'a tenant name (letters, digits, . _ -; at most 63)'),
        route=_text(context, 'route', ROUTE, 'a route starting with / (printable ASCII, no spaces)'),
        action=_text(context, 'action', ACTION, 'an action name (letters, digits, . _ : -)'),
        subject=_text(context, 'subject', SUBJECT, 'a subject id (letters, digits, . _ @ + : -)'),
        plugin=_text(context, 'plugin', ACTION, 'a plugin name (letters, digits, . _ : -)'),
        outcome=outcome,
        data=dict(data),
    )


def role_options(root: pathlib.Path | None, role: str) -> set[str] | None:
    """The options of a role's ``meta/argument_specs.yml`` (every entry point), or None when it cannot be read."""
    if root is None:
        return None
    try:
        specs = yaml.safe_load((root / 'roles' / role / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError):
        return None
    options: set[str] = set()
    for entry in (specs or {}).get('argument_specs', {}).values():
        options.update((entry or {}).get('options', {}) or {})
    return options


def playbook_vars(operation: Operation, context: Context, root: pathlib.Path | None) -> dict[str, t.Any]:
    """The variables the operation's playbook receives from the context (passed to Ansible as literal data)."""
    playbook = operation.playbook or ''
    out: dict[str, t.Any] = {}
    if context.tenant is not None:
        out['dihya_ops_tenant'] = context.tenant
    if playbook == 'audit':
        if context.action is None or context.user is None:
            raise BadInput('the audit operation needs context.action (what was done) and context.user (who did it)')
        return out  # the event itself goes through the playbook's audit_context_file
    if playbook == 'rgpd':
        if context.action not in RGPD_ACTIONS:
            raise BadInput(f'the rgpd operation needs context.action, one of {", ".join(RGPD_ACTIONS)}')
        if context.subject is None or context.tenant is None:
            raise BadInput('the rgpd operation needs context.subject (the data subject id) and context.tenant')
        out.update(rgpd_operation=context.action, rgpd_subject_id=context.subject, rgpd_tenant=context.tenant)
    elif context.subject is not None:
        raise BadInput(f'context.subject means nothing to the {operation.name} operation')
    options = role_options(root, playbook)
    for key, value in context.data.items():
        allowed = key.startswith((f'{playbook}_', 'dihya_ops_'))
        if options is not None and key.startswith(f'{playbook}_'):
            allowed = key in options
        if not allowed:
            raise BadInput(f'context.data.{key} is not a variable of the {operation.name} operation '
                           f'(expected {playbook}_* options of its role, or dihya_ops_*)')
        out[key] = value
    return out


def audit_event(context: Context) -> dict[str, t.Any]:
    """The event the audit playbook records, read by it from a file (never templated)."""
    event: dict[str, t.Any] = {'action': context.action, 'user': context.user, 'details': context.data}
    for key in ('tenant', 'route', 'outcome'):
        value = getattr(context, key)
        if value is not None:
            event[key] = value
    return event
