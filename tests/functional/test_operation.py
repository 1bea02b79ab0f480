"""The operation lifecycle on the real fleet: one run context (user, trace id, host name) on the hosts and on the controller."""

from __future__ import annotations

import json
import pwd
import os

import pytest
import yaml

from ansible_collections.dihya.ops.plugins.module_utils._ids import pseudonym
from ansible_collections.dihya.ops.tests.support.fleet import BIN, HOSTS, ROOT, run

CONTROLLER_KEY = "functional-controller-audit-key-0123456789"
DATA_MAP = ROOT / "docs" / "examples" / "rgpd-datamap-demo.yml"
# What each operation needs to get as far as its own work in check mode.
OPERATION_VARS = {
    "check_health": [], "purge_temp_files": [], "rotate_logs": [], "restart_services": [],
    "update_dependencies": ["-e", '{"update_dependencies_packages": ["dihya-demo-ext==1.0.0"]}'],
    "rgpd": ["-e", "rgpd_operation=inventory", "-e", "rgpd_tenant=acme", "-e", "rgpd_subject_id=1", "-e", f"rgpd_data_map={DATA_MAP}"],
}


def pseudonym_key() -> bytes:
    """The demo fleet's pseudonym key, from its Vault (a public demo value)."""
    proc = run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(ROOT / "inventories" / "local" / "demo-vault-password"),
                str(ROOT / "inventories" / "local" / "group_vars" / "dihya_backend" / "vault.yml")], env=dict(os.environ), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return str(yaml.safe_load(proc.stdout)["vault_dihya_pseudonym_key"]).encode()


def controller_env(fleet, log, **extra: str) -> dict[str, str]:
    """The fleet's environment with the audit callback on, without USER or LOGNAME, and no run context of the caller."""
    env = dict(fleet.env, ANSIBLE_CALLBACKS_ENABLED="dihya.ops.audit", DIHYA_AUDIT_KEY=CONTROLLER_KEY,
               DIHYA_AUDIT_LOG_PATH=str(log), DIHYA_AUDIT_PSEUDONYM_KEY=pseudonym_key().decode())
    for name in ("USER", "LOGNAME", "DIHYA_TRACE_ID", "DIHYA_AUDIT_TRACE_ID", "DIHYA_OPS_USER", "DIHYA_AUDIT_USER",
                 "DIHYA_OPS_TRUST_DECLARED_USER"):
        env.pop(name, None)
    env.update(extra)
    return env


def host_events(fleet, host: str) -> list[dict]:
    log = fleet.root(host) / "audit" / "audit.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_host_events_and_the_callback_name_one_user_trace_id_and_host(fleet, tmp_path):
    """Without USER in the environment, the callback and the hosts' events agree: the OS user, one trace id, one host name."""
    controller_log = tmp_path / "controller-audit.log"
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    proc = fleet.playbook("playbooks/restart_services.yml", "--check", env=controller_env(fleet, controller_log))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # serial: 1, three batches; then a real run of another operation, for the host events.
    proc = fleet.playbook("playbooks/check_health.yml", "-e", "dihya_ops_tenant=acme", "-e", "dihya_environment=staging",
                          env=controller_env(fleet, controller_log))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    controller = [json.loads(line) for line in controller_log.read_text().splitlines()]
    starts = [index for index, event in enumerate(controller) if event["event"]["action"] == "ansible.run.start"]
    dry, real = controller[starts[0]:starts[1]], controller[starts[1]:]
    assert len({event["trace"]["id"] for event in dry}) == 1, "one trace id across the serial batches"
    trace = real[0]["trace"]["id"]
    assert {event["trace"]["id"] for event in real} == {trace} and trace != dry[0]["trace"]["id"]
    os_user = pwd.getpwuid(os.geteuid()).pw_name
    user = pseudonym(os_user, pseudonym_key())
    assert {event["user"]["id"] for event in controller} == {user}
    assert real[0]["dihya"]["details"]["user_source"] == "os" and real[0]["organization"]["id"] == "acme"
    callback_hosts = {event["host"]["name"] for event in real if event["event"]["action"] == "ansible.task"}
    assert callback_hosts == set(HOSTS)
    for host in HOSTS:
        new = host_events(fleet, host)[before[host]:]
        assert [event["event"]["action"] for event in new] == ["check_health.started", "check_health.finished"]
        assert {event["trace"]["id"] for event in new} == {trace}
        assert {event["user"]["id"] for event in new} == {user}, "the hosts name the user the callback names (not 'unknown')"
        assert {event["host"]["name"] for event in new} == {host}
        assert all(event["organization"]["id"] == "acme" and event["event"]["outcome"] == "success" for event in new)
        assert all(event["labels"]["environment"] == "staging" for event in new)


def test_the_caller_names_the_user_and_a_declared_user_needs_trust(fleet, tmp_path):
    controller_log = tmp_path / "controller-audit.log"
    before = len(host_events(fleet, HOSTS[0]))
    env = controller_env(fleet, controller_log, DIHYA_OPS_USER="ci-pipeline")
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", HOSTS[0], "-e", "dihya_ops_user=mallory", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    declared = controller_env(fleet, controller_log, DIHYA_OPS_TRUST_DECLARED_USER="true")
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", HOSTS[0], "-e", "dihya_ops_user=carol", env=declared)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    untrusted = controller_env(fleet, controller_log)
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", HOSTS[0], "-e", "dihya_ops_user=mallory", env=untrusted)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dihya_ops_user is ignored" in proc.stdout + proc.stderr
    key = pseudonym_key()
    users = [pseudonym(name, key) for name in ("ci-pipeline", "carol", pwd.getpwuid(os.geteuid()).pw_name)]
    new = host_events(fleet, HOSTS[0])[before:]
    assert [event["user"]["id"] for event in new] == [users[0], users[0], users[1], users[1], users[2], users[2]]
    controller = [json.loads(line) for line in controller_log.read_text().splitlines()]
    runs = [event for event in controller if event["event"]["action"] == "ansible.run.start"]
    assert [(event["user"]["id"], event["dihya"]["details"]["user_source"]) for event in runs] == [
        (users[0], "caller"), (users[1], "declared"), (users[2], "os")]


@pytest.mark.parametrize(("variable", "value"), [
    ("dihya_ops_tenant", "../acme"), ("dihya_ops_tenant", "acme'; rm -rf /"), ("dihya_ops_tenant", "t" * 300),
    ("dihya_trace_id", "zz" * 16), ("dihya_trace_id", "4bf92f3577b34da6"), ("dihya_environment", "prod\nstaging"),
    ("awx_user_name", "alice\nroot"), ("dihya_ops_request_id", "../../CHG"),
])
def test_a_malformed_run_context_stops_the_run_before_any_host_task(fleet, variable, value):
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    pids = fleet.pids()
    proc = fleet.playbook("playbooks/restart_services.yml", "-e", json.dumps({variable: value}))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert f"{variable}" in output and "Nothing was run" in output, output
    assert "Traceback" not in output
    assert "TASK [dihya.ops.restart_services" not in output
    assert {host: len(host_events(fleet, host)) for host in HOSTS} == before
    assert fleet.pids() == pids


def _typed_option(role: str) -> tuple[str, str]:
    """The first int option of the role (its first bool option when it has none), and its type."""
    options = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))["argument_specs"]["main"]["options"]
    for kind in ("int", "bool"):
        for name, option in options.items():
            if option.get("type") == kind:
                return name, kind
    raise AssertionError(f"role {role} has no int or bool option")


@pytest.mark.parametrize(("role", "operation"), [(operation, operation) for operation in sorted(OPERATION_VARS)] + [("operation", "check_health")])
def test_an_option_of_the_wrong_type_stops_the_run_before_any_host_task(fleet, role, operation):
    # The lifecycle enters both roles without Ansible's validation task: its first task validates their options.
    name, kind = _typed_option(role)
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    pids = fleet.pids()
    proc = fleet.playbook(f"playbooks/{operation}.yml", *OPERATION_VARS[operation], "-e", f"{name}=many; rm -rf ../")
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, output
    assert f"role dihya.ops.{role}: argument '{name}' is of type str and we were unable to convert to {kind}" in output, output
    assert "Nothing was run" in output and "Traceback" not in output, output
    assert f"TASK [dihya.ops.{operation} : " not in output, output
    assert {host: len(host_events(fleet, host)) for host in HOSTS} == before
    assert fleet.pids() == pids


@pytest.mark.parametrize("operation", sorted(OPERATION_VARS))
def test_the_tags_of_an_operation_run_its_work_and_other_tags_run_nothing(fleet, operation):
    playbook = f"playbooks/{operation}.yml"
    proc = fleet.playbook(playbook, "--check", "--tags", operation, *OPERATION_VARS[operation])
    output = proc.stdout + proc.stderr
    assert "Resolve the context of the run" in output, output
    assert f"TASK [dihya.ops.{operation} : " in output, output
    other = "rgpd" if operation != "rgpd" else "check_health"
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    skipped = fleet.playbook(playbook, "--tags", other, *OPERATION_VARS[operation])
    output = skipped.stdout + skipped.stderr
    assert skipped.returncode == 0, output
    assert "Resolve the context of the run" not in output and f"TASK [dihya.ops.{operation} : " not in output, output
    assert {host: len(host_events(fleet, host)) for host in HOSTS} == before


def test_the_tags_of_an_operation_keep_its_lifecycle_events(fleet):
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    proc = fleet.playbook("playbooks/check_health.yml", "--tags", "check_health")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TASK [dihya.ops.check_health : " in proc.stdout
    for host in HOSTS:
        new = host_events(fleet, host)[before[host]:]
        assert [event["event"]["action"] for event in new] == ["check_health.started", "check_health.finished"]


def test_a_failed_operation_is_recorded_with_its_message_and_the_logs_verify(fleet):
    before = len(host_events(fleet, HOSTS[0]))
    services = json.dumps({"restart_services_services": [{"name": "web", "manager": "supervisor", "unit": "dihya-web; touch /tmp/x"}]})
    proc = fleet.playbook("playbooks/restart_services.yml", "-e", services)
    assert proc.returncode != 0
    assert "is not valid" in proc.stdout
    new = host_events(fleet, HOSTS[0])[before:]
    assert [event["event"]["action"] for event in new] == ["restart_services.started", "restart_services.finished"]
    assert new[-1]["event"]["outcome"] == "failure"
    assert "is not valid" in new[-1]["dihya"]["details"]["message"]
    # Every host's log verifies with the key from the inventory's Vault, through the module.
    verify = run([str(BIN / "ansible"), "dihya_backend", "-m", "dihya.ops.audit_verify",
                  "-a", "path={{ dihya_backend_audit_log }} key={{ dihya_backend_audit_key }}"], env=fleet.env, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.count("SUCCESS") == len(HOSTS), verify.stdout


def test_check_mode_writes_no_audit_event(fleet):
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    proc = fleet.playbook("playbooks/purge_temp_files.yml", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {host: len(host_events(fleet, host)) for host in HOSTS} == before
