"""The operation lifecycle on the real fleet: one trace id for the run, audited on the hosts and on the controller."""

from __future__ import annotations

import json

from ansible_collections.dihya.ops.tests.support.fleet import BIN, HOSTS, run

CONTROLLER_KEY = "functional-controller-audit-key-0123456789"


def host_events(fleet, host: str) -> list[dict]:
    log = fleet.root(host) / "audit" / "audit.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_operation_events_share_the_trace_id_of_the_audited_run(fleet, tmp_path):
    controller_log = tmp_path / "controller-audit.log"
    before = {host: len(host_events(fleet, host)) for host in HOSTS}
    env = dict(fleet.env, ANSIBLE_CALLBACKS_ENABLED="dihya.ops.audit", DIHYA_AUDIT_KEY=CONTROLLER_KEY,
               DIHYA_AUDIT_LOG_PATH=str(controller_log))
    env.pop("DIHYA_TRACE_ID", None)
    proc = fleet.playbook("playbooks/check_health.yml", "-e", "dihya_ops_tenant=acme", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    controller = [json.loads(line) for line in controller_log.read_text().splitlines()]
    trace = controller[0]["trace"]["id"]
    assert {event["trace"]["id"] for event in controller} == {trace}
    assert controller[0]["organization"]["id"] == "acme"
    for host in HOSTS:
        new = host_events(fleet, host)[before[host]:]
        assert [event["event"]["action"] for event in new] == ["check_health.started", "check_health.finished"]
        assert {event["trace"]["id"] for event in new} == {trace}
        assert all(event["organization"]["id"] == "acme" and event["event"]["outcome"] == "success" for event in new)
        # The user is pseudonymised on the host too.
        assert all(event["user"]["id"].startswith("hmac:") for event in new)


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
