# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.operation_context action: the run context as one fact, resolved on the controller (see the module's documentation)."""

from __future__ import annotations

import json
import os
import posixpath
import typing as t

import yaml

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context

# The variables of the run context, read (and templated) from the task's variables.
CONTEXT_VARIABLES = (
    'awx_user_name', 'tower_user_name', 'awx_job_id', 'tower_job_id', 'awx_job_template_name', 'tower_job_template_name',
    'dihya_ops_user', 'dihya_ops_tenant', 'dihya_tenant', 'dihya_environment', 'dihya_trace_id', 'dihya_ops_request_id',
)


# What the bool filter reads as a boolean (any case); the roles' argument validation also accepts y, t, n and f.
READABLE_BOOLEANS = frozenset(('true', 'false', 'yes', 'no', 'on', 'off', '1', '0'))
TRUNCATE_AT = 32
TRUNCATE_LEEWAY = 5


def _truncate(text: str) -> str:
    """Jinja's ``truncate(32)``: whole words, an ellipsis, 5 characters of leeway."""
    if len(text) <= TRUNCATE_AT + TRUNCATE_LEEWAY:
        return text
    return text[:TRUNCATE_AT - 3].rsplit(' ', 1)[0] + '...'


def boolean_names(spec_path: str) -> list[str]:
    """The boolean options of a role's ``meta/argument_specs.yml`` (entry point ``main``), in their order."""
    with open(spec_path, encoding='utf-8') as handle:
        spec = yaml.safe_load(handle)
    options = spec['argument_specs']['main'].get('options') or {}
    return [name for name, option in options.items() if isinstance(option, dict) and option.get('type') == 'bool']


def misread_booleans(values: t.Mapping[str, t.Any]) -> list[str]:
    """``NAME=VALUE`` for each string value that role validation takes for a boolean but the bool filter would not read as one."""
    return [f'{name}={json.dumps(_truncate(value))}' for name, value in values.items()
            if isinstance(value, str) and value.lower() not in READABLE_BOOLEANS]


def venv_interpreter(venv: t.Any, configured: t.Any) -> str | None:
    """The virtual environment's Python when no interpreter is configured (``auto...`` is discovery) and ``venv`` is absolute."""
    if isinstance(configured, str) and configured.strip() and not configured.strip().startswith('auto'):
        return None
    if not isinstance(venv, str) or not posixpath.isabs(venv) or any(char in venv for char in '\x00\n\r'):
        return None
    return posixpath.join(posixpath.normpath(venv), 'bin', 'python')


class ActionModule(ActionBase):  # type: ignore[misc]  # ansible-core ships no type information
    """Resolve the run context and return it as the ``dihya_ops_context`` fact."""

    TRANSFERS_FILES = False
    _VALID_ARGS: frozenset[str] = frozenset()
    _requires_connection = False

    def _variable(self, task_vars: t.Mapping[str, t.Any], name: str) -> t.Any:
        return self._templar.template(task_vars[name]) if name in task_vars else None

    def _misread_booleans(self, operation: str, task_vars: t.Mapping[str, t.Any]) -> str:
        """The boolean variables of the operation's role (a sibling of this task's role) and ``operation_audit`` that are misread."""
        role = getattr(self._task, '_role', None)
        if role is None or not operation.isidentifier():
            raise AnsibleError(f'operation must name a role next to the role of the task, not {operation!r}')
        names = boolean_names(os.path.join(os.path.dirname(role._role_path), operation, 'meta', 'argument_specs.yml'))
        values = {name: self._variable(task_vars, name) for name in [*names, 'operation_audit'] if name in task_vars}
        return ', '.join(misread_booleans(values))

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result: dict[str, t.Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec={'operation': {'type': 'str'}})
        variables = {name: self._variable(task_vars, name) for name in CONTEXT_VARIABLES if name in task_vars}
        try:
            context = _run_context.resolve(variables)
        except _run_context.ContextError as exc:
            result.update(failed=True, msg=f'{exc}. Nothing was run.')
            return result
        if args.get('operation'):
            refused = self._misread_booleans(args['operation'], task_vars)
            if refused:
                result.update(failed=True, msg=f'{refused}: give a boolean as true or false (or yes/no, on/off, 1/0). Nothing was run.')
                return result
        host = str(task_vars.get('inventory_hostname') or '')
        try:
            configured = C.config.get_config_value('INTERPRETER_PYTHON', variables=task_vars)
        except AnsibleError:
            configured = None
        if 'ansible_python_interpreter' in task_vars:
            configured = 'set'
        interpreter = venv_interpreter(self._variable(task_vars, 'dihya_backend_venv'), configured)
        result.update(changed=False, ansible_facts={'dihya_ops_context': context.fact(host)}, interpreter=interpreter)
        if context.warnings:
            result['warnings'] = list(context.warnings)
        return result
