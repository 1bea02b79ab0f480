# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The booleans check of the dihya.ops.operation_context action (its ``operation`` option), on the collection's real roles."""

from __future__ import annotations

import pathlib
import types
import typing as t

import pytest

from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar, trust_as_template

from ansible_collections.dihya.ops.plugins.action import operation_context

pytestmark = pytest.mark.usefixtures("plugin_loader")

ROLES = pathlib.Path(__file__).resolve().parents[4] / 'roles'


def run_action(variables: dict[str, t.Any], operation: str = 'rotate_logs') -> dict[str, t.Any]:
    loader = DataLoader()
    task = Task.load({'action': 'dihya.ops.operation_context', 'args': {'operation': operation}}, loader=loader)
    task._role = types.SimpleNamespace(_role_path=str(ROLES / 'operation'))  # pylint: disable=protected-access
    task_vars = dict({'inventory_hostname': 'web-1', 'ansible_python_interpreter': '/usr/bin/python3', 'operation_name': operation}, **variables)
    templar = Templar(loader=loader, variables=task_vars)
    connection = connection_loader.get('ansible.builtin.local', PlayContext())
    action = operation_context.ActionModule(task, connection, PlayContext(), loader, templar, None)
    return t.cast('dict[str, t.Any]', action.run(task_vars=task_vars))


def test_the_booleans_of_a_role_are_read_from_its_argument_specs() -> None:
    names = operation_context.boolean_names(operation_context.main_options(str(ROLES / 'rotate_logs' / 'meta' / 'argument_specs.yml')))
    assert 'rotate_logs_force' in names and 'rotate_logs_copytruncate' in names
    assert all(name.startswith('rotate_logs_') for name in names)


@pytest.mark.parametrize('spelling', ['true', 'False', 'yes', 'NO', 'on', 'off', '1', '0', True, False, 1])
def test_readable_spellings_pass(spelling: t.Any) -> None:
    result = run_action({'rotate_logs_force': spelling, 'operation_audit': spelling})
    assert not result.get('failed'), result
    assert result['ansible_facts']['dihya_ops_context']['host'] == 'web-1'


@pytest.mark.parametrize('spelling', ['y', 't', 'n', 'f', 'Y'])
def test_misread_spellings_are_refused_by_name(spelling: str) -> None:
    result = run_action({'rotate_logs_force': spelling, 'operation_audit': 'y', 'unrelated': 'y'})
    assert result['failed']
    assert result['msg'] == (f'rotate_logs_force="{spelling}", operation_audit="y": give a boolean as true or false '
                             '(or yes/no, on/off, 1/0). Nothing was run.')
    assert 'ansible_facts' not in result


@pytest.mark.parametrize('value', ['maybe', 'a "quoted" value that goes on and on and on', '../../etc/passwd', ['a list']])
def test_a_value_that_is_no_boolean_is_refused_as_role_validation_would(value: t.Any) -> None:
    result = run_action({'rotate_logs_force': value, 'rotate_logs_keep': 'seven'})
    assert result['failed']
    assert result['msg'].startswith('role dihya.ops.rotate_logs: '), result['msg']
    assert "argument 'rotate_logs_force' is of type" in result['msg'] and "argument 'rotate_logs_keep' is of type" in result['msg']
    assert result['msg'].endswith('Nothing was run.') and 'give a boolean' not in result['msg']
    assert 'ansible_facts' not in result


def test_an_option_of_the_lifecycle_is_validated_too() -> None:
    result = run_action({'operation_audit_sinks': 'not a list', 'rotate_logs_force': 'n'})
    assert result['msg'].startswith("role dihya.ops.operation: Elements value for option 'operation_audit_sinks' is of type str"), result['msg']
    assert result['msg'].endswith('. rotate_logs_force="n": give a boolean as true or false (or yes/no, on/off, 1/0). Nothing was run.')


def test_a_value_naming_a_variable_of_the_role_itself_is_left_to_the_role() -> None:
    # An inventory value is a trusted template; the role's own variables are not known before the role runs.
    assert not run_action({'rotate_logs_keep': trust_as_template('{{ _rotate_logs_undefined_here }}')}).get('failed')
    refused = run_action({'rotate_logs_keep': trust_as_template('{{ 7 * 2 }}'), 'rotate_logs_force': trust_as_template('{{ "t" }}')})
    assert refused['msg'] == 'rotate_logs_force="t": give a boolean as true or false (or yes/no, on/off, 1/0). Nothing was run.'


@pytest.mark.parametrize('operation', ['../operation', 'rotate logs', ''])
def test_an_operation_that_is_not_a_role_name_is_an_error(operation: str) -> None:
    if not operation:
        assert not run_action({}, operation).get('failed')
        return
    with pytest.raises(AnsibleError, match='operation must name a role'):
        run_action({}, operation)
