# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The authorisation policy on the real fleet: each refusal stops the run before any host task, changes nothing, and is audited."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import sqlite3

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.tests.support.fleet import HOSTS, ROOT

CONTROLLER_KEY = "functional-controller-audit-key-0123456789"
DATA_MAP = ROOT / "docs" / "examples" / "rgpd-datamap-demo.yml"
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
bindings:
  - users: [bob]
    roles: [support]
    tenants: [acme]
  - users: [erin]
    roles: [viewer]
    tenants: all
approvals: []
"""
RGPD = ["-e", "rgpd_operation=erase", "-e", "rgpd_tenant=globex", "-e", "rgpd_subject_id=1", "-e", "rgpd_confirm_erase=true",
        "-e", f"rgpd_data_map={DATA_MAP}"]
# (playbook, user, extra arguments, the reason's text)
DENIALS = {
    "another_tenant": ("check_health", "bob", ["-e", "dihya_ops_tenant=globex"],
                       ("access denied: bob (role support) may not run check_health for tenant globex in dev: the user's roles "
                        "are bound to tenants acme only")),
    "rgpd_erase_of_another_tenant": ("rgpd", "bob", [*RGPD, "-e", "dihya_environment=prod"],
                                     "access denied: bob (role support) may not run rgpd.erase for tenant globex in prod"),
    "operation_not_in_the_role": ("restart_services", "bob", ["-e", "dihya_ops_tenant=acme"],
                                  "no role of the user for this tenant has the operation restart_services"),
    "environment_not_granted": ("check_health", "bob", ["-e", "dihya_ops_tenant=acme", "-e", "dihya_environment=staging"],
                                "may not run check_health for tenant acme in staging: check_health is granted in dev, prod only"),
    "check_only_role_real_run": ("restart_services", "erin", [], "only dry runs (--check) are allowed to these roles"),
    "denied_dry_run": ("restart_services", "bob", ["--check", "-e", "dihya_ops_tenant=acme"], "may not dry-run restart_services"),
    "unknown_user": ("check_health", "mallory", ["--check"], "no binding of the policy gives this user a role"),
}


def host_events(fleet, host: str) -> int:
    log = fleet.root(host) / "audit" / "audit.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def state(fleet) -> dict[str, object]:
    """What an operation could change: gunicorn PIDs, the files of each root but its logs, the database bytes, audit lengths."""
    found: dict[str, object] = {"pids": fleet.pids()}
    for host in HOSTS:
        root = fleet.root(host)
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if relative.parts[0] in ("log", "venv", "app") or not path.is_file() or path.is_symlink():
                continue
            info = path.stat()
            found[f"{host}/{relative}"] = (info.st_size, info.st_mtime_ns)
        found[f"{host}/db"] = hashlib.sha256((root / "data" / "dihya.db").read_bytes()).hexdigest()
        found[f"{host}/events"] = host_events(fleet, host)
    return found


def controller_records(log: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run(fleet, tmp_path, playbook: str, user: str, *args: str, policy: str | None = POLICY, **env: str):
    log = tmp_path / "controller-audit.log"
    environment = dict(fleet.env, ANSIBLE_CALLBACKS_ENABLED="dihya.ops.audit", DIHYA_AUDIT_KEY=CONTROLLER_KEY,
                       DIHYA_AUDIT_LOG_PATH=str(log), DIHYA_OPS_USER=user, **env)
    for name in ("DIHYA_TRACE_ID", "DIHYA_AUDIT_TRACE_ID", "DIHYA_AUDIT_USER", "DIHYA_OPS_TRUST_DECLARED_USER"):
        environment.pop(name, None)
    if policy is None:
        environment.pop("DIHYA_OPS_POLICY", None)
    else:
        (tmp_path / "policy.yml").write_text(policy)
        environment["DIHYA_OPS_POLICY"] = str(tmp_path / "policy.yml")
    proc = fleet.playbook(f"playbooks/{playbook}.yml", *args, env=environment)
    records = controller_records(log)
    return proc, proc.stdout + proc.stderr, records


def decisions(records: list[dict]) -> list[dict]:
    return [record for record in records if record["event"]["action"] == "dihya.ops.authorise"]


def assert_refused_before_any_host_task(fleet, playbook: str, output: str, proc, records, before, reason: str) -> None:
    assert proc.returncode != 0, output
    assert reason in output and "Nothing was run on any host" in output, output
    assert "Traceback" not in output
    assert f"TASK [dihya.ops.{playbook} : " not in output and "Record the start of the operation" not in output, output
    assert state(fleet) == before, "nothing changed on any host"
    [decision] = decisions(records)
    trace = records[0]["trace"]["id"]
    assert decision["event"]["outcome"] == "denied" and decision["trace"]["id"] == trace
    assert decision["dihya"]["details"]["allowed"] is False and decision["dihya"]["details"]["reason"].startswith("access denied: ")


@pytest.mark.parametrize("case", sorted(DENIALS))
def test_each_refusal_stops_the_run_before_any_host_task(fleet, tmp_path, case):
    playbook, user, args, reason = DENIALS[case]
    before = state(fleet)
    proc, output, records = run(fleet, tmp_path, playbook, user, *args)
    assert_refused_before_any_host_task(fleet, playbook, output, proc, records, before, reason)
    recorded = decisions(records)[0]
    assert user not in json.dumps(recorded), "the controller's record names the user by its pseudonym only"
    assert _audit.verify(str(tmp_path / "controller-audit.log"), CONTROLLER_KEY.encode()).ok, "one chain with the callback's events"


def test_no_policy_refuses_everything_and_says_how_to_give_one(fleet, tmp_path):
    before = state(fleet)
    proc, output, records = run(fleet, tmp_path, "check_health", "root", "--check", "-e", '{"dihya_ops_policy_file": ""}', policy=None)
    assert_refused_before_any_host_task(fleet, "check_health", output, proc, records, before, "no authorisation policy")
    assert "DIHYA_OPS_POLICY" in output and "dihya_ops_policy_file" in output and "docs/policy.md" in output


def test_a_malformed_policy_refuses_naming_the_line_and_key(fleet, tmp_path):
    before = state(fleet)
    bad = POLICY.replace("    check_only: true\n", "    check_only: true\n    colour: red\n")
    proc, output, records = run(fleet, tmp_path, "check_health", "bob", "--check", policy=bad)
    assert_refused_before_any_host_task(fleet, "check_health", output, proc, records, before,
                                        "line 10, roles.viewer.colour: unknown key 'colour'")


def test_an_allowed_run_records_its_decision(fleet, tmp_path):
    proc, output, records = run(fleet, tmp_path, "check_health", "bob", "--check", "-e", "dihya_ops_tenant=acme")
    assert proc.returncode == 0, output
    assert "TASK [dihya.ops.check_health : " in output
    [decision] = decisions(records)
    assert decision["event"]["outcome"] == "success" and decision["trace"]["id"] == records[0]["trace"]["id"]
    details = decision["dihya"]["details"]
    assert details["roles"] == ["support"] and details["check_mode"] is True and details["hosts"] == len(HOSTS)
    assert details["reason"] == "access granted: the user (role support) may dry-run check_health for tenant acme in dev"
    assert decision["organization"]["id"] == "acme"


FOUR_EYES = """\
version: 1
roles:
  dpo:
    operations: ["rgpd.*"]
    environments: all
    approve: [rgpd.erase]
bindings:
  - users: [bob, dana]
    roles: [dpo]
    tenants: [acme]
approvals:
  - operations: [rgpd.erase]
concurrency:
  - operations: [rgpd.erase]
    per: global
    max: 1
    lock_ttl: 1h
"""
APPROVAL_KEY = "functional-approval-key-0123456789abcdef"


def test_an_erasure_runs_with_another_persons_approval_once(fleet, tmp_path):
    """Four eyes through the fleet: refused without an approval, approved by someone else, dry-run, run once, never again."""
    host = "dihya-demo-3"
    database = fleet.root(host) / "data" / "dihya.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        subject = conn.execute("SELECT max(id) FROM users WHERE tenant_id = 1").fetchone()[0]
    store = tmp_path / "governance" / "store.sqlite3"
    secret = tmp_path / "governance-vars.json"
    secret.touch(mode=0o600)
    secret.write_text(json.dumps({"dihya_ops_governance_store": {"kind": "sqlite", "path": str(store)},
                                  "dihya_ops_approval_key": APPROVAL_KEY}))
    # The erasure ledger of this test is its own: the fleet's ledger is what the RGPD tests replay.
    erase = ["--limit", host, "-e", f"@{secret}", "-e", "rgpd_operation=erase", "-e", "rgpd_tenant=acme", "-e", "rgpd_confirm_erase=true",
             "-e", f"rgpd_data_map={DATA_MAP}", "-e", f"rgpd_ledger_file={tmp_path / 'ledger' / 'erasure-ledger.jsonl'}"]

    def users() -> int:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM users WHERE id = ?", (subject,)).fetchone()[0])

    before = state(fleet)
    proc, output, records = run(fleet, tmp_path, "rgpd", "bob", *erase, "-e", f"rgpd_subject_id={subject}", policy=FOUR_EYES)
    assert_refused_before_any_host_task(fleet, "rgpd", output, proc, records, before, "rgpd.erase needs a four-eyes approval")

    approve = ["-e", f"@{secret}", "-e", "approve_requester=bob", "-e", "approve_operation=rgpd.erase", "-e", "approve_tenant=acme",
               "-e", "approve_environment=dev", "-e", json.dumps({"approve_params": {"subject": str(subject)}}), "-e", "approve_lifetime=1h"]
    mine, output, dummy = run(fleet, tmp_path, "approve", "bob", *approve, policy=FOUR_EYES)
    assert mine.returncode != 0 and "must not be the requester" in output, output
    given, output, dummy = run(fleet, tmp_path, "approve", "dana", *approve, policy=FOUR_EYES)
    assert given.returncode == 0, output
    assert APPROVAL_KEY not in output
    approval_id = re.search(r"approval (\S+) of rgpd\.erase by dana", output).group(1)

    other, output, dummy = run(fleet, tmp_path, "rgpd", "bob", *erase, "-e", f"rgpd_subject_id={subject - 1}",
                               "-e", f"dihya_ops_approval_id={approval_id}", policy=FOUR_EYES)
    assert other.returncode != 0 and "another parameters" in output, output
    dry, output, dummy = run(fleet, tmp_path, "rgpd", "bob", *erase, "--check", "-e", f"rgpd_subject_id={subject}",
                             "-e", f"dihya_ops_approval_id={approval_id}", policy=FOUR_EYES)
    assert dry.returncode == 0 and users() == 1, output
    done, output, records = run(fleet, tmp_path, "rgpd", "bob", *erase, "-e", f"rgpd_subject_id={subject}",
                                "-e", f"dihya_ops_approval_id={approval_id}", policy=FOUR_EYES)
    assert done.returncode == 0, output
    assert users() == 0
    assert (tmp_path / "ledger" / "erasure-ledger.jsonl").is_file()
    assert decisions(records)[-1]["event"]["outcome"] == "success"
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM governance_locks").fetchone()[0] == 0, "the run's end released its lock"
    again, output, dummy = run(fleet, tmp_path, "rgpd", "bob", *erase, "-e", f"rgpd_subject_id={subject}",
                               "-e", f"dihya_ops_approval_id={approval_id}", policy=FOUR_EYES)
    assert again.returncode != 0 and "already used by the run" in output, output
    assert all("subject" not in json.dumps(record["dihya"]) for record in controller_records(tmp_path / "controller-audit.log"))
