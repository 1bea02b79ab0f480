# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.authorise action: where the policy comes from, one decision per request of the play, the controller's record."""

from __future__ import annotations

import json
import os
import types
import typing as t

import pytest

from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar

from ansible_collections.dihya.ops.plugins.action import authorise
from ansible_collections.dihya.ops.plugins.callback import audit as audit_callback
from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context

pytestmark = pytest.mark.usefixtures("plugin_loader")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
POLICY = """\
version: 1
roles:
  support:
    operations: [check_health, rgpd.inventory, rgpd.export]
    environments: [dev, prod]
  viewer:
    operations: [restart_services]
    environments: all
    check_only: true
  dpo:
    operations: ["rgpd.*"]
    environments: all
bindings:
  - users: [bob]
    roles: [support, viewer]
    tenants: [acme]
  - users: [dana]
    roles: [dpo]
    tenants: all
approvals: []
"""


@pytest.fixture(name="policy_file")
def fixture_policy_file(tmp_path, monkeypatch):
    for name in ("DIHYA_OPS_USER", "DIHYA_AUDIT_USER", "DIHYA_TRACE_ID", "DIHYA_AUDIT_TRACE_ID", "DIHYA_OPS_TRUST_DECLARED_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_run_context, "_RUN", {"trace_id": TRACE})
    path = tmp_path / "policy.yml"
    path.write_text(POLICY)
    monkeypatch.setenv("DIHYA_OPS_POLICY", str(path))
    monkeypatch.setenv("DIHYA_OPS_USER", "bob")
    return path


@pytest.fixture(name="controller")
def fixture_controller(tmp_path):
    """A keyed dihya.ops.audit callback of this process, as ansible-playbook holds it when the action's worker forks."""
    settings = _audit.AuditSettings(key=b"controller-key-0123456789", pseudonym_key=b"pseudonym-key-0123456789")
    callback = audit_callback.CallbackModule()
    callback.disabled = False
    callback._settings = settings  # pylint: disable=protected-access
    callback._log = _audit.AuditLog(str(tmp_path / "controller.log"), settings)  # pylint: disable=protected-access
    yield tmp_path / "controller.log", settings
    callback.disabled = True


def run_action(hosts: dict[str, dict[str, t.Any]], args: dict[str, t.Any] | None = None, check_mode: bool = False,
               variables: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    loader = DataLoader()
    task = Task.load({"action": "dihya.ops.authorise", "args": args or {"operation": "check_health"}}, loader=loader)
    first = next(iter(hosts))
    task_vars = dict(hosts[first], inventory_hostname=first, ansible_play_hosts_all=list(hosts), hostvars=hosts, **(variables or {}))
    templar = Templar(loader=loader, variables=task_vars)
    play_context = PlayContext()
    play_context.check_mode = check_mode
    connection = connection_loader.get("ansible.builtin.local", play_context)
    action = authorise.ActionModule(task, connection, play_context, loader, templar, None)
    return t.cast("dict[str, t.Any]", action.run(task_vars=task_vars))


def records(path) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


ACME = {"web-1": {"dihya_ops_tenant": "acme", "dihya_environment": "prod"}, "web-2": {"dihya_ops_tenant": "acme", "dihya_environment": "prod"}}


def test_an_allowed_run_is_a_fact_and_an_event_of_the_controller_chain(policy_file, controller):
    log, settings = controller
    result = run_action(ACME)
    assert not result.get("failed"), result
    decision = result["ansible_facts"]["dihya_ops_decision"]
    assert decision["allowed"] and decision["roles"] == ["support"]
    assert decision["reason"] == "access granted: bob (role support) may run check_health for tenant acme in prod"
    assert [item["hosts"] for item in result["decisions"]] == [["web-1", "web-2"]], "one decision for the pair (acme, prod)"
    [event] = records(log)
    assert event["event"]["action"] == "dihya.ops.authorise" and event["event"]["outcome"] == "success"
    assert event["trace"]["id"] == TRACE and event["organization"]["id"] == "acme"
    assert event["user"]["id"] == settings.pseudonym("bob") and "bob" not in json.dumps(event)
    assert event["dihya"]["details"]["reason"].startswith("access granted: the user (role support)")
    assert _audit.verify(str(log), settings.key).ok


def test_a_denied_host_fails_the_run_and_is_recorded(policy_file, controller):
    log, dummy = controller
    hosts = dict(ACME, **{"web-3": {"dihya_ops_tenant": "globex", "dihya_environment": "prod"}})
    result = run_action(hosts)
    assert result["failed"] and "ansible_facts" not in result
    assert result["msg"] == ("access denied: bob (roles support, viewer) may not run check_health for tenant globex in prod: the user's "
                             "roles are bound to tenants acme only. Nothing was run on any host.")
    assert [(event["event"]["outcome"], event["organization"]["id"]) for event in records(log)] == [("success", "acme"), ("denied", "globex")]


def test_environment_and_check_only(policy_file, controller):
    staging = run_action({"web-1": {"dihya_ops_tenant": "acme", "dihya_environment": "staging"}})
    assert staging["failed"] and "check_health is granted in dev, prod only" in staging["msg"]
    real = run_action(ACME, {"operation": "restart_services"})
    assert real["failed"] and "only dry runs (--check) are allowed" in real["msg"]
    dry = run_action(ACME, {"operation": "restart_services"}, check_mode=True)
    assert not dry.get("failed") and dry["decisions"][0]["check_mode"] is True


def test_rgpd_is_each_host_s_request_for_its_tenant(policy_file, controller, monkeypatch):
    hosts = {"web-1": {"dihya_environment": "prod", "rgpd_operation": "export", "rgpd_tenant": "acme"},
             "web-2": {"dihya_environment": "prod", "rgpd_operation": "erase", "rgpd_tenant": "acme"}}
    result = run_action(hosts, {"operation": "rgpd"})
    assert result["failed"] and "may not run rgpd.erase for tenant acme in prod" in result["msg"]
    assert [item["operation"] for item in result["decisions"]] == ["rgpd.export", "rgpd.erase"]
    monkeypatch.setenv("DIHYA_OPS_USER", "dana")
    assert not run_action(hosts, {"operation": "rgpd"}).get("failed")
    hostile = run_action({"web-1": {"rgpd_operation": "export", "rgpd_tenant": "../acme"}}, {"operation": "rgpd"})
    assert hostile["failed"] and "rgpd_tenant='../acme' is not a tenant name" in hostile["msg"] and "Nothing was run" in hostile["msg"]


def test_without_a_policy_everything_is_refused(policy_file, controller, monkeypatch):
    log, dummy = controller
    monkeypatch.delenv("DIHYA_OPS_POLICY")
    result = run_action(ACME)
    assert result["failed"]
    assert "no authorisation policy" in result["msg"] and "DIHYA_OPS_POLICY" in result["msg"]
    assert "dihya_ops_policy_file" in result["msg"] and "docs/policy.md" in result["msg"]
    assert records(log)[0]["event"]["outcome"] == "denied"
    assert not run_action(ACME, variables={"dihya_ops_policy_file": str(policy_file)}).get("failed")


def test_the_controller_policy_wins_over_the_variable(policy_file, controller, tmp_path):
    other = tmp_path / "open.yml"
    other.write_text("version: 1\nroles: {all: {operations: ['*']}}\nbindings: [{users: [bob], roles: [all], tenants: all}]\n")
    result = run_action(ACME, {"operation": "rgpd.erase"}, variables={"dihya_ops_policy_file": str(other)})
    assert result["failed"] and f"dihya_ops_policy_file={other} is ignored" in " ".join(result["warnings"])
    same = run_action(ACME, variables={"dihya_ops_policy_file": str(policy_file)})
    assert not same.get("warnings")


def test_a_malformed_policy_is_a_denial_naming_the_line(policy_file, controller):
    policy_file.write_text("version: 1\nroles:\n  support:\n    operation: [check_health]\n")
    result = run_action(ACME)
    assert result["failed"] and f"access denied: {policy_file}, line 4, roles.support.operation: unknown key" in result["msg"]


def test_what_needs_the_governance_store_is_refused_without_it(policy_file, controller, monkeypatch):
    policy_file.write_text(POLICY.replace("approvals: []\n", ""))
    monkeypatch.setenv("DIHYA_OPS_USER", "dana")
    monkeypatch.setattr(authorise, "governance", lambda: None)
    result = run_action(ACME, {"operation": "rgpd.erase"})
    assert result["failed"] and "needs a four-eyes approval or a quota" in result["msg"]
    assert not run_action(ACME, {"operation": "rgpd.export"}).get("failed")


def test_without_the_callback_the_decision_is_a_warning(policy_file):
    result = run_action(ACME)
    assert not result.get("failed") and "not in a controller audit log" in " ".join(result["warnings"])


def test_the_arguments(policy_file, controller):
    with pytest.raises(AnsibleActionFail, match="colour"):
        run_action(ACME, {"operation": "check_health", "colour": "red"})
    assert run_action(ACME, {"operation": " "})["failed"]


class Engines:
    """Stand-ins of the governance engines that record how the action calls them (the order of docs/policy.md)."""

    def __init__(self, locked: str | None = None, approved: bool = True, quota: bool = True, lock_out: str | None = None) -> None:
        self.calls: list[tuple[t.Any, ...]] = []
        self.locked, self.approved, self.quota, self.lock_out = locked, approved, quota, lock_out

    def modules(self) -> dict[str, t.Any]:
        opened = types.SimpleNamespace(close=lambda: self.calls.append(("close",)))
        store = types.SimpleNamespace(open_store=lambda config: self.calls.append(("open", config)) or opened)
        quota = types.SimpleNamespace(
            locked_out=lambda store, rule, user, now: self.calls.append(("locked_out", user)) or self.locked,
            record_denial=lambda store, rule, user, trace, now: self.calls.append(("record_denial", user, trace)) or self.lock_out,
            enforce=lambda store, quotas, limits, request, trace, now: self.calls.append(("enforce", request.operation, len(quotas)))
            or types.SimpleNamespace(allowed=self.quota, reason="5 runs of rgpd.export for acme in 1h; retry after 10:00"))
        approval = types.SimpleNamespace(
            require=lambda store, key, request, approval_id, params, trace, now: self.calls.append(("require", approval_id, params))
            or types.SimpleNamespace(allowed=self.approved, reason="no approval of this request"))
        return {"_governance_store": store, "_quota": quota, "_approval": approval}


GOVERNED = POLICY.replace("approvals: []\n", """\
quotas: [{operations: [rgpd.export], per: tenant, max_runs: 5, window: 1h}]
anti_abuse: {max_denials: 3, window: 15m, lockout: 30m}
""")


def test_the_governance_engines_in_order(policy_file, controller, monkeypatch):
    policy_file.write_text(GOVERNED)
    engines = Engines()
    monkeypatch.setattr(authorise, "governance", engines.modules)
    monkeypatch.setenv("DIHYA_OPS_USER", "dana")
    store = {"kind": "sqlite", "path": "/tmp/store.sqlite3"}
    result = run_action(ACME, {"operation": "rgpd.erase", "approval_id": "A-1", "params": {"subject": 42}},
                        variables={"dihya_ops_governance_store": store})
    assert not result.get("failed"), result
    assert [call[0] for call in engines.calls] == ["open", "locked_out", "require", "enforce", "close"]
    assert engines.calls[0] == ("open", store) and engines.calls[2][1] == "A-1" and len(engines.calls[2][2]) == 64
    engines.calls.clear()
    monkeypatch.setenv("DIHYA_OPS_USER", "bob")
    denied = run_action({"web-1": {"dihya_ops_tenant": "globex", "dihya_environment": "prod"}})
    assert denied["failed"] and [call[0] for call in engines.calls] == ["open", "locked_out", "record_denial", "close"]
    assert engines.calls[2] == ("record_denial", "bob", TRACE)


@pytest.mark.parametrize(("engines", "message"), [
    (Engines(locked="bob is locked out until 11:30 UTC after 3 denied requests"), "access denied: bob is locked out until 11:30"),
    (Engines(quota=False), "retry after 10:00"),
    (Engines(lock_out="bob is now locked out until 11:30 UTC"), "tenants acme only; bob is now locked out"),
])
def test_lock_outs_and_quotas_refuse(policy_file, controller, monkeypatch, engines, message):
    policy_file.write_text(GOVERNED)
    monkeypatch.setattr(authorise, "governance", engines.modules)
    tenant = "globex" if engines.lock_out else "acme"
    result = run_action({"web-1": {"dihya_ops_tenant": tenant, "dihya_environment": "prod"}}, {"operation": "rgpd.export"})
    assert result["failed"] and message in result["msg"], result["msg"]
    assert "bob" not in json.dumps(records(controller[0])), "the recorded reason does not name the user"


def test_a_missing_approval_refuses(policy_file, controller, monkeypatch):
    policy_file.write_text(GOVERNED)
    monkeypatch.setattr(authorise, "governance", Engines(approved=False).modules)
    monkeypatch.setenv("DIHYA_OPS_USER", "dana")
    result = run_action(ACME, {"operation": "rgpd.erase"})
    assert result["failed"] and "no approval of this request" in result["msg"]


def test_a_lock_descriptor_inherited_from_the_controller_is_closed(tmp_path):
    lock = tmp_path / "controller.log.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    other = os.open(tmp_path / "other", os.O_CREAT | os.O_RDWR, 0o600)
    authorise.release_inherited_lock(str(lock))
    with pytest.raises(OSError):
        os.fstat(fd)
    os.fstat(other)
    os.close(other)


def test_hosts_of_one_request_may_name_different_subjects_when_no_approval_is_needed(policy_file, controller):
    """Binding a request to one subject is the approval's business: without four eyes, each host keeps its own subject."""
    hosts = {"web-1": {"dihya_ops_tenant": "acme", "dihya_environment": "prod", "rgpd_operation": "export", "rgpd_subject_id": "41"},
             "web-2": {"dihya_ops_tenant": "acme", "dihya_environment": "prod", "rgpd_operation": "export", "rgpd_subject_id": "42; --"}}
    result = run_action(hosts, {"operation": "rgpd"})
    assert not result.get("failed"), result["msg"]
    assert [decision["hosts"] for decision in result["decisions"]] == [["web-1", "web-2"]]
