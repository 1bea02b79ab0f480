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
from ansible.errors import AnsibleError, AnsibleUndefinedVariable
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context

# The variables of the run context, read (and templated) from the task's variables.
CONTEXT_VARIABLES = (
    'awx_user_name', 'tower_user_name', 'awx_job_id', 'tower_job_id', 'awx_job_template_name', 'tower_job_template_name',
    'dihya_ops_user', 'dihya_ops_tenant', 'dihya_tenant', 'dihya_environment', 'dihya_trace_id', 'dihya_ops_request_id',
)


# What the bool filter reads as a boolean (any case); the roles' argument validation also accepts y, t, n and f.
# The strings that it accepts and the filter reads otherwise (as false, with a deprecation warning).
MISREAD_BOOLEANS = frozenset(('y', 't', 'n', 'f'))


# libyaml's loader when PyYAML has it (as Ansible's own loader does): the action reads a role's argument specs on every host.
_YAML_LOADER = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)


def main_options(spec_path: str) -> dict[str, t.Any]:
    """The options of a role's ``meta/argument_specs.yml``, entry point ``main``."""
    with open(spec_path, encoding='utf-8') as handle:
        spec = yaml.load(handle, Loader=_YAML_LOADER)  # a safe loader, C or Python
    return dict(spec['argument_specs']['main'].get('options') or {})


def boolean_names(options: t.Mapping[str, t.Any]) -> list[str]:
    """The boolean options of a role's ``main`` entry point, in their order."""
    return [name for name, option in options.items() if isinstance(option, dict) and option.get('type') == 'bool']


def spec_errors(options: t.Mapping[str, t.Any], values: t.Mapping[str, t.Any]) -> list[str]:
    """What Ansible's role validation (``validate_argument_spec``) would refuse in ``values``."""
    return list(ArgumentSpecValidator(dict(options)).validate(dict(values), validate_role_argument_spec=True).error_messages)


def misread_booleans(values: t.Mapping[str, t.Any]) -> list[str]:
    """``NAME=VALUE`` for each string value that role validation takes for a boolean but the bool filter would not read as one.

    A string that is no boolean at all is refused by the validation itself (:func:`spec_errors`).
    """
    return [f'{name}={json.dumps(value)}' for name, value in values.items()
            if isinstance(value, str) and value.lower() in MISREAD_BOOLEANS]


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

    def _values(self, options: t.Mapping[str, t.Any], task_vars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """The templated values of the options that the task's variables set."""
        values = {}
        for name in options:
            if name in task_vars:
                try:
                    values[name] = self._variable(task_vars, name)
                except AnsibleUndefinedVariable:
                    continue  # it names a variable of the role itself: the role's module checks the value
        return values

    def _refusals(self, operation: str, task_vars: t.Mapping[str, t.Any]) -> str:
        """What the options of the operation's role (a sibling of this task's role) and of this task's role would have refused.

        The lifecycle enters both roles without Ansible's validation task (a task for every host): this action validates
        their options against the same ``meta/argument_specs.yml``, and refuses the string forms of a boolean that the
        validation accepts but the ``bool`` filter would misread.
        """
        role = getattr(self._task, '_role', None)
        if role is None or not operation.isidentifier():
            raise AnsibleError(f'operation must name a role next to the role of the task, not {operation!r}')
        # This task's role has its argument specs parsed already (its metadata); the operation's role is not loaded yet.
        loaded = getattr(getattr(role, '_metadata', None), 'argument_specs', None) or {}
        own = (dict(loaded['main'].get('options') or {}) if isinstance(loaded.get('main'), dict)
               else main_options(os.path.join(role._role_path, 'meta', 'argument_specs.yml')))
        roles = [(operation, main_options(os.path.join(os.path.dirname(role._role_path), operation, 'meta', 'argument_specs.yml'))),
                 (os.path.basename(role._role_path), own)]
        refusals, misread = [], []
        for name, options in roles:
            values = self._values(options, task_vars)
            errors = spec_errors(options, values)
            if errors:
                refusals.append(f'role dihya.ops.{name}: ' + '; '.join(errors))
            misread.extend(misread_booleans({option: values[option] for option in boolean_names(options) if option in values}))
        if misread:
            refusals.append(', '.join(misread) + ': give a boolean as true or false (or yes/no, on/off, 1/0)')
        return '. '.join(refusals)

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
            refused = self._refusals(args['operation'], task_vars)
            if refused:
                result.update(failed=True, msg=f'{refused}. Nothing was run.')
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
