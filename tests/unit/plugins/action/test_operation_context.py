# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.operation_context action, run with ansible-core's own task, templar and local connection.

Real runs through the operation playbooks are in tests/functional/test_operation.py.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar, trust_as_template

from ansible_collections.dihya.ops.plugins.action import operation_context
from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context

pytestmark = pytest.mark.usefixtures("plugin_loader")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def fixture_clean_environment(monkeypatch):
    for name in ("DIHYA_OPS_USER", "DIHYA_AUDIT_USER", "DIHYA_TRACE_ID", "DIHYA_AUDIT_TRACE_ID", "DIHYA_OPS_TRUST_DECLARED_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_run_context, "_RUN", {"trace_id": _run_context.run_trace_id()})


def run_action(variables: dict[str, t.Any], args: dict[str, t.Any] | None = None, check_mode: bool = False) -> dict[str, t.Any]:
    loader = DataLoader()
    task = Task.load({"action": "dihya.ops.operation_context", "args": args or {}, "check_mode": check_mode}, loader=loader)
    task_vars = dict({"inventory_hostname": "web-1"}, **variables)
    templar = Templar(loader=loader, variables=task_vars)
    connection = connection_loader.get("ansible.builtin.local", PlayContext())
    action = operation_context.ActionModule(task, connection, PlayContext(), loader, templar, None)
    return t.cast("dict[str, t.Any]", action.run(task_vars=task_vars))


def test_the_context_is_one_fact_with_the_host_name():
    result = run_action({"awx_user_name": "alice", "dihya_ops_tenant": trust_as_template("{{ tenant }}"), "tenant": "acme",
                         "dihya_environment": "prod", "dihya_trace_id": TRACE, "dihya_ops_request_id": "CHG-7",
                         "ansible_python_interpreter": "/usr/bin/python3"})
    assert not result.get("failed") and result["changed"] is False
    assert result["ansible_facts"] == {"dihya_ops_context": {
        "user": "alice", "user_source": "awx", "tenant": "acme", "environment": "prod", "trace_id": TRACE,
        "trace_id_source": "extra_vars", "correlation_id": "CHG-7", "host": "web-1"}}
    assert result["interpreter"] is None


def test_the_same_trace_id_for_every_host_of_the_run():
    first = run_action({})["ansible_facts"]["dihya_ops_context"]
    second = run_action({"inventory_hostname": "web-2"})["ansible_facts"]["dihya_ops_context"]
    assert first["trace_id"] == second["trace_id"] == _run_context.run_trace_id()
    assert (first["host"], second["host"]) == ("web-1", "web-2")


def test_check_mode_resolves_the_same_context():
    assert run_action({"dihya_trace_id": TRACE}, check_mode=True)["ansible_facts"]["dihya_ops_context"]["trace_id"] == TRACE


@pytest.mark.parametrize(("variable", "value"), [("dihya_ops_tenant", "../acme"), ("dihya_trace_id", "not-hex"),
                                                 ("dihya_environment", "prod'"), ("awx_user_name", "a\nb")])
def test_a_malformed_context_fails_naming_the_variable(variable, value):
    result = run_action({variable: value})
    assert result["failed"] is True
    assert result["msg"].startswith(variable) and result["msg"].endswith("Nothing was run.")
    assert "ansible_facts" not in result


def test_a_declared_user_not_trusted_is_a_warning(monkeypatch):
    result = run_action({"dihya_ops_user": "mallory"})
    assert result["ansible_facts"]["dihya_ops_context"]["user_source"] == "os"
    assert any("dihya_ops_user is ignored" in warning for warning in result["warnings"])
    monkeypatch.setenv("DIHYA_OPS_TRUST_DECLARED_USER", "true")
    assert run_action({"dihya_ops_user": "carol"})["ansible_facts"]["dihya_ops_context"]["user"] == "carol"


def test_unknown_arguments_are_refused():
    with pytest.raises(AnsibleActionFail, match=r"Unsupported parameters .*: user"):
        run_action({}, args={"user": "alice"})


def test_the_interpreter_of_the_backend_virtual_environment():
    venv = {"dihya_backend_root": "/srv/dihya", "dihya_backend_venv": trust_as_template("{{ dihya_backend_root }}/venv/")}
    assert run_action(venv)["interpreter"] == "/srv/dihya/venv/bin/python"
    assert run_action(dict(venv, ansible_python_interpreter="/usr/bin/python3"))["interpreter"] is None
    assert run_action({})["interpreter"] is None


@pytest.mark.parametrize(("venv", "configured", "expected"), [
    ("/srv/app/venv", None, "/srv/app/venv/bin/python"),
    ("/srv/app/venv", "auto_silent", "/srv/app/venv/bin/python"),
    ("/srv/app/venv", "auto", "/srv/app/venv/bin/python"),
    ("/srv/app/../app/venv", None, "/srv/app/venv/bin/python"),
    ("/srv/app/venv", "/opt/python/bin/python3", None),
    ("venv", None, None),
    ("/srv/app\nvenv", None, None),
    (None, None, None),
    (["/srv"], None, None),
])
def test_venv_interpreter(venv, configured, expected):
    assert operation_context.venv_interpreter(venv, configured) == expected
